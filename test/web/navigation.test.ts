import t from 'tap'
import { connectAs, ok, roomy } from '../helpers/actors.ts'
import { launchChromium, withoutChromium } from '../helpers/chromium.ts'
import { startTestHub } from '../helpers/hub.ts'
import { builtWebApp, DESKTOP, openSignedIn, watchProblems } from '../helpers/web.ts'

t.test(
  "in Chromium: going from one stage's page straight to another's or one stage's mixer to another's (a changed address, back and forward) shows the other stage's groups, never the first one's",
  { skip: withoutChromium },
  async (t) => {
    const th = await startTestHub(t, { WEB_DIR: await builtWebApp(t), ...roomy })
    const user = await th.hub.users.createUser({ name: 'Ann' })
    const ann = await connectAs(th, user.id, 'Ann')
    const quartet = await ok<{ id: string }>(ann, 'stage.create', { name: 'Quartet' })
    await ok(ann, 'group.create', { stageId: quartet.id, name: 'Strings', color: '#1d4ed8' })
    const band = await ok<{ id: string }>(ann, 'stage.create', { name: 'Big Band' })
    await ok(ann, 'group.create', { stageId: band.id, name: 'Brass', color: '#b91c1c' })

    const browser = await launchChromium(t)
    const page = await browser.newPage({ viewport: DESKTOP })
    const problems = watchProblems(page)
    await openSignedIn(page, `${th.httpUrl}/#/stages/${quartet.id}`, th.hub.users.userToken(user))
    const groups = page.getByRole('region', { name: 'Groups and members' })
    await groups.getByRole('heading', { name: /^Strings/ }).waitFor()

    // the same document, another address: no reload
    await page.goto(`${th.httpUrl}/#/stages/${band.id}`)
    await page.getByRole('heading', { name: 'Big Band', level: 1 }).waitFor()
    await groups.getByRole('heading', { name: /^Brass/ }).waitFor()
    t.equal(
      await groups.getByRole('heading', { name: /^Strings/ }).count(),
      0,
      "the other stage's groups, not the first one's",
    )

    await page.goBack()
    await page.getByRole('heading', { name: 'Quartet', level: 1 }).waitFor()
    await groups.getByRole('heading', { name: /^Strings/ }).waitFor()
    t.equal(
      await groups.getByRole('heading', { name: /^Brass/ }).count(),
      0,
      'back: the first stage again, alone',
    )

    await page.goForward()
    await groups.getByRole('heading', { name: /^Brass/ }).waitFor()
    t.equal(
      await groups.getByRole('heading', { name: /^Strings/ }).count(),
      0,
      'forward: the second stage again, alone',
    )

    // the mixer: the same component for both stages
    const main = page.getByRole('main')
    await page.goto(`${th.httpUrl}/#/stages/${quartet.id}/mixer`)
    await main
      .getByRole('heading', { name: /^Strings/ })
      .first()
      .waitFor()
    await page.goto(`${th.httpUrl}/#/stages/${band.id}/mixer`)
    await page.getByRole('heading', { name: 'Mixer of Big Band', level: 1 }).waitFor()
    await main
      .getByRole('heading', { name: /^Brass/ })
      .first()
      .waitFor()
    t.equal(
      await main.getByRole('heading', { name: /^Strings/ }).count(),
      0,
      "the mixer shows the other stage's groups",
    )
    t.same(problems, [], 'no page errors, no CSP violations')
  },
)

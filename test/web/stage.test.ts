import type { Page } from 'playwright-core'
import t from 'tap'
import { topics } from '../../schemas/topics.ts'
import { type Actor, connectAs, connectDevice, ok, roomy } from '../helpers/actors.ts'
import { launchChromium, withoutChromium } from '../helpers/chromium.ts'
import { startTestHub, type TestHub } from '../helpers/hub.ts'
import { builtWebApp, shoot, signedInContext } from '../helpers/web.ts'

/** A person of the test: a user in the store, a Node connection for setup, a device online. */
async function person(th: TestHub, name: string): Promise<{ actor: Actor; session: unknown }> {
  const user = await th.hub.users.createUser({ name })
  const actor = await connectAs(th, user.id, name)
  // a member is online while one of their devices is: each person has a box that says so
  const box = await ok<{ device: { id: string }; token: string }>(actor, 'device.create', {
    name: `${name}'s box`,
    kind: 'native',
  })
  const device = await connectDevice(th, box.device.id, box.token)
  await device.client.publishAsync(
    topics.devicePresence.build(box.device.id),
    JSON.stringify({ state: 'online', session: 1 }),
    { qos: 1, retain: true },
  )
  return { actor, session: th.hub.users.userToken(user) }
}

const presence = (page: Page, name: string) =>
  page.getByTestId(`member-${name}`).locator('[data-presence]').getAttribute('data-presence')

t.test(
  'in Chromium, two people in a stage: join with password and group, see each other online, chat both ways, leave and rejoin; the admin manages groups, moves, directs, promotes and removes the member, whose view follows at once; forget',
  { skip: withoutChromium },
  async (t) => {
    const th = await startTestHub(t, { WEB_DIR: await builtWebApp(t), ...roomy })
    const ann = await person(th, 'Ann')
    const bo = await person(th, 'Bo')
    const stage = await ok<{ id: string }>(ann.actor, 'stage.create', {
      name: 'Friday rehearsal',
      password: 'open sesame',
    })
    const band = await ok<{ id: string }>(ann.actor, 'group.create', {
      stageId: stage.id,
      name: 'Band',
      color: '#2563eb',
    })
    await ok(ann.actor, 'group.create', { stageId: stage.id, name: 'Choir', color: '#dc2626' })
    // Bo is a member already (as after an invitation); Ann, the admin, joins in the browser
    await ok(bo.actor, 'stage.join', { stageId: stage.id, groupId: band.id, password: 'open sesame' })

    const browser = await launchChromium(t)
    const path = `#/stages/${stage.id}`
    const a = await signedInContext(t, th.httpUrl, browser, ann.session, path)
    const b = await signedInContext(t, th.httpUrl, browser, bo.session, path)
    const annPage = a.page
    const boPage = b.page

    await annPage.getByRole('heading', { name: 'Friday rehearsal' }).waitFor()
    await annPage.getByLabel('Group', { exact: true }).selectOption({ label: 'Band' })
    await annPage.getByLabel('Stage password').fill('open sesame')
    await shoot(t, annPage, 'stage-join')
    await annPage.getByRole('button', { name: 'Join the stage' }).click()
    await annPage.getByText('You are in this stage, in Band').waitFor()
    t.pass('the admin joined through the form: group chosen, password given')

    await annPage.getByTestId('member-Bo').locator('[data-presence="online"]').waitFor()
    await boPage.getByTestId('member-Ann').locator('[data-presence="online"]').waitFor()
    t.equal(await presence(annPage, 'Bo'), 'online', 'Ann sees Bo online')
    t.equal(await presence(boPage, 'Ann'), 'online', 'Bo sees Ann online')
    t.match(
      await boPage.getByTestId('member-Ann').textContent(),
      /online.*Ann.*seat \d.*Admin/,
      "the dot's meaning in words for screen readers, the seat and the admin badge",
    )
    t.equal(
      await boPage.getByRole('link', { name: 'Settings' }).count(),
      0,
      'a member who is no admin has no settings link and no admin tools',
    )
    t.equal(await boPage.getByText('Manage').count(), 0)
    t.equal(
      await annPage.getByRole('link', { name: 'Mixer' }).getAttribute('href'),
      `#/stages/${stage.id}/mixer`,
      'the mixer link',
    )

    // chat both ways, Enter sends
    await annPage.getByLabel('Message').fill('Hello Bo, ready?')
    await annPage.getByLabel('Message').press('Enter')
    const boLog = boPage.getByRole('log')
    await boLog.getByText('Hello Bo, ready?').waitFor()
    t.match(
      await boLog.locator('li').last().textContent(),
      /Ann\s*\d\d:\d\d.*Hello Bo, ready\?/s,
      'with sender and time',
    )
    t.equal(await annPage.getByLabel('Message').inputValue(), '', 'the input is cleared after sending')
    await boPage.getByLabel('Message').fill('Ready!')
    await boPage.getByLabel('Message').press('Enter')
    await annPage.getByRole('log').getByText('Ready!').waitFor()
    t.match(
      await annPage.getByRole('log').locator('li').last().textContent(),
      /Bo.*Ready!/s,
      "Bo's answer at the bottom of Ann's chat",
    )
    await shoot(t, annPage, 'stage-admin')
    await shoot(t, boPage, 'stage-member')

    // Bo leaves: the join form with group and password; a wrong password shows the hub's message
    await boPage.getByRole('button', { name: 'Leave the stage' }).click()
    await annPage.getByTestId('member-Bo').locator('[data-presence="away"]').waitFor()
    t.pass('Ann sees Bo away once he left')
    await boPage.getByLabel('Stage password').fill('wrong')
    await boPage.getByRole('button', { name: 'Join the stage' }).click()
    t.match(await boPage.getByRole('alert').textContent(), /password/i, "a wrong password: the hub's message")
    await boPage.getByLabel('Stage password').fill('open sesame')
    await boPage.getByRole('button', { name: 'Join the stage' }).click()
    await boPage.getByText(/You are in this stage/).waitFor()
    await annPage.getByTestId('member-Bo').locator('[data-presence="online"]').waitFor()
    t.pass('Bo joined again with the password')

    // groups: the admin creates one, and it appears for Bo too
    await annPage.getByLabel('Group name').fill('Strings')
    await annPage.getByRole('button', { name: 'Create group' }).click()
    await boPage.getByTestId('group-Strings').waitFor()
    t.pass("a new group shows in the member's view at once")
    await annPage.getByText('Edit group Strings').click()
    await annPage.getByTestId('group-Strings').getByLabel('Name').fill('Strings and winds')
    await annPage.getByRole('button', { name: 'Save group' }).click()
    await boPage.getByTestId('group-Strings and winds').waitFor()
    t.pass('renamed live')

    // the admin moves Bo to the choir and makes him director: Bo's view follows
    const boRow = annPage.getByTestId('member-Bo')
    await boRow.getByText('Manage Bo').click()
    await boRow.getByLabel('Move Bo to').selectOption({ label: 'Choir' })
    await boRow.getByRole('button', { name: 'Move', exact: true }).click()
    await boPage.getByTestId('group-Choir').getByTestId('member-Bo').waitFor()
    t.pass('Bo sees himself in the choir')
    // his row moved to the choir's list on Ann's page too: a new row, its tools closed
    await annPage.getByTestId('group-Choir').getByTestId('member-Bo').getByText('Manage Bo').click()
    await annPage.getByTestId('member-Bo').getByRole('button', { name: 'Make director' }).click()
    await boPage.getByTestId('member-Bo').locator('.badge.director').waitFor()
    t.pass('Bo sees that he directs')

    // admin on and off: Bo's settings link comes and goes with it
    await annPage.getByTestId('member-Bo').getByRole('button', { name: 'Make admin' }).click()
    await boPage.getByRole('link', { name: 'Settings' }).waitFor()
    await annPage.getByTestId('member-Bo').getByRole('button', { name: 'Remove admin' }).click()
    await boPage.getByRole('link', { name: 'Settings' }).waitFor({ state: 'detached' })
    t.pass('promoted and demoted: the settings link follows')
    await shoot(t, annPage, 'stage-admin-tools')

    // removal, confirmed: Bo's view says so at once instead of breaking
    await annPage.getByTestId('member-Bo').getByRole('button', { name: 'Remove from stage…' }).click()
    await annPage.getByRole('button', { name: 'Yes, remove Bo' }).click()
    await boPage.getByRole('heading', { name: 'You were removed from this stage' }).waitFor()
    await annPage.getByTestId('member-Bo').waitFor({ state: 'detached' })
    t.pass("Bo's view says he was removed; Ann's roster lost him")
    t.equal(
      await boPage.getByRole('link', { name: 'Back to stages' }).getAttribute('href'),
      '#/stages',
      'with a way back',
    )
    await shoot(t, boPage, 'stage-removed')
    await boPage.reload()
    await boPage.getByRole('heading', { name: 'You are not in this stage' }).waitFor()
    t.pass('opened again: not a member, said plainly')
    await shoot(t, boPage, 'stage-not-member')

    // forget, confirmed: back to the stages
    // by keyboard: the confirmation takes the focus on Cancel, and Cancel gives it back
    await annPage.getByRole('button', { name: 'Forget this stage…' }).focus()
    await annPage.keyboard.press('Enter')
    t.equal(
      await annPage.locator(':focus').textContent(),
      'Cancel',
      'the open confirmation has the focus on Cancel',
    )
    await annPage.keyboard.press('Enter')
    t.equal(
      await annPage.locator(':focus').textContent(),
      'Forget this stage…',
      'cancelled: the focus is back on the button that asked',
    )
    await annPage.keyboard.press('Enter')
    await annPage.getByRole('button', { name: 'Yes, forget it' }).click()
    await annPage.waitForURL(/#\/stages$/)
    t.pass('forgetting leads back to the stages')
    t.same(
      await th.hub.store.find('members', { stageId: stage.id, userId: ann.actor.id }),
      [],
      "Ann's membership is gone from the store",
    )

    t.same([...a.problems, ...b.problems], [], 'no page errors, no CSP violations')
  },
)

t.test(
  'in Chromium: the chat keeps the last 200 messages, scrolled to the newest; a person not in the stage cannot type; dark colours pass axe too',
  { skip: withoutChromium },
  async (t) => {
    const th = await startTestHub(t, { WEB_DIR: await builtWebApp(t), ...roomy, QUOTA_CHAT_BURST: '1000' })
    const ann = await person(th, 'Ann')
    const bo = await person(th, 'Bo')
    const stage = await ok<{ id: string }>(ann.actor, 'stage.create', { name: 'Long chat' })
    const band = await ok<{ id: string }>(ann.actor, 'group.create', {
      stageId: stage.id,
      name: 'Band',
      color: '#16a34a',
    })
    await ok(bo.actor, 'stage.join', { stageId: stage.id, groupId: band.id })
    const browser = await launchChromium(t)
    const { page, problems } = await signedInContext(
      t,
      th.httpUrl,
      browser,
      ann.session,
      `#/stages/${stage.id}`,
    )
    await page.getByRole('heading', { name: 'Long chat' }).waitFor()
    t.ok(await page.getByLabel('Message').isDisabled(), 'not joined: the message input is disabled')
    await page.getByText('Join the stage to chat.').waitFor()

    await page.getByRole('button', { name: 'Join the stage' }).click()
    await page.getByText(/You are in this stage/).waitFor()
    for (let i = 1; i <= 205; i++) await ok(bo.actor, 'chat.send', { text: `message ${i}` })
    const log = page.getByRole('log')
    await log.getByText('message 205', { exact: true }).waitFor()
    const items = log.locator('li')
    t.equal(await items.count(), 200, '200 messages kept')
    t.match(await items.first().textContent(), /message 6$/, 'the oldest five dropped off the top')
    t.match(await items.last().textContent(), /message 205$/, 'the newest at the bottom')
    // runs in the page (the tests have no DOM types): the log's scroll box
    type Box = { scrollHeight: number; scrollTop: number; clientHeight: number }
    const scroll = await log.evaluate((el: Box) => el.scrollHeight - el.scrollTop - el.clientHeight)
    t.ok(scroll < 2, 'scrolled to the newest')

    await page.emulateMedia({ colorScheme: 'dark' })
    await shoot(t, page, 'stage-dark')
    t.same(problems, [], 'no page errors, no CSP violations')
  },
)

import t from 'tap'
import { connectAs, ok, roomy } from '../helpers/actors.ts'
import { launchChromium, withoutChromium } from '../helpers/chromium.ts'
import { startTestHub } from '../helpers/hub.ts'
import { builtWebApp, DESKTOP, PHONE, shoot, watchProblems } from '../helpers/web.ts'

t.test(
  "in Chromium: an invite link signed out says why to sign in; a refused invite shows the hub's message alone; every page names itself in the title, marks its section in the navigation and has the same way back; typing in the profile survives a live update",
  { skip: withoutChromium },
  async (t) => {
    const th = await startTestHub(t, { WEB_DIR: await builtWebApp(t), ...roomy })
    const browser = await launchChromium(t)
    const page = await browser.newPage({ viewport: DESKTOP })
    const problems = watchProblems(page)
    const main = page.getByRole('navigation', { name: 'Main' })

    // an invite link, signed out: the sign-in form says why
    await page.goto(`${th.httpUrl}/#/invite/${'x'.repeat(24)}`)
    await page.getByRole('heading', { name: 'Sign in' }).waitFor()
    await page.getByText('Sign in or create an account to open your invitation.').waitFor()
    t.equal(await page.title(), 'Sign in · stagehub', 'the title names the page')
    await shoot(t, page, 'sign-in-invite')
    await page.goto(`${th.httpUrl}/#/stages`)
    await page.getByRole('heading', { name: 'Sign in' }).waitFor()
    t.equal(
      await page.getByText('to open your invitation').count(),
      0,
      'without an invite link the form does not mention one',
    )

    await page.goto(`${th.httpUrl}/#/invite/${'x'.repeat(24)}`)
    await page.getByRole('button', { name: 'Create an account' }).click()
    await page.getByLabel('Name').fill('Ann')
    await page.getByLabel('E-mail').fill('ann@example.org')
    await page.getByLabel('Password').fill('correct horse battery')
    await page.getByRole('button', { name: 'Sign up' }).click()

    // the refusal: the hub's message as a sentence, without the action and error code
    const refusal = page.getByRole('alert')
    await page.getByRole('heading', { name: 'This invitation cannot be used' }).waitFor()
    const text = (await refusal.textContent()) ?? ''
    t.match(text, /^This invite \(or its stage\)/, "the hub's message, starting as a sentence")
    t.notMatch(text, /invite\.preview|not_found|refused \(/, 'no action name or error code')
    t.equal(await page.title(), 'Invitation · stagehub')
    t.equal(
      await page.getByRole('link', { name: 'Back to stages' }).getAttribute('href'),
      '#/stages',
      'the way back, as on every page',
    )
    t.equal(await main.locator('[aria-current]').count(), 0, 'an invitation is in no section')

    // a stage, its mixer and settings: titles, the way back, Stages marked as the section
    const userId = await page.evaluate(
      () => (JSON.parse(localStorage.getItem('stagehub.session')!) as { userId: string }).userId,
    )
    const ann = await connectAs(th, userId, 'Ann')
    const stage = await ok<{ id: string }>(ann, 'stage.create', { name: 'Quartet' })
    await page.getByRole('link', { name: 'Back to stages' }).click()
    await page.getByRole('heading', { name: 'Your stages' }).waitFor()
    t.equal(await page.title(), 'Your stages · stagehub')
    t.equal(
      await main.getByRole('link', { name: 'Stages' }).getAttribute('aria-current'),
      'page',
      'the stages list is the current page',
    )
    await page.getByRole('link', { name: 'Quartet', exact: true }).click()
    await page.getByRole('heading', { name: 'Quartet', level: 1 }).waitFor()
    t.equal(await page.title(), 'Quartet · stagehub', "a stage's page is titled with its name")
    t.equal(
      await main.getByRole('link', { name: 'Stages' }).getAttribute('aria-current'),
      'location',
      'on a stage, Stages is marked as where you are',
    )
    t.equal(await page.getByRole('link', { name: 'Back to stages' }).getAttribute('href'), '#/stages')

    await page.getByRole('link', { name: 'Mixer' }).click()
    await page.getByRole('heading', { name: 'Mixer of Quartet' }).waitFor()
    t.equal(await page.title(), 'Mixer · Quartet · stagehub')
    t.equal(await main.getByRole('link', { name: 'Stages' }).getAttribute('aria-current'), 'location')
    await page.getByRole('link', { name: 'Back to Quartet' }).click()
    await page.getByRole('heading', { name: 'Quartet', level: 1 }).waitFor()
    t.equal(
      await page.evaluate(
        () =>
          (globalThis as unknown as { document: { activeElement: { id: string } } }).document.activeElement
            .id,
      ),
      'page',
      'the link followed went away with its page: the focus is at the start of the new one, not lost',
    )
    await page.keyboard.press('Tab')
    t.equal(await page.locator(':focus').textContent(), '← Back to stages', 'and Tab goes on in the new page')
    await page.getByRole('link', { name: 'Settings' }).click()
    await page.getByRole('heading', { name: 'Settings of Quartet' }).waitFor()
    t.equal(await page.title(), 'Settings · Quartet · stagehub')
    t.equal(
      await page.getByRole('link', { name: 'Back to Quartet' }).getAttribute('href'),
      `#/stages/${stage.id}`,
      "settings lead back to the stage's page",
    )
    await page.setViewportSize(PHONE)
    t.equal(
      await page.evaluate(
        () =>
          (globalThis as unknown as { document: { documentElement: { scrollWidth: number } } }).document
            .documentElement.scrollWidth,
      ),
      PHONE.width,
      'the settings fit the phone: nothing wider than 390 px',
    )
    await page.setViewportSize(DESKTOP)

    // the account: a profile change from elsewhere does not wipe what is being typed
    await main.getByRole('link', { name: 'Account' }).click()
    await page.getByRole('heading', { name: 'Hello, Ann' }).waitFor()
    t.equal(await page.title(), 'Account · stagehub')
    t.equal(await main.getByRole('link', { name: 'Account' }).getAttribute('aria-current'), 'page')
    const name = page.getByLabel('Name', { exact: true })
    t.equal(await name.inputValue(), 'Ann', 'the name field starts from the profile')
    await name.fill('Ann Typing')
    await ok(ann, 'user.update', { name: 'Ann Elsewhere', avatarUrl: 'https://example.org/ann.png' })
    await page.getByRole('heading', { name: 'Hello, Ann Elsewhere' }).waitFor()
    t.equal(await name.inputValue(), 'Ann Typing', 'the name being typed is kept')
    t.equal(
      await page.getByLabel(/Picture/).inputValue(),
      'https://example.org/ann.png',
      'a field not edited shows the new value',
    )
    await page.getByRole('button', { name: 'Save profile' }).click()
    await page.getByRole('heading', { name: 'Hello, Ann Typing' }).waitFor()
    t.pass('and saving sends what was typed')

    t.same(problems, [], 'no page errors, no CSP violations')
  },
)

import jwt from 'jsonwebtoken'
import t from 'tap'
import { launchChromium, withoutChromium } from '../helpers/chromium.ts'
import { TEST_SECRET, startTestHub } from '../helpers/hub.ts'
import { builtWebApp, DESKTOP, shoot } from '../helpers/web.ts'

t.test(
  'in Chromium: sign up, see the name live and online, stay signed in across a reload, sign out, sign in, rename, change the password, an expired token',
  { skip: withoutChromium },
  async (t) => {
    const th = await startTestHub(t, { WEB_DIR: await builtWebApp(t) })
    const browser = await launchChromium(t)
    const page = await browser.newPage({ viewport: DESKTOP })
    const problems: string[] = []
    page.on('pageerror', (err) => problems.push(err.message))
    // a refused sign-in's 401 is logged too: only policy violations count here
    page.on('console', (m) => /Content Security Policy/i.test(m.text()) && problems.push(m.text()))
    const connection = page.getByTestId('connection')

    // the account page; signing in keeps the address (an invite link survives it the same way)
    await page.goto(`${th.httpUrl}/#/account`)
    await page.getByRole('heading', { name: 'Sign in' }).waitFor()
    await shoot(t, page, 'sign-in')
    await page.getByRole('button', { name: 'Create an account' }).click()
    t.equal(
      await page.locator(':focus').textContent(),
      'Create your account',
      'switching forms moves the focus to the new heading',
    )
    await page.getByLabel('Name').fill('Ann Example')
    await page.getByLabel('E-mail').fill('ann@example.org')
    await page.getByLabel('Password').fill('correct horse battery')
    await page.getByRole('button', { name: 'Sign up' }).click()

    await page.getByTestId('profile-name').getByText('Ann Example').waitFor()
    await connection.getByText('Online').waitFor()
    t.equal(await connection.getAttribute('role'), 'status', 'the connection state is announced')
    const stored = await page.evaluate(
      () => JSON.parse(localStorage.getItem('stagehub.session')!) as { userId: string },
    )
    const user = (await th.hub.store.get('users', stored.userId)) as { name?: string } | null
    t.equal(user?.name, 'Ann Example', 'the account exists on the hub')
    await shoot(t, page, 'home')

    await page.reload()
    await page.getByTestId('profile-name').getByText('Ann Example').waitFor()
    await connection.getByText('Online').waitFor()
    t.pass('after a reload: still signed in, online, the name from the retained users/{u}')

    await page.getByRole('button', { name: 'Sign out' }).click()
    await page.getByRole('heading', { name: 'Sign in' }).waitFor()
    t.equal(await page.evaluate(() => localStorage.getItem('stagehub.session')), null, 'the token is gone')
    await page.reload()
    await page.getByRole('heading', { name: 'Sign in' }).waitFor()
    t.equal(await connection.count(), 0, 'signed out after a reload too: no connection')

    await page.getByLabel('E-mail').fill('ann@example.org')
    await page.getByLabel('Password').fill('wrong password')
    await page.getByRole('button', { name: 'Sign in' }).click()
    t.match(
      await page.getByRole('alert').textContent(),
      /^Wrong e-mail address or password/,
      "the hub's message",
    )
    await page.getByLabel('Password').fill('correct horse battery')
    await page.getByRole('button', { name: 'Sign in' }).click()
    await connection.getByText('Online').waitFor()
    t.pass('signed in again, online')

    // the profile: a new name comes back as the retained users/{u}; a password change keeps this session
    await page.getByLabel('Name', { exact: true }).fill('Ann B. Example')
    await page.getByLabel(/Picture/).fill('https://example.org/ann.png')
    await page.getByRole('button', { name: 'Save profile' }).click()
    await page.getByRole('heading', { name: 'Hello, Ann B. Example' }).waitFor()
    t.pass('the new name is shown from the retained profile')
    await page.locator('img.avatar').waitFor()
    t.equal(
      await page.locator('img.avatar').getAttribute('src'),
      'https://example.org/ann.png',
      'and the picture',
    )
    await page.getByLabel(/Picture/).fill('')
    await page.getByRole('button', { name: 'Save profile' }).click()
    await page.locator('img.avatar').waitFor({ state: 'detached' })
    t.pass('an emptied picture address removes the picture')
    await page.getByLabel('Current password').fill('not my password')
    await page.getByLabel('New password').fill('new horse battery')
    await page.getByRole('button', { name: 'Change password' }).click()
    await page.getByRole('alert').waitFor()
    t.match(
      await page.getByRole('alert').textContent(),
      /password/i,
      "a wrong current password: the hub's message",
    )
    await page.getByLabel('Current password').fill('correct horse battery')
    await page.getByLabel('New password').fill('new horse battery')
    await page.getByRole('button', { name: 'Change password' }).click()
    await page.getByText('Password changed').waitFor()
    await connection.getByText('Online').waitFor()
    await shoot(t, page, 'profile')
    await page.reload()
    await connection.getByText('Online').waitFor()
    t.pass('the fresh token was kept: online after a reload')
    await page.getByRole('button', { name: 'Sign out' }).click()
    await page.getByLabel('E-mail').fill('ann@example.org')
    await page.getByLabel('Password').fill('new horse battery')
    await page.getByLabel('Password').press('Enter')
    await connection.getByText('Online').waitFor()
    t.pass('signed in with the new password, by keyboard (Enter in the password field)')

    // a session whose token expired: the hub's reason, no endless retries
    const expired = th.token({ sub: stored.userId }, -60)
    await page.evaluate(
      (token) =>
        localStorage.setItem(
          'stagehub.session',
          JSON.stringify({
            ...JSON.parse(localStorage.getItem('stagehub.session')!),
            token,
            expiresAt: new Date(Date.now() - 60_000).toISOString(),
          }),
        ),
      expired,
    )
    await page.reload()
    await connection.getByText('Refused').waitFor()
    t.match(
      await page.getByRole('alert').textContent(),
      /expired.*sign in again/s,
      "the hub's reason and what to do",
    )
    await shoot(t, page, 'expired')

    t.same(problems, [], 'no page errors, no CSP violations')
  },
)

t.test(
  "in Chromium: a token in its last hour that cannot be renewed (no network) asks to sign in again; the hub going away shows 'Reconnecting'",
  { skip: withoutChromium },
  async (t) => {
    const th = await startTestHub(t, { WEB_DIR: await builtWebApp(t), USER_TOKEN_TTL_SECONDS: '1800' })
    const user = await th.hub.users.createUser({ name: 'Bo' })
    const browser = await launchChromium(t)
    const page = await browser.newPage({ viewport: DESKTOP })
    // renewal cannot reach the hub (session.test.ts renews for real)
    await page.route('**/auth/renew', (route) => route.abort('internetdisconnected'))
    await page.goto(`${th.httpUrl}/`)
    // a 30-minute token issued 25 minutes ago: due for renewal at once
    const now = Math.floor(Date.now() / 1000)
    const token = jwt.sign(
      { role: 'user', name: 'Bo', ver: 0, iat: now - 1500, exp: now + 300 },
      TEST_SECRET,
      {
        subject: user.id,
      },
    )
    await page.evaluate((session) => localStorage.setItem('stagehub.session', JSON.stringify(session)), {
      userId: user.id,
      token,
      expiresAt: new Date((now + 300) * 1000).toISOString(),
    })
    await page.reload()
    const connection = page.getByTestId('connection')
    await connection.getByText('Online').waitFor()
    await page.getByText(/Your sign-in ends at .*could not be renewed: the hub cannot be reached/).waitFor()
    t.pass('a token in its last minutes whose renewal fails: the warning with its end time')
    await shoot(t, page, 'expiry-warning')

    await th.hub.close()
    await connection.getByText('Reconnecting…').waitFor()
    t.pass('the hub closed: reconnecting')
    await page.getByRole('button', { name: 'Sign in again' }).click()
    await page.getByRole('heading', { name: 'Sign in' }).waitFor()
    t.pass('"Sign in again" leads to the sign-in form')
  },
)

import jwt from 'jsonwebtoken'
import t from 'tap'
import { launchChromium, withoutChromium } from '../helpers/chromium.ts'
import { TEST_SECRET, startTestHub } from '../helpers/hub.ts'
import { builtWebApp, DESKTOP, shoot } from '../helpers/web.ts'

interface Stored {
  userId: string
  token: string
  expiresAt: string
}

t.test(
  'in Chromium: a short-lived sign-in is renewed in the background and stays online across its original end, through a reconnect',
  { skip: withoutChromium },
  async (t) => {
    // 12 s tokens: renewed once 8 s have passed; the hub closes the connection made with the first at its end
    const th = await startTestHub(t, { WEB_DIR: await builtWebApp(t), USER_TOKEN_TTL_SECONDS: '12' })
    const browser = await launchChromium(t)
    const page = await browser.newPage({ viewport: DESKTOP })
    const problems: string[] = []
    page.on('pageerror', (err) => problems.push(err.message))
    const connection = page.getByTestId('connection')

    await page.goto(`${th.httpUrl}/#/account`)
    await page.getByRole('button', { name: 'Create an account' }).click()
    await page.getByLabel('Name').fill('Cleo')
    await page.getByLabel('E-mail').fill('cleo@example.org')
    await page.getByLabel('Password').fill('correct horse battery')
    await page.getByRole('button', { name: 'Sign up' }).click()
    await connection.getByText('Online').waitFor()
    const first = await page.evaluate(() => JSON.parse(localStorage.getItem('stagehub.session')!) as Stored)
    // every state the connection badge shows from now on
    await page.evaluate(() => {
      // runs in the page (the test's types have no DOM)
      interface Node {
        textContent: string | null
      }
      const win = globalThis as unknown as {
        seen: string[]
        document: { querySelector(selector: string): Node }
        MutationObserver: new (callback: () => void) => { observe(node: Node, options: object): void }
      }
      const seen: string[] = (win.seen = [])
      const badge = win.document.querySelector('[data-testid=connection]')
      new win.MutationObserver(() => seen.push(badge.textContent ?? '')).observe(badge, {
        subtree: true,
        childList: true,
        characterData: true,
      })
    })

    await page.waitForFunction(
      (token) => (JSON.parse(localStorage.getItem('stagehub.session')!) as Stored).token !== token,
      first.token,
      { timeout: 11_000 },
    )
    const second = await page.evaluate(() => JSON.parse(localStorage.getItem('stagehub.session')!) as Stored)
    t.equal(second.userId, first.userId, 'the same person')
    t.ok(Date.parse(second.expiresAt) > Date.parse(first.expiresAt), 'a new token with a later end')
    t.ok(Date.now() < Date.parse(first.expiresAt), 'renewed before the first token ended')

    // past the first token's end: the hub closed that connection; the app came back with the new token
    await page.waitForTimeout(Math.max(0, Date.parse(first.expiresAt) - Date.now()) + 2_500)
    await connection.getByText('Online').waitFor({ timeout: 5_000 })
    const seen = await page.evaluate(() => (globalThis as unknown as { seen: string[] }).seen)
    t.ok(
      seen.includes('Reconnecting…'),
      `a reconnect happened after the first token's end: ${seen.join(', ')}`,
    )
    t.equal(seen.at(-1), 'Online', 'and it ended online')
    t.notOk(seen.includes('Refused'), 'never refused')
    t.equal(await page.getByTestId('expiry-warning').count(), 0, 'no request to sign in again')

    // the connection works: a rename comes back as the retained profile
    await page.getByLabel('Name', { exact: true }).fill('Cleo R.')
    await page.getByRole('button', { name: 'Save profile' }).click()
    await page.getByRole('heading', { name: 'Hello, Cleo R.' }).waitFor()
    t.pass('requests and retained state work on the renewed connection')
    await page.reload()
    await connection.getByText('Online').waitFor()
    t.pass('the renewed token was kept: online after a reload, past the first token’s end')
    t.same(problems, [], 'no page errors')
  },
)

t.test(
  'in Chromium: a renewal the hub refuses (the sign-in was revoked) stops and asks to sign in again',
  { skip: withoutChromium },
  async (t) => {
    const th = await startTestHub(t, { WEB_DIR: await builtWebApp(t), USER_TOKEN_TTL_SECONDS: '1800' })
    const user = await th.hub.users.createUser({ name: 'Dan' })
    const browser = await launchChromium(t)
    const page = await browser.newPage({ viewport: DESKTOP })
    await page.goto(`${th.httpUrl}/#/account`)
    // a token of generation 0 issued 25 minutes ago: due for renewal at once
    const now = Math.floor(Date.now() / 1000)
    const token = jwt.sign(
      { role: 'user', name: 'Dan', ver: 0, iat: now - 1500, exp: now + 300 },
      TEST_SECRET,
      {
        subject: user.id,
      },
    )
    let renewals = 0
    await page.route('**/auth/renew', async (route) => {
      renewals++
      // answered as the hub would for a revoked token, while the connection itself stays up
      await route.fulfill({
        status: 401,
        contentType: 'application/json',
        body: JSON.stringify({
          error: {
            code: 'unauthorized',
            message: 'token generation 0 was revoked (current: 1): sign in again',
          },
        }),
      })
    })
    await page.evaluate((session) => localStorage.setItem('stagehub.session', JSON.stringify(session)), {
      userId: user.id,
      token,
      expiresAt: new Date((now + 300) * 1000).toISOString(),
    })
    await page.reload()
    const warning = page.getByTestId('expiry-warning')
    await warning.waitFor()
    t.match(
      await warning.textContent(),
      /could not be renewed: token generation 0 was revoked.*sign in again/,
    )
    await page.waitForTimeout(3_000)
    t.equal(renewals, 1, 'a refusal is not retried')
    await shoot(t, page, 'renewal-refused')
    await page.getByRole('button', { name: 'Sign in again' }).click()
    await page.getByRole('heading', { name: 'Sign in' }).waitFor()
    t.pass('"Sign in again" leads to the sign-in form')
  },
)

t.test(
  'in Chromium: a renewal that cannot reach the hub is retried with backoff; the warning shows meanwhile and goes once it succeeds',
  { skip: withoutChromium },
  async (t) => {
    const th = await startTestHub(t, { WEB_DIR: await builtWebApp(t) })
    const user = await th.hub.users.createUser({ name: 'Eve' })
    const browser = await launchChromium(t)
    const page = await browser.newPage({ viewport: DESKTOP })
    await page.goto(`${th.httpUrl}/#/account`)
    // 5 minutes left of 30: due for renewal at once, and in its last hour
    const now = Math.floor(Date.now() / 1000)
    const token = jwt.sign(
      { role: 'user', name: 'Eve', ver: 0, iat: now - 1500, exp: now + 300 },
      TEST_SECRET,
      {
        subject: user.id,
      },
    )
    const attempts: number[] = []
    await page.route('**/auth/renew', async (route) => {
      attempts.push(Date.now())
      // the first two tries find no network
      if (attempts.length <= 2) await route.abort('internetdisconnected')
      else await route.continue()
    })
    await page.evaluate((session) => localStorage.setItem('stagehub.session', JSON.stringify(session)), {
      userId: user.id,
      token,
      expiresAt: new Date((now + 300) * 1000).toISOString(),
    })
    await page.reload()
    const warning = page.getByTestId('expiry-warning')
    await warning.waitFor()
    t.match(
      await warning.textContent(),
      /could not be renewed: the hub cannot be reached/,
      'while it fails: the warning',
    )
    await page.waitForFunction(
      (old) => (JSON.parse(localStorage.getItem('stagehub.session')!) as Stored).token !== old,
      token,
      { timeout: 15_000 },
    )
    await warning.waitFor({ state: 'detached' })
    t.pass('renewed on the third try: the warning is gone')
    t.equal(attempts.length, 3)
    const [first, second, third] = attempts as [number, number, number]
    t.ok(
      second - first >= 1_500 && third - second >= 3_500,
      `backoff: ${second - first} ms, then ${third - second} ms`,
    )
    await page.getByTestId('connection').getByText('Online').waitFor()
    const renewed = await page.evaluate(() => JSON.parse(localStorage.getItem('stagehub.session')!) as Stored)
    t.ok(
      Date.parse(renewed.expiresAt) > Date.now() + 3600_000,
      'the new token has the full configured lifetime',
    )
  },
)

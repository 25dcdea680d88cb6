import t from 'tap'
import type { RouterState } from '../../schemas/actions/router.ts'
import { launchChromium, withoutChromium } from '../helpers/chromium.ts'
import { Requester, startTestHub, waitUntil } from '../helpers/hub.ts'
import { actor, connectDevice, ok, roomy } from '../helpers/actors.ts'
import { builtWebApp, DESKTOP, shoot } from '../helpers/web.ts'

const berlin = { lat: 52.52, lng: 13.405 }

t.test(
  'in Chromium: the operator page with an admin token shows the hub, a router online with its load and stage, the release rollout; the router going away shows offline; a user token is refused',
  { skip: withoutChromium },
  async (t) => {
    const th = await startTestHub(t, { WEB_DIR: await builtWebApp(t), ...roomy })
    const adminToken = th.token({ sub: 'ops', role: 'admin' })
    const opsClient = await th.connect({ clientId: 'ops-setup', token: adminToken })
    const ops = { id: 'ops', name: 'operator', client: opsClient, req: new Requester(opsClient) }

    // a router: registered, connected with its token, announced, reporting its load
    const { router, token: routerToken } = await ok<{ router: RouterState; token: string }>(
      ops,
      'router.create',
      { name: 'eu-berlin-1' },
    )
    const routerClient = await th.connect({
      clientId: router.id,
      token: routerToken,
      will: {
        topic: `routers/${router.id}/presence`,
        payload: Buffer.from(JSON.stringify({ state: 'lost', session: 1 })),
        qos: 1,
        retain: true,
      },
    })
    await routerClient.publishAsync(
      `routers/${router.id}/presence`,
      JSON.stringify({
        state: 'online',
        session: 1,
        capabilities: ['mediasoup', 'ov'],
        capacity: { mediasoup: 5, ov: 3 },
        position: berlin,
        url: 'wss://eu-berlin-1.example.org',
      }),
      { qos: 1, retain: true },
    )
    await routerClient.publishAsync(
      `routers/${router.id}/load`,
      JSON.stringify({ cpu: 0.42, stages: 1, transports: 3 }),
      { qos: 1 },
    )

    // a person with a stage near the router, and an ov-box the release reaches and that reports it
    const alice = await actor(th, 'Alice')
    const stage = await ok<{ id: string }>(alice, 'stage.create', {
      name: 'Berlin jam',
      preferredPosition: berlin,
      audioType: 'mediasoup',
      videoType: 'none',
    })
    const { device, token: boxToken } = await ok<{ device: { id: string }; token: string }>(
      alice,
      'device.create',
      { name: 'Box', kind: 'ovbox' },
    )
    const box = await connectDevice(th, device.id, boxToken)
    await ok(ops, 'release.publish', {
      release: {
        version: '1.4.0',
        ovClientVersion: '0.20.1',
        artifact: { url: 'https://releases.example.org/ovbox-1.4.0.img', sha256: 'c'.repeat(64), size: 4096 },
      },
    })
    await ok(ops, 'release.rollout', { version: '1.4.0', percent: 100, deviceIds: [] })
    await box.client.publishAsync(
      `devices/${device.id}/reported`,
      JSON.stringify({ firmware: { version: '1.4.0', state: 'UPDATED' } }),
      { qos: 1 },
    )
    await waitUntil(
      async () => (await ok<{ updated: number }>(ops, 'release.status', { version: '1.4.0' })).updated === 1,
      'the box reported the update',
    )

    const browser = await launchChromium(t)
    const page = await browser.newPage({ viewport: DESKTOP })
    const problems: string[] = []
    page.on('pageerror', (err) => problems.push(err.message))
    page.on('console', (m) => /Content Security Policy/i.test(m.text()) && problems.push(m.text()))
    await page.goto(`${th.httpUrl}/#/operator`)
    await page.getByRole('heading', { name: 'Operator' }).waitFor()
    t.pass('the operator page opens without a user sign-in')
    await shoot(t, page, 'operator-token')

    // a user's token is not an operator's: the hub's view of it, said plainly
    await page.getByLabel('Admin token').fill(th.token({ sub: alice.id, name: 'Alice' }))
    await page.getByRole('button', { name: 'Open the operator view' }).click()
    t.match(
      await page.getByRole('alert').textContent(),
      /This is a user token: the operator page needs an admin token/,
      'a user token: a clear refusal',
    )
    await page.getByLabel('Admin token').fill('not-a-token')
    await page.getByRole('button', { name: 'Open the operator view' }).click()
    await page
      .getByRole('alert')
      .getByText(/The hub refused this token: token refused/)
      .waitFor()
    t.pass("a malformed token: the hub's reason")
    t.equal(await page.evaluate(() => sessionStorage.getItem('stagehub.operatorToken')), null, 'nothing kept')

    await page.getByLabel('Admin token').fill(adminToken)
    await page.getByLabel('Admin token').press('Enter')
    await page.getByTestId('operator-connection').getByText('Online').waitFor()
    t.equal(
      await page.getByLabel('Admin token').count(),
      0,
      'the console replaces the token form, by keyboard (Enter)',
    )

    const tile = page.getByTestId(`router-${router.id}`)
    await tile.getByText('Online').waitFor()
    await tile.getByText('CPU 0.42 per core, 1 stage, 3 transports').waitFor()
    await tile.getByText(stage.id).waitFor()
    t.match(await tile.textContent(), /5 mediasoup, 3 ov stages/, 'its capacity')
    t.match(await tile.textContent(), /52\.52, 13\.405/, 'its position')
    t.pass('the router: online, its load and its assigned stage')

    const counts = page.getByTestId('client-counts')
    // connected now: Alice; the box; the router; the setup operator and the page
    await waitUntil(async () => /1 People/.test((await counts.textContent()) ?? ''), 'counts arrive')
    const text = (await counts.textContent())!.replace(/\s+/g, ' ')
    t.match(text, /1 People/, 'one person connected')
    t.match(text, /1 Devices/, 'one device')
    t.match(text, /1 Routers/, 'one router')
    t.match(text, /2 Operators/, 'two operator connections (the page is one)')
    t.match(text, /5 Total/)

    const release = page.getByTestId('release-1.4.0')
    await release.getByText('1 of 1 updated · 0 failed · 0 pending').waitFor()
    t.match(await release.textContent(), /Rolled out to 100 % of ov-boxes/, 'the rollout')
    t.equal(await release.locator('progress').getAttribute('value'), '1', 'the progress bar')
    await shoot(t, page, 'operator')

    await routerClient.endAsync()
    await tile.getByText('Offline').waitFor()
    t.pass('the router going away shows offline, live')

    await page.getByRole('button', { name: 'Sign out operator' }).click()
    await page.getByLabel('Admin token').waitFor()
    t.equal(
      await page.evaluate(() => sessionStorage.getItem('stagehub.operatorToken')),
      null,
      'signing the operator out forgets the token',
    )
    t.same(problems, [], 'no page errors, no CSP violations')
  },
)

t.test(
  'in Chromium: an admin token that expires while the operator page is open: the hub’s reason, no endless retries',
  { skip: withoutChromium },
  async (t) => {
    const th = await startTestHub(t, { WEB_DIR: await builtWebApp(t) })
    const browser = await launchChromium(t)
    const page = await browser.newPage({ viewport: DESKTOP })
    await page.goto(`${th.httpUrl}/#/operator`)
    await page.getByLabel('Admin token').fill(th.token({ sub: 'ops', role: 'admin' }, 3))
    await page.getByRole('button', { name: 'Open the operator view' }).click()
    await page.getByTestId('operator-connection').getByText('Online').waitFor()
    const refusal = page.getByRole('alert').filter({ hasText: 'The hub refused the admin token' })
    await refusal.waitFor({ timeout: 15_000 })
    t.match(await refusal.textContent(), /token refused: expired at .*Sign out here and paste a new one/)
    t.equal(await page.getByTestId('operator-connection').count(), 0, 'no connection state but the refusal')
    await page.getByRole('button', { name: 'Sign out operator' }).click()
    await page.getByLabel('Admin token').waitFor()
    t.pass('signing out leads back to the token form')
  },
)

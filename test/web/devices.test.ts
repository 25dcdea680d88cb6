import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import type { Locator, Page } from 'playwright-core'
import t from 'tap'
import { claimDevice } from '../../devices/ovbox/claim.ts'
import { startSimulator } from '../../devices/simulator/simulator.ts'
import { connectAs, ok, roomy } from '../helpers/actors.ts'
import { launchChromium, withoutChromium } from '../helpers/chromium.ts'
import { connackCode, type TestHub, startTestHub, waitUntil } from '../helpers/hub.ts'
import { builtWebApp, DESKTOP, openSignedIn, shoot, watchProblems } from '../helpers/web.ts'

interface StoredBrowserDevice {
  deviceId: string
  token: string
}

/** A person signed in (their session in localStorage, as after signing in) on the devices page. */
async function signedInPage(
  th: TestHub,
  page: Page,
  user: Awaited<ReturnType<TestHub['hub']['users']['createUser']>>,
  { clock = false } = {},
): Promise<{ page: Page; problems: string[] }> {
  // a clock the test can move on (time still flows by itself)
  if (clock) await page.clock.install()
  const problems = watchProblems(page)
  await openSignedIn(page, `${th.httpUrl}/#/devices`, th.hub.users.userToken(user))
  await page.getByTestId('connection').getByText('Online').waitFor()
  return { page, problems }
}

const card = (page: Page, name: string): Locator =>
  page.getByTestId('device').filter({ has: page.getByRole('heading', { name, exact: true }) })

/** How long until the card's presence says `state` (at most `timeoutMs`). */
async function msUntilPresence(cardOf: Locator, state: 'Online' | 'Offline', timeoutMs: number) {
  const start = Date.now()
  await cardOf.getByTestId('presence').getByText(state, { exact: true }).waitFor({ timeout: timeoutMs })
  return Date.now() - start
}

const quiet = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' })

t.test(
  'in Chromium: a simulated ov-box going online and offline shows in the list within a second; a rename, the switches, jitter, a track and the sound card edited in the browser reach its devices/{d}/config',
  { skip: withoutChromium },
  async (t) => {
    const th = await startTestHub(t, { WEB_DIR: await builtWebApp(t), ...roomy })
    const user = await th.hub.users.createUser({ name: 'Dee' })
    const browser = await launchChromium(t)
    const { page, problems } = await signedInPage(th, await browser.newPage({ viewport: DESKTOP }), user, {
      clock: true,
    })

    const owner = await connectAs(th, user.id, 'Dee')
    const created = await ok<{ device: { id: string }; token: string }>(owner, 'device.create', {
      name: 'Stage box',
      kind: 'ovbox',
    })
    const deviceId = created.device.id
    const box = card(page, 'Stage box')
    await box.getByTestId('presence').getByText('Offline').waitFor()
    t.equal(await box.getByText('ov-box', { exact: true }).count(), 1, 'a new box: its kind, offline')
    t.match(await box.getByTestId('presence').textContent(), /never connected yet/, 'never connected yet')

    const sim = await startSimulator({
      hubUrl: th.mqttUrl,
      boxes: [{ deviceId, token: created.token }],
      statusIntervalSeconds: 30,
      backoff: { initialMs: 100, maxMs: 1000 },
      log: quiet,
    })
    let running = true
    t.teardown(() => running && sim.stop())
    await waitUntil(() => sim.stats().online === 1, 'the box is online', 10_000)
    const online = await msUntilPresence(box, 'Online', 1000)
    t.ok(online < 1000, `online in the list ${online} ms after the box said so`)
    await box.getByText(/Simulated USB Audio \(alsa, 48 kHz, 2 in \/ 2 out\)/).waitFor()
    t.pass('its sound card as the box reported it')
    await box.getByText(/connected just now/).waitFor()
    t.pass('with when it connected')

    // remote control: name, switches, jitter, the active sound card
    // by keyboard: the disclosure opens with Enter
    await box.locator('summary', { hasText: 'Remote control' }).focus()
    await page.keyboard.press('Enter')
    await box.getByLabel('Name', { exact: true }).fill('Main box')
    await box.getByLabel('Receive video').uncheck()
    // a change from elsewhere while the person edits: the form follows it but keeps their edits
    await ok(owner, 'device.update', { deviceId, settings: { p2p: true } })
    await waitUntil(() => sim.box(deviceId)?.lastConfig?.desired.p2p === true, 'the other change arrived')
    await page.waitForTimeout(200)
    t.equal(
      await box.getByLabel('Name', { exact: true }).inputValue(),
      'Main box',
      'a live update of the device leaves a name being typed alone',
    )
    t.equal(await box.getByLabel('Receive video').isChecked(), false, 'and a switch being changed')
    await box.getByLabel('Sender jitter (ms)').fill('1001')
    await box.getByRole('button', { name: 'Save settings' }).click()
    t.equal(
      await box
        .getByLabel('Sender jitter (ms)')
        .evaluate(
          (input) => (input as unknown as { validity: { rangeOverflow: boolean } }).validity.rangeOverflow,
        ),
      true,
      "a jitter above the schema's 1000 ms is refused by the form",
    )
    await box.getByLabel('Sender jitter (ms)').fill('7.5')
    await box.getByLabel('Active sound card').selectOption('hw:1')
    await box.getByRole('button', { name: 'Save settings' }).click()
    const main = card(page, 'Main box')
    await main.getByText('Saved: the device gets its new configuration').waitFor()
    await waitUntil(
      () => sim.box(deviceId)?.lastConfig?.name === 'Main box',
      'the box has its new name in devices/{d}/config',
    )
    t.same(
      sim.box(deviceId)?.lastConfig?.desired,
      { p2p: true, receiveVideo: false, senderJitter: 7.5, soundCardName: 'hw:1' },
      'only what changed was sent: the switch, the jitter, the card',
    )

    // a track: channel 2 of the simulated card as "Vocals", then its gain
    const add = main.getByRole('form', { name: 'Add a track' })
    await add.getByRole('combobox', { name: /^Input channel/ }).selectOption({ label: '2' })
    await add.getByLabel('Track name').fill('Vocals')
    await add.getByRole('button', { name: 'Add track' }).click()
    await waitUntil(
      () => sim.box(deviceId)?.lastConfig?.tracks.some((track) => track.name === 'Vocals') === true,
      'the new track is in the configuration',
    )
    t.match(
      sim.box(deviceId)?.lastConfig?.tracks,
      [{ soundCardName: 'hw:1', channel: 1, name: 'Vocals', gain: 1, directivity: 'omni' }],
      'channel 2 of the card, sent as Vocals',
    )
    const vocals = main.getByRole('form', { name: 'Track Vocals' })
    await vocals.getByLabel('Gain').fill('0.5')
    await vocals.getByLabel('Directivity').selectOption('cardioid')
    await vocals.getByRole('button', { name: 'Save track' }).click()
    await waitUntil(
      () => sim.box(deviceId)?.lastConfig?.tracks[0]?.gain === 0.5,
      'the new gain is in the configuration',
    )
    t.equal(sim.box(deviceId)?.lastConfig?.tracks[0]?.directivity, 'cardioid', 'and the directivity')
    await main.getByTestId('tracks').getByText('Vocals').waitFor()

    // the sound card's fields: a larger period
    const soundCard = main.locator('form.soundcard-form').first()
    await soundCard.getByLabel('Period size').fill('128')
    await soundCard.getByRole('button', { name: 'Save sound card' }).click()
    await waitUntil(
      () => sim.box(deviceId)?.lastConfig?.soundCards[0]?.periodSize === 128,
      'the new period size is in the configuration',
    )
    t.match(
      sim.box(deviceId)?.lastConfig?.soundCards,
      [{ name: 'hw:1', label: 'Simulated USB Audio', driver: 'alsa', periodSize: 128, numPeriods: 2 }],
      'the rest of the card as it was',
    )
    await shoot(t, page, 'devices-remote-control')

    await sim.stop()
    running = false
    const offline = await msUntilPresence(main, 'Offline', 1000)
    t.ok(offline < 1000, `offline in the list ${offline} ms after the box stopped`)
    await main.getByText(/last seen just now/).waitFor()
    t.pass('with when it was last seen')
    await page.clock.fastForward('03:00')
    await main.getByText(/last seen 3 minutes ago/).waitFor()
    t.pass('which moves on by itself: three minutes later, "3 minutes ago"')

    await main.getByRole('button', { name: 'Stop sending' }).click()
    await main.getByTestId('tracks').getByText('none').waitFor()
    const stored = (await th.hub.store.get('devices', deviceId)) as { tracks?: unknown[] } | null
    t.same(stored?.tracks, [], 'the track was removed in the store')
    t.same(problems, [], 'no page errors, no CSP violations')
  },
)

t.test(
  'in Chromium: adding an ov-box by claim code: the code and the command shown, the box claims it and appears online; re-key shows the new token once; remove asks first; a device added with a token, its sound card added and removed',
  { skip: withoutChromium },
  async (t) => {
    const th = await startTestHub(t, { WEB_DIR: await builtWebApp(t), ...roomy })
    const user = await th.hub.users.createUser({ name: 'Eve' })
    const browser = await launchChromium(t)
    const { page, problems } = await signedInPage(th, await browser.newPage({ viewport: DESKTOP }), user)

    await page.getByLabel('Name of the box').fill('Rehearsal box')
    await page.getByRole('button', { name: 'Get a claim code' }).click()
    const code = (await page.getByTestId('claim-code').textContent())!.trim()
    t.match(code, /^[A-HJKMNP-Z2-9]{4}-[A-HJKMNP-Z2-9]{4}$/, 'the code, big')
    await page.getByText(`stagehub-ovbox claim ${code} --hub ${th.httpUrl}`).waitFor()
    t.pass('with the command to run on the box')
    await page.getByText(/Valid once, until .* \(in about 10 minutes\)/).waitFor()
    t.pass('and its expiry')
    await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: th.httpUrl })
    await page.getByRole('button', { name: 'Copy the command' }).click()
    await page.getByText('Copied').waitFor()
    t.equal(
      await page.evaluate(() =>
        (
          globalThis as unknown as { navigator: { clipboard: { readText(): Promise<string> } } }
        ).navigator.clipboard.readText(),
      ),
      `stagehub-ovbox claim ${code} --hub ${th.httpUrl}`,
      'the command, copied',
    )
    await shoot(t, page, 'devices-claim-code')

    // the box's side, as `stagehub-ovbox claim CODE --hub URL` does it
    const dir = mkdtempSync(join(tmpdir(), 'stagehub-claim-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const { config } = await claimDevice({ code, hubUrl: th.httpUrl, configPath: join(dir, 'agent.json') })
    const sim = await startSimulator({
      hubUrl: th.mqttUrl,
      boxes: [{ deviceId: config.deviceId, token: config.token }],
      statusIntervalSeconds: 30,
      log: quiet,
    })
    t.teardown(() => sim.stop())
    const box = card(page, 'Rehearsal box')
    await box.getByTestId('presence').getByText('Online', { exact: true }).waitFor()
    t.pass('the claimed box is online in the list')
    await page.getByText('Rehearsal box has claimed its code and is online').waitFor()
    t.pass('and the code gives way to saying so')

    // re-key: a new token shown once, the box's token stops working
    await box.getByText('Token and removal').click()
    await box.getByRole('button', { name: 'New token (re-key)' }).click()
    const token = (await box.getByTestId('device-token').inputValue()).trim()
    await box.getByText(/old token of this device has stopped working/).waitFor()
    t.pass('the token with the warning that the old one stops working')
    await box.getByTestId('presence').getByText('Offline', { exact: true }).waitFor()
    t.pass('the box with the old token is disconnected')
    await sim.stop()
    t.equal(
      await connackCode(th.mqttUrl, {
        clientId: config.deviceId,
        username: 'device',
        password: config.token,
      }),
      5,
      'the claimed token is refused',
    )
    t.equal(
      await connackCode(th.mqttUrl, { clientId: config.deviceId, username: 'device', password: token }),
      0,
      'the token shown connects',
    )
    await shoot(t, page, 'devices-rekey')

    // remove: asks first, cancel keeps it, yes removes it
    await box.getByRole('button', { name: 'Remove device…' }).click()
    await box.getByRole('alertdialog').waitFor()
    t.equal(await page.locator(':focus').textContent(), 'Cancel', 'the question takes the focus, on Cancel')
    await page.keyboard.press('Enter')
    t.equal(await box.getByRole('alertdialog').count(), 0, 'cancel: nothing removed')
    t.equal(await page.locator(':focus').textContent(), 'Remove device…', 'the focus back where it was')
    await box.getByRole('button', { name: 'Remove device…' }).click()
    await box.getByRole('button', { name: 'Yes, remove Rehearsal box' }).click()
    await box.waitFor({ state: 'detached' })
    t.equal(await th.hub.store.get('devices', config.deviceId), null, 'the device is gone from the store')

    // the advanced route: a token shown once
    await page.getByText('Add with a token (advanced)').click()
    await page.getByLabel('Device name').fill('Laptop app')
    await page.getByLabel('Kind').selectOption('native')
    await page.getByRole('button', { name: 'Create and show the token' }).click()
    const appToken = (await page.getByTestId('device-token').inputValue()).trim()
    await card(page, 'Laptop app').waitFor()
    const appId = await card(page, 'Laptop app').getAttribute('data-device-id')
    t.equal(
      await connackCode(th.mqttUrl, { clientId: appId!, username: 'device', password: appToken }),
      0,
      'the token of a device added with a token connects as that device',
    )

    // a sound card added by hand, then removed
    const app = card(page, 'Laptop app')
    await app.getByText('Remote control').click()
    await app.getByText('Add a sound card', { exact: true }).click()
    const form = app.locator('form.soundcard-form')
    await form.getByLabel('Name on the device').fill('default')
    await form.getByLabel('Label').fill('Built-in audio')
    await form.getByLabel('Driver').selectOption('webrtc')
    await form.getByLabel('Input channels').fill('1')
    await form.getByRole('button', { name: 'Add sound card' }).click()
    await app.getByText('Built-in audio (webrtc, 48 kHz, 1 in / 2 out)').waitFor()
    t.match(
      await th.hub.store.get('devices', appId!),
      { soundCards: [{ name: 'default', label: 'Built-in audio', driver: 'webrtc', numInputChannels: 1 }] },
      'the card in the store',
    )
    await app.getByRole('button', { name: 'Remove sound card' }).click()
    await app.getByText('none yet', { exact: true }).waitFor()
    t.match(await th.hub.store.get('devices', appId!), { soundCards: [] }, 'and removed')
    t.same(problems, [], 'no page errors, no CSP violations')
  },
)

t.test(
  'in Chromium: this browser is a device of kind browser, online while the tab is open, created once across reloads, re-keyed without showing its token, registered anew once removed elsewhere; closing the tab marks it lost in the other browser within two seconds',
  { skip: withoutChromium },
  async (t) => {
    const th = await startTestHub(t, { WEB_DIR: await builtWebApp(t), ...roomy })
    const user = await th.hub.users.createUser({ name: 'Fay' })
    const browser = await launchChromium(t)
    const first = await signedInPage(th, await browser.newPage({ viewport: DESKTOP }), user)
    const mine = first.page.getByTestId('device').filter({ hasText: 'This browser' })
    await mine.getByTestId('presence').getByText('Online', { exact: true }).waitFor()
    t.equal(await mine.getByText('Browser', { exact: true }).count(), 1, 'of kind browser')
    t.equal(
      await mine.getByRole('heading').textContent(),
      'Chrome on Linux',
      'named after the browser and system',
    )
    const stored = await first.page.evaluate(
      (userId) =>
        JSON.parse(localStorage.getItem(`stagehub.browserDevice.${userId}`)!) as StoredBrowserDevice,
      user.id,
    )
    t.equal(await mine.getAttribute('data-device-id'), stored.deviceId, 'its id kept in localStorage')
    const doc = (await th.hub.store.get('devices', stored.deviceId)) as {
      kind?: string
      owner?: string
    } | null
    t.match(doc, { kind: 'browser', owner: user.id }, 'a device of the person in the store')
    await shoot(t, first.page, 'devices-this-browser')

    await first.page.reload()
    await mine.getByTestId('presence').getByText('Online', { exact: true }).waitFor()
    t.equal(await first.page.getByTestId('device').count(), 1, 'after a reload: still one device')
    t.equal(await mine.getAttribute('data-device-id'), stored.deviceId, 'the same one')

    // re-keying this browser's own device: it keeps the new token itself and comes back with it
    const sessionBefore =
      ((await th.hub.store.get('devices', stored.deviceId)) as { session?: number } | null)?.session ?? 0
    await mine.getByText('Token and removal').click()
    await mine.getByRole('button', { name: 'New token (re-key)' }).click()
    await mine.getByText('This browser has its new token').waitFor()
    const rekeyed = await first.page.evaluate(
      (userId) =>
        JSON.parse(localStorage.getItem(`stagehub.browserDevice.${userId}`)!) as StoredBrowserDevice,
      user.id,
    )
    t.equal(rekeyed.deviceId, stored.deviceId, 'the same device')
    t.not(rekeyed.token, stored.token, 'with its new token in localStorage, not on the screen')
    t.equal(await mine.getByTestId('device-token').count(), 0, 'no token shown')
    type Doc = { online?: boolean; session?: number } | null
    await waitUntil(
      async () => {
        const doc = (await th.hub.store.get('devices', stored.deviceId)) as Doc
        return doc?.online === true && (doc.session ?? 0) > sessionBefore
      },
      'the device is online again in a new session',
      10_000,
    )
    t.equal(
      await connackCode(th.mqttUrl, {
        clientId: stored.deviceId,
        username: 'device',
        password: stored.token,
      }),
      5,
      'the old token is refused',
    )
    await mine.getByTestId('presence').getByText('Online', { exact: true }).waitFor()
    t.pass('online again with the new token')

    // removed elsewhere: the next load finds its token refused (/auth/explain) and registers anew
    const owner = await connectAs(th, user.id, 'Fay')
    await ok(owner, 'device.remove', { deviceId: stored.deviceId })
    await mine.waitFor({ state: 'detached' })
    await first.page.reload()
    await mine.getByTestId('presence').getByText('Online', { exact: true }).waitFor()
    const renewed = await first.page.evaluate(
      (userId) =>
        JSON.parse(localStorage.getItem(`stagehub.browserDevice.${userId}`)!) as StoredBrowserDevice,
      user.id,
    )
    t.not(renewed.deviceId, stored.deviceId, 'removed elsewhere: a new device after a reload')
    t.equal(await mine.getAttribute('data-device-id'), renewed.deviceId, 'shown as this browser')
    t.equal(await first.page.getByTestId('device').count(), 1, 'the only device')
    stored.deviceId = renewed.deviceId

    // another browser (its own storage) of the same person watches the first one
    const other = await browser.newContext({ viewport: DESKTOP })
    t.teardown(() => other.close())
    const second = await signedInPage(th, await other.newPage(), user)
    const firstInSecond = second.page.locator(`[data-device-id="${stored.deviceId}"]`)
    await firstInSecond.getByTestId('presence').getByText('Online', { exact: true }).waitFor()
    t.equal(await firstInSecond.getByText('This browser').count(), 0, 'not "this browser" in the other one')
    await second.page.getByTestId('device').filter({ hasText: 'This browser' }).waitFor()
    t.pass('which is a device of its own')

    await first.page.close()
    const lost = await msUntilPresence(firstInSecond, 'Offline', 2000)
    t.ok(lost < 2000, `the closed tab is offline in the other browser after ${lost} ms`)
    const presence = (await th.hub.store.get('devices', stored.deviceId)) as { online?: boolean } | null
    t.equal(presence?.online, false, 'offline in the store')

    // signing out disconnects the browser's device with `offline`
    const secondId = await second.page
      .getByTestId('device')
      .filter({ hasText: 'This browser' })
      .getAttribute('data-device-id')
    await second.page.getByRole('button', { name: 'Sign out' }).click()
    await waitUntil(
      async () =>
        ((await th.hub.store.get('devices', secondId!)) as { online?: boolean } | null)?.online === false,
      'the signed-out browser is offline',
    )
    t.pass('signing out: the browser device is offline')
    const left = await second.page.evaluate(
      (userId) => JSON.parse(localStorage.getItem(`stagehub.browserDevice.${userId}`) ?? 'null') as unknown,
      user.id,
    )
    t.same(
      left,
      { deviceId: secondId, session: (left as { session: number }).session },
      'and no device token is left in the browser, only its id',
    )

    // signing in again re-keys the same device: no new one piles up
    await openSignedIn(second.page, `${th.httpUrl}/#/devices`, th.hub.users.userToken(user))
    const again = second.page.getByTestId('device').filter({ hasText: 'This browser' })
    await again.getByTestId('presence').getByText('Online', { exact: true }).waitFor()
    t.equal(await again.getAttribute('data-device-id'), secondId, 'the same device, online again')
    t.same([...first.problems, ...second.problems], [], 'no page errors, no CSP violations')
  },
)

import type { MqttClient } from 'mqtt'
import t from 'tap'
import type { OvClientConfig } from '../../schemas/firmware.ts'
import { dbToVolume, SEND_INTERVAL_MS } from '../../web/src/mixer/coalesce.ts'
import { launchChromium, withoutChromium } from '../helpers/chromium.ts'
import { Requester, type TestHub, startTestHub, waitUntil } from '../helpers/hub.ts'
import { builtWebApp, DESKTOP, shoot } from '../helpers/web.ts'

interface Person {
  id: string
  doc: Awaited<ReturnType<TestHub['hub']['users']['createUser']>>
  app: Requester
  client: MqttClient
}

async function person(th: TestHub, name: string): Promise<Person> {
  const doc = await th.hub.users.createUser({ name })
  const client = await th.connect({
    clientId: `${name.toLowerCase()}-app`,
    token: th.token({ sub: doc.id, name }),
  })
  return { id: doc.id, doc, app: new Requester(client), client }
}

async function ok<T>(p: Person, action: string, params: unknown): Promise<T> {
  const response = await p.app.request(action, params)
  if (!response.ok) throw new Error(`${action} refused: ${JSON.stringify(response.error)}`)
  return response.result as T
}

/** An online ov-box of `owner` with input channels as tracks; its received configurations, newest last. */
async function ovBox(th: TestHub, owner: Person, channels: number[]) {
  const { device, token } = await ok<{ device: { id: string }; token: string }>(owner, 'device.create', {
    name: 'Box',
    kind: 'ovbox',
  })
  await ok(owner, 'soundcard.set', {
    deviceId: device.id,
    soundCard: {
      name: 'hw:1',
      driver: 'jack',
      sampleRate: 48000,
      periodSize: 96,
      numPeriods: 2,
      numInputChannels: 2,
      numOutputChannels: 2,
    },
  })
  for (const channel of channels)
    await ok(owner, 'track.add', { deviceId: device.id, soundCardName: 'hw:1', channel })
  const client = await th.connect({ clientId: device.id, token })
  const configs: OvClientConfig[] = []
  client.on('message', (topic, payload) => {
    if (topic === `devices/${device.id}/config` && payload.length > 0)
      configs.push((JSON.parse(payload.toString()) as { ov: OvClientConfig }).ov)
  })
  await client.subscribeAsync(`devices/${device.id}/config`, { qos: 1 })
  await client.publishAsync(
    `devices/${device.id}/presence`,
    JSON.stringify({ state: 'online', session: 1 }),
    {
      qos: 1,
      retain: true,
    },
  )
  return { latest: () => configs.at(-1) }
}

/** The retained values under `filter` as a subscriber sees them, live. */
async function retained(client: MqttClient, filter: string): Promise<Map<string, unknown>> {
  const values = new Map<string, unknown>()
  const prefix = filter.replace(/#$/, '')
  client.on('message', (topic, payload) => {
    if (!topic.startsWith(prefix)) return
    if (payload.length === 0) values.delete(topic)
    else values.set(topic, JSON.parse(payload.toString()))
  })
  await client.subscribeAsync(filter, { qos: 1 })
  return values
}

t.test(
  'in Chromium: the mixer shows group → member → track live; a fast drag sends few mix.set (no rate_limited), ends at the last value, reaches the own ov-box; mute and reset round-trip; an admin sets the stage for everyone',
  { skip: withoutChromium },
  async (t) => {
    // the production request limits: 20 a second per client, bursts of 40
    const th = await startTestHub(t, { WEB_DIR: await builtWebApp(t) })
    const ann = await person(th, 'Ann')
    const bob = await person(th, 'Bob')
    const annBox = await ovBox(th, ann, [0])
    const stage = await ok<{ id: string }>(ann, 'stage.create', { name: 'Quartet', audioType: 'ov' })
    const band = await ok<{ id: string }>(ann, 'group.create', {
      stageId: stage.id,
      name: 'Band',
      color: '#2563eb',
    })
    await ok(ann, 'stage.join', { stageId: stage.id, groupId: band.id })
    await ovBox(th, bob, [0, 1])
    const bobMember = await ok<{ id: string }>(bob, 'stage.join', { stageId: stage.id, groupId: band.id })
    await waitUntil(() => annBox.latest()?.roomdev.length === 1, "Bob's box in Ann's session")

    // what the hub handled, from its /metrics: requests by action and outcome code
    const requests = async (match: (line: string) => boolean) => {
      const text = await (await fetch(`${th.httpUrl}/metrics`)).text()
      return text
        .split('\n')
        .filter((line) => line.startsWith('stagehub_requests_total{') && match(line))
        .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0)
    }
    const mixSets = () => requests((line) => line.includes('action="mix.set"'))
    const rateLimited = () => requests((line) => line.includes('code="rate_limited"'))
    const annMixes = await retained(ann.client, `users/${ann.id}/mix/#`)
    const bobMixTopic = `users/${ann.id}/mix/member/${bobMember.id}`

    const browser = await launchChromium(t)
    const page = await browser.newPage({ viewport: DESKTOP })
    const problems: string[] = []
    page.on('pageerror', (err) => problems.push(err.message))
    await page.goto(`${th.httpUrl}/`)
    await page.evaluate(
      (session) => localStorage.setItem('stagehub.session', JSON.stringify(session)),
      th.hub.users.userToken(ann.doc),
    )
    await page.goto(`${th.httpUrl}/#/stages/${stage.id}/mixer`)
    await page.reload()
    await page.getByRole('heading', { name: 'Mixer of Quartet' }).waitFor()
    await page.getByRole('heading', { name: 'Band' }).waitFor()
    const bobFader = page.getByLabel('Volume of Bob', { exact: true })
    await bobFader.waitFor()
    await page.getByLabel('Volume of Bob: hw:1 2').waitFor()
    t.pass("group → member → track: Bob's two ov tracks under Bob, in the group Band")
    t.equal(await bobFader.getAttribute('aria-valuetext'), '0 dB', 'the stage setting: 0 dB')
    t.equal(
      await page.getByRole('button', { name: 'Mute Ann (you)' }).getAttribute('aria-pressed'),
      'true',
      'one hears oneself through the monitor: muted in the own mix by default',
    )
    await page.getByTestId('connection').getByText('Online').waitFor()
    await shoot(t, page, 'mixer')

    // a fast drag: many input events, few requests
    const inputs = await page.evaluate(() => {
      const w = globalThis as unknown as {
        inputs: number
        document: { addEventListener(type: string, fn: () => void, capture: boolean): void }
      }
      w.inputs = 0
      w.document.addEventListener('input', () => w.inputs++, true)
      return w.inputs
    })
    t.equal(inputs, 0)
    const box = (await bobFader.boundingBox())!
    const y = box.y + box.height / 2
    const before = await mixSets()
    await page.mouse.move(box.x + box.width * 0.8, y)
    const dragStarted = performance.now()
    await page.mouse.down()
    // sweeps down, up and down again, ending at about a quarter of the way
    for (const [f, steps] of [
      [0.1, 40],
      [0.6, 30],
      [0.25, 30],
    ] as const)
      await page.mouse.move(box.x + box.width * f, y, { steps })
    await page.mouse.up()
    const dragMs = performance.now() - dragStarted
    const inputEvents = await page.evaluate(() => (globalThis as unknown as { inputs: number }).inputs)
    const finalDb = Number(await bobFader.inputValue())
    const finalVolume = dbToVolume(finalDb)
    await waitUntil(
      () =>
        Math.abs((((annMixes.get(bobMixTopic) as { volume?: number }) ?? {}).volume ?? -1) - finalVolume) <
        1e-9,
      'the retained mix holds the last value dragged',
    )
    const sent = (await mixSets()) - before
    t.ok(inputEvents >= 40, `the drag made ${inputEvents} input events`)
    t.ok(
      // the mouse moves are paced by the DevTools round trip (10 to 30 ms each): the rate is the bound
      sent >= 1 && sent <= Math.ceil(dragMs / SEND_INTERVAL_MS) + 1 && sent < inputEvents,
      `the hub received ${sent} mix.set for ${inputEvents} input events in ${Math.round(dragMs)} ms (at most one per ${SEND_INTERVAL_MS} ms)`,
    )
    t.equal(await rateLimited(), 0, 'no request was refused as rate_limited')
    t.equal(Number(await bobFader.inputValue()), finalDb, 'the slider stays at the last value dragged')
    await waitUntil(
      () => annBox.latest()?.roomdev[0]?.gain === finalVolume,
      "Ann's ov-box configuration has the gain",
    )
    t.pass(`Ann's own ov-box hears Bob at ${finalDb} dB`)
    t.ok(finalDb < -10, `the slider moved down (${finalDb} dB)`)
    await page.getByText('yours').first().waitFor()

    // a faster hand: 200 input events in about a second on one of Bob's tracks, dispatched in the page
    const stageTracks = await retained(ann.client, `stages/${stage.id}/tracks/#`)
    await waitUntil(() => stageTracks.size === 3, 'the three tracks of the stage')
    const track = [...stageTracks.values()].find(
      (v) =>
        (v as { userId: string; ov?: { channel: number } }).userId === bob.id &&
        (v as { ov?: { channel: number } }).ov?.channel === 1,
    ) as { id: string }
    const trackMixTopic = `users/${ann.id}/mix/track/${track.id}`
    const burstBefore = await mixSets()
    const burst = await page.evaluate(async (label) => {
      // runs in the page: its window (globalThis) has the document and PointerEvent
      const window = globalThis as unknown as {
        document: { querySelector(s: string): { value: string; dispatchEvent(e: Event): boolean } | null }
        PointerEvent: new (type: string, init: { bubbles: boolean }) => Event
      }
      const doc = window.document
      const PointerEvent = window.PointerEvent
      const el = doc.querySelector(`input[aria-label="${label}"]`)!
      const started = performance.now()
      let jumps = 0
      el.dispatchEvent(new PointerEvent('pointerdown', { bubbles: true }))
      for (let i = 0; i < 200; i++) {
        const value = -(i % 80) / 2
        el.value = String(value)
        el.dispatchEvent(new Event('input', { bubbles: true }))
        await new Promise((resolve) => setTimeout(resolve, 5))
        // retained values of earlier sends arrive meanwhile: the slider must keep the hand's value
        if (Number(el.value) !== value) jumps++
      }
      el.value = '-20'
      el.dispatchEvent(new Event('input', { bubbles: true }))
      el.dispatchEvent(new PointerEvent('pointerup', { bubbles: true }))
      el.dispatchEvent(new Event('change', { bubbles: true }))
      return { ms: performance.now() - started, jumps }
    }, 'Volume of Bob: hw:1 2')
    await waitUntil(
      () => (annMixes.get(trackMixTopic) as { volume?: number } | undefined)?.volume === dbToVolume(-20),
      'the retained track mix holds the last value, -20 dB',
    )
    const burstSent = (await mixSets()) - burstBefore
    t.ok(
      burstSent >= 1 && burstSent <= Math.ceil(burst.ms / SEND_INTERVAL_MS) + 1 && burstSent * 5 <= 201,
      `201 input events in ${Math.round(burst.ms)} ms: the hub received ${burstSent} mix.set`,
    )
    t.equal(burst.jumps, 0, 'the slider never jumped back to an older retained value during the burst')
    t.equal(await rateLimited(), 0, 'none refused as rate_limited')
    t.equal(
      await page.getByLabel('Volume of Bob: hw:1 2').getAttribute('aria-valuetext'),
      '-20 dB',
      'the track slider shows the last value',
    )

    // mute and reset
    const bobMute = page.getByRole('button', { name: 'Mute Bob', exact: true })
    await bobMute.click()
    await page.locator('button[aria-label="Mute Bob"][aria-pressed="true"]').waitFor()
    await waitUntil(() => annBox.latest()?.roomdev[0]?.mute === true, 'the box mutes Bob')
    t.pass('mute: pressed from the retained mix, and Bob muted on the box')
    await shoot(t, page, 'mixer-own-mix')
    await page.getByRole('button', { name: 'Reset Bob', exact: true }).click()
    await waitUntil(() => !annMixes.has(bobMixTopic), 'the override is gone')
    await page.locator('button[aria-label="Mute Bob"][aria-pressed="false"]').waitFor()
    await waitUntil(
      async () => (await bobFader.getAttribute('aria-valuetext')) === '0 dB',
      'back to the stage setting',
    )
    t.pass("reset: the slider is back at the stage's 0 dB, not muted")
    await waitUntil(
      () => annBox.latest()?.roomdev[0]?.gain === 1 && annBox.latest()?.roomdev[0]?.mute === false,
      "the box has the stage's setting again",
    )
    t.pass('reset reached the box')

    // the stage's settings for everyone (Ann is the admin): by keyboard
    await page.getByLabel("The stage's settings for everyone").check()
    const bandFader = page.getByLabel('Volume of Band', { exact: true })
    await bandFader.focus()
    for (let i = 0; i < 12; i++) await page.keyboard.press('ArrowLeft')
    const groupTopic = `stages/${stage.id}/groups/${band.id}`
    const stageValues = await retained(ann.client, `stages/${stage.id}/groups/#`)
    await waitUntil(
      () => ((stageValues.get(groupTopic) as { volume?: number }) ?? {}).volume === dbToVolume(-6),
      'the group is at -6 dB for everyone',
    )
    t.equal(await bandFader.getAttribute('aria-valuetext'), '-6 dB', '12 presses of 0.5 dB: -6 dB')
    t.ok(
      (await requests((line) => line.includes('action="group.update"'))) < 12,
      'the presses were coalesced too',
    )
    await page.getByRole('button', { name: 'Mute Bob', exact: true }).click()
    await waitUntil(() => annBox.latest()?.roomdev[0]?.mute === true, 'member.update muted Bob for everyone')
    t.pass("the stage's member setting reaches the box (Ann has no override now)")
    await shoot(t, page, 'mixer-stage-settings')
    t.equal(await rateLimited(), 0, 'still no rate_limited')
    t.same(problems, [], 'no page errors')
  },
)

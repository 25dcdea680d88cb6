import type { Page } from 'playwright-core'
import t from 'tap'
import type { DeviceState } from '../../schemas/actions/device.ts'
import type { StageState } from '../../schemas/actions/stage.ts'
import { type Actor, connectAs, ok, retainedOn, roomy } from '../helpers/actors.ts'
import { launchChromium, MEDIA_ARGS, withoutChromium } from '../helpers/chromium.ts'
import { startTestHub, type TestHub, waitUntil } from '../helpers/hub.ts'
import { mediasoupMissing } from '../helpers/mediasoup.ts'
import { builtWebApp, shoot, signedInContext } from '../helpers/web.ts'
import { berlin, createRouter, operator, startAgent, watchStage } from '../services/media/fixture.ts'

/**
 * Browser audio choices as device settings (issue 14 item 2): the browser device reports its audio
 * inputs and outputs, follows its own configuration (a remote `device.update` changes its microphone
 * track, its processing, what it sends and receives, live), and its stage panel edits the same settings.
 */

async function person(th: TestHub, name: string): Promise<{ actor: Actor; session: unknown }> {
  const user = await th.hub.users.createUser({ name })
  return { actor: await connectAs(th, user.id, name), session: th.hub.users.userToken(user) }
}

/** The id of the browser device a page runs as (kept in its localStorage). */
async function deviceOf(page: Page, userId: string): Promise<string> {
  let id: string | undefined
  await waitUntil(
    async () => {
      const stored = await page.evaluate((k) => localStorage.getItem(k), `stagehub.browserDevice.${userId}`)
      id = stored ? (JSON.parse(stored) as { deviceId: string }).deviceId : undefined
      return id !== undefined
    },
    'the page registered its browser device',
    10_000,
  )
  return id!
}

/** Inbound packets `page` counts from `name`'s track. */
async function packetsFrom(page: Page, name: string): Promise<number> {
  const meter = page.getByTestId(`heard-${name}`).locator('meter')
  if ((await meter.count()) === 0) return -1
  return Number(await meter.getAttribute('data-packets'))
}

/** Waits until `page`'s inbound packets from `name` grow by `by` within `ms`. */
async function grows(page: Page, name: string, what: string, by = 50, ms = 15_000): Promise<number> {
  const start = await packetsFrom(page, name)
  let last = start
  await waitUntil(
    async () => {
      last = await packetsFrom(page, name)
      return last > start + by
    },
    `${what} (from ${start}, last ${last})`,
    ms,
  )
  return last
}

/** Waits until `page`'s inbound packets from `name` stay the same for 2 s; returns how many. */
async function stalls(page: Page, name: string, what: string): Promise<number> {
  let still = -1
  await waitUntil(
    async () => {
      const before = await packetsFrom(page, name)
      await new Promise((r) => setTimeout(r, 2000))
      still = await packetsFrom(page, name)
      return before >= 0 && still === before
    },
    what,
    20_000,
  )
  return still
}

t.test(
  'in Chromium, a browser device reports its fake microphones and outputs to the hub and another of the person’s browsers offers them; remote device.update changes its microphone, output (setSinkId), echo cancellation (track settings) and sending live while audio flows; the panel edits and shows the same settings; receive off stops the other side',
  { skip: withoutChromium || mediasoupMissing },
  async (t) => {
    const th = await startTestHub(t, { WEB_DIR: await builtWebApp(t), ...roomy })
    const ops = await operator(th)
    const router = await createRouter(ops, 'eu-media')
    await startAgent(t, th, router, { loadIntervalSeconds: 1 })
    const ann = await person(th, 'Ann')
    const bo = await person(th, 'Bo')
    const stage = await ok<StageState>(ann.actor, 'stage.create', {
      name: 'Choices',
      preferredPosition: berlin,
      audioType: 'mediasoup',
      videoType: 'none',
    })
    const band = await ok<{ id: string }>(ann.actor, 'group.create', { stageId: stage.id, name: 'Band' })
    await ok(ann.actor, 'stage.join', { stageId: stage.id, groupId: band.id })
    await ok(bo.actor, 'stage.join', { stageId: stage.id, groupId: band.id })
    const watch = await watchStage(ann.actor, stage.id)
    await waitUntil(
      () => watch.latest()?.mediaRouter?.router === router.id,
      'a router serves the stage',
      10_000,
    )

    const browser = await launchChromium(t, { args: MEDIA_ARGS })
    const path = `#/stages/${stage.id}`
    const a = await signedInContext(t, th.httpUrl, browser, ann.session, path)
    const b = await signedInContext(t, th.httpUrl, browser, bo.session, path)
    for (const { page } of [a, b]) await page.getByRole('button', { name: 'Join audio' }).click()
    for (const { page } of [a, b])
      await page.getByText('Audio is on: you hear the stage and it hears you.').waitFor({ timeout: 20_000 })
    await grows(b.page, 'Ann', 'Bo receives Ann’s audio')
    const own = a.page.getByTestId('level-own')
    const attr = (name: string) => own.getAttribute(name)
    await waitUntil(
      async () => (await attr('data-echo-cancellation')) === 'false',
      'processing is off',
      10_000,
    )
    t.equal(await attr('data-noise-suppression'), 'false', 'by default noise suppression is off (music)')
    t.equal(await attr('data-auto-gain-control'), 'false', 'and automatic gain too')

    // the device list reaches the hub, in Ann's device document
    const annDevice = await deviceOf(a.page, ann.actor.id)
    let reported: DeviceState['reported'] = {}
    await waitUntil(
      async () => {
        const doc = (await retainedOn(ann.actor.client, `users/${ann.actor.id}/devices/${annDevice}`)) as
          DeviceState | undefined
        reported = doc?.reported ?? {}
        const listed = (reported as { mediaDevices?: { audioInputs: { label: string }[] } }).mediaDevices
        return (listed?.audioInputs ?? []).some((d) => /Fake Audio Input 1/.test(d.label))
      },
      'the hub has the browser’s inputs with their labels',
      15_000,
    )
    const listed = (reported as { mediaDevices: { audioInputs: { id: string; label: string }[] } })
      .mediaDevices
    t.comment(`reported: ${JSON.stringify(listed)}`)
    t.ok(listed.audioInputs.length >= 2, 'several inputs are reported')

    // …and another of Ann's browsers offers them in her devices page
    const c = await signedInContext(t, th.httpUrl, browser, ann.session, '#/devices')
    const card = c.page.locator(`[data-device-id="${annDevice}"]`)
    await card.getByText('Remote control').click()
    const microphone = card.getByLabel('Microphone')
    await microphone.locator('option', { hasText: 'Fake Audio Input 1' }).waitFor({ state: 'attached' })
    t.pass('the other browser offers Ann’s fake microphones')
    const input1 = listed.audioInputs.find((d) => /Fake Audio Input 1/.test(d.label))!.id
    await microphone.selectOption(input1)
    await shoot(t, c.page, 'devices-browser-audio')
    await card.getByRole('button', { name: 'Save settings' }).click()
    await card.getByText('Saved: the device gets its new configuration').waitFor()
    await waitUntil(
      async () => (await attr('data-input')) === input1,
      'Ann’s microphone track is input 1',
      15_000,
    )
    t.pass('the remote choice replaced Ann’s microphone track')
    await grows(b.page, 'Ann', 'Bo still receives Ann on the new input')

    // an output chosen remotely: the AudioContext that plays the stage plays through it
    const output1 = (
      reported as { mediaDevices: { audioOutputs: { id: string; label: string }[] } }
    ).mediaDevices.audioOutputs.find((d) => /Fake Audio Output 1/.test(d.label))!.id
    await ok(ann.actor, 'device.update', { deviceId: annDevice, settings: { outputAudioDeviceId: output1 } })
    await waitUntil(
      async () => (await a.page.getByTestId('audio').getAttribute('data-output')) === output1,
      'Ann’s AudioContext plays through output 1 (setSinkId)',
      10_000,
    )
    t.equal(
      await a.page.getByTestId('audio-choices').getByLabel('Output').inputValue(),
      output1,
      'Ann’s panel shows output 1',
    )
    t.equal(await a.page.getByTestId('audio').getByRole('alert').count(), 0, 'no output problem shown')
    await grows(a.page, 'Bo', 'Ann still receives Bo through the chosen output')

    // echo cancellation on, from another client: the track's settings change, audio keeps flowing
    const toggled = Date.now()
    await ok(ann.actor, 'device.update', { deviceId: annDevice, settings: { echoCancellation: true } })
    await waitUntil(
      async () => (await attr('data-echo-cancellation')) === 'true',
      'Ann’s track has echo cancellation on',
      15_000,
    )
    // the page's figures refresh every second: this is an upper bound
    t.comment(`remote echo cancellation → Ann's new track settings seen: ${Date.now() - toggled} ms`)
    t.equal(await attr('data-input'), input1, 'still on input 1')
    const checkbox = a.page.getByTestId('audio-choices').getByLabel('Echo cancellation')
    t.ok(await checkbox.isChecked(), 'Ann’s panel shows the remote change')
    await grows(b.page, 'Ann', 'Bo still receives Ann with echo cancellation on')

    // the panel changes the same setting (device.update): off again
    await a.page.getByTestId('audio-choices').locator('summary').click()
    await shoot(t, a.page, 'stage-audio-choices')
    await checkbox.uncheck()
    await a.page.getByTestId('audio-choices').getByText('Saved: this browser applies it now.').waitFor()
    await waitUntil(
      async () => (await attr('data-echo-cancellation')) === 'false',
      'the panel’s switch turns echo cancellation off',
      15_000,
    )
    const doc = (await retainedOn(
      ann.actor.client,
      `users/${ann.actor.id}/devices/${annDevice}`,
    )) as DeviceState
    t.equal(doc.desired.echoCancellation, false, 'the panel changed the device setting')

    // send off remotely: Bo's inbound packets stop; on again: they grow
    await ok(ann.actor, 'device.update', { deviceId: annDevice, settings: { sendAudio: false } })
    await waitUntil(async () => (await attr('data-sending')) === 'no', 'Ann’s producer is paused', 10_000)
    const stopped = await stalls(b.page, 'Ann', 'Bo’s inbound packets from Ann stop growing')
    t.pass(`with send off, Bo’s count stays at ${stopped}`)
    await a.page.getByText('You hear the stage; you send nothing.').waitFor()
    t.notOk(
      await a.page.getByTestId('audio-choices').getByLabel('Send my audio').isChecked(),
      'the panel shows send off',
    )
    await ok(ann.actor, 'device.update', { deviceId: annDevice, settings: { sendAudio: null } })
    const again = await grows(b.page, 'Ann', 'Bo receives Ann again once send is on')
    t.ok(again > stopped, `Bo’s count grows again: ${stopped} → ${again}`)

    // receive off at Bo's browser: his consumer of Ann pauses (on the router too), then resumes
    const boDevice = await deviceOf(b.page, bo.actor.id)
    await ok(bo.actor, 'device.update', { deviceId: boDevice, settings: { receiveAudio: false } })
    const paused = await stalls(b.page, 'Ann', 'Bo’s inbound packets stop with receive off')
    await ok(bo.actor, 'device.update', { deviceId: boDevice, settings: { receiveAudio: true } })
    const resumed = await grows(b.page, 'Ann', 'Bo receives Ann again with receive on')
    t.ok(resumed > paused, `receive off then on: ${paused} → ${resumed}`)
    t.same([...a.problems, ...b.problems, ...c.problems], [], 'no page error, no CSP violation')
  },
)

t.test(
  'in Chromium, a browser device whose sendAudio is off joins audio without opening the microphone (no producer on the router); switching send on in the panel opens it and produces, and the other member receives it',
  { skip: withoutChromium || mediasoupMissing },
  async (t) => {
    const th = await startTestHub(t, { WEB_DIR: await builtWebApp(t), ...roomy })
    const ops = await operator(th)
    const router = await createRouter(ops, 'eu-media')
    const agent = await startAgent(t, th, router, { loadIntervalSeconds: 1 })
    const ann = await person(th, 'Ann')
    const bo = await person(th, 'Bo')
    const stage = await ok<StageState>(ann.actor, 'stage.create', {
      name: 'Listen first',
      preferredPosition: berlin,
      audioType: 'mediasoup',
      videoType: 'none',
    })
    const band = await ok<{ id: string }>(ann.actor, 'group.create', { stageId: stage.id, name: 'Band' })
    await ok(ann.actor, 'stage.join', { stageId: stage.id, groupId: band.id })
    await ok(bo.actor, 'stage.join', { stageId: stage.id, groupId: band.id })
    const watch = await watchStage(ann.actor, stage.id)
    await waitUntil(
      () => watch.latest()?.mediaRouter?.router === router.id,
      'a router serves the stage',
      10_000,
    )

    const browser = await launchChromium(t, { args: MEDIA_ARGS })
    const path = `#/stages/${stage.id}`
    const a = await signedInContext(t, th.httpUrl, browser, ann.session, path)
    const b = await signedInContext(t, th.httpUrl, browser, bo.session, path)
    const annDevice = await deviceOf(a.page, ann.actor.id)
    await ok(ann.actor, 'device.update', { deviceId: annDevice, settings: { sendAudio: false } })
    const send = a.page.getByTestId('audio-choices').getByLabel('Send my audio')
    await waitUntil(async () => !(await send.isChecked()), 'Ann’s panel shows send off', 10_000)

    for (const { page } of [a, b]) await page.getByRole('button', { name: 'Join audio' }).click()
    await a.page.getByText('You hear the stage; you send nothing.').waitFor({ timeout: 20_000 })
    await b.page.getByText('Audio is on: you hear the stage and it hears you.').waitFor({ timeout: 20_000 })
    await grows(a.page, 'Bo', 'Ann hears Bo while sending nothing')
    await waitUntil(() => agent.load().producers === 1, 'only Bo produces', 5000)
    t.equal(await a.page.getByTestId('level-own').count(), 0, 'Ann has no microphone meter')
    t.equal(await a.page.getByTestId('audio').getByRole('alert').count(), 0, 'and no alert: she chose it')
    t.equal(await b.page.getByTestId('heard-Ann').count(), 0, 'Bo hears no one from Ann')

    await a.page.getByTestId('audio-choices').locator('summary').click()
    const switched = Date.now()
    await send.check()
    await a.page.getByText('Audio is on: you hear the stage and it hears you.').waitFor({ timeout: 20_000 })
    await b.page.getByTestId('heard-Ann').waitFor({ timeout: 20_000 })
    await grows(b.page, 'Ann', 'Bo receives Ann once she sends', 10)
    t.comment(`from the send switch to Bo receiving Ann: ${Date.now() - switched} ms`)
    t.equal(agent.load().producers, 2, 'Ann’s microphone is produced on the router')
    const doc = (await retainedOn(
      ann.actor.client,
      `users/${ann.actor.id}/devices/${annDevice}`,
    )) as DeviceState
    t.equal(doc.desired.sendAudio, true, 'the panel set the device setting')
    t.same([...a.problems, ...b.problems], [], 'no page error, no CSP violation')
  },
)

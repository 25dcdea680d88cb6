import type { Page } from 'playwright-core'
import t, { type Test } from 'tap'
import type { StageState } from '../../schemas/actions/stage.ts'
import { type Actor, connectAs, ok, retainedOn, roomy } from '../helpers/actors.ts'
import { launchChromium, MEDIA_ARGS, withoutChromium } from '../helpers/chromium.ts'
import { startTestHub, type TestHub, waitUntil } from '../helpers/hub.ts'
import { mediasoupMissing } from '../helpers/mediasoup.ts'
import { builtWebApp, shoot, signedInContext } from '../helpers/web.ts'
import { berlin, createRouter, operator, startAgent, watchStage } from '../services/media/fixture.ts'

/**
 * Browser video (issue 14 item 4): people in Chromium (fake camera and microphone) in a stage whose
 * video is mediasoup see each other's camera in tiles, through the hub's signalling and a real router.
 */

async function person(th: TestHub, name: string): Promise<{ actor: Actor; session: unknown }> {
  const user = await th.hub.users.createUser({ name })
  return { actor: await connectAs(th, user.id, name), session: th.hub.users.userToken(user) }
}

/** The `<video>` of `name`'s tile on `page`: its size and whether it plays. */
async function tileVideo(page: Page, name: string) {
  const video = page.getByTestId(`tile-${name}`).locator('video')
  if ((await video.count()) === 0) return undefined
  // (the tests compile without the DOM's types: the element's fields are read by name)
  return video.evaluate((element) => {
    const v = element as unknown as {
      videoWidth: number
      videoHeight: number
      paused: boolean
      currentTime: number
    }
    return { width: v.videoWidth, height: v.videoHeight, paused: v.paused, time: v.currentTime }
  })
}

async function videoStage(t: Test) {
  const th = await startTestHub(t, { WEB_DIR: await builtWebApp(t), ...roomy })
  const ops = await operator(th)
  const router = await createRouter(ops, 'eu-media')
  const agent = await startAgent(t, th, router, { loadIntervalSeconds: 1 })
  const ann = await person(th, 'Ann')
  const bo = await person(th, 'Bo')
  const stage = await ok<StageState>(ann.actor, 'stage.create', {
    name: 'Jam',
    preferredPosition: berlin,
    audioType: 'mediasoup',
    videoType: 'mediasoup',
  })
  const band = await ok<{ id: string }>(ann.actor, 'group.create', { stageId: stage.id, name: 'Band' })
  await ok(ann.actor, 'stage.join', { stageId: stage.id, groupId: band.id })
  await ok(bo.actor, 'stage.join', { stageId: stage.id, groupId: band.id })
  const watch = await watchStage(ann.actor, stage.id)
  await waitUntil(
    () => watch.latest()?.mediaRouter?.router === router.id,
    'the router serves the stage',
    10_000,
  )
  return { th, agent, ann, bo, stage, band }
}

t.test(
  'in Chromium, two members of a stage with mediasoup video see each other’s camera playing in their tiles (videoWidth > 0, time advancing); a member without video shows initials, name and presence; no poor-connection warning on a clean link; when Ann leaves, Bo’s tile of her falls back to her initials',
  { skip: withoutChromium || mediasoupMissing },
  async (t) => {
    const { th, agent, ann, bo, stage, band } = await videoStage(t)
    const cara = await person(th, 'Cara')
    await ok(cara.actor, 'stage.join', { stageId: stage.id, groupId: band.id })

    const browser = await launchChromium(t, { args: MEDIA_ARGS })
    const path = `#/stages/${stage.id}`
    const a = await signedInContext(t, th.httpUrl, browser, ann.session, path)
    const b = await signedInContext(t, th.httpUrl, browser, bo.session, path)
    for (const { page } of [a, b]) await page.getByRole('button', { name: 'Join audio' }).click()
    for (const { page } of [a, b])
      await page.getByText('Audio is on: you hear the stage and it hears you.').waitFor({ timeout: 20_000 })

    for (const [page, other] of [
      [a.page, 'Bo'],
      [b.page, 'Ann'],
    ] as const) {
      let first: Awaited<ReturnType<typeof tileVideo>>
      await waitUntil(
        async () => {
          first = await tileVideo(page, other)
          return first !== undefined && first.width > 0 && !first.paused
        },
        `${other}’s tile plays a video`,
        20_000,
      )
      await waitUntil(
        async () => ((await tileVideo(page, other))?.time ?? 0) > first!.time,
        `${other}’s video advances`,
        10_000,
      )
      t.ok(first!.width > 0 && first!.height > 0, `${other}’s camera: ${first!.width}×${first!.height}`)
      t.equal(await page.getByTestId(`tile-${other}`).getAttribute('data-video'), 'yes')
      t.equal(
        await page.getByTestId(`tile-${other}`).locator('.tile-warning').textContent(),
        '',
        `no poor-connection warning on ${other}’s tile over loopback`,
      )
    }
    const ownTile = a.page.getByTestId('tile-Ann')
    t.match(await ownTile.textContent(), /Ann \(you\)/, 'Ann’s own tile says it is her')
    t.equal(await ownTile.getAttribute('data-video'), 'yes', 'and shows her own camera')

    const caraTile = a.page.getByTestId('tile-Cara')
    t.equal(await caraTile.getAttribute('data-video'), 'no', 'Cara sends no video')
    t.equal(await caraTile.locator('.tile-avatar').textContent(), 'CA', 'her tile shows her initials')
    t.match(
      await caraTile.textContent(),
      /Cara · in the stage, no device online, no video/,
      'name and presence',
    )

    await waitUntil(() => agent.load().consumers === 4, 'each receives the other’s audio and video', 10_000)
    t.match(agent.load(), { producers: 4, consumers: 4 }, 'two microphones and two cameras on the router')
    await shoot(t, a.page, 'stage-video')

    await a.page.getByRole('button', { name: 'Leave audio' }).click()
    await waitUntil(
      async () => (await b.page.getByTestId('tile-Ann').getAttribute('data-video')) === 'no',
      'Bo’s tile of Ann has no video once she left',
      10_000,
    )
    t.equal(
      await b.page.getByTestId('tile-Ann').locator('.tile-avatar').textContent(),
      'AN',
      'her initials again',
    )
    await waitUntil(() => agent.load().consumers === 0, 'the router closed Bo’s consumers of Ann', 10_000)
    t.same([...a.problems, ...b.problems], [], 'no page error, no CSP violation')
  },
)

t.test(
  'in Chromium, a machine without a camera is told so with what to do, and still sees the others’ video',
  { skip: withoutChromium || mediasoupMissing },
  async (t) => {
    const { th, ann, bo, stage } = await videoStage(t)
    const withDevices = await launchChromium(t, { args: MEDIA_ARGS })
    const b = await signedInContext(t, th.httpUrl, withDevices, bo.session, `#/stages/${stage.id}`)
    await b.page.getByRole('button', { name: 'Join audio' }).click()
    await b.page.getByText('Audio is on: you hear the stage and it hears you.').waitFor({ timeout: 20_000 })

    // permission granted, but no device at all
    const without = await launchChromium(t, { args: ['--use-fake-ui-for-media-stream'] })
    const a = await signedInContext(t, th.httpUrl, without, ann.session, `#/stages/${stage.id}`)
    await a.page.getByRole('button', { name: 'Join audio' }).click()
    const alert = a.page
      .getByTestId('audio')
      .getByRole('alert')
      .filter({ hasText: /camera/ })
    await alert.waitFor({ timeout: 20_000 })
    t.match(
      await alert.textContent(),
      /No camera was found: connect one, then leave and join again/,
      'the alert says what happened and what to do',
    )
    await waitUntil(
      async () => ((await tileVideo(a.page, 'Bo'))?.width ?? 0) > 0,
      'Ann still sees Bo’s camera',
      20_000,
    )
    t.equal(await a.page.getByTestId('tile-Ann').getAttribute('data-video'), 'no', 'her own tile: initials')
    t.same([...a.problems, ...b.problems], [], 'no page error')
  },
)

/** Keeps the page's peer connections at hand (added through DevTools before the app loads). */
const KEEP_PEER_CONNECTIONS = `(() => {
  const pcs = []
  const PC = globalThis.RTCPeerConnection
  globalThis.RTCPeerConnection = class extends PC {
    constructor(...args) { super(...args); pcs.push(this) }
  }
  globalThis.__pcs = pcs
})()`
/** Stops sending RTP on every sender (as a broken uplink would), keeping the tracks to put back. */
const CUT = `(async () => {
  const held = []
  for (const pc of globalThis.__pcs)
    for (const sender of pc.getSenders()) if (sender.track) { held.push([sender, sender.track]); await sender.replaceTrack(null) }
  globalThis.__held = held
  return held.length
})()`
const RESTORE = `(async () => { for (const [sender, track] of globalThis.__held) await sender.replaceTrack(track) })()`

t.test(
  'in Chromium, when nothing arrives from Bo any more (his browser stops sending), Ann’s tile of him warns of a poor connection within seconds, and the warning goes once his media flows again',
  { skip: withoutChromium || mediasoupMissing },
  async (t) => {
    const { th, ann, bo, stage } = await videoStage(t)
    const browser = await launchChromium(t, { args: MEDIA_ARGS })
    const path = `#/stages/${stage.id}`
    const a = await signedInContext(t, th.httpUrl, browser, ann.session, path)
    const b = await signedInContext(t, th.httpUrl, browser, bo.session, path, KEEP_PEER_CONNECTIONS)
    for (const { page } of [a, b]) await page.getByRole('button', { name: 'Join audio' }).click()
    await waitUntil(
      async () => ((await tileVideo(a.page, 'Bo'))?.width ?? 0) > 0,
      'Ann sees Bo’s camera',
      20_000,
    )
    const tile = a.page.getByTestId('tile-Bo')
    const warning = tile.locator('.tile-warning')
    t.equal(await warning.textContent(), '', 'no warning while his media flows')

    t.equal(await b.page.evaluate(CUT), 2, 'Bo’s microphone and camera stop sending')
    await waitUntil(async () => (await warning.textContent()) !== '', 'Ann’s tile of Bo warns', 10_000)
    t.equal(
      await warning.textContent(),
      'Poor connection: nothing arrived for a moment',
      'it says what is wrong',
    )
    t.equal(await warning.getAttribute('role'), 'status', 'announced to screen readers')
    t.match(await tile.getAttribute('class'), /\bpoor\b/, 'and the tile is marked')
    await shoot(t, a.page, 'stage-video-poor')

    await b.page.evaluate(RESTORE)
    await waitUntil(async () => (await warning.textContent()) === '', 'the warning goes', 10_000)
    t.pass('Bo’s media flows again: no warning')
    t.same([...a.problems, ...b.problems], [], 'no page error')
  },
)

t.test(
  'in Chromium, a stage with mediasoup video and no audio through the router (audio type none): Join video sends the camera and shows the others’ (no microphone, no audio through the router); "Send my video" off pauses the camera’s producer on the router and Bo’s inbound video stops growing, on again it grows; "Receive the others’ video" off pauses Bo’s consumer and shows initials; choosing a camera replaces the track of the same producer',
  { skip: withoutChromium || mediasoupMissing },
  async (t) => {
    const th = await startTestHub(t, { WEB_DIR: await builtWebApp(t), ...roomy })
    const ops = await operator(th)
    const router = await createRouter(ops, 'eu-media')
    const agent = await startAgent(t, th, router, { loadIntervalSeconds: 1 })
    const ann = await person(th, 'Ann')
    const bo = await person(th, 'Bo')
    const stage = await ok<StageState>(ann.actor, 'stage.create', {
      name: 'Picture',
      preferredPosition: berlin,
      audioType: 'none',
      videoType: 'mediasoup',
    })
    const band = await ok<{ id: string }>(ann.actor, 'group.create', { stageId: stage.id, name: 'Band' })
    await ok(ann.actor, 'stage.join', { stageId: stage.id, groupId: band.id })
    await ok(bo.actor, 'stage.join', { stageId: stage.id, groupId: band.id })
    const watch = await watchStage(ann.actor, stage.id)
    await waitUntil(
      () => watch.latest()?.mediaRouter?.router === router.id,
      'the router serves the stage',
      10_000,
    )
    const producers: { paused: boolean; id: string; kind: string }[] = []
    const consumers: { paused: boolean; producerId: string }[] = []
    agent.room(stage.id)!.router.observer.on('newtransport', (transport) => {
      transport.observer.on('newproducer', (p) => producers.push(p))
      transport.observer.on('newconsumer', (c) => consumers.push(c))
    })

    const browser = await launchChromium(t, { args: MEDIA_ARGS })
    const path = `#/stages/${stage.id}`
    const a = await signedInContext(t, th.httpUrl, browser, ann.session, path)
    const b = await signedInContext(t, th.httpUrl, browser, bo.session, path)
    for (const { page } of [a, b]) await page.getByRole('button', { name: 'Join video' }).click()
    for (const { page } of [a, b])
      await page.getByText('Video is on: you see the others').waitFor({ timeout: 20_000 })
    const boSeesAnn = b.page.getByTestId('tile-Ann')
    const packets = async () => Number(await boSeesAnn.getAttribute('data-packets'))
    await waitUntil(
      async () => (await tileVideo(b.page, 'Ann'))?.width !== undefined && (await packets()) > 20,
      'Bo sees Ann',
      20_000,
    )
    await waitUntil(async () => ((await tileVideo(a.page, 'Bo'))?.width ?? 0) > 0, 'Ann sees Bo', 20_000)
    t.match(agent.load(), { producers: 2, transports: 4 }, 'two cameras, no microphone')
    t.same(
      producers.map((p) => p.kind),
      ['video', 'video'],
      'only video is produced',
    )
    t.equal(await a.page.getByTestId('level-own').count(), 0, 'no microphone meter')
    await shoot(t, a.page, 'stage-video-only')

    const annProducerId = await boSeesAnn.getAttribute('data-producer')
    const annCamera = producers.find((p) => p.id === annProducerId)!
    t.ok(annCamera && !annCamera.paused, 'Ann’s camera runs on the router')
    const choices = a.page.getByTestId('audio-choices')
    await choices.locator('summary').click()
    await choices.getByLabel('Send my video').uncheck()
    await waitUntil(() => annCamera.paused, 'Ann’s camera is paused on the router', 10_000)
    await new Promise((resolve) => setTimeout(resolve, 1500))
    const stopped = await packets()
    await new Promise((resolve) => setTimeout(resolve, 2500))
    t.ok(
      (await packets()) - stopped <= 5,
      `Bo’s inbound video from Ann stops growing (${stopped} → ${await packets()})`,
    )
    t.equal(
      (await boSeesAnn.locator('.tile-warning').textContent()) ?? '',
      '',
      'no poor-connection warning at Bo for what Ann paused (her track says paused)',
    )
    await choices.getByLabel('Send my video').check()
    await waitUntil(() => !annCamera.paused, 'Ann’s camera resumes on the router', 10_000)
    await waitUntil(
      async () => (await packets()) > stopped + 30,
      'Bo’s inbound video from Ann grows again',
      15_000,
    )
    t.pass('send video off and on: paused and resumed on the router')

    // Bo turns receiving video off: his consumer of Ann pauses on the router, her tile shows initials
    const boChoices = b.page.getByTestId('audio-choices')
    await boChoices.locator('summary').click()
    await boChoices.getByLabel('Receive the others’ video').uncheck()
    await waitUntil(
      async () => (await boSeesAnn.getAttribute('data-video')) === 'no',
      'Bo’s tile of Ann shows her initials',
      10_000,
    )
    const boConsumer = consumers.find((c) => c.producerId === annCamera.id)
    await waitUntil(() => boConsumer!.paused, 'Bo’s consumer of Ann is paused on the router', 10_000)
    // nothing arrives, as Bo chose: that is no sign of a poor connection
    await new Promise((resolve) => setTimeout(resolve, 2500))
    t.equal(
      (await boSeesAnn.locator('.tile-warning').textContent()) ?? '',
      '',
      'no poor-connection warning for what Bo paused himself',
    )
    await boChoices.getByLabel('Receive the others’ video').check()
    await waitUntil(
      async () => (await boSeesAnn.getAttribute('data-video')) === 'yes',
      'Ann’s camera plays again at Bo',
      10_000,
    )
    t.notOk(boConsumer!.paused, 'resumed on the router')

    // Ann's browser reports its cameras: another of her devices can choose one remotely
    const annDevice = await a.page.evaluate(
      (key) => (JSON.parse(localStorage.getItem(key)!) as { deviceId: string }).deviceId,
      `stagehub.browserDevice.${ann.actor.id}`,
    )
    let cameras: { id: string; label: string }[] = []
    await waitUntil(
      async () => {
        const doc = (await retainedOn(ann.actor.client, `users/${ann.actor.id}/devices/${annDevice}`)) as
          { reported?: { mediaDevices?: { videoInputs?: { id: string; label: string }[] } } } | undefined
        cameras = doc?.reported?.mediaDevices?.videoInputs ?? []
        return cameras.some((c) => c.label !== '')
      },
      'the hub has Ann’s cameras with their labels',
      15_000,
    )
    t.comment(`cameras reported: ${JSON.stringify(cameras)}`)
    const devices = await signedInContext(t, th.httpUrl, browser, ann.session, '#/devices')
    const card = devices.page.locator(`[data-device-id="${annDevice}"]`)
    await card.getByText('Remote control').click()
    await card
      .getByLabel('Camera')
      .locator('option', { hasText: cameras[0]!.label })
      .waitFor({ state: 'attached' })
    t.pass('her devices page offers the camera in the browser’s remote control')

    // Ann chooses her camera by its id: the same producer sends a new track from it
    const own = a.page.getByTestId('tile-Ann')
    const cameraId = await a.page.evaluate(async () => {
      const media = (
        globalThis as unknown as {
          navigator: { mediaDevices: { enumerateDevices(): Promise<{ kind: string; deviceId: string }[]> } }
        }
      ).navigator.mediaDevices
      return (await media.enumerateDevices()).find((d) => d.kind === 'videoinput')!.deviceId
    })
    await choices.getByLabel('Camera').selectOption(cameraId)
    await waitUntil(
      async () => (await own.getAttribute('data-camera')) === cameraId,
      'Ann’s camera track is the chosen one',
      10_000,
    )
    t.equal(await own.getAttribute('data-producer'), annCamera.id, 'the same producer (replaceTrack)')
    const after = await packets()
    await waitUntil(async () => (await packets()) > after + 30, 'Bo keeps receiving Ann’s video', 15_000)
    t.equal(agent.load().producers, 2, 'still two producers')
    t.same([...a.problems, ...b.problems], [], 'no page error, no CSP violation')
  },
)

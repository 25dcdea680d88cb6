import type { Browser, Page } from 'playwright-core'
import t, { type Test } from 'tap'
import type { StageState } from '../../schemas/actions/stage.ts'
import type { RouterAgent } from '../../devices/router/agent.ts'
import { type Actor, connectAs, ok, roomy } from '../helpers/actors.ts'
import { launchChromium, MEDIA_ARGS, withoutChromium } from '../helpers/chromium.ts'
import { startTestHub, type TestHub, waitUntil } from '../helpers/hub.ts'
import { mediasoupMissing } from '../helpers/mediasoup.ts'
import { builtWebApp, shoot, signedInContext } from '../helpers/web.ts'
import { berlin, createRouter, operator, startAgent, watchStage } from '../services/media/fixture.ts'

/**
 * The tab's media session (issue 14, web/src/media/session.ts): one per tab at app level, so audio
 * goes on while the person is on another page; the hub refuses media to someone outside the stage.
 */

async function person(th: TestHub, name: string): Promise<{ actor: Actor; session: unknown }> {
  const user = await th.hub.users.createUser({ name })
  return { actor: await connectAs(th, user.id, name), session: th.hub.users.userToken(user) }
}

/** A mediasoup stage of Ann's with Ann and Bo in it, served by a router agent, and a browser. */
async function jam(t: Test) {
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
    videoType: 'none',
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
  const browser = await launchChromium(t, { args: MEDIA_ARGS })
  return { th, agent, ann, bo, stage, browser }
}

/** Packets `page` has received from `name` so far (the stage page's meter). */
async function packetsFrom(page: Page, name: string): Promise<number> {
  const meter = page.getByTestId(`heard-${name}`).locator('meter')
  if ((await meter.count()) === 0) return 0
  return Number(await meter.getAttribute('data-packets'))
}

/** Waits until what `page` receives from `name` grows past `than` (+ 50 packets, one second of audio). */
async function grows(page: Page, name: string, than: number, what: string): Promise<number> {
  let now = 0
  await waitUntil(
    async () => {
      now = await packetsFrom(page, name)
      return now > than + 50
    },
    what,
    20_000,
  )
  return now
}

/** Both on the stage page, in audio, each hearing the other. */
async function bothInAudio(
  t: Test,
  th: TestHub,
  browser: Browser,
  stageId: string,
  sessions: unknown[],
): Promise<{ page: Page; problems: string[] }[]> {
  const pages = []
  for (const session of sessions)
    pages.push(await signedInContext(t, th.httpUrl, browser, session, `#/stages/${stageId}`))
  for (const { page } of pages) await page.getByRole('button', { name: 'Join audio' }).click()
  for (const { page } of pages)
    await page.getByText('Audio is on: you hear the stage and it hears you.').waitFor({ timeout: 20_000 })
  await grows(pages[0]!.page, 'Bo', 0, 'Ann hears Bo')
  await grows(pages[1]!.page, 'Ann', 0, 'Bo hears Ann')
  return pages
}

async function transportsSettle(agent: RouterAgent, transports: number, what: string) {
  await waitUntil(() => agent.load().transports === transports, what, 10_000)
}

t.test(
  'in Chromium, someone outside the stage whose browser device is online asks for the stage’s media from the page: the hub refuses (forbidden), the page says so and what to do, and the two members go on hearing each other',
  { skip: withoutChromium || mediasoupMissing },
  async (t) => {
    const { th, agent, ann, bo, stage, browser } = await jam(t)
    const [a, b] = await bothInAudio(t, th, browser, stage.id, [ann.session, bo.session])
    const cara = await person(th, 'Cara')
    const c = await signedInContext(t, th.httpUrl, browser, cara.session, '#/devices')
    // her browser is her device, online: the request goes over its connection, as a member's would
    await c.page
      .getByTestId('device')
      .filter({ hasText: 'This browser' })
      .getByTestId('presence')
      .getByText('Online', { exact: true })
      .waitFor()
    const before = { ann: await packetsFrom(a!.page, 'Bo'), bo: await packetsFrom(b!.page, 'Ann') }
    await c.page.evaluate((stageId) => {
      const app = (globalThis as unknown as { stagehub: { joinAudio(id: string): unknown } }).stagehub
      app.joinAudio(stageId)
    }, stage.id)
    const alert = c.page.getByTestId('in-audio').getByRole('alert')
    await alert.waitFor({ timeout: 20_000 })
    const said = (await alert.textContent()) ?? ''
    t.match(said, /refused this browser media: you are in no stage/, 'the page gives the hub’s reason')
    t.match(said, /join the stage .*invitation link.*then join audio/, 'and what to do')
    t.equal(
      await c.page.getByTestId('in-audio').getAttribute('data-phase'),
      'failed',
      'her audio stopped for good (no retry loop)',
    )
    await shoot(t, c.page, 'audio-refused-non-member')
    t.equal(agent.load().transports, 4, 'the router made nothing for her')
    await grows(a!.page, 'Bo', before.ann, 'Ann still hears Bo')
    await grows(b!.page, 'Ann', before.bo, 'Bo still hears Ann')
    t.pass('the members’ audio is unaffected')
    await c.page.getByTestId('in-audio').getByRole('button', { name: 'Leave audio' }).click()
    await c.page.getByTestId('in-audio').waitFor({ state: 'detached' })
    t.same([...a!.problems, ...b!.problems, ...c.problems], [], 'no page error, no CSP violation')
  },
)

t.test(
  'in Chromium, audio goes on while the person opens the stage’s mixer, settings and other pages (a small "in audio" bar says where, with Leave); back on the stage there is still one pair of transports; opening another stage, Leave in the bar, signing out and leaving the stage each end it',
  { skip: withoutChromium || mediasoupMissing },
  async (t) => {
    const { th, agent, ann, bo, stage, browser } = await jam(t)
    const [a, b] = await bothInAudio(t, th, browser, stage.id, [ann.session, bo.session])
    await transportsSettle(agent, 4, 'two transports each')
    const bar = a!.page.getByTestId('in-audio')
    t.equal(await bar.count(), 0, 'on the stage page the audio panel is enough: no bar')

    // Ann opens the mixer: she keeps sending (Bo hears her) and receiving (the bar's counters)
    await a!.page.getByRole('link', { name: 'Mixer' }).click()
    await a!.page.getByRole('heading', { name: /Mixer/ }).first().waitFor()
    await bar.waitFor()
    t.match(await bar.textContent(), /In audio: Jam/, 'the bar names the stage')
    const received = async () => Number(await bar.getByRole('status').getAttribute('data-bytes'))
    const first = await received()
    await waitUntil(async () => (await received()) > first + 4000, 'Ann’s inbound bytes grow on the mixer')
    t.pass('on the mixer Ann still receives Bo’s audio')
    await grows(
      b!.page,
      'Ann',
      await packetsFrom(b!.page, 'Ann'),
      'Bo still hears Ann while she is on the mixer',
    )
    await shoot(t, a!.page, 'audio-bar-mixer')

    // the settings and another page of the app: the same
    await a!.page.goto(`${th.httpUrl}/#/stages/${stage.id}/settings`)
    await bar.waitFor()
    await a!.page.getByRole('link', { name: 'Devices' }).click()
    await bar.waitFor()
    const onDevices = await received()
    await waitUntil(async () => (await received()) > onDevices + 4000, 'Ann’s inbound bytes grow on Devices')
    t.equal(agent.load().transports, 4, 'no new transports on the way')

    // back on the stage: the panel shows the same session, the bar goes
    await bar.getByRole('link', { name: 'Jam' }).click()
    await a!.page.getByText('Audio is on: you hear the stage and it hears you.').waitFor()
    await bar.waitFor({ state: 'detached' })
    await grows(a!.page, 'Bo', 0, 'the stage page shows Ann hearing Bo again')
    t.equal(agent.load().transports, 4, 'still one send and one recv transport each')
    t.match(agent.load(), { producers: 2, consumers: 2 }, 'and one producer and one consumer each')

    // opening another stage ends it
    const other = await ok<StageState>(ann.actor, 'stage.create', {
      name: 'Other',
      preferredPosition: berlin,
      audioType: 'mediasoup',
      videoType: 'none',
    })
    await a!.page.goto(`${th.httpUrl}/#/stages/${other.id}`)
    await transportsSettle(agent, 2, 'opening another stage closed Ann’s transports')
    await b!.page.getByTestId('heard-Ann').waitFor({ state: 'detached', timeout: 10_000 })
    t.pass('opening another stage ends Ann’s audio in the first')

    // Ann joins again from the first stage's page and leaves from the bar on the mixer
    await a!.page.goto(`${th.httpUrl}/#/stages/${stage.id}`)
    await a!.page.getByRole('button', { name: 'Join audio' }).click()
    await a!.page.getByText('Audio is on: you hear the stage and it hears you.').waitFor({ timeout: 20_000 })
    await transportsSettle(agent, 4, 'Ann is back in audio')
    await a!.page.goto(`${th.httpUrl}/#/stages/${stage.id}/mixer`)
    await bar.getByRole('button', { name: 'Leave audio' }).click()
    await bar.waitFor({ state: 'detached' })
    await transportsSettle(agent, 2, 'Leave in the bar closed Ann’s transports')

    // signing out ends it too
    await a!.page.goto(`${th.httpUrl}/#/stages/${stage.id}`)
    await a!.page.getByRole('button', { name: 'Join audio' }).click()
    await a!.page.getByText('Audio is on: you hear the stage and it hears you.').waitFor({ timeout: 20_000 })
    await transportsSettle(agent, 4, 'Ann is in audio once more')
    await a!.page.getByRole('button', { name: 'Sign out' }).click()
    await a!.page.getByRole('heading', { name: 'Sign in' }).waitFor()
    await waitUntil(() => agent.load().transports === 2, 'signing out closed Ann’s transports', 15_000)
    t.pass('signing out ends the audio')

    // Bo leaves the stage (from another client of his): his audio ends with it
    await ok(bo.actor, 'stage.leave', {})
    await transportsSettle(agent, 0, 'leaving the stage closed Bo’s transports')
    t.pass('leaving the stage ends the audio')
    t.same([...a!.problems, ...b!.problems], [], 'no page error, no CSP violation')
  },
)

t.test(
  'in Chromium, of two tabs of one browser only the one holding the browser device (its Web Lock) joins audio: Join audio in the other says audio runs in the first and starts nothing; once the first closes, the second joins',
  { skip: withoutChromium || mediasoupMissing },
  async (t) => {
    const { th, agent, ann, stage, browser } = await jam(t)
    const path = `#/stages/${stage.id}`
    const first = await signedInContext(t, th.httpUrl, browser, ann.session, path)
    await first.page.getByRole('button', { name: 'Join audio' }).click()
    await first.page
      .getByText('Audio is on: you hear the stage and it hears you.')
      .waitFor({ timeout: 20_000 })
    await transportsSettle(agent, 2, 'the first tab’s transports')

    const second = await first.page.context().newPage()
    const problems: string[] = []
    second.on('pageerror', (err) => problems.push(err.message))
    await second.goto(`${th.httpUrl}/${path}`)
    await second.getByRole('heading', { name: 'Audio' }).waitFor()
    await second.getByRole('button', { name: 'Join audio' }).click()
    const notice = second.getByTestId('audio-notice')
    await notice.waitFor()
    t.match(
      await notice.textContent(),
      /Audio runs in another tab of this browser/,
      'the second tab says where audio runs',
    )
    t.equal(await notice.getAttribute('role'), 'status', 'announced')
    t.equal(
      await second.getByRole('button', { name: 'Join audio' }).count(),
      1,
      'it stays off: Join audio, nothing half-started',
    )
    t.equal(await second.getByTestId('in-audio').count(), 0, 'no "in audio" bar')
    await shoot(t, second, 'audio-other-tab')
    await new Promise((resolve) => setTimeout(resolve, 1000))
    t.equal(agent.load().transports, 2, 'the router made nothing for the second tab')
    const own = first.page.getByTestId('level-own')
    const sent = Number(await own.getAttribute('data-packets'))
    await waitUntil(
      async () => Number(await own.getAttribute('data-packets')) > sent + 50,
      'the first tab goes on sending',
    )

    // the first tab closes: its media goes, the second becomes the device and joins
    await first.page.close()
    // the second tab becomes the device within the hub's grace period, so the hub keeps the device's
    // media: its first connection closes what the first tab left open
    await transportsSettle(agent, 0, 'the closed tab’s transports are closed by the tab taking over')
    t.equal(agent.load().producers, 0, 'no producer of the closed tab is left in the stage')
    await second.getByRole('button', { name: 'Join audio' }).click()
    await second
      .getByText('Audio is on: you hear the stage and it hears you.')
      .waitFor({ timeout: 30_000 })
      .catch(async (err: Error) => {
        throw new Error(`${err.message}; the panel says: ${await second.getByTestId('audio').textContent()}`)
      })
    await notice.waitFor({ state: 'detached' })
    const mine = second.getByTestId('level-own')
    await waitUntil(
      async () => Number(await mine.getAttribute('data-packets')) > 50,
      'the second tab sends its microphone',
      20_000,
    )
    t.pass('the second tab joins once it holds the device')
    t.equal(agent.load().transports, 2, 'its own two transports only')
    t.same([...first.problems, ...problems], [], 'no page error, no CSP violation')
  },
)

t.test(
  'in Chromium, turning "Send my audio" off pauses Ann’s producer on the router: Bo’s inbound packets from her stop growing; on again, the producer resumes there and they grow',
  { skip: withoutChromium || mediasoupMissing },
  async (t) => {
    const { th, agent, ann, bo, stage, browser } = await jam(t)
    // the router's own producers, as mediasoup has them
    const producers: { paused: boolean; appData: unknown; id: string }[] = []
    agent
      .room(stage.id)!
      .router.observer.on('newtransport', (transport) =>
        transport.observer.on('newproducer', (producer) => producers.push(producer)),
      )
    const [a, b] = await bothInAudio(t, th, browser, stage.id, [ann.session, bo.session])
    const annTrack = await b!.page.getByTestId('heard-Ann').locator('meter').getAttribute('data-producer')
    const annProducer = producers.find((p) => p.id === annTrack)
    t.ok(annProducer && !annProducer.paused, 'Ann’s producer runs on the router')

    const send = a!.page.getByTestId('audio-choices').getByLabel('Send my audio')
    await a!.page.getByTestId('audio-choices').locator('summary').click()
    await send.uncheck()
    await a!.page.getByText('You hear the stage; you send nothing.').waitFor({ timeout: 10_000 })
    await waitUntil(() => annProducer!.paused, 'Ann’s producer is paused on the router', 10_000)
    t.pass('paused on the router')
    // what was on its way has arrived: from now on nothing more
    await new Promise((resolve) => setTimeout(resolve, 1500))
    const stopped = await packetsFrom(b!.page, 'Ann')
    await new Promise((resolve) => setTimeout(resolve, 3000))
    t.ok(
      (await packetsFrom(b!.page, 'Ann')) - stopped <= 5,
      `Bo’s inbound packets from Ann stop growing (${stopped} → ${await packetsFrom(b!.page, 'Ann')})`,
    )
    t.equal(
      await b!.page.getByTestId('heard-Ann').count(),
      1,
      'her track stays listed: she is paused, not gone',
    )
    await grows(a!.page, 'Bo', await packetsFrom(a!.page, 'Bo'), 'Ann still hears Bo')

    await send.check()
    await a!.page.getByText('Audio is on: you hear the stage and it hears you.').waitFor({ timeout: 10_000 })
    await waitUntil(() => !annProducer!.paused, 'Ann’s producer resumes on the router', 10_000)
    await grows(b!.page, 'Ann', await packetsFrom(b!.page, 'Ann'), 'Bo’s inbound packets from Ann grow again')
    t.pass('resumed: Bo receives Ann again')
    t.equal(agent.load().producers, 2, 'the same two producers throughout')
    t.same([...a!.problems, ...b!.problems], [], 'no page error, no CSP violation')
  },
)

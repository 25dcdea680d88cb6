import type { Page } from 'playwright-core'
import t from 'tap'
import type { MemberState, StageState } from '../../schemas/actions/stage.ts'
import { type Actor, connectAs, connectDevice, ok, refused, roomy } from '../helpers/actors.ts'
import { launchChromium, MEDIA_ARGS, withoutChromium } from '../helpers/chromium.ts'
import { startTestHub, type TestHub, waitUntil } from '../helpers/hub.ts'
import { mediasoupMissing } from '../helpers/mediasoup.ts'
import { builtWebApp, shoot, signedInContext } from '../helpers/web.ts'
import { berlin, createRouter, operator, startAgent, watchStage } from '../services/media/fixture.ts'

/**
 * Browser media (issue 14): people in Chromium (fake microphone) join a mediasoup stage's audio
 * through the hub's signalling and a real router agent with a real mediasoup worker.
 */

async function person(th: TestHub, name: string): Promise<{ actor: Actor; session: unknown }> {
  const user = await th.hub.users.createUser({ name })
  return { actor: await connectAs(th, user.id, name), session: th.hub.users.userToken(user) }
}

interface Heard {
  receiving: boolean
  bytes: number
  packets: number
  level: number
  gain: number
  concealed: number
  played: number
}

/** What `page` shows of the track it receives from `name`: the meter's counters (RTCPeerConnection stats). */
async function heard(page: Page, name: string): Promise<Heard> {
  const meter = page.getByTestId(`heard-${name}`).locator('meter')
  const attr = async (a: string) => (await meter.getAttribute(a)) ?? ''
  return {
    receiving: (await attr('data-receiving')) === 'yes',
    bytes: Number(await attr('data-bytes')),
    packets: Number(await attr('data-packets')),
    level: Number(await attr('data-level')),
    gain: Number((await attr('data-gain')) || NaN),
    concealed: Number(await attr('data-concealed')),
    played: Number(await attr('data-played')),
  }
}

/** Polls `page` until what it hears from `name` passes `check`. */
async function until(page: Page, name: string, check: (h: Heard) => boolean, what: string, ms = 20_000) {
  let last: Heard | undefined
  try {
    await waitUntil(
      async () => {
        if ((await page.getByTestId(`heard-${name}`).count()) === 0) return false
        last = await heard(page, name)
        return check(last)
      },
      what,
      ms,
    )
  } catch (err) {
    throw new Error(`${(err as Error).message} (last seen: ${JSON.stringify(last)})`)
  }
  return last!
}

t.test(
  'in Chromium, two members of a mediasoup stage join audio and hear each other through the router (bytes, packets and level grow); B mutes A in his own mix and A’s gain node goes to 0 while A’s view is unchanged; the router dies, a second takes over and audio flows again without a reload, as after A’s connection drops; A leaves audio and B’s consumer closes',
  { skip: withoutChromium || mediasoupMissing },
  async (t) => {
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
    const band = await ok<{ id: string }>(ann.actor, 'group.create', {
      stageId: stage.id,
      name: 'Band',
      color: '#336699',
    })
    const annMember = await ok<MemberState>(ann.actor, 'stage.join', { stageId: stage.id, groupId: band.id })
    await ok(bo.actor, 'stage.join', { stageId: stage.id, groupId: band.id })
    const watch = await watchStage(ann.actor, stage.id)
    await waitUntil(
      () => watch.latest()?.mediaRouter?.router === router.id,
      'the router serves the stage',
      10_000,
    )

    const browser = await launchChromium(t, { args: MEDIA_ARGS })
    const path = `#/stages/${stage.id}`
    const a = await signedInContext(t, th.httpUrl, browser, ann.session, path)
    const b = await signedInContext(t, th.httpUrl, browser, bo.session, path)

    for (const { page } of [a, b]) {
      await page.getByRole('heading', { name: 'Audio' }).waitFor()
      await page.getByRole('button', { name: 'Join audio' }).click()
    }
    const clicked = Date.now()
    for (const { page } of [a, b])
      await page.getByText('Audio is on: you hear the stage and it hears you.').waitFor({ timeout: 20_000 })

    const annHearsBo = await until(a.page, 'Bo', (h) => h.packets > 0, 'Ann receives Bo’s audio')
    const boHearsAnn = await until(b.page, 'Ann', (h) => h.packets > 0, 'Bo receives Ann’s audio')
    t.comment(`from the clicks to inbound audio on both sides: ${Date.now() - clicked} ms`)
    const annLater = await until(
      a.page,
      'Bo',
      (h) => h.packets > annHearsBo.packets + 50 && h.bytes > annHearsBo.bytes && h.level > 0,
      'Ann’s inbound audio from Bo grows and has a level',
    )
    const boLater = await until(
      b.page,
      'Ann',
      (h) => h.packets > boHearsAnn.packets + 50 && h.bytes > boHearsAnn.bytes && h.level > 0,
      'Bo’s inbound audio from Ann grows and has a level',
    )
    t.ok(
      annLater.bytes > annHearsBo.bytes && annLater.packets > annHearsBo.packets,
      'Ann: bytes and packets grow',
    )
    t.ok(annLater.level > 0, `Ann hears Bo at level ${annLater.level}`)
    t.ok(
      boLater.bytes > boHearsAnn.bytes && boLater.packets > boHearsAnn.packets,
      'Bo: bytes and packets grow',
    )
    t.ok(boLater.level > 0, `Bo hears Ann at level ${boLater.level}`)
    // what is heard goes through Web Audio: the track reaches the graph (its analyser, before the gain)
    const annPlays = await until(
      a.page,
      'Bo',
      (h) => h.played > 0,
      'Bo’s audio reaches Ann’s Web Audio graph',
    )
    const boPlays = await until(
      b.page,
      'Ann',
      (h) => h.played > 0,
      'Ann’s audio reaches Bo’s Web Audio graph',
    )
    t.ok(annPlays.played > 0 && boPlays.played > 0, 'both graphs play the other’s audio')
    t.equal(annLater.gain, 1, 'Ann hears Bo at 0 dB (no mix set)')
    t.equal(boLater.gain, 1, 'Bo hears Ann at 0 dB')
    await waitUntil(() => agent.load().consumers === 2, 'the router has a consumer for each of them', 5000)
    t.match(agent.load(), { producers: 2, consumers: 2, transports: 4 }, 'two producers, two consumers')
    const own = a.page.getByTestId('level-own')
    await waitUntil(
      async () => Number(await own.getAttribute('data-bytes')) > 0,
      'Ann sees her microphone send',
    )
    await shoot(t, a.page, 'stage-audio')

    // Bo mutes Ann in his own mix: only his gain for her track changes
    await ok(bo.actor, 'mix.set', { kind: 'member', id: annMember.id, muted: true })
    const muted = await until(b.page, 'Ann', (h) => h.gain === 0, 'Bo’s gain node for Ann goes to 0')
    t.equal(muted.gain, 0, 'Bo’s GainNode for Ann’s track is 0')
    t.match(await b.page.getByTestId('heard-Ann').textContent(), /muted in your mix/, 'and he reads why')
    await until(
      b.page,
      'Ann',
      (h) => h.packets > muted.packets,
      'Ann’s audio still arrives at Bo (muted locally)',
    )
    t.equal((await heard(a.page, 'Bo')).gain, 1, 'Ann still hears Bo at 0 dB: her view is unchanged')
    t.notMatch(await a.page.getByTestId('heard-Bo').textContent(), /muted/, 'nothing muted in Ann’s view')

    // failover: the router agent dies, a second one takes the stage, audio resumes without a reload
    const spare = await createRouter(ops, 'eu-spare')
    const agent2 = await startAgent(t, th, spare, { loadIntervalSeconds: 1 })
    const before = await a.page.getByTestId('heard-Bo').locator('meter').getAttribute('data-producer')
    const lost = Date.now()
    agent.crash()
    await waitUntil(
      () => watch.latest()?.mediaRouter?.router === spare.id,
      'the stage moves to the second router',
      20_000,
    )
    const moved = Date.now()
    const meterOf = (page: Page, name: string) => page.getByTestId(`heard-${name}`).locator('meter')
    await waitUntil(
      async () =>
        (await meterOf(a.page, 'Bo').count()) === 1 &&
        ![before, null].includes(await meterOf(a.page, 'Bo').getAttribute('data-producer')),
      'Ann’s page shows Bo’s new track',
      20_000,
    )
    const annAgain = await until(a.page, 'Bo', (h) => h.packets > 50 && h.played > 0, 'Ann hears Bo again')
    const boAgain = await until(b.page, 'Ann', (h) => h.packets > 50, 'Bo receives Ann again')
    t.comment(
      `failover: the stage moved ${moved - lost} ms after the router died; audio flowed again ${Date.now() - lost} ms after`,
    )
    t.ok(annAgain.level > 0 && annAgain.played > 0, 'Ann hears Bo through the second router')
    t.equal(boAgain.gain, 0, 'Bo’s mix still mutes Ann on the new router')
    t.match(agent2.load(), { producers: 2, consumers: 2 }, 'the second router carries both')

    // Ann's browser device loses its connection and comes back: her media starts over by itself
    const annTrack = await meterOf(b.page, 'Ann').getAttribute('data-producer')
    t.equal(
      th.hub.broker.disconnectWhere((who) => who.role === 'device' && who.owner === ann.actor.id),
      1,
      'Ann’s browser device is cut off',
    )
    await waitUntil(
      async () =>
        (await meterOf(b.page, 'Ann').count()) === 1 &&
        ![annTrack, null].includes(await meterOf(b.page, 'Ann').getAttribute('data-producer')),
      'Bo’s page shows Ann’s new track after her reconnect',
      20_000,
    )
    await until(b.page, 'Ann', (h) => h.packets > 50, 'Bo receives Ann again after her reconnect')
    await until(a.page, 'Bo', (h) => h.packets > 50 && h.played > 0, 'Ann hears Bo again after her reconnect')
    t.pass('after the reconnect both receive again, without a reload')

    // Ann leaves audio: her producer goes, and with it Bo's consumer
    await a.page.getByRole('button', { name: 'Leave audio' }).click()
    await a.page.getByRole('button', { name: 'Join audio' }).waitFor()
    await b.page.getByTestId('heard-Ann').waitFor({ state: 'detached', timeout: 10_000 })
    await b.page.getByText('No one else sends audio yet.').waitFor()
    await waitUntil(() => agent2.load().consumers === 0, 'the router closed Bo’s consumer of Ann', 10_000)
    t.match(
      agent2.load(),
      { producers: 1, consumers: 0, transports: 2 },
      'only Bo’s transports and producer remain',
    )
    t.same([...a.problems, ...b.problems], [], 'no page error, no CSP violation')
  },
)

t.test(
  'in Chromium, joining audio before a router serves the stage says so and starts by itself once one does; a device of someone outside the stage is refused media',
  { skip: withoutChromium || mediasoupMissing },
  async (t) => {
    const th = await startTestHub(t, { WEB_DIR: await builtWebApp(t), ...roomy })
    const ops = await operator(th)
    const ann = await person(th, 'Ann')
    const stage = await ok<StageState>(ann.actor, 'stage.create', {
      name: 'Early',
      preferredPosition: berlin,
      audioType: 'mediasoup',
      videoType: 'none',
    })
    const band = await ok<{ id: string }>(ann.actor, 'group.create', { stageId: stage.id, name: 'Band' })
    await ok(ann.actor, 'stage.join', { stageId: stage.id, groupId: band.id })

    const browser = await launchChromium(t, { args: MEDIA_ARGS })
    const a = await signedInContext(t, th.httpUrl, browser, ann.session, `#/stages/${stage.id}`)
    await a.page.getByRole('button', { name: 'Join audio' }).click()
    await a.page.getByText('No media router serves this stage yet').waitFor()
    t.pass('no router yet: the page says so and what happens next')
    await shoot(t, a.page, 'stage-audio-no-router')

    const router = await createRouter(ops, 'late')
    await startAgent(t, th, router)
    await a.page.getByText('Audio is on: you hear the stage and it hears you.').waitFor({ timeout: 20_000 })
    const own = a.page.getByTestId('level-own')
    await waitUntil(
      async () => Number(await own.getAttribute('data-bytes')) > 0,
      'her microphone is sent once the router serves the stage',
      10_000,
    )
    t.pass('audio started by itself when the router came, without another click')
    await a.page.getByText('No one else sends audio yet.').waitFor()

    // someone outside the stage, over a device connection as the browser's: refused, with the reason
    const cara = await person(th, 'Cara')
    const box = await ok<{ device: { id: string }; token: string }>(cara.actor, 'device.create', {
      name: 'Cara’s browser',
      kind: 'browser',
    })
    const device = await connectDevice(th, box.device.id, box.token)
    const refusal = await refused(device, 'media.capabilities')
    t.match(refusal, { code: 'forbidden', message: /no stage/ }, 'a device of a non-member gets no media')
    t.same(a.problems, [], 'no page error, no CSP violation')
  },
)

t.test(
  'in Chromium, a refused microphone and a machine without one are said with what to do, and the person still hears the stage',
  { skip: withoutChromium || mediasoupMissing },
  async (t) => {
    const th = await startTestHub(t, { WEB_DIR: await builtWebApp(t), ...roomy })
    const ops = await operator(th)
    await startAgent(t, th, await createRouter(ops, 'eu-media'))
    const ann = await person(th, 'Ann')
    const stage = await ok<StageState>(ann.actor, 'stage.create', {
      name: 'Quiet',
      preferredPosition: berlin,
      audioType: 'mediasoup',
      videoType: 'none',
    })
    const band = await ok<{ id: string }>(ann.actor, 'group.create', { stageId: stage.id, name: 'Band' })
    await ok(ann.actor, 'stage.join', { stageId: stage.id, groupId: band.id })
    const watch = await watchStage(ann.actor, stage.id)
    await waitUntil(() => watch.latest()?.mediaRouter !== undefined, 'a router serves the stage', 10_000)

    // a fake microphone but no permission (the prompt is dismissed), then no microphone at all
    for (const [args, expected, shot] of [
      [['--use-fake-device-for-media-stream'], /not allowed to use your microphone/, 'stage-audio-refused'],
      [['--use-fake-ui-for-media-stream'], /No microphone was found/, 'stage-audio-no-microphone'],
    ] as const) {
      const browser = await launchChromium(t, { args })
      const a = await signedInContext(t, th.httpUrl, browser, ann.session, `#/stages/${stage.id}`)
      await a.page.getByRole('button', { name: 'Join audio' }).click()
      const alert = a.page.getByTestId('audio').getByRole('alert')
      await alert.waitFor({ timeout: 20_000 })
      t.match(await alert.textContent(), expected, `the alert says what happened and what to do: ${expected}`)
      await a.page.getByText('You hear the stage; you send nothing.').waitFor()
      t.pass('audio is on for listening')
      if (shot === 'stage-audio-refused') await shoot(t, a.page, shot)
      t.equal(await a.page.getByTestId('level-own').count(), 0, 'no microphone meter')
      await a.page.getByRole('button', { name: 'Leave audio' }).click()
      t.same(a.problems, [], 'no page error')
    }
  },
)

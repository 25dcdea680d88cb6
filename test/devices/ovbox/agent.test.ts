import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { AGENT_VERSION } from '../../../devices/ovbox/version.ts'
import { actor, connectAs, ok, roomy } from '../../helpers/actors.ts'
import { selfSignedCert, sleep, startTestHub, waitUntil } from '../../helpers/hub.ts'
import { freePort, startProxy } from '../../helpers/proxy.ts'
import { registerBox, settled, startAgent, untilSettled, watchDevice } from './fixture.ts'

/**
 * The ov-box agent against a real hub over TCP, with real files in a temp directory and ov-client
 * replaced by a shell command that appends to a file. Every assertion is on what the owner's app sees
 * (device document, presence, configuration) or on the files the agent wrote.
 */

t.test('the agent goes online and reports its sound cards and status', async (t) => {
  const th = await startTestHub(t, roomy)
  const owner = await actor(th, 'Owner')
  const box = await registerBox(t, th, owner)
  const view = await watchDevice(owner, box.deviceId)
  t.equal(view.doc().online, false, 'offline before the agent runs')

  const agent = startAgent(t, box)
  const doc = await view.until(
    (d) => d.online && d.soundCards.length === 2 && d.reported.status?.cpuLoad !== undefined,
    'online with both sound cards and a status',
  )
  const session = agent.stats.session
  t.same(view.presences.at(-1), { state: 'online', session }, 'retained presence: online of this session')
  t.ok(session > 1_000_000_000, 'a box without state starts its sessions at the wall clock')

  const usb = doc.soundCards.find((c) => c.name === 'hw:1')
  t.same(
    usb,
    {
      name: 'hw:1',
      label: 'USB Audio Device',
      driver: 'alsa',
      sampleRate: 48000,
      periodSize: 96,
      numPeriods: 2,
      numInputChannels: 1,
      numOutputChannels: 2,
      sampleRates: [44100, 48000],
    },
    'the USB card: label from /proc/asound/cards, channels and rates from its stream0',
  )
  t.match(
    doc.soundCards.find((c) => c.name === 'hw:0'),
    { label: 'bcm2835 Headphones', numInputChannels: 2, numOutputChannels: 2 },
    'a card without stream0 gets the defaults',
  )
  const status = doc.reported.status!
  t.equal(status.temperature, 48.312, 'temperature from the thermal zone, in °C')
  t.equal(status.version, AGENT_VERSION)
  t.ok((status.memoryTotal as number) > 0 && (status.memoryUsed as number) > 0, 'memory')
  t.type(status.cpuLoad, 'number')
  await view.until((d) => d.reported.status?.bandwidthRx !== undefined, 'a bandwidth from two samples')

  // the first configuration (and the one with the sound cards) was applied and reported
  await untilSettled(view, agent)
  t.same(box.ovConfig(), view.config().ov, "ov-client's file holds the configuration's ov part")
  t.equal(agent.stats.soundCardsSet, 2, 'one soundcard.set per card, not repeated')
  t.ok(box.restarts() >= 1, 'ov-client was restarted')
  const state = JSON.parse(readFileSync(join(box.config.stateDir, 'state.json'), 'utf8')) as unknown
  t.match(state, { session, appliedRevision: view.config().revision }, 'session and revision persisted')
})

t.test(
  "the owner's device.update reaches ov-client's file, ov-client restarts, the revision is reported",
  async (t) => {
    const th = await startTestHub(t, roomy)
    const owner = await actor(th, 'Owner')
    const box = await registerBox(t, th, owner)
    const view = await watchDevice(owner, box.deviceId)
    const agent = startAgent(t, box)
    await view.until((d) => d.soundCards.length === 2, 'the sound cards')
    await untilSettled(view, agent)
    const restarts = box.restarts()
    const applies = agent.stats.applies

    await ok(owner, 'device.update', {
      deviceId: box.deviceId,
      settings: { egoGain: 0.7, receiverJitter: 12 },
    })
    await waitUntil(
      () =>
        box.ovConfig()?.rendersettings.egogain === 0.7 &&
        box.ovConfig()?.rendersettings.jitter.receive === 12,
      'the new settings in the ov-client file',
    )
    await untilSettled(view, agent)
    t.equal(box.restarts(), restarts + 1, 'ov-client restarted once')
    t.equal(agent.stats.applies, applies + 1, 'one configuration applied')
    const applied = view.doc().reported.appliedConfig!
    t.equal(applied.revision, view.config().revision, 'reported revision = the configuration revision')
    t.notOk(applied.error, 'no error')
    t.same(box.ovConfig(), view.config().ov)

    // a change outside the ov-client part: applied and reported, ov-client left alone
    await ok(owner, 'device.update', { deviceId: box.deviceId, settings: { sendVideo: false } })
    await waitUntil(
      () => view.config().desired.sendVideo === false && settled(view, agent),
      'the video setting is applied',
    )
    t.equal(box.restarts(), restarts + 1, 'no restart for an unchanged ov-client configuration')

    // status reports keep coming without a new configuration to apply each time
    const reports = agent.stats.statusReports
    const appliesNow = agent.stats.applies
    await waitUntil(() => agent.stats.statusReports >= reports + 2, 'two more status reports')
    t.equal(agent.stats.applies, appliesNow, 'reports do not produce configurations to apply')
  },
)

t.test('a failing ov-client restart is reported as appliedConfig.error', async (t) => {
  const th = await startTestHub(t, roomy)
  const owner = await actor(th, 'Owner')
  const box = await registerBox(t, th, owner, {
    restartCommand: () => [
      'sh',
      '-c',
      'echo "Failed to restart ov-client.service: Unit not found." >&2; exit 5',
    ],
  })
  const view = await watchDevice(owner, box.deviceId)
  const agent = startAgent(t, box)
  const doc = await view.until(
    (d) =>
      d.reported.appliedConfig?.error !== undefined &&
      d.reported.appliedConfig.revision === view.config().revision,
    'the failed configuration is reported',
  )
  t.match(
    doc.reported.appliedConfig!.error,
    /ov-client restart exited with code 5: Failed to restart ov-client\.service/,
  )
  t.ok(box.ovConfig(), 'the file was written all the same')
  t.equal(agent.stats.appliedRevision, undefined, 'not remembered as applied')
  t.match(agent.stats.lastApplyError, /code 5/)
})

t.test(
  'a hub restart: the agent reconnects with a larger session, is online again, and leaves ov-client alone',
  async (t) => {
    const port = await freePort()
    const th = await startTestHub(t, { ...roomy, MQTT_PORT: String(port) })
    const owner = await actor(th, 'Owner')
    const box = await registerBox(t, th, owner)
    // watching first: a subscription made while the box's configuration changes may get the retained
    // message of the older one after the live newer one
    const view = await watchDevice(owner, box.deviceId)
    const agent = startAgent(t, box)
    await view.until((d) => d.online && d.soundCards.length === 2, 'online with its sound cards')
    await untilSettled(view, agent)
    const before = {
      session: agent.stats.session,
      restarts: box.restarts(),
      revision: view.config().revision,
    }
    const skipped = agent.stats.skipped

    await th.restart()
    t.equal(th.mqttUrl, `mqtt://127.0.0.1:${port}`, 'the hub is back on the same port')
    await waitUntil(
      () => agent.stats.connects >= 2 && agent.stats.online,
      'the agent is connected again',
      15_000,
    )
    t.ok(agent.stats.session > before.session, 'with a larger session')
    await waitUntil(
      () => agent.stats.configsSinceConnect >= 1 && !agent.stats.applying,
      'the retained configuration arrived again and was handled',
    )
    t.equal(
      agent.stats.lastConfig?.revision,
      before.revision,
      'the same configuration revision after the restart',
    )
    t.ok(agent.stats.skipped > skipped, 'it was recognised as applied')
    t.equal(box.restarts(), before.restarts, 'ov-client was not restarted')

    // the owner's app connection went with the old hub: a new one of the same user
    const watcher = await watchDevice(await connectAs(th, owner.id, 'Owner'), box.deviceId)
    const doc = await watcher.until((d) => d.online, 'the owner sees the device online')
    t.equal(doc.online, true)
    t.same(watcher.presences.at(-1), { state: 'online', session: agent.stats.session })
  },
)

t.test('abrupt network loss: the owner sees the device lost, then online again', async (t) => {
  const th = await startTestHub(t, roomy)
  const hubPort = Number(new URL(th.mqttUrl).port)
  const proxy = await startProxy(t, () => ({ host: '127.0.0.1', port: hubPort }))
  const owner = await actor(th, 'Owner')
  const box = await registerBox(t, th, owner, { hubUrl: proxy.url })
  const view = await watchDevice(owner, box.deviceId)
  const agent = startAgent(t, box)
  await view.until((d) => d.online, 'online through the proxy')
  await untilSettled(view, agent)
  const first = agent.stats.session
  const restarts = box.restarts()
  const seen = view.presences.length

  proxy.cut()
  await waitUntil(
    () => view.presences.slice(seen).some((p) => p?.state === 'lost' && p.session === first),
    "the last will of the lost session: 'lost'",
  )
  await view.until((d) => d.online && agent.stats.session > first, 'online again with a new session', 15_000)
  const after = view.presences.slice(seen)
  const lostAt = after.findIndex((p) => p?.state === 'lost')
  const onlineAt = after.findIndex((p) => p?.state === 'online')
  t.ok(lostAt >= 0 && onlineAt > lostAt, 'lost, then online')
  t.same(after.at(-1), { state: 'online', session: agent.stats.session })
  t.ok(
    view.docs.some((d) => !d.online),
    'the device document showed the device offline in between',
  )
  await waitUntil(
    () => agent.stats.configsSinceConnect >= 1 && !agent.stats.applying,
    'the config read again',
  )
  t.equal(box.restarts(), restarts, 'the unchanged configuration did not restart ov-client')
})

t.test('a silent network (no RST): keepalive timeouts on both sides, then the agent is back', async (t) => {
  const th = await startTestHub(t, roomy)
  const hubPort = Number(new URL(th.mqttUrl).port)
  const proxy = await startProxy(t, () => ({ host: '127.0.0.1', port: hubPort }))
  const owner = await actor(th, 'Owner')
  const box = await registerBox(t, th, owner, { hubUrl: proxy.url })
  const view = await watchDevice(owner, box.deviceId)
  const agent = startAgent(t, box) // keepalive 5 s: the hub gives up after 7.5 s
  await view.until((d) => d.online, 'online through the proxy')
  const first = agent.stats.session
  const seen = view.presences.length

  proxy.silence()
  await waitUntil(
    () => view.presences.slice(seen).some((p) => p?.state === 'lost' && p.session === first),
    "the hub's keepalive timeout publishes the will: 'lost'",
    15_000,
  )
  // the hub's end of the connection does not reach the agent: its own keepalive has to notice
  await view.until((d) => d.online && agent.stats.session > first, 'online again with a new session', 15_000)
  t.same(view.presences.at(-1), { state: 'online', session: agent.stats.session })
})

t.test(
  'device.remove: the hub closes the connection and refuses every reconnect; the agent keeps trying with backoff',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const owner = await actor(th, 'Owner')
    const box = await registerBox(t, th, owner)
    const view = await watchDevice(owner, box.deviceId)
    const agent = startAgent(t, box)
    await view.until((d) => d.online, 'online')
    const connects = agent.stats.connects
    const attempts = agent.stats.attempts

    await ok(owner, 'device.remove', { deviceId: box.deviceId })
    await waitUntil(() => !agent.stats.connected, 'the connection is closed')
    await waitUntil(() => agent.stats.attempts >= attempts + 3, 'three more attempts')
    t.equal(agent.stats.connects, connects, 'none was accepted (CONNACK 5)')
    t.equal(
      agent.stats.removed,
      false,
      'a removed device cannot tell removal from token rotation (see README)',
    )
  },
)

t.test('a cleared (zero-length) configuration: the agent stops for good', async (t) => {
  const th = await startTestHub(t, roomy)
  const owner = await actor(th, 'Owner')
  const box = await registerBox(t, th, owner)
  const view = await watchDevice(owner, box.deviceId)
  let removed = 0
  const agent = startAgent(t, box, { onRemoved: () => removed++ })
  await view.until((d) => d.online, 'online')
  await untilSettled(view, agent)

  // what a device still connected would receive when the hub clears its configuration topic
  await th.hub.broker.publish(`devices/${box.deviceId}/config`, '', { retain: true, qos: 1 })
  await waitUntil(() => agent.stats.removed, 'the agent noticed the removal')
  t.equal(removed, 1, 'onRemoved called once')
  t.equal(agent.stats.connected, false)
  await view.until((d) => !d.online, 'the hub sees the connection gone')
  const attempts = agent.stats.attempts
  const reports = agent.stats.statusReports
  // a negative check needs a window: a status interval and several backoff delays (100 ms doubling)
  await sleep(1200)
  t.equal(agent.stats.attempts, attempts, 'no reconnect attempt')
  t.equal(agent.stats.statusReports, reports, 'no more reports')
})

t.test('over TLS with a private CA (caPath)', async (t) => {
  const { cert, key } = await selfSignedCert(t)
  const th = await startTestHub(t, { ...roomy, TLS_CERT: cert, TLS_KEY: key, MQTTS_PORT: '0' })
  const owner = await actor(th, 'Owner')
  const box = await registerBox(t, th, owner, { hubUrl: `mqtts://127.0.0.1:${th.hub.ports.mqtts}` })
  box.config.caPath = cert
  const view = await watchDevice(owner, box.deviceId)
  const agent = startAgent(t, box)
  await view.until((d) => d.online && d.soundCards.length === 2, 'online over TLS with its sound cards')
  await untilSettled(view, agent)
  t.equal(agent.stats.appliedRevision, view.config().revision, 'the agent trusts the hub through caPath')
})

t.test('the agent logs why its box has no audio, once per change of the reason', async (t) => {
  const th = await startTestHub(t, roomy)
  const owner = await actor(th, 'Owner')
  const box = await registerBox(t, th, owner)
  const lines: { level: number; msg: string; audio?: string }[] = []
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as (typeof lines)[number])
      done()
    },
  })
  startAgent(t, box, { log: pino({ level: 'info' }, sink) })
  const said = () => lines.filter((line) => line.audio !== undefined)
  await waitUntil(() => said().some((l) => l.audio === 'no-stage'), 'the box says it is on no stage')
  t.match(said()[0], { level: 40, msg: /^no audio: the box's owner is not on a stage/ })

  const stage = await ok<{ id: string }>(owner, 'stage.create', { name: 'Web stage' })
  const group = await ok<{ id: string }>(owner, 'group.create', {
    stageId: stage.id,
    name: 'G',
    color: '#123456',
  })
  await ok(owner, 'stage.join', { stageId: stage.id, groupId: group.id })
  await waitUntil(() => said().some((l) => l.audio === 'stage-not-ov'), 'the box says the stage is not ov')
  t.match(said().at(-1), { level: 40, msg: /^no audio: stage "Web stage" has audioType "mediasoup"/ })
  await ok(owner, 'device.update', { deviceId: box.deviceId, settings: { receiverJitter: 20 } })
  await sleep(300)
  t.same(
    said().map((l) => l.audio),
    ['no-stage', 'stage-not-ov'],
    'a new configuration with the same reason is not logged again',
  )
})

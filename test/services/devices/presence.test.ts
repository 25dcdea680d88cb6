import { connect as tcpConnect, type Socket } from 'node:net'
import t, { type Test } from 'tap'
import type { MqttClient } from 'mqtt'
import { type Packet, generate, parser as packetParser } from 'mqtt-packet'
import type { DeviceState, PresencePayload } from '../../../schemas/actions/device.ts'
import type { DeviceDoc } from '../../../services/collections.ts'
import {
  Requester,
  type TestHub,
  connectionClosed,
  nextMessage,
  recordResponses,
  sleep,
  startTestHub,
  subackCodes,
  waitUntil,
} from '../../helpers/hub.ts'
import { operatorSees, roomy } from '../../helpers/actors.ts'

/**
 * End-to-end tests of device presence and reported state (docs/protocol/topics.md, docs/protocol/README.md#presence): real MQTT.js clients (and
 * one raw MQTT socket) over TCP against a real hub. The owner watches `users/{owner}/devices/{d}` and
 * `devices/{d}/presence` the way an app does; every assertion is on what the owner, the device or a
 * fresh subscriber actually receives, or on the stored device.
 */

/** The owner's device document, with `reported` readable (the schema leaves it open). */
type DeviceDocument = Omit<DeviceState, 'reported'> & { reported: Record<string, unknown> }

interface Created {
  device: DeviceState
  token: string
}

interface Owner {
  id: string
  client: MqttClient
  req: Requester
}

let seq = 0

const presenceTopic = (d: string) => `devices/${d}/presence`
const reportedTopic = (d: string) => `devices/${d}/reported`
const documentTopic = (owner: string, d: string) => `users/${owner}/devices/${d}`
const presence = (state: PresencePayload['state'], session: number) => JSON.stringify({ state, session })
const parse = (payload: Buffer): unknown => (payload.length === 0 ? null : JSON.parse(payload.toString()))

async function newOwner(th: TestHub, name = 'Owner'): Promise<Owner> {
  const user = await th.hub.users.createUser({ name })
  return connectOwner(th, user.id)
}

/** A (new) app connection of an existing user. */
async function connectOwner(th: TestHub, userId: string): Promise<Owner> {
  const client = await th.connect({
    clientId: `app-${++seq}`,
    token: th.token({ sub: userId, name: 'Owner' }),
  })
  return { id: userId, client, req: new Requester(client) }
}

async function createDevice(t: Test, owner: Owner, name: string): Promise<Created> {
  const res = await owner.req.request('device.create', { name, kind: 'ovbox' })
  t.ok(res.ok, `device.create ${name} succeeds`)
  return res.result as Created
}

/** The device connects as itself with its last will `lost` of this session on its presence topic. */
function connectDevice(th: TestHub, created: Created, session: number) {
  return th.connect({
    clientId: created.device.id,
    token: created.token,
    will: {
      topic: presenceTopic(created.device.id),
      payload: Buffer.from(presence('lost', session)),
      qos: 1,
      retain: true,
    },
  })
}

function publishPresence(device: MqttClient, d: string, state: PresencePayload['state'], session: number) {
  return device.publishAsync(presenceTopic(d), presence(state, session), { qos: 1, retain: true })
}

/** What an owner's app sees of one device: every document and every presence message, in order. */
interface Watch {
  docs: DeviceDocument[]
  presences: unknown[]
  latest(): DeviceDocument
  /** Waits until the newest document received satisfies `condition`. */
  until(
    condition: (doc: DeviceDocument) => boolean,
    what: string,
    timeoutMs?: number,
  ): Promise<DeviceDocument>
}

async function watch(owner: Owner, d: string): Promise<Watch> {
  const docTopic = documentTopic(owner.id, d)
  const docs: DeviceDocument[] = []
  const presences: unknown[] = []
  owner.client.on('message', (topic, payload) => {
    if (topic === docTopic) docs.push(parse(payload) as DeviceDocument)
    if (topic === presenceTopic(d)) presences.push(parse(payload))
  })
  await owner.client.subscribeAsync([docTopic, presenceTopic(d)], { qos: 1 })
  await waitUntil(() => docs.length > 0, `the owner has the retained document of ${d}`)
  const latest = () => docs.at(-1)!
  return {
    docs,
    presences,
    latest,
    async until(condition, what, timeoutMs = 5000) {
      await waitUntil(() => condition(latest()), what, timeoutMs)
      return latest()
    },
  }
}

/** The retained message a fresh subscriber (a new app connection of `userId`) gets on `topic`. */
async function retainedFor(th: TestHub, userId: string, topic: string): Promise<unknown> {
  const client = await th.connect({ clientId: `peek-${++seq}`, token: th.token({ sub: userId }) })
  try {
    const message = await nextMessage(client, topic, 1000)
    return message.retain ? parse(message.payload) : 'not retained'
  } catch {
    return undefined
  } finally {
    await client.endAsync(true)
  }
}

const stored = (th: TestHub, d: string) => th.hub.store.get<DeviceDoc>('devices', d)

t.test(
  'a device is online once it publishes online; its retained presence reaches its owner and itself, never another user',
  async (t) => {
    const th = await startTestHub(t)
    const owner = await newOwner(th)
    const box = await createDevice(t, owner, 'Box')
    const d = box.device.id
    const w = await watch(owner, d)
    t.equal(w.latest().online, false, 'a new device is offline')
    t.equal(w.latest().lastSeen, undefined, 'and was never seen')

    const device = await connectDevice(th, box, 1)
    await sleep(200)
    t.equal(w.latest().online, false, 'connecting alone does not make it online: it must say so')

    const before = Date.now()
    await publishPresence(device, d, 'online', 1)
    const online = await w.until((doc) => doc.online, 'the owner sees the device online')
    t.ok(Date.parse(online.lastSeen!) >= before - 5, 'lastSeen is the time the device came online')
    t.same(w.presences, [{ state: 'online', session: 1 }], 'the owner got the presence message')
    t.match(await stored(th, d), { online: true, session: 1 }, 'stored: online, session 1')

    t.same(
      await retainedFor(th, owner.id, presenceTopic(d)),
      { state: 'online', session: 1 },
      'a later app of the owner gets the retained presence',
    )
    const own = await nextMessage(device, presenceTopic(d))
    t.same(parse(own.payload), { state: 'online', session: 1 }, 'the device reads its own presence')
    t.ok(own.retain, 'as a retained message')

    const stranger = await newOwner(th, 'Stranger')
    t.same(
      await subackCodes(stranger.client, [presenceTopic(d), documentTopic(owner.id, d)]),
      [128, 128],
      "another user may subscribe neither to the presence nor to the owner's device document",
    )
    await sleep(100)
    t.ok(stranger.client.connected, 'the refused subscription does not close their connection')
  },
)

t.test(
  'a clean shutdown (offline, then DISCONNECT) marks the device offline and publishes no will',
  async (t) => {
    const th = await startTestHub(t)
    const owner = await newOwner(th)
    const box = await createDevice(t, owner, 'Box')
    const d = box.device.id
    const w = await watch(owner, d)
    const device = await connectDevice(th, box, 1)
    await publishPresence(device, d, 'online', 1)
    const online = await w.until((doc) => doc.online, 'online')

    await publishPresence(device, d, 'offline', 1)
    await device.endAsync()
    const offline = await w.until((doc) => !doc.online, 'the owner sees the device offline')
    t.ok(offline.lastSeen! >= online.lastSeen!, 'lastSeen moves forward')
    await sleep(300)
    t.same(
      w.presences,
      [
        { state: 'online', session: 1 },
        { state: 'offline', session: 1 },
      ],
      'the owner saw online then offline, and no will',
    )
    t.same(
      await retainedFor(th, owner.id, presenceTopic(d)),
      { state: 'offline', session: 1 },
      'the retained presence stays offline, not lost',
    )
    t.match(await stored(th, d), { online: false, session: 1 }, 'stored offline')
  },
)

t.test(
  'a DISCONNECT without an offline message still marks the device offline (the broker’s view counts)',
  async (t) => {
    const th = await startTestHub(t)
    const owner = await newOwner(th)
    const box = await createDevice(t, owner, 'Box')
    const d = box.device.id
    const w = await watch(owner, d)
    const device = await connectDevice(th, box, 1)
    await publishPresence(device, d, 'online', 1)
    await w.until((doc) => doc.online, 'online')
    await device.endAsync()
    await w.until((doc) => !doc.online, 'the owner sees the device offline after its DISCONNECT')
    await sleep(200)
    t.notOk(
      w.presences.some((p) => (p as PresencePayload).state === 'lost'),
      'a clean DISCONNECT fires no will',
    )
    t.same(w.presences.at(-1), { state: 'offline', session: 1 }, 'the hub says offline for the device')
    const late = await connectOwner(th, owner.id)
    t.same(
      JSON.parse((await nextMessage(late.client, presenceTopic(d))).payload.toString()),
      { state: 'offline', session: 1 },
      'and it is retained, so nobody is told the device is online',
    )
  },
)

t.test(
  'devices removed by their owner while their connections end (the simulator’s stop --remove) leave nothing retained, even after late presence',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const owner = await newOwner(th)
    const boxes = await Promise.all(Array.from({ length: 40 }, (_, i) => createDevice(t, owner, `Box ${i}`)))
    const devices = await Promise.all(boxes.map((box) => connectDevice(th, box, 1)))
    await Promise.all(devices.map((device, i) => publishPresence(device, boxes[i]!.device.id, 'online', 1)))
    await waitUntil(
      async () => (await Promise.all(boxes.map((b) => stored(th, b.device.id)))).every((d) => d?.online),
      'every device is online',
    )

    // like the simulator: each box says offline (or not) and disconnects, and the owner removes it
    // right after, a little later for each box, so that some removals land while the hub is still
    // applying the box's last presence
    await Promise.all(
      devices.map(async (device, i) => {
        const d = boxes[i]!.device.id
        // raced on purpose, not awaited: a failure surfaces as an unhandled rejection and fails the test
        if (i % 2 === 0) void publishPresence(device, d, 'offline', 1)
        else void device.endAsync()
        await sleep(i % 10)
        t.ok((await owner.req.request('device.remove', { deviceId: d })).ok, `device.remove ${d} succeeds`)
      }),
    )
    // long enough for every late presence update, the hub's own offline and any last will
    await sleep(1500)

    const retained = await operatorSees(th, [
      `users/${owner.id}/devices/+`,
      ...boxes.map((b) => presenceTopic(b.device.id)),
    ])
    t.same(
      retained.map((m) => `${m.topic} ${m.payload.toString()}`),
      [],
      'no device document and no presence of a removed device is retained',
    )
    for (const box of boxes)
      t.equal(await stored(th, box.device.id), null, `${box.device.id} is gone from the store`)
  },
)

t.test('an abrupt socket loss publishes the will (lost, retained) and the device goes offline', async (t) => {
  const th = await startTestHub(t)
  const owner = await newOwner(th)
  const box = await createDevice(t, owner, 'Box')
  const d = box.device.id
  const w = await watch(owner, d)
  const device = await connectDevice(th, box, 1)
  await publishPresence(device, d, 'online', 1)
  await w.until((doc) => doc.online, 'online')

  device.stream.destroy()
  await w.until((doc) => !doc.online, 'the owner sees the device offline')
  await waitUntil(() => w.presences.length === 2, 'the owner gets the will')
  t.same(w.presences[1], { state: 'lost', session: 1 }, 'the will says lost, session 1')
  t.same(
    await retainedFor(th, owner.id, presenceTopic(d)),
    { state: 'lost', session: 1 },
    'the will is retained',
  )
  t.match(await stored(th, d), { online: false, session: 1 }, 'stored offline')
})

/** A device on a raw MQTT socket: it sends exactly the packets the test writes, and never a PINGREQ. */
async function rawDevice(t: Test, th: TestHub, created: Created, keepalive: number) {
  const socket: Socket = tcpConnect(th.hub.ports.mqtt, '127.0.0.1')
  socket.setNoDelay(true)
  t.teardown(() => socket.destroy())
  const received: Packet[] = []
  const parser = packetParser({ protocolVersion: 4 })
  parser.on('packet', (packet: Packet) => received.push(packet))
  socket.on('data', (chunk: Buffer) => parser.parse(chunk))
  let closedAt: number | undefined
  socket.on('close', () => (closedAt = Date.now()))
  socket.on('error', () => undefined)
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()))

  let lastSentAt = 0
  const send = (packet: Packet) => {
    lastSentAt = Date.now()
    socket.write(generate(packet))
  }
  send({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: true,
    clientId: created.device.id,
    keepalive,
    username: 'token',
    password: Buffer.from(created.token),
    will: {
      topic: presenceTopic(created.device.id),
      payload: Buffer.from(presence('lost', 1)),
      qos: 1,
      retain: true,
    },
  })
  await waitUntil(() => received.some((p) => p.cmd === 'connack'), 'CONNACK')
  const connack = received.find((p) => p.cmd === 'connack')
  t.equal(connack?.cmd === 'connack' ? connack.returnCode : undefined, 0, 'the raw device is accepted')
  return {
    socket,
    received,
    send,
    lastSentAt: () => lastSentAt,
    closedAt: () => closedAt,
  }
}

t.test(
  'a device that stops pinging is dropped after 1.5 × keepalive: offline, and its will published',
  async (t) => {
    const th = await startTestHub(t)
    const owner = await newOwner(th)
    const box = await createDevice(t, owner, 'Box')
    const d = box.device.id
    const w = await watch(owner, d)
    const raw = await rawDevice(t, th, box, 1)
    raw.send({
      cmd: 'publish',
      topic: presenceTopic(d),
      payload: Buffer.from(presence('online', 1)),
      qos: 1,
      messageId: 1,
      retain: true,
      dup: false,
    })
    await waitUntil(() => raw.received.some((p) => p.cmd === 'puback'), 'PUBACK')
    await w.until((doc) => doc.online, 'the owner sees the raw device online')
    const silentSince = raw.lastSentAt()

    // from now on the device sends nothing at all, as a hung device would
    await w.until((doc) => !doc.online, 'the hub marks the silent device offline', 4000)
    const offlineAfter = Date.now() - silentSince
    t.ok(offlineAfter >= 1000, `not before the keepalive ran out (${offlineAfter} ms)`)
    t.ok(offlineAfter <= 3000, `within 3 s of its last packet (${offlineAfter} ms)`)
    await waitUntil(() => raw.closedAt() !== undefined, 'the hub closes the socket')
    t.ok(raw.closedAt()! - silentSince >= 1400, 'the hub closed the socket at 1.5 × keepalive')
    t.notOk(
      raw.received.some((p) => p.cmd === 'pingresp'),
      'the device really never pinged',
    )
    await waitUntil(() => w.presences.length === 2, 'the owner gets the will')
    t.same(w.presences[1], { state: 'lost', session: 1 }, 'the will is published')
    t.same(await retainedFor(th, owner.id, presenceTopic(d)), { state: 'lost', session: 1 }, 'and retained')
  },
)

t.test(
  'a takeover by a newer session never shows the device offline, and the old connection’s late will is not retained',
  async (t) => {
    const th = await startTestHub(t)
    const owner = await newOwner(th)
    const box = await createDevice(t, owner, 'Box')
    const d = box.device.id
    const w = await watch(owner, d)
    const a = await connectDevice(th, box, 1)
    await publishPresence(a, d, 'online', 1)
    await w.until((doc) => doc.online, 'session 1 online')
    const docsFrom = w.docs.length - 1
    const presencesFrom = w.presences.length

    const aClosed = connectionClosed(a, 5000)
    const b = await connectDevice(th, box, 2)
    await aClosed
    t.notOk(a.connected, 'the hub closed connection A when B took over its client id')
    await publishPresence(b, d, 'online', 2)
    await waitUntil(
      () => w.presences.some((p) => (p as PresencePayload).session === 2),
      'the owner sees session 2',
    )
    await waitUntil(async () => (await stored(th, d))?.session === 2, 'session 2 is stored')
    await sleep(300) // room for A's will, had it been let through

    t.same(
      w.docs.slice(docsFrom).filter((doc) => !doc.online),
      [],
      'the owner never saw online=false during the takeover',
    )
    t.same(w.presences.slice(presencesFrom), [{ state: 'online', session: 2 }], 'nor a lost/offline presence')
    t.same(
      await retainedFor(th, owner.id, presenceTopic(d)),
      { state: 'online', session: 2 },
      'the retained presence is online, session 2: A’s will was not retained',
    )
    t.match(await stored(th, d), { online: true, session: 2 }, 'stored online, session 2')

    b.stream.destroy()
    await w.until((doc) => !doc.online, 'B’s socket loss takes the device offline')
    await waitUntil(() => w.presences.length === presencesFrom + 2, 'the owner gets B’s will')
    t.same(w.presences.at(-1), { state: 'lost', session: 2 }, 'B’s will: lost, session 2')
    t.same(
      await retainedFor(th, owner.id, presenceTopic(d)),
      { state: 'lost', session: 2 },
      'and it is retained',
    )
    t.match(await stored(th, d), { online: false, session: 2 }, 'stored offline, session 2')
  },
)

t.test(
  'an out-of-order message of an older session neither marks the device offline nor replaces its presence',
  async (t) => {
    const th = await startTestHub(t)
    const owner = await newOwner(th)
    const box = await createDevice(t, owner, 'Box')
    const d = box.device.id
    const w = await watch(owner, d)
    const a = await connectDevice(th, box, 1)
    await publishPresence(a, d, 'online', 1)
    await w.until((doc) => doc.online, 'session 1 online')
    const aClosed = connectionClosed(a, 5000)
    const b = await connectDevice(th, box, 2)
    await aClosed
    await publishPresence(b, d, 'online', 2)
    await waitUntil(
      () => w.presences.some((p) => (p as PresencePayload).session === 2),
      'the owner sees session 2',
    )
    await waitUntil(async () => (await stored(th, d))?.session === 2, 'session 2 is stored')
    const presencesFrom = w.presences.length

    await publishPresence(b, d, 'offline', 1)
    await publishPresence(b, d, 'lost', 1)
    // presence and reports of one device are applied in order: once this report shows, the above were handled
    await b.publishAsync(reportedTopic(d), JSON.stringify({ status: { xruns: 42 } }), { qos: 1 })
    const after = await w.until(
      (doc) => (doc.reported.status as { xruns?: number } | undefined)?.xruns === 42,
      'the barrier report',
    )
    t.equal(after.online, true, 'the device is still online')
    t.same(
      w.docs.filter((doc, i) => i > 0 && !doc.online && w.docs[i - 1]!.online),
      [],
      'the owner never saw it go offline',
    )
    t.match(await stored(th, d), { online: true, session: 2 }, 'stored online, session 2')
    t.same(w.presences.slice(presencesFrom), [], 'the owner got no stale presence message')
    t.same(
      await retainedFor(th, owner.id, presenceTopic(d)),
      { state: 'online', session: 2 },
      'the retained presence still says online, session 2',
    )
    t.ok(b.connected, 'the device stays connected')
  },
)

t.test(
  'malformed or invalid presence and reports are refused with an error response; nothing is stored or retained, and nobody else is affected',
  async (t) => {
    const th = await startTestHub(t)
    const owner = await newOwner(th)
    const box = await createDevice(t, owner, 'Box')
    const other = await createDevice(t, owner, 'Other box')
    const d = box.device.id
    const w = await watch(owner, d)
    const wOther = await watch(owner, other.device.id)
    const ownerResponses = await recordResponses(owner.client)

    const device = await connectDevice(th, box, 1)
    const responses = await recordResponses(device)
    await publishPresence(device, d, 'online', 1)
    const online = await w.until((doc) => doc.online, 'online')
    const otherDevice = await connectDevice(th, other, 1)
    const otherResponses = await recordResponses(otherDevice)
    await publishPresence(otherDevice, other.device.id, 'online', 1)
    await wOther.until((doc) => doc.online, 'the other device is online')
    const bystander = await newOwner(th, 'Bystander')
    const storedBefore = await stored(th, d)
    const docsBefore = w.docs.length
    const presencesBefore = w.presences.length

    const big = JSON.stringify({
      firmware: { version: '1.3', state: 'FAILED', error: 'x'.repeat(9 * 1024) },
    })
    const cases: [what: string, topic: string, payload: string, code: string][] = [
      ['presence that is not JSON', presenceTopic(d), 'nope', 'invalid_request'],
      ['presence with an unknown state', presenceTopic(d), '{"state":"away","session":1}', 'invalid_request'],
      ['offline presence without a session', presenceTopic(d), '{"state":"offline"}', 'invalid_request'],
      ['presence with a negative session', presenceTopic(d), presence('lost', -1), 'invalid_request'],
      ['an empty presence (which would clear the retained one)', presenceTopic(d), '', 'invalid_request'],
      ['a report that is not JSON', reportedTopic(d), 'nope', 'invalid_request'],
      [
        'a report with a wrongly typed field',
        reportedTopic(d),
        '{"status":{"cpuLoad":"high"}}',
        'invalid_request',
      ],
      [
        'a report with an unknown field',
        reportedTopic(d),
        '{"status":{"cpuLoad":0.5},"mood":"happy"}',
        'invalid_request',
      ],
      ['a report with an unknown status field', reportedTopic(d), '{"status":{"fan":3}}', 'invalid_request'],
      [
        'a report with an unknown firmware state',
        reportedTopic(d),
        '{"firmware":{"version":"1","state":"BRICKED"}}',
        'invalid_request',
      ],
      [
        'a browser device list with an unknown field in an entry',
        reportedTopic(d),
        '{"mediaDevices":{"audioInputs":[{"id":"x","label":"Mic","kind":"audioinput"}],"audioOutputs":[]}}',
        'invalid_request',
      ],
      [
        'a browser device list without its outputs',
        reportedTopic(d),
        '{"mediaDevices":{"audioInputs":[]}}',
        'invalid_request',
      ],
      ['a report over 8 KiB', reportedTopic(d), big, 'too_large'],
    ]
    for (const [what, topic, payload, code] of cases) {
      const n = responses.all.length
      await device.publishAsync(topic, payload, { qos: 1, retain: topic === presenceTopic(d) })
      await waitUntil(() => responses.all.length > n, `a response to ${what}`)
      t.match(
        responses.all[n],
        { id: '', ok: false, error: { code, message: String } },
        `${what}: refused with ${code}`,
      )
      t.ok(device.connected, `${what}: the device stays connected`)
    }
    t.equal(responses.all.length, cases.length, 'exactly one response per refused message')

    // the device's connection still works, and a valid report is merged on its own
    await device.publishAsync(reportedTopic(d), JSON.stringify({ status: { xruns: 1 } }), { qos: 1 })
    const next = await w.until((doc) => doc.reported.status !== undefined, 'the valid report')
    t.equal(w.docs.length, docsBefore + 1, 'the refused messages changed no device document')
    t.same(next.reported, { status: { xruns: 1 } }, 'nothing of the refused reports was merged')
    t.equal(next.online, true, 'the device is still online')
    t.equal(next.version, online.version + 1, 'only the valid report made a new version')
    t.same(w.presences.slice(presencesBefore), [], 'no refused presence reached the owner')
    t.same(
      await retainedFor(th, owner.id, presenceTopic(d)),
      { state: 'online', session: 1 },
      'no refused presence was retained',
    )
    t.match(
      await stored(th, d),
      { online: true, session: storedBefore!.session, reported: { status: { xruns: 1 } } },
      'stored: still online, same session',
    )

    // everybody else carried on
    await otherDevice.publishAsync(
      reportedTopic(other.device.id),
      JSON.stringify({ status: { cpuLoad: 0.25 } }),
      { qos: 1 },
    )
    t.same(
      (await wOther.until((doc) => doc.reported.status !== undefined, 'the other device’s report')).reported,
      { status: { cpuLoad: 0.25 } },
      'another device’s report is merged as usual',
    )
    t.ok(
      (await bystander.req.request('user.update', { name: 'Still here' })).ok,
      'another user’s request works',
    )
    t.same(otherResponses.all, [], 'the other device received no error response')
    t.same(
      ownerResponses.all.filter((r) => r.id === ''),
      [],
      'the owner received none of the device’s error responses',
    )
    t.ok(
      otherDevice.connected && owner.client.connected && bystander.client.connected,
      'nobody was disconnected',
    )
  },
)

t.test(
  'valid reports are merged into the reported state the owner sees; a later partial report keeps earlier sections',
  async (t) => {
    const th = await startTestHub(t)
    const owner = await newOwner(th)
    const box = await createDevice(t, owner, 'Box')
    const d = box.device.id
    const w = await watch(owner, d)
    const device = await connectDevice(th, box, 1)
    await publishPresence(device, d, 'online', 1)
    await w.until((doc) => doc.online, 'online')
    const report = async (value: unknown) => {
      const n = w.docs.length
      await device.publishAsync(reportedTopic(d), JSON.stringify(value), { qos: 1 })
      await waitUntil(() => w.docs.length > n, 'the owner gets the updated document')
      return w.latest()
    }

    const first = { status: { cpuLoad: 0.5, xruns: 2 }, firmware: { version: '1.2', state: 'UPDATED' } }
    const applied = { revision: '0123456789abcdef', appliedAt: new Date().toISOString() }
    t.same((await report(first)).reported, first, 'the first report is the reported state')
    t.same(
      (await report({ appliedConfig: applied })).reported,
      { ...first, appliedConfig: applied },
      'a partial report keeps the earlier status and firmware',
    )
    const failed = { version: '1.3', state: 'FAILED', error: 'checksum mismatch' }
    t.same(
      (await report({ firmware: failed })).reported,
      { status: first.status, firmware: failed, appliedConfig: applied },
      'a firmware report replaces the firmware section and keeps the rest',
    )
    const updated = await report({ firmware: { version: '1.3', state: 'UPDATED' } })
    t.same(
      updated.reported.firmware,
      { version: '1.3', state: 'UPDATED' },
      'the firmware section is replaced whole: the old error does not linger',
    )
    t.equal(updated.online, true, 'reports leave presence alone')
    t.same((await stored(th, d))?.reported, updated.reported, 'the store holds what the owner sees')
  },
)

t.test(
  'after a hub restart every device is offline until it reconnects and says online; one that does not come back stays offline',
  async (t) => {
    const th = await startTestHub(t)
    const owner = await newOwner(th)
    const back = await createDevice(t, owner, 'Comes back')
    const gone = await createDevice(t, owner, 'Stays away')
    const backW = await watch(owner, back.device.id)
    const goneW = await watch(owner, gone.device.id)
    const backDevice = await connectDevice(th, back, 1)
    const goneDevice = await connectDevice(th, gone, 1)
    await publishPresence(backDevice, back.device.id, 'online', 1)
    await publishPresence(goneDevice, gone.device.id, 'online', 1)
    await backW.until((doc) => doc.online, 'the first device is online')
    await goneW.until((doc) => doc.online, 'the second device is online')

    const closed = Promise.all([connectionClosed(backDevice), connectionClosed(goneDevice)])
    await th.restart()
    await closed
    t.same(
      [backDevice.connected, goneDevice.connected],
      [false, false],
      'the hub’s clean shutdown closed the devices’ connections',
    )

    const app = await connectOwner(th, owner.id)
    const backAfter = await watch(app, back.device.id)
    const goneAfter = await watch(app, gone.device.id)
    t.equal(backAfter.latest().online, false, 'the first device is offline after the restart')
    t.equal(goneAfter.latest().online, false, 'the second device is offline after the restart')
    t.match(await stored(th, back.device.id), { online: false }, 'stored offline')
    t.match(await stored(th, gone.device.id), { online: false }, 'stored offline')
    for (const created of [back, gone]) {
      const retained = (await retainedFor(th, owner.id, presenceTopic(created.device.id))) as
        PresencePayload | undefined
      t.not(
        retained?.state,
        'online',
        `the retained presence of ${created.device.name} does not contradict its document (${JSON.stringify(retained)})`,
      )
    }

    const again = await connectDevice(th, back, 2)
    await sleep(200)
    t.equal(backAfter.latest().online, false, 'connecting alone does not make it online')
    const retainedBefore = await retainedFor(th, owner.id, presenceTopic(back.device.id))
    await publishPresence(again, back.device.id, 'online', 0)
    await sleep(200)
    t.equal(backAfter.latest().online, false, 'the restarted hub ignores an online of a session older than 1')
    t.same(
      await retainedFor(th, owner.id, presenceTopic(back.device.id)),
      retainedBefore,
      'and does not retain it: the hub remembers sessions across restarts',
    )
    await publishPresence(again, back.device.id, 'online', 2)
    await backAfter.until((doc) => doc.online, 'the device that came back is online')
    t.match(await stored(th, back.device.id), { online: true, session: 2 }, 'stored online, session 2')
    await sleep(300)
    t.equal(goneAfter.latest().online, false, 'the device that did not come back stays offline')
    t.match(await stored(th, gone.device.id), { online: false }, 'and is stored offline')
  },
)

t.test(
  "a device cannot publish another device's presence or report, and a user cannot publish presence at all",
  async (t) => {
    const th = await startTestHub(t)
    const owner = await newOwner(th)
    const box = await createDevice(t, owner, 'Box')
    const intruderBox = await createDevice(t, owner, 'Intruder')
    const d = box.device.id
    const w = await watch(owner, d)
    const device = await connectDevice(th, box, 1)
    await publishPresence(device, d, 'online', 1)
    await w.until((doc) => doc.online, 'online')
    const before = w.latest()

    const intruder = await connectDevice(th, intruderBox, 1)
    let closed = connectionClosed(intruder)
    intruder.publish(presenceTopic(d), presence('offline', 1), { qos: 1, retain: true })
    await closed
    t.notOk(intruder.connected, "a device publishing another device's presence is disconnected")

    const intruder2 = await connectDevice(th, intruderBox, 2)
    closed = connectionClosed(intruder2)
    intruder2.publish(reportedTopic(d), JSON.stringify({ status: { cpuLoad: 9 } }), { qos: 1 })
    await closed
    t.notOk(intruder2.connected, "a device publishing another device's report is disconnected")

    closed = connectionClosed(owner.client)
    owner.client.publish(presenceTopic(d), presence('offline', 1), { qos: 1, retain: true })
    await closed
    t.notOk(owner.client.connected, "a user publishing presence, even their own device's, is disconnected")

    const app = await connectOwner(th, owner.id)
    const after = await watch(app, d)
    t.same(
      await retainedFor(th, owner.id, presenceTopic(d)),
      { state: 'online', session: 1 },
      'the retained presence is still online, session 1',
    )
    t.equal(after.latest().online, true, 'the device is still online')
    t.same(after.latest().reported, {}, 'and reported nothing')
    t.equal(after.latest().version, before.version, 'the device document did not change')
    t.ok(device.connected, 'the device itself is unaffected')
  },
)

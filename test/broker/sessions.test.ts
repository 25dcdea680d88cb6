import t from 'tap'
import mqtt from 'mqtt'
import { connectAs, ok } from '../helpers/actors.ts'
import { type TestHub, connackCode, sleep, startTestHub, waitUntil } from '../helpers/hub.ts'
import { metricValue } from '../helpers/metrics.ts'
import { connectPacket, rawMqtt } from '../helpers/raw-mqtt.ts'

// Persistent sessions (CONNECT with clean session 0) stay bounded: queued messages, unacknowledged
// messages, sessions per identity, time offline; and client ids of the form {id}-… are reserved.
// Real clients over TCP against hubs with small limits.

const QUEUE = 50
const th = await startTestHub(t, {
  OUTBOUND_QUEUE_MESSAGES: String(QUEUE),
  SESSION_MAX_PER_IDENTITY: '3',
  SESSION_EXPIRY_SECONDS: '600',
})

const codeFor = (hub: TestHub, token: string, clientId: string, clean = false) =>
  connackCode(hub.mqttUrl, { clientId, clean, username: 'token', password: token })

/** A persistent session that subscribed to its user's topic and went offline. */
async function offlineSession(hub: TestHub, token: string, clientId: string, topic?: string): Promise<void> {
  const client = await hub.connect({ clientId, clean: false, token })
  if (topic) await client.subscribeAsync(topic, { qos: 1 })
  await client.endAsync()
}

/** Resumes a persistent session and collects what it receives within `ms`. */
async function resume(hub: TestHub, token: string, clientId: string, ms = 700): Promise<string[]> {
  const received: string[] = []
  const client = mqtt.connect(hub.mqttUrl, {
    protocolVersion: 4,
    reconnectPeriod: 0,
    clientId,
    clean: false,
    username: 'token',
    password: token,
  })
  client.on('message', (_topic, payload) => received.push(payload.toString()))
  await new Promise((resolve) => client.once('connect', resolve))
  await sleep(ms)
  await client.endAsync()
  return received
}

t.test(
  'an offline persistent session keeps at most OUTBOUND_QUEUE_MESSAGES of its messages: the newest, the others dropped and counted',
  async (t) => {
    const alice = await th.hub.users.createUser({ name: 'Alice' })
    const token = th.token({ sub: alice.id })
    const clientId = `${alice.id}-phone`
    await offlineSession(th, token, clientId, `users/${alice.id}`)
    const before = await metricValue(th.httpUrl, 'stagehub_session_dropped_total')
    for (let i = 0; i < 200; i++) await th.hub.broker.publish(`users/${alice.id}`, String(i), { qos: 1 })

    const received = await resume(th, token, clientId)
    t.equal(received.length, QUEUE, `the session delivers ${QUEUE} queued messages, not 200`)
    t.same(
      received,
      Array.from({ length: QUEUE }, (_, i) => String(200 - QUEUE + i)),
      'the newest ones, in order',
    )
    t.equal(
      await metricValue(th.httpUrl, 'stagehub_session_dropped_total'),
      before + 200 - QUEUE,
      'the dropped ones are counted in /metrics',
    )
  },
)

t.test(
  'a full session resumed while new messages arrive stays connected and gets the new messages',
  async (t) => {
    const zoe = await th.hub.users.createUser({ name: 'Zoe' })
    const token = th.token({ sub: zoe.id })
    const clientId = `${zoe.id}-tablet`
    await offlineSession(th, token, clientId, `users/${zoe.id}`)
    for (let i = 0; i < QUEUE; i++) await th.hub.broker.publish(`users/${zoe.id}`, `old ${i}`, { qos: 1 })

    const client = await th.connect({ clientId, clean: false, token })
    const received: string[] = []
    client.on('message', (_topic, payload) => received.push(payload.toString()))
    // while its queue is being sent: each new message drops the oldest queued one
    for (let i = 0; i < 20; i++) await th.hub.broker.publish(`users/${zoe.id}`, `new ${i}`, { qos: 1 })
    await waitUntil(() => received.includes('new 19'), 'the newest message arrives')
    await sleep(200)
    t.ok(client.connected, 'the client stays connected')
    t.same(
      Array.from({ length: 20 }, (_, i) => `new ${i}`).filter((m) => !received.includes(m)),
      [],
      'and receives every new message (at least once, as QoS 1 promises)',
    )
    t.ok(received.includes(`old ${QUEUE - 1}`), 'and the newest of its backlog')
  },
)

t.test(
  'a connected persistent session that reads but never acknowledges (PUBACK) is closed beyond the limit',
  async (t) => {
    const bob = await th.hub.users.createUser({ name: 'Bob' })
    const clientId = `${bob.id}-reader`
    const raw = await rawMqtt(t, th.hub.ports.mqtt)
    raw.send(connectPacket(clientId, th.token({ sub: bob.id }), { clean: false }))
    t.ok(await raw.next('connack'), 'the reader is connected')
    raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `users/${bob.id}`, qos: 1 }] })
    t.ok(await raw.next('suback'), 'and subscribed')
    const before = await metricValue(
      th.httpUrl,
      'stagehub_slow_consumer_disconnects_total{reason="unacknowledged"}',
    )
    // in bursts of 10 that it reads before the next: its socket never fills, only acknowledgements lack
    const read = () => raw.received.filter((p) => p.cmd === 'publish' && !p.retain).length
    for (let sent = 0; sent < 3 * QUEUE && !raw.closed;) {
      for (let i = 0; i < 10; i++, sent++)
        await th.hub.broker.publish(`users/${bob.id}`, String(sent), { qos: 1 })
      await waitUntil(() => raw.closed || read() === sent, `the reader reads message ${sent}`)
    }

    t.ok(await raw.closes(3000), 'the hub closes the connection')
    t.equal(read(), QUEUE, `once it had read ${QUEUE} messages without acknowledging them`)
    t.equal(
      await metricValue(th.httpUrl, 'stagehub_slow_consumer_disconnects_total{reason="unacknowledged"}'),
      before + 1,
      'counted as a slow consumer (unacknowledged)',
    )
    const kept = await resume(th, th.token({ sub: bob.id }), clientId)
    t.ok(kept.length <= QUEUE, `its session keeps at most ${QUEUE} messages offline (kept ${kept.length})`)

    // the control: more messages than the limit to a client that acknowledges them, in bursts of 10
    const acking = await th.connect({
      clientId: `${bob.id}-app`,
      clean: false,
      token: th.token({ sub: bob.id }),
    })
    let received = 0
    acking.on('message', (_topic, _payload, packet) => {
      if (!packet.retain) received++
    })
    await acking.subscribeAsync(`users/${bob.id}`, { qos: 1 })
    for (let sent = 0; sent < 3 * QUEUE;) {
      for (let i = 0; i < 10; i++, sent++)
        await th.hub.broker.publish(`users/${bob.id}`, String(sent), { qos: 1 })
      await waitUntil(() => received === sent, `a client that acknowledges receives message ${sent}`)
    }
    t.ok(acking.connected, 'and stays connected')
  },
)

t.test(
  'an identity keeps at most SESSION_MAX_PER_IDENTITY persistent sessions: the least recently used ends first',
  async (t) => {
    const carol = await th.hub.users.createUser({ name: 'Carol' })
    const dave = await th.hub.users.createUser({ name: 'Dave' })
    const carolToken = th.token({ sub: carol.id })
    const daveToken = th.token({ sub: dave.id })
    const before = await metricValue(th.httpUrl, 'stagehub_sessions_ended_total{reason="identity_cap"}')
    for (const id of ['tab1', 'tab2', 'tab3', 'tab4']) await offlineSession(th, carolToken, id)

    t.equal(
      await metricValue(th.httpUrl, 'stagehub_sessions_ended_total{reason="identity_cap"}'),
      before + 1,
      'the fourth session ended one, counted in /metrics',
    )
    t.equal(await codeFor(th, daveToken, 'tab2'), 5, "the second is still Carol's (CONNACK 5 for Dave)")
    t.equal(await codeFor(th, daveToken, 'tab4'), 5, 'as is the newest')
    t.equal(await codeFor(th, daveToken, 'tab1', true), 0, 'the oldest ended: its id is free')
  },
)

t.test("a deleted user's persistent sessions end with the account", async (t) => {
  const eve = await th.hub.users.createUser({
    name: 'Eve',
    email: 'eve@example.org',
    password: 'a long passphrase',
  })
  const other = await th.hub.users.createUser({ name: 'Other' })
  await offlineSession(th, th.token({ sub: eve.id }), 'eves-laptop', `users/${eve.id}`)
  t.equal(await codeFor(th, th.token({ sub: other.id }), 'eves-laptop'), 5, "Eve's session holds its id")
  const before = await metricValue(th.httpUrl, 'stagehub_sessions_ended_total{reason="revoked"}')

  const app = await connectAs(th, eve.id, 'Eve')
  await ok(app, 'user.delete', { password: 'a long passphrase' })
  await waitUntil(
    async () =>
      (await metricValue(th.httpUrl, 'stagehub_sessions_ended_total{reason="revoked"}')) === before + 1,
    'the session ended, counted as revoked',
  )
  t.equal(await codeFor(th, th.token({ sub: other.id }), 'eves-laptop', true), 0, 'and its id is free')
})

t.test(
  'client ids of the form {userId}-… are reserved for that user, even while nobody holds them',
  async (t) => {
    const alice = await th.hub.users.createUser({ name: 'Alice' })
    const mallory = await th.hub.users.createUser({ name: 'Mallory' })
    const aliceToken = th.token({ sub: alice.id })
    const malloryToken = th.token({ sub: mallory.id })
    const phone = `${alice.id}-phone`

    t.equal(await codeFor(th, malloryToken, phone), 5, 'Mallory is refused a free id of Alice (CONNACK 5)')
    t.equal(await codeFor(th, malloryToken, phone, true), 5, 'with a clean session too')
    t.equal(await codeFor(th, aliceToken, phone), 0, 'Alice may use it')
    t.equal(await codeFor(th, malloryToken, phone), 5, 'and Mallory still may not while Alice holds it')
    t.equal(
      await codeFor(th, th.token({ sub: 'ops', role: 'admin' }), `${alice.id}-x`),
      5,
      'nor may an operator',
    )
    t.equal(await codeFor(th, malloryToken, `${mallory.id}-phone`), 0, 'Mallory may use her own')
  },
)

t.test('a persistent session expires after SESSION_EXPIRY_SECONDS offline, releasing its id', async (t) => {
  const short = await startTestHub(t, { SESSION_EXPIRY_SECONDS: '1' })
  const mallory = await short.hub.users.createUser({ name: 'Mallory' })
  const alice = await short.hub.users.createUser({ name: 'Alice' })
  await offlineSession(short, short.token({ sub: mallory.id }), 'phone', 'users/' + mallory.id)
  t.equal(await codeFor(short, short.token({ sub: alice.id }), 'phone'), 5, "Mallory's session holds the id")

  await waitUntil(
    async () => (await metricValue(short.httpUrl, 'stagehub_sessions_ended_total{reason="expired"}')) === 1,
    'the session expired, counted in /metrics',
  )
  t.equal(await codeFor(short, short.token({ sub: alice.id }), 'phone'), 0, 'Alice may now use the id')
})

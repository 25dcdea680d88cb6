import t from 'tap'
import { configFromEnv } from '../../services/config.ts'
import { TEST_SECRET, type TestHub, recordMessages, sleep, startTestHub, waitUntil } from '../helpers/hub.ts'
import { metricValue } from '../helpers/metrics.ts'
import { RawClient } from '../helpers/raw-client.ts'

// The per-connection outbound queue (broker/outbound-queue.ts) against real hubs with small limits: a
// raw client subscribes and stops reading its socket, and the hub publishes to it until the kernel's
// socket buffers are full and messages wait in the hub.

const USER = 'u-slow'
// a topic of the user's that holds no retained message (its profile, users/u-slow, is created when the
// user first connects): what arrives on it is exactly what the test publishes
const TOPIC = `users/${USER}/stages/outbound-test`

async function stuckReader(th: TestHub, qos: 0 | 1, clientId = 'stuck'): Promise<RawClient> {
  const stuck = await RawClient.connect(th.hub.ports.mqtt, clientId, th.token({ sub: USER }))
  await stuck.subscribe(TOPIC, qos)
  stuck.stopReading()
  return stuck
}

/**
 * Publishes `bytes`-byte messages to TOPIC in batches until `enough()` holds (checked between batches)
 * or `max` are out; returns how many were published. Every message carries its number. Each publish
 * waits for the next event-loop turn, as messages caused by network input do: a burst published in one
 * turn is all queued before any of it is written, and would overflow the small test queues of healthy
 * connections too.
 */
async function publishUntil(
  th: TestHub,
  bytes: number,
  enough: () => Promise<boolean>,
  max: number,
): Promise<number> {
  let sent = 0
  while (sent < max) {
    for (let i = 0; i < 20; i++, sent++) {
      await th.hub.broker.publish(TOPIC, `${sent}:`.padEnd(bytes, 'x'))
      await new Promise((resolve) => setImmediate(resolve))
    }
    if (await enough()) break
  }
  return sent
}

const metric = (th: TestHub, name: string) => metricValue(th.httpUrl, name)

t.test(
  'beyond the message limit QoS 0 messages are dropped and counted, and the connection stays',
  async (t) => {
    const th = await startTestHub(t, { OUTBOUND_QUEUE_MESSAGES: '10' })
    const stuck = await stuckReader(th, 0)
    t.teardown(() => stuck.destroy())
    const sent = await publishUntil(
      th,
      4096,
      async () => (await metric(th, 'stagehub_outbound_dropped_total')) > 100,
      5000,
    )
    const dropped = await metric(th, 'stagehub_outbound_dropped_total')
    t.ok(dropped > 100, `${dropped} of ${sent} messages dropped`)

    stuck.resumeReading()
    await stuck.ping()
    t.equal(stuck.messages.length + dropped, sent, 'every message was either delivered or counted as dropped')
    const numbers = stuck.messages.map((m) => Number(m.payload.toString().split(':')[0]))
    t.same(
      numbers,
      [...numbers].sort((a, b) => a - b),
      'what was delivered came in order',
    )
    t.equal(await metric(th, 'stagehub_slow_consumer_disconnects_total'), 0, 'nobody was disconnected')
    await th.hub.broker.publish(TOPIC, 'after')
    await stuck.ping()
    t.equal(stuck.messages.at(-1)?.payload.toString(), 'after', 'the connection still gets new messages')
  },
)

t.test('the byte limit drops QoS 0 messages long before the message limit is reached', async (t) => {
  const th = await startTestHub(t, { OUTBOUND_QUEUE_MESSAGES: '1000', OUTBOUND_QUEUE_BYTES: '65536' })
  const stuck = await stuckReader(th, 0)
  t.teardown(() => stuck.destroy())
  // 600 messages would all fit under the message limit: only the byte limit (4 of them) can drop any
  const sent = await publishUntil(th, 16384, async () => false, 600)
  const dropped = await metric(th, 'stagehub_outbound_dropped_total')
  t.ok(dropped > 0, `${dropped} of ${sent} 16 KiB messages dropped`)
  stuck.resumeReading()
  await stuck.ping()
  t.equal(stuck.messages.length + dropped, sent, 'every message was either delivered or counted as dropped')
})

t.test(
  'a QoS 1 subscriber whose queue overflows is disconnected and counted while others get every message',
  async (t) => {
    const th = await startTestHub(t, { OUTBOUND_QUEUE_MESSAGES: '10' })
    const stuck = await stuckReader(th, 1)
    t.teardown(() => stuck.destroy())
    const healthy = await th.connect({ clientId: 'healthy', token: th.token({ sub: USER }) })
    await healthy.subscribeAsync(TOPIC, { qos: 1 })
    const received = recordMessages(healthy)

    const sent = await publishUntil(
      th,
      4096,
      async () => (await metric(th, 'stagehub_slow_consumer_disconnects_total')) > 0,
      5000,
    )
    t.ok(sent < 5000, `disconnected after ${sent} messages`)
    t.equal(
      await metric(th, 'stagehub_slow_consumer_disconnects_total'),
      1,
      'one slow consumer disconnect is counted',
    )
    t.match(
      await (await fetch(`${th.httpUrl}/metrics`)).text(),
      /stagehub_slow_consumer_disconnects_total\{reason="queue_full"\} 1/,
    )
    await waitUntil(
      () => received.messages.length === sent,
      `the healthy subscriber has all ${sent} messages`,
    )
    t.equal(await metric(th, 'stagehub_outbound_dropped_total'), 0, 'no QoS 1 message is dropped silently')

    stuck.resumeReading()
    await waitUntil(() => stuck.closed, 'the stuck connection, reading again, finds itself closed')
    t.ok(
      stuck.messages.length < sent,
      `the stuck subscriber got ${stuck.messages.length} before it was closed`,
    )
  },
)

t.test(
  'a connection whose socket does not drain within the drain timeout is disconnected and counted',
  async (t) => {
    const th = await startTestHub(t, {
      OUTBOUND_DRAIN_TIMEOUT_SECONDS: '0.5',
      OUTBOUND_QUEUE_BYTES: String(256 * 1024 * 1024),
    })
    const stuck = await stuckReader(th, 1)
    t.teardown(() => stuck.destroy())
    // enough to fill the kernel's buffers, well inside both queue limits
    const sent = await publishUntil(th, 16384, async () => false, 500)
    const started = Date.now()
    await waitUntil(
      async () => (await metric(th, 'stagehub_slow_consumer_disconnects_total')) === 1,
      'the drain timeout closes the connection',
      5000,
    )
    t.comment(`closed ${Date.now() - started} ms after ${sent} messages`)
    t.match(
      await (await fetch(`${th.httpUrl}/metrics`)).text(),
      /stagehub_slow_consumer_disconnects_total\{reason="drain_timeout"\} 1/,
    )
    await sleep(600)
    t.equal(await metric(th, 'stagehub_slow_consumer_disconnects_total'), 1, 'counted once')
  },
)

t.test(
  'a SUBSCRIBE matching more retained messages than the queue holds gets them all (they wait for the socket)',
  async (t) => {
    const th = await startTestHub(t, { OUTBOUND_QUEUE_MESSAGES: '10' })
    for (let i = 0; i < 200; i++) {
      await th.hub.broker.publish(`users/${USER}/devices/d${i}`, `{"n":${i}}`.padEnd(4096, ' '), {
        retain: true,
      })
    }
    const client = await th.connect({ clientId: 'retained', token: th.token({ sub: USER }) })
    const received = recordMessages(client)
    await client.subscribeAsync(`users/${USER}/devices/+`, { qos: 1 })
    await waitUntil(() => received.messages.length === 200, 'all 200 retained messages arrived')
    t.equal(await metric(th, 'stagehub_slow_consumer_disconnects_total'), 0)
    t.equal(await metric(th, 'stagehub_outbound_dropped_total'), 0)
  },
)

t.test(
  'the limits come from OUTBOUND_* variables, with defaults; a bad value names its variable',
  async (t) => {
    const outbound = (env: Record<string, string>) =>
      configFromEnv({ JWT_SECRET: TEST_SECRET, ...env }).outbound
    t.same(outbound({}), { maxMessages: 1000, maxBytes: 4 * 1024 * 1024, drainTimeoutMs: 30_000 })
    t.same(
      outbound({
        OUTBOUND_QUEUE_MESSAGES: '50',
        OUTBOUND_QUEUE_BYTES: '65536',
        OUTBOUND_DRAIN_TIMEOUT_SECONDS: '0.5',
      }),
      { maxMessages: 50, maxBytes: 65536, drainTimeoutMs: 500 },
    )
    t.throws(
      () => outbound({ OUTBOUND_QUEUE_MESSAGES: '0' }),
      /OUTBOUND_QUEUE_MESSAGES must be a positive number/,
    )
    t.throws(
      () => outbound({ OUTBOUND_QUEUE_MESSAGES: '1.5' }),
      /OUTBOUND_QUEUE_MESSAGES must be a whole number/,
    )
    t.throws(() => outbound({ OUTBOUND_QUEUE_BYTES: 'lots' }), /OUTBOUND_QUEUE_BYTES/)
    t.throws(() => outbound({ OUTBOUND_DRAIN_TIMEOUT_SECONDS: '-1' }), /OUTBOUND_DRAIN_TIMEOUT_SECONDS/)
  },
)

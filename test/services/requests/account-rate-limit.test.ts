import type { Socket } from 'node:net'
import t from 'tap'
import type { MqttClient } from 'mqtt'
import { type Actor, actor, connectAs } from '../../helpers/actors.ts'
import { type TestHub, recordResponses, sleep, startTestHub, waitUntil } from '../../helpers/hub.ts'

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!

/**
 * One request every 100 ms (within the per-client rate) from one client for `ms`, each after the last
 * answer: the latencies, and how many got no answer within 5 s.
 */
async function measure(
  victim: Actor,
  ms: number,
): Promise<{ p50: number; p99: number; timeouts: number; count: number }> {
  const latencies: number[] = []
  let timeouts = 0
  const until = Date.now() + ms
  for (let i = 0; Date.now() < until; i++) {
    const started = performance.now()
    try {
      const response = await victim.req.request('user.update', { name: `Victim ${i}` })
      if (!response.ok) throw new Error(`the victim was refused: ${JSON.stringify(response.error)}`)
      latencies.push(performance.now() - started)
      await sleep(Math.max(0, 100 - (performance.now() - started)))
    } catch (err) {
      if (!/no response/.test((err as Error).message)) throw err
      timeouts++
    }
  }
  latencies.sort((a, b) => a - b)
  return {
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    timeouts,
    count: latencies.length + timeouts,
  }
}

/** user.update outcomes so far by code, from the hub's request counter. */
async function outcomes(th: TestHub): Promise<{ served: number; limited: number; total: number }> {
  const text = await (await fetch(`${th.httpUrl}/metrics`)).text()
  const counts = new Map<string, number>()
  for (const [, code, n] of text.matchAll(
    /^stagehub_requests_total\{action="user\.update",code="(\w+)"\} (\d+)$/gm,
  )) {
    counts.set(code!, Number(n))
  }
  const total = [...counts.values()].reduce((a, b) => a + b, 0)
  return { served: counts.get('ok') ?? 0, limited: counts.get('rate_limited') ?? 0, total }
}

/** Each client publishes `perTick` requests every 100 ms for `ms`, without waiting for answers. */
async function flood(clients: MqttClient[], perTick: number, ms: number): Promise<number> {
  let sent = 0
  const until = Date.now() + ms
  while (Date.now() < until) {
    for (const client of clients) {
      for (let i = 0; i < perTick; i++) {
        const id = `f${sent++}`
        client.publish(
          `clients/${client.options.clientId}/req/user.update`,
          JSON.stringify({ id, params: { name: `Flood ${id}` } }),
          { qos: 1 },
        )
      }
    }
    await sleep(100)
  }
  return sent
}

t.test(
  '30 client ids of one account, each within its own rate, are limited as one account: another user stays fast',
  async (t) => {
    const th = await startTestHub(t)
    const victim = await actor(th, 'Victim')
    // no Nagle delay: the victim's latency is the hub's, not 40 ms of delayed ACKs
    ;(victim.client.stream as Socket).setNoDelay(true)
    const mallory = await actor(th, 'Mallory')
    const floodClients = [mallory.client]
    for (let i = 1; i < 30; i++) floodClients.push((await connectAs(th, mallory.id, 'Mallory')).client)

    // one flooder reads its responses, to see what a refused client is told: the last one, because
    // each round of the flood starts with the first client, which the refilled tokens then serve
    const sample = await recordResponses(floodClients.at(-1)!)
    const control = await measure(victim, 1500)

    // 2 requests per client per 100 ms: 20/s each, within the per-client limit, 600/s for the account
    const flooding = flood(floodClients, 2, 3000)
    await sleep(300)
    const during = await measure(victim, 2500)
    const sent = await flooding

    t.equal(control.timeouts, 0, 'control: every request answered')
    t.equal(during.timeouts, 0, 'during the flood: every request of the other user answered within 5 s')
    t.ok(
      during.p50 <= Math.max(5 * control.p50, control.p50 + 25),
      `p50 stays near the control: ${during.p50.toFixed(1)} ms vs ${control.p50.toFixed(1)} ms`,
    )
    t.ok(
      during.p99 <= Math.max(5 * control.p99, control.p99 + 250),
      `p99 stays near the control: ${during.p99.toFixed(1)} ms vs ${control.p99.toFixed(1)} ms`,
    )

    // the flooders do not read their responses (as in the probe); the hub counts them
    await waitUntil(async () => (await outcomes(th)).total >= sent, 'every flood request is answered', 10_000)
    const { served, limited } = await outcomes(th)
    t.ok(limited > 0, `the account was limited: ${served} served, ${limited} refused of ${sent}`)
    const { burst, perSecond } = th.config.accountRateLimit
    t.ok(
      served - control.count - during.count <= burst + 4 * perSecond,
      `at most the account's burst plus its rate over the flood were served (${served - control.count - during.count})`,
    )
    // the hub has answered every request; the sample's own answers may still be on their way to it
    await waitUntil(() => sample.all.some((r) => !r.ok), 'the sample flooder receives a refusal', 10_000)
    t.match(
      sample.all.find((r) => !r.ok)?.error?.message,
      /your account across all its connections: slow down and retry in \d+ s/,
      'a refused client is told that its account is over the limit, and when to retry',
    )
  },
)

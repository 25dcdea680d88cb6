import { join } from 'node:path'
import type { SendResult } from '../load/tasks.ts'
import { type Context, measured, onTarget, sleep } from '../lib/context.ts'
import { split } from '../lib/pool.ts'
import { LiteRequester } from '../lib/requests.ts'
import { type LoadSample, type Measured, summarize } from '../lib/results.ts'
import type { HubTarget, Target, TargetName } from '../lib/targets.ts'
import { EmbeddedBackend } from '../../services/store/embedded.ts'
import { Store } from '../../services/store/index.ts'
import { PasswordPool } from '../../services/users/password-pool.ts'
import { createUser } from '../../services/users/service.ts'
import { topics } from '../../schemas/topics.ts'

/**
 * `request_latency`: K clients send real actions at a fixed total rate: alternately `mix.set` (a
 * member override in their stage) and `device.update` (a desired setting of their own device), each
 * a store transaction (embedded SQLite, synchronous=FULL) with its retained state published before the
 * response. Latency = request published → response received on `clients/{c}/res`.
 * The baselines have no requests; their figure is the broker's own round trip for the same traffic:
 * each client publishes QoS 1 to a topic it subscribes to (`bench/echo/{c}`).
 *
 * The highest sustainable rate is the highest rate of the ladder at which every request was answered,
 * p99 stayed ≤ 50 ms and the answers kept up (≥ 95% of the offered rate).
 */
const SUSTAINED_P99_MS = 50

export interface Scenario {
  clients: { clientId: string; username?: string; password?: string }[]
  subscribe: string[][]
  templates: { topic: string; payload: string }[][]
}

export async function hubScenario(ctx: Context, target: HubTarget, users: string[]): Promise<Scenario> {
  const token = (sub: string) => ctx.tokens.sign({ sub, role: 'user' }, 3600).token
  const admin = await LiteRequester.connect(target.host, target.port, 'req-admin', token(users[0]!))
  const stage = await admin.ok<{ id: string }>('stage.create', { name: 'Requests' })
  const group = await admin.ok<{ id: string }>('group.create', {
    stageId: stage.id,
    name: 'All',
    color: '#336699',
  })
  admin.end()
  const setup = await Promise.all(
    users.map(async (userId, i) => {
      const r = await LiteRequester.connect(target.host, target.port, `req-setup-${i}`, token(userId))
      const member = await r.ok<{ id: string }>('stage.join', { stageId: stage.id, groupId: group.id })
      const device = await r.ok<{ device: { id: string } }>('device.create', {
        name: `Box ${i}`,
        kind: 'native',
      })
      r.end()
      return { userId, memberId: member.id, deviceId: device.device.id }
    }),
  )
  return {
    clients: setup.map((s, i) => ({ clientId: `req-${i}`, username: 'token', password: token(s.userId) })),
    subscribe: setup.map((_, i) => [topics.response.build(`req-${i}`)]),
    templates: setup.map((s, i) => {
      const other = setup[(i + 1) % setup.length]!
      return [
        {
          topic: topics.request.build(`req-${i}`, 'mix.set'),
          payload: JSON.stringify({
            id: 'b@SEQ@',
            params: { kind: 'member', id: other.memberId, volume: 0.5 },
          }),
        },
        {
          topic: topics.request.build(`req-${i}`, 'device.update'),
          payload: JSON.stringify({
            id: 'b@SEQ@',
            params: { deviceId: s.deviceId, settings: { receiverJitter: 0.001 } },
          }).replace('0.001', '@X@'),
        },
      ]
    }),
  }
}

function echoScenario(k: number): Scenario {
  return {
    clients: Array.from({ length: k }, (_, i) => ({ clientId: `req-${i}` })),
    subscribe: Array.from({ length: k }, (_, i) => [`bench/echo/req-${i}`]),
    templates: Array.from({ length: k }, (_, i) => [
      {
        topic: `bench/echo/req-${i}`,
        payload: JSON.stringify({
          id: 'b@SEQ@',
          params: {
            kind: 'member',
            id: 'a-member-id-of-16',
            volume: 0.5,
            note: 'echo of a request-sized payload',
          },
        }),
      },
    ]),
  }
}

/** Connects the scenario's clients, spread over the load generators, in connection group `group`. */
export async function openScenario(ctx: Context, target: Target, s: Scenario, group = 'req'): Promise<void> {
  const parts = split(
    s.clients.map((_, i) => i),
    ctx.pool.workers.length,
  )
  const opened = await ctx.pool.all('open', (w) => ({
    group,
    host: target.host,
    port: target.port,
    clients: parts[w]!.map((i) => s.clients[i]!),
    subscribe: parts[w]!.map((i) => s.subscribe[i]!),
    keepalive: 60,
    window: 20,
    qos: 1 as const,
  }))
  const accepted = opened.reduce((a, o) => a + o.accepted, 0)
  if (accepted !== s.clients.length)
    throw new Error(`clients not connected: ${opened.flatMap((o) => o.errors).join(',')}`)
}

export interface Step {
  rate: number
  latency: ReturnType<typeof summarize>
  /** Every latency measured (ms), for pooling several steps. */
  samples: number[]
  missing: number
  achieved: number
  load: LoadSample
}

/** `rate` requests/s from all of the scenario's clients (opened in connection group `group`) for `seconds`. */
export async function step(
  ctx: Context,
  target: Target,
  s: Scenario,
  rate: number,
  seconds: number,
  seqBase: number,
  group = 'req',
) {
  const parts = split(
    s.templates.map((_, i) => i),
    ctx.pool.workers.length,
  )
  const { value, load } = await measured(ctx, target, () =>
    ctx.pool.all('send', (w) => ({
      group,
      rate: rate / s.clients.length,
      durationMs: seconds * 1000,
      templates: parts[w]!.map((i) => s.templates[i]!),
      qos: 1 as const,
      seqBase,
      replies: 'id' as const,
      drainMs: 10_000,
    })),
  )
  const results: SendResult[] = value
  const latencies = results.flatMap((r) => [...(r.latencies ?? [])])
  const missing = results.reduce((a, r) => a + (r.missing ?? 0), 0)
  const first = Math.min(...results.map((r) => r.firstSentAt))
  const last = Math.max(...results.map((r) => r.lastReplyAt ?? 0))
  return {
    rate,
    latency: summarize(latencies),
    samples: latencies,
    missing,
    achieved: latencies.length / ((last - first) / 1000),
    load,
  } satisfies Step
}

async function measure(
  ctx: Context,
  name: TargetName,
): Promise<{ steady: Step; max: number; ladder: Step[] } | string> {
  const r = ctx.profile.requests
  const dataDir = join(ctx.dir, 'requests-data')
  const users = name === 'hub' ? await seedUsers(dataDir, r.clients) : []
  return onTarget(
    ctx,
    name,
    async (target) => {
      const s = name === 'hub' ? await hubScenario(ctx, target as HubTarget, users) : echoScenario(r.clients)
      await openScenario(ctx, target, s)
      await step(ctx, target, s, Math.min(r.rate, 100), 0.3, 1) // warm-up
      const steady = await step(ctx, target, s, r.rate, r.seconds, 100_000)
      ctx.log(`  ${name}: ${r.rate}/s → p50 ${steady.latency.p50} ms p99 ${steady.latency.p99} ms`)
      const ladder: Step[] = []
      let max = 0
      for (const [i, rate] of r.ladder.entries()) {
        await sleep(200)
        const ok = (x: Step) =>
          x.missing === 0 && x.latency.p99 <= SUSTAINED_P99_MS && x.achieved >= 0.95 * rate
        let result = await step(ctx, target, s, rate, r.stepSeconds, 200_000 + i * 50_000)
        // a shared machine has hiccups: a step missed only on p99 gets a second chance
        if (!ok(result) && result.missing === 0 && result.achieved >= 0.95 * rate) {
          await sleep(200)
          const again = await step(ctx, target, s, rate, r.stepSeconds, 200_000 + i * 50_000 + 25_000)
          if (ok(again) || again.latency.p99 < result.latency.p99) result = again
        }
        ladder.push(result)
        const sustained = ok(result)
        ctx.log(
          `  ${name}: ${rate}/s → p99 ${result.latency.p99} ms, ${Math.round(result.achieved)}/s answered${sustained ? '' : ' (not sustained)'}`,
        )
        if (!sustained) break
        max = rate
      }
      await ctx.pool.all('close', () => ({ group: 'req' }))
      return { steady, max, ladder }
    },
    name === 'hub' ? { hub: { dataDir } } : {},
  )
}

export async function seedUsers(dir: string, n: number): Promise<string[]> {
  const store = new Store(EmbeddedBackend.open(dir))
  const users: string[] = []
  // the users have no password: nothing is hashed
  const passwords = new PasswordPool({ cost: 10, concurrency: 1, queueLimit: 1 })
  for (let i = 0; i < n; i++) users.push((await createUser(store, { name: `Req ${i}` }, passwords)).id)
  await store.close()
  return users
}

export async function requests(ctx: Context): Promise<void> {
  const r = ctx.profile.requests
  const outcomes: Record<string, Awaited<ReturnType<typeof measure>>> = {}
  for (const name of ['hub', 'aedes', 'mosquitto'] as const) {
    ctx.log(`request_latency: ${name} (${r.clients} clients)`)
    try {
      outcomes[name] = await measure(ctx, name)
    } catch (err) {
      outcomes[name] = `failed: ${(err as Error).message}`
    }
  }
  type Outcome = { steady: Step; max: number; ladder: Step[] }
  const pick = (o: Outcome | string | undefined, get: (o: Outcome) => Measured) =>
    o === undefined ? undefined : typeof o === 'string' ? o : get(o)
  const detail = (o: Outcome) => ({
    clients: r.clients,
    rate: r.rate,
    latency_ms: o.steady.latency,
    missing: o.steady.missing,
  })
  const series: [string, string, 'higher' | 'lower', (o: Outcome) => Measured][] = [
    [
      'request_latency_p50',
      'ms',
      'lower',
      (o) => ({ value: o.steady.latency.p50, load: o.steady.load, detail: detail(o) }),
    ],
    [
      'request_latency_p99',
      'ms',
      'lower',
      (o) => ({ value: o.steady.latency.p99, load: o.steady.load, detail: detail(o) }),
    ],
    [
      'request_latency_max_sustainable_rate',
      'requests/s',
      'higher',
      (o) => ({
        value: o.max,
        ...(o.ladder.length ? { load: o.ladder[o.ladder.length - 1]!.load } : {}),
        detail: {
          criterion: `all answered, p99 <= ${SUSTAINED_P99_MS} ms, >= 95% of the offered rate`,
          ladder_top: r.ladder[r.ladder.length - 1],
          ladder: o.ladder.map((s) => ({
            rate: s.rate,
            p50: s.latency.p50,
            p99: s.latency.p99,
            answered_per_s: Math.round(s.achieved),
            missing: s.missing,
            loadgen_cpu_max: s.load.loadgen_cpu_max,
            target_cpu: s.load.target_cpu,
          })),
        },
      }),
    ],
  ]
  for (const [metric, unit, better, get] of series) {
    ctx.results.compare(metric, unit, better, pick(outcomes.hub, get)!, {
      aedes: pick(outcomes.aedes, get),
      mosquitto: pick(outcomes.mosquitto, get),
    })
  }
}

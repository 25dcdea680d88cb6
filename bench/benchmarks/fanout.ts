import { join } from 'node:path'
import type { Recording, SendResult } from '../load/tasks.ts'
import { type Context, measured, onTarget, sleep } from '../lib/context.ts'
import { split } from '../lib/pool.ts'
import { LiteRequester } from '../lib/requests.ts'
import { type LoadSample, type Measured, summarize } from '../lib/results.ts'
import { createUsers } from '../lib/seed.ts'
import type { HubTarget, Target, TargetName } from '../lib/targets.ts'
import { EmbeddedBackend } from '../../services/store/embedded.ts'
import { Store } from '../../services/store/index.ts'
import { topics } from '../../schemas/topics.ts'

/**
 * `fanout`: one stage change delivered to M subscribed members.
 *
 * Hub: an admin sends `member.update` (a member's position; `position.x` carries a sequence number)
 * at a fixed rate, round-robin over the members; every member is subscribed (QoS 1) to
 * `stages/{s}/members/+`, so each request is one store commit and one retained publish delivered
 * to M clients, each delivery re-checked by the ACL. Latency = request sent → delivery at each member.
 * Baselines: a client publishes a member-sized retained QoS 1 message with the same sequence number to
 * `bench/stages/s/members/{i}`, M clients subscribed to `bench/stages/s/members/+`.
 *
 * Two runs per target: at `rate` (latency, p50/p99) and at `overloadRate` (throughput: deliveries/s
 * actually achieved while offered more than the target can take).
 */

const MEMBER_PAYLOAD = (i: number) =>
  JSON.stringify({
    id: `member-${i}`,
    stageId: 'stage-s',
    userId: `user-${i}`,
    name: `User ${i}`,
    groupId: 'group-g',
    seat: null,
    joined: false,
    online: false,
    isDirector: false,
    volume: 1,
    muted: false,
    position: { x: 0.001, y: 0, z: 0, rX: 0, rY: 0, rZ: 0 },
    version: 1,
  }).replace('0.001', '@X@')

export interface Scenario {
  /** Per member worker: subscribe specs; the publisher goes on worker 0. */
  members: { clientId: string; username?: string; password?: string }[]
  filter: string
  publisher: { clientId: string; username?: string; password?: string }
  templates: { topic: string; payload: string }[]
  /** The hub answers each request: measure that too. */
  replies: boolean
}

/** The hub's scenario, set up through `target` (the admin creates the stage; members join and leave). */
export async function hubScenario(ctx: Context, target: HubTarget, users: string[]): Promise<Scenario> {
  const token = (sub: string) => ctx.tokens.sign({ sub, role: 'user' }, 3600).token
  const adminReq = await LiteRequester.connect(target.host, target.port, 'fan-admin-setup', token(users[0]!))
  const stage = await adminReq.ok<{ id: string }>('stage.create', { name: 'Fan-out' })
  const group = await adminReq.ok<{ id: string }>('group.create', {
    stageId: stage.id,
    name: 'All',
    color: '#336699',
  })
  // members join (a seat each) and leave again: memberships stay, seats (30) are free for the next
  const members = users.slice(1)
  for (let i = 0; i < members.length; i += 10) {
    await Promise.all(
      members.slice(i, i + 10).map(async (userId, k) => {
        const r = await LiteRequester.connect(target.host, target.port, `fan-setup-${i + k}`, token(userId))
        // a store that serialises readers (MongoDB before issue 15) may refuse a join as `conflict`
        for (let attempt = 1; ; attempt++) {
          try {
            await r.ok('stage.join', { stageId: stage.id, groupId: group.id })
            break
          } catch (err) {
            if (attempt >= 5 || !/"conflict"/.test((err as Error).message)) throw err
            await sleep(50 * attempt)
          }
        }
        await r.ok('stage.leave', {})
        r.end()
      }),
    )
  }
  adminReq.end()
  return {
    members: members.map((userId, i) => ({
      clientId: `fan-m${i}`,
      username: 'token',
      password: token(userId),
    })),
    filter: topics.member.filter({ s: stage.id }),
    publisher: { clientId: 'fan-admin', username: 'token', password: token(users[0]!) },
    templates: members.map((userId) => ({
      topic: topics.request.build('fan-admin', 'member.update'),
      payload: JSON.stringify({
        id: 'b@SEQ@',
        params: {
          stageId: stage.id,
          userId,
          patch: { position: { x: 0.001, y: 0, z: 0, rX: 0, rY: 0, rZ: 0 } },
        },
      }).replace('0.001', '@X@'),
    })),
    replies: true,
  }
}

export function plainScenario(m: number): Scenario {
  return {
    members: Array.from({ length: m }, (_, i) => ({ clientId: `fan-m${i}` })),
    filter: 'bench/stages/s/members/+',
    publisher: { clientId: 'fan-pub' },
    templates: Array.from({ length: m }, (_, i) => ({
      topic: `bench/stages/s/members/${i}`,
      payload: MEMBER_PAYLOAD(i),
    })),
    replies: false,
  }
}

export interface Run {
  rate: number
  latency: ReturnType<typeof summarize>
  deliveriesPerSecond: number
  delivered: number
  expected: number
  requestLatency?: ReturnType<typeof summarize>
  load: LoadSample
}

/** What the latency target asks: every delivery made, p99 within this. */
const SUSTAINED_P99_MS = 10

export const sustained = (r: Run) => r.delivered === r.expected && r.latency.p99 <= SUSTAINED_P99_MS

export function subscriberWorkers(ctx: Context) {
  return ctx.pool.workers.length > 1 ? ctx.pool.workers.slice(1) : ctx.pool.workers
}

/** Waits until no more deliveries arrive (a saturated target works off its backlog), at most 30 s. */
export async function quiesce(ctx: Context): Promise<void> {
  const workers = subscriberWorkers(ctx)
  await Promise.all(workers.map((w) => w.call('record', { group: 'fan-members', extract: 'x' })))
  let last = -1
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    await sleep(250)
    const counts = await Promise.all(workers.map((w) => w.call('count', { group: 'fan-members' })))
    const total = counts.reduce((a, c) => a + c, 0)
    if (total === last) break
    last = total
  }
  await Promise.all(workers.map((w) => w.call('collect', { group: 'fan-members' })))
}

/**
 * One phase: stage changes at `rate` for `seconds`, then deliveries are awaited for as long again
 * (at least 2 s); what has not arrived by then counts as not delivered.
 */
export async function run(
  ctx: Context,
  target: Target | readonly Target[],
  s: Scenario,
  rate: number,
  seconds: number,
  seqBase: number,
): Promise<Run> {
  const workers = subscriberWorkers(ctx)
  const drainMs = Math.max(2000, seconds * 1000)
  await Promise.all(workers.map((w) => w.call('record', { group: 'fan-members', extract: 'x' })))
  const { value: sent, load } = await measured(ctx, target, async () => {
    const result: SendResult = await ctx.pool.workers[0]!.call('send', {
      group: 'fan-pub',
      rate,
      durationMs: seconds * 1000,
      templates: [s.templates],
      qos: 1,
      retain: !s.replies,
      seqBase,
      ...(s.replies ? { replies: 'id' as const, drainMs } : {}),
    })
    const expected = result.sent * s.members.length
    const deadline = result.lastSentAt + drainMs
    for (;;) {
      const counts = await Promise.all(workers.map((w) => w.call('count', { group: 'fan-members' })))
      if (counts.reduce((a, c) => a + c, 0) >= expected || Date.now() > deadline) break
      await sleep(50)
    }
    return result
  })
  const recordings: Recording[] = await Promise.all(
    workers.map((w) => w.call('collect', { group: 'fan-members' })),
  )
  const sentAt = new Map<number, number>()
  for (let i = 0; i < sent.sends.length; i += 2) sentAt.set(sent.sends[i]!, sent.sends[i + 1]!)
  const latencies: number[] = []
  let lastDelivery = 0
  for (const r of recordings) {
    for (let i = 0; i < r.pairs.length; i += 2) {
      const at = sentAt.get(r.pairs[i]!)
      if (at === undefined) continue
      const t = r.pairs[i + 1]!
      latencies.push(t - at)
      if (t > lastDelivery) lastDelivery = t
    }
  }
  const delivered = latencies.length
  const expected = sent.sent * s.members.length
  if (delivered < expected) await quiesce(ctx)
  return {
    rate,
    latency: summarize(latencies),
    deliveriesPerSecond: delivered / ((lastDelivery - sent.firstSentAt) / 1000),
    delivered,
    expected,
    ...(sent.latencies ? { requestLatency: summarize(sent.latencies) } : {}),
    load,
  }
}

/**
 * Connects the scenario's members (subscribed at QoS 1, spread over the subscriber workers) and its
 * publisher (worker 0) to `target`; a client spec's own `port` wins (members spread over the
 * processes of a deployment).
 */
export async function openScenario(ctx: Context, target: Target, s: Scenario): Promise<void> {
  const workers = subscriberWorkers(ctx)
  const parts = split(s.members, workers.length)
  const opened = await Promise.all(
    workers.map((w, i) =>
      w.call('open', {
        group: 'fan-members',
        host: target.host,
        port: target.port,
        clients: parts[i]!,
        keepalive: 60,
        window: 50,
        subscribe: [[s.filter]],
        qos: 1,
      }),
    ),
  )
  if (opened.some((o) => o.refused + o.failed > 0))
    throw new Error(`members not connected: ${opened.flatMap((o) => o.errors).join('; ')}`)
  const publisher = await ctx.pool.workers[0]!.call('open', {
    group: 'fan-pub',
    host: target.host,
    port: target.port,
    clients: [s.publisher],
    keepalive: 60,
    window: 1,
    subscribe: s.replies ? [[topics.response.build(s.publisher.clientId)]] : [],
    qos: 1,
  })
  if (publisher.accepted !== 1) throw new Error(`publisher not connected: ${publisher.errors.join('; ')}`)
}

export async function closeScenario(ctx: Context): Promise<void> {
  await Promise.all(subscriberWorkers(ctx).map((w) => w.call('close', { group: 'fan-members' })))
  await ctx.pool.workers[0]!.call('close', { group: 'fan-pub' })
}

interface Outcome {
  /** At the target rate (`fanout.rate`). */
  steady: Run
  /** The highest ladder rate with every delivery made and p99 ≤ 10 ms (0: none). */
  maxRate: number
  ladder: Run[]
  overload: Run
}

async function measure(ctx: Context, name: TargetName): Promise<Outcome | string> {
  const f = ctx.profile.fanout
  const users = name === 'hub' ? await fanoutUsers(ctx, join(ctx.dir, 'fanout-data')) : []
  return onTarget(
    ctx,
    name,
    async (target) => {
      const s = name === 'hub' ? await hubScenario(ctx, target as HubTarget, users) : plainScenario(f.members)
      await openScenario(ctx, target, s)
      await quiesce(ctx) // the retained messages of the subscriptions are not counted
      let seqBase = 1000
      const next = () => (seqBase += 100_000)
      await run(ctx, target, s, Math.min(f.ladder[0] ?? 50, 50), 0.3, seqBase) // warm-up
      const ladder: Run[] = []
      let maxRate = 0
      for (const rate of f.ladder) {
        let r = await run(ctx, target, s, rate, f.stepSeconds, next())
        // a shared machine has hiccups: a step missed only on p99 gets a second chance
        if (!sustained(r) && r.delivered === r.expected) {
          const again = await run(ctx, target, s, rate, f.stepSeconds, next())
          if (sustained(again) || again.latency.p99 < r.latency.p99) r = again
        }
        ladder.push(r)
        const ok = sustained(r)
        ctx.log(
          `  ${name}: ${rate}/s → p50 ${r.latency.p50} ms p99 ${r.latency.p99} ms, ${r.delivered}/${r.expected} delivered${ok ? '' : ' (not sustained)'}`,
        )
        if (!ok) break
        maxRate = rate
      }
      let steady = ladder.find((r) => r.rate === f.rate)
      if (!steady) {
        steady = await run(ctx, target, s, f.rate, f.stepSeconds, next())
        ctx.log(
          `  ${name}: ${f.rate}/s → p50 ${steady.latency.p50} ms p99 ${steady.latency.p99} ms, ${steady.delivered}/${steady.expected} delivered`,
        )
      }
      const overload = await run(ctx, target, s, f.overloadRate, f.overloadSeconds, next())
      ctx.log(
        `  ${name}: offered ${f.overloadRate}/s → ${Math.round(overload.deliveriesPerSecond)} deliveries/s`,
      )
      await closeScenario(ctx)
      return { steady, maxRate, ladder, overload }
    },
    name === 'hub' ? { hub: { dataDir: join(ctx.dir, 'fanout-data') } } : {},
  )
}

/** The fan-out's users (admin first, then the members), created in the store before the hub starts. */
async function fanoutUsers(ctx: Context, dir: string): Promise<string[]> {
  const store = new Store(EmbeddedBackend.open(dir))
  try {
    return await createUsers(
      store,
      Array.from({ length: ctx.profile.fanout.members + 1 }, (_, i) => `Fan ${i}`),
    )
  } finally {
    await store.close()
  }
}

export async function fanout(ctx: Context): Promise<void> {
  const f = ctx.profile.fanout
  const outcomes: Record<string, Outcome | string> = {}
  for (const name of ['hub', 'aedes', 'mosquitto'] as const) {
    ctx.log(`fanout: ${name} (${f.members} members)`)
    try {
      outcomes[name] = await measure(ctx, name)
    } catch (err) {
      outcomes[name] = `failed: ${(err as Error).message}`
    }
  }
  const pick = (o: Outcome | string | undefined, get: (r: Outcome) => Measured) =>
    o === undefined ? undefined : typeof o === 'string' ? o : get(o)
  const runDetail = (r: Run) => ({
    members: f.members,
    rate: r.rate,
    delivered: r.delivered,
    expected: r.expected,
    deliveries_per_s: Math.round(r.deliveriesPerSecond),
    latency_ms: r.latency,
    ...(r.requestLatency ? { request_response_ms: r.requestLatency } : {}),
  })
  const series: [string, string, 'higher' | 'lower', (r: Outcome) => Measured][] = [
    [
      `fanout_${f.members}_p50_latency`,
      'ms',
      'lower',
      (r) => ({ value: r.steady.latency.p50, load: r.steady.load, detail: runDetail(r.steady) }),
    ],
    [
      `fanout_${f.members}_p99_latency`,
      'ms',
      'lower',
      (r) => ({ value: r.steady.latency.p99, load: r.steady.load, detail: runDetail(r.steady) }),
    ],
    [
      `fanout_${f.members}_max_rate_p99_${SUSTAINED_P99_MS}ms`,
      'changes/s',
      'higher',
      (r) => ({
        value: r.maxRate,
        load: r.ladder[r.ladder.length - 1]!.load,
        detail: {
          criterion: `every delivery made, p99 <= ${SUSTAINED_P99_MS} ms`,
          ladder_top: f.ladder[f.ladder.length - 1],
          ladder: r.ladder.map((run) => ({
            rate: run.rate,
            p50: run.latency.p50,
            p99: run.latency.p99,
            delivered: run.delivered,
            expected: run.expected,
            target_cpu: run.load.target_cpu,
            loadgen_cpu_max: run.load.loadgen_cpu_max,
            others_cpu: run.load.others_cpu,
          })),
        },
      }),
    ],
    [
      `fanout_${f.members}_deliveries`,
      'deliveries/s',
      'higher',
      (r) => ({
        value: r.overload.deliveriesPerSecond,
        load: r.overload.load,
        detail: { offered_rate: f.overloadRate, ...runDetail(r.overload) },
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

import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { SubscribeTiming } from '../load/tasks.ts'
import { type Context, onHub, onTarget } from '../lib/context.ts'
import { type Measured, summarize } from '../lib/results.ts'
import { GROUPS_PER_STAGE, MEMBERS_PER_STAGE, type SeedPlan, seedStore } from '../lib/seed.ts'
import type { HubTarget, Target, TargetName } from '../lib/targets.ts'
import { topics } from '../../schemas/topics.ts'

/**
 * `retained_subscribe`: SUBSCRIBE latency with 10k and 100k retained state topics.
 *
 * The hub's store is seeded with stages, members, mixes and users (bench/lib/seed.ts) so that the
 * hub publishes that many retained state topics on start, exactly as in production. The hub's retained
 * set is then dumped and loaded into the baselines (bare Aedes preloads it; Mosquitto gets it
 * published), so all three hold the same topics and payloads.
 *
 * A member of one stage subscribes (QoS 1) to
 * - `stages/{s}/#` (matching: the stage, its 3 groups and 24 members = 28 retained messages), and
 * - `users/{u}/devices/+` (allowed, matches nothing: the user has no device).
 * Latency = SUBSCRIBE sent → SUBACK and every expected retained message received → a PINGREQ sent
 * after them answered. The ping catches work the broker does after the SUBACK (Aedes writes the SUBACK
 * first and scans the retained set afterwards, blocking every client meanwhile).
 *
 * `cold_start`: time from spawning the hub process to `/readyz` answering 200 with 100k stored state
 * documents, on a restart (retained archive written by the previous run) and on the first start
 * (empty archive), against the same with an empty store.
 */

const sizeLabel = (n: number) => (n >= 1000 && n % 1000 === 0 ? `${n / 1000}k` : String(n))

interface SubscribeOutcome {
  matching: SubscribeTiming
  nonMatching: SubscribeTiming
}

async function timeSubscriptions(
  ctx: Context,
  target: Target,
  plan: SeedPlan,
  client: { clientId: string; username?: string; password?: string },
): Promise<SubscribeOutcome> {
  const worker = ctx.pool.workers[0]!
  const opened = await worker.call('open', {
    group: 'rs',
    host: target.host,
    port: target.port,
    clients: [client],
    keepalive: 60,
    window: 1,
  })
  if (opened.accepted !== 1) throw new Error(`subscriber not connected: ${opened.errors.join('; ')}`)
  const reps = ctx.profile.retained.reps
  const timeoutMs = 120_000
  const matching = await worker.call('subscribeTiming', {
    group: 'rs',
    index: 0,
    filters: [`${topics.stage.build(plan.sample.stageId)}/#`],
    expect: 1 + GROUPS_PER_STAGE + MEMBERS_PER_STAGE,
    reps,
    timeoutMs,
  })
  const nonMatching = await worker.call('subscribeTiming', {
    group: 'rs',
    index: 0,
    filters: [topics.userDevice.filter({ u: plan.sample.userId })],
    expect: 0,
    reps,
    timeoutMs,
  })
  await worker.call('close', { group: 'rs' })
  return { matching, nonMatching }
}

async function retainedSize(ctx: Context, size: number): Promise<void> {
  const label = sizeLabel(size)
  const dataDir = join(ctx.dir, `retained-${label}`)
  mkdirSync(dataDir, { recursive: true })
  const plan = await seedStore(dataDir, 'topics', size)
  const dump = join(ctx.dir, `retained-${label}.tsv`)
  const outcomes: Record<string, SubscribeOutcome | string> = {}
  let held = 0
  for (const name of ['hub', 'aedes', 'mosquitto'] as TargetName[]) {
    ctx.log(`retained_subscribe ${label}: ${name}`)
    try {
      outcomes[name] = await onTarget(
        ctx,
        name,
        async (target) => {
          if (name === 'hub') {
            const hub = target as HubTarget
            await hub.settle() // the archive write of the start-up republish is not measured
            held = await hub.dumpRetained(dump)
            const token = ctx.tokens.sign({ sub: plan.sample.userId, role: 'user' }, 3600).token
            return timeSubscriptions(ctx, target, plan, {
              clientId: 'rs-member',
              username: 'token',
              password: token,
            })
          }
          if (name === 'mosquitto') {
            const w = ctx.pool.workers[0]!
            await w.call('open', {
              group: 'seed',
              host: target.host,
              port: target.port,
              clients: [{ clientId: 'rs-seed' }],
              keepalive: 0,
              window: 1,
            })
            await w.call('publishRetained', { group: 'seed', file: dump })
            await w.call('close', { group: 'seed' })
          }
          return timeSubscriptions(ctx, target, plan, { clientId: 'rs-member' })
        },
        name === 'hub' ? { hub: { dataDir }, label: `hub-retained-${label}` } : { retainedFile: dump },
      )
    } catch (err) {
      outcomes[name] = `failed: ${(err as Error).message}`
    }
    const o = outcomes[name]!
    if (typeof o !== 'string')
      ctx.log(
        `  ${name}: matching p50 ${summarize(o.matching.total).p50} ms, non-matching p50 ${summarize(o.nonMatching.total).p50} ms`,
      )
  }
  for (const kind of ['matching', 'nonmatching'] as const) {
    const get = (o: SubscribeOutcome | string | undefined): Measured | undefined => {
      if (o === undefined || typeof o === 'string') return o
      const t = kind === 'matching' ? o.matching : o.nonMatching
      const total = summarize(t.total)
      return {
        value: total.p50,
        detail: {
          retained_topics: held,
          filter: kind === 'matching' ? `${topics.stage.pattern}/#` : topics.userDevice.filter({ u: '{u}' }),
          retained_received: t.received[0],
          total_ms: total,
          suback_ms: summarize(t.suback),
        },
      }
    }
    ctx.results.compare(`retained_subscribe_${label}_${kind}`, 'ms', 'lower', get(outcomes.hub)!, {
      aedes: get(outcomes.aedes),
      mosquitto: get(outcomes.mosquitto),
    })
  }
}

export async function retainedSubscribe(ctx: Context): Promise<void> {
  for (const size of ctx.profile.retained.sizes) await retainedSize(ctx, size)
}

/** Spawn → /readyz 200, on the first start and on a restart of the same store. */
async function starts(
  ctx: Context,
  dataDir: string,
  label: string,
): Promise<{ first: number; restart: number; topics: number }> {
  const first = await onHub(ctx, async (hub) => hub.startMs, { dataDir, label: `${label}-first` })
  let topics = 0
  const restart = await onHub(
    ctx,
    async (hub) => {
      topics = await hub.dumpRetained(join(ctx.dir, `${label}.tsv`))
      return hub.startMs
    },
    { dataDir, label: `${label}-restart` },
  )
  return { first, restart, topics }
}

export async function coldStart(ctx: Context): Promise<void> {
  const docs = ctx.profile.coldStart.documents
  const label = sizeLabel(docs)
  const seeded = join(ctx.dir, `cold-${label}`)
  const empty = join(ctx.dir, 'cold-empty')
  mkdirSync(seeded, { recursive: true })
  mkdirSync(empty, { recursive: true })
  let hub: Measured
  let hubFirst: Measured
  let base: Measured
  let baseFirst: Measured
  try {
    const plan = await seedStore(seeded, 'documents', docs)
    ctx.log(`cold_start: ${plan.documents} documents (${plan.stages} stages, ${plan.users} users)`)
    const s = await starts(ctx, seeded, `cold-${label}`)
    ctx.log(
      `  first start ${Math.round(s.first)} ms, restart ${Math.round(s.restart)} ms, ${s.topics} retained topics`,
    )
    hub = {
      value: s.restart,
      detail: {
        documents: plan.documents,
        retained_topics: s.topics,
        archive: 'written by the previous run',
      },
    }
    hubFirst = {
      value: s.first,
      detail: { documents: plan.documents, retained_topics: s.topics, archive: 'empty' },
    }
  } catch (err) {
    hub = hubFirst = `failed: ${(err as Error).message}`
  }
  try {
    const e = await starts(ctx, empty, 'cold-empty')
    ctx.log(`  empty store: first start ${Math.round(e.first)} ms, restart ${Math.round(e.restart)} ms`)
    base = { value: e.restart, detail: { retained_topics: e.topics } }
    baseFirst = { value: e.first }
  } catch (err) {
    base = baseFirst = `failed: ${(err as Error).message}`
  }
  ctx.results.compare(`cold_start_${label}_docs`, 'ms', 'lower', hub, { hub_empty_store: base })
  ctx.results.compare(`cold_start_${label}_docs_first_start`, 'ms', 'lower', hubFirst, {
    hub_empty_store: baseFirst,
  })
}

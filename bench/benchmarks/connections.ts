import { join } from 'node:path'
import type { ClientSpec, OpenResult } from '../load/tasks.ts'
import { type Context, measured, onTarget, sleep } from '../lib/context.ts'
import { split } from '../lib/pool.ts'
import { type LoadSample, type Measured, round } from '../lib/results.ts'
import { createUsers } from '../lib/seed.ts'
import type { Target, TargetName } from '../lib/targets.ts'
import { EmbeddedBackend } from '../../services/store/embedded.ts'
import { Store } from '../../services/store/index.ts'

/**
 * `connect_storm` and `memory_per_connection`, measured on one process per target:
 *
 * 1. warm-up: a quarter of the clients connect and disconnect, so code loading and JIT are not
 *    counted as per-connection memory;
 * 2. memory: `memoryConnections` idle connections (keepalive 60 s) are opened in 5 steps; after
 *    each step (and before the first) the target collects garbage (Node targets) and its RSS is read.
 *    The figure is the median of the slopes between every two of these points (Theil-Sen): a single
 *    RSS delta is at the mercy of V8 growing or reusing heap space by megabytes at some point, the
 *    median much less. The connections are closed again;
 * 3. the storm: N new clients open their sockets at once (the load-generator processes keep
 *    `connectWindow` handshakes in flight together, so no accept backlog overflows and no SYN is
 *    retried a second later), connections/s = accepted / (last CONNACK − first socket opened).
 *
 * The hub's clients carry HS256 user JWTs of users that exist in its store (verified on CONNECT); the
 * baselines' clients connect without credentials.
 */
interface Outcome {
  rate: Measured
  memory: Measured
}

/**
 * The hub's clients sign in as users that exist (created in the store before the hub starts), as
 * signed-up users do: a token of an unknown user would make each first CONNECT create a profile.
 */
const USERS = 16

async function stormUsers(dir: string): Promise<string[]> {
  const store = new Store(EmbeddedBackend.open(dir))
  try {
    return await createUsers(
      store,
      Array.from({ length: USERS }, (_, i) => `Storm ${i}`),
    )
  } finally {
    await store.close()
  }
}

/** Client specs; with users, each signs in with an HS256 user JWT of one of them (round-robin). */
export function clients(ctx: Context, users: string[], prefix: string, n: number): ClientSpec[] {
  return Array.from({ length: n }, (_, i) => {
    const clientId = `${prefix}${i}`
    const sub = users[i % users.length]
    if (sub === undefined) return { clientId }
    const { token } = ctx.tokens.sign({ sub, role: 'user' }, 3600)
    return { clientId, username: 'token', password: token }
  })
}

/** Opens `specs` at once over the load generators (`connectWindow` handshakes in flight), measured. */
export async function storm(
  ctx: Context,
  target: Target | readonly Target[],
  specs: ClientSpec[],
  group: string,
): Promise<{ results: OpenResult[]; load: LoadSample; wallMs: number }> {
  const first = Array.isArray(target) ? (target as readonly Target[])[0]! : (target as Target)
  const parts = split(specs, ctx.pool.workers.length)
  const { value, load, wallMs } = await measured(ctx, target, () =>
    ctx.pool.all('open', (i) => ({
      group,
      host: first.host,
      port: first.port,
      clients: parts[i]!,
      keepalive: 60,
      window: Math.max(1, Math.floor(ctx.profile.connectWindow / ctx.pool.workers.length)),
    })),
  )
  return { results: value, load, wallMs }
}

/** The median of the slopes between every two points: robust to a jump or two (V8 growing a space). */
function theilSen(points: readonly [number, number][]): number {
  const slopes: number[] = []
  for (let i = 0; i < points.length; i++)
    for (let j = i + 1; j < points.length; j++) {
      const dx = points[j]![0] - points[i]![0]
      if (dx !== 0) slopes.push((points[j]![1] - points[i]![1]) / dx)
    }
  slopes.sort((a, b) => a - b)
  const mid = slopes.length >> 1
  return slopes.length % 2 ? slopes[mid]! : (slopes[mid - 1]! + slopes[mid]!) / 2
}

const MEMORY_STEPS = 5

async function measure(ctx: Context, name: TargetName): Promise<Outcome | string> {
  const dataDir = join(ctx.dir, 'connections-data')
  // the baselines' clients connect without credentials
  const users = name === 'hub' ? await stormUsers(dataDir) : []
  const n = ctx.profile.connections
  const warm = clients(ctx, users, 'warm', Math.max(20, Math.round(n / 4)))
  const m = ctx.profile.memoryConnections
  const idle = clients(ctx, users, 'idle', m)
  const specs = clients(ctx, users, 'c', n)
  return onTarget(
    ctx,
    name,
    async (target) => {
      await storm(ctx, target, warm, 'warm')
      await ctx.pool.all('close', () => ({ group: 'warm' }))
      await sleep(200)

      // memory: idle connections added in steps, GC and RSS after each; the slope is the cost of one
      const points: [number, number][] = []
      const heap: [number, number][] = []
      const sample = async (count: number) => {
        const mem = await target.settledMemory()
        points.push([count, mem.rss])
        if (mem.heapUsed !== undefined) heap.push([count, mem.heapUsed + (mem.external ?? 0)])
      }
      await sample(0)
      let opened = 0
      for (let step = 1; step <= MEMORY_STEPS; step++) {
        const batch = idle.slice(
          Math.floor(((step - 1) * m) / MEMORY_STEPS),
          Math.floor((step * m) / MEMORY_STEPS),
        )
        const { results } = await storm(ctx, target, batch, 'idle')
        opened += results.reduce((a, r) => a + r.accepted, 0)
        await sleep(ctx.profile.settleMs / MEMORY_STEPS)
        await sample(opened)
      }
      await ctx.pool.all('close', () => ({ group: 'idle' }))
      await sleep(200)

      const { results, load } = await storm(ctx, target, specs, 'storm')
      const accepted = results.reduce((a, r) => a + r.accepted, 0)
      const refused = results.reduce((a, r) => a + r.refused + r.failed, 0)
      const errors = results.flatMap((r) => r.errors)
      const started = Math.min(...results.map((r) => r.startedAt))
      const done = Math.max(...results.map((r) => r.connectedAt))
      await ctx.pool.all('close', () => ({ group: 'storm' }))
      if (accepted === 0 || opened === 0) return `no connection accepted: ${errors.join('; ')}`
      const detail = { clients: n, accepted, refused, errors, seconds: (done - started) / 1000 }
      ctx.log(`  ${name}: ${accepted}/${n} connected in ${(done - started).toFixed(0)} ms`)
      const first = points[0]![1]
      const last = points[points.length - 1]![1]
      return {
        rate: { value: (accepted * 1000) / (done - started), load, detail },
        memory: {
          value: theilSen(points) / 1024,
          detail: {
            connections: opened,
            method: `RSS after GC at ${MEMORY_STEPS + 1} connection counts; median of the pairwise slopes`,
            rss_mib: points.map(([count, rss]) => [count, round(rss / 2 ** 20)]),
            rss_first_to_last_kib_per_connection: round((last - first) / opened / 1024),
            ...(heap.length > 1
              ? { heap_and_external_kib_per_connection: round(theilSen(heap) / 1024) }
              : {}),
          },
        },
      }
    },
    name === 'hub' ? { hub: { dataDir } } : {},
  )
}

export async function connections(ctx: Context): Promise<void> {
  const outcomes: Record<string, Outcome | string> = {}
  for (const name of ['hub', 'aedes', 'mosquitto'] as const) {
    ctx.log(`connect_storm / memory_per_connection: ${name}`)
    try {
      outcomes[name] = await measure(ctx, name)
    } catch (err) {
      outcomes[name] = `failed: ${(err as Error).message}`
    }
  }
  const pick = (o: Outcome | string | undefined, key: keyof Outcome): Measured | undefined =>
    o === undefined ? undefined : typeof o === 'string' ? o : o[key]
  const hub = outcomes.hub
  ctx.results.compare('connect_storm_jwt', 'connections/s', 'higher', pick(hub, 'rate')!, {
    aedes: pick(outcomes.aedes, 'rate'),
    mosquitto: pick(outcomes.mosquitto, 'rate'),
  })
  ctx.results.compare('memory_per_connection', 'KiB', 'lower', pick(hub, 'memory')!, {
    aedes: pick(outcomes.aedes, 'memory'),
    mosquitto: pick(outcomes.mosquitto, 'memory'),
  })
}

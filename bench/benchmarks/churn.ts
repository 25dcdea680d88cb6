import { join } from 'node:path'
import type { ChurnResult } from '../load/tasks.ts'
import { type Context, measured, onHub, sleep } from '../lib/context.ts'
import { type LoadSample, round, summarize } from '../lib/results.ts'
import type { HubTarget, MemorySample } from '../lib/targets.ts'
import { PasswordPool } from '../../services/users/password-pool.ts'
import { createUser } from '../../services/users/service.ts'
import { EmbeddedBackend } from '../../services/store/embedded.ts'
import { Store } from '../../services/store/index.ts'

/**
 * `churn`: a soak of connection churn against the hub alone: every load generator runs client life
 * cycles back to back (connect with a user JWT, subscribe to the user's profile and to its responses,
 * one `user.update` setting a new avatarUrl, leave with a DISCONNECT or by dropping the socket), and
 * every `slowEvery`-th cycle also leaves a slow reader behind: a subscriber to a profile that many
 * updates reach, which never reads its socket and lets go only after `slowHoldSeconds` (unless the
 * hub closes it first as a slow consumer).
 *
 * Two figures, each with its baseline from the same run:
 * - `churn_rss_after_gc`: the hub's RSS after a forced GC (it runs with --expose-gc) once the soak is
 *   over, every client has gone and `quietSeconds` have passed (the request pipeline forgets rate-limit
 *   buckets and expired request records once a minute: until then each client id of the soak is
 *   still remembered, about 350 bytes each), against the same measure after a warm-up of churn
 *   without slow readers (code loaded and compiled, pools grown): a ratio above 1.10 is memory the
 *   soak left behind;
 * - `churn_request_p99`: request → response p99 during the soak, against the warm-up's.
 */

interface Phase {
  results: ChurnResult[]
  load: LoadSample
  wallMs: number
}

/** A few users only: each profile is updated often, so what slow readers subscribe to keeps coming. */
const USERS = 3
const AVATAR_BYTES = 2000

async function churnUsers(dir: string): Promise<string[]> {
  const store = new Store(EmbeddedBackend.open(dir))
  const users: string[] = []
  // the users have no password: nothing is hashed
  const passwords = new PasswordPool({ cost: 10, concurrency: 1, queueLimit: 1 })
  for (let i = 0; i < USERS; i++) users.push((await createUser(store, { name: `Churn ${i}` }, passwords)).id)
  await store.close()
  return users
}

async function hubCounters(hub: HubTarget): Promise<Record<string, number>> {
  const text = await (await fetch(`http://${hub.host}:${hub.httpPort}/metrics`)).text()
  const counters: Record<string, number> = {}
  for (const line of text.split('\n')) {
    const match =
      /^(stagehub_(?:slow_consumer_disconnects_total|outbound_dropped_total|connections))(\{[^}]*\})? (\S+)$/.exec(
        line,
      )
    if (match) counters[`${match[1]}${match[2] ?? ''}`] = Number(match[3])
  }
  return counters
}

export async function churn(ctx: Context): Promise<void> {
  const c = ctx.profile.churn
  const dataDir = join(ctx.dir, 'churn-data')
  const users = (await churnUsers(dataDir)).map((id) => ({
    id,
    token: ctx.tokens.sign({ sub: id, role: 'user' }, 24 * 3600).token,
  }))
  ctx.log(`churn: hub, ${c.seconds} s soak after ${c.warmupSeconds} s warm-up`)
  const outcome = await onHub(
    ctx,
    async (hub) => {
      const phase = async (name: string, seconds: number, slowEvery: number): Promise<Phase> => {
        const { value, load, wallMs } = await measured(ctx, hub, () =>
          ctx.pool.all('churn', (i) => ({
            host: hub.host,
            port: hub.port,
            prefix: `${name}-${i}-`,
            users,
            durationMs: seconds * 1000,
            concurrency: c.concurrency,
            slowEvery,
            slowHoldMs: c.slowHoldSeconds * 1000,
            avatarBytes: AVATAR_BYTES,
          })),
        )
        return { results: value, load, wallMs }
      }
      const calm = await phase('warm', c.warmupSeconds, 0)
      await sleep(ctx.profile.settleMs)
      const start = await hub.settledMemory()

      // RSS after GC along the way, under load (for the detail: the peak is the slow readers' backlog)
      const along: [number, number][] = [[0, round(start.rss / 2 ** 20)]]
      const soakStarted = performance.now()
      let soaking = true
      const sampler = (async () => {
        while (soaking) {
          await sleep(Math.min(30_000, (c.seconds * 1000) / 6))
          if (!soaking) break
          const m = await hub.settledMemory()
          along.push([round((performance.now() - soakStarted) / 1000, 1), round(m.rss / 2 ** 20)])
        }
      })()
      const soak = await phase('soak', c.seconds, c.slowEvery)
      soaking = false
      await sampler
      // every client is gone; let the hub finish closing them
      await sleep(2 * ctx.profile.settleMs)
      const ended = await hub.settledMemory()
      const counters = await hubCounters(hub)
      await sleep(c.quietSeconds * 1000)
      const end = await hub.settledMemory()
      return { calm, soak, start, ended, end, along, counters }
    },
    { dataDir, label: 'churn-hub' },
  )

  const total = (p: Phase, key: 'cycles' | 'slowReaders' | 'failed') =>
    p.results.reduce((a, r) => a + r[key], 0)
  const mib = (m: MemorySample) => round(((m.heapUsed ?? 0) + (m.external ?? 0)) / 2 ** 20)
  const latency = (p: Phase) => summarize(Float64Array.from(p.results.flatMap((r) => [...r.latencies])))
  const { calm, soak, start, ended, end, along, counters } = outcome
  const soakLatency = latency(soak)
  const calmLatency = latency(calm)
  const detail = {
    soak_seconds: c.seconds,
    cycles: total(soak, 'cycles'),
    cycles_per_s: round(total(soak, 'cycles') / (soak.wallMs / 1000), 1),
    failed: total(soak, 'failed'),
    errors: soak.results.flatMap((r) => r.errors).slice(0, 5),
    slow_readers: total(soak, 'slowReaders'),
    hub_counters: counters,
    request_response_ms: soakLatency,
    rss_mib_start: round(start.rss / 2 ** 20),
    rss_mib_along_the_soak: along,
    rss_mib_right_after: round(ended.rss / 2 ** 20),
    rss_mib_end: round(end.rss / 2 ** 20),
    quiet_seconds: c.quietSeconds,
    heap_and_external_mib_start: mib(start),
    heap_and_external_mib_right_after: mib(ended),
    heap_and_external_mib_end: mib(end),
    back_within_10_percent: end.rss <= 1.1 * start.rss,
  }
  ctx.log(
    `  hub: ${detail.cycles} cycles (${detail.cycles_per_s}/s), ${detail.slow_readers} slow readers, ` +
      `${detail.failed} failed; RSS after GC ${detail.rss_mib_start} → ${detail.rss_mib_right_after} → ` +
      `${detail.rss_mib_end} MiB (after ${c.quietSeconds} s quiet); ` +
      `request p99 ${calmLatency.p99} → ${soakLatency.p99} ms`,
  )
  ctx.results.compare(
    'churn_rss_after_gc',
    'MiB',
    'lower',
    { value: end.rss / 2 ** 20, load: soak.load, detail },
    {
      hub_at_start: {
        value: start.rss / 2 ** 20,
        detail: { after: `${c.warmupSeconds} s of churn without slow readers` },
      },
    },
  )
  ctx.results.compare(
    'churn_request_p99',
    'ms',
    'lower',
    { value: soakLatency.p99, load: soak.load, detail: { request_response_ms: soakLatency } },
    {
      churn_without_slow_readers: {
        value: calmLatency.p99,
        load: calm.load,
        detail: { request_response_ms: calmLatency, cycles: total(calm, 'cycles') },
      },
    },
  )
}

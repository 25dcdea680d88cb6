import { join } from 'node:path'
import { type Context, onHub, sleep } from '../lib/context.ts'
import { LiteRequester } from '../lib/requests.ts'
import { type LoadSample, round, summarize } from '../lib/results.ts'
import type { HubTarget } from '../lib/targets.ts'
import { type Scenario, hubScenario, openScenario, seedUsers, step } from './requests.ts'

/**
 * `audit_cost`: what the audit trail costs a request. Two hubs run at once, alike but for
 * AUDIT_RETENTION_DAYS (the default 90, and 0: the trail turned off), each with the request_latency
 * scenario (mix.set and device.update: state-changing, so every request is recorded). Steps of the
 * same rate alternate between them, in alternating order, `rounds` times, so both see the same machine;
 * the latencies of all rounds are pooled per hub. Ratio = with / without the audit trail.
 */
export async function auditCost(ctx: Context): Promise<void> {
  const r = ctx.profile.requests
  const variants: { label: string; env: Record<string, string> }[] = [
    { label: 'audit', env: { AUDIT_RETENTION_DAYS: '90' } },
    { label: 'no_audit', env: { AUDIT_RETENTION_DAYS: '0' } },
  ]
  const seeded = []
  for (const v of variants) {
    const dataDir = join(ctx.dir, `audit-${v.label}`)
    seeded.push({ ...v, dataDir, users: await seedUsers(dataDir, r.clients) })
  }
  const [on, off] = seeded as [(typeof seeded)[0], (typeof seeded)[0]]
  ctx.log(`audit_cost: two hubs, ${r.clients} clients each, with and without the audit trail`)
  const outcome = await onHub<Awaited<ReturnType<typeof compare>>>(
    ctx,
    (withAudit) =>
      onHub(ctx, (withoutAudit) => compare(ctx, [withAudit, withoutAudit], [on.users, off.users]), {
        dataDir: off.dataDir,
        env: off.env,
        label: `hub-${off.label}`,
      }),
    { dataDir: on.dataDir, env: on.env, label: `hub-${on.label}` },
  )
  for (const { rate, hubs } of outcome) {
    const [audited, plain] = hubs
    ctx.results.compare(
      `audit_hub_cpu_per_request_at_${rate}`,
      'µs',
      'lower',
      { value: audited.cpuPerRequestUs, load: audited.load, detail: { rate, ...audited } },
      { hub_without_audit: { value: plain.cpuPerRequestUs, load: plain.load, detail: { rate, ...plain } } },
    )
    for (const p of ['p50', 'p99'] as const) {
      ctx.results.compare(
        `audit_request_latency_${p}_at_${rate}`,
        'ms',
        'lower',
        { value: audited.latency[p], load: audited.load, detail: { rate, ...audited } },
        { hub_without_audit: { value: plain.latency[p], load: plain.load, detail: { rate, ...plain } } },
      )
    }
  }
}

interface Pooled {
  latency: ReturnType<typeof summarize>
  /** The hub's CPU time per request (µs), from its mean CPU use over the rounds at a fixed rate. */
  cpuPerRequestUs: number
  missing: number
  rounds: number
  load: LoadSample
}

async function compare(
  ctx: Context,
  hubs: [HubTarget, HubTarget],
  users: [string[], string[]],
): Promise<{ rate: number; hubs: [Pooled, Pooled] }[]> {
  const { rates, seconds, rounds } = ctx.profile.audit
  const scenarios: Scenario[] = []
  for (const [i, hub] of hubs.entries()) {
    const s = await hubScenario(ctx, hub, users[i]!)
    await openScenario(ctx, hub, s, `audit-${i}`)
    await step(ctx, hub, s, Math.min(rates[0]!, 100), 0.3, 1, `audit-${i}`) // warm-up
    scenarios.push(s)
  }
  let seqBase = 100_000
  const outcome = []
  for (const rate of rates) {
    const samples: [number[], number[]] = [[], []]
    const missing = [0, 0]
    const loads: LoadSample[] = []
    const cpu = [0, 0]
    for (let round = 0; round < rounds; round++) {
      for (const i of round % 2 === 0 ? [0, 1] : [1, 0]) {
        await sleep(200)
        const result = await step(ctx, hubs[i]!, scenarios[i]!, rate, seconds, seqBase, `audit-${i}`)
        seqBase += 50_000
        samples[i]!.push(...result.samples)
        missing[i]! += result.missing
        loads[i] = result.load
        cpu[i]! += result.load.target_cpu / rounds
      }
    }
    const pooled = (i: 0 | 1): Pooled => ({
      latency: summarize(samples[i]),
      cpuPerRequestUs: round((cpu[i]! / rate) * 1e6, 1),
      missing: missing[i]!,
      rounds,
      load: loads[i]!,
    })
    const [a, b] = [pooled(0), pooled(1)]
    ctx.log(
      `  ${rate}/s: with audit p50 ${a.latency.p50} p99 ${a.latency.p99} ms, ${a.cpuPerRequestUs} µs CPU/request; without p50 ${b.latency.p50} p99 ${b.latency.p99} ms, ${b.cpuPerRequestUs} µs`,
    )
    outcome.push({ rate, hubs: [pooled(0), pooled(1)] as [Pooled, Pooled] })
  }
  await ctx.pool.all('close', () => ({ group: 'audit-0' }))
  await ctx.pool.all('close', () => ({ group: 'audit-1' }))
  await expectRecorded(ctx, hubs[0])
  return outcome
}

/** The hub with the audit trail did record the requests (an operator's audit.query finds them). */
async function expectRecorded(ctx: Context, hub: HubTarget): Promise<void> {
  const ops = await LiteRequester.connect(
    hub.host,
    hub.port,
    'bench-ops',
    ctx.tokens.sign({ sub: 'ops', role: 'admin' }, 600).token,
  )
  const page = await ops.ok<{ entries: unknown[] }>('audit.query', { action: 'mix.set', limit: 1 })
  ops.end()
  if (page.entries.length !== 1) throw new Error('the hub with the audit trail recorded no mix.set')
}

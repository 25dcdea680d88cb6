/* eslint-disable no-console -- the benchmark harness reports on the terminal */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { auditCost } from './benchmarks/audit.ts'
import { churn } from './benchmarks/churn.ts'
import { cluster } from './benchmarks/cluster.ts'
import { connections } from './benchmarks/connections.ts'
import { fanout } from './benchmarks/fanout.ts'
import { mongodbLatency } from './benchmarks/mongodb.ts'
import { requests } from './benchmarks/requests.ts'
import { coldStart, retainedSubscribe } from './benchmarks/retained.ts'
import { webLoad } from './benchmarks/web-load.ts'
import { webMedia } from './benchmarks/web-media.ts'
import { webMixer } from './benchmarks/web-mixer.ts'
import { type Context, benchTokens, profiles, withOverrides } from './lib/context.ts'
import { LoadPool } from './lib/pool.ts'
import { machine } from './lib/procs.ts'
import { Results } from './lib/results.ts'
import { killTargets, mosquittoBinary, mosquittoVersion } from './lib/targets.ts'

const USAGE = `npm run bench -- [--quick | --tiny] [--only NAME]... [--out FILE] [--keep]

  (default)   the full configuration (about 12 minutes on 2 cores, 4.5 of them the churn soak)
  --quick     smaller counts and shorter runs (about 5 minutes on 2 cores)
  --tiny      a few seconds per benchmark; what the test suite runs, figures meaningless
  --only      connect_storm (also memory_per_connection), fanout, request_latency, audit_cost,
              retained_subscribe, cold_start, churn, web_load (web-load), web_mixer (web-mixer),
              web_media (web-media), mongodb_request_latency (mongodb: needs
              STAGEHUB_TEST_MONGO_URL, else skipped), cluster (processes: several hub
              processes on Redis and MongoDB; needs STAGEHUB_TEST_MONGO_URL or MONGO_URL
              and redis-server);
              repeatable or comma-separated
  --out       where to write the results (default bench/results.json)
  --keep      keep the scratch directory (logs of every target process, seeded stores)
`

const benchmarks: { name: string; aliases: string[]; run: (ctx: Context) => Promise<void> }[] = [
  { name: 'connect_storm', aliases: ['memory_per_connection', 'connections', 'memory'], run: connections },
  { name: 'fanout', aliases: [], run: fanout },
  { name: 'request_latency', aliases: ['requests'], run: requests },
  { name: 'audit_cost', aliases: ['audit'], run: auditCost },
  { name: 'retained_subscribe', aliases: ['retained'], run: retainedSubscribe },
  { name: 'cold_start', aliases: [], run: coldStart },
  { name: 'churn', aliases: ['soak'], run: churn },
  { name: 'web_load', aliases: ['web-load', 'web'], run: webLoad },
  { name: 'web_mixer', aliases: ['web-mixer', 'mixer'], run: webMixer },
  { name: 'web_media', aliases: ['web-media', 'media'], run: webMedia },
  { name: 'mongodb_request_latency', aliases: ['mongodb', 'mongo'], run: mongodbLatency },
  {
    name: 'cluster',
    aliases: ['processes', 'cluster_connect_storm', 'cluster_fanout', 'heal'],
    run: cluster,
  },
]

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      tiny: { type: 'boolean', default: false },
      only: { type: 'string', multiple: true },
      out: { type: 'string' },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  })
  if (values.help) {
    console.log(USAGE)
    return
  }
  const profile = withOverrides(profiles[values.tiny ? 'tiny' : values.quick ? 'quick' : 'full'])
  const only = (values.only ?? []).flatMap((o) => o.split(',')).filter(Boolean)
  const selected = benchmarks.filter(
    (b) => only.length === 0 || only.some((o) => o === b.name || b.aliases.includes(o)),
  )
  const unknown = only.filter((o) => !benchmarks.some((b) => b.name === o || b.aliases.includes(o)))
  if (unknown.length > 0) {
    console.error(`unknown benchmark ${unknown.join(', ')}\n\n${USAGE}`)
    process.exitCode = 2
    return
  }
  const out = values.out ?? fileURLToPath(new URL('./results.json', import.meta.url))

  const started = performance.now()
  const dir = mkdtempSync(join(tmpdir(), 'stagehub-bench-'))
  const bin = mosquittoBinary()
  const mosquitto = bin
    ? { bin, version: mosquittoVersion(bin) }
    : { missing: 'mosquitto not found (install the Debian package mosquitto, or set MOSQUITTO_BIN)' }
  const results = new Results()
  const pool = await LoadPool.start(profile.workers)
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      console.error(`\n${signal}: stopping the targets and load generators`)
      killTargets()
      // interrupted: the process ends whatever stopping did
      void pool.stop().finally(() => process.exit(130))
    })
  }
  const ctx: Context = {
    profile,
    pool,
    dir,
    results,
    tokens: benchTokens(),
    mosquitto,
    log: (message) => console.log(`[${((performance.now() - started) / 1000).toFixed(1)}s] ${message}`),
  }
  ctx.log(`profile ${profile.name}, ${profile.workers} load-generator processes, scratch ${dir}`)
  if ('missing' in mosquitto) ctx.log(`Mosquitto baseline unavailable: ${mosquitto.missing}`)
  try {
    for (const b of selected) {
      try {
        await b.run(ctx)
      } catch (err) {
        results.error(b.name, err)
        ctx.log(`${b.name} failed: ${(err as Error).stack ?? String(err)}`)
      }
    }
  } finally {
    await pool.stop()
  }

  const pkg = (name: string) => {
    try {
      const path = fileURLToPath(new URL(`../node_modules/${name}/package.json`, import.meta.url))
      return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version
    } catch {
      return 'unknown'
    }
  }
  const report = {
    generated_at: new Date().toISOString(),
    profile: profile.name,
    duration_s: Math.round((performance.now() - started) / 100) / 10,
    machine: machine(),
    baselines: {
      aedes: `bare Aedes ${pkg('aedes')} (default memory persistence, no auth) in its own process`,
      mosquitto:
        'missing' in mosquitto ? `unavailable: ${mosquitto.missing}` : `Mosquitto ${mosquitto.version}`,
      hub_empty_store: 'the hub itself, started on an empty store',
    },
    config: profile,
    benchmarks: selected.map((b) => b.name),
    metrics: results.metrics,
    errors: results.errors,
    skipped: results.skipped,
  }
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`)
  console.log(`\n${results.table()}\n`)
  for (const s of results.skipped) console.log(`SKIPPED ${s.benchmark}: ${s.reason}`)
  for (const e of results.errors) console.log(`ERROR ${e.benchmark}: ${e.error}`)
  console.log(`wrote ${out} in ${report.duration_s} s`)
  if (values.keep) console.log(`scratch directory kept: ${dir}`)
  else rmSync(dir, { recursive: true, force: true })
}

await main()

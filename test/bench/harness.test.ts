import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * The benchmark harness must not rot: run it once in its tiny configuration (real hub, bare Aedes and,
 * when installed, Mosquitto, each in its own process) and check the shape of what it writes. Speed is
 * not asserted: benchmarks are not tests, and this machine may be slow or busy.
 */

const root = fileURLToPath(new URL('../..', import.meta.url))

interface Metric {
  name: string
  value: number
  unit: string
  baseline: string | null
  baseline_value: number | null
  ratio: number | null
  better: string
  note?: string
}

interface Report {
  profile: string
  machine: Record<string, unknown>
  baselines: Record<string, string>
  metrics: Metric[]
  errors: { benchmark: string; error: string }[]
  skipped: { benchmark: string; reason: string }[]
}

// every benchmark once: about 100 s on 2 busy cores, so more than tap's default of 120 s per file
t.setTimeout(300_000)

t.test('npm run bench -- --tiny writes well-formed results with baselines from the same run', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'stagehub-bench-test-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const out = join(dir, 'results.json')
  const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'bench/run.ts', '--tiny', '--out', out],
      { cwd: root, timeout: 280_000, maxBuffer: 16 * 2 ** 20 },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, output: stdout + stderr }),
    )
  })
  t.equal(code, 0, 'the harness exits cleanly')
  if (code !== 0) t.comment(output)

  const report = JSON.parse(readFileSync(out, 'utf8')) as Report
  t.equal(report.profile, 'tiny')
  t.ok(report.machine.cpus, 'the machine is described')
  t.same(report.errors, [], 'no benchmark failed')
  t.ok(report.metrics.length > 0, 'metrics were written')

  for (const word of [
    'connect_storm',
    'memory_per_connection',
    'fanout',
    'request_latency',
    'audit_request_latency',
    'audit_hub_cpu_per_request',
    'retained_subscribe',
    'cold_start',
    'churn',
    'web_first_load',
    // in Chromium: Debian's package, where installed
    ...(existsSync('/usr/bin/chromium') ? ['web_first_state'] : []),
    // browser audio through a real mediasoup worker: where both are installed
    ...(existsSync('/usr/bin/chromium') && existsSync(join(root, 'node_modules/mediasoup'))
      ? ['web_media_join_to_first_packet']
      : []),
  ]) {
    const rows = report.metrics.filter((m) => m.name.includes(word))
    t.ok(rows.length > 0, `${word}: measured`)
    t.ok(
      rows.some((m) => m.baseline !== null && m.baseline_value !== null),
      `${word}: compared with a baseline measured in the same run`,
    )
  }

  // several hub processes need a MongoDB and redis-server: without them the cluster benchmark says why
  for (const s of report.skipped)
    t.ok(s.reason.length > 0, `${s.benchmark}: skipped, saying why (${s.reason})`)
  const clusterSkipped = report.skipped.find((s) => s.benchmark === 'cluster')
  if (clusterSkipped)
    t.match(clusterSkipped.reason, /MongoDB|redis-server/, 'cluster: skipped for want of MongoDB or Redis')
  else {
    const rows = report.metrics.filter((m) => m.name.startsWith('cluster_connect_storm_jwt_'))
    t.ok(rows.length > 0, 'cluster: the connect storm over several processes is measured')
    t.ok(
      rows.some((m) => m.baseline === 'mosquitto'),
      'cluster: compared with Mosquitto in the same run',
    )
    // the other cluster figures need commits and messages to cross processes: measured or skipped with a reason
    for (const word of ['cluster_fanout', 'cluster_request_delivery', 'cluster_heal'])
      t.ok(
        report.metrics.some((m) => m.name.startsWith(word)) ||
          report.skipped.some((s) => s.benchmark.startsWith(word)),
        `${word}: measured, or skipped saying why`,
      )
  }

  const mosquittoRan = !report.baselines.mosquitto?.startsWith('unavailable')
  for (const m of report.metrics) {
    const what = `${m.name} vs ${m.baseline ?? 'nothing'}`
    t.type(m.name, 'string')
    t.type(m.unit, 'string')
    t.ok(Number.isFinite(m.value), `${what}: finite value (${m.value})`)
    t.ok(m.better === 'higher' || m.better === 'lower', `${what}: says which way is better`)
    if (m.baseline === null) {
      t.equal(m.baseline_value, null, `${what}: no baseline value without a baseline`)
      continue
    }
    if (m.baseline_value === null) {
      // only a baseline that could not run may be missing, and then it says why
      t.match(m.note, /^baseline unavailable/, `${what}: says why the baseline is missing`)
      t.equal(m.ratio, null)
      // a baseline that ran and met a latency target at no rate (a busy machine) measured 0: it ran
      const ranAtNoRate = /no usable value \(0\)/.test(m.note ?? '')
      if ((m.baseline === 'aedes' || m.baseline === 'hub_empty_store') && !ranAtNoRate)
        t.fail(`${what}: this baseline always runs`)
      if (m.baseline === 'mosquitto' && mosquittoRan) t.fail(`${what}: Mosquitto ran but has no value`)
      continue
    }
    t.ok(Number.isFinite(m.baseline_value), `${what}: finite baseline value`)
    t.ok(m.ratio !== null && Number.isFinite(m.ratio), `${what}: finite ratio`)
    const expected = m.value / m.baseline_value
    t.ok(
      Math.abs(m.ratio! - expected) <= 1e-3 * Math.max(1, Math.abs(expected)),
      `${what}: ratio ${m.ratio} = value / baseline_value (${expected})`,
    )
  }
})

/** One row of bench/results.json: a hub figure and the same figure on one baseline, measured in the same run. */
export interface Metric {
  name: string
  value: number
  unit: string
  /** `aedes`, `mosquitto`, `hub_empty_store`, ... or null for a figure with no baseline. */
  baseline: string | null
  baseline_value: number | null
  /** value / baseline_value; null when the baseline did not run. */
  ratio: number | null
  /** Which direction is good, so a ratio can be read at a glance. */
  better: 'higher' | 'lower'
  /** Why the baseline is missing (e.g. Mosquitto not installed). */
  note?: string
  /** CPU use (1.0 = one core) of the target and the busiest load-generator process while measuring. */
  load?: LoadSample
  /** Anything else worth keeping (percentiles, counts, sizes). */
  detail?: Record<string, unknown>
}

/** CPU use over a measurement, in cores (1.0 = one core busy all the time). */
export interface LoadSample {
  target_cpu: number
  /** The busiest load-generator process. */
  loadgen_cpu_max: number
  /** A load-generator process was above 90% of a core: the figure may understate the target. */
  loadgen_bound: boolean
  /** Cores the whole machine kept busy, and how many of them went to processes outside the benchmark. */
  machine_cpu: number
  others_cpu: number
}

export function loadSample(utilization: Record<string, number>): LoadSample {
  const loadgen = Object.entries(utilization)
    .filter(([k]) => k.startsWith('load'))
    .map(([, v]) => v)
  const max = loadgen.length ? Math.max(...loadgen) : 0
  return {
    target_cpu: utilization.target ?? NaN,
    loadgen_cpu_max: max,
    loadgen_bound: max >= 0.9,
    machine_cpu: utilization.machine ?? NaN,
    others_cpu: utilization.others ?? NaN,
  }
}

/** The measured value per target; a string for a baseline that could not run (the reason). */
export type Measured = { value: number; load?: LoadSample; detail?: Record<string, unknown> } | string

export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank]!
}

export function summarize(values: ArrayLike<number>): {
  n: number
  p50: number
  p90: number
  p99: number
  max: number
  mean: number
} {
  const sorted = Float64Array.from(values).sort()
  let sum = 0
  for (const v of sorted) sum += v
  return {
    n: sorted.length,
    p50: round(percentile(sorted, 50)),
    p90: round(percentile(sorted, 90)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted.length ? sorted[sorted.length - 1]! : NaN),
    mean: round(sorted.length ? sum / sorted.length : NaN),
  }
}

export function round(value: number, digits = 3): number {
  if (!Number.isFinite(value)) return value
  const f = 10 ** digits
  return Math.round(value * f) / f
}

export class Results {
  readonly metrics: Metric[] = []
  readonly errors: { benchmark: string; error: string }[] = []
  /** Figures not measured in this run and why (e.g. no MongoDB or Redis here): not errors. */
  readonly skipped: { benchmark: string; reason: string }[] = []
  readonly targets: Record<string, unknown>[] = []

  /**
   * Records the hub's figure against every baseline given. A baseline given as a string did not run:
   * its row keeps the hub's value and says why (`baseline unavailable: ...`).
   */
  compare(
    name: string,
    unit: string,
    better: Metric['better'],
    hub: Measured,
    baselines: Record<string, Measured | undefined>,
  ): void {
    if (typeof hub === 'string' || !Number.isFinite(hub.value)) {
      this.errors.push({ benchmark: name, error: typeof hub === 'string' ? hub : 'no finite hub value' })
      return
    }
    const base = {
      name,
      value: round(hub.value, 4),
      unit,
      better,
      ...(hub.load ? { load: hub.load } : {}),
      ...(hub.detail ? { detail: hub.detail } : {}),
    }
    const entries = Object.entries(baselines).filter((e): e is [string, Measured] => e[1] !== undefined)
    if (entries.length === 0) {
      this.metrics.push({ ...base, baseline: null, baseline_value: null, ratio: null })
      return
    }
    for (const [baseline, measured] of entries) {
      if (typeof measured === 'string' || !Number.isFinite(measured.value) || measured.value === 0) {
        this.metrics.push({
          ...base,
          baseline,
          baseline_value: null,
          ratio: null,
          note:
            typeof measured === 'string'
              ? `baseline unavailable: ${measured}`
              : `baseline unavailable: no usable value (${measured.value})`,
        })
        continue
      }
      const baselineValue = round(measured.value, 4)
      this.metrics.push({
        ...base,
        baseline,
        baseline_value: baselineValue,
        ratio: round(base.value / baselineValue, 4),
        detail: {
          ...base.detail,
          ...(measured.load ? { baseline_load: measured.load } : {}),
          ...(measured.detail ? { baseline: measured.detail } : {}),
        },
      })
    }
  }

  skip(benchmark: string, reason: string): void {
    this.skipped.push({ benchmark, reason })
  }

  error(benchmark: string, err: unknown): void {
    this.errors.push({ benchmark, error: (err as Error).stack ?? String(err) })
  }

  table(): string {
    const rows = [['metric', 'hub', 'unit', 'baseline', 'baseline value', 'ratio', 'cpu hub/gen/other']]
    for (const m of this.metrics) {
      rows.push([
        m.name,
        format(m.value),
        m.unit,
        m.baseline ?? '—',
        m.baseline_value === null ? (m.note ? 'unavailable' : '—') : format(m.baseline_value),
        m.ratio === null ? '—' : `${format(m.ratio)}× (${m.better} is better)`,
        m.load
          ? `${m.load.target_cpu.toFixed(2)}/${m.load.loadgen_cpu_max.toFixed(2)}/${m.load.others_cpu.toFixed(2)}${m.load.loadgen_bound ? ' GEN-BOUND' : ''}`
          : '',
      ])
    }
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
    const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ')
    return [line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join(
      '\n',
    )
  }
}

function format(value: number): string {
  if (!Number.isFinite(value)) return String(value)
  const abs = Math.abs(value)
  if (abs >= 1000) return Math.round(value).toString()
  if (abs >= 10) return value.toFixed(1)
  if (abs >= 0.1) return value.toFixed(2)
  return value.toPrecision(2)
}

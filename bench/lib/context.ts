import { join } from 'node:path'
import { createTokenService, type TokenService } from '../../broker/tokens.ts'
import { LoadPool } from './pool.ts'
import { CpuWindow } from './procs.ts'
import { Results, loadSample, type LoadSample } from './results.ts'
import {
  BENCH_SECRET,
  type HubOptions,
  type HubTarget,
  type Target,
  type TargetName,
  startAedesTarget,
  startHubTarget,
  startMosquittoTarget,
} from './targets.ts'

export interface Profile {
  name: 'tiny' | 'quick' | 'full'
  /** Load-generator processes. */
  workers: number
  /**
   * Handshakes in flight at once during a connect storm, all load generators together: below
   * Mosquitto's accept backlog (100), so no SYN is dropped and retried a second later.
   */
  connectWindow: number
  /** Pause for things to settle (idle connections before sampling memory, retained deliveries). */
  settleMs: number
  connections: number
  /** Idle connections for memory_per_connection (more than the storm: RSS moves in steps of MBs). */
  memoryConnections: number
  fanout: {
    members: number
    /** Stage changes per second for the latency figure (the target is stated at 1,000/s). */
    rate: number
    /** Rates tried in order for the highest one with p99 ≤ 10 ms (stops at the first miss). */
    ladder: number[]
    stepSeconds: number
    /** Offered rate for the throughput figure (above what any target sustains on small machines). */
    overloadRate: number
    overloadSeconds: number
  }
  requests: {
    clients: number
    /** Requests per second, all clients together, for the latency figure. */
    rate: number
    seconds: number
    /** Total rates tried, in order, for the highest sustainable rate. */
    ladder: number[]
    stepSeconds: number
  }
  /** audit_cost: steps alternate between a hub with and one without the audit trail, `rounds` per rate. */
  audit: { rates: number[]; seconds: number; rounds: number }
  retained: { sizes: number[]; reps: number }
  coldStart: { documents: number }
  /** web_load: first visits in Chromium, the median reported. */
  webLoad: { runs: number }
  /** web_mixer: seconds of each window (the page idle, then receiving 50 updates a second). */
  webMixer: { seconds: number }
  /** web_media: measured joins (median), browser members of the big stage, seconds of each CPU/loss window. */
  webMedia: { joins: number; members: number; seconds: number }
  /**
   * cluster: one deployment of several hub processes sharing a Redis and a MongoDB
   * (bench/benchmarks/cluster.ts).
   */
  cluster: {
    /** Process counts measured, each a deployment of its own (fresh database). */
    processes: number[]
    connections: number
    /**
     * Members spread over the processes; the admin's changes at `rate` (latency) and `overloadRate`.
     * Low rates: every change is a MongoDB transaction, tens of milliseconds on the test server.
     */
    fanout: { members: number; rate: number; seconds: number; overloadRate: number; overloadSeconds: number }
    /** Subscribers on the requester's process and as many on another; requests per second. */
    latency: { subscribers: number; rate: number; seconds: number }
    /** Devices online through the killed process; how long to wait for them to show offline. */
    heal: { devices: number; timeoutSeconds: number }
  }
  churn: {
    seconds: number
    /** Churn without slow readers first: its end is the memory baseline, its p99 the latency one. */
    warmupSeconds: number
    /** Client life cycles at once per load generator. */
    concurrency: number
    /** Every n-th cycle also leaves a slow reader. */
    slowEvery: number
    slowHoldSeconds: number
    /** After the soak, before the last memory measure: one clean-up period of the request pipeline. */
    quietSeconds: number
  }
}

export const profiles: Record<Profile['name'], Profile> = {
  tiny: {
    name: 'tiny',
    workers: 2,
    connectWindow: 40,
    settleMs: 100,
    connections: 40,
    memoryConnections: 40,
    fanout: {
      members: 5,
      rate: 50,
      ladder: [20, 50],
      stepSeconds: 0.5,
      overloadRate: 200,
      overloadSeconds: 0.5,
    },
    requests: { clients: 2, rate: 20, seconds: 0.5, ladder: [50, 100], stepSeconds: 0.5 },
    audit: { rates: [20], seconds: 0.5, rounds: 1 },
    retained: { sizes: [1000], reps: 3 },
    coldStart: { documents: 1000 },
    webLoad: { runs: 2 },
    webMixer: { seconds: 1 },
    webMedia: { joins: 1, members: 3, seconds: 1 },
    cluster: {
      // one deployment of two processes: every part runs, in seconds
      processes: [2],
      connections: 40,
      fanout: { members: 4, rate: 5, seconds: 0.5, overloadRate: 20, overloadSeconds: 0.5 },
      latency: { subscribers: 2, rate: 5, seconds: 0.5 },
      heal: { devices: 3, timeoutSeconds: 12 },
    },
    churn: {
      seconds: 2,
      warmupSeconds: 1,
      concurrency: 1,
      slowEvery: 5,
      slowHoldSeconds: 1,
      quietSeconds: 0,
    },
  },
  quick: {
    name: 'quick',
    workers: 3,
    connectWindow: 90,
    settleMs: 1000,
    connections: 2000,
    memoryConnections: 10_000,
    fanout: {
      members: 100,
      rate: 1000,
      ladder: [100, 250, 500, 1000],
      stepSeconds: 1.5,
      overloadRate: 3000,
      overloadSeconds: 1,
    },
    requests: { clients: 20, rate: 200, seconds: 3, ladder: [500, 1000, 2000, 4000, 8000], stepSeconds: 1.5 },
    audit: { rates: [200, 500], seconds: 2, rounds: 3 },
    retained: { sizes: [10_000, 100_000], reps: 10 },
    coldStart: { documents: 100_000 },
    webLoad: { runs: 5 },
    webMixer: { seconds: 5 },
    webMedia: { joins: 5, members: 8, seconds: 10 },
    cluster: {
      processes: [1, 2, 3],
      connections: 2000,
      fanout: { members: 100, rate: 10, seconds: 3, overloadRate: 100, overloadSeconds: 2 },
      latency: { subscribers: 10, rate: 10, seconds: 4 },
      heal: { devices: 20, timeoutSeconds: 60 },
    },
    churn: {
      seconds: 60,
      warmupSeconds: 10,
      concurrency: 4,
      slowEvery: 200,
      slowHoldSeconds: 20,
      quietSeconds: 65,
    },
  },
  full: {
    name: 'full',
    workers: 3,
    connectWindow: 90,
    settleMs: 1000,
    connections: 10_000,
    memoryConnections: 15_000,
    fanout: {
      members: 100,
      rate: 1000,
      ladder: [100, 200, 300, 500, 700, 1000],
      stepSeconds: 5,
      overloadRate: 3000,
      overloadSeconds: 3,
    },
    requests: {
      clients: 20,
      rate: 200,
      seconds: 10,
      ladder: [250, 500, 1000, 1500, 2000, 3000, 4000, 6000, 8000, 12000, 16000],
      stepSeconds: 4,
    },
    audit: { rates: [200, 1000], seconds: 4, rounds: 5 },
    retained: { sizes: [10_000, 100_000], reps: 50 },
    coldStart: { documents: 100_000 },
    webLoad: { runs: 11 },
    webMixer: { seconds: 10 },
    webMedia: { joins: 7, members: 8, seconds: 20 },
    cluster: {
      processes: [1, 2, 3],
      connections: 10_000,
      fanout: { members: 100, rate: 20, seconds: 5, overloadRate: 200, overloadSeconds: 3 },
      latency: { subscribers: 10, rate: 20, seconds: 10 },
      heal: { devices: 40, timeoutSeconds: 60 },
    },
    churn: {
      seconds: 180,
      warmupSeconds: 20,
      concurrency: 4,
      slowEvery: 200,
      slowHoldSeconds: 45,
      quietSeconds: 65,
    },
  },
}

/** For experiments: BENCH_PROFILE_OVERRIDE='{"fanout":{"rate":200}}' merges into the chosen profile. */
export function withOverrides(profile: Profile): Profile {
  const raw = process.env.BENCH_PROFILE_OVERRIDE
  if (!raw) return profile
  const patch = JSON.parse(raw) as Record<string, unknown>
  const merged = { ...profile } as Record<string, unknown>
  for (const [key, value] of Object.entries(patch)) {
    const current = merged[key]
    merged[key] =
      current && typeof current === 'object' && !Array.isArray(current) && value && typeof value === 'object'
        ? { ...current, ...value }
        : value
  }
  return merged as unknown as Profile
}

export interface Context {
  profile: Profile
  pool: LoadPool
  /** Scratch directory for logs, data directories, retained dumps. */
  dir: string
  results: Results
  tokens: TokenService
  /** The Mosquitto binary, or why there is none. */
  mosquitto: { bin: string; version: string } | { missing: string }
  log(message: string): void
}

export function benchTokens(): TokenService {
  return createTokenService({ algorithm: 'HS256', secret: BENCH_SECRET })
}

export function logFile(ctx: Context, name: string): string {
  return join(ctx.dir, `${name}.log`)
}

/** Starts a target, runs `work` on it, always stops it. A missing Mosquitto yields the reason instead. */
export async function onTarget<T>(
  ctx: Context,
  name: TargetName,
  work: (target: Target) => Promise<T>,
  options: { hub?: Omit<HubOptions, 'logFile'>; retainedFile?: string; label?: string } = {},
): Promise<T | string> {
  const label = options.label ?? name
  let target: Target
  if (name === 'mosquitto') {
    if ('missing' in ctx.mosquitto) return ctx.mosquitto.missing
    target = await startMosquittoTarget(ctx.mosquitto.bin, { logFile: logFile(ctx, label) })
  } else if (name === 'aedes') {
    target = await startAedesTarget({
      logFile: logFile(ctx, label),
      ...(options.retainedFile ? { retainedFile: options.retainedFile } : {}),
    })
  } else {
    target = await startHubTarget({ ...options.hub, logFile: logFile(ctx, label) })
  }
  try {
    return await work(target)
  } finally {
    await target.stop()
  }
}

export function onHub<T>(
  ctx: Context,
  work: (hub: HubTarget) => Promise<T>,
  options: Omit<HubOptions, 'logFile'> & { label?: string } = {},
): Promise<T> {
  const { label, ...hub } = options
  return onTarget(ctx, 'hub', (t) => work(t as HubTarget), { hub, label: label ?? 'hub' }) as Promise<T>
}

/**
 * CPU use of the target and every load-generator process over `work`. Several targets (the processes
 * of one deployment): `target_cpu` is their sum.
 */
export async function measured<T>(
  ctx: Context,
  target: Target | readonly Target[],
  work: () => Promise<T>,
): Promise<{ value: T; load: LoadSample; wallMs: number }> {
  const targets = Array.isArray(target) ? (target as readonly Target[]) : [target as Target]
  const pids = Object.fromEntries(targets.map((t, i) => [`target${i}`, t.pid]))
  const window = new CpuWindow({ ...pids, ...ctx.pool.pids }).begin()
  const t0 = performance.now()
  const value = await work()
  const wallMs = performance.now() - t0
  const utilization = window.end()
  utilization.target =
    Math.round(targets.reduce((a, _, i) => a + (utilization[`target${i}`] ?? 0), 0) * 100) / 100
  return { value, load: loadSample(utilization), wallMs }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

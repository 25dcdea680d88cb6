import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'

let ticksPerSecond: number | undefined

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
    } catch {
      ticksPerSecond = 100
    }
  }
  return ticksPerSecond
}

/** CPU time (user + system, all threads) a process has used so far, in ms; NaN when it cannot be read. */
export function cpuTimeMs(pid: number | undefined): number {
  if (pid === undefined) return NaN
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // the command name may contain spaces: fields start after the closing parenthesis
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const utime = Number(fields[11])
    const stime = Number(fields[12])
    return ((utime + stime) * 1000) / clockTicks()
  } catch {
    return NaN
  }
}

/** Resident set size of a process in bytes (VmRSS); NaN when it cannot be read. */
export function rssBytes(pid: number | undefined): number {
  if (pid === undefined) return NaN
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1]
    return kb === undefined ? NaN : Number(kb) * 1024
  } catch {
    return NaN
  }
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

export function machine(): Record<string, unknown> {
  const cpus = os.cpus()
  return {
    cpus: cpus.length,
    cpu_model: cpus[0]?.model ?? 'unknown',
    memory_gb: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    loadavg_at_start: os.loadavg().map((l) => Math.round(l * 100) / 100),
  }
}

/** Busy and total CPU time of the whole machine so far (all cores), in clock ticks, from /proc/stat. */
function machineTicks(): { busy: number; total: number } {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!
    const v = line.trim().split(/\s+/).slice(1, 9).map(Number)
    const total = v.reduce((a, b) => a + b, 0)
    // idle and iowait are not busy; steal (v[7]) is time another guest used our cores: busy for us
    return { busy: total - v[3]! - v[4]!, total }
  } catch {
    return { busy: NaN, total: NaN }
  }
}

/**
 * Samples a set of processes' CPU time over a window: utilization = CPU ms / wall ms (1.0 = one core).
 * `machine` is how many cores the whole machine kept busy meanwhile, and `others` how many of those
 * went to processes outside the benchmark: the noise of a shared machine.
 */
export class CpuWindow {
  readonly #pids: Map<string, number>
  readonly #start = new Map<string, number>()
  #t0 = 0
  #machine0 = { busy: 0, total: 0 }

  constructor(pids: Record<string, number | undefined>) {
    this.#pids = new Map(Object.entries(pids).filter((e): e is [string, number] => typeof e[1] === 'number'))
  }

  begin(): this {
    this.#t0 = performance.now()
    this.#machine0 = machineTicks()
    for (const [name, pid] of this.#pids) this.#start.set(name, cpuTimeMs(pid))
    return this
  }

  /** Utilization per process over the window (CPU ms / wall ms), plus `machine` and `others`. */
  end(): Record<string, number> {
    const wall = performance.now() - this.#t0
    const out: Record<string, number> = {}
    let ours = 0
    for (const [name, pid] of this.#pids) {
      const used = cpuTimeMs(pid) - (this.#start.get(name) ?? NaN)
      ours += used
      out[name] = Math.round((used / Math.max(wall, 1)) * 100) / 100
    }
    const m = machineTicks()
    const cores = os.cpus().length
    const busyFraction = (m.busy - this.#machine0.busy) / Math.max(1, m.total - this.#machine0.total)
    out.machine = Math.round(busyFraction * cores * 100) / 100
    out.others = Math.round(Math.max(0, busyFraction * cores - ours / Math.max(wall, 1)) * 100) / 100
    return out
  }
}

import { readFile } from 'node:fs/promises'
import os from 'node:os'
import type { ReportedPayload } from '../../schemas/actions/device.ts'

export type Status = NonNullable<ReportedPayload['status']>

/** Samples the box's status for `devices/{d}/reported`. */
export interface StatusProbe {
  sample(): Promise<Status>
}

/** The parts of `node:os` the probe reads, replaceable in tests. */
export type OsFacts = Pick<typeof os, 'loadavg' | 'cpus' | 'totalmem' | 'freemem' | 'networkInterfaces'>

export interface LinuxProbeOptions {
  /** The agent's version, reported as `status.version`. */
  version: string
  /** Millidegrees Celsius, as the kernel's thermal zones report them. */
  thermalZonePath?: string
  netDevPath?: string
  os?: OsFacts
  now?: () => number
}

interface Counters {
  at: number
  rx: number
  tx: number
}

/**
 * The status of a Linux box (what ov-client's original status report had): CPU load as the 1-minute
 * load average per core, SoC temperature from a thermal zone, memory used/total in bytes (used = total
 * - available), the first non-internal IPv4 address, and bytes per second sent/received on all
 * interfaces but loopback since the previous sample (from `/proc/net/dev`). A value that cannot be read
 * is left out of the report rather than guessed.
 */
export class LinuxProbe implements StatusProbe {
  readonly #options: Required<LinuxProbeOptions>
  #previous: Counters | undefined

  constructor(options: LinuxProbeOptions) {
    this.#options = {
      thermalZonePath: '/sys/class/thermal/thermal_zone0/temp',
      netDevPath: '/proc/net/dev',
      os,
      now: Date.now,
      ...options,
    }
  }

  async sample(): Promise<Status> {
    const { os: facts, version } = this.#options
    const cores = Math.max(1, facts.cpus().length)
    const total = facts.totalmem()
    const status: Status = {
      cpuLoad: round(facts.loadavg()[0]! / cores),
      memoryUsed: Math.max(0, total - facts.freemem()),
      memoryTotal: total,
      version,
    }
    const temperature = await this.#temperature()
    if (temperature !== undefined) status.temperature = temperature
    const ip = localIp(facts.networkInterfaces())
    if (ip) status.localIp = ip
    const bandwidth = await this.#bandwidth()
    if (bandwidth) Object.assign(status, bandwidth)
    return status
  }

  async #temperature(): Promise<number | undefined> {
    try {
      const milli = Number((await readFile(this.#options.thermalZonePath, 'utf8')).trim())
      return Number.isFinite(milli) ? round(milli / 1000) : undefined
    } catch {
      return undefined
    }
  }

  async #bandwidth(): Promise<{ bandwidthTx: number; bandwidthRx: number } | undefined> {
    let counters: Counters
    try {
      counters = { at: this.#options.now(), ...parseNetDev(await readFile(this.#options.netDevPath, 'utf8')) }
    } catch {
      return undefined
    }
    const previous = this.#previous
    this.#previous = counters
    if (!previous) return undefined
    const seconds = (counters.at - previous.at) / 1000
    // counters reset (interface down/up) or no time passed: no honest rate this time
    if (seconds <= 0 || counters.rx < previous.rx || counters.tx < previous.tx) return undefined
    return {
      bandwidthTx: round((counters.tx - previous.tx) / seconds),
      bandwidthRx: round((counters.rx - previous.rx) / seconds),
    }
  }
}

/** Total received and transmitted bytes over all interfaces but loopback, from `/proc/net/dev`. */
export function parseNetDev(text: string): { rx: number; tx: number } {
  let rx = 0
  let tx = 0
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':')
    if (colon < 0) continue
    const name = line.slice(0, colon).trim()
    const fields = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .map(Number)
    if (name === 'lo' || fields.length < 9 || fields.some((n) => !Number.isFinite(n))) continue
    rx += fields[0]!
    tx += fields[8]!
  }
  return { rx, tx }
}

export function localIp(interfaces: ReturnType<typeof os.networkInterfaces>): string | undefined {
  for (const addresses of Object.values(interfaces)) {
    for (const address of addresses ?? []) {
      if (address.family === 'IPv4' && !address.internal) return address.address
    }
  }
  return undefined
}

const round = (n: number) => Math.round(n * 1000) / 1000

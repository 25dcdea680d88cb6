import { pino, type Logger } from 'pino'
import type { SoundCard } from '../../schemas/actions/device.ts'
import type { DeviceConfig } from '../../schemas/firmware.ts'
import { OvBoxAgent } from '../ovbox/agent.ts'
import type { BackoffOptions } from '../hub-client/backoff.ts'
import type { ConfigSink } from '../ovbox/ov-client.ts'
import { SOUND_CARD_DEFAULTS } from '../ovbox/sound-cards.ts'
import { MemoryStateStore } from '../ovbox/state.ts'
import type { Status, StatusProbe } from '../ovbox/system-probe.ts'
import { AGENT_VERSION } from '../ovbox/version.ts'

export interface SimulatedBox {
  deviceId: string
  /** Its device token (from `device.create`). */
  token: string
}

export interface SimulatorOptions {
  /** mqtt://host:port (or mqtts:// with `ca`) */
  hubUrl: string
  boxes: readonly SimulatedBox[]
  ca?: Buffer
  /** Default 30 s. */
  keepaliveSeconds?: number
  /** Default 10 s. */
  statusIntervalSeconds?: number
  /** The cards every box reports; default one USB-like card `hw:1` with 2 inputs and 2 outputs. */
  soundCards?: readonly SoundCard[]
  /** Pause between starting two boxes, to ramp a large fleet up (default 0: all at once). */
  startIntervalMs?: number
  backoff?: Partial<BackoffOptions>
  log?: Logger
}

export interface BoxStats {
  deviceId: string
  connected: boolean
  online: boolean
  session: number
  connects: number
  configsReceived: number
  /** The revision of the newest configuration received, and the configuration itself. */
  lastRevision: string | undefined
  lastConfig: DeviceConfig | undefined
  /** The revision the box applied (and reported) last. */
  appliedRevision: string | undefined
}

export interface SimulatorStats {
  boxes: number
  connected: number
  online: number
  /** Configuration messages received by all boxes together. */
  configsReceived: number
  /** Boxes whose applied revision is the newest one they received. */
  upToDate: number
}

export interface Simulator {
  stats(): SimulatorStats
  box(deviceId: string): BoxStats
  boxes(): BoxStats[]
  /** Every box shuts down cleanly (offline, DISCONNECT). */
  stop(): Promise<void>
}

export const DEFAULT_SIMULATED_CARD: SoundCard = {
  name: 'hw:1',
  label: 'Simulated USB Audio',
  ...SOUND_CARD_DEFAULTS,
}

/** Simulated ov-client: takes every configuration at once (the agent keeps the newest in its stats). */
const instantSink: ConfigSink = { apply: async () => undefined }

/** A plausible, slowly wandering Raspberry Pi. */
class SimulatedProbe implements StatusProbe {
  readonly #ip: string

  constructor(index: number) {
    this.#ip = `10.${(index >> 16) & 255}.${(index >> 8) & 255}.${(index & 255) + 1}`
  }

  async sample(): Promise<Status> {
    return {
      cpuLoad: round(0.1 + Math.random() * 0.3),
      temperature: round(45 + Math.random() * 10),
      memoryUsed: Math.round((300 + Math.random() * 100) * 2 ** 20),
      memoryTotal: 2 ** 30,
      xruns: 0,
      localIp: this.#ip,
      bandwidthTx: Math.round(90_000 + Math.random() * 20_000),
      bandwidthRx: Math.round(90_000 + Math.random() * 20_000),
      version: `${AGENT_VERSION}-sim`,
    }
  }
}

const round = (n: number) => Math.round(n * 1000) / 1000

/**
 * Runs many simulated ov-boxes against a hub in this process: each is the real agent (same connection,
 * presence, reconnect, config, sound card and report code) with its state, ov-client and hardware in
 * memory: no files, no commands, no firmware updates. Sessions start at the wall clock (as for a box
 * without state), so a rerun with the same devices is not taken for an old session.
 */
export async function startSimulator(options: SimulatorOptions): Promise<Simulator> {
  const log = options.log ?? pino({ level: 'warn' })
  const cards = [...(options.soundCards ?? [DEFAULT_SIMULATED_CARD])]
  const agents: OvBoxAgent[] = []
  for (const [index, box] of options.boxes.entries()) {
    const agent = new OvBoxAgent({
      hubUrl: options.hubUrl,
      deviceId: box.deviceId,
      token: box.token,
      keepaliveSeconds: options.keepaliveSeconds ?? 30,
      statusIntervalSeconds: options.statusIntervalSeconds ?? 10,
      ...(options.ca ? { ca: options.ca } : {}),
      state: new MemoryStateStore(),
      sink: instantSink,
      soundCards: { read: async () => cards },
      probe: new SimulatedProbe(index),
      log: log.child({ deviceId: box.deviceId }),
      ...(options.backoff ? { backoff: options.backoff } : {}),
    })
    agents.push(agent)
  }
  let stopped = false
  const starting = (async () => {
    for (const agent of agents) {
      if (stopped) return
      agent.start()
      if (options.startIntervalMs)
        await new Promise((resolve) => setTimeout(resolve, options.startIntervalMs))
    }
  })()
  if (!options.startIntervalMs) await starting

  const boxStats = (agent: OvBoxAgent): BoxStats => {
    const s = agent.stats
    return {
      deviceId: agent.deviceId,
      connected: s.connected,
      online: s.online,
      session: s.session,
      connects: s.connects,
      configsReceived: s.configsReceived,
      lastRevision: s.lastConfig?.revision,
      lastConfig: s.lastConfig,
      appliedRevision: s.appliedRevision,
    }
  }
  const byId = new Map(agents.map((agent) => [agent.deviceId, agent]))

  return {
    boxes: () => agents.map(boxStats),
    box(deviceId) {
      const entry = byId.get(deviceId)
      if (!entry) throw new Error(`no simulated box ${deviceId}`)
      return boxStats(entry)
    },
    stats() {
      const all = agents.map(boxStats)
      return {
        boxes: all.length,
        connected: all.filter((b) => b.connected).length,
        online: all.filter((b) => b.online).length,
        configsReceived: all.reduce((sum, b) => sum + b.configsReceived, 0),
        upToDate: all.filter((b) => b.lastRevision !== undefined && b.appliedRevision === b.lastRevision)
          .length,
      }
    },
    async stop() {
      stopped = true
      await starting
      await Promise.all(agents.map((agent) => agent.stop()))
    },
  }
}

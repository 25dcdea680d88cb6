import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { ReportedPayload, SoundCard } from '../../schemas/actions/device.ts'
import { DeviceConfig, type AgentConfig } from '../../schemas/firmware.ts'
import { validator } from '../../schemas/validate.ts'
import type { BackoffOptions } from '../hub-client/backoff.ts'
import { HubClient, type SessionSource } from '../hub-client/hub-client.ts'
import { topics } from '../../schemas/topics.ts'
import { noDelay } from '../tcp.ts'
import { truncate } from './command.ts'
import { FirmwareUpdater } from './firmware.ts'
import { type ConfigSink, OvClientSink } from './ov-client.ts'
import { AlsaSoundCards, type SoundCardSource, soundCardsToSet } from './sound-cards.ts'
import { FileStateStore, type StateStore } from './state.ts'
import { LinuxProbe, type StatusProbe } from './system-probe.ts'
import { AGENT_VERSION } from './version.ts'

const validConfig = validator(DeviceConfig)
const REVISION = /^[0-9a-f]{16}$/

/** Publishes a report on `devices/{d}/reported`; never rejects (see OvBoxAgent's report). */
export type Report = (report: ReportedPayload) => Promise<void>

/** Report sections that matter until they are delivered; `status` is stale by the next interval. */
const KEPT_SECTIONS = ['firmware', 'appliedConfig'] as const

/** The presence sessions of a box: the remembered counter, increased and persisted before each attempt. */
function storedSessions(state: StateStore): SessionSource {
  return {
    async next() {
      const session = state.read().session + 1
      await state.update({ session })
      return session
    },
  }
}

/** What the agent has done so far, for tests, the simulator and diagnostics. */
export interface AgentStats {
  /** The hub accepted the current connection. */
  connected: boolean
  /** `online` was published on the current connection. */
  online: boolean
  session: number
  /** Connections established since start, and attempts made (successful or not). */
  connects: number
  attempts: number
  /** Messages on devices/{d}/config, in total and on the current connection. */
  configsReceived: number
  configsSinceConnect: number
  /** The newest valid configuration received. */
  lastConfig: DeviceConfig | undefined
  /** The revision last applied successfully (persisted). */
  appliedRevision: string | undefined
  /** Configurations given to the sink, and the error of the last one if it failed. */
  applies: number
  lastApplyError: string | undefined
  /** Configurations skipped because their revision was applied or tried already. */
  skipped: number
  /** Whether a configuration is being applied right now (or waits to be). */
  applying: boolean
  soundCardsSet: number
  statusReports: number
  /** The device was removed (its configuration cleared): the agent stopped. */
  removed: boolean
}

export interface OvBoxAgentOptions {
  hubUrl: string
  deviceId: string
  token: string
  keepaliveSeconds: number
  statusIntervalSeconds: number
  ca?: Buffer
  state: StateStore
  sink: ConfigSink
  soundCards: SoundCardSource
  probe: StatusProbe
  /** Absent: the box does not update firmware (the simulator). */
  firmware?: (report: Report) => FirmwareUpdater
  log: Logger
  backoff?: Partial<BackoffOptions>
  stableAfterMs?: number
  requestTimeoutMs?: number
  /** Called once when the device was removed and the agent stopped itself. */
  onRemoved?: () => void
}

/**
 * The ov-box agent: keeps the device connected (HubClient: client id = device id, device token,
 * presence on `devices/{d}/presence`, subscribed to its configuration), applies every new configuration
 * from `devices/{d}/config` through its sink and reports `appliedConfig`, keeps the hub's list of its
 * sound cards in line with the hardware, reports its status every interval, and installs the firmware
 * release its configuration names. The pieces that touch the machine (state, sink, sound cards,
 * probe, firmware) are injected: files and commands on a box, memory in the simulator.
 */
export class OvBoxAgent {
  readonly connection: HubClient
  readonly #options: OvBoxAgentOptions
  readonly #log: Logger
  readonly #firmware: FirmwareUpdater | undefined
  #statusTimer: NodeJS.Timeout | undefined
  #stopped = false
  /** The newest configuration not yet handled by the apply loop. */
  #pending: DeviceConfig | undefined
  #applying = false
  /** The revision the apply loop handled last (applied or failed): not tried again in this process. */
  #attempted: string | undefined
  #syncing = false
  /** The audio state last logged (state and message), so each change is said once. */
  #audio: string | undefined
  /** The connection (by its number) the configsSinceConnect count belongs to. */
  #configConnection = 0
  /** Sound cards sent on this connection (name → JSON): not sent twice while the config lags behind. */
  readonly #sentCards = new Map<string, string>()
  /** Report sections not delivered yet, sent after the next connect. */
  readonly #undelivered: ReportedPayload = {}
  readonly #stats = {
    configsReceived: 0,
    configsSinceConnect: 0,
    lastConfig: undefined as DeviceConfig | undefined,
    applies: 0,
    lastApplyError: undefined as string | undefined,
    skipped: 0,
    soundCardsSet: 0,
    statusReports: 0,
    removed: false,
  }

  constructor(options: OvBoxAgentOptions) {
    this.#options = options
    this.#log = options.log
    const { deviceId } = options
    this.connection = new HubClient(
      {
        url: options.hubUrl,
        clientId: deviceId,
        username: 'device',
        token: options.token,
        keepaliveSeconds: options.keepaliveSeconds,
        presence: { topic: topics.devicePresence.build(deviceId), sessions: storedSessions(options.state) },
        subscriptions: [topics.deviceConfig.build(deviceId)],
        log: options.log,
        onConnection: noDelay,
        ...(options.ca ? { transport: { ca: options.ca } } : {}),
        ...(options.backoff ? { backoff: options.backoff } : {}),
        ...(options.stableAfterMs !== undefined ? { stableAfterMs: options.stableAfterMs } : {}),
        ...(options.requestTimeoutMs !== undefined ? { requestTimeoutMs: options.requestTimeoutMs } : {}),
      },
      {
        connected: () => this.#connected(),
        message: (_topic, payload) => this.#onConfig(payload),
      },
    )
    this.#firmware = options.firmware?.((report) => this.#report(report))
  }

  get deviceId(): string {
    return this.#options.deviceId
  }

  get stats(): AgentStats {
    const c = this.connection
    return {
      ...this.#stats,
      configsSinceConnect: this.#configConnection === c.connects ? this.#stats.configsSinceConnect : 0,
      connected: c.connected,
      online: c.online,
      session: c.session,
      connects: c.connects,
      attempts: c.attempts,
      appliedRevision: this.#options.state.read().appliedRevision,
      applying: this.#applying,
    }
  }

  start(): void {
    this.#stopped = false
    this.connection.start()
    const everyMs = this.#options.statusIntervalSeconds * 1000
    this.#statusTimer = setInterval(() => void this.#tick(), everyMs)
  }

  /** Clean shutdown: `offline`, DISCONNECT, timers off. A running command or download is not killed. */
  async stop(): Promise<void> {
    this.#stopped = true
    clearInterval(this.#statusTimer)
    await this.connection.stop()
  }

  #connected(): void {
    this.#sentCards.clear()
    // #tick logs a failed sample or report itself: it never rejects
    void this.#tick()
    const undelivered = { ...this.#undelivered }
    for (const section of KEPT_SECTIONS) delete this.#undelivered[section]
    // #report keeps what it could not send: it never rejects
    if (Object.keys(undelivered).length > 0) void this.#report(undelivered)
  }

  /**
   * Publishes a report on `devices/{d}/reported`. Without a connection, its firmware and appliedConfig
   * sections wait for the next one (the newest of each); a status is dropped.
   */
  async #report(report: ReportedPayload): Promise<void> {
    try {
      await this.connection.publish(
        topics.deviceReported.build(this.#options.deviceId),
        JSON.stringify(report),
      )
    } catch (err) {
      let kept = false
      for (const section of KEPT_SECTIONS) {
        if (report[section] === undefined) continue
        Object.assign(this.#undelivered, { [section]: report[section] })
        kept = true
      }
      this.#log.debug({ err: (err as Error).message, kept }, 'report not delivered')
    }
  }

  /** Status report and sound card check: right after connecting and every interval. */
  async #tick(): Promise<void> {
    if (this.#stopped || !this.connection.online) return
    try {
      const status = await this.#options.probe.sample()
      await this.#report({ status })
      this.#stats.statusReports++
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'status report failed')
    }
    // #syncSoundCards catches and logs its own failures: it never rejects
    void this.#syncSoundCards()
  }

  #onConfig(payload: Uint8Array): void {
    if (this.#stopped) return
    this.#stats.configsReceived++
    if (this.#configConnection !== this.connection.connects) {
      this.#configConnection = this.connection.connects
      this.#stats.configsSinceConnect = 0
    }
    this.#stats.configsSinceConnect++
    if (payload.length === 0) {
      // the hub clears the retained configuration when the device is removed
      this.#log.warn('the device was removed from the hub: stopping')
      this.#stats.removed = true
      this.#stopped = true
      clearInterval(this.#statusTimer)
      this.connection.abandon()
      this.#options.onRemoved?.()
      return
    }
    let config: unknown
    try {
      config = JSON.parse(new TextDecoder().decode(payload))
    } catch {
      this.#log.error('the configuration is not JSON: ignored')
      return
    }
    if (!validConfig(config)) {
      const problem = `invalid configuration: ${validConfig.describe()}`
      this.#log.error({ problem }, 'configuration ignored')
      const revision = (config as { revision?: unknown } | null)?.revision
      if (typeof revision === 'string' && REVISION.test(revision) && revision !== this.#attempted) {
        this.#attempted = revision
        // #report keeps what it could not send: it never rejects
        void this.#reportApplied(revision, truncate(problem, 500))
      }
      return
    }
    if (config.deviceId !== this.#options.deviceId) {
      this.#log.error({ deviceId: config.deviceId }, 'a configuration for another device: ignored')
      return
    }
    this.#stats.lastConfig = config
    this.#logAudio(config.audio)
    this.#pending = config
    // both catch and log their own failures (an apply failure is reported as appliedConfig.error)
    if (!this.#applying) void this.#applyLoop()
    void this.#syncSoundCards()
    this.#firmware?.consider(config.firmware)
  }

  /** Whether the box has audio and, if not, why: an empty relay in config.ov tells its owner nothing. */
  #logAudio(audio: DeviceConfig['audio']): void {
    const said = audio && `${audio.state}: ${audio.message}`
    if (!audio || said === this.#audio) return
    this.#audio = said
    if (audio.state === 'ready') this.#log.info({ audio: audio.state }, `audio: ${audio.message}`)
    else this.#log.warn({ audio: audio.state }, `no audio: ${audio.message}`)
  }

  /** Applies the newest configuration, one at a time; configurations that arrive meanwhile coalesce. */
  async #applyLoop(): Promise<void> {
    this.#applying = true
    try {
      while (this.#pending && !this.#stopped) {
        const config = this.#pending
        this.#pending = undefined
        if (
          config.revision === this.#attempted ||
          config.revision === this.#options.state.read().appliedRevision
        ) {
          this.#attempted = config.revision
          this.#stats.skipped++
          continue
        }
        this.#attempted = config.revision
        this.#stats.applies++
        let error: string | undefined
        try {
          await this.#options.sink.apply(config)
          await this.#options.state.update({ appliedRevision: config.revision })
          this.#log.info({ revision: config.revision }, 'configuration applied')
        } catch (err) {
          error = truncate((err as Error).message, 500)
          this.#log.error({ revision: config.revision, error }, 'configuration not applied')
        }
        this.#stats.lastApplyError = error
        await this.#reportApplied(config.revision, error)
      }
    } finally {
      this.#applying = false
    }
  }

  #reportApplied(revision: string, error?: string): Promise<void> {
    return this.#report({
      appliedConfig: { revision, appliedAt: new Date().toISOString(), ...(error ? { error } : {}) },
    })
  }

  /** Sends `soundcard.set` for detected cards that the configuration lacks or describes differently. */
  async #syncSoundCards(): Promise<void> {
    const config = this.#stats.lastConfig
    if (this.#syncing || !config || this.#stopped || !this.connection.online) return
    this.#syncing = true
    try {
      let detected: SoundCard[]
      try {
        detected = await this.#options.soundCards.read()
      } catch (err) {
        this.#log.warn({ err: (err as Error).message }, 'cannot read the sound cards')
        return
      }
      for (const card of soundCardsToSet(detected, config.soundCards)) {
        const sent = JSON.stringify(card)
        if (this.#sentCards.get(card.name) === sent) continue
        this.#sentCards.set(card.name, sent)
        try {
          await this.connection.request('soundcard.set', {
            deviceId: this.#options.deviceId,
            soundCard: card,
          })
          this.#stats.soundCardsSet++
          this.#log.info({ card: card.name }, 'sound card reported')
        } catch (err) {
          this.#log.warn({ card: card.name, err: (err as Error).message }, 'soundcard.set failed')
        }
      }
    } finally {
      this.#syncing = false
    }
  }
}

export interface AgentRuntimeOptions {
  log: Logger
  /** Replaces the Linux probe (tests). */
  probe?: StatusProbe
  backoff?: Partial<BackoffOptions>
  stableAfterMs?: number
  requestTimeoutMs?: number
  restartTimeoutMs?: number
  installTimeoutMs?: number
  onRemoved?: () => void
}

/** The agent of a real ov-box, from its configuration file: state, ov-client, ALSA and firmware on disk. */
export function createAgent(config: AgentConfig, runtime: AgentRuntimeOptions): OvBoxAgent {
  const state = FileStateStore.open(config.stateDir)
  const { log } = runtime
  if (state.problem) log.warn(state.problem)
  return new OvBoxAgent({
    hubUrl: config.hubUrl,
    deviceId: config.deviceId,
    token: config.token,
    keepaliveSeconds: config.keepaliveSeconds,
    statusIntervalSeconds: config.statusIntervalSeconds,
    ...(config.caPath ? { ca: readFileSync(config.caPath) } : {}),
    state,
    sink: new OvClientSink({
      configPath: config.ovClientConfigPath,
      restartCommand: config.ovClientRestartCommand,
      state,
      log,
      ...(runtime.restartTimeoutMs !== undefined ? { restartTimeoutMs: runtime.restartTimeoutMs } : {}),
    }),
    soundCards: new AlsaSoundCards(config.soundCardsPath),
    probe: runtime.probe ?? new LinuxProbe({ version: AGENT_VERSION }),
    firmware: (report) =>
      new FirmwareUpdater({
        downloadDir: join(config.stateDir, 'downloads'),
        installCommand: config.firmwareInstallCommand,
        state,
        log,
        report: (firmware) => report({ firmware }),
        ...(runtime.installTimeoutMs !== undefined ? { installTimeoutMs: runtime.installTimeoutMs } : {}),
      }),
    log,
    ...(runtime.backoff ? { backoff: runtime.backoff } : {}),
    ...(runtime.stableAfterMs !== undefined ? { stableAfterMs: runtime.stableAfterMs } : {}),
    ...(runtime.requestTimeoutMs !== undefined ? { requestTimeoutMs: runtime.requestTimeoutMs } : {}),
    ...(runtime.onRemoved ? { onRemoved: runtime.onRemoved } : {}),
  })
}

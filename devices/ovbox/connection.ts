import type { Socket } from 'node:net'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import type { Logger } from 'pino'
import type { PresencePayload, ReportedPayload } from '../../schemas/actions/device.ts'
import type { ResponseEnvelope } from '../../schemas/protocol.ts'
import { Backoff, type BackoffOptions } from './backoff.ts'
import { RequestClient } from './requests.ts'
import type { StateStore } from './state.ts'

export const deviceTopics = {
  presence: (d: string) => `devices/${d}/presence`,
  reported: (d: string) => `devices/${d}/reported`,
  config: (d: string) => `devices/${d}/config`,
}

export interface DeviceConnectionOptions {
  /** mqtt://host:port or mqtts://host:port */
  hubUrl: string
  deviceId: string
  /** The device token (role device, sub = deviceId), sent as the MQTT password. */
  token: string
  keepaliveSeconds: number
  /** CA certificate(s) for mqtts:// with a private CA. */
  ca?: Buffer
  /** Holds the presence session counter. */
  state: StateStore
  log: Logger
  backoff?: Partial<BackoffOptions>
  /** A connection that lasted this long resets the backoff (default 30 s). */
  stableAfterMs?: number
  /** An attempt without CONNACK after this long is abandoned (default 10 s). */
  connectTimeoutMs?: number
  /** Waiting time for a request's response before its one retry (default 10 s). */
  requestTimeoutMs?: number
}

/** What the connection tells its owner. Called synchronously; the owner does its async work itself. */
export interface ConnectionHandler {
  /** Online was published and the subscriptions hold (the retained config may have arrived already). */
  connected(session: number): void
  /** The connection that was up is gone; a reconnect is scheduled unless stopped. */
  disconnected(): void
  /** A message on `devices/{d}/config` (a zero-length payload means the device was removed). */
  config(payload: Buffer): void
}

/** Report sections that matter until they are delivered; `status` is stale by the next interval. */
const KEPT_SECTIONS = ['firmware', 'appliedConfig'] as const

/**
 * The device side of the protocol (docs/protocol/README.md), shared by the ov-box agent and the simulator: one
 * MQTT connection at a time as the device (client id = device id, device token as password, clean
 * session), each attempt with its own session number and last will `lost` of that session, `online`
 * after CONNACK, subscriptions to `devices/{d}/config` and `clients/{d}/res`, reconnects with
 * exponential backoff and jitter, requests with one same-id retry, reports, and a clean shutdown
 * (`offline`, then DISCONNECT).
 *
 * Reconnecting is done here, not by MQTT.js (reconnectPeriod 0): MQTT.js would reconnect with the
 * will of the first session, and the hub ignores a session it has seen before.
 */
export class DeviceConnection {
  readonly #options: DeviceConnectionOptions
  readonly #handler: ConnectionHandler
  readonly #log: Logger
  readonly #backoff: Backoff
  readonly requests: RequestClient
  #client: MqttClient | undefined
  #connected = false
  #online = false
  #stopped = false
  #session = 0
  #connects = 0
  #attempts = 0
  #reconnectTimer: NodeJS.Timeout | undefined
  #stableTimer: NodeJS.Timeout | undefined
  #connectTimer: NodeJS.Timeout | undefined
  /** Report sections not delivered yet, sent after the next CONNACK. */
  readonly #undelivered: ReportedPayload = {}

  constructor(options: DeviceConnectionOptions, handler: ConnectionHandler) {
    this.#options = options
    this.#handler = handler
    this.#log = options.log
    this.#backoff = new Backoff(options.backoff)
    this.requests = new RequestClient({
      clientId: options.deviceId,
      timeoutMs: options.requestTimeoutMs ?? 10_000,
      publish: (topic, payload) => this.#publish(topic, payload, { qos: 1 }),
      onUnmatched: (response) => this.#unmatched(response),
    })
  }

  /** The hub accepted the current connection (CONNACK). */
  get connected(): boolean {
    return this.#connected
  }

  /** `online` of the current session was published and acknowledged: the device may talk now. */
  get online(): boolean {
    return this.#online
  }

  /** The session of the current (or last) connection attempt. */
  get session(): number {
    return this.#session
  }

  /** How many connections were established (CONNACK) since start. */
  get connects(): number {
    return this.#connects
  }

  /** How many connection attempts were made since start (successful or not). */
  get attempts(): number {
    return this.#attempts
  }

  start(): void {
    this.#stopped = false
    void this.#attempt()
  }

  /** Sends a request as the device (docs/protocol/README.md#requests-and-responses); see RequestClient. */
  request<T = unknown>(action: string, params: unknown): Promise<T> {
    return this.requests.request<T>(action, params)
  }

  /**
   * Publishes a report on `devices/{d}/reported`. Without a connection, its firmware and appliedConfig
   * sections wait for the next one (the newest of each); a status is dropped.
   */
  async report(report: ReportedPayload): Promise<void> {
    const topic = deviceTopics.reported(this.#options.deviceId)
    try {
      await this.#publish(topic, JSON.stringify(report), { qos: 1 })
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

  /** Clean shutdown: `offline` of the current session (retained), then DISCONNECT. No reconnect. */
  async stop(): Promise<void> {
    this.#stopped = true
    this.#clearTimers()
    const client = this.#client
    if (!client) return
    if (this.#online) {
      const offline: PresencePayload = { state: 'offline', session: this.#session }
      try {
        await withTimeout(
          client.publishAsync(deviceTopics.presence(this.#options.deviceId), JSON.stringify(offline), {
            qos: 1,
            retain: true,
          }),
          3000,
        )
      } catch (err) {
        this.#log.warn({ err: (err as Error).message }, 'could not publish offline before disconnecting')
      }
      this.#connected = false
      this.#online = false
      await withTimeout(client.endAsync(), 3000).catch(() => client.end(true))
    } else {
      client.end(true)
    }
    this.#client = undefined
  }

  /** Drops the connection without a word (the device was removed: its token no longer counts). */
  abandon(): void {
    this.#stopped = true
    this.#clearTimers()
    this.#client?.end(true)
    this.#client = undefined
    this.#connected = false
    this.#online = false
  }

  async #attempt(): Promise<void> {
    this.#reconnectTimer = undefined
    if (this.#stopped) return
    const { deviceId, state } = this.#options
    const session = state.read().session + 1
    try {
      await state.update({ session })
    } catch (err) {
      // without a persisted session a later start could reuse it: do not connect with it
      this.#log.error({ err: (err as Error).message }, 'cannot persist the session counter')
      this.#scheduleReconnect()
      return
    }
    if (this.#stopped) return
    this.#session = session
    this.#attempts++
    const lost: PresencePayload = { state: 'lost', session }
    const options: IClientOptions = {
      protocolVersion: 4,
      clientId: deviceId,
      username: 'device',
      password: this.#options.token,
      clean: true,
      keepalive: this.#options.keepaliveSeconds,
      reconnectPeriod: 0,
      connectTimeout: this.#options.connectTimeoutMs ?? 10_000,
      will: {
        topic: deviceTopics.presence(deviceId),
        payload: Buffer.from(JSON.stringify(lost)),
        qos: 1,
        retain: true,
      },
      ...(this.#options.ca ? { ca: this.#options.ca } : {}),
    }
    let client: MqttClient
    try {
      client = mqtt.connect(this.#options.hubUrl, options)
    } catch (err) {
      this.#log.error({ err: (err as Error).message }, 'cannot connect')
      this.#scheduleReconnect()
      return
    }
    this.#client = client
    noDelay(client)
    this.#log.debug({ session, url: this.#options.hubUrl }, 'connecting')
    this.#connectTimer = setTimeout(() => {
      this.#log.warn('no CONNACK in time: giving up this attempt')
      this.#closed(client)
    }, this.#options.connectTimeoutMs ?? 10_000)
    client.on('connect', () => void this.#onConnect(client, session))
    client.on('message', (topic, payload) => this.#onMessage(topic, payload))
    client.on('error', (err: Error & { code?: number | string }) => {
      const refused = typeof err.code === 'number'
      // once stopping, errors of the closing connection say nothing
      const level = this.#stopped || client !== this.#client ? 'debug' : refused ? 'error' : 'warn'
      this.#log[level](
        { err: err.message, code: err.code },
        refused ? 'the hub refused the connection' : 'connection error',
      )
    })
    client.on('close', () => this.#closed(client))
  }

  async #onConnect(client: MqttClient, session: number): Promise<void> {
    if (client !== this.#client) return
    clearTimeout(this.#connectTimer)
    this.#connected = true
    noDelay(client)
    const { deviceId } = this.#options
    const online: PresencePayload = { state: 'online', session }
    try {
      await client.publishAsync(deviceTopics.presence(deviceId), JSON.stringify(online), {
        qos: 1,
        retain: true,
      })
      if (client !== this.#client) return
      // online from here: the retained config may arrive before the SUBACK is handled below
      this.#online = true
      this.#connects++
      const granted = await client.subscribeAsync(
        [deviceTopics.config(deviceId), this.requests.responseTopic],
        { qos: 1 },
      )
      for (const g of granted) {
        if (g.qos === 128) this.#log.error({ topic: g.topic }, 'the hub refused a subscription')
      }
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'connection failed while going online')
      if (client === this.#client) this.#closed(client)
      return
    }
    if (client !== this.#client) return
    this.#log.info({ session }, 'connected')
    this.#stableTimer = setTimeout(() => this.#backoff.reset(), this.#options.stableAfterMs ?? 30_000)
    this.#handler.connected(session)
    const undelivered = { ...this.#undelivered }
    for (const section of KEPT_SECTIONS) delete this.#undelivered[section]
    if (Object.keys(undelivered).length > 0) void this.report(undelivered)
  }

  #onMessage(topic: string, payload: Buffer): void {
    if (topic === deviceTopics.config(this.#options.deviceId)) this.#handler.config(payload)
    else this.requests.handle(topic, payload)
  }

  #unmatched(response: ResponseEnvelope): void {
    if (!response.ok) {
      this.#log.warn({ id: response.id, error: response.error }, 'the hub refused a message of this device')
    }
  }

  /** The attempt or connection of `client` is over: clean up and schedule the next one. */
  #closed(client: MqttClient): void {
    if (client !== this.#client) return
    const wasOnline = this.#online
    this.#client = undefined
    this.#connected = false
    this.#online = false
    clearTimeout(this.#stableTimer)
    clearTimeout(this.#connectTimer)
    client.end(true)
    if (wasOnline) {
      this.#log.warn({ session: this.#session }, 'connection lost')
      this.#handler.disconnected()
    }
    this.#scheduleReconnect()
  }

  #scheduleReconnect(): void {
    if (this.#stopped || this.#reconnectTimer) return
    const delay = this.#backoff.next()
    this.#log.debug({ delay, attempt: this.#backoff.attempt }, 'reconnecting later')
    this.#reconnectTimer = setTimeout(() => void this.#attempt(), delay)
  }

  async #publish(topic: string, payload: string, options: { qos: 0 | 1 }): Promise<void> {
    const client = this.#client
    if (!client || !this.#online) throw new Error('not connected')
    await client.publishAsync(topic, payload, options)
  }

  #clearTimers(): void {
    clearTimeout(this.#reconnectTimer)
    clearTimeout(this.#stableTimer)
    clearTimeout(this.#connectTimer)
    this.#reconnectTimer = undefined
  }
}

/** Nagle off: MQTT.js leaves it on, which delays small packets (a request, a PUBACK) by up to 40 ms. */
function noDelay(client: MqttClient): void {
  const stream = client.stream as Partial<Socket> | undefined
  stream?.setNoDelay?.(true)
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms)
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (err: unknown) => {
        clearTimeout(timer)
        reject(err as Error)
      },
    )
  })
}

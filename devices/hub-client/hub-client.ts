import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import type { ResponseEnvelope } from '../../schemas/protocol.ts'
import { matchesFilter } from '../../schemas/topic-shapes.ts'
import type { ActionName, ActionParams, ActionResult } from './actions.ts'
import { Backoff, type BackoffOptions } from './backoff.ts'
import { RequestClient } from './requests.ts'
import { StateCache, type StateListener } from './state-cache.ts'

/** The logging the client does: pino's signature, so a Node program passes its pino logger. */
export interface HubClientLog {
  debug(fields: object, message: string): void
  info(fields: object, message: string): void
  warn(fields: object, message: string): void
  error(fields: object, message: string): void
}

/** A notice that arrived on a listened filter, parsed. */
export type NoticeListener<T = unknown> = (topic: string, value: T) => void

const decoder = new TextDecoder()

const silent: HubClientLog = { debug() {}, info() {}, warn() {}, error() {} }

/**
 * Presence sessions (docs/protocol/README.md#presence): every connection attempt needs a larger number
 * than any before, also across restarts; where it is remembered (a file, memory) is the program's.
 */
export interface SessionSource {
  next(): number | Promise<number>
}

export interface PresenceOptions {
  /** `devices/{d}/presence` or `routers/{r}/presence`: retained, with the last will `lost`. */
  topic: string
  sessions: SessionSource
  /** Fields the `online` message carries besides state and session (a router's announcement). */
  announcement?: Record<string, unknown>
}

export interface HubClientOptions {
  /** mqtt://, mqtts://, ws:// or wss:// address of the hub. */
  url: string
  clientId: string
  /** MQTT user name: `token` for user tokens, `device` or `router` (the hub reads the role from the token). */
  username?: string
  /** The token sent as the password, or a function asked before every attempt (a renewed token). */
  token: string | (() => string | Promise<string>)
  /** Default 30 s. */
  keepaliveSeconds?: number
  /** Devices and routers: `online` after every CONNACK, `offline` at stop, the will `lost`. */
  presence?: PresenceOptions
  /** Filters subscribed on every connection, their messages given to `events.message`. */
  subscriptions?: readonly string[]
  backoff?: Partial<BackoffOptions>
  /** A connection that lasted this long resets the backoff (default 30 s). */
  stableAfterMs?: number
  /** An attempt without CONNACK after this long is abandoned (default 10 s). */
  connectTimeoutMs?: number
  /** Waiting time for a response before its one retry with the same id (default 10 s). */
  requestTimeoutMs?: number
  /** Extra MQTT.js options of the platform, e.g. `ca` for mqtts:// with a private CA (Node). */
  transport?: Partial<IClientOptions>
  /** Called with every established connection, e.g. to turn Nagle off on a TCP socket (Node). */
  onConnection?(client: MqttClient): void
  log?: HubClientLog
}

/** What the client tells its owner, synchronously; the owner does its async work itself. */
export interface HubClientEvents {
  /** Subscribed and (with presence) online: requests and publishes go out now. */
  connected?(session: number): void
  /** The connection that was up is gone; a reconnect is scheduled unless stopped. */
  disconnected?(): void
  /** A message on one of `subscriptions`; a zero-length payload is a cleared retained topic. */
  message?(topic: string, payload: Uint8Array): void
}

/**
 * One connection to the hub for any program: a device, a router, a user's app (also in a browser,
 * over WebSocket). Each attempt gets its own session number and last will `lost` of that session;
 * after CONNACK it subscribes (responses, `subscriptions`, watched state), then publishes `online`,
 * then hands over the messages that arrived meanwhile, so its owner never sees a message before it
 * may answer. Reconnects with exponential backoff and jitter; requests with one same-id retry; a cache
 * of watched retained state; a clean stop (`offline`, then DISCONNECT).
 *
 * Reconnecting is done here, not by MQTT.js (reconnectPeriod 0): MQTT.js would reconnect with the
 * will of the first session and the first token.
 */
export class HubClient {
  readonly #requests: RequestClient
  readonly state = new StateCache()
  readonly #options: HubClientOptions
  readonly #events: HubClientEvents
  readonly #log: HubClientLog
  readonly #backoff: Backoff
  /** Filters of watches and listens, and how many of them each has: subscribed while any. */
  readonly #watched = new Map<string, number>()
  /** Listeners of notices (messages that are not kept, e.g. a stage's chat). */
  readonly #listeners = new Set<{ filter: string; listener: NoticeListener }>()
  #client: MqttClient | undefined
  #connected = false
  #online = false
  #stopped = true
  #session = 0
  #connects = 0
  #attempts = 0
  /** Messages that arrived before online: handed over right after it. */
  #held: [string, Uint8Array][] = []
  #waitingOnline: (() => void)[] = []
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined
  #stableTimer: ReturnType<typeof setTimeout> | undefined
  #connectTimer: ReturnType<typeof setTimeout> | undefined

  constructor(options: HubClientOptions, events: HubClientEvents = {}) {
    this.#options = options
    this.#events = events
    this.#log = options.log ?? silent
    this.#backoff = new Backoff(options.backoff)
    this.#requests = new RequestClient({
      clientId: options.clientId,
      timeoutMs: options.requestTimeoutMs ?? 10_000,
      publish: (topic, payload) => this.publish(topic, payload),
      onUnmatched: (response) => this.#unmatched(response),
    })
  }

  /** The hub accepted the current connection (CONNACK). */
  get connected(): boolean {
    return this.#connected
  }

  /** Subscribed and, with presence, `online` published and acknowledged: the client may talk now. */
  get online(): boolean {
    return this.#online
  }

  /** The session of the current (or last) connection attempt. */
  get session(): number {
    return this.#session
  }

  /** How many connections went online since start. */
  get connects(): number {
    return this.#connects
  }

  /** How many connection attempts were made since start (successful or not). */
  get attempts(): number {
    return this.#attempts
  }

  start(): void {
    if (!this.#stopped) return
    this.#stopped = false
    // #attempt catches its own failures and schedules the next attempt: it never rejects
    void this.#attempt()
  }

  /** Resolves when the client is online (at once if it is). */
  untilOnline(): Promise<void> {
    if (this.#online) return Promise.resolve()
    return new Promise((resolve) => this.#waitingOnline.push(resolve))
  }

  /** Sends a request as this client; see RequestClient. */
  request<N extends ActionName>(action: N, params: ActionParams<N>): Promise<ActionResult<N>> {
    return this.#requests.request(action, params)
  }

  /** Publishes on the current connection; rejects when the client is not online. */
  async publish(topic: string, payload: string, options: { qos: 0 | 1 } = { qos: 1 }): Promise<void> {
    const client = this.#client
    if (!client || !this.#online) throw new Error('not connected to the hub')
    await client.publishAsync(topic, payload, options)
  }

  /**
   * Subscribes to the retained state on `filter` (on this and every later connection) and calls
   * `listener` with each current value and every change (value undefined: cleared). Returns the
   * function that stops watching.
   */
  watch<T = unknown>(filter: string, listener: StateListener<T>): () => void {
    const unsubscribe = this.#subscribe(filter)
    const unwatch = this.state.watch(filter, listener)
    return () => {
      // released first: a pending release keeps the values for a watcher of the same filter
      unsubscribe()
      unwatch()
    }
  }

  /**
   * Subscribes to the notices on `filter` (on this and every later connection; topics the hub does
   * not retain, e.g. `stages/{s}/chat`) and calls `listener` with each message that arrives from now
   * on, parsed as JSON (what is not JSON is left out). Nothing is kept: a listener that starts later
   * misses what came before. Returns the function that stops listening.
   */
  listen<T = unknown>(filter: string, listener: NoticeListener<T>): () => void {
    const entry = { filter, listener: listener as NoticeListener }
    this.#listeners.add(entry)
    const unsubscribe = this.#subscribe(filter)
    return () => {
      if (!this.#listeners.delete(entry)) return
      unsubscribe()
    }
  }

  /** Counts one more user of `filter`, subscribing on the first; returns its release. */
  #subscribe(filter: string): () => void {
    // 0: released in this task, its UNSUBSCRIBE not sent yet: still subscribed
    const users = this.#watched.get(filter)
    this.#watched.set(filter, (users ?? 0) + 1)
    if (users === undefined && this.#client && this.#connected) {
      this.#client
        .subscribeAsync(filter, { qos: 1 })
        .then((granted) => this.#refused(granted))
        .catch((err: unknown) => this.#log.warn({ err: (err as Error).message, filter }, 'subscribe failed'))
    }
    let released = false
    return () => {
      if (released) return
      released = true
      const left = (this.#watched.get(filter) ?? 1) - 1
      if (left > 0) {
        this.#watched.set(filter, left)
        return
      }
      // UNSUBSCRIBE after this task, unless watched again meanwhile: a page replaced by one watching
      // the same filter keeps the subscription and its values. (Sent at once, an UNSUBSCRIBE and a
      // SUBSCRIBE of one filter could leave it unsubscribed: the new page then missed every change.)
      this.#watched.set(filter, 0)
      const keep = this.state.watch(filter, () => undefined)
      setTimeout(() => {
        keep()
        if (this.#watched.get(filter) !== 0) return
        this.#watched.delete(filter)
        this.#client?.unsubscribe(filter)
      }, 0)
    }
  }

  /** Clean shutdown: `offline` of the current session (retained), then DISCONNECT. No reconnect. */
  async stop(): Promise<void> {
    this.#stopped = true
    this.#clearTimers()
    const client = this.#client
    if (!client) return
    const { presence } = this.#options
    if (this.#online) {
      if (presence) {
        const offline = JSON.stringify({ state: 'offline', session: this.#session })
        try {
          await withTimeout(client.publishAsync(presence.topic, offline, { qos: 1, retain: true }), 3000)
        } catch (err) {
          this.#log.warn({ err: (err as Error).message }, 'could not publish offline before disconnecting')
        }
      }
      this.#connected = false
      this.#online = false
      await withTimeout(client.endAsync(), 3000).catch(() => client.end(true))
    } else {
      client.end(true)
    }
    this.#connected = false
    this.#client = undefined
  }

  /** Drops the connection without a word, as a crash would: the hub sees the last will. No reconnect. */
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
    const { presence, clientId, url } = this.#options
    let session = this.#session
    let token: string
    try {
      if (presence) session = await presence.sessions.next()
      token = typeof this.#options.token === 'string' ? this.#options.token : await this.#options.token()
    } catch (err) {
      // a session that was not persisted could be reused by a later start: do not connect with it
      this.#log.error({ err: (err as Error).message }, 'cannot prepare the connection attempt')
      this.#scheduleReconnect()
      return
    }
    if (this.#stopped) return
    this.#session = session
    this.#attempts++
    const connectTimeoutMs = this.#options.connectTimeoutMs ?? 10_000
    const options: IClientOptions = {
      protocolVersion: 4,
      clientId,
      username: this.#options.username ?? 'token',
      password: token,
      clean: true,
      keepalive: this.#options.keepaliveSeconds ?? 30,
      reconnectPeriod: 0,
      connectTimeout: connectTimeoutMs,
      ...(presence
        ? {
            will: {
              topic: presence.topic,
              payload: JSON.stringify({ state: 'lost', session }),
              qos: 1,
              retain: true,
            },
          }
        : {}),
      ...this.#options.transport,
    }
    let client: MqttClient
    try {
      client = mqtt.connect(url, options)
    } catch (err) {
      this.#log.error({ err: (err as Error).message }, 'cannot connect')
      this.#scheduleReconnect()
      return
    }
    this.#client = client
    this.#held = []
    this.#log.debug({ session, url }, 'connecting')
    this.#connectTimer = setTimeout(() => {
      this.#log.warn({ timeoutMs: connectTimeoutMs }, 'no CONNACK in time: giving up this attempt')
      this.#closed(client)
    }, connectTimeoutMs)
    // #onConnect turns the connection's failures into a close; only a throwing handler of the owner rejects
    client.on('connect', () => void this.#onConnect(client, session))
    client.on('message', (topic, payload) => this.#onMessage(client, topic, payload))
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
    this.#options.onConnection?.(client)
    const { presence } = this.#options
    try {
      const own = [this.#requests.responseTopic, ...(this.#options.subscriptions ?? [])]
      this.#refused(await client.subscribeAsync(own, { qos: 1 }))
      // a watched filter the hub refuses (a stage the person was removed from) stays silent; it
      // must not fail the connection (MQTT.js rejects a SUBACK with any refusal in it)
      await Promise.all(
        [...this.#watched.keys()].map((filter) =>
          client.subscribeAsync(filter, { qos: 1 }).then(
            (granted) => this.#refused(granted),
            (err: Error & { packet?: { granted?: unknown } }) => {
              // a SUBACK came (MQTT.js's error carries it): the hub said no; anything else fails
              if (!Array.isArray(err.packet?.granted)) throw err
              this.#log.warn({ filter }, 'the hub refused a subscription')
            },
          ),
        ),
      )
      if (presence) {
        const online = JSON.stringify({ state: 'online', session, ...presence.announcement })
        await client.publishAsync(presence.topic, online, { qos: 1, retain: true })
      }
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'connection failed while going online')
      this.#closed(client)
      return
    }
    if (client !== this.#client) return
    this.#online = true
    this.#connects++
    this.#log.info({ session }, 'connected')
    const held = this.#held
    this.#held = []
    for (const [topic, payload] of held) this.#dispatch(topic, payload)
    this.#stableTimer = setTimeout(() => this.#backoff.reset(), this.#options.stableAfterMs ?? 30_000)
    for (const resolve of this.#waitingOnline.splice(0)) resolve()
    this.#events.connected?.(session)
  }

  #onMessage(client: MqttClient, topic: string, payload: Uint8Array): void {
    if (client !== this.#client || this.#requests.handle(topic, payload)) return
    if (this.#online) this.#dispatch(topic, payload)
    else this.#held.push([topic, payload])
  }

  #dispatch(topic: string, payload: Uint8Array): void {
    if (this.state.covers(topic)) this.state.put(topic, payload)
    if (payload.length > 0) {
      const listeners = [...this.#listeners].filter((l) => matchesFilter(l.filter, topic))
      if (listeners.length > 0) {
        let value: unknown
        try {
          value = JSON.parse(decoder.decode(payload))
        } catch {
          value = undefined
        }
        if (value !== undefined) for (const { listener } of listeners) listener(topic, value)
      }
    }
    this.#events.message?.(topic, payload)
  }

  #refused(granted: { topic: string; qos: number }[]): void {
    for (const g of granted)
      if (g.qos === 128) this.#log.error({ topic: g.topic }, 'the hub refused a subscription')
  }

  #unmatched(response: ResponseEnvelope): void {
    if (!response.ok) {
      this.#log.warn({ id: response.id, error: response.error }, 'the hub refused a message of this client')
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
      this.#events.disconnected?.()
    }
    this.#scheduleReconnect()
  }

  #scheduleReconnect(): void {
    if (this.#stopped || this.#reconnectTimer) return
    const delay = this.#backoff.next()
    this.#log.debug({ delay, attempt: this.#backoff.attempt }, 'reconnecting later')
    this.#reconnectTimer = setTimeout(() => void this.#attempt(), delay) // never rejects, as above
  }

  #clearTimers(): void {
    clearTimeout(this.#reconnectTimer)
    clearTimeout(this.#stableTimer)
    clearTimeout(this.#connectTimer)
    this.#reconnectTimer = undefined
  }
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

import { randomUUID } from 'node:crypto'
import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import type { Socket } from 'node:net'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import type { Logger } from 'pino'
import type { RouterLoad, RouterPresencePayload } from '../../schemas/actions/router.ts'
import type { ResponseEnvelope } from '../../schemas/protocol.ts'

export const routerTopics = {
  presence: (r: string) => `routers/${r}/presence`,
  load: (r: string) => `routers/${r}/load`,
  assignments: (r: string) => `routers/${r}/assignments/+`,
  signal: (r: string) => `routers/${r}/signal`,
  answers: (r: string) => `routers/${r}/signal/answers`,
  responses: (r: string) => `clients/${r}/res`,
  request: (r: string, action: string) => `clients/${r}/req/${action}`,
}

type Announcement = Omit<Extract<RouterPresencePayload, { state: 'online' }>, 'state' | 'session'>

/** A refusal from the hub (docs/protocol/README.md#requests-and-responses). */
export class RequestError extends Error {
  constructor(
    readonly action: string,
    readonly code: string,
    message: string,
  ) {
    super(`${action} refused (${code}): ${message}`)
  }
}

/**
 * Presence sessions (docs/protocol/README.md#presence): every connection attempt gets a larger number than any before, also
 * across restarts. The wall clock in milliseconds provides that without a file; with one (`stateFile`),
 * a clock set back does not matter either.
 */
export class SessionCounter {
  readonly #file: string | undefined
  #last = 0

  constructor(file?: string) {
    this.#file = file
    if (file) {
      try {
        const saved = JSON.parse(readFileSync(file, 'utf8')) as { session?: unknown }
        if (typeof saved.session === 'number') this.#last = saved.session
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      }
    }
  }

  next(): number {
    this.#last = Math.max(this.#last + 1, Date.now())
    if (this.#file) {
      writeFileSync(`${this.#file}.tmp`, JSON.stringify({ session: this.#last }) + '\n', { mode: 0o600 })
      renameSync(`${this.#file}.tmp`, this.#file)
    }
    return this.#last
  }
}

export interface RouterConnectionOptions {
  hubUrl: string
  routerId: string
  token: string
  keepaliveSeconds: number
  announcement: Announcement
  sessions: SessionCounter
  log: Logger
  /** Waiting time for a response (router.served/unserved) before one retry with the same id. */
  requestTimeoutMs?: number
}

export interface RouterConnectionHandler {
  /** Online is published and the subscriptions hold. */
  connected(session: number): void
  /** The connection that was up is gone (a reconnect follows unless stopped). */
  disconnected(): void
  /** A retained assignment (zero-length payload: cleared) on `routers/{r}/assignments/{s}`. */
  assignment(stageId: string, payload: Buffer): void
  /** A signal of the hub on `routers/{r}/signal`. */
  signal(payload: Buffer): void
}

const BACKOFF = { initialMs: 500, maxMs: 30_000 }

/**
 * The router's side of the protocol: one MQTT connection as the router (client id = router id, its
 * token as password, clean session), each attempt with its own session and the last will `lost` of
 * that session; after CONNACK it subscribes to its assignments, its signal topic and its responses,
 * then announces itself `online`; reconnects with exponential backoff and jitter (MQTT.js's own
 * reconnect would reuse the first session's will); `offline` before a clean DISCONNECT.
 */
export class RouterConnection {
  readonly #options: RouterConnectionOptions
  readonly #handler: RouterConnectionHandler
  readonly #waiting = new Map<string, (response: ResponseEnvelope) => void>()
  #client: MqttClient | undefined
  #online = false
  #stopped = false
  #session = 0
  #attempt = 0
  #reconnectTimer: NodeJS.Timeout | undefined

  constructor(options: RouterConnectionOptions, handler: RouterConnectionHandler) {
    this.#options = options
    this.#handler = handler
  }

  get online(): boolean {
    return this.#online
  }

  get session(): number {
    return this.#session
  }

  start(): void {
    this.#stopped = false
    this.#connect()
  }

  /** Clean shutdown: `offline` (retained), then DISCONNECT. */
  async stop(): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#reconnectTimer)
    const client = this.#client
    this.#client = undefined
    if (!client) return
    if (this.#online) {
      this.#online = false
      const offline: RouterPresencePayload = { state: 'offline', session: this.#session }
      await timeout(
        client.publishAsync(routerTopics.presence(this.#options.routerId), JSON.stringify(offline), {
          qos: 1,
          retain: true,
        }),
        3000,
      ).catch((err: unknown) => this.#options.log.warn({ err }, 'could not say offline'))
      await timeout(client.endAsync(), 3000).catch(() => client.end(true))
    } else client.end(true)
  }

  /** Drops the connection without a word, as a crash would (the hub sees the last will). */
  abandon(): void {
    this.#stopped = true
    clearTimeout(this.#reconnectTimer)
    const client = this.#client
    this.#client = undefined
    this.#online = false
    ;(client?.stream as Partial<Socket> | undefined)?.destroy?.()
    client?.end(true)
  }

  async publish(topic: string, payload: string, qos: 0 | 1 = 1): Promise<void> {
    const client = this.#client
    if (!client || !this.#online) throw new Error('not connected to the hub')
    await client.publishAsync(topic, payload, { qos })
  }

  /** A request as the router (docs/protocol/README.md#requests-and-responses), retried once with the same id when no response comes in time. */
  async request<T = unknown>(action: string, params: unknown): Promise<T> {
    const { routerId, requestTimeoutMs = 10_000 } = this.#options
    const id = randomUUID()
    let last: Error | undefined
    for (let attempt = 0; attempt < 2; attempt++) {
      const answer = new Promise<ResponseEnvelope | undefined>((resolve) => {
        const timer = setTimeout(() => {
          this.#waiting.delete(id)
          resolve(undefined)
        }, requestTimeoutMs)
        this.#waiting.set(id, (response) => {
          clearTimeout(timer)
          resolve(response)
        })
      })
      try {
        await this.publish(routerTopics.request(routerId, action), JSON.stringify({ id, params }))
      } catch (err) {
        this.#waiting.get(id)?.({ id, ok: false, error: { code: 'unavailable', message: String(err) } })
        last = err as Error
        continue
      }
      const response = await answer
      if (!response) {
        last = new Error(`no response to ${action} within ${requestTimeoutMs} ms`)
        continue
      }
      if (response.ok) return response.result as T
      throw new RequestError(action, response.error.code, response.error.message)
    }
    throw last ?? new Error(`${action} failed`)
  }

  #connect(): void {
    this.#reconnectTimer = undefined
    if (this.#stopped) return
    const { routerId, token, hubUrl, keepaliveSeconds, sessions, log } = this.#options
    let session: number
    try {
      session = sessions.next()
    } catch (err) {
      log.error({ err }, 'cannot persist the presence session: not connecting with it')
      this.#scheduleReconnect()
      return
    }
    this.#session = session
    const lost: RouterPresencePayload = { state: 'lost', session }
    const options: IClientOptions = {
      protocolVersion: 4,
      clientId: routerId,
      username: 'router',
      password: token,
      clean: true,
      keepalive: keepaliveSeconds,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      will: {
        topic: routerTopics.presence(routerId),
        payload: Buffer.from(JSON.stringify(lost)),
        qos: 1,
        retain: true,
      },
    }
    const client = mqtt.connect(hubUrl, options)
    this.#client = client
    client.on('connect', () => void this.#onConnect(client, session))
    client.on('message', (topic, payload) => this.#onMessage(topic, payload))
    client.on('error', (err: Error & { code?: number | string }) =>
      log[typeof err.code === 'number' ? 'error' : 'warn'](
        { err: err.message, code: err.code },
        typeof err.code === 'number' ? 'the hub refused the connection' : 'connection error',
      ),
    )
    client.on('close', () => this.#closed(client))
  }

  async #onConnect(client: MqttClient, session: number): Promise<void> {
    const { routerId, announcement, log } = this.#options
    ;(client.stream as Partial<Socket> | undefined)?.setNoDelay?.(true)
    try {
      const granted = await client.subscribeAsync(
        [routerTopics.assignments(routerId), routerTopics.signal(routerId), routerTopics.responses(routerId)],
        { qos: 1 },
      )
      for (const g of granted)
        if (g.qos === 128) log.error({ topic: g.topic }, 'the hub refused a subscription')
      const online: RouterPresencePayload = { state: 'online', session, ...announcement }
      await client.publishAsync(routerTopics.presence(routerId), JSON.stringify(online), {
        qos: 1,
        retain: true,
      })
    } catch (err) {
      log.warn({ err }, 'connection failed while going online')
      this.#closed(client)
      return
    }
    if (client !== this.#client) return
    this.#online = true
    this.#attempt = 0
    log.info({ session }, 'connected to the hub')
    this.#handler.connected(session)
  }

  #onMessage(topic: string, payload: Buffer): void {
    const { routerId } = this.#options
    if (topic === routerTopics.signal(routerId)) return this.#handler.signal(payload)
    if (topic === routerTopics.responses(routerId)) {
      try {
        const response = JSON.parse(payload.toString('utf8')) as ResponseEnvelope
        const resolve = this.#waiting.get(response.id)
        this.#waiting.delete(response.id)
        resolve?.(response)
      } catch {
        // not JSON: nothing waits for it
      }
      return
    }
    const prefix = `routers/${routerId}/assignments/`
    if (topic.startsWith(prefix)) this.#handler.assignment(topic.slice(prefix.length), payload)
  }

  #closed(client: MqttClient): void {
    if (client !== this.#client) return
    const wasOnline = this.#online
    this.#client = undefined
    this.#online = false
    client.end(true)
    if (wasOnline) {
      this.#options.log.warn({ session: this.#session }, 'connection to the hub lost')
      this.#handler.disconnected()
    }
    this.#scheduleReconnect()
  }

  #scheduleReconnect(): void {
    if (this.#stopped || this.#reconnectTimer) return
    const ceiling = Math.min(BACKOFF.maxMs, BACKOFF.initialMs * 2 ** Math.min(this.#attempt++, 20))
    const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2)
    this.#reconnectTimer = setTimeout(() => this.#connect(), delay)
  }
}

/** The load a router reports on `routers/{r}/load`. */
export type LoadReport = RouterLoad

function timeout<T>(promise: Promise<T>, ms: number): Promise<T> {
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

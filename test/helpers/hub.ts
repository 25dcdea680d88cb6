import { execFile } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { pino } from 'pino'
import { configFromEnv, type HubConfig } from '../../services/config.ts'
import { createTokenService, type Role, type TokenClaims } from '../../broker/tokens.ts'
import { topics } from '../../schemas/topics.ts'
import { startHub, type Hub } from '../../services/hub.ts'
import { freshMongoUrl } from './mongo.ts'

export const TEST_SECRET = 'test-secret-that-is-long-enough-0123456789'

/** The subset of tap's Test this helper needs, so any tap test can pass itself. */
export interface Teardown {
  teardown(fn: () => unknown): void
}

export interface TestHub {
  hub: Hub
  config: HubConfig
  dataDir: string
  mqttUrl: string
  wsUrl: string
  httpUrl: string
  /** Mints a token signed with the hub's key (default: a user token valid for an hour). */
  token(claims: Partial<TokenClaims> & { sub: string; role?: Role }, ttlSeconds?: number): string
  /** An MQTT.js client over TCP (or WebSocket with `ws: true`), connected, closed at teardown. */
  connect(options: IClientOptions & { ws?: boolean; token?: string }): Promise<MqttClient>
  /** Stops the hub cleanly and starts a new one on the same data directory and ports 0. */
  restart(): Promise<void>
}

/**
 * Which store startTestHub gives a hub that names none: `mongodb` when STAGEHUB_TEST_STORE=mongodb (a
 * fresh database on STAGEHUB_TEST_MONGO_URL per hub, see `npm run test:mongodb`), else `embedded`.
 */
export const testStore: 'embedded' | 'mongodb' =
  process.env.STAGEHUB_TEST_STORE === 'mongodb' ? 'mongodb' : 'embedded'

/**
 * How much longer the default waits of these helpers (a request's response, waitUntil) are: 4× on the
 * MongoDB test server, whose transactions take tens of milliseconds under load (DocumentDB behind a
 * wire gateway: its timings say nothing about MongoDB's), where the embedded store takes one.
 */
export const testTimeScale = testStore === 'mongodb' ? 4 : 1

/** For `{ skip: onMongoDB('why') }`: tests of the embedded store's own internals (its file, its SQL). */
export function onMongoDB(reason: string): string | false {
  return testStore === 'mongodb' ? `embedded store only: ${reason}` : false
}

/**
 * A real hub on free ports with a fresh store, torn down with the test: the embedded store in a temp
 * directory, or with STAGEHUB_TEST_STORE=mongodb a MongoDB database of its own (unless `env` names a
 * MONGO_URL). Cheap password hashing keeps sign-up tests fast; everything else is production configuration.
 */
export async function startTestHub(t: Teardown, env: Record<string, string> = {}): Promise<TestHub> {
  const dataDir = env.DATA_DIR ?? mkdtempSync(join(tmpdir(), 'stagehub-test-'))
  // the database is dropped after the hub closed (a hub closing still writes: devices go offline)
  const dropDatabase: (() => unknown)[] = []
  if (testStore === 'mongodb' && env.MONGO_URL === undefined) {
    env = { ...env, MONGO_URL: freshMongoUrl({ teardown: (fn) => dropDatabase.push(fn) }) }
  }
  const config = configFromEnv({
    JWT_SECRET: TEST_SECRET,
    MQTT_PORT: '0',
    HTTP_PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    PASSWORD_HASH_COST: '10',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    ...env,
  })
  const log = pino({ level: config.logLevel })
  const tokens = createTokenService(config.jwt)
  const clients = new Set<MqttClient>()
  let hub = await startHub(config, { log })
  const state: TestHub = {
    hub,
    config,
    dataDir,
    mqttUrl: `mqtt://127.0.0.1:${hub.ports.mqtt}`,
    wsUrl: `ws://127.0.0.1:${hub.ports.http}/mqtt`,
    httpUrl: `http://127.0.0.1:${hub.ports.http}`,
    token: (claims, ttlSeconds = 3600) => tokens.sign({ role: 'user', ...claims }, ttlSeconds).token,
    async connect(options) {
      const { ws, token, ...rest } = options
      const client = await mqtt.connectAsync(ws ? state.wsUrl : state.mqttUrl, {
        protocolVersion: 4,
        reconnectPeriod: 0,
        connectTimeout: 5000,
        ...(token !== undefined ? { username: 'token', password: token } : {}),
        ...rest,
      })
      clients.add(client)
      return client
    },
    async restart() {
      await hub.close()
      hub = await startHub(config, { log })
      state.hub = hub
      state.mqttUrl = `mqtt://127.0.0.1:${hub.ports.mqtt}`
      state.wsUrl = `ws://127.0.0.1:${hub.ports.http}/mqtt`
      state.httpUrl = `http://127.0.0.1:${hub.ports.http}`
    },
  }
  t.teardown(async () => {
    await Promise.all([...clients].map((c) => c.endAsync(true).catch(() => undefined)))
    await state.hub.close()
    for (const drop of dropDatabase) await drop()
    if (!env.DATA_DIR) rmSync(dataDir, { recursive: true, force: true })
  })
  return state
}

export interface Response {
  id: string
  ok: boolean
  result?: unknown
  error?: { code: string; message: string }
}

/**
 * Sends requests on `clients/{c}/req/{action}` and resolves with the response of the same id.
 * Subscribes to the client's response topic on first use.
 */
export class Requester {
  readonly #client: MqttClient
  readonly #waiting = new Map<string, (r: Response) => void>()
  #ready: Promise<unknown> | undefined
  #seq = 0

  constructor(client: MqttClient) {
    this.#client = client
    client.on('message', (topic, payload) => {
      if (topic !== topics.response.build(client.options.clientId!)) return
      const response = JSON.parse(payload.toString()) as Response
      const resolve = this.#waiting.get(response.id)
      if (resolve) {
        this.#waiting.delete(response.id)
        resolve(response)
      }
    })
  }

  async request(action: string, params: unknown = {}, id = `r${++this.#seq}`): Promise<Response> {
    return this.send(action, JSON.stringify({ id, params }), id)
  }

  /** Publishes a raw payload and waits for the response with `id` ('' for refusals without a readable id). */
  async send(
    action: string,
    payload: string | Buffer,
    id: string,
    timeoutMs = 5000 * testTimeScale,
  ): Promise<Response> {
    this.#ready ??= this.#client.subscribeAsync(topics.response.build(this.#client.options.clientId!), {
      qos: 1,
    })
    await this.#ready
    const response = new Promise<Response>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no response to ${action} ${id} within ${timeoutMs} ms`)),
        timeoutMs,
      )
      this.#waiting.set(id, (r) => {
        clearTimeout(timer)
        resolve(r)
      })
    })
    // a request that could not be sent (the connection closed) fails now, not later at its timeout
    response.catch(() => undefined)
    await this.#client.publishAsync(topics.request.build(this.#client.options.clientId!, action), payload, {
      qos: 1,
    })
    return response
  }
}

/** Resolves with the next message on `topic` (subscribing first), or rejects after `timeoutMs`. */
export async function nextMessage(
  client: MqttClient,
  topic: string,
  timeoutMs = 3000,
): Promise<{ payload: Buffer; retain: boolean }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('message', onMessage)
      reject(new Error(`no message on ${topic} within ${timeoutMs} ms`))
    }, timeoutMs)
    const onMessage = (t: string, payload: Buffer, packet: { retain: boolean }) => {
      if (t !== topic) return
      clearTimeout(timer)
      client.off('message', onMessage)
      resolve({ payload, retain: packet.retain })
    }
    client.on('message', onMessage)
    client.subscribeAsync(topic, { qos: 1 }).catch((err: unknown) => {
      clearTimeout(timer)
      client.off('message', onMessage)
      reject(err as Error)
    })
  })
}

/** The CONNACK return code of a refused connection attempt (or 0 if it was accepted). */
export async function connackCode(url: string, options: IClientOptions): Promise<number> {
  return new Promise((resolve) => {
    const client = mqtt.connect(url, {
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 5000,
      ...options,
    })
    client.once('connect', () => {
      client.end(true)
      resolve(0)
    })
    client.once('error', (err: Error & { code?: number }) => {
      client.end(true)
      resolve(typeof err.code === 'number' ? err.code : -1)
    })
  })
}

/** Every response a client receives on its `clients/{c}/res`, in arrival order. */
export interface ResponseLog {
  readonly all: readonly Response[]
  /** The responses with this id, in arrival order. */
  withId(id: string): Response[]
}

/** Subscribes to the client's response topic and records every response (alongside any Requester). */
export async function recordResponses(client: MqttClient): Promise<ResponseLog> {
  const all: Response[] = []
  const topic = topics.response.build(client.options.clientId!)
  client.on('message', (t, payload) => {
    if (t === topic) all.push(JSON.parse(payload.toString()) as Response)
  })
  await client.subscribeAsync(topic, { qos: 1 })
  return { all, withId: (id) => all.filter((r) => r.id === id) }
}

/** Polls `condition` every 10 ms until it holds; rejects with `what` after `timeoutMs`. */
export async function waitUntil(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 5000 * testTimeScale,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/**
 * The SUBACK return codes for `filters` (0/1 granted QoS, 128 refused), read from the SUBACK packet
 * whether or not MQTT.js treats the answer as an error.
 */
export async function subackCodes(
  client: MqttClient,
  filters: string | string[],
  qos: 0 | 1 = 1,
): Promise<number[]> {
  return new Promise((resolve, reject) => {
    client.subscribe(filters, { qos }, (err, _granted, packet) => {
      if (packet) resolve(packet.granted as number[])
      else reject(err ?? new Error('no SUBACK'))
    })
  })
}

export interface ReceivedMessage {
  topic: string
  payload: Buffer
  retain: boolean
}

/**
 * Resolves with the next message the client receives whose topic matches (without subscribing: call
 * it before subscribing to catch retained messages); rejects after `timeoutMs`.
 */
export async function waitForMessage(
  client: MqttClient,
  match: string | RegExp | ((m: ReceivedMessage) => boolean),
  timeoutMs = 3000,
): Promise<ReceivedMessage> {
  const test =
    typeof match === 'string'
      ? (m: ReceivedMessage) => m.topic === match
      : match instanceof RegExp
        ? (m: ReceivedMessage) => match.test(m.topic)
        : match
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('message', onMessage)
      reject(new Error(`no message matching ${String(match)} within ${timeoutMs} ms`))
    }, timeoutMs)
    const onMessage = (topic: string, payload: Buffer, packet: { retain: boolean }) => {
      const m = { topic, payload, retain: packet.retain }
      if (!test(m)) return
      clearTimeout(timer)
      client.off('message', onMessage)
      resolve(m)
    }
    client.on('message', onMessage)
  })
}

/** Records every message the client receives from now on, until `stop()`. */
export function recordMessages(client: MqttClient): { messages: ReceivedMessage[]; stop(): void } {
  const messages: ReceivedMessage[] = []
  const onMessage = (topic: string, payload: Buffer, packet: { retain: boolean }) => {
    messages.push({ topic, payload, retain: packet.retain })
  }
  client.on('message', onMessage)
  return { messages, stop: () => client.off('message', onMessage) }
}

/** Resolves when the client's connection closes (its 'close' event); rejects after `timeoutMs`. */
export async function connectionClosed(client: MqttClient, timeoutMs = 3000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('close', onClose)
      reject(new Error(`connection ${client.options.clientId} still open after ${timeoutMs} ms`))
    }, timeoutMs)
    const onClose = () => {
      clearTimeout(timer)
      resolve()
    }
    client.once('close', onClose)
  })
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** A self-signed certificate for 127.0.0.1 in a new temp directory (removed with the test), made by openssl. */
export async function selfSignedCert(t: Teardown): Promise<{ cert: string; key: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'stagehub-tls-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const cert = join(dir, 'cert.pem')
  const key = join(dir, 'key.pem')
  await promisify(execFile)('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=localhost',
    '-addext',
    'subjectAltName=IP:127.0.0.1',
    '-keyout',
    key,
    '-out',
    cert,
  ])
  return { cert, key }
}

/** Hub settings for RS256 tokens (an external identity provider's key pair, made for the test). */
export function rs256Env(): Record<string, string> {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  return {
    JWT_SECRET: '',
    JWT_PUBLIC_KEY: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    JWT_PRIVATE_KEY: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  }
}

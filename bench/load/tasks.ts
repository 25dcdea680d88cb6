import { createReadStream } from 'node:fs'
import { createInterface } from 'node:readline'
import { LiteClient, now } from '../lib/mqtt-lite.ts'
import { topics } from '../../schemas/topics.ts'

/**
 * What a load-generator process does, one task per IPC call. State (open connections, recordings)
 * lives in named groups so one process can hold subscribers while another publishes. Every timestamp
 * is `now()` (epoch ms, sub-millisecond), comparable across the processes of one machine.
 */

export interface ClientSpec {
  clientId: string
  username?: string
  password?: string
  /** This client's port instead of the task's (clients spread over the processes of a deployment). */
  port?: number
}

export interface OpenParams {
  group: string
  host: string
  port: number
  clients: ClientSpec[]
  keepalive: number
  /** Handshakes in flight at most (keeps the storm within the listeners' accept backlogs). */
  window: number
  /** Filters each client subscribes to right after its CONNACK (index i, or the last entry for all). */
  subscribe?: string[][]
  qos?: 0 | 1
}

export interface OpenResult {
  accepted: number
  refused: number
  failed: number
  /** When the first socket was opened and when the last CONNACK (and SUBACK) arrived. */
  startedAt: number
  connectedAt: number
  subscribedAt: number
  errors: string[]
}

/** How to read a sequence number from a payload: the request id `"id":"b<seq>"`, or `"x":<seq/1000>`. */
export type Extract = 'id' | 'x'

export interface SendParams {
  group: string
  /** Messages per second per client. */
  rate: number
  durationMs: number
  /**
   * Per client: templates used round-robin; `@SEQ@` is replaced by the sequence number, `@X@` by
   * (seq mod 1e6) / 1000 (a number in [0, 1000) that still identifies the message).
   */
  templates: { topic: string; payload: string }[][]
  qos: 0 | 1
  retain?: boolean
  /** First sequence number (clients number their messages seqBase, seqBase+1, ...). */
  seqBase?: number
  /** Replies arrive on the sending client (requests → responses, echo): match them and report latency. */
  replies?: Extract
  /** How long to wait for outstanding replies after the last send. */
  drainMs?: number
}

export interface SendResult {
  sent: number
  /** Per message: [seq, sentAt] pairs, flattened. */
  sends: Float64Array
  /** With `replies`: reply latencies in ms, and how many never came. */
  latencies?: Float64Array
  missing?: number
  firstSentAt: number
  lastSentAt: number
  lastReplyAt?: number
}

export interface Recording {
  /** [seq, receivedAt] pairs, flattened. */
  pairs: Float64Array
  count: number
}

export interface SubscribeTimingParams {
  group: string
  index: number
  filters: string[]
  /** Retained messages the subscription must deliver before it counts as done. */
  expect: number
  reps: number
  timeoutMs?: number
}

export interface SubscribeTiming {
  /** SUBSCRIBE → SUBACK, ms. */
  suback: number[]
  /** SUBSCRIBE → SUBACK, every expected retained message, and a PINGREQ round trip after, ms. */
  total: number[]
  received: number[]
}

class Pairs {
  #data = new Float64Array(1024)
  #n = 0
  push(a: number, b: number): void {
    if (this.#n + 2 > this.#data.length) {
      const grown = new Float64Array(this.#data.length * 2)
      grown.set(this.#data)
      this.#data = grown
    }
    this.#data[this.#n++] = a
    this.#data[this.#n++] = b
  }
  get count(): number {
    return this.#n / 2
  }
  take(): Float64Array {
    const out = this.#data.slice(0, this.#n)
    this.#n = 0
    return out
  }
}

const ID_MARK = Buffer.from('"id":"b')
const X_MARK = Buffer.from('"x":')

export function extractSeq(payload: Buffer, how: Extract): number {
  if (how === 'id') {
    const at = payload.indexOf(ID_MARK)
    if (at < 0) return NaN
    let seq = 0
    for (let i = at + ID_MARK.length; i < payload.length; i++) {
      const c = payload[i]!
      if (c < 48 || c > 57) break
      seq = seq * 10 + (c - 48)
    }
    return seq
  }
  const at = payload.indexOf(X_MARK)
  if (at < 0) return NaN
  let end = at + X_MARK.length
  while (end < payload.length && payload[end] !== 44 && payload[end] !== 125) end++
  return Math.round(Number(payload.toString('latin1', at + X_MARK.length, end)) * 1000)
}

interface Group {
  clients: LiteClient[]
  recording?: Pairs
}

const groups = new Map<string, Group>()
let pingTimer: NodeJS.Timeout | undefined

function group(name: string): Group {
  const g = groups.get(name)
  if (!g) throw new Error(`no connection group ${name}`)
  return g
}

/** Keeps idle connections alive: one timer for every client, not one per client. */
function keepAlive(seconds: number): void {
  if (seconds === 0 || pingTimer) return
  pingTimer = setInterval(
    () => {
      for (const g of groups.values())
        for (const c of g.clients) if (!c.closed) c.ping().catch(() => undefined)
    },
    (seconds * 1000) / 2,
  )
  pingTimer.unref()
}

export async function open(p: OpenParams): Promise<OpenResult> {
  const g: Group = groups.get(p.group) ?? { clients: [] }
  groups.set(p.group, g)
  keepAlive(p.keepalive)
  const result: OpenResult = {
    accepted: 0,
    refused: 0,
    failed: 0,
    startedAt: now(),
    connectedAt: 0,
    subscribedAt: 0,
    errors: [],
  }
  let next = 0
  const one = async (): Promise<void> => {
    while (next < p.clients.length) {
      const i = next++
      const spec = p.clients[i]!
      const client = LiteClient.connect({
        host: p.host,
        keepalive: p.keepalive,
        ...spec,
        port: spec.port ?? p.port,
      })
      try {
        const code = await client.connected
        result.connectedAt = now()
        if (code !== 0) {
          result.refused++
          if (result.errors.length < 5) result.errors.push(`${spec.clientId}: CONNACK ${code}`)
          client.destroy()
          continue
        }
        result.accepted++
        g.clients.push(client)
        const filters = p.subscribe?.[Math.min(i, p.subscribe.length - 1)]
        if (filters && filters.length > 0) {
          const granted = await client.subscribe(filters, p.qos ?? 1)
          if (granted.some((code) => code === 0x80) && result.errors.length < 5) {
            result.errors.push(`${spec.clientId}: SUBACK ${granted.join(',')} for ${filters.join(' ')}`)
          }
          result.subscribedAt = now()
        }
      } catch (err) {
        result.failed++
        if (result.errors.length < 5) result.errors.push(`${spec.clientId}: ${(err as Error).message}`)
        client.destroy()
      }
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(p.window, p.clients.length)) }, one))
  if (result.subscribedAt === 0) result.subscribedAt = result.connectedAt
  return result
}

export function record(p: { group: string; extract: Extract }): number {
  const g = group(p.group)
  const pairs = new Pairs()
  g.recording = pairs
  for (const client of g.clients) {
    client.onPublish = (_topic, payload) => {
      const t = now()
      pairs.push(extractSeq(payload, p.extract), t)
    }
  }
  return g.clients.length
}

/** Messages recorded so far in a group. */
export function count(p: { group: string }): number {
  return group(p.group).recording?.count ?? 0
}

export function collect(p: { group: string }): Recording {
  const g = group(p.group)
  const pairs = g.recording
  for (const client of g.clients) client.onPublish = undefined
  g.recording = undefined
  if (!pairs) return { pairs: new Float64Array(0), count: 0 }
  const count = pairs.count
  return { pairs: pairs.take(), count }
}

export async function send(p: SendParams): Promise<SendResult> {
  const g = group(p.group)
  const clients = g.clients.slice(0, p.templates.length)
  const seqBase = p.seqBase ?? 0
  const perClient = Math.max(1, Math.round((p.rate * p.durationMs) / 1000))
  const sends = new Pairs()
  const latencies: number[] = []
  let received = 0
  let lastReplyAt = 0
  const sentAt = clients.map(() => new Float64Array(perClient).fill(NaN))
  let expected = 0
  let allReplied: (() => void) | undefined
  if (p.replies) {
    const how = p.replies
    clients.forEach((client, c) => {
      const times = sentAt[c]!
      client.onPublish = (_topic, payload) => {
        const t = now()
        const seq = extractSeq(payload, how) - seqBase
        const at = times[seq]
        if (at === undefined || Number.isNaN(at)) return
        times[seq] = NaN
        latencies.push(t - at)
        received++
        lastReplyAt = t
        if (received === expected) allReplied?.()
      }
    })
  }
  const t0 = now()
  let firstSentAt = 0
  let lastSentAt = 0
  await Promise.all(
    clients.map(
      (client, c) =>
        new Promise<void>((resolve) => {
          const templates = p.templates[c]!
          // clients are not in step with each other: each starts at a random point of its interval
          const start = t0 + (clients.length > 1 ? Math.random() * (1000 / p.rate) : 0)
          let i = 0
          const tick = () => {
            const elapsed = now() - start
            const due = elapsed < 0 ? 0 : Math.min(perClient, Math.floor((elapsed * p.rate) / 1000) + 1)
            while (i < due) {
              const seq = seqBase + i
              const tpl = templates[i % templates.length]!
              const payload = tpl.payload
                .replace('@SEQ@', String(seq))
                .replace('@X@', String((seq % 1_000_000) / 1000))
              const t = now()
              if (firstSentAt === 0) firstSentAt = t
              lastSentAt = t
              sentAt[c]![i] = t
              sends.push(seq, t)
              expected++
              client.publish(tpl.topic, payload, p.qos, p.retain ?? false).catch(() => undefined)
              i++
            }
            if (i >= perClient) return resolve()
            const wait = start + (i * 1000) / p.rate - now()
            setTimeout(tick, Math.max(0, wait))
          }
          tick()
        }),
    ),
  )
  if (p.replies) {
    if (received < expected) {
      await new Promise<void>((resolve) => {
        allReplied = resolve
        setTimeout(resolve, p.drainMs ?? 5000)
      })
    }
    for (const client of clients) client.onPublish = undefined
  }
  return {
    sent: sends.count,
    sends: sends.take(),
    firstSentAt,
    lastSentAt,
    ...(p.replies
      ? { latencies: Float64Array.from(latencies), missing: expected - received, lastReplyAt }
      : {}),
  }
}

export async function subscribeTiming(p: SubscribeTimingParams): Promise<SubscribeTiming> {
  const client = group(p.group).clients[p.index]
  if (!client) throw new Error(`no client ${p.index} in ${p.group}`)
  const out: SubscribeTiming = { suback: [], total: [], received: [] }
  for (let rep = 0; rep < p.reps; rep++) {
    let received = 0
    let enough: (() => void) | undefined
    client.onPublish = (_topic, _payload, retain) => {
      if (!retain) return
      received++
      if (received >= p.expect) enough?.()
    }
    const t0 = now()
    await client.subscribe(p.filters, 1)
    const subackAt = now()
    if (received < p.expect) {
      await new Promise<void>((resolve, reject) => {
        enough = resolve
        setTimeout(
          () => reject(new Error(`only ${received} of ${p.expect} retained messages arrived`)),
          p.timeoutMs ?? 30_000,
        )
      })
    }
    await client.ping()
    const done = now()
    client.onPublish = undefined
    out.suback.push(subackAt - t0)
    out.total.push(done - t0)
    out.received.push(received)
    await client.unsubscribe(p.filters)
  }
  return out
}

/**
 * Publishes a retained set (a file of `topic<TAB>base64 payload` lines) as fast as the socket takes
 * it, then one round trip, so the broker has stored all of it when this resolves.
 */
export async function publishRetained(p: { group: string; file: string }): Promise<number> {
  const client = group(p.group).clients[0]
  if (!client) throw new Error(`no client in ${p.group}`)
  let count = 0
  for await (const line of createInterface({ input: createReadStream(p.file) })) {
    const tab = line.indexOf('\t')
    if (tab < 0) continue
    client
      .publish(line.slice(0, tab), Buffer.from(line.slice(tab + 1), 'base64'), 0, true)
      .catch(() => undefined)
    count++
    if (client.socket.writableNeedDrain) await new Promise((resolve) => client.socket.once('drain', resolve))
  }
  await client.ping()
  return count
}

export async function close(p: { group: string }): Promise<void> {
  const g = groups.get(p.group)
  if (!g) return
  groups.delete(p.group)
  await Promise.all(
    g.clients.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.closed) return resolve()
          c.socket.once('close', () => resolve())
          c.end()
          setTimeout(() => {
            c.destroy()
            resolve()
          }, 2000).unref()
        }),
    ),
  )
}

export interface ChurnParams {
  host: string
  port: number
  /** Client ids start with this (unique per worker and phase). */
  prefix: string
  /** The users this worker's clients connect as, round-robin. */
  users: { id: string; token: string }[]
  durationMs: number
  /** Client life cycles running at once. */
  concurrency: number
  /** Every n-th cycle is a slow reader (0: none). */
  slowEvery: number
  /** How long a slow reader keeps its connection open without reading (unless the hub closes it first). */
  slowHoldMs: number
  /** Size of the avatarUrl each request sets (what users/{u} subscribers then receive). */
  avatarBytes: number
}

export interface ChurnResult {
  cycles: number
  slowReaders: number
  /** Request → response, ms. */
  latencies: Float64Array
  failed: number
  errors: string[]
}

/**
 * Connection churn: each cycle connects a new client as one of `users`, subscribes to the user's
 * profile and its response topic, sends a `user.update` (a new avatarUrl, so every subscriber of that
 * user receives a profile of `avatarBytes`), waits for the response and leaves, alternately with a
 * DISCONNECT and by dropping the socket. Every `slowEvery`-th cycle also starts a slow reader beside
 * the loop: it subscribes to the profile, stops reading, and drops its socket after `slowHoldMs` (the
 * hub may have closed it before; see its stagehub_slow_consumer_disconnects_total).
 */
export async function churn(p: ChurnParams): Promise<ChurnResult> {
  const latencies: number[] = []
  const result: ChurnResult = {
    cycles: 0,
    slowReaders: 0,
    latencies: new Float64Array(0),
    failed: 0,
    errors: [],
  }
  const ends = now() + p.durationMs
  const filler = 'a'.repeat(Math.max(0, p.avatarBytes - 40))
  const slowReaders: Promise<void>[] = []
  let seq = 0
  const connect = (clientId: string, token: string) =>
    LiteClient.connect({
      host: p.host,
      port: p.port,
      clientId,
      username: 'token',
      password: token,
      keepalive: 0,
    })
  const fail = (clientId: string, err: unknown) => {
    result.failed++
    if (result.errors.length < 5) result.errors.push(`${clientId}: ${(err as Error).message}`)
  }
  const slowReader = async (clientId: string, user: { id: string; token: string }): Promise<void> => {
    const client = connect(clientId, user.token)
    try {
      const code = await client.connected
      if (code !== 0) throw new Error(`CONNACK ${code}`)
      await client.subscribe([topics.user.build(user.id)], 1)
      client.socket.pause()
      await sleep(Math.max(0, Math.min(p.slowHoldMs, ends - now())))
    } catch (err) {
      fail(clientId, err)
    } finally {
      client.destroy()
    }
  }
  const cycle = async (): Promise<void> => {
    const n = seq++
    const user = p.users[n % p.users.length]!
    const clientId = `${p.prefix}${n}`
    if (p.slowEvery > 0 && n % p.slowEvery === p.slowEvery - 1) {
      result.slowReaders++
      slowReaders.push(slowReader(`${clientId}-slow`, user))
    }
    const client = connect(clientId, user.token)
    try {
      const code = await client.connected
      if (code !== 0) throw new Error(`CONNACK ${code}`)
      const responses = topics.response.build(clientId)
      await client.subscribe([topics.user.build(user.id), responses], 1)
      const id = `b${n}`
      const answered = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no response within 10 s')), 10_000)
        client.onPublish = (topic, payload) => {
          if (topic === responses && payload.includes(`"id":"${id}"`)) {
            clearTimeout(timer)
            resolve()
          }
        }
      })
      const sent = now()
      const payload = JSON.stringify({ id, params: { avatarUrl: `https://example.org/${filler}/${n}` } })
      await client.publish(topics.request.build(clientId, 'user.update'), payload, 1)
      await answered
      latencies.push(now() - sent)
      if (n % 2 === 0) client.end()
      else client.destroy()
    } catch (err) {
      fail(clientId, err)
      client.destroy()
    } finally {
      result.cycles++
    }
  }
  await Promise.all(
    Array.from({ length: p.concurrency }, async () => {
      while (now() < ends) await cycle()
    }),
  )
  await Promise.all(slowReaders)
  result.latencies = Float64Array.from(latencies)
  return result
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

export const tasks = { open, record, count, collect, send, subscribeTiming, publishRetained, close, churn }
export type Tasks = typeof tasks

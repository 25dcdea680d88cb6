import net from 'node:net'

/**
 * A minimal MQTT 3.1.1 client for load generation: one socket, hand-rolled encoding and parsing, no
 * message store, no timers per client. MQTT.js costs tens of kilobytes and a lot of CPU per client,
 * which would make the load generator the bottleneck; this costs a socket and a few closures.
 * It speaks exactly what the benchmarks need: CONNECT (with a last will), SUBSCRIBE, PUBLISH (QoS 0/1), PUBACK, PINGREQ.
 */

/** Milliseconds on a clock shared by every process on this machine (epoch-based, sub-millisecond). */
export const now = (): number => performance.timeOrigin + performance.now()

export interface ConnectOptions {
  host: string
  port: number
  clientId: string
  username?: string
  password?: string
  /** Seconds; 0 disables keepalive. Pings are the caller's business (see `ping`). */
  keepalive?: number
  clean?: boolean
  /** The last will, published by the broker when the connection is lost without a DISCONNECT. */
  will?: { topic: string; payload: string; qos: 0 | 1; retain: boolean }
}

export type OnPublish = (topic: string, payload: Buffer, retain: boolean) => void

interface Waiter {
  resolve: (value: number[]) => void
  reject: (err: Error) => void
}

const CONNACK = 2
const PUBLISH = 3
const PUBACK = 4
const SUBACK = 9
const UNSUBACK = 11
const PINGRESP = 13

function remainingLength(length: number): Buffer {
  const bytes: number[] = []
  do {
    let byte = length % 128
    length = Math.floor(length / 128)
    if (length > 0) byte |= 0x80
    bytes.push(byte)
  } while (length > 0)
  return Buffer.from(bytes)
}

function str(value: string | Buffer): Buffer {
  const body = typeof value === 'string' ? Buffer.from(value, 'utf8') : value
  const header = Buffer.allocUnsafe(2)
  header.writeUInt16BE(body.length, 0)
  return Buffer.concat([header, body])
}

function packet(first: number, parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts)
  return Buffer.concat([Buffer.from([first]), remainingLength(body.length), body])
}

export function encodeConnect(o: Omit<ConnectOptions, 'host' | 'port'>): Buffer {
  let flags = o.clean === false ? 0 : 0x02
  if (o.username !== undefined) flags |= 0x80
  if (o.password !== undefined) flags |= 0x40
  if (o.will) flags |= 0x04 | (o.will.qos << 3) | (o.will.retain ? 0x20 : 0)
  const keepalive = Buffer.allocUnsafe(2)
  keepalive.writeUInt16BE(o.keepalive ?? 0, 0)
  const parts = [str('MQTT'), Buffer.from([4, flags]), keepalive, str(o.clientId)]
  if (o.will) parts.push(str(o.will.topic), str(o.will.payload))
  if (o.username !== undefined) parts.push(str(o.username))
  if (o.password !== undefined) parts.push(str(o.password))
  return packet(0x10, parts)
}

export function encodePublish(
  topic: string,
  payload: Buffer,
  qos: 0 | 1,
  retain: boolean,
  messageId: number,
): Buffer {
  const parts = [str(topic)]
  if (qos > 0) {
    const id = Buffer.allocUnsafe(2)
    id.writeUInt16BE(messageId, 0)
    parts.push(id)
  }
  parts.push(payload)
  return packet(0x30 | (qos << 1) | (retain ? 1 : 0), parts)
}

function encodeSubscribe(messageId: number, filters: readonly string[], qos: 0 | 1): Buffer {
  const id = Buffer.allocUnsafe(2)
  id.writeUInt16BE(messageId, 0)
  return packet(0x82, [id, ...filters.flatMap((f) => [str(f), Buffer.from([qos])])])
}

function encodeUnsubscribe(messageId: number, filters: readonly string[]): Buffer {
  const id = Buffer.allocUnsafe(2)
  id.writeUInt16BE(messageId, 0)
  return packet(0xa2, [id, ...filters.map((f) => str(f))])
}

const EMPTY = Buffer.alloc(0)
const PINGREQ = Buffer.from([0xc0, 0])
const DISCONNECT = Buffer.from([0xe0, 0])

export class LiteClient {
  readonly socket: net.Socket
  onPublish: OnPublish | undefined
  /** Resolves with the CONNACK return code (0 = accepted). */
  readonly connected: Promise<number>
  #buffer: Buffer = EMPTY
  #nextId = 1
  readonly #waiting = new Map<number, Waiter>()
  #pings: Waiter[] = []
  #connack: ((code: number) => void) | undefined
  #closed = false
  #closeError: Error | undefined
  /** PUBACKs owed for the chunk being parsed, written together at its end. */
  #ackBuffer: Buffer = Buffer.allocUnsafe(64)
  #acks = 0

  private constructor(socket: net.Socket, connected: Promise<number>) {
    this.socket = socket
    this.connected = connected
  }

  /** Opens the socket, sends CONNECT at once, and resolves `connected` with the CONNACK code. */
  static connect(o: ConnectOptions): LiteClient {
    const socket = net.connect({ host: o.host, port: o.port, noDelay: true })
    let settle: { resolve: (code: number) => void; reject: (err: Error) => void } | undefined
    const connected = new Promise<number>((resolve, reject) => (settle = { resolve, reject }))
    const client = new LiteClient(socket, connected)
    client.#connack = (code) => settle!.resolve(code)
    socket.write(encodeConnect(o))
    socket.on('data', (chunk: Buffer) => client.#onData(chunk))
    socket.on('error', (err) => client.#fail(err))
    socket.on('close', () => {
      client.#fail(new Error('connection closed'))
      settle!.reject(client.#closeError ?? new Error('connection closed before CONNACK'))
    })
    connected.catch(() => undefined)
    return client
  }

  get closed(): boolean {
    return this.#closed
  }

  subscribe(filters: readonly string[], qos: 0 | 1 = 1): Promise<number[]> {
    const id = this.#id()
    return this.#send(id, encodeSubscribe(id, filters, qos))
  }

  unsubscribe(filters: readonly string[]): Promise<number[]> {
    const id = this.#id()
    return this.#send(id, encodeUnsubscribe(id, filters))
  }

  /** QoS 1 resolves on PUBACK; QoS 0 once written. */
  publish(topic: string, payload: Buffer | string, qos: 0 | 1 = 1, retain = false): Promise<unknown> {
    const body = typeof payload === 'string' ? Buffer.from(payload) : payload
    if (qos === 0) {
      this.socket.write(encodePublish(topic, body, 0, retain, 0))
      return Promise.resolve()
    }
    const id = this.#id()
    return this.#send(id, encodePublish(topic, body, 1, retain, id))
  }

  /** A round trip: resolves when the broker has processed everything sent before it. */
  ping(): Promise<unknown> {
    if (this.#closed) return Promise.reject(this.#closeError ?? new Error('closed'))
    return new Promise((resolve, reject) => {
      this.#pings.push({ resolve, reject })
      this.socket.write(PINGREQ)
    })
  }

  end(): void {
    if (this.#closed) return
    this.socket.end(DISCONNECT)
  }

  destroy(): void {
    this.socket.destroy()
  }

  #id(): number {
    // skip ids still waiting for their answer (wrap-around under long runs)
    do {
      this.#nextId = this.#nextId >= 65535 ? 1 : this.#nextId + 1
    } while (this.#waiting.has(this.#nextId))
    return this.#nextId
  }

  #send(id: number, bytes: Buffer): Promise<number[]> {
    if (this.#closed) return Promise.reject(this.#closeError ?? new Error('closed'))
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject })
      this.socket.write(bytes)
    })
  }

  #fail(err: Error): void {
    if (this.#closed) return
    this.#closed = true
    this.#closeError = err
    for (const w of this.#waiting.values()) w.reject(err)
    this.#waiting.clear()
    for (const w of this.#pings) w.reject(err)
    this.#pings = []
  }

  #onData(chunk: Buffer): void {
    const buf = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk])
    let offset = 0
    this.#acks = 0
    for (;;) {
      if (buf.length - offset < 2) break
      // remaining length: up to 4 bytes
      let length = 0
      let multiplier = 1
      let pos = offset + 1
      let complete = false
      while (pos < buf.length && pos < offset + 5) {
        const byte = buf[pos++]!
        length += (byte & 0x7f) * multiplier
        multiplier *= 128
        if ((byte & 0x80) === 0) {
          complete = true
          break
        }
      }
      if (!complete || buf.length - pos < length) break
      this.#onPacket(buf[offset]!, buf, pos, pos + length)
      offset = pos + length
    }
    this.#buffer = offset === buf.length ? EMPTY : buf.subarray(offset)
    if (this.#acks > 0) {
      // every PUBACK of this chunk in one write: one syscall instead of one per message
      this.socket.write(this.#ackBuffer.subarray(0, this.#acks * 4))
      this.#ackBuffer = Buffer.allocUnsafe(Math.max(64, this.#ackBuffer.length))
      this.#acks = 0
    }
  }

  #onPacket(first: number, buf: Buffer, start: number, end: number): void {
    switch (first >> 4) {
      case CONNACK:
        this.#connack?.(buf[start + 1]!)
        return
      case PUBLISH: {
        const qos = (first >> 1) & 3
        const topicLength = buf.readUInt16BE(start)
        const topic = buf.toString('utf8', start + 2, start + 2 + topicLength)
        let pos = start + 2 + topicLength
        if (qos > 0) {
          const id = buf.readUInt16BE(pos)
          pos += 2
          if ((this.#acks + 1) * 4 > this.#ackBuffer.length) {
            const grown = Buffer.allocUnsafe(this.#ackBuffer.length * 2)
            this.#ackBuffer.copy(grown, 0, 0, this.#acks * 4)
            this.#ackBuffer = grown
          }
          const at = this.#acks++ * 4
          this.#ackBuffer[at] = 0x40
          this.#ackBuffer[at + 1] = 2
          this.#ackBuffer.writeUInt16BE(id, at + 2)
        }
        this.onPublish?.(topic, buf.subarray(pos, end), (first & 1) === 1)
        return
      }
      case PUBACK:
      case UNSUBACK: {
        const id = buf.readUInt16BE(start)
        const w = this.#waiting.get(id)
        this.#waiting.delete(id)
        w?.resolve([])
        return
      }
      case SUBACK: {
        const id = buf.readUInt16BE(start)
        const w = this.#waiting.get(id)
        this.#waiting.delete(id)
        w?.resolve([...buf.subarray(start + 2, end)])
        return
      }
      case PINGRESP:
        this.#pings.shift()?.resolve([])
        return
      default:
        return
    }
  }
}

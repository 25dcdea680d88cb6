import { connect as tcpConnect } from 'node:net'
import { type Packet, generate, parser as packetParser } from 'mqtt-packet'
import type { Teardown } from './hub.ts'

/**
 * A raw MQTT connection over TCP: it sends exactly the bytes or packets a test writes (nothing of its
 * own, no PINGREQ), and records every packet the hub answers and when the hub closes the socket.
 */
export interface RawMqtt {
  readonly received: Packet[]
  /** True once the socket has closed (the hub closed it, or `destroy`). */
  readonly closed: boolean
  send(packet: Packet | Buffer): void
  /** Resolves true when the socket closes within `timeoutMs`, false when it is still open then. */
  closes(timeoutMs?: number): Promise<boolean>
  /** Resolves with the first received packet of `cmd`, or undefined when none arrives within `timeoutMs`. */
  next(cmd: Packet['cmd'], timeoutMs?: number): Promise<Packet | undefined>
  destroy(): void
}

export async function rawMqtt(t: Teardown, port: number): Promise<RawMqtt> {
  const socket = tcpConnect(port, '127.0.0.1')
  socket.setNoDelay(true)
  t.teardown(() => socket.destroy())
  const received: Packet[] = []
  const parser = packetParser({ protocolVersion: 4 })
  parser.on('packet', (packet: Packet) => received.push(packet))
  // what the hub sends is not under test here: an unparseable answer is simply not recorded
  parser.on('error', () => undefined)
  socket.on('data', (chunk: Buffer) => parser.parse(chunk))
  socket.on('error', () => undefined)
  let closed = false
  const whenClosed = new Promise<void>((resolve) =>
    socket.once('close', () => {
      closed = true
      resolve()
    }),
  )
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve())
    socket.once('error', reject)
  })
  const within = <T>(promise: Promise<T>, timeoutMs: number, fallback: T): Promise<T> =>
    new Promise((resolve) => {
      const timer = setTimeout(() => resolve(fallback), timeoutMs)
      // a rejection of `promise` stays unhandled and fails the test, as awaiting it would
      void promise.then((value) => {
        clearTimeout(timer)
        resolve(value)
      })
    })
  return {
    received,
    get closed() {
      return closed
    },
    send(packet) {
      if (!socket.writable) return
      socket.write(Buffer.isBuffer(packet) ? packet : generate(packet))
    },
    closes: (timeoutMs = 2000) =>
      within(
        whenClosed.then(() => true),
        timeoutMs,
        false,
      ),
    async next(cmd, timeoutMs = 2000) {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const found = received.find((p) => p.cmd === cmd)
        if (found || Date.now() >= deadline || closed) return found
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    },
    destroy: () => socket.destroy(),
  }
}

/** A well-formed MQTT 3.1.1 CONNECT with a token in the password field (clean session, keepalive 60 s). */
export function connectPacket(
  clientId: string,
  token: string,
  options: { clean?: boolean; keepalive?: number } = {},
): Packet {
  return {
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: options.clean ?? true,
    clientId,
    keepalive: options.keepalive ?? 60,
    username: 'token',
    password: Buffer.from(token),
  }
}

/** A CONNECT of MQTT 3.1.1 (level 4) as bytes, for the flag and level combinations mqtt-packet refuses to generate. */
export function connectBytes(options: {
  level?: number
  flags: number
  clientId: string
  /** Will topic and payload, username, password, in the order the flags announce them. */
  fields?: (string | Buffer)[]
}): Buffer {
  const string = (value: string | Buffer) => {
    const bytes = Buffer.isBuffer(value) ? value : Buffer.from(value)
    const length = Buffer.alloc(2)
    length.writeUInt16BE(bytes.length)
    return Buffer.concat([length, bytes])
  }
  const body = Buffer.concat([
    string('MQTT'),
    Buffer.from([options.level ?? 4, options.flags, 0, 60]),
    string(options.clientId),
    ...(options.fields ?? []).map(string),
  ])
  const length: number[] = []
  let rest = body.length
  do {
    length.push((rest % 128) | (rest >= 128 ? 0x80 : 0))
    rest = Math.floor(rest / 128)
  } while (rest > 0)
  return Buffer.concat([Buffer.from([0x10, ...length]), body])
}

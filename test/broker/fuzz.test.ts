import { connect as tcpConnect } from 'node:net'
import t from 'tap'
import { connectPacket } from '../helpers/raw-mqtt.ts'
import { type Packet, generate } from 'mqtt-packet'
import { actor, ok, roomy } from '../helpers/actors.ts'
import { startTestHub, waitUntil } from '../helpers/hub.ts'

/**
 * Malformed, mutated and random MQTT over many real connections, bounded in count and time, after
 * which the hub must still answer a real request within a second, hold no leftover connections and
 * not have crashed (it runs in this process: an uncaught error fails the file). Deterministic per
 * seed: FUZZ_SEED=<n> repeats a run; the seed is in the test's name, so every report names it.
 */

const SEED = Number(process.env.FUZZ_SEED ?? 20261130) >>> 0
const CONNECTIONS = 4000
const PACKETS_PER_CONNECTION = 12
const PARALLEL = 24
/** How long one connection may stay open; the hub usually closes it long before. */
const CONNECTION_MS = 150

/** mulberry32: a small, fast, seedable PRNG, so a failing run can be repeated exactly. */
function prng(seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const random = prng(SEED)
const int = (n: number) => Math.floor(random() * n)
const pick = <T>(items: readonly T[]): T => items[int(items.length)]!
const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)))
const topics = [
  'hub/status',
  'users/u1',
  'stages/s1/chat',
  'devices/d1/presence',
  'clients/fuzz/req/user.update',
  '#',
  '+/+',
  '$SYS/#',
  'a/\u0000/b',
]

const th = await startTestHub(t, roomy)
const token = th.token({ sub: 'fuzzer', name: 'Fuzz' })

/** A well-formed packet of a random kind, the seed of each mutation. */
function validPacket(clientId: string): Packet {
  const messageId = 1 + int(65535)
  switch (int(9)) {
    case 0:
      return {
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clean: random() < 0.5,
        clientId,
        keepalive: int(120),
        username: 'token',
        password: Buffer.from(token),
        ...(random() < 0.3
          ? {
              will: {
                topic: pick(topics),
                payload: bytes(int(32)),
                qos: pick([0, 1, 2] as const),
                retain: random() < 0.5,
              },
            }
          : {}),
      }
    case 1:
    case 2: {
      const qos = pick([0, 1, 2] as const)
      return {
        cmd: 'publish',
        topic:
          random() < 0.5
            ? `clients/${clientId}/req/${pick(['user.update', 'stage.create', 'x'])}`
            : pick(topics),
        payload:
          random() < 0.5
            ? Buffer.from(JSON.stringify({ id: `f${int(100)}`, params: { name: 'F' } }))
            : bytes(int(64)),
        qos,
        retain: random() < 0.2,
        dup: false,
        ...(qos > 0 ? { messageId } : {}),
      }
    }
    case 3:
      return {
        cmd: 'subscribe',
        messageId,
        subscriptions: [{ topic: pick(topics), qos: pick([0, 1, 2] as const) }],
      }
    case 4:
      return { cmd: 'unsubscribe', messageId, unsubscriptions: [pick(topics)] }
    case 5:
      return { cmd: pick(['puback', 'pubrec', 'pubrel', 'pubcomp'] as const), messageId }
    case 6:
      return { cmd: 'pingreq' }
    case 7:
      return { cmd: 'disconnect' }
    default:
      return { cmd: 'connack', returnCode: 0, sessionPresent: false }
  }
}

/** One malformed packet: a valid one mutated, a random header over random bytes, or noise. */
function malformed(clientId: string): Buffer {
  const kind = int(10)
  if (kind === 0) return bytes(1 + int(48))
  if (kind === 1) {
    // a random fixed header (any type and flags) with a truthful or lying remaining length
    const body = bytes(int(40))
    return Buffer.concat([Buffer.from([int(256), random() < 0.5 ? body.length : int(256)]), body])
  }
  const packet = Buffer.from(generate(validPacket(clientId)))
  const mutations = 1 + int(4)
  let out = packet
  for (let i = 0; i < mutations; i++) {
    switch (int(5)) {
      case 0: {
        const at = int(out.length)
        out[at] = out[at]! ^ (1 << int(8))
        break
      }
      case 1:
        out[int(out.length)] = int(256)
        break
      case 2:
        out = out.subarray(0, int(out.length))
        break
      case 3: {
        const at = int(out.length + 1)
        out = Buffer.concat([out.subarray(0, at), bytes(1 + int(8)), out.subarray(at)])
        break
      }
      default:
        // the remaining-length byte(s): a lie about what follows
        if (out.length > 1) out[1] = int(256)
    }
  }
  return Buffer.from(out)
}

interface Outcome {
  packets: number
  /** The hub answered CONNACK 0, so later packets reached Aedes' handlers. */
  accepted: boolean
  /** The hub closed the connection (rather than this test at CONNECTION_MS). */
  closedByHub: boolean
}

/**
 * One connection: half of them first connect properly and wait for the CONNACK, so that what follows
 * reaches Aedes' handlers of a connected client; then the stream of packets.
 */
function fuzzConnection(index: number): Promise<Outcome> {
  const clientId = `fuzz-${index}`
  const connect = random() < 0.5 ? Buffer.from(generate(connectOf(clientId))) : undefined
  const chunks: Buffer[] = []
  for (let i = 0; i < PACKETS_PER_CONNECTION; i++) {
    chunks.push(random() < 0.7 ? malformed(clientId) : Buffer.from(generate(validPacket(clientId))))
  }
  // sent in a few writes at random boundaries, so packets also arrive split across reads
  const stream = Buffer.concat(chunks)
  const cuts = Array.from({ length: 1 + int(4) }, () => int(stream.length)).sort((a, b) => a - b)
  return new Promise((resolve) => {
    const socket = tcpConnect(th.hub.ports.mqtt, '127.0.0.1')
    let closedByHub = true
    let first: Buffer | undefined
    const timer = setTimeout(() => {
      closedByHub = false
      socket.destroy()
    }, CONNECTION_MS)
    socket.on('error', () => undefined)
    const sendStream = () => {
      let from = 0
      for (const cut of [...cuts, stream.length]) {
        if (socket.writable) socket.write(stream.subarray(from, cut))
        from = cut
      }
    }
    socket.on('data', (data: Buffer) => {
      if (first) return
      first = data
      if (connect) sendStream()
    })
    socket.on('close', () => {
      clearTimeout(timer)
      const accepted = first !== undefined && first.subarray(0, 4).equals(Buffer.from([0x20, 2, 0, 0]))
      resolve({ packets: chunks.length + (connect ? 1 : 0), accepted, closedByHub })
    })
    socket.once('connect', () => (connect ? socket.write(connect) : sendStream()))
  })
}

function connectOf(clientId: string): Packet {
  return connectPacket(clientId, token, { keepalive: 30 })
}

t.test(
  `tens of thousands of malformed MQTT packets leave the hub serving within a second (FUZZ_SEED=${SEED})`,
  async (t) => {
    const started = Date.now()
    let sent = 0
    let accepted = 0
    let closedByHub = 0
    let next = 0
    await Promise.all(
      Array.from({ length: PARALLEL }, async () => {
        while (next < CONNECTIONS) {
          const outcome = await fuzzConnection(next++)
          sent += outcome.packets
          if (outcome.accepted) accepted++
          if (outcome.closedByHub) closedByHub++
        }
      }),
    )
    const seconds = (Date.now() - started) / 1000
    t.comment(
      `${sent} packets over ${CONNECTIONS} connections in ${seconds.toFixed(1)} s: ` +
        `${accepted} accepted before their malformed packets, ${closedByHub} closed by the hub`,
    )
    t.ok(sent >= 40_000, `${sent} packets sent`)

    const aedes = th.hub.broker.aedes as unknown as { connectedClients: number }
    await waitUntil(
      () => aedes.connectedClients === 0,
      'every fuzzing connection is gone from the broker',
      5000,
    )
    t.equal(aedes.connectedClients, 0, 'no connection left behind')

    const probe = await actor(th, 'Probe')
    const asked = Date.now()
    await ok(probe, 'user.update', { name: 'Still here' })
    const latency = Date.now() - asked
    t.ok(latency < 1000, `a real request is answered in ${latency} ms`)
    const health = await fetch(`${th.httpUrl}/readyz`)
    t.equal(health.status, 200, 'and the hub reports itself ready')
  },
)

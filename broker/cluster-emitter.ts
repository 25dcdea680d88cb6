import { createRequire } from 'node:module'
import type { Redis } from 'ioredis'
import type { Logger } from 'pino'
import { type Topic, findTopic, topicCatalogue, topics } from '../schemas/topics.ts'
import { LOCAL_BROKER_SUFFIX } from './persistence.ts'

const require = createRequire(import.meta.url)

/** A message as Aedes hands it to its emitter (an aedes-packet). */
export interface BusPacket {
  topic: string
  payload: Buffer
  qos?: number
  retain?: boolean
  brokerId?: string
  brokerCounter?: number
  [field: string]: unknown
}

type Listener = (packet: BusPacket, done: () => void) => void

/** The mqemitter interface Aedes uses (`opts.mq`): nothing else of it is called. */
interface Emitter {
  on(topic: string, listener: Listener, done?: () => void): unknown
  removeListener(topic: string, listener: Listener, done?: () => void): unknown
  emit(packet: BusPacket, done?: (err?: Error) => void): void
  close(done: () => void): void
}

interface RedisEmitter extends Emitter {
  state: { on(event: 'error', listener: (err: Error) => void): void }
  /**
   * mqemitter-redis's delivery to this process's listeners of a message Redis brought (mqemitter's own
   * emit, which it keeps under this name): the ClusterEmitter runs `onArrival` before it.
   */
  _emit(packet: BusPacket, done?: () => void): void
}

const mqemitter = require('mqemitter') as (options: object) => Emitter
const { MQEmitterRedisPrefix } = require('mqemitter-redis') as {
  MQEmitterRedisPrefix: new (prefix: string, options: object) => RedisEmitter
}

/** Aedes' emitter options (aedes.js): [MQTT-4.7.1-3] empty levels match. */
const EMITTER_OPTIONS = { concurrency: 100, matchEmptyLevels: true }

/**
 * Aedes' own `$SYS/{broker}/…` topics that must cross processes: `new/clients` closes a client id's
 * connection on every other process (session takeover), `birth` resets what each connection has seen
 * of a restarted process's message counter, `heartbeat` keeps the processes' list of live brokers.
 * Aedes' other `$SYS` topics (a connection's subscribes and disconnects) concern its own process only.
 */
const SYS_ACROSS = new Set(['new/clients', 'birth', 'heartbeat'])
/** `$SYS/`: the catalogue's broker statistics filter without its `#`. */
const SYS = topics.brokerStatistics.pattern.slice(0, -1)
const NEW_CLIENTS_FILTER = `${SYS}+/new/clients`

/**
 * Whether the hub writes a topic as state projected from the store's commits: retained `state` topics
 * only the hub publishes (hub/status too, which each process says itself). Every process projects every
 * commit, so these never cross processes.
 */
export function isHubProjected(entry: Topic): boolean {
  return entry.kind === 'state' && entry.publishers.every((party) => party === 'the hub')
}

/** Topics kept on the process that publishes them: hub-projected state and consumed messages. */
function staysLocal(entry: Topic): boolean {
  return isHubProjected(entry) || entry.receivers === 'nobody'
}

/**
 * Which emitter carries a concrete topic: `local` for hub-projected state, hub/status, consumed
 * messages and Aedes' per-process `$SYS` topics; `bus` for everything else (requests' responses,
 * presence, reported state, chat and other events, media signals, takeovers).
 */
export function routeOf(topic: string): 'local' | 'bus' {
  if (topic.startsWith(SYS)) {
    const rest = topic.slice(topic.indexOf('/', 5) + 1)
    return SYS_ACROSS.has(rest) ? 'bus' : 'local'
  }
  const found = findTopic(topic)
  return found && staysLocal(found.entry) ? 'local' : 'bus'
}

/** The catalogue's patterns of topics carried by the bus, as levels (`{x}` = any one level). */
const busPatterns: readonly string[][] = topicCatalogue
  .filter((entry) => !staysLocal(entry) && !entry.pattern.startsWith('$'))
  .map((entry) => entry.pattern.split('/'))

/** Whether some topic can match both the MQTT filter and the catalogue pattern. */
function overlaps(filter: readonly string[], pattern: readonly string[], i = 0): boolean {
  if (filter[i] === '#' || pattern[i] === '#') return true
  if (i === filter.length || i === pattern.length) return i === filter.length && i === pattern.length
  const f = filter[i]!
  const p = pattern[i]!
  const any = f === '+' || (p.startsWith('{') && p.endsWith('}'))
  return (any || f === p) && overlaps(filter, pattern, i + 1)
}

/**
 * Whether a subscription can match a topic the bus carries. A filter that can only match
 * hub-projected state (`users/u/#`: profile, devices, stage summaries, mix) listens locally alone and
 * costs Redis nothing.
 */
export function needsBus(filter: string): boolean {
  if (filter.startsWith('$')) return filter.startsWith(SYS) || filter === SYS.slice(0, -1)
  const levels = filter.split('/')
  return busPatterns.some((pattern) => overlaps(levels, pattern))
}

/** Retained topics the bus carries (clients' presence): every process keeps them (ClusterEmitter). */
const retainedBusFilters: readonly string[] = topicCatalogue
  .filter((entry) => entry.retained && !staysLocal(entry))
  .map((entry) => entry.filter({}))

export interface ClusterEmitterOptions {
  /** Aedes' broker id, the process id: a packet's `brokerId` says which process published it. */
  processId: string
  /** The deployment's Redis connection (ClusterLink.commands): the bus opens two of its own like it. */
  redis: Redis
  /** Prefix of the bus's Redis channels (ClusterLink.key('mqtt/')). */
  channelPrefix: string
  log: Logger
}

/**
 * Aedes' message emitter in a cluster of hub processes (docs/cluster.md#message-bus): hub-projected
 * state topics stay on a local mqemitter (every process projects every commit itself), everything
 * else goes through mqemitter-redis, whose Redis channels deliver it to every process, this one
 * included. A topic is carried by exactly one of the two, and a subscriber listens on each that may
 * carry what it subscribed to, so each message reaches each subscriber once.
 *
 * Aedes drops a message whose counter is not above the last one a connection received from its
 * publishing broker (aedes' per-connection dedupe). Messages this process sends locally arrive at
 * once, and its bus messages after a Redis round trip, so the two would overtake each other within
 * one counter sequence: local ones carry `brokerId` `{process}${LOCAL_BROKER_SUFFIX}`, a sequence of
 * their own.
 */
export class ClusterEmitter implements Emitter {
  readonly processId: string
  readonly #local: Emitter
  readonly #bus: RedisEmitter
  /** The bus's own Redis connections (publish, subscribe). */
  readonly #connections: readonly Redis[]
  readonly #log: Logger
  /**
   * Set by the broker: a connection of this client id opened on another process. Returning false
   * keeps this process's connection (it is the newer one), and Aedes does not close it.
   */
  onTakeover: ((clientId: string, processId: string) => boolean) | undefined
  /** Set by the broker: this process's announcement of a connection came back from Redis. */
  onAnnounced: ((clientId: string) => void) | undefined
  /** Set by the persistence: a retained message the bus carried (from any process, this one too). */
  onRetained: ((packet: BusPacket, origin: string) => void) | undefined
  /**
   * Set by the broker: a message the bus brought, before any listener here gets it (a promise holds
   * it, and every later one, until it settles: the order of arrival is kept).
   */
  onArrival: ((packet: BusPacket) => Promise<void> | undefined) | undefined
  /** The arrivals held by an `onArrival` promise, in order; undefined when none is. */
  #held: Promise<void> | undefined
  readonly #channelPrefix: string
  readonly #wrapped = new WeakMap<Listener, Listener>()

  private constructor(options: ClusterEmitterOptions, bus: RedisEmitter, connections: readonly Redis[]) {
    this.processId = options.processId
    this.#connections = connections
    this.#log = options.log
    this.#local = mqemitter(EMITTER_OPTIONS)
    this.#bus = bus
    this.#channelPrefix = options.channelPrefix
    const deliver = bus._emit
    if (typeof deliver !== 'function') throw new Error('mqemitter-redis changed: its _emit is missing')
    bus._emit = (packet, done) => this.#arrive(packet, (p) => deliver.call(bus, p, done))
    bus.state.on('error', (err) =>
      this.#log.warn({ err }, 'message bus: Redis connection error (ioredis reconnects)'),
    )
  }

  /** Opens the bus's two Redis connections and listens for the retained topics it carries. */
  static async open(options: ClusterEmitterOptions): Promise<ClusterEmitter> {
    const connection = (role: string) =>
      options.redis.duplicate({ lazyConnect: true, connectionName: `${options.processId}:bus-${role}` })
    const pubConn = connection('publish')
    const subConn = connection('subscribe')
    try {
      await Promise.all([pubConn.connect(), subConn.connect()])
    } catch (err) {
      pubConn.disconnect()
      subConn.disconnect()
      throw new Error(`the message bus cannot reach Redis: ${(err as Error).message}`, { cause: err })
    }
    const bus = new MQEmitterRedisPrefix(options.channelPrefix, { ...EMITTER_OPTIONS, pubConn, subConn })
    const emitter = new ClusterEmitter(options, bus, [pubConn, subConn])
    await Promise.all(
      retainedBusFilters.map(
        (filter) =>
          new Promise<void>((resolve) =>
            bus.on(
              filter,
              (packet, done) => {
                if (packet.retain) emitter.onRetained?.(packet, packet.brokerId ?? '')
                done()
              },
              resolve,
            ),
          ),
      ),
    )
    return emitter
  }

  on(topic: string, listener: Listener, done?: () => void): this {
    const wrapped = this.#wrap(topic, listener)
    this.#local.on(topic, wrapped)
    if (needsBus(topic)) this.#bus.on(topic, wrapped, done)
    else if (done) setImmediate(done)
    return this
  }

  removeListener(topic: string, listener: Listener, done?: () => void): this {
    const wrapped = this.#wrapped.get(listener) ?? listener
    this.#local.removeListener(topic, wrapped)
    if (needsBus(topic)) this.#bus.removeListener(topic, wrapped, done)
    else if (done) setImmediate(done)
    return this
  }

  emit(packet: BusPacket, done?: (err?: Error) => void): void {
    if (routeOf(packet.topic) === 'bus') return this.#bus.emit(packet, done)
    if (packet.brokerId === this.processId) packet.brokerId = this.processId + LOCAL_BROKER_SUFFIX
    this.#local.emit(packet, done)
  }

  close(done: () => void = () => {}): void {
    if (this.#connections.every((connection) => connection.status === 'ready')) {
      this.#bus.close(() => this.#local.close(done))
      return
    }
    // mqemitter-redis QUITs and waits for both connections to end, which a Redis that is unreachable
    // never lets happen: the process could not end. Drop them instead.
    for (const connection of this.#connections) connection.disconnect()
    this.#local.close(done)
  }

  /** A message from Redis (its topic still under the channel prefix) on its way to the listeners. */
  #arrive(packet: BusPacket, deliver: (packet: BusPacket) => void): void {
    const waiting = this.onArrival?.({ ...packet, topic: packet.topic.slice(this.#channelPrefix.length) })
    if (!waiting && !this.#held) return deliver(packet)
    const delivered = (this.#held ?? Promise.resolve())
      .then(() => waiting)
      .catch((err: unknown) => this.#log.error({ err, topic: packet.topic }, 'message bus: arrival failed'))
      .then(() => deliver(packet))
    this.#held = delivered
    void delivered.then(() => {
      if (this.#held === delivered) this.#held = undefined
    })
  }

  /**
   * Aedes' takeover listener closes the client id's connection here when another process announces
   * a new one: the broker hears of it first, so the closing connection is superseded before its will,
   * and may keep its connection when that announcement is older than its own (see HubBroker).
   */
  #wrap(topic: string, listener: Listener): Listener {
    if (topic !== NEW_CLIENTS_FILTER) return listener
    const wrapped: Listener = (packet, done) => {
      const from = packet.topic.split('/')[1]!
      const clientId = packet.payload.toString('utf8')
      if (from === this.processId) this.onAnnounced?.(clientId)
      else if (this.onTakeover?.(clientId, from) === false) return done()
      listener(packet, done)
    }
    this.#wrapped.set(listener, wrapped)
    return wrapped
  }
}

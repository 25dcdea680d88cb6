import { createRequire } from 'node:module'
import { Readable } from 'node:stream'
import type { Aedes } from 'aedes'
import type { Logger } from 'pino'
import { soleRecipient } from './acl.ts'
import { RetainedIndex } from './retained-index.ts'

const require = createRequire(import.meta.url)
// aedes' own in-memory persistence (promise API); we extend it rather than re-implement sessions and QoS
const MemoryPersistence = require('aedes-persistence/asyncPersistence.js') as new () => AsyncPersistence

interface RetainedPacket {
  topic: string
  payload: Buffer
  qos: 0 | 1 | 2
  retain: boolean
}

/** What a retained message is kept as: all Aedes reads back when it sends one to a new subscriber. */
interface StoredRetained extends RetainedPacket {
  cmd: 'publish'
}

/** A QoS 1 message queued for a persistent session: Aedes' Packet (aedes-packet) and its ids. */
interface QueuedPacket {
  topic: string
  payload: Buffer
  brokerId?: string
  brokerCounter?: number
  messageId?: number
}

interface AsyncPersistence {
  setup(broker: Aedes): Promise<void>
  cleanSubscriptions(client: { id: string }): Promise<void>
  cleanIncoming(client: { id: string }): Promise<void>
  addSubscriptions(client: { id: string }, subs: object[]): Promise<void>
  subscriptionsByTopic(topic: string): Promise<object[]>
  storeRetained(packet: RetainedPacket): Promise<void>
  createRetainedStream(pattern: string): Readable
  createRetainedStreamCombi(patterns: string[]): Readable
}

export interface RetainedRecord {
  topic: string
  payload: Buffer
  qos: 0 | 1 | 2
}

/** Where retained messages survive restarts: the hub's store. `null` deletes a topic. */
export interface RetainedArchive {
  load(): AsyncIterable<RetainedRecord>
  save(changes: ReadonlyMap<string, RetainedRecord | null>): Promise<void>
}

/**
 * How long retained changes gather before they are archived in one store transaction. The archive
 * only serves restarts (the store republishes every state topic anyway, and presence is reset), so a
 * crash losing this window costs nothing; writing per event-loop turn cost a second fsync per request.
 */
const ARCHIVE_DELAY_MS = 100
/** Topics archived per store transaction. */
const ARCHIVE_CHUNK = 1000

const Packet = (
  require('aedes-persistence/asyncPersistence.js') as { Packet: new (p: object) => QueuedPacket }
).Packet

/**
 * Appended by a cluster's emitter (broker/cluster-emitter.ts) to the broker id of the messages a
 * process keeps local, so they count apart from its bus messages.
 */
export const LOCAL_BROKER_SUFFIX = '#local'

/** Per persistent session: QoS 1 messages queued or sent and not yet acknowledged (PUBACK). */
export interface SessionQueueLimits {
  maxMessages: number
  maxBytes: number
}

/** What the broker hears of the session queues. */
export interface SessionQueueEvents {
  /** Whether the session's client is connected. */
  connected(clientId: string): boolean
  /**
   * A session's queue was full and lost `dropped` messages. `unacknowledged`: it is connected and
   * every message in it was sent and not acknowledged, so its client reads without PUBACK.
   */
  overflow(clientId: string, dropped: number, unacknowledged: boolean): void
}

interface SessionQueue {
  packets: QueuedPacket[]
  bytes: number
}

const queuedBytes = (packet: QueuedPacket): number => packet.topic.length + packet.payload.length

const stored = (r: RetainedRecord): StoredRetained => ({
  cmd: 'publish',
  topic: r.topic,
  payload: r.payload,
  qos: r.qos,
  retain: true,
})

/**
 * Aedes' memory persistence (subscriptions, wills) with bounded session queues and the hub's own
 * retained-message store. Aedes keeps every QoS 1 message for a persistent session in the
 * persistence's queue until the client acknowledges it, offline or connected, with no limit: here
 * each session's queue holds at most `SessionQueueLimits` (oldest dropped first, as Mosquitto's
 * max_queued_messages), and an emptied queue is forgotten. Retained messages live in a topic trie (RetainedIndex), so a SUBSCRIBE costs what its filters match rather than a scan of every
 * retained topic, and a write-behind archive in the hub's store, so retained topics (device presence,
 * state) outlive a restart and orphans can be found and cleared. Archive writes are coalesced per
 * topic over ARCHIVE_DELAY_MS and written behind in order; `flush` writes and waits for them.
 */
export class DurableRetainedPersistence extends MemoryPersistence {
  readonly #archive: RetainedArchive
  readonly #log: Logger
  readonly #retained = new RetainedIndex<StoredRetained>()
  #pending = new Map<string, RetainedRecord | null>()
  #writing: Promise<void> = Promise.resolve()
  readonly #sessionLimits: SessionQueueLimits
  /** Replaces the base class's unbounded queues (its own stay empty: every queue method is here). */
  readonly #outgoing = new Map<string, SessionQueue>()
  /** Queued messages sent on their session's current connection and not yet acknowledged. */
  #sent = new WeakSet<QueuedPacket>()
  /** Set by the broker that uses this persistence. */
  sessionEvents: SessionQueueEvents | undefined
  /** In a cluster (joinCluster): which retained topics the message bus carries, and this process. */
  #cluster: { carries(topic: string): boolean; processId: string } | undefined
  /** Whether a persistent session ever subscribed here (then messages from the bus are queued). */
  #sessionSubscribed = false
  /** Bus-carried topics that arrived before the archive was loaded: newer than what it holds. */
  #arrivedEarly: Set<string> | undefined = new Set()

  constructor(archive: RetainedArchive, log: Logger, sessionLimits: SessionQueueLimits) {
    super()
    this.#archive = archive
    this.#log = log
    this.#sessionLimits = sessionLimits
  }

  override async setup(broker: Aedes): Promise<void> {
    await super.setup(broker)
    const cluster = this.#cluster
    for await (const record of this.#archive.load()) {
      // in a cluster only what the bus carries is archived: each process projects the hub's own state
      if (cluster && (!cluster.carries(record.topic) || this.#arrivedEarly?.has(record.topic))) continue
      this.#retained.set(record.topic, stored(record))
    }
    this.#arrivedEarly = undefined
  }

  /**
   * Makes this persistence one process's of a cluster (docs/cluster.md#message-bus). Retained topics
   * the bus carries (clients' presence) are stored when they arrive from the bus, on every process and
   * in the bus's order, this process's own publishes included (`storeArrived`), and archived only by
   * the process that received them. The hub's projected state is kept here and not archived: every
   * process republishes it from the store when it starts. Call before Aedes sets this up.
   */
  joinCluster(cluster: { carries(topic: string): boolean; processId: string }): void {
    this.#cluster = cluster
  }

  /**
   * A retained message the bus carried, from `origin` (a process id). Archived when this process
   * received it from its client (or published it itself).
   */
  storeArrived(packet: RetainedPacket, origin: string): void {
    this.#arrivedEarly?.add(packet.topic)
    this.#storeRetained(packet, origin === this.#cluster?.processId)
  }

  override async storeRetained(packet: RetainedPacket): Promise<void> {
    const cluster = this.#cluster
    if (!cluster) return this.#storeRetained(packet, true)
    // the bus carries it back to this process too: stored then, in the order every process sees
    if (cluster.carries(packet.topic)) return
    this.#storeRetained(packet, false)
  }

  /**
   * Aedes replays the stored wills of brokers whose heartbeat stopped (3 heartbeats, checked every 4).
   * This memory persistence only holds this process's own wills, of connections still open: a replay
   * (its own heartbeat held up, by a bus outage in a cluster) would publish the wills of live
   * connections. A dead process's devices are healed by the cluster's liveness instead.
   */
  streamWill(): Readable {
    return Readable.from([])
  }

  #storeRetained(packet: RetainedPacket, archive: boolean): void {
    if (packet.payload.length === 0) {
      if (this.#retained.delete(packet.topic) && archive) this.#queue(packet.topic, null)
      return
    }
    const record = { topic: packet.topic, payload: packet.payload, qos: packet.qos }
    const previous = this.#retained.set(packet.topic, stored(record))
    if (previous?.payload.equals(packet.payload) || !archive) return
    this.#queue(packet.topic, record)
  }

  override createRetainedStream(pattern: string): Readable {
    return Readable.from(this.#retained.match(pattern))
  }

  /** One SUBSCRIBE's filters: each filter's matches in turn, as Aedes' own persistence yields them. */
  override createRetainedStreamCombi(patterns: string[]): Readable {
    const out: StoredRetained[] = []
    for (const pattern of patterns) this.#retained.match(pattern, out)
    return Readable.from(out)
  }

  async outgoingEnqueue(sub: { clientId: string }, packet: QueuedPacket): Promise<void> {
    this.#enqueue(sub.clientId, packet)
  }

  /** A client's own topics are queued for that client alone, as they are delivered (Acl.canReceive). */
  async outgoingEnqueueCombi(subs: { clientId: string }[], packet: QueuedPacket): Promise<void> {
    const sole = soleRecipient(packet.topic)
    for (const sub of subs)
      if (sole === undefined || sole === sub.clientId) this.#enqueue(sub.clientId, packet)
  }

  /**
   * A queued message is being sent: it gets its packet id (the same lookup as Aedes' own). One the
   * full queue dropped meanwhile is sent all the same, once, and no longer kept for redelivery: Aedes'
   * own `no such packet` here would close the connection of a client resuming a full session.
   */
  async outgoingUpdate(client: { id: string }, packet: QueuedPacket): Promise<void> {
    const packets = this.#outgoing.get(client.id)?.packets ?? []
    // a message a cluster process kept local was queued under its broker id before it was marked
    const brokerId = packet.brokerId?.endsWith(LOCAL_BROKER_SUFFIX)
      ? packet.brokerId.slice(0, -LOCAL_BROKER_SUFFIX.length)
      : packet.brokerId
    for (let i = 0; i < packets.length; i++) {
      const queued = packets[i]!
      if (queued.brokerId === brokerId) {
        if (queued.brokerCounter === packet.brokerCounter) {
          queued.messageId = packet.messageId
          this.#sent.add(queued)
          return
        }
      } else if (queued.messageId === packet.messageId) {
        packets[i] = packet
        this.#sent.add(packet)
        return
      }
    }
  }

  /** PUBACK (or a message the ACL no longer lets through): it leaves the queue. */
  async outgoingClearMessageId(
    client: { id: string },
    packet: QueuedPacket,
  ): Promise<QueuedPacket | undefined> {
    const queue = this.#outgoing.get(client.id)
    if (!queue) return undefined
    const i = queue.packets.findIndex((queued) => queued.messageId === packet.messageId)
    if (i < 0) return undefined
    const [cleared] = queue.packets.splice(i, 1)
    queue.bytes -= queuedBytes(cleared!)
    if (queue.packets.length === 0) this.#outgoing.delete(client.id)
    return cleared
  }

  outgoingStream(client: { id: string }): Readable {
    // a copy: the queue changes while Aedes sends it
    return Readable.from([...(this.#outgoing.get(client.id)?.packets ?? [])])
  }

  /** A clean session: Aedes discards the subscriptions; its queue goes with them. */
  override async cleanSubscriptions(client: { id: string }): Promise<void> {
    this.#outgoing.delete(client.id)
    await super.cleanSubscriptions(client)
  }

  /** Ends a persistent session that is not connected: its subscriptions, queue and QoS state go. */
  async endSession(clientId: string): Promise<void> {
    await this.cleanSubscriptions({ id: clientId })
    await this.cleanIncoming({ id: clientId })
  }

  /**
   * A QoS 1 message another process of the cluster published: queued for this process's persistent
   * sessions that subscribed to it, as Aedes queues what this process publishes (it only knows its
   * own process's sessions). Undefined when no persistent session ever subscribed here.
   */
  enqueueArrived(packet: QueuedPacket): Promise<void> | undefined {
    if (!this.#sessionSubscribed) return undefined
    return (async () => {
      let subs = (await this.subscriptionsByTopic(packet.topic)) as { clientId: string; topic: string }[]
      // Aedes' rule for `$SYS` topics: a session's `#` and `+/…` filters do not take them
      if (packet.topic.startsWith('$')) subs = subs.filter((sub) => !/^[#+]/.test(sub.topic))
      if (subs.length > 0) await this.outgoingEnqueueCombi(subs, packet)
    })()
  }

  /** Persistent sessions' subscriptions are stored here (a clean session's are not). */
  override async addSubscriptions(client: { id: string }, subs: object[]): Promise<void> {
    this.#sessionSubscribed = true
    await super.addSubscriptions(client, subs)
  }

  /** A session's new connection: nothing in its queue has been sent on it yet. */
  sessionConnected(clientId: string): void {
    for (const packet of this.#outgoing.get(clientId)?.packets ?? []) this.#sent.delete(packet)
  }

  /** Messages and bytes queued for a session now. */
  queued(clientId: string): { messages: number; bytes: number } {
    const queue = this.#outgoing.get(clientId)
    return { messages: queue?.packets.length ?? 0, bytes: queue?.bytes ?? 0 }
  }

  #enqueue(clientId: string, packet: QueuedPacket): void {
    let queue = this.#outgoing.get(clientId)
    if (!queue) this.#outgoing.set(clientId, (queue = { packets: [], bytes: 0 }))
    const copy = new Packet(packet)
    queue.packets.push(copy)
    queue.bytes += queuedBytes(copy)
    const { maxMessages, maxBytes } = this.#sessionLimits
    const packets = queue.packets
    if (packets.length <= maxMessages && queue.bytes <= maxBytes) return
    // offline, the oldest message goes; connected, the oldest not yet sent (a backlog being resumed),
    // unless every message before the new one was sent and is still unacknowledged
    const connected = this.sessionEvents?.connected(clientId) ?? false
    let dropped = 0
    let unacknowledged = false
    while (packets.length > 1 && (packets.length > maxMessages || queue.bytes > maxBytes)) {
      let i = connected ? packets.findIndex((p) => !this.#sent.has(p)) : 0
      if (i === packets.length - 1) {
        unacknowledged = true
        i = 0
      }
      queue.bytes -= queuedBytes(packets.splice(i, 1)[0]!)
      dropped++
    }
    this.sessionEvents?.overflow(clientId, dropped, unacknowledged)
  }

  /** Every retained topic held now. */
  retainedTopics(): string[] {
    return this.#retained.values().map((packet) => packet.topic)
  }

  /** Resolves once every retained change so far is in the archive. */
  async flush(): Promise<void> {
    while (this.#pending.size > 0) this.#writeBehind()
    await this.#writing
  }

  #queue(topic: string, record: RetainedRecord | null): void {
    const first = this.#pending.size === 0
    this.#pending.set(topic, record)
    if (first) setTimeout(() => this.#writeBehind(), ARCHIVE_DELAY_MS).unref()
  }

  #writeBehind(): void {
    if (this.#pending.size === 0) return
    const batch = this.#pending
    this.#pending = new Map()
    // in chunks, yielding between them: the store's transactions run synchronously, and the archive of
    // a start-up republish (100k topics) in one would stall every client for seconds
    let chunk = new Map<string, RetainedRecord | null>()
    const chunks = [chunk]
    for (const [topic, record] of batch) {
      if (chunk.size >= ARCHIVE_CHUNK) chunks.push((chunk = new Map<string, RetainedRecord | null>()))
      chunk.set(topic, record)
    }
    for (const [i, part] of chunks.entries()) {
      this.#writing = this.#writing
        .then(() => (i === 0 ? undefined : new Promise<void>((resolve) => setImmediate(resolve))))
        .then(() => this.#archive.save(part))
        .catch((err: unknown) =>
          this.#log.error({ err, topics: part.size }, 'could not archive retained messages'),
        )
    }
  }
}

import { createRequire } from 'node:module'
import { Readable } from 'node:stream'
import type { Aedes } from 'aedes'
import type { Logger } from 'pino'
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

interface AsyncPersistence {
  setup(broker: Aedes): Promise<void>
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

const stored = (r: RetainedRecord): StoredRetained => ({
  cmd: 'publish',
  topic: r.topic,
  payload: r.payload,
  qos: r.qos,
  retain: true,
})

/**
 * Aedes' memory persistence (sessions, QoS, wills) with the hub's own retained-message store: a topic
 * trie (RetainedIndex), so a SUBSCRIBE costs what its filters match rather than a scan of every
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

  constructor(archive: RetainedArchive, log: Logger) {
    super()
    this.#archive = archive
    this.#log = log
  }

  override async setup(broker: Aedes): Promise<void> {
    await super.setup(broker)
    for await (const record of this.#archive.load()) this.#retained.set(record.topic, stored(record))
  }

  override async storeRetained(packet: RetainedPacket): Promise<void> {
    if (packet.payload.length === 0) {
      if (this.#retained.delete(packet.topic)) this.#queue(packet.topic, null)
      return
    }
    const record = { topic: packet.topic, payload: packet.payload, qos: packet.qos }
    const previous = this.#retained.set(packet.topic, stored(record))
    if (previous?.payload.equals(packet.payload)) return
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
      if (chunk.size >= ARCHIVE_CHUNK) chunks.push((chunk = new Map()))
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

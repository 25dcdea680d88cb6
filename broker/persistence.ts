import { createRequire } from 'node:module'
import type { Aedes } from 'aedes'
import type { Logger } from 'pino'

const require = createRequire(import.meta.url)
// aedes' own in-memory persistence (promise API); we extend it rather than re-implement sessions and QoS
const MemoryPersistence = require('aedes-persistence/asyncPersistence.js') as new () => AsyncPersistence
const AedesPacket = require('aedes-packet') as new (packet: object, broker: Aedes) => RetainedPacket

interface RetainedPacket {
  topic: string
  payload: Buffer
  qos: 0 | 1 | 2
  retain: boolean
}

interface AsyncPersistence {
  setup(broker: Aedes): Promise<void>
  storeRetained(packet: RetainedPacket): Promise<void>
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
 * Aedes' memory persistence whose retained messages are also archived in the store, so retained
 * topics (device presence, state) outlive a restart and orphans can be found and cleared. Archive
 * writes are coalesced per topic and written behind in order; `flush` waits for them.
 */
export class DurableRetainedPersistence extends MemoryPersistence {
  readonly #archive: RetainedArchive
  readonly #log: Logger
  readonly #current = new Map<string, Buffer>()
  #pending = new Map<string, RetainedRecord | null>()
  #writing: Promise<void> = Promise.resolve()

  constructor(archive: RetainedArchive, log: Logger) {
    super()
    this.#archive = archive
    this.#log = log
  }

  override async setup(broker: Aedes): Promise<void> {
    await super.setup(broker)
    for await (const record of this.#archive.load()) {
      await super.storeRetained(new AedesPacket({ cmd: 'publish', ...record, retain: true }, broker))
      this.#current.set(record.topic, record.payload)
    }
  }

  override async storeRetained(packet: RetainedPacket): Promise<void> {
    await super.storeRetained(packet)
    const previous = this.#current.get(packet.topic)
    if (packet.payload.length === 0) {
      if (previous === undefined) return
      this.#current.delete(packet.topic)
      this.#queue(packet.topic, null)
    } else {
      if (previous?.equals(packet.payload)) return
      this.#current.set(packet.topic, packet.payload)
      this.#queue(packet.topic, { topic: packet.topic, payload: packet.payload, qos: packet.qos })
    }
  }

  /** Every retained topic held now. */
  retainedTopics(): IterableIterator<string> {
    return this.#current.keys()
  }

  /** Resolves once every retained change so far is in the archive. */
  async flush(): Promise<void> {
    while (this.#pending.size > 0) this.#writeBehind()
    await this.#writing
  }

  #queue(topic: string, record: RetainedRecord | null): void {
    const first = this.#pending.size === 0
    this.#pending.set(topic, record)
    if (first) setImmediate(() => this.#writeBehind())
  }

  #writeBehind(): void {
    if (this.#pending.size === 0) return
    const batch = this.#pending
    this.#pending = new Map()
    this.#writing = this.#writing
      .then(() => this.#archive.save(batch))
      .catch((err: unknown) =>
        this.#log.error({ err, topics: batch.size }, 'could not archive retained messages'),
      )
  }
}

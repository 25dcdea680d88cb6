import type { Logger } from 'pino'

/** Writes retained topics. The hub's broker implements it; services never publish state any other way. */
export interface RetainedWriter {
  publish(topic: string, payload: Buffer | string, options: { qos: 1; retain: boolean }): Promise<void>
}

/** A service's view of its state topics, so the hub can republish everything from the store on start. */
export interface StateSource {
  name: string
  /** Every state topic the store backs right now, with its payload. */
  topics(): AsyncIterable<{ topic: string; value: unknown }>
  /** Client-published retained topics this service vouches for (e.g. presence of a registered device). */
  keeps?(topic: string): boolean
}

export interface Publication {
  topic: string
  /** null clears the retained topic (zero-length retained publish). */
  value: unknown
  /** false for events such as chat messages: delivered to current subscribers only, never stored. */
  retain?: boolean
}

/**
 * The one component that writes retained state topics (docs/protocol/README.md#state-topics): JSON, retained, QoS 1, and a
 * zero-length payload on delete so the broker forgets the topic.
 */
export class StatePublisher {
  readonly #writer: RetainedWriter
  readonly #sources: StateSource[] = []
  readonly #log: Logger
  /** The newest document version published per topic. */
  readonly #versions = new Map<string, number>()

  constructor(writer: RetainedWriter, log: Logger) {
    this.#writer = writer
    this.#log = log
  }

  register(source: StateSource): void {
    this.#sources.push(source)
  }

  publish(topic: string, value: unknown): Promise<void> {
    const version = (value as { version?: unknown } | null)?.version
    if (typeof version === 'number') {
      // a request publishes after its commit's listeners ran, and they may have published a newer
      // version of the same document already: never let the older one overwrite it
      if ((this.#versions.get(topic) ?? 0) > version) return Promise.resolve()
      this.#versions.set(topic, version)
    }
    return this.#writer.publish(topic, JSON.stringify(value), { qos: 1, retain: true })
  }

  clear(topic: string): Promise<void> {
    this.#versions.delete(topic)
    return this.#writer.publish(topic, Buffer.alloc(0), { qos: 1, retain: true })
  }

  /** An event (a chat message): delivered to current subscribers only, never kept by the broker. */
  notify(topic: string, value: unknown): Promise<void> {
    return this.#writer.publish(topic, JSON.stringify(value), { qos: 1, retain: false })
  }

  async apply(publications: readonly Publication[]): Promise<void> {
    await Promise.all(
      publications.map((p) => {
        if (p.retain === false) return this.notify(p.topic, p.value)
        return p.value === null ? this.clear(p.topic) : this.publish(p.topic, p.value)
      }),
    )
  }

  /**
   * Start-up reconciliation: publish every topic the store backs, and clear every retained topic that
   * no source backs or keeps (orphans left by a crash, by a removal while the hub was down, or by an
   * older release). Returns what it did, for the log.
   */
  async republishAll(retainedTopics: Iterable<string>): Promise<{ published: number; cleared: number }> {
    const backed = new Set<string>()
    let published = 0
    for (const source of this.#sources) {
      for await (const { topic, value } of source.topics()) {
        backed.add(topic)
        await this.publish(topic, value)
        published++
      }
    }
    let cleared = 0
    for (const topic of [...retainedTopics]) {
      if (backed.has(topic) || this.#sources.some((s) => s.keeps?.(topic))) continue
      await this.clear(topic)
      cleared++
    }
    this.#log.info({ published, cleared }, 'retained state republished from the store')
    return { published, cleared }
  }
}

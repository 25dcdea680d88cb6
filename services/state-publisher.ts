import type { Logger } from 'pino'
import { KeyedQueue } from './keyed-queue.ts'
import type { Change } from './store/port.ts'
import type { Store } from './store/store.ts'

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

/** One retained topic a commit may have changed, and how to read its state from the store as it is now. */
export interface ProjectedTopic {
  topic: string
  /**
   * The topic's payload now, null when nothing backs it any more (the topic is cleared), or undefined
   * to leave it as it is (a client-published topic the hub only clears).
   */
  render(): Promise<unknown>
}

/**
 * One retained topic family projected from committed documents: which of its topics a commit can
 * have changed, and every topic the store backs (for start-up). The only way state topics change.
 */
export interface Projection extends StateSource {
  changed(changes: readonly Change[]): Iterable<ProjectedTopic> | Promise<Iterable<ProjectedTopic>>
}

/**
 * The one component that writes retained state topics (docs/protocol/README.md#state-topics): JSON, retained, QoS 1, and a
 * zero-length payload on delete so the broker forgets the topic. Driven by the store's change events:
 * after every commit each projection names the topics it may have changed, and each is rendered from
 * the store and published, one rendering at a time per topic. A rendering starts after the commit
 * that queued it, so the last one of a topic always shows its newest committed state: the order is
 * right by construction. The store awaits this, so a request's state is out before its response.
 */
export class StatePublisher {
  readonly #writer: RetainedWriter
  readonly #sources: StateSource[] = []
  readonly #projections: Projection[] = []
  readonly #log: Logger
  readonly #queue: KeyedQueue
  /** The payload last published per live topic, so a rendering that changed nothing is not sent again. */
  readonly #published = new Map<string, string>()

  constructor(writer: RetainedWriter, log: Logger) {
    this.#writer = writer
    this.#log = log
    this.#queue = new KeyedQueue((err, topic) => log.error({ err, topic }, 'could not project a state topic'))
  }

  /** A source of topics for start-up only (client-published retained topics the hub keeps). */
  register(source: StateSource): void {
    this.#sources.push(source)
  }

  /** A topic family kept current from the store's commits (and republished on start). */
  project(projection: Projection): void {
    this.#projections.push(projection)
  }

  /** Follows the store's commits; call once, after every projection is registered. */
  follow(store: Store): void {
    store.onChange((changes) => this.#project(changes))
  }

  /** Publishes a topic the store does not back (hub/status, a presence said for a device). */
  publish(topic: string, value: unknown): Promise<void> {
    const payload = JSON.stringify(value)
    this.#published.set(topic, payload)
    return this.#writer.publish(topic, payload, { qos: 1, retain: true })
  }

  clear(topic: string): Promise<void> {
    this.#published.delete(topic)
    return this.#writer.publish(topic, Buffer.alloc(0), { qos: 1, retain: true })
  }

  /** An event (a chat message): delivered to current subscribers only, never kept by the broker. */
  notify(topic: string, value: unknown): Promise<void> {
    return this.#writer.publish(topic, JSON.stringify(value), { qos: 1, retain: false })
  }

  async #project(changes: readonly Change[]): Promise<void> {
    const renders = new Map<string, ProjectedTopic['render']>()
    for (const projection of this.#projections) {
      try {
        for (const { topic, render } of await projection.changed(changes)) renders.set(topic, render)
      } catch (err) {
        this.#log.error({ err, projection: projection.name }, 'could not tell which state topics changed')
      }
    }
    await Promise.all(
      [...renders].map(([topic, render]) =>
        this.#queue.run(topic, async () => this.#write(topic, await render())),
      ),
    )
  }

  async #write(topic: string, value: unknown): Promise<void> {
    if (value === undefined) return
    if (value === null) {
      await this.clear(topic)
      return
    }
    if (this.#published.get(topic) === JSON.stringify(value)) return
    await this.publish(topic, value)
  }

  /**
   * Start-up reconciliation: publish every topic the store backs, and clear every retained topic that
   * no source backs or keeps (orphans left by a crash, by a removal while the hub was down, or by an
   * older release). Returns what it did, for the log.
   */
  async republishAll(retainedTopics: Iterable<string>): Promise<{ published: number; cleared: number }> {
    const sources = [...this.#projections, ...this.#sources]
    const backed = new Set<string>()
    let published = 0
    for (const source of sources) {
      for await (const { topic, value } of source.topics()) {
        backed.add(topic)
        await this.publish(topic, value)
        published++
      }
    }
    let cleared = 0
    for (const topic of [...retainedTopics]) {
      if (backed.has(topic) || sources.some((s) => s.keeps?.(topic))) continue
      await this.clear(topic)
      cleared++
    }
    this.#log.info({ published, cleared }, 'retained state republished from the store')
    return { published, cleared }
  }
}

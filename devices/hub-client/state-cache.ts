import { matchesFilter } from '../../schemas/topic-shapes.ts'

/** A retained state topic's new value, or `undefined` when the hub cleared the topic. */
export interface StateChange<T = unknown> {
  topic: string
  value: T | undefined
}

export type StateListener<T = unknown> = (change: StateChange<T>) => void

interface Watcher {
  filter: string
  listener: StateListener
}

const decoder = new TextDecoder()

/**
 * The retained state a client has received (docs/protocol/README.md#state-topics), parsed, by topic: a
 * cleared topic (an empty retained message) is removed. Payloads are the hub's, trusted as the types
 * of schemas/ say; what is not JSON is left out. Fed by the hub client for the filters it watches.
 */
export class StateCache {
  readonly #values = new Map<string, unknown>()
  readonly #watchers = new Set<Watcher>()

  /** The current value of `topic`, if the hub has published one. */
  get<T = unknown>(topic: string): T | undefined {
    return this.#values.get(topic) as T | undefined
  }

  /** Every current value on topics matching `filter`. */
  entries<T = unknown>(filter: string): Map<string, T> {
    const found = new Map<string, T>()
    for (const [topic, value] of this.#values) if (matchesFilter(filter, topic)) found.set(topic, value as T)
    return found
  }

  /** Whether any watcher's filter covers `topic`. */
  covers(topic: string): boolean {
    for (const w of this.#watchers) if (matchesFilter(w.filter, topic)) return true
    return false
  }

  /**
   * Calls `listener` with every current value on `filter` at once, then with every change; the
   * returned function stops it. Values that no watcher covers any more are dropped (they would go stale).
   */
  watch<T = unknown>(filter: string, listener: StateListener<T>): () => void {
    const watcher: Watcher = { filter, listener: listener as StateListener }
    this.#watchers.add(watcher)
    for (const [topic, value] of this.entries<T>(filter)) listener({ topic, value })
    return () => {
      this.#watchers.delete(watcher)
      for (const topic of this.#values.keys()) if (!this.covers(topic)) this.#values.delete(topic)
    }
  }

  /** Takes a message on a watched topic. */
  put(topic: string, payload: Uint8Array): void {
    let value: unknown
    if (payload.length === 0) {
      if (!this.#values.delete(topic)) return
    } else {
      try {
        value = JSON.parse(decoder.decode(payload))
      } catch {
        return
      }
      this.#values.set(topic, value)
    }
    for (const w of [...this.#watchers]) if (matchesFilter(w.filter, topic)) w.listener({ topic, value })
  }
}

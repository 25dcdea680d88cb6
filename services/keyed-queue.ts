/**
 * Work run one at a time per key, in the order it was queued: presence and reports of one device or
 * router are applied in arrival order, while different keys proceed independently.
 */
export class KeyedQueue {
  readonly #tails = new Map<string, Promise<void>>()
  readonly #onError: (err: unknown, key: string) => void

  constructor(onError: (err: unknown, key: string) => void) {
    this.#onError = onError
  }

  /** Queues `work` behind earlier work of the same key; resolves when it ran (never rejects). */
  run(key: string, work: () => Promise<unknown>): Promise<void> {
    const previous = this.#tails.get(key) ?? Promise.resolve()
    const next: Promise<void> = previous
      .then(async () => void (await work()))
      .catch((err: unknown) => this.#onError(err, key))
      .finally(() => {
        if (this.#tails.get(key) === next) this.#tails.delete(key)
      })
    this.#tails.set(key, next)
    return next
  }
}

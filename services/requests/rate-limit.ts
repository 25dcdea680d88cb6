/** Token bucket per key: `burst` requests at once, refilled at `perSecond`. */
export class RateLimiter {
  readonly #buckets = new Map<string, { tokens: number; at: number }>()
  readonly #perSecond: number
  readonly #burst: number

  constructor(options: { perSecond: number; burst: number }) {
    this.#perSecond = options.perSecond
    this.#burst = options.burst
  }

  /** Takes one token; false when the key is over its rate. */
  take(key: string, now = performance.now()): boolean {
    const bucket = this.#refill(key, now)
    const allowed = bucket.tokens >= 1
    if (allowed) bucket.tokens -= 1
    return allowed
  }

  /** Whether a token is available, without taking it (for limits that only count failures). */
  allows(key: string, now = performance.now()): boolean {
    return this.#refill(key, now).tokens >= 1
  }

  #refill(key: string, now: number): { tokens: number; at: number } {
    const bucket = this.#buckets.get(key) ?? { tokens: this.#burst, at: now }
    bucket.tokens = Math.min(this.#burst, bucket.tokens + ((now - bucket.at) / 1000) * this.#perSecond)
    bucket.at = now
    this.#buckets.set(key, bucket)
    return bucket
  }

  /**
   * Drops buckets that have refilled completely: they behave exactly like new ones. Buckets are not
   * dropped on disconnect, so reconnecting does not reset a flooder's budget.
   */
  sweep(now = performance.now()): void {
    for (const [key, bucket] of this.#buckets) {
      if (bucket.tokens + ((now - bucket.at) / 1000) * this.#perSecond >= this.#burst)
        this.#buckets.delete(key)
    }
  }

  get size(): number {
    return this.#buckets.size
  }
}

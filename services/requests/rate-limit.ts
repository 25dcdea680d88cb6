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

  /** Whether a token is available, without taking it (to check several limits before charging any). */
  allows(key: string, now = performance.now()): boolean {
    return this.#refill(key, now).tokens >= 1
  }

  /** Gives back a token taken for an attempt that turned out not to count (a successful log-in). */
  refund(key: string, now = performance.now()): void {
    const bucket = this.#refill(key, now)
    bucket.tokens = Math.min(this.#burst, bucket.tokens + 1)
  }

  /** Whole seconds until the key has a token again (0 when it has one now), for `Retry-After`. */
  retryAfterSeconds(key: string, now = performance.now()): number {
    const missing = 1 - this.#refill(key, now).tokens
    return missing <= 0 ? 0 : Math.ceil(missing / this.#perSecond)
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

/** The request limits of docs/protocol/README.md#requests-and-responses: every request is charged to its client id and to its account. */
export class RequestLimits {
  readonly #perClient: RateLimiter
  readonly #perAccount: RateLimiter

  constructor(options: {
    perClient: { perSecond: number; burst: number }
    perAccount: { perSecond: number; burst: number }
  }) {
    this.#perClient = new RateLimiter(options.perClient)
    this.#perAccount = new RateLimiter(options.perAccount)
  }

  /**
   * Charges one request to `who`'s client id and account (role and id, across all connections), or
   * neither: a client over its own rate does not use up the budget of the account's other clients.
   */
  take(
    who: { role: string; id: string; clientId: string },
    now = performance.now(),
  ): { ok: true } | { ok: false; limit: 'client' | 'account'; retryAfterSeconds: number } {
    const account = `${who.role}:${who.id}`
    const client = `${account}:${who.clientId}`
    if (!this.#perClient.allows(client, now)) {
      return { ok: false, limit: 'client', retryAfterSeconds: this.#perClient.retryAfterSeconds(client, now) }
    }
    if (!this.#perAccount.allows(account, now)) {
      return {
        ok: false,
        limit: 'account',
        retryAfterSeconds: this.#perAccount.retryAfterSeconds(account, now),
      }
    }
    this.#perClient.take(client, now)
    this.#perAccount.take(account, now)
    return { ok: true }
  }

  sweep(now = performance.now()): void {
    this.#perClient.sweep(now)
    this.#perAccount.sweep(now)
  }
}

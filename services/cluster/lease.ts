import type { Redis } from 'ioredis'
import type { Logger } from 'pino'

/**
 * Takes the lease when it is free: the value is `owner/term`, where term counts every acquisition
 * of this lease ever (fencing: a later holder always has a higher term). A holder that lost track
 * of its renewal but still holds its own value (a slow reply) keeps it, with the same term.
 * KEYS: lease, term counter. ARGV: owner, ttl ms, the value this owner held last ('' if none).
 */
const ACQUIRE = `
local current = redis.call('GET', KEYS[1])
if current then
  if current == ARGV[3] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return current
  end
  return false
end
local term = redis.call('INCR', KEYS[2])
local value = ARGV[1] .. '/' .. term
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return value`

/** Extends the lease only while it holds this holder's value. KEYS: lease. ARGV: value, ttl ms. */
const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`

/** Frees the lease only while it holds this holder's value. KEYS: lease. ARGV: value. */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`

export interface LeaseOptions {
  /** The Redis command connection (ClusterLink.commands). */
  redis: Redis
  /** The lease's key (`link.key('lease:coordinator')`). */
  key: string
  /** Who asks: this process's id. */
  owner: string
  /** How long the lease lasts without a renewal; default 5 s. */
  ttlMs?: number
  /** How often the holder renews it and others try to take it; default 1 s. */
  intervalMs?: number
  log: Logger
}

export type LeaseListener = (held: boolean, term: number) => void

/**
 * A named lease in Redis, held by at most one owner at a time (acquire SET NX PX, renew
 * compare-and-pexpire, release compare-and-del, each a Lua script). Every interval the holder renews
 * it and the others try to take it. The holder counts its time from the moment it *sent* its last
 * successful acquire or renewal: once ttl has passed since without another one (Redis unreachable,
 * the process paused), `held` is false at once and listeners hear it, even if no reply ever comes,
 * so a holder never acts after the lease could have moved on. `term` grows with each acquisition
 * (fencing token).
 */
export class Lease {
  readonly #options: Required<Omit<LeaseOptions, 'log'>> & { log: Logger }
  readonly #listeners = new Set<LeaseListener>()
  /** The value stored while held by this owner (`owner/term`), or the last held. */
  #value = ''
  #term = 0
  /** Until when this owner may act as holder (performance.now(), a monotonic clock); 0: not holder. */
  #validUntil = 0
  #held = false
  #timer: NodeJS.Timeout | undefined
  #expiry: NodeJS.Timeout | undefined
  #inFlight = false
  #stopped = true

  constructor(options: LeaseOptions) {
    this.#options = { ttlMs: 5000, intervalMs: 1000, ...options }
    if (this.#options.intervalMs * 2 > this.#options.ttlMs)
      throw new Error(
        `lease ${options.key}: the interval (${this.#options.intervalMs} ms) must be at most half the ttl (${this.#options.ttlMs} ms), so one missed renewal does not lose it`,
      )
  }

  /** Whether this owner holds the lease now (and may act as its holder). */
  get held(): boolean {
    return this.#held && performance.now() < this.#validUntil
  }

  /** The fencing term of the current or last holding; 0 before the first. */
  get term(): number {
    return this.#term
  }

  /** Listens to gaining (true) and losing (false) the lease; returns how to stop listening. */
  onChange(listener: LeaseListener): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  /** Tries to take the lease now, then keeps trying (or renewing) every interval. */
  async start(): Promise<void> {
    if (!this.#stopped) return
    this.#stopped = false
    await this.#tick()
    this.#timer = setInterval(() => void this.#tick(), this.#options.intervalMs)
    this.#timer.unref()
  }

  /**
   * Stops renewing. With `release` (a clean shutdown) the lease is freed at once, so another owner
   * takes it on its next try; without, it expires by itself (what a crash leaves).
   */
  async stop({ release = true }: { release?: boolean } = {}): Promise<void> {
    this.#stopped = true
    clearInterval(this.#timer)
    const value = this.#value
    const held = this.#held
    this.#lose()
    if (release && held) {
      const { redis, key } = this.#options
      await redis.eval(RELEASE, 1, key, value).catch((err: unknown) => {
        this.#options.log.warn({ err, lease: key }, 'could not release a lease: it expires by itself')
      })
    }
  }

  async #tick(): Promise<void> {
    // a reply that never comes must not stack requests: the expiry timer decides meanwhile
    if (this.#inFlight || this.#stopped) return
    this.#inFlight = true
    const { redis, key, owner, ttlMs, log } = this.#options
    const sentAt = performance.now()
    try {
      const reply = await withTimeout(
        this.#held
          ? redis.eval(RENEW, 1, key, this.#value, ttlMs)
          : redis.eval(ACQUIRE, 2, key, `${key}:term`, owner, ttlMs, this.#value),
        ttlMs,
      )
      if (this.#stopped) return
      if (this.#held) {
        if (reply === 1 && sentAt + ttlMs > performance.now()) this.#extend(sentAt + ttlMs)
        else {
          log.warn({ lease: key, term: this.#term }, 'lease lost: another owner holds it now')
          this.#lose()
        }
      } else if (typeof reply === 'string' && sentAt + ttlMs > performance.now()) {
        this.#value = reply
        this.#term = Number(reply.slice(reply.lastIndexOf('/') + 1))
        this.#held = true
        this.#extend(sentAt + ttlMs)
        log.info({ lease: key, term: this.#term }, 'lease taken')
        this.#tell(true)
      }
    } catch (err) {
      log.warn({ err, lease: key }, 'could not reach Redis for a lease')
    } finally {
      this.#inFlight = false
    }
  }

  #extend(validUntil: number): void {
    this.#validUntil = validUntil
    clearTimeout(this.#expiry)
    this.#expiry = setTimeout(() => {
      if (!this.#held) return
      this.#options.log.warn(
        { lease: this.#options.key, term: this.#term },
        'lease expired before it could be renewed: no longer acting as its holder',
      )
      this.#lose()
    }, validUntil - performance.now())
    this.#expiry.unref()
  }

  #lose(): void {
    clearTimeout(this.#expiry)
    this.#validUntil = 0
    if (!this.#held) return
    this.#held = false
    this.#tell(false)
  }

  #tell(held: boolean): void {
    for (const listener of this.#listeners) {
      try {
        listener(held, this.#term)
      } catch (err) {
        this.#options.log.error({ err, lease: this.#options.key }, 'a lease listener failed')
      }
    }
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no reply from Redis within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

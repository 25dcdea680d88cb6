import { HubError } from '../errors.ts'
import { hashPassword, verifyPassword } from './passwords.ts'

export interface PasswordPoolOptions {
  /** scrypt cost of new hashes (N = 2^cost); checks use the cost stored with each hash. */
  cost: number
  /** scrypt runs at most this many at once (each takes one libuv thread and most of a core). */
  concurrency: number
  /** New hashes (sign-ups, stage passwords) that may wait; beyond it they are refused with `unavailable`. */
  queueLimit: number
}

/**
 * Checks wait for nothing but other checks; a flood that somehow fills even this lane is refused rather
 * than held in memory (the log-in throttle keeps real traffic far below it).
 */
const CHECK_QUEUE_LIMIT = 1000

/** Computes and settles its caller's promise; never rejects. */
type Job = () => Promise<void>

/**
 * Every scrypt computation of the hub goes through this pool, in two lanes: password checks (log-ins,
 * stage passwords) are started before any waiting new hash, so a sign-up flood queues behind its
 * limit and gets `unavailable` with a retry time instead of starving log-ins of hashing threads.
 */
export class PasswordPool {
  readonly #options: PasswordPoolOptions
  readonly #checks: Job[] = []
  readonly #hashes: Job[] = []
  #running = 0
  /** Moving average of one computation, for the retry time of a refusal. */
  #averageMs = 100

  constructor(options: PasswordPoolOptions) {
    this.#options = options
  }

  /** A new salted hash at the configured cost; refused with `unavailable` while too many are waiting. */
  hash(password: string): Promise<string> {
    return this.#enqueue(this.#hashes, this.#options.queueLimit, () =>
      hashPassword(password, this.#options.cost),
    )
  }

  /** Whether `password` matches `stored`; served before any new hash that waits. */
  verify(password: string, stored: string): Promise<boolean> {
    return this.#enqueue(this.#checks, CHECK_QUEUE_LIMIT, () => verifyPassword(password, stored))
  }

  /** What runs and waits now. */
  get load(): { running: number; checks: number; hashes: number } {
    return { running: this.#running, checks: this.#checks.length, hashes: this.#hashes.length }
  }

  #enqueue<T>(lane: Job[], limit: number, compute: () => Promise<T>): Promise<T> {
    if (this.#running >= this.#options.concurrency && lane.length >= limit) {
      const seconds = this.#retryAfterSeconds()
      return Promise.reject(
        new HubError('unavailable', `the hub is busy hashing passwords: retry in ${seconds} s`, seconds),
      )
    }
    return new Promise<T>((resolve, reject) => {
      lane.push(async () => {
        const started = performance.now()
        let settle: () => void
        try {
          const value = await compute()
          settle = () => resolve(value)
        } catch (err) {
          settle = () => reject(err as Error)
        }
        this.#averageMs = 0.8 * this.#averageMs + 0.2 * (performance.now() - started)
        // the next job starts before the caller resumes, so a caller sees the pool as it now is
        this.#running--
        this.#next()
        settle()
      })
      this.#next()
    })
  }

  #next(): void {
    while (this.#running < this.#options.concurrency) {
      const job = this.#checks.shift() ?? this.#hashes.shift()
      if (!job) return
      this.#running++
      void job()
    }
  }

  /** Whole seconds until everything queued now has run, at the recent speed. */
  #retryAfterSeconds(): number {
    const queued = this.#running + this.#checks.length + this.#hashes.length
    return Math.max(1, Math.ceil((queued * this.#averageMs) / this.#options.concurrency / 1000))
  }
}

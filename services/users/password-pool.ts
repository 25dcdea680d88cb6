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

/** Log-ins or checks of signed-in users (stage passwords, the current password of an account action). */
export type CheckLane = 'login' | 'signedIn'

/**
 * Checks are refused rather than held in memory beyond this many waiting per lane; the throttles of
 * wrong passwords and the request limits keep real traffic far below it, and a crowd joining a
 * stage at once must not be refused.
 */
const CHECK_QUEUE_LIMIT = 1000

/** Computes and settles its caller's promise; never rejects. */
type Job = () => Promise<void>

/**
 * Every scrypt computation of the hub goes through this pool, in three lanes started in this order:
 * log-in checks, checks by signed-in users, new hashes. A sign-up flood, or a signed-in user
 * guessing stage passwords, queues behind its own limit and gets `unavailable` with a retry time
 * instead of starving log-ins of hashing threads.
 */
export class PasswordPool {
  readonly #options: PasswordPoolOptions
  readonly #checks: Job[] = []
  readonly #signedInChecks: Job[] = []
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

  /** Whether `password` matches `stored`; log-in checks are served before anything else that waits. */
  verify(password: string, stored: string, lane: CheckLane = 'login'): Promise<boolean> {
    return lane === 'login'
      ? this.#enqueue(this.#checks, CHECK_QUEUE_LIMIT, () => verifyPassword(password, stored))
      : this.#enqueue(this.#signedInChecks, CHECK_QUEUE_LIMIT, () => verifyPassword(password, stored))
  }

  /** What runs and waits now. */
  get load(): { running: number; checks: number; signedInChecks: number; hashes: number } {
    return {
      running: this.#running,
      checks: this.#checks.length,
      signedInChecks: this.#signedInChecks.length,
      hashes: this.#hashes.length,
    }
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
      const job = this.#checks.shift() ?? this.#signedInChecks.shift() ?? this.#hashes.shift()
      if (!job) return
      this.#running++
      void job() // never rejects: a job settles its caller's promise with its outcome
    }
  }

  /** Whole seconds until everything queued now has run, at the recent speed. */
  #retryAfterSeconds(): number {
    const queued = this.#running + this.#checks.length + this.#signedInChecks.length + this.#hashes.length
    return Math.max(1, Math.ceil((queued * this.#averageMs) / this.#options.concurrency / 1000))
  }
}

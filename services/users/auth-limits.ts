import { setTimeout as sleep } from 'node:timers/promises'
import { HubError } from '../errors.ts'
import { RateLimiter } from '../requests/rate-limit.ts'

/** A token bucket: `burst` at once, refilled at `perSecond`. */
export interface Bucket {
  perSecond: number
  burst: number
}

/** Buckets that refilled completely are dropped at most this often, so the maps stay small. */
const SWEEP_INTERVAL_MS = 60_000

/**
 * Who an HTTP client is, for limits: its IPv4 address, or the /64 prefix of its IPv6 address (one
 * subscriber usually holds a whole /64, so per-address limits would otherwise not limit anyone).
 * A socket that closed already has no address (Node reports undefined, whatever the types say).
 */
export function addressKey(ip: string | undefined): string {
  if (ip === undefined) return 'unknown'
  const address = ip.replace(/%.*$/, '').toLowerCase()
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(address)
  if (mapped) return mapped[1]!
  if (!address.includes(':')) return address
  const [head = '', tail] = address.split('::')
  const groups = (part: string) =>
    part === '' ? [] : part.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g]))
  const front = groups(head)
  const back = tail === undefined ? [] : groups(tail)
  const full = [...front, ...Array<string>(Math.max(0, 8 - front.length - back.length)).fill('0'), ...back]
  return `${full
    .slice(0, 4)
    .map((g) => Number.parseInt(g, 16).toString(16))
    .join(':')}::/64`
}

/** Sign-ups per remote address and for the whole hub: each one costs a password hash and an account. */
export class SignupLimit {
  readonly #perAddress: RateLimiter
  readonly #global: RateLimiter
  #sweptAt = 0

  constructor(options: { perAddress: Bucket; global: Bucket }) {
    this.#perAddress = new RateLimiter(options.perAddress)
    this.#global = new RateLimiter(options.global)
  }

  /** Charges one sign-up to the address and the hub, or neither. */
  take(
    ip: string,
    now = performance.now(),
  ): { ok: true } | { ok: false; limit: 'address' | 'hub'; retryAfterSeconds: number } {
    if (now - this.#sweptAt > SWEEP_INTERVAL_MS) {
      this.#perAddress.sweep(now)
      this.#sweptAt = now
    }
    const address = addressKey(ip)
    if (!this.#perAddress.allows(address, now)) {
      return {
        ok: false,
        limit: 'address',
        retryAfterSeconds: this.#perAddress.retryAfterSeconds(address, now),
      }
    }
    if (!this.#global.allows('hub', now)) {
      return { ok: false, limit: 'hub', retryAfterSeconds: this.#global.retryAfterSeconds('hub', now) }
    }
    this.#perAddress.take(address, now)
    this.#global.take('hub', now)
    return { ok: true }
  }
}

/** An admitted password check: counted as a failure unless `forgive()` is called. */
export interface GuessAttempt {
  refused: false
  /** Wait this long before checking the password (its target is being guessed from many places). */
  delayMs: number
  /** The password was right (or could not be checked): the attempt does not count as a failure. */
  forgive(now?: number): void
}

export type GuessAdmission = GuessAttempt | { refused: true; retryAfterSeconds: number }

/**
 * Failed password checks counted under several keys, so a guesser is slowed, never the one it
 * guesses: each `refuse` key (the guesser, narrowing to the guesser and its target) is refused once
 * over its count; the `slow` key (the target, from anywhere) only delays attempts beyond its count.
 * Every attempt is counted before its password is checked and forgiven when it succeeds, so
 * concurrent guesses cannot all pass the check before the first fails.
 */
export class GuessThrottle {
  readonly #refuse: RateLimiter[]
  readonly #slow: RateLimiter
  readonly #slowdownMs: number
  #sweptAt = 0

  constructor(options: { refuse: number[]; slow: number; forgiveSeconds: number; slowdownMs: number }) {
    const bucket = (burst: number) => new RateLimiter({ burst, perSecond: 1 / options.forgiveSeconds })
    this.#refuse = options.refuse.map(bucket)
    this.#slow = bucket(options.slow)
    this.#slowdownMs = options.slowdownMs
  }

  /** `refuseKeys` pair up with the `refuse` counts of the constructor. */
  admit(refuseKeys: string[], slowKey: string, now = performance.now()): GuessAdmission {
    if (now - this.#sweptAt > SWEEP_INTERVAL_MS) {
      for (const limiter of [...this.#refuse, this.#slow]) limiter.sweep(now)
      this.#sweptAt = now
    }
    const limits = this.#refuse.map((limiter, i) => ({ limiter, key: refuseKeys[i]! }))
    if (!limits.every(({ limiter, key }) => limiter.allows(key, now))) {
      return {
        refused: true,
        retryAfterSeconds: Math.max(...limits.map(({ limiter, key }) => limiter.retryAfterSeconds(key, now))),
      }
    }
    for (const { limiter, key } of limits) limiter.take(key, now)
    const slowCounted = this.#slow.take(slowKey, now)
    return {
      refused: false,
      delayMs: slowCounted ? 0 : this.#slowdownMs,
      forgive: (at = performance.now()) => {
        for (const { limiter, key } of limits) limiter.refund(key, at)
        if (slowCounted) this.#slow.refund(slowKey, at)
      },
    }
  }

  /** Keys tracked now (they are swept once refilled). */
  get size(): number {
    return [...this.#refuse, this.#slow].reduce((sum, limiter) => sum + limiter.size, 0)
  }
}

/**
 * Checks a password under a throttle's admission: a refused attempt is `rate_limited` (`refusal`
 * says what there was too much of), an admitted one waits its delay, and it is forgiven unless the
 * password was wrong.
 */
export async function throttledCheck(
  admission: GuessAdmission,
  refusal: string,
  check: () => Promise<boolean>,
): Promise<boolean> {
  if (admission.refused) {
    const seconds = admission.retryAfterSeconds
    throw new HubError('rate_limited', `${refusal}: retry in ${seconds} s`, seconds)
  }
  if (admission.delayMs > 0) await sleep(admission.delayMs)
  let right: boolean
  try {
    right = await check()
  } catch (err) {
    admission.forgive() // nothing was checked
    throw err
  }
  if (right) admission.forgive()
  return right
}

export interface LoginThrottleOptions {
  /** Failed log-ins one address may have before its attempts are refused (429). */
  perAddress: number
  /** Failed log-ins on one e-mail from one address before that address is refused for it (429). */
  perAddressAndEmail: number
  /** Failed log-ins on one e-mail from anywhere before attempts on it are slowed down (never refused). */
  perEmail: number
  /** Each count forgives one failure every this many seconds. */
  forgiveSeconds: number
  /** The wait before checking a password for an e-mail over its failures. */
  slowdownMs: number
}

/**
 * Log-in throttling that slows the guesser, never the account: failures are counted per address and
 * per (address, e-mail), and only those addresses are refused, so guessing someone's password from
 * elsewhere cannot lock them out. Failures on one e-mail from anywhere (guessing spread over many
 * addresses) only delay attempts on it.
 */
export class LoginThrottle {
  readonly #guesses: GuessThrottle

  constructor(options: LoginThrottleOptions) {
    this.#guesses = new GuessThrottle({
      refuse: [options.perAddress, options.perAddressAndEmail],
      slow: options.perEmail,
      forgiveSeconds: options.forgiveSeconds,
      slowdownMs: options.slowdownMs,
    })
  }

  admit(ip: string, email: string, now = performance.now()): GuessAdmission {
    const address = addressKey(ip)
    return this.#guesses.admit([address, `${address}|${email}`], email, now)
  }
}

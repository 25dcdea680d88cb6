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

/** An admitted log-in attempt: counted as a failure unless `forgive()` is called. */
export interface LoginAttempt {
  refused: false
  /** Wait this long before checking the password (the e-mail is being guessed from many addresses). */
  delayMs: number
  /** The attempt succeeded (or could not be checked): it does not count as a failure. */
  forgive(now?: number): void
}

/**
 * Log-in throttling that slows the guesser, never the account: failures are counted per address and
 * per (address, e-mail), and only those addresses are refused, so guessing someone's password from
 * elsewhere cannot lock them out. Failures on one e-mail from anywhere (guessing spread over many
 * addresses) only delay attempts on it. Every attempt is counted before its password is checked and
 * forgiven when it succeeds, so concurrent guesses cannot all pass the check before the first fails.
 */
export class LoginThrottle {
  readonly #options: LoginThrottleOptions
  readonly #perAddress: RateLimiter
  readonly #perAddressAndEmail: RateLimiter
  readonly #perEmail: RateLimiter
  #sweptAt = 0

  constructor(options: LoginThrottleOptions) {
    this.#options = options
    const bucket = (burst: number) => new RateLimiter({ burst, perSecond: 1 / options.forgiveSeconds })
    this.#perAddress = bucket(options.perAddress)
    this.#perAddressAndEmail = bucket(options.perAddressAndEmail)
    this.#perEmail = bucket(options.perEmail)
  }

  admit(
    ip: string,
    email: string,
    now = performance.now(),
  ): LoginAttempt | { refused: true; retryAfterSeconds: number } {
    if (now - this.#sweptAt > SWEEP_INTERVAL_MS) {
      for (const limiter of [this.#perAddress, this.#perAddressAndEmail, this.#perEmail]) limiter.sweep(now)
      this.#sweptAt = now
    }
    const address = addressKey(ip)
    const pair = `${address}|${email}`
    if (!this.#perAddress.allows(address, now) || !this.#perAddressAndEmail.allows(pair, now)) {
      return {
        refused: true,
        retryAfterSeconds: Math.max(
          this.#perAddress.retryAfterSeconds(address, now),
          this.#perAddressAndEmail.retryAfterSeconds(pair, now),
        ),
      }
    }
    this.#perAddress.take(address, now)
    this.#perAddressAndEmail.take(pair, now)
    const emailCounted = this.#perEmail.take(email, now)
    return {
      refused: false,
      delayMs: emailCounted ? 0 : this.#options.slowdownMs,
      forgive: (at = performance.now()) => {
        this.#perAddress.refund(address, at)
        this.#perAddressAndEmail.refund(pair, at)
        if (emailCounted) this.#perEmail.refund(email, at)
      },
    }
  }
}

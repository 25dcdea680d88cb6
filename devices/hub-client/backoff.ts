export interface BackoffOptions {
  /** Delay before the first reconnect attempt, before jitter. */
  initialMs: number
  /** The delay stops doubling here. */
  maxMs: number
  /** [0, 1) source of jitter (Math.random unless a test pins it). */
  random?: () => number
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 1000, maxMs: 60_000 }

/**
 * Exponential backoff with jitter: the n-th delay is drawn from [d/2, d] with d = min(max, initial·2ⁿ),
 * so 1 s, 2 s, 4 s, … up to 60 s by default, and a fleet of boxes that lost the hub at the same moment
 * does not come back in the same instant. `reset()` after a connection proved stable.
 */
export class Backoff {
  readonly #options: Required<BackoffOptions>
  #attempt = 0

  constructor(options: Partial<BackoffOptions> = {}) {
    this.#options = { ...DEFAULT_BACKOFF, random: Math.random, ...options }
  }

  /** The delay before the next attempt (and counts the attempt). */
  next(): number {
    const { initialMs, maxMs, random } = this.#options
    const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(this.#attempt, 30))
    this.#attempt++
    return Math.round(ceiling / 2 + random() * (ceiling / 2))
  }

  reset(): void {
    this.#attempt = 0
  }

  get attempt(): number {
    return this.#attempt
  }
}

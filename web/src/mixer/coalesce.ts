/**
 * Coalescing of fast-changing values (a dragged slider) into few requests: per key, at most one
 * request in flight and at most one sent per `intervalMs`; the last value set is always sent in the
 * end. While a key is busy (being dragged, a value waiting, a request in flight, or a short grace
 * after the last answer for its retained state to arrive) `local(key)` is the value to show, so a
 * control never jumps back to an older retained value; once idle the key is released and the
 * retained value (the hub's truth) shows again. Plain module: no DOM, no framework.
 */
export interface CoalescerOptions<V> {
  /** Sends one value; the promise settles when the hub has answered. */
  send: (key: string, value: V) => Promise<unknown>
  /** The least time between two sends of one key (ms). */
  intervalMs: number
  /** How long the local value still shows after the last answer, for the retained state to arrive (ms). */
  graceMs?: number
  /** Called whenever `local(key)` may have changed. */
  onChange?: (key: string) => void
  /** Called with a send's failure (the key is released at once: the retained value is the truth). */
  onError?: (key: string, err: unknown) => void
  now?: () => number
}

interface KeyState<V> {
  value: V
  /** A value set but not sent yet. */
  pending: boolean
  inFlight: boolean
  dragging: boolean
  lastSentAt: number
  timer: ReturnType<typeof setTimeout> | undefined
  grace: ReturnType<typeof setTimeout> | undefined
}

export class Coalescer<V> {
  readonly #keys = new Map<string, KeyState<V>>()
  readonly #options: Required<Omit<CoalescerOptions<V>, 'onChange' | 'onError'>> &
    Pick<CoalescerOptions<V>, 'onChange' | 'onError'>
  /** Requests sent, for the curious (tests, the page's status). */
  sent = 0

  constructor(options: CoalescerOptions<V>) {
    this.#options = { graceMs: 500, now: () => performance.now(), ...options }
  }

  /** A drag (pointer down, key held) starts: the key stays local until `end`. */
  begin(key: string, value: V): void {
    const state = this.#state(key, value)
    state.dragging = true
    this.#clearGrace(state)
  }

  /** A new value: shown at once, sent when the key's interval allows. */
  set(key: string, value: V): void {
    const state = this.#state(key, value)
    state.value = value
    state.pending = true
    this.#clearGrace(state)
    this.#options.onChange?.(key)
    this.#pump(key, state)
  }

  /** The drag ended: once the last value is sent and answered, the retained value takes over. */
  end(key: string): void {
    const state = this.#keys.get(key)
    if (!state) return
    state.dragging = false
    this.#settle(key, state)
  }

  /** The value to show instead of the retained one, or undefined when the key is idle. */
  local(key: string): V | undefined {
    return this.#keys.get(key)?.value
  }

  /** Whether any key is busy (drag, waiting value, request in flight or grace). */
  get busy(): boolean {
    return this.#keys.size > 0
  }

  /** Forgets every key without sending what waits (the page went away). */
  stop(): void {
    for (const state of this.#keys.values()) {
      clearTimeout(state.timer)
      clearTimeout(state.grace)
    }
    this.#keys.clear()
  }

  #state(key: string, value: V): KeyState<V> {
    let state = this.#keys.get(key)
    if (!state) {
      state = {
        value,
        pending: false,
        inFlight: false,
        dragging: false,
        lastSentAt: -Infinity,
        timer: undefined,
        grace: undefined,
      }
      this.#keys.set(key, state)
    }
    return state
  }

  #pump(key: string, state: KeyState<V>): void {
    if (!state.pending || state.inFlight || state.timer !== undefined) return
    const wait = state.lastSentAt + this.#options.intervalMs - this.#options.now()
    if (wait > 0) {
      state.timer = setTimeout(() => {
        state.timer = undefined
        this.#pump(key, state)
      }, wait)
      return
    }
    state.pending = false
    state.inFlight = true
    state.lastSentAt = this.#options.now()
    this.sent++
    this.#options.send(key, state.value).then(
      () => {
        state.inFlight = false
        if (state.pending) this.#pump(key, state)
        else this.#settle(key, state)
      },
      (err: unknown) => {
        state.inFlight = false
        this.#options.onError?.(key, err)
        // a newer value still goes out; otherwise the retained value is the truth again
        if (state.pending) this.#pump(key, state)
        else if (!state.dragging) this.#release(key, state)
      },
    )
  }

  /** Idle (no drag, nothing waiting or in flight): released after the grace. */
  #settle(key: string, state: KeyState<V>): void {
    if (state.dragging || state.pending || state.inFlight || state.timer !== undefined) return
    this.#clearGrace(state)
    state.grace = setTimeout(() => this.#release(key, state), this.#options.graceMs)
  }

  #release(key: string, state: KeyState<V>): void {
    clearTimeout(state.timer)
    this.#clearGrace(state)
    if (this.#keys.get(key) !== state) return
    this.#keys.delete(key)
    this.#options.onChange?.(key)
  }

  #clearGrace(state: KeyState<V>): void {
    clearTimeout(state.grace)
    state.grace = undefined
  }
}

/**
 * The hub takes 20 requests a second per client (RATE_LIMIT_PER_SECOND, burst 40): a dragged slider
 * sends at most 10 a second, so two dragged at once still stay under it.
 */
export const SEND_INTERVAL_MS = 100
/** The lowest dB the slider names; below it is -∞ (silent). */
export const MIN_DB = -60
/** The schema's loudest volume (linear 4) is +12.04 dB: the slider stops at +12. */
export const MAX_DB = 12
/** The slider's bottom notch, below MIN_DB: silent. */
export const OFF_DB = MIN_DB - 1

/** Linear volume (0..4) of a slider position in dB; at or below OFF_DB … MIN_DB it is 0. */
export function dbToVolume(db: number): number {
  if (!(db >= MIN_DB)) return 0
  return Math.min(4, 10 ** (Math.min(db, MAX_DB) / 20))
}

/** Slider position in dB of a linear volume: OFF_DB for silence, else clamped to MIN_DB…MAX_DB. */
export function volumeToDb(volume: number): number {
  if (!(volume > 0)) return OFF_DB
  const db = 20 * Math.log10(volume)
  return Math.max(MIN_DB, Math.min(MAX_DB, Math.round(db * 10) / 10))
}

/** How a volume reads: "-6 dB", "+3.5 dB", "0 dB", "-∞ dB". */
export function formatDb(volume: number): string {
  const db = volumeToDb(volume)
  if (db < MIN_DB) return '-∞ dB'
  const rounded = Math.round(db * 2) / 2 || 0
  return `${rounded > 0 ? '+' : ''}${rounded} dB`
}

/**
 * Who holds each persistent session (CONNECT with clean session 0) and since when it is offline:
 * the rules that keep their number bounded. A session ends after `expiryMs` offline, and an identity
 * keeps at most `maxPerIdentity`; beyond that its least recently used offline session ends first
 * (connected sessions are bounded by the connections themselves and never ended here). Plain data:
 * the broker ends what these methods return.
 */
export class SessionTable {
  /** Holder key per client id. */
  readonly #holders = new Map<string, string>()
  /** Client ids per holder, least recently connected first. */
  readonly #byHolder = new Map<string, Set<string>>()
  /** When each offline session went offline (ms), in that order: the first is the next to expire. */
  readonly #offlineSince = new Map<string, number>()

  constructor(private readonly limits: { expiryMs: number; maxPerIdentity: number }) {}

  holder(clientId: string): string | undefined {
    return this.#holders.get(clientId)
  }

  /** Client ids of every session `holder` keeps. */
  of(holder: string): string[] {
    return [...(this.#byHolder.get(holder) ?? [])]
  }

  /** `holder` connected with `clientId` and clean session 0; returns the sessions that must end. */
  connected(clientId: string, holder: string): string[] {
    this.end(clientId)
    this.#holders.set(clientId, holder)
    let ids = this.#byHolder.get(holder)
    if (!ids) this.#byHolder.set(holder, (ids = new Set()))
    ids.add(clientId)
    return this.#overCap(holder)
  }

  /** The connection of a session closed: it is kept until it expires or is resumed. */
  disconnected(clientId: string, now: number): string[] {
    const holder = this.#holders.get(clientId)
    if (holder === undefined) return []
    this.#offlineSince.delete(clientId)
    this.#offlineSince.set(clientId, now)
    return this.#overCap(holder)
  }

  /** Forgets a session (ended by its holder, expired, or its holder's credentials revoked). */
  end(clientId: string): boolean {
    const holder = this.#holders.get(clientId)
    if (holder === undefined) return false
    this.#holders.delete(clientId)
    this.#offlineSince.delete(clientId)
    const ids = this.#byHolder.get(holder)!
    ids.delete(clientId)
    if (ids.size === 0) this.#byHolder.delete(holder)
    return true
  }

  /** Offline sessions whose expiry has come. */
  due(now: number): string[] {
    const due: string[] = []
    for (const [clientId, since] of this.#offlineSince) {
      if (since + this.limits.expiryMs > now) break
      due.push(clientId)
    }
    return due
  }

  /** When the next offline session expires (ms since the epoch), Infinity when none is offline. */
  nextExpiry(): number {
    for (const since of this.#offlineSince.values()) return since + this.limits.expiryMs
    return Infinity
  }

  #overCap(holder: string): string[] {
    const ids = this.#byHolder.get(holder)!
    let excess = ids.size - this.limits.maxPerIdentity
    const ending: string[] = []
    for (const clientId of ids) {
      if (excess <= 0) break
      if (!this.#offlineSince.has(clientId)) continue
      ending.push(clientId)
      excess--
    }
    return ending
  }
}

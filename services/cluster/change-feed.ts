import { isDeepStrictEqual } from 'node:util'
import type { Logger } from 'pino'
import type { Change, CollectionSpec, StoredDoc } from '../store/port.ts'
import type { CommitLog, Store } from '../store/store.ts'
import type { ClusterLink } from './link.ts'

/** The change log: one document per commit of the deployment, inserted in that commit. */
export const changeLog: CollectionSpec = { name: '_stagehub_changes', indexes: [['expiresAt']] }

/** One commit of the deployment as the change log holds it. */
export interface ChangeEntry extends StoredDoc {
  /** When the committing process made it (ms since the epoch, its clock). */
  at: number
  /** The committing process's id. */
  origin: string
  /** When the purge may delete it (ms since the epoch). */
  expiresAt: number
  changes: Change[]
}

export interface ChangeFeedOptions {
  store: Store
  link: ClusterLink
  log: Logger
  /** How often the change log is read for entries whose publish never arrived (default 500 ms). */
  pollMs?: number
  /** How far back each poll looks, by id time (default 10 s: covers slow commits and clock skew). */
  lookBackMs?: number
  /** How long entries stay in the log (default 5 minutes). */
  retentionMs?: number
  /** How often this process purges expired entries itself; 0 = never (default 60 s). */
  purgeEveryMs?: number
  /**
   * Test hook (fault injection): commit with a log entry but never publish it, as a process that
   * dies between its commit and the fan-out. Other processes must then learn it from the log.
   */
  withholdPublishes?: boolean
}

/** What this process last announced of a document (null: deleted), and a stamp that changes on every update. */
interface Known {
  doc: StoredDoc | null
  stamp: number
  /** Date.now() of the update, for forgetting. */
  touched: number
}

/** Counters for tests and the log. */
export interface ChangeFeedStats {
  /** Entries this process committed and published. */
  published: number
  /** Entries of other processes announced after arriving on Redis. */
  fromRedis: number
  /** Entries of other processes announced after the poll found them missing. */
  fromPoll: number
  /** Entries received again (Redis and poll, or Redis twice) and dropped. */
  duplicates: number
  /** Changes of remote entries that were older than what this process had announced, so dropped. */
  stale: number
  /** Changes checked against the store because their order could not be told from the entry. */
  verified: number
}

const ID_TIME_WIDTH = 9 // base-36 digits of Date.now() until the year 5188

/** The smallest id of an entry made at `ms`: ids sort by time first. */
function idAt(ms: number): string {
  return Math.max(0, Math.floor(ms)).toString(36).padStart(ID_TIME_WIDTH, '0')
}

/**
 * A document as the store and Redis give it back (JSON: no undefined fields), so that what this
 * process committed compares equal to the same state read back or received.
 */
function asStored(doc: StoredDoc | null): StoredDoc | null {
  return doc === null ? null : (JSON.parse(JSON.stringify(doc)) as StoredDoc)
}

/** Equal documents, whatever the order of their fields. */
function sameDoc(a: StoredDoc | null, b: StoredDoc | null): boolean {
  return isDeepStrictEqual(a, b)
}

function docKey(collection: string, id: string): string {
  return `${collection}/${id}`
}

/**
 * The change feed (docs/cluster.md#change-feed): every process's change listeners see every commit of
 * the deployment, also when the committing process dies right after its commit.
 *
 * - Each commit inserts its entry into the change log in the same backend commit (the Store's
 *   CommitLog hook). Ids sort by time, then process id and a counter of that process: no shared
 *   counter, no hot document.
 * - Once durable, the entry is published on Redis (`stagehub:changes`) and the other processes
 *   announce it to their listeners.
 * - Every `pollMs` each process reads the ids of the last `lookBackMs`, then the entries it has not
 *   seen: an entry whose publish never happened (its process died) or that Redis did not deliver
 *   (a reconnect) is announced within about a second.
 * - Each entry is announced once per process, and per document in order: every announced change's
 *   `before` is what this process's listeners last saw of the document. A change that cannot be told
 *   to be the next one (a delete or re-insert, a gap, an entry found late by the poll) is checked
 *   against the store, and what is announced is the store's current document: never an older state.
 */
export class ChangeFeed implements CommitLog {
  readonly stats: ChangeFeedStats = {
    published: 0,
    fromRedis: 0,
    fromPoll: 0,
    duplicates: 0,
    stale: 0,
    verified: 0,
  }
  readonly #store: Store
  readonly #link: ClusterLink
  readonly #log: Logger
  readonly #channel: string
  readonly #pollMs: number
  readonly #lookBackMs: number
  readonly #retentionMs: number
  readonly #purgeEveryMs: number
  #withholdPublishes: boolean
  #counter = 0
  #stamp = 0
  /** Entry ids handled by this process (its own and others'), with their time, for dedupe. */
  readonly #seen = new Map<string, number>()
  readonly #known = new Map<string, Known>()
  /** Entries received before `start()`: announced once every listener is registered. */
  #held: { entry: ChangeEntry; late: boolean }[] | undefined = []
  /** Remote entries are resolved one at a time, in arrival order. */
  #chain: Promise<void> = Promise.resolve()
  readonly #announcing = new Set<Promise<void>>()
  #pollTimer: NodeJS.Timeout | undefined
  #purgeTimer: NodeJS.Timeout | undefined
  #polling: Promise<void> | undefined
  #closed = false
  #receiving = true
  readonly #onMessage = (channel: string, message: string): void => {
    if (channel !== this.#channel) return
    let entry: ChangeEntry
    try {
      entry = JSON.parse(message) as ChangeEntry
    } catch (err) {
      this.#log.warn({ err }, 'unreadable change-log entry on Redis: the poll will find it')
      return
    }
    if (entry.origin === this.#link.processId) return
    this.#receive(entry, false)
  }

  private constructor(options: ChangeFeedOptions) {
    this.#store = options.store
    this.#link = options.link
    this.#log = options.log
    this.#channel = options.link.key('changes')
    this.#pollMs = options.pollMs ?? 500
    this.#lookBackMs = options.lookBackMs ?? 10_000
    this.#retentionMs = options.retentionMs ?? 5 * 60_000
    this.#purgeEveryMs = options.purgeEveryMs ?? 60_000
    this.#withholdPublishes = options.withholdPublishes ?? false
  }

  /**
   * Before anything commits or loads state: every commit from now on writes its entry, entries
   * already in the log count as seen (the state this process loads next contains them), and
   * entries of others arriving from now on are held until `start()`.
   */
  static async open(options: ChangeFeedOptions): Promise<ChangeFeed> {
    const feed = new ChangeFeed(options)
    await feed.#store.ensureCollection(changeLog)
    feed.#link.subscriber.on('message', feed.#onMessage)
    await feed.#link.subscriber.subscribe(feed.#channel)
    for (const id of await feed.#recentIds()) feed.#seen.set(id, Date.now())
    feed.#store.useCommitLog(feed)
    return feed
  }

  /** Once every change listener is registered: announces what arrived meanwhile, and starts polling. */
  start(): void {
    if (!this.#receiving) return
    const held = this.#held ?? []
    this.#held = undefined
    // entries from before the listeners loaded their state: each is checked against the store
    for (const { entry } of held) this.#enqueue(entry, true)
    this.#schedulePoll()
    if (this.#purgeEveryMs > 0) {
      this.#purgeTimer = setInterval(() => void this.purge(), this.#purgeEveryMs)
      this.#purgeTimer.unref()
    }
  }

  /** Fault injection for tests: from now on this process commits but never publishes (see the option). */
  withholdPublishes(withhold = true): void {
    this.#withholdPublishes = withhold
  }

  /**
   * Deletes the entries past their retention; returns how many. Once per deployment is enough: the
   * hub has the coordinator call it (`purgeEveryMs: 0`).
   */
  async purge(): Promise<number> {
    try {
      return await this.#store.backend.purgeExpired(changeLog.name, 'expiresAt', Date.now())
    } catch (err) {
      this.#log.warn({ err }, 'could not purge the change log')
      return 0
    }
  }

  /**
   * Stops hearing the other processes (receiving, polling) and waits for announcements under way,
   * while this process's own commits are still logged and published: for a shutdown, before the
   * broker closes (the commits of its last disconnections must still reach the others).
   */
  async stopReceiving(): Promise<void> {
    this.#receiving = false
    clearTimeout(this.#pollTimer)
    clearInterval(this.#purgeTimer)
    this.#link.subscriber.off('message', this.#onMessage)
    // an unreachable Redis would hold the UNSUBSCRIBE (and this process's shutdown) until it is back
    if (this.#link.subscriber.status === 'ready')
      await this.#link.subscriber.unsubscribe(this.#channel).catch(() => undefined)
    await this.#polling
    await this.#chain
    await Promise.allSettled([...this.#announcing])
  }

  /** Stops receiving, and stops logging and publishing this process's commits. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.stopReceiving()
    this.#store.useCommitLog(undefined)
  }

  // ── CommitLog: this process's commits ───────────────────────────────────────────────────────

  entry(changes: readonly Change[]): { collection: string; doc: ChangeEntry } {
    const at = Date.now()
    const id = `${idAt(at)}-${this.#link.processId}-${(this.#counter++).toString(36).padStart(8, '0')}`
    return {
      collection: changeLog.name,
      doc: {
        id,
        version: 1,
        at,
        origin: this.#link.processId,
        expiresAt: at + this.#retentionMs,
        changes: [...changes],
      },
    }
  }

  committed(entry: StoredDoc, changes: readonly Change[]): readonly Change[] {
    this.#seen.set(entry.id, Date.now())
    if (!this.#withholdPublishes && !this.#closed) {
      this.stats.published++
      this.#link.commands.publish(this.#channel, JSON.stringify(entry)).catch((err: unknown) =>
        // the others find it in the log within a poll
        this.#log.warn({ err, entry: entry.id }, 'could not publish a commit on Redis'),
      )
    }
    // the commit read what it changed, so it is the newest state; its `before` becomes what this
    // process's listeners last saw (a remote change still on its way is then older, and dropped)
    let adjusted: Change[] | undefined
    changes.forEach((change, i) => {
      const known = this.#known.get(docKey(change.collection, change.id))
      if (known && !sameDoc(known.doc, asStored(change.before))) {
        adjusted ??= [...changes]
        adjusted[i] = { ...change, before: known.doc }
      }
      this.#remember(change.collection, change.id, asStored(change.after))
    })
    return adjusted ?? changes
  }

  // ── other processes' commits ────────────────────────────────────────────────────────────────

  #receive(entry: ChangeEntry, late: boolean): void {
    if (!this.#receiving) return
    if (this.#held) {
      this.#held.push({ entry, late })
      return
    }
    this.#enqueue(entry, late)
  }

  #enqueue(entry: ChangeEntry, late: boolean): void {
    if (this.#seen.has(entry.id)) {
      this.stats.duplicates++
      return
    }
    this.#seen.set(entry.id, Date.now())
    if (late) this.stats.fromPoll++
    else this.stats.fromRedis++
    this.#chain = this.#chain
      .then(() => this.#resolve(entry, late))
      .catch((err: unknown) =>
        this.#log.error({ err, entry: entry.id }, 'could not announce a commit of another process'),
      )
  }

  /**
   * Decides what of `entry` this process announces, and announces it. In order (the change's
   * `before` is what was last announced, or the document is not known here): as it is. Otherwise, or
   * when `late`, the store's current document is announced if it differs from what was announced.
   */
  async #resolve(entry: ChangeEntry, late: boolean): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const plan = entry.changes.map((change) => {
        const key = docKey(change.collection, change.id)
        const known = this.#known.get(key)
        return { change, key, stamp: known?.stamp, inOrder: !late && this.#inOrder(change, known) }
      })
      const current = plan.every((p) => p.inOrder)
        ? []
        : await Promise.all(
            plan.map(({ change, inOrder }) =>
              inOrder ? Promise.resolve(null) : this.#store.get(change.collection, change.id),
            ),
          )
      if (!this.#receiving) return
      // a commit of this process changed one of them meanwhile: decide again on fresh reads
      if (attempt < 5 && plan.some(({ key, stamp }) => this.#known.get(key)?.stamp !== stamp)) continue
      const announce: Change[] = []
      plan.forEach(({ change, key, inOrder }, i) => {
        const known = this.#known.get(key)
        if (inOrder) {
          announce.push(known ? { ...change, before: known.doc } : change)
          this.#remember(change.collection, change.id, change.after)
          return
        }
        this.stats.verified++
        const now = current[i] ?? null
        const before = known ? known.doc : change.before
        if (sameDoc(before, now)) {
          this.stats.stale++
          if (!known) this.#remember(change.collection, change.id, now)
          return
        }
        announce.push({ collection: change.collection, id: change.id, before, after: now })
        this.#remember(change.collection, change.id, now)
      })
      if (announce.length > 0) this.#announce(announce)
      return
    }
  }

  /**
   * Whether a change is certainly the next of its document here: its `before` is what was announced
   * last (a re-insert after an announced delete is not: it may belong to an older life of the id).
   * A document not announced lately is taken as it comes (Redis delivers in publish order; anything
   * late is checked).
   */
  #inOrder(change: Change, known: Known | undefined): boolean {
    if (!known) return true
    if (change.before === null) return false
    return known.doc !== null && sameDoc(known.doc, change.before)
  }

  #remember(collection: string, id: string, doc: StoredDoc | null): void {
    this.#known.set(docKey(collection, id), { doc, stamp: ++this.#stamp, touched: Date.now() })
  }

  #announce(changes: Change[]): void {
    const done = this.#store.announce(changes).finally(() => this.#announcing.delete(done))
    this.#announcing.add(done)
  }

  // ── the poll ────────────────────────────────────────────────────────────────────────────────

  #schedulePoll(): void {
    if (!this.#receiving) return
    this.#pollTimer = setTimeout(() => {
      this.#polling = this.#poll()
        .catch((err: unknown) => this.#log.warn({ err }, 'could not read the change log'))
        .finally(() => {
          this.#polling = undefined
          this.#schedulePoll()
        })
    }, this.#pollMs)
    this.#pollTimer.unref()
  }

  async #poll(): Promise<void> {
    const missing = (await this.#recentIds()).filter((id) => !this.#seen.has(id))
    // oldest first: the order they committed in, as far as the clocks tell
    for (const id of missing.reverse()) {
      if (!this.#receiving) return
      const entry = await this.#store.get<ChangeEntry>(changeLog.name, id)
      if (entry) this.#receive(entry, true)
    }
    this.#forget()
  }

  /** Ids of the log's entries made within the look-back window, newest first. */
  async #recentIds(): Promise<string[]> {
    const ids: string[] = []
    const idFrom = idAt(Date.now() - this.#lookBackMs)
    let idBelow: string | undefined
    for (;;) {
      const batch = await this.#store.pageIds(changeLog.name, { filter: {}, idFrom, idBelow, limit: 5000 })
      ids.push(...batch)
      if (batch.length < 5000) return ids
      idBelow = batch[batch.length - 1]
    }
  }

  /** Drops what no poll or late publish can bring again (twice the look-back window). */
  #forget(): void {
    const limit = Date.now() - 2 * this.#lookBackMs
    for (const [id, at] of this.#seen) if (at < limit) this.#seen.delete(id)
    for (const [key, known] of this.#known) if (known.touched < limit) this.#known.delete(key)
  }
}

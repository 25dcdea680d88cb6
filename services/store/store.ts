import { AsyncLocalStorage } from 'node:async_hooks'
import {
  type Change,
  type CollectionSpec,
  type DocRead,
  type Filter,
  type PageQuery,
  type QueryRead,
  type StoreBackend,
  type StoredDoc,
  type Write,
  VersionConflictError,
  fingerprint,
  matchesFilter,
} from './port.ts'

/** Set while a re-run holds its lane: a transaction nested in it does not wait for a lane itself. */
const inLane = new AsyncLocalStorage<boolean>()

/** A conflict with the transaction that had it (internal to Store.transaction). */
class ContendedError extends Error {
  constructor(
    readonly conflict: VersionConflictError,
    readonly tx: Transaction,
  ) {
    super(conflict.message)
  }
}

/** Work run one at a time per key; resolves or rejects with the work's outcome. */
class Lanes {
  readonly #tails = new Map<string, Promise<unknown>>()

  run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve()
    const result = previous.then(work, work)
    const tail = result.then(
      () => undefined,
      () => undefined,
    )
    this.#tails.set(key, tail)
    void tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key)
    })
    return result
  }
}

export type NewDoc<T extends StoredDoc> = Omit<T, 'version'>

/**
 * A unit of work: reads are recorded, writes are buffered and applied atomically at commit after the
 * backend checks that nothing read has changed (optimistic concurrency, serializable for the reads made).
 */
export class Transaction {
  readonly #backend: StoreBackend
  readonly #reads = new Map<string, DocRead>()
  /** The stored documents as first read (copies the caller cannot modify): the `before` of change events. */
  readonly #seen = new Map<string, StoredDoc>()
  readonly #queries: QueryRead[] = []
  /** Buffered writes by `collection/id`; the newest intent wins. */
  readonly #writes = new Map<string, { write: Write; before: StoredDoc | null }>()

  constructor(backend: StoreBackend) {
    this.#backend = backend
  }

  async get<T extends StoredDoc>(collection: string, id: string): Promise<T | null> {
    const key = `${collection}/${id}`
    const pending = this.#writes.get(key)
    if (pending) return pending.write.op === 'delete' ? null : (structuredClone(pending.write.doc) as T)
    const doc = await this.#backend.get(collection, id)
    if (!this.#reads.has(key)) {
      this.#reads.set(key, { collection, id, version: doc?.version ?? null })
      if (doc) this.#seen.set(key, structuredClone(doc))
    }
    return doc as T | null
  }

  async find<T extends StoredDoc>(collection: string, filter: Filter = {}): Promise<T[]> {
    const stored = await this.#backend.find(collection, filter)
    this.#queries.push({ collection, filter, fingerprint: fingerprint(stored) })
    for (const doc of stored) {
      const key = `${collection}/${doc.id}`
      if (!this.#reads.has(key)) {
        this.#reads.set(key, { collection, id: doc.id, version: doc.version })
        this.#seen.set(key, structuredClone(doc))
      }
    }
    const byId = new Map(stored.map((d) => [d.id, d]))
    for (const { write } of this.#writes.values()) {
      if (write.collection !== collection) continue
      if (write.op === 'delete') byId.delete(write.id)
      else if (matchesFilter(write.doc, filter)) byId.set(write.doc.id, structuredClone(write.doc))
      else byId.delete(write.doc.id)
    }
    // sorted by id like the backend's results, wherever the buffered writes put them
    return [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)) as T[]
  }

  /** Buffers an insert; the new document has version 1. */
  insert<T extends StoredDoc>(collection: string, doc: NewDoc<T>): T {
    const created = { ...structuredClone(doc), version: 1 } as T
    const key = `${collection}/${created.id}`
    const pending = this.#writes.get(key)
    if (pending?.write.op === 'delete') {
      // delete-then-insert within one transaction is a replace of the stored document
      created.version = pending.write.expectedVersion + 1
      this.#writes.set(key, {
        before: pending.before,
        write: { op: 'replace', collection, doc: created, expectedVersion: pending.write.expectedVersion },
      })
    } else {
      this.#writes.set(key, { before: null, write: { op: 'insert', collection, doc: created } })
    }
    return structuredClone(created)
  }

  /** Buffers a replacement of a document read in this transaction; returns it with its new version. */
  replace<T extends StoredDoc>(collection: string, doc: T): T {
    const key = `${collection}/${doc.id}`
    const pending = this.#writes.get(key)
    const next = structuredClone(doc)
    if (pending && pending.write.op !== 'delete') {
      next.version = pending.write.doc.version
      const write: Write =
        pending.write.op === 'insert'
          ? { op: 'insert', collection, doc: next }
          : { ...pending.write, doc: next }
      this.#writes.set(key, { before: pending.before, write })
      return structuredClone(next)
    }
    const read = this.#reads.get(key)
    if (!read || read.version === null || read.version !== doc.version) {
      throw new Error(`replace of ${key} needs the document read in this transaction first`)
    }
    next.version = doc.version + 1
    this.#writes.set(key, {
      // not `doc`: that is the new content (often the read object modified in place)
      before: this.#seen.get(key) ?? null,
      write: { op: 'replace', collection, doc: next, expectedVersion: doc.version },
    })
    return structuredClone(next)
  }

  /** Buffers the deletion of a document read in this transaction. */
  delete(collection: string, doc: StoredDoc): void {
    const key = `${collection}/${doc.id}`
    const pending = this.#writes.get(key)
    if (pending?.write.op === 'insert') {
      this.#writes.delete(key)
      return
    }
    const expectedVersion = pending?.write.op === 'replace' ? pending.write.expectedVersion : doc.version
    this.#writes.set(key, {
      before: pending?.before ?? this.#seen.get(key) ?? structuredClone(doc),
      write: { op: 'delete', collection, id: doc.id, expectedVersion },
    })
  }

  /**
   * @internal used by Store: what this transaction contends on, so that its re-runs queue behind other
   * re-runs of the same contention: the broadest query (fewest filter fields) on a collection it writes
   * (a set it reads and changes: the members of a stage, not one member), else the first document it writes.
   */
  contentionKey(): string {
    const writes = [...this.#writes.values()].map((e) => e.write)
    const written = new Set(writes.map((w) => w.collection))
    const [query] = this.#queries
      .filter((q) => written.has(q.collection))
      .sort((a, b) => Object.keys(a.filter).length - Object.keys(b.filter).length)
    if (query) {
      const fields = Object.keys(query.filter).sort()
      return `${query.collection}?${JSON.stringify(fields.map((f) => [f, query.filter[f]]))}`
    }
    const first = writes[0]
    return first ? `${first.collection}/${first.op === 'delete' ? first.id : first.doc.id}` : ''
  }

  /**
   * @internal used by Store. With a commit log, its entry for these changes is inserted in the same
   * backend commit: both are durable, or neither.
   */
  async commit(log?: CommitLog): Promise<{ changes: Change[]; entry?: StoredDoc }> {
    const entries = [...this.#writes.values()]
    if (entries.length === 0) return { changes: [] }
    const changes = entries.map(({ write, before }) => ({
      collection: write.collection,
      id: write.op === 'delete' ? write.id : write.doc.id,
      before,
      after: write.op === 'delete' ? null : write.doc,
    }))
    const writes = entries.map((e) => e.write)
    const logged = log?.entry(changes)
    if (logged) writes.push({ op: 'insert', collection: logged.collection, doc: logged.doc })
    await this.#backend.commit([...this.#reads.values()], this.#queries, writes)
    return logged ? { changes, entry: logged.doc } : { changes }
  }
}

/**
 * Called after every commit, in registration order, before the transaction's caller resumes. A
 * listener that returns a promise (a projection that reads the store) is awaited, so what it
 * publishes goes out before the committing request is answered. Listeners handle their own errors.
 */
export type ChangeListener = (changes: readonly Change[]) => void | Promise<void>

/**
 * A change log every commit writes to (services/cluster/change-feed.ts: several processes share the
 * store, and each announces every commit of the deployment to its listeners).
 */
export interface CommitLog {
  /** The log document to insert in the same backend commit as `changes`. */
  entry(changes: readonly Change[]): { collection: string; doc: StoredDoc }
  /**
   * After that commit is durable: tells the other processes, and returns the changes to announce
   * on this one (each change's `before` being what this process's listeners last saw of the document).
   */
  committed(entry: StoredDoc, changes: readonly Change[]): readonly Change[]
}

export interface TransactionOptions {
  /** How often a transaction that lost a race is re-run before giving up with a conflict. */
  retries?: number
}

/** The store every service uses: reads, optimistic transactions and committed-change events. */
export class Store {
  readonly backend: StoreBackend
  readonly #listeners = new Set<ChangeListener>()
  readonly #collections = new Map<string, CollectionSpec>()
  /** Re-runs of conflicted transactions, one at a time per contention key. */
  readonly #lanes = new Lanes()
  #log: CommitLog | undefined

  constructor(backend: StoreBackend) {
    this.backend = backend
  }

  get kind(): StoreBackend['kind'] {
    return this.backend.kind
  }

  async ensureCollection(spec: CollectionSpec): Promise<void> {
    if (this.#collections.has(spec.name)) return
    await this.backend.ensureCollection(spec)
    this.#collections.set(spec.name, spec)
  }

  get<T extends StoredDoc>(collection: string, id: string): Promise<T | null> {
    return this.backend.get(collection, id) as Promise<T | null>
  }

  find<T extends StoredDoc>(collection: string, filter: Filter = {}): Promise<T[]> {
    return this.backend.find(collection, filter) as Promise<T[]>
  }

  scan<T extends StoredDoc>(collection: string): AsyncIterable<T> {
    return this.backend.scan(collection) as AsyncIterable<T>
  }

  page<T extends StoredDoc>(collection: string, query: PageQuery): Promise<T[]> {
    return this.backend.page(collection, query) as Promise<T[]>
  }

  /**
   * Runs `work` in a transaction and commits it; re-runs it when a concurrent commit changed what it
   * read. `work` must not have side effects outside the transaction (it may run more than once).
   * Resolves with work's value and the committed changes, after they are durable and announced.
   */
  async transaction<R>(
    work: (tx: Transaction) => Promise<R>,
    options: TransactionOptions = {},
  ): Promise<{ value: R; changes: readonly Change[] }> {
    const retries = options.retries ?? 25
    // `announced`: with a commit log, tells the other processes and gives what to announce here
    type Committed = { value: R; changes: Change[]; announced?: (() => readonly Change[]) | undefined }
    const attempt = async (): Promise<Committed> => {
      const tx = new Transaction(this.backend)
      const value = await work(tx)
      const log = this.#log
      try {
        const { changes, entry } = await tx.commit(log)
        return { value, changes, announced: log && entry ? () => log.committed(entry, changes) : undefined }
      } catch (err) {
        throw err instanceof VersionConflictError ? new ContendedError(err, tx) : err
      }
    }
    let lane: string | undefined
    for (let retry = 0; ; retry++) {
      let outcome: Committed
      try {
        // a re-run queues behind the other re-runs of the same contention in this process (unless it
        // is nested in one: no waiting on itself): contenders then commit one after the other, each
        // on fresh reads, instead of all re-reading at once and colliding again, round after round
        outcome =
          lane !== undefined && !inLane.getStore()
            ? await this.#lanes.run(lane, () => inLane.run(true, attempt))
            : await attempt()
      } catch (err) {
        if (!(err instanceof ContendedError)) throw err
        if (retry >= retries) throw err.conflict
        lane = err.tx.contentionKey()
        // jittered, capped backoff: contenders of other processes spread out instead of colliding again
        await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(2 ** retry, 50)))
        continue
      }
      if (outcome.changes.length > 0) await this.#announce(outcome.announced?.() ?? outcome.changes)
      return { value: outcome.value, changes: outcome.changes }
    }
  }

  onChange(listener: ChangeListener): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  /**
   * From now on every commit also writes an entry of `log` and tells it once durable; undefined stops
   * it. Without a log (one process) the store works as it always did.
   */
  useCommitLog(log: CommitLog | undefined): void {
    this.#log = log
  }

  /**
   * Announces changes committed by another process of the deployment (the change feed) to this
   * process's listeners, exactly as its own commits are announced.
   */
  announce(changes: readonly Change[]): Promise<void> {
    return this.#announce(changes)
  }

  /** The ids `page` would return, without the documents (cheap polling of a log whose ids sort by time). */
  async pageIds(collection: string, query: PageQuery): Promise<string[]> {
    if (this.backend.pageIds) return this.backend.pageIds(collection, query)
    return (await this.backend.page(collection, query)).map((doc) => doc.id)
  }

  /** See StoreBackend.watchOutsideCommits; nothing is reported by a backend that cannot tell. */
  onOutsideCommit(listener: () => void, intervalMs = 1000): () => void {
    return this.backend.watchOutsideCommits?.(listener, intervalMs) ?? (() => undefined)
  }

  ping(): Promise<void> {
    return this.backend.ping()
  }

  close(): Promise<void> {
    return this.backend.close()
  }

  async #announce(changes: readonly Change[]): Promise<void> {
    // synchronous listeners (the access index) have all run before the first await
    const pending = [...this.#listeners].map((listener) => Promise.resolve(listener(changes)))
    await Promise.allSettled(pending)
  }
}

/**
 * The one store port every service uses. Documents are JSON objects with a string `id` and an integer
 * `version` the store maintains (1 on insert, +1 on every replace). Backends (embedded SQLite, MongoDB)
 * implement `StoreBackend`; `Store` adds optimistic transactions, retries and change events on top, so
 * both backends share those semantics exactly.
 */

export interface StoredDoc {
  id: string
  version: number
}

/** Equality filter on top-level fields: `{ stageId: 's1', online: true }`. */
export type Filter = Readonly<Record<string, string | number | boolean | null>>

export interface CollectionSpec {
  name: string
  /** Each entry is a set of fields whose combined values must be unique (documents missing any field are exempt). */
  unique?: ReadonlyArray<ReadonlyArray<string>>
  /** Fields that are queried with `find` and deserve an index. */
  indexes?: ReadonlyArray<ReadonlyArray<string>>
}

export interface DocRead {
  collection: string
  id: string
  /** The version seen, or null when the document did not exist. */
  version: number | null
}

export interface QueryRead {
  collection: string
  filter: Filter
  /** `id:version` of every document the query returned, sorted. */
  fingerprint: string
}

export type Write =
  | { op: 'insert'; collection: string; doc: StoredDoc }
  | { op: 'replace'; collection: string; doc: StoredDoc; expectedVersion: number }
  | { op: 'delete'; collection: string; id: string; expectedVersion: number }

export interface Change<T extends StoredDoc = StoredDoc> {
  collection: string
  id: string
  before: T | null
  after: T | null
}

/** A commit failed because something read or written changed meanwhile; the transaction may be retried. */
export class VersionConflictError extends Error {
  override readonly name = 'VersionConflictError'
}

/** A commit failed because it would break a unique constraint (or insert an existing id). Not retried. */
export class UniqueViolationError extends Error {
  override readonly name = 'UniqueViolationError'
  constructor(
    readonly collection: string,
    readonly fields: readonly string[],
  ) {
    super(`${collection}: another document already has this ${fields.join(' + ')}`)
  }
}

/** One page of a collection in id order, highest first (see StoreBackend.page). */
export interface PageQuery {
  /** Equality on top-level fields, as for `find`. */
  filter: Filter
  /** Only documents whose top-level array `field` has an element equal to `value`. */
  contains?: { field: string; value: string } | undefined
  /** Only ids ≥ `idFrom` and < `idBelow` (string order). */
  idFrom?: string | undefined
  idBelow?: string | undefined
  limit: number
}

export interface StoreBackend {
  readonly kind: 'embedded' | 'mongodb'
  ensureCollection(spec: CollectionSpec): Promise<void>
  get(collection: string, id: string): Promise<StoredDoc | null>
  find(collection: string, filter: Filter): Promise<StoredDoc[]>
  /** Every document of a collection, in batches, for start-up republishing. */
  scan(collection: string): AsyncIterable<StoredDoc>
  /**
   * Atomically: check that every read still holds (same versions, same query results), then apply
   * every write, or change nothing and throw VersionConflictError / UniqueViolationError.
   * Resolves only once the change is durable.
   */
  commit(reads: readonly DocRead[], queries: readonly QueryRead[], writes: readonly Write[]): Promise<void>
  /**
   * The documents matching `query`, highest id first, at most `query.limit`. Read outside any
   * transaction: for listings (the audit trail, whose ids sort by time), not for decisions.
   */
  page(collection: string, query: PageQuery): Promise<StoredDoc[]>
  /** Optional: the ids `page` would return, without reading the documents. */
  pageIds?(collection: string, query: PageQuery): Promise<string[]>
  /** Deletes, outside any transaction, every document whose numeric `field` is below `limit`; returns how many. */
  purgeExpired(collection: string, field: string, limit: number): Promise<number>
  /**
   * Calls `listener` (checking every `intervalMs`) after another process committed to the store, e.g.
   * the operator CLI while a hub runs; what changed is not known. Optional: a backend without it
   * reports nothing. Returns a function that stops watching.
   */
  watchOutsideCommits?(listener: () => void, intervalMs: number): () => void
  /** Throws when the backend cannot serve requests (readiness). */
  ping(): Promise<void>
  close(): Promise<void>
}

export function fingerprint(docs: readonly StoredDoc[]): string {
  return docs
    .map((d) => `${d.id}:${d.version}`)
    .sort()
    .join(',')
}

export function matchesFilter(doc: StoredDoc, filter: Filter): boolean {
  for (const key of Object.keys(filter)) {
    const value = (doc as unknown as Record<string, unknown>)[key]
    if ((value === undefined ? null : value) !== filter[key]) return false
  }
  return true
}

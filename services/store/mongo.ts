import {
  type AnyBulkWriteOperation,
  type ClientSession,
  type Collection,
  type Db,
  type Document,
  type Filter as MongoFilter,
  MongoClient,
  MongoError,
  type TransactionOptions,
  WriteConcern,
} from 'mongodb'
import {
  type CollectionSpec,
  type DocRead,
  type Filter,
  type PageQuery,
  type QueryRead,
  type StoreBackend,
  type StoredDoc,
  type Write,
  UniqueViolationError,
  VersionConflictError,
  fingerprint,
  matchesFilter,
} from './port.ts'

/** A collection name; `_stagehub_` names are the hub's own (the change log). */
const NAME = /^(?:_stagehub_)?[a-z][a-z0-9_]{0,62}$/
const FIELD = /^[A-Za-z][A-Za-z0-9_]{0,62}$/

/**
 * Set counters live here (see MongoBackend); the leading underscore keeps it apart from every valid
 * collection name. Not `_stagehub_locks`, the read-lock stripes of earlier releases: those documents are
 * no longer read or written and may be dropped.
 */
const COUNTERS = '_stagehub_counters'
/** The database when MONGO_URL names none. */
export const DEFAULT_DB_NAME = 'stagehub'

/** BSON types a unique index covers: every JSON value except null, as SQLite's NULL is exempt from UNIQUE. */
const PRESENT_TYPES = ['string', 'number', 'bool', 'object', 'array']

const DUPLICATE_KEY = 11000
const INDEX_NOT_FOUND = 27
/** What a concurrent index change by another process can make ours fail with (by code name and code). */
const INDEX_RACES = new Set<unknown>([
  'IndexAlreadyExists',
  'IndexOptionsConflict',
  'IndexKeySpecsConflict',
  'IndexNotFound',
  'WriteConflict', // DocumentDB: catalog changes at once deadlock
  'IndexBuildAborted',
  'IndexBuildAlreadyInProgress',
  68,
  85,
  86,
  INDEX_NOT_FOUND,
  112,
  276,
])
/** Names of the indexes ensureCollection owns (`u_` unique, `i_` plain, then the fields). */
const OWN_INDEX = /^[ui]_[A-Za-z]/
const WRITE_CONFLICT = 112
const NAMESPACE_EXISTS = 48
const TRANSIENT = 'TransientTransactionError'
const UNKNOWN_COMMIT_RESULT = 'UnknownTransactionCommitResult'

/** How documents are stored: `_id` holds the id; every other field as given. */
interface MongoDoc {
  _id: string
  version: number
  [field: string]: unknown
}

interface IndexDefinition {
  key: Record<string, 1>
  unique: boolean
  partialFilterExpression?: Document
}

interface CounterDoc {
  _id: string
  n: number
}

const TRANSACTION: TransactionOptions = {
  readConcern: { level: 'snapshot' },
  // a resolved commit is on a majority of the replica set, in their journals
  writeConcern: new WriteConcern('majority', undefined, true),
  readPreference: 'primary',
}

export interface MongoConnectOptions {
  /** The database to use; default: the one named in the URL's path, else `stagehub`. */
  dbName?: string
}

/**
 * The MongoDB store (replica set or sharded cluster required, for transactions). Each commit is one
 * transaction with snapshot reads and a majority/journaled commit. Readers never write: two requests
 * that only read the same documents (the stage, the group, the user) never conflict.
 *
 * What a commit checks, and why that is enough for the hub's invariants:
 *  1. Read-set validation in the transaction's snapshot: every document version and query result the
 *     Store transaction read must be unchanged. The snapshot makes this check consistent; it catches
 *     every commit that happened before the snapshot was taken.
 *  2. Conditional writes: replace and delete match `{_id, version: expected}`, inserts collide on `_id`.
 *     Two transactions writing the same document always conflict (write-write, detected by MongoDB).
 *  3. Unique indexes (CollectionSpec.unique) hold whatever the interleaving: seats per stage
 *     (`stageId + seat`), one membership per user and stage, one account per email. A duplicate key
 *     whose cause is a concurrent commit (something the transaction read changed meanwhile) is a
 *     VersionConflictError, so the transaction re-runs and chooses again (the next free seat); only a
 *     duplicate the transaction's own reads cannot explain is a UniqueViolationError.
 *  4. Set counters against write skew: snapshot isolation alone lets two transactions that read the same
 *     set and each add to it both commit (each checked a quota against a count the other is changing,
 *     or chose a colour the other is taking at the same time). So a transaction that ran a query and
 *     writes a document of that collection matching the query's filter (before or after the write:
 *     entering, leaving or changing within the result set) also bumps the counter document of that
 *     query (`collection` + filter) in `_stagehub_counters`. Every such contender writes the same
 *     counter, turning the read-write dependency into a write-write conflict: members per stage, groups
 *     per stage and their colours, devices per owner, invites per stage are count-or-choose-then-write
 *     on the set they query, and stay serialisable. Readers of the set that write elsewhere (mix.set
 *     reads the membership, writes its own mix) bump nothing.
 * What is not serialised: a transaction that reads a document by id and writes other documents does
 * not conflict with a concurrent commit changing that document after its snapshot (snapshot isolation,
 * as MongoDB itself gives). The hub's invariants do not rest on such reads alone: each is one of 1-4
 * above (see docs/cluster.md, "MongoDB backend"). Insert-only collections that no transaction queries
 * (the change log `_stagehub_changes`) never conflict: their ids are unique and they bump no counter.
 * Write conflicts and transient transaction errors surface as VersionConflictError so that Store
 * re-runs the transaction with fresh reads.
 */
export class MongoBackend implements StoreBackend {
  readonly kind = 'mongodb'
  readonly #client: MongoClient
  readonly #db: Db
  readonly #counters: Collection<CounterDoc>
  /** Unique index name → its fields, per collection. */
  readonly #uniqueIndexes = new Map<string, Map<string, string[]>>()
  #closed = false

  private constructor(client: MongoClient, db: Db) {
    this.#client = client
    this.#db = db
    this.#counters = db.collection<CounterDoc>(COUNTERS)
  }

  get databaseName(): string {
    return this.#db.databaseName
  }

  static async connect(url: string, options: MongoConnectOptions = {}): Promise<MongoBackend> {
    const client = new MongoClient(url, {
      // like JSON.stringify in the embedded store: undefined fields are left out, not stored as null
      ignoreUndefined: true,
      writeConcern: { w: 'majority', journal: true },
    })
    await client.connect()
    try {
      const hello = await client.db('admin').command({ hello: 1 })
      assertWritable(hello)
      const backend = new MongoBackend(client, client.db(options.dbName ?? databaseFromUrl(url)))
      await backend.#createCollection(COUNTERS)
      return backend
    } catch (err) {
      await client.close()
      throw err
    }
  }

  /**
   * Creates the collection and its indexes. Indexes are named after their fields (`u_…` unique,
   * `i_…` plain); one of those names whose definition differs from the spec (an earlier release's) is
   * dropped and created anew, and one the spec no longer has is dropped, so an upgrade never fails on
   * `IndexOptionsConflict` nor keeps enforcing a constraint the code dropped. Processes starting at once
   * with the same specs all succeed: creating an existing identical index is a no-op, and a drop that
   * another process already did is ignored. Indexes with other names (an operator's) are left alone.
   */
  async ensureCollection(spec: CollectionSpec): Promise<void> {
    this.#assertOpen()
    const collection = this.#collection(spec.name)
    const uniques = this.#uniqueIndexes.get(spec.name) ?? new Map<string, string[]>()
    const wanted = new Map<string, IndexDefinition>()
    for (const fields of spec.unique ?? []) {
      checkFields(fields)
      const name = indexName('u', fields)
      uniques.set(name, [...fields])
      if (fields.length === 1 && fields[0] === 'id') continue
      const present = fields.filter((f) => f !== 'id').map((f) => [f, { $type: PRESENT_TYPES }] as const)
      wanted.set(name, {
        key: indexKeys(fields),
        unique: true,
        partialFilterExpression: Object.fromEntries(present),
      })
    }
    this.#uniqueIndexes.set(spec.name, uniques)
    for (const fields of spec.indexes ?? []) {
      checkFields(fields)
      if (fields.length === 1 && fields[0] === 'id') continue
      const name = indexName('i', fields)
      if (!wanted.has(name)) wanted.set(name, { key: indexKeys(fields), unique: false })
    }
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#createCollection(spec.name)
        await this.#syncIndexes(collection, wanted)
        return
      } catch (err) {
        // another process changed the same index between our listing and our change: look again
        const race =
          err instanceof MongoError &&
          (INDEX_RACES.has(err.code) ||
            INDEX_RACES.has((err as MongoError & { codeName?: unknown }).codeName))
        if (attempt >= 8 || !race) throw err
        await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 100 * (attempt + 1)))
      }
    }
  }

  async #syncIndexes(collection: Collection<MongoDoc>, wanted: ReadonlyMap<string, IndexDefinition>) {
    const existing = new Map<string, Document>()
    for (const index of (await collection.listIndexes().toArray()) as Document[]) {
      existing.set(String(index.name), index)
    }
    for (const [name, index] of existing) {
      if (!OWN_INDEX.test(name)) continue
      const want = wanted.get(name)
      if (want && sameIndex(index, want)) continue
      try {
        await collection.dropIndex(name)
      } catch (err) {
        if (!(err instanceof MongoError && err.code === INDEX_NOT_FOUND)) throw err
      }
      existing.delete(name)
    }
    for (const [name, want] of wanted) {
      if (existing.has(name)) continue
      await collection.createIndex(want.key, {
        name,
        ...(want.unique ? { unique: true, partialFilterExpression: want.partialFilterExpression } : {}),
      })
    }
  }

  async get(collection: string, id: string): Promise<StoredDoc | null> {
    this.#assertOpen()
    const raw = await this.#collection(collection).findOne({ _id: id })
    return raw ? fromMongo(raw) : null
  }

  async find(collection: string, filter: Filter): Promise<StoredDoc[]> {
    this.#assertOpen()
    return this.#find(collection, filter)
  }

  async *scan(collection: string): AsyncIterable<StoredDoc> {
    this.#assertOpen()
    const cursor = this.#collection(collection).find({}, { sort: { _id: 1 }, batchSize: 1000 })
    try {
      for await (const raw of cursor) yield fromMongo(raw)
    } finally {
      await cursor.close()
    }
  }

  async page(collection: string, query: PageQuery): Promise<StoredDoc[]> {
    this.#assertOpen()
    const docs = await this.#collection(collection)
      .find(pageQuery(query) as MongoFilter<MongoDoc>, { sort: { _id: -1 }, limit: query.limit })
      .toArray()
    return docs.map(fromMongo)
  }

  async pageIds(collection: string, query: PageQuery): Promise<string[]> {
    this.#assertOpen()
    const docs = await this.#collection(collection)
      .find(pageQuery(query) as MongoFilter<MongoDoc>, {
        sort: { _id: -1 },
        limit: query.limit,
        projection: { _id: 1 },
      })
      .toArray()
    return docs.map((doc) => doc._id)
  }

  async commit(
    reads: readonly DocRead[],
    queries: readonly QueryRead[],
    writes: readonly Write[],
  ): Promise<void> {
    this.#assertOpen()
    if (writes.length === 0) return
    const session = this.#client.startSession()
    try {
      await session.withTransaction(async () => {
        try {
          await this.#commitIn(session, reads, queries, writes)
        } catch (err) {
          // not a MongoError any more, so withTransaction aborts and rethrows instead of retrying itself
          throw conflictOr(err)
        }
      }, TRANSACTION)
    } catch (err) {
      const failure = conflictOr(err)
      // a duplicate key made by a commit after this transaction's reads (two joins taking the same free
      // seat) is a lost race: re-run and choose again. Only one the reads cannot explain is a violation.
      if (failure instanceof UniqueViolationError && (await this.#readsChanged(reads, queries))) {
        throw new VersionConflictError(`${failure.message}, taken by a concurrent transaction`)
      }
      throw failure
    } finally {
      await session.endSession()
    }
  }

  async purgeExpired(collection: string, field: string, limit: number): Promise<number> {
    this.#assertOpen()
    checkFields([field])
    // $lt only compares numbers with numbers, like SQLite's `<` with a number
    const { deletedCount } = await this.#collection(collection).deleteMany({
      [mongoField(field)]: { $lt: limit },
    } as MongoFilter<MongoDoc>)
    return deletedCount
  }

  async ping(): Promise<void> {
    this.#assertOpen()
    await this.#db.command({ ping: 1 })
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#client.close()
  }

  async #commitIn(
    session: ClientSession,
    reads: readonly DocRead[],
    queries: readonly QueryRead[],
    writes: readonly Write[],
  ): Promise<void> {
    const current = await this.#loadCurrent(session, reads, writes)

    for (const read of reads) {
      const version = current.get(docKey(read.collection, read.id))?.version ?? null
      if (version !== read.version) {
        throw new VersionConflictError(
          `${read.collection}/${read.id} changed (version ${read.version} → ${version})`,
        )
      }
    }

    for (const query of queries) {
      if (fingerprint(await this.#find(query.collection, query.filter, session)) !== query.fingerprint) {
        throw new VersionConflictError(`${query.collection} matching ${JSON.stringify(query.filter)} changed`)
      }
    }

    const counters = new Set<string>()
    for (const write of writes) {
      const id = write.op === 'delete' ? write.id : write.doc.id
      const before = current.get(docKey(write.collection, id)) ?? null
      if (write.op === 'insert') {
        if (before) throw new UniqueViolationError(write.collection, ['id'])
      } else if (before?.version !== write.expectedVersion) {
        throw new VersionConflictError(`${write.collection}/${id} changed`)
      }
      const after = write.op === 'delete' ? null : write.doc
      for (const query of queries) {
        if (query.collection !== write.collection) continue
        if (
          (before && matchesFilter(before, query.filter)) ||
          (after && matchesFilter(after, query.filter))
        ) {
          counters.add(counterId(query))
        }
      }
    }

    await this.#bumpCounters(session, counters)

    // one bulk write per collection (ordered, in the transaction's order): a round trip per collection, not per document
    const byCollection = new Map<string, Write[]>()
    for (const write of writes)
      byCollection.set(write.collection, [...(byCollection.get(write.collection) ?? []), write])
    for (const [name, batch] of byCollection) {
      const operations: AnyBulkWriteOperation<MongoDoc>[] = batch.map((write) =>
        write.op === 'insert'
          ? { insertOne: { document: toMongo(write.doc) } }
          : write.op === 'replace'
            ? {
                replaceOne: {
                  filter: { _id: write.doc.id, version: write.expectedVersion },
                  replacement: withoutId(write.doc),
                },
              }
            : { deleteOne: { filter: { _id: write.id, version: write.expectedVersion } } },
      )
      let result: { matchedCount: number; deletedCount: number }
      try {
        result = await this.#collection(name).bulkWrite(operations, { session, ordered: true })
      } catch (err) {
        if (err instanceof MongoError && errorCodes(err).includes(DUPLICATE_KEY) && !isTransient(err)) {
          throw new UniqueViolationError(name, this.#violatedFields(name, err))
        }
        throw err
      }
      const replaces = batch.filter((w) => w.op === 'replace').length
      const deletes = batch.filter((w) => w.op === 'delete').length
      // the versions were checked in the snapshot: a miss here means a concurrent commit got there first
      if (result.matchedCount !== replaces || result.deletedCount !== deletes) {
        throw new VersionConflictError(`${name}: a document written changed meanwhile`)
      }
    }
  }

  /** Whether any document version or query result read by a transaction differs now (read outside any transaction). */
  async #readsChanged(reads: readonly DocRead[], queries: readonly QueryRead[]): Promise<boolean> {
    for (const read of reads) {
      const doc = await this.#collection(read.collection).findOne(
        { _id: read.id },
        { projection: { version: 1 } },
      )
      if ((doc?.version ?? null) !== read.version) return true
    }
    for (const query of queries) {
      if (fingerprint(await this.#find(query.collection, query.filter)) !== query.fingerprint) return true
    }
    return false
  }

  /** The stored version of every document read or written, as of the transaction's snapshot. */
  async #loadCurrent(
    session: ClientSession,
    reads: readonly DocRead[],
    writes: readonly Write[],
  ): Promise<Map<string, StoredDoc>> {
    const idsByCollection = new Map<string, Set<string>>()
    const want = (collection: string, id: string): void => {
      const ids = idsByCollection.get(collection) ?? new Set<string>()
      ids.add(id)
      idsByCollection.set(collection, ids)
    }
    for (const read of reads) want(read.collection, read.id)
    // a change-log entry has a fresh unique id: nothing to compare (the _id index refuses a duplicate)
    for (const write of writes)
      if (!isLog(write.collection)) want(write.collection, write.op === 'delete' ? write.id : write.doc.id)
    const current = new Map<string, StoredDoc>()
    for (const [collection, ids] of idsByCollection) {
      const cursor = this.#collection(collection).find({ _id: { $in: [...ids] } }, { session })
      for await (const raw of cursor) current.set(docKey(collection, raw._id), fromMongo(raw))
    }
    return current
  }

  /** Increments each counter document (created at 1): contenders on one counter conflict, write-write. */
  async #bumpCounters(session: ClientSession, counters: ReadonlySet<string>): Promise<void> {
    if (counters.size === 0) return
    const operations: AnyBulkWriteOperation<CounterDoc>[] = [...counters].sort().map((_id) => ({
      updateOne: { filter: { _id }, update: { $inc: { n: 1 } }, upsert: true },
    }))
    try {
      await this.#counters.bulkWrite(operations, { session, ordered: true })
    } catch (err) {
      // two transactions creating the same counter document collide on its _id: a conflict as well
      if (err instanceof MongoError && errorCodes(err).includes(DUPLICATE_KEY)) {
        throw new VersionConflictError('a concurrent transaction changed the same set of documents')
      }
      throw err
    }
  }

  #violatedFields(collection: string, err: MongoError): string[] {
    const known = this.#uniqueIndexes.get(collection)
    const name = /index: (\S+)/.exec(`${err.message} ${errorMessages(err).join(' ')}`)?.[1]
    const byName = name ? known?.get(name) : undefined
    if (byName) return [...byName]
    const keyPattern =
      (err as MongoError & { keyPattern?: Record<string, unknown> }).keyPattern ?? firstKeyPattern(err)
    const fields = keyPattern ? Object.keys(keyPattern).map((f) => (f === '_id' ? 'id' : f)) : ['id']
    return fields.length > 0 ? fields : ['id']
  }

  async #find(collection: string, filter: Filter, session?: ClientSession): Promise<StoredDoc[]> {
    const docs = await this.#collection(collection)
      .find(equalities(filter) as MongoFilter<MongoDoc>, {
        sort: { _id: 1 },
        ...(session ? { session } : {}),
      })
      .toArray()
    return docs.map(fromMongo)
  }

  #collection(name: string): Collection<MongoDoc> {
    if (!NAME.test(name)) throw new Error(`invalid collection name ${name}`)
    return this.#db.collection<MongoDoc>(name)
  }

  async #createCollection(name: string): Promise<void> {
    try {
      await this.#db.createCollection(name)
    } catch (err) {
      if (!(err instanceof MongoError && err.code === NAMESPACE_EXISTS)) throw err
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new Error('the store is closed')
  }
}

function checkFields(fields: readonly string[]): void {
  for (const field of fields) if (!FIELD.test(field)) throw new Error(`invalid field name ${field}`)
}

/** A query for equality on each field of `filter`. */
function equalities(filter: Filter): Document {
  const query: Document = {}
  for (const field of Object.keys(filter)) {
    checkFields([field])
    // $eq keeps values from being read as operators; null matches null and missing fields
    query[mongoField(field)] = { $eq: filter[field] ?? null }
  }
  return query
}

/** The filter of a page query (equalities, an array element, an id range). */
function pageQuery(query: PageQuery): Document {
  const mongoQuery = equalities(query.filter)
  if (query.contains) {
    checkFields([query.contains.field])
    // $eq on an array field matches any of its elements
    mongoQuery[mongoField(query.contains.field)] = { $eq: query.contains.value }
  }
  const ids: Document = {}
  if (query.idFrom !== undefined) ids.$gte = query.idFrom
  if (query.idBelow !== undefined) ids.$lt = query.idBelow
  if (Object.keys(ids).length > 0) mongoQuery._id = ids
  return mongoQuery
}

/** The hub's own append-only logs (the change log): written with unique ids, never read in transactions. */
function isLog(collection: string): boolean {
  return collection.startsWith('_stagehub_')
}

function mongoField(field: string): string {
  return field === 'id' ? '_id' : field
}

function indexKeys(fields: readonly string[]): Record<string, 1> {
  return Object.fromEntries(fields.map((f) => [mongoField(f), 1 as const]))
}

function indexName(prefix: string, fields: readonly string[]): string {
  return `${prefix}_${fields.join('_')}`
}

function toMongo(doc: StoredDoc): MongoDoc {
  const { id, ...rest } = doc as StoredDoc & Record<string, unknown>
  return { ...rest, _id: id, version: doc.version }
}

function withoutId(doc: StoredDoc): Omit<MongoDoc, '_id'> {
  const { id: _id, ...rest } = doc as StoredDoc & Record<string, unknown>
  return { ...rest, version: doc.version }
}

function fromMongo(raw: MongoDoc): StoredDoc {
  const { _id, ...rest } = raw
  return { id: _id, ...rest } as StoredDoc
}

function docKey(collection: string, id: string): string {
  return `${collection}/${id}`
}

/** The counter of a query: its collection and its filter, fields sorted (one counter per distinct query). */
function counterId(query: QueryRead): string {
  const fields = Object.keys(query.filter).sort()
  return `${query.collection}?${JSON.stringify(fields.map((f) => [f, query.filter[f] ?? null]))}`
}

/** The database named in a MongoDB URL's path (`mongodb://host/NAME?…`), or DEFAULT_DB_NAME. */
export function databaseFromUrl(url: string): string {
  const path = /^mongodb(?:\+srv)?:\/\/[^/?#]*\/([^?#]*)/.exec(url)?.[1] ?? ''
  return path ? decodeURIComponent(path) : DEFAULT_DB_NAME
}

/**
 * Refuses a server that cannot take the store's writes and transactions: a standalone server (no
 * replica set) or a secondary (reached with directConnection, or a URL naming one host without
 * `replicaSet`). A mongos (`msg: 'isdbgrid'`) routes to its shards' primaries and is accepted.
 */
export function assertWritable(hello: Document): void {
  const mongos = hello.msg === 'isdbgrid'
  if (!mongos && typeof hello.setName !== 'string') {
    throw new Error(
      'MongoDB must be a replica set (or a sharded cluster): the store needs transactions. Start mongod with --replSet and rs.initiate(), then add ?replicaSet=NAME to MONGO_URL',
    )
  }
  if (!mongos && hello.isWritablePrimary !== true) {
    const set = String(hello.setName)
    const primary = typeof hello.primary === 'string' ? ` (the primary now is ${hello.primary})` : ''
    throw new Error(
      `MONGO_URL reaches a secondary of replica set ${set}${primary}, which cannot take writes: connect to the replica set, not one member: list its hosts and add ?replicaSet=${set} to MONGO_URL (without directConnection=true)`,
    )
  }
}

function errorCodes(err: MongoError): unknown[] {
  const writeErrors = (err as MongoError & { writeErrors?: unknown }).writeErrors
  const nested = Array.isArray(writeErrors)
    ? writeErrors.map((e: { code?: unknown }) => e.code)
    : writeErrors && typeof writeErrors === 'object'
      ? [(writeErrors as { code?: unknown }).code]
      : []
  return [err.code, ...nested]
}

/** The messages of a bulk write's write errors. */
function errorMessages(err: MongoError): string[] {
  const writeErrors = (err as MongoError & { writeErrors?: unknown }).writeErrors
  const list: unknown[] = Array.isArray(writeErrors) ? writeErrors : writeErrors ? [writeErrors] : []
  return list.map((e) => {
    const message = (e as { errmsg?: unknown }).errmsg
    return typeof message === 'string' ? message : ''
  })
}

/** The key pattern a bulk write's first duplicate-key error names, if any. */
function firstKeyPattern(err: MongoError): Record<string, unknown> | undefined {
  const writeErrors = (err as MongoError & { writeErrors?: unknown }).writeErrors
  const first: unknown = Array.isArray(writeErrors) ? writeErrors[0] : writeErrors
  const info = (first as { err?: { keyPattern?: unknown }; keyPattern?: unknown } | undefined) ?? {}
  const pattern = info.keyPattern ?? info.err?.keyPattern
  return pattern && typeof pattern === 'object' ? (pattern as Record<string, unknown>) : undefined
}

function isTransient(err: MongoError): boolean {
  return err.hasErrorLabel(TRANSIENT) && !err.hasErrorLabel(UNKNOWN_COMMIT_RESULT)
}

/** Errors meaning "the transaction did not commit because of a concurrent one" become VersionConflictError. */
function conflictOr(err: unknown): unknown {
  if (err instanceof MongoError && (isTransient(err) || errorCodes(err).includes(WRITE_CONFLICT))) {
    return new VersionConflictError(`concurrent transaction: ${err.message}`)
  }
  return err
}

/** Whether an index as listed by MongoDB has the definition wanted (keys in order, uniqueness, partial filter). */
function sameIndex(index: Document, want: IndexDefinition): boolean {
  return (
    JSON.stringify(index.key) === JSON.stringify(want.key) &&
    Boolean(index.unique) === want.unique &&
    JSON.stringify(index.partialFilterExpression ?? null) ===
      JSON.stringify(want.partialFilterExpression ?? null)
  )
}

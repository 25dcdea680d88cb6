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
} from './port.ts'

/** A collection name; `_stagehub_` names are the hub's own (the change log). */
const NAME = /^(?:_stagehub_)?[a-z][a-z0-9_]{0,62}$/
const FIELD = /^[A-Za-z][A-Za-z0-9_]{0,62}$/

/** Lock documents live here; the leading underscore keeps it apart from every valid collection name. */
const LOCKS = '_stagehub_locks'
/** Lock documents per collection (and per indexed field set): bounds their number, at the price of rare false conflicts. */
const STRIPES = 64

/** BSON types a unique index covers: every JSON value except null, as SQLite's NULL is exempt from UNIQUE. */
const PRESENT_TYPES = ['string', 'number', 'bool', 'object', 'array']

const DUPLICATE_KEY = 11000
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

interface LockDoc {
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
  /** The database to use; default: the one named in the URL (or the driver's default, `test`). */
  dbName?: string
}

/**
 * The MongoDB store (replica set required, for transactions). Each commit is one transaction with
 * snapshot reads and majority/journaled commit: it re-checks every document version and query result
 * the Store transaction read, then applies the writes.
 *
 * Snapshot isolation alone only detects write-write conflicts, so a commit whose reads were changed by a
 * concurrent, not-yet-visible commit (write skew, phantoms) would pass its checks. To make commits
 * serializable like the embedded store, both readers and writers also bump lock documents in the
 * transaction, turning every read-write conflict into a write-write conflict MongoDB detects:
 *  - a document read or written bumps the lock of its id's stripe;
 *  - a write bumps, for every field set declared in `ensureCollection` (unique and indexes) whose values it
 *    changes (insert, delete, or replace changing them), the lock of those values' stripe;
 *  - a query bumps the lock of its filter values when its filter fields (all non-null) are exactly a declared
 *    field set or include `id`, and otherwise every id stripe of the collection (conflicts with any writer).
 * This relies on every process sharing the database declaring the same collection specs.
 * Write conflicts and transient transaction errors surface as VersionConflictError so that Store re-runs
 * the transaction with fresh reads.
 */
export class MongoBackend implements StoreBackend {
  readonly kind = 'mongodb'
  readonly #client: MongoClient
  readonly #db: Db
  readonly #locks: Collection<LockDoc>
  /** Declared field sets per collection, each sorted, for query locks. */
  readonly #fieldSets = new Map<string, string[][]>()
  /** Unique index name → its fields, per collection. */
  readonly #uniqueIndexes = new Map<string, Map<string, string[]>>()
  #closed = false

  private constructor(client: MongoClient, db: Db) {
    this.#client = client
    this.#db = db
    this.#locks = db.collection<LockDoc>(LOCKS)
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
      if (typeof hello.setName !== 'string' && hello.msg !== 'isdbgrid') {
        throw new Error('MongoDB must be a replica set (or a sharded cluster): the store needs transactions')
      }
      const backend = new MongoBackend(client, client.db(options.dbName))
      await backend.#createCollection(LOCKS)
      return backend
    } catch (err) {
      await client.close()
      throw err
    }
  }

  async ensureCollection(spec: CollectionSpec): Promise<void> {
    this.#assertOpen()
    const collection = this.#collection(spec.name)
    await this.#createCollection(spec.name)
    const uniques = this.#uniqueIndexes.get(spec.name) ?? new Map<string, string[]>()
    for (const fields of spec.unique ?? []) {
      checkFields(fields)
      const name = indexName('u', fields)
      uniques.set(name, [...fields])
      if (fields.length === 1 && fields[0] === 'id') continue
      const present = fields.filter((f) => f !== 'id').map((f) => [f, { $type: PRESENT_TYPES }] as const)
      await collection.createIndex(indexKeys(fields), {
        name,
        unique: true,
        partialFilterExpression: Object.fromEntries(present),
      })
    }
    this.#uniqueIndexes.set(spec.name, uniques)
    for (const fields of spec.indexes ?? []) {
      checkFields(fields)
      if (fields.length === 1 && fields[0] === 'id') continue
      await collection.createIndex(indexKeys(fields), { name: indexName('i', fields) })
    }
    const sets = this.#fieldSets.get(spec.name) ?? []
    for (const fields of [...(spec.unique ?? []), ...(spec.indexes ?? [])]) {
      const sorted = [...new Set(fields)].sort()
      if (!sets.some((s) => s.join() === sorted.join())) sets.push(sorted)
    }
    this.#fieldSets.set(spec.name, sets)
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
      throw conflictOr(err)
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
    const locks = new Set<string>()

    for (const read of reads) {
      const version = current.get(docKey(read.collection, read.id))?.version ?? null
      if (version !== read.version) {
        throw new VersionConflictError(
          `${read.collection}/${read.id} changed (version ${read.version} → ${version})`,
        )
      }
      locks.add(idLock(read.collection, read.id))
    }

    for (const query of queries) {
      if (fingerprint(await this.#find(query.collection, query.filter, session)) !== query.fingerprint) {
        throw new VersionConflictError(`${query.collection} matching ${JSON.stringify(query.filter)} changed`)
      }
      for (const lock of this.#queryLocks(query)) locks.add(lock)
    }

    for (const write of writes) {
      const id = write.op === 'delete' ? write.id : write.doc.id
      const before = current.get(docKey(write.collection, id)) ?? null
      if (write.op === 'insert') {
        if (before) throw new UniqueViolationError(write.collection, ['id'])
      } else if (before?.version !== write.expectedVersion) {
        throw new VersionConflictError(`${write.collection}/${id} changed`)
      }
      // a change-log entry conflicts with nothing: no lock, so the log is never a hot document
      if (isLog(write.collection)) continue
      locks.add(idLock(write.collection, id))
      const after = write.op === 'delete' ? null : write.doc
      for (const fields of this.#fieldSets.get(write.collection) ?? []) {
        const old = before ? fieldValues(before, fields) : null
        const next = after ? fieldValues(after, fields) : null
        if (old === next) continue
        if (old !== null) locks.add(setLock(write.collection, fields, old))
        if (next !== null) locks.add(setLock(write.collection, fields, next))
      }
    }

    await this.#bumpLocks(session, locks)

    for (const write of writes) {
      const collection = this.#collection(write.collection)
      if (write.op === 'delete') {
        const { deletedCount } = await collection.deleteOne(
          { _id: write.id, version: write.expectedVersion },
          { session },
        )
        if (deletedCount !== 1) throw new VersionConflictError(`${write.collection}/${write.id} changed`)
        continue
      }
      try {
        if (write.op === 'insert') {
          await collection.insertOne(toMongo(write.doc), { session })
        } else {
          const { matchedCount } = await collection.replaceOne(
            { _id: write.doc.id, version: write.expectedVersion },
            withoutId(write.doc),
            { session },
          )
          if (matchedCount !== 1)
            throw new VersionConflictError(`${write.collection}/${write.doc.id} changed`)
        }
      } catch (err) {
        if (err instanceof MongoError && err.code === DUPLICATE_KEY && !isTransient(err)) {
          throw new UniqueViolationError(write.collection, this.#violatedFields(write.collection, err))
        }
        throw err
      }
    }
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

  #queryLocks(query: QueryRead): string[] {
    const fields = Object.keys(query.filter).sort()
    const values = fields.map((f) => query.filter[f])
    if (values.every((v) => v !== null && v !== undefined)) {
      const id = query.filter.id
      if (typeof id === 'string') return [idLock(query.collection, id)]
      const declared = this.#fieldSets.get(query.collection) ?? []
      if (fields.length > 0 && declared.some((s) => s.join() === fields.join())) {
        return [setLock(query.collection, fields, JSON.stringify(values))]
      }
    }
    return Array.from({ length: STRIPES }, (_, stripe) => `${query.collection}#${stripe}`)
  }

  async #bumpLocks(session: ClientSession, locks: ReadonlySet<string>): Promise<void> {
    if (locks.size === 0) return
    const operations: AnyBulkWriteOperation<LockDoc>[] = [...locks].sort().map((_id) => ({
      updateOne: { filter: { _id }, update: { $inc: { n: 1 } }, upsert: true },
    }))
    try {
      await this.#locks.bulkWrite(operations, { session, ordered: true })
    } catch (err) {
      // two transactions creating the same lock document collide on its _id: a conflict as well
      if (err instanceof MongoError && errorCodes(err).includes(DUPLICATE_KEY)) {
        throw new VersionConflictError('a concurrent transaction touched the same documents')
      }
      throw err
    }
  }

  #violatedFields(collection: string, err: MongoError): string[] {
    const known = this.#uniqueIndexes.get(collection)
    const name = /index: (\S+)/.exec(err.message)?.[1]
    const byName = name ? known?.get(name) : undefined
    if (byName) return [...byName]
    const keyPattern = (err as MongoError & { keyPattern?: Record<string, unknown> }).keyPattern
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

/** JSON of the document's values for `fields`, or null when any is missing or null (no query can match it then). */
function fieldValues(doc: StoredDoc, fields: readonly string[]): string | null {
  const values: unknown[] = []
  for (const field of fields) {
    const value = (doc as unknown as Record<string, unknown>)[field]
    if (value === undefined || value === null) return null
    values.push(value)
  }
  return JSON.stringify(values)
}

function idLock(collection: string, id: string): string {
  return `${collection}#${stripe(id)}`
}

function setLock(collection: string, fields: readonly string[], valuesJson: string): string {
  return `${collection}/${fields.join('+')}#${stripe(valuesJson)}`
}

/** FNV-1a, reduced to a stripe number. */
function stripe(text: string): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193)
  }
  return (hash >>> 0) % STRIPES
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

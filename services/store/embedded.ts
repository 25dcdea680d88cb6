import { mkdirSync, statSync } from 'node:fs'
import type Database from 'better-sqlite3'
import type { StoreIntegrityCheck } from '../config.ts'
import { META_TABLE, isDamage, openCheckedDatabase } from './embedded-integrity.ts'
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

interface PendingCommit {
  reads: readonly DocRead[]
  queries: readonly QueryRead[]
  writes: readonly Write[]
  resolve: () => void
  reject: (err: Error) => void
}

/**
 * The embedded store: one SQLite database file under DATA_DIR in WAL mode with synchronous=FULL, so a
 * commit that resolved survives a crash or power loss. Commits arriving in the same event-loop turn are
 * grouped into one SQLite transaction (one fsync), each inside its own savepoint so one failing commit
 * does not affect the others. It opens only an intact database of its own (embedded-integrity.ts) and
 * stops reporting ready once the file shows damage.
 */
export class EmbeddedBackend implements StoreBackend {
  readonly kind = 'embedded'
  readonly #db: Database.Database
  readonly #file: string
  readonly #storeId: string
  /** inode of the file opened: a database replaced or deleted under a running hub is not the one it writes */
  readonly #inode: number
  /** The first sign of a damaged file seen by any statement; the store is not ready from then on. */
  #damage: string | undefined
  readonly #uniqueIndexes = new Map<string, { collection: string; fields: string[] }>()
  readonly #statements = new Map<string, Database.Statement>()
  #queue: PendingCommit[] = []
  #flushScheduled = false
  #closed = false

  private constructor(opened: { db: Database.Database; file: string; storeId: string }) {
    this.#db = opened.db
    this.#file = opened.file
    this.#storeId = opened.storeId
    this.#inode = statSync(opened.file).ino
    this.#db.pragma('journal_mode = WAL')
    this.#db.pragma('synchronous = FULL')
    this.#db.pragma('busy_timeout = 5000')
  }

  /** Throws StoreRefusedError for a missing, empty, foreign or damaged database where a hub ran before. */
  static open(dataDir: string, check: StoreIntegrityCheck = 'quick'): EmbeddedBackend {
    mkdirSync(dataDir, { recursive: true })
    return new EmbeddedBackend(openCheckedDatabase(dataDir, check))
  }

  async ensureCollection(spec: CollectionSpec): Promise<void> {
    const table = tableName(spec.name)
    this.#db.exec(
      `CREATE TABLE IF NOT EXISTS ${table} (id TEXT PRIMARY KEY, version INTEGER NOT NULL, doc TEXT NOT NULL) WITHOUT ROWID`,
    )
    for (const fields of spec.unique ?? []) {
      const index = indexName('u', spec.name, fields)
      this.#db.exec(
        `CREATE UNIQUE INDEX IF NOT EXISTS ${index} ON ${table} (${fields.map(fieldExpr).join(', ')})`,
      )
      this.#uniqueIndexes.set(index, { collection: spec.name, fields: [...fields] })
    }
    for (const fields of spec.indexes ?? []) {
      const index = indexName('i', spec.name, fields)
      this.#db.exec(`CREATE INDEX IF NOT EXISTS ${index} ON ${table} (${fields.map(fieldExpr).join(', ')})`)
    }
  }

  async get(collection: string, id: string): Promise<StoredDoc | null> {
    return this.#watch(() => this.#getSync(collection, id))
  }

  async find(collection: string, filter: Filter): Promise<StoredDoc[]> {
    return this.#watch(() => this.#findSync(collection, filter))
  }

  async *scan(collection: string): AsyncIterable<StoredDoc> {
    const page = this.#statement(
      `SELECT id, doc FROM ${tableName(collection)} WHERE id > ? ORDER BY id LIMIT 1000`,
    )
    let after = ''
    for (;;) {
      const rows = this.#watch(() => page.all(after) as { id: string; doc: string }[])
      if (rows.length === 0) return
      for (const row of rows) yield JSON.parse(row.doc) as StoredDoc
      after = rows[rows.length - 1]!.id
    }
  }

  async page(collection: string, query: PageQuery): Promise<StoredDoc[]> {
    const rows = this.#page('doc', collection, query) as { doc: string }[]
    return rows.map((r) => JSON.parse(r.doc) as StoredDoc)
  }

  async pageIds(collection: string, query: PageQuery): Promise<string[]> {
    return (this.#page('id', collection, query) as { id: string }[]).map((r) => r.id)
  }

  #page(column: 'doc' | 'id', collection: string, query: PageQuery): unknown[] {
    const where: string[] = []
    const values: (string | number | null)[] = []
    for (const field of Object.keys(query.filter).sort()) {
      where.push(`${fieldExpr(field)} IS ?`)
      values.push(sqlValue(query.filter[field] ?? null))
    }
    if (query.contains) {
      where.push(
        `EXISTS (SELECT 1 FROM json_each(doc, '$.${fieldName(query.contains.field)}') WHERE value = ?)`,
      )
      values.push(query.contains.value)
    }
    if (query.idFrom !== undefined) {
      where.push('id >= ?')
      values.push(query.idFrom)
    }
    if (query.idBelow !== undefined) {
      where.push('id < ?')
      values.push(query.idBelow)
    }
    const sql = `SELECT ${column} FROM ${tableName(collection)}${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`
    return this.#watch(() => this.#statement(sql).all(...values, query.limit))
  }

  commit(reads: readonly DocRead[], queries: readonly QueryRead[], writes: readonly Write[]): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('the store is closed'))
    return new Promise((resolve, reject) => {
      this.#queue.push({ reads, queries, writes, resolve, reject })
      if (!this.#flushScheduled) {
        this.#flushScheduled = true
        setImmediate(() => this.#flush())
      }
    })
  }

  async purgeExpired(collection: string, field: string, limit: number): Promise<number> {
    return this.#watch(
      () =>
        this.#statement(`DELETE FROM ${tableName(collection)} WHERE ${fieldExpr(field)} < ?`).run(limit)
          .changes,
    )
  }

  /** SQLite's data_version changes for a connection whenever another connection has committed. */
  watchOutsideCommits(listener: () => void, intervalMs: number): () => void {
    const version = () => this.#db.pragma('data_version', { simple: true }) as number
    let seen = version()
    const timer = setInterval(() => {
      if (this.#closed) return
      const now = version()
      if (now === seen) return
      seen = now
      listener()
    }, intervalMs)
    timer.unref()
    return () => clearInterval(timer)
  }

  /**
   * Readiness, polled every few seconds, so it must stay cheap (no integrity check: that reads every
   * page, about 0.5 s per 100k documents, blocking the event loop). It catches what can be seen
   * cheaply: damage any statement ran into, and the file deleted, emptied or replaced under the hub
   * (its identity row is read back from the file).
   */
  async ping(): Promise<void> {
    if (this.#closed) throw new Error('the store is closed')
    if (this.#damage) throw new Error(`${this.#file} is damaged (${this.#damage}): restore it from a backup`)
    const stat = statSync(this.#file, { throwIfNoEntry: false })
    if (!stat || stat.ino !== this.#inode || stat.size === 0) {
      throw new Error(`${this.#file} was ${stat ? 'emptied or replaced' : 'deleted'} while the hub ran`)
    }
    const row = this.#watch(
      () =>
        this.#statement(`SELECT value FROM ${META_TABLE} WHERE key = 'store_id'`).get() as
          { value: string } | undefined,
    )
    if (row?.value !== this.#storeId) throw new Error(`${this.#file} lost its store identity`)
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#flush()
    this.#closed = true
    this.#db.close()
  }

  #flush(): void {
    this.#flushScheduled = false
    const batch = this.#queue
    this.#queue = []
    if (batch.length === 0) return
    const outcomes: (Error | null)[] = []
    try {
      this.#db.exec('BEGIN IMMEDIATE')
      for (const pending of batch) {
        this.#db.exec('SAVEPOINT one_commit')
        try {
          this.#apply(pending)
          this.#db.exec('RELEASE one_commit')
          outcomes.push(null)
        } catch (err) {
          this.#db.exec('ROLLBACK TO one_commit')
          this.#db.exec('RELEASE one_commit')
          outcomes.push(this.#translate(err))
        }
      }
      this.#db.exec('COMMIT')
    } catch (err) {
      this.#noteDamage(err)
      if (this.#db.inTransaction) this.#db.exec('ROLLBACK')
      for (const pending of batch) pending.reject(err as Error)
      return
    }
    batch.forEach((pending, i) => {
      const outcome = outcomes[i]
      if (outcome) pending.reject(outcome)
      else pending.resolve()
    })
  }

  #apply({ reads, queries, writes }: PendingCommit): void {
    for (const read of reads) {
      const current = this.#versionSync(read.collection, read.id)
      if (current !== read.version) {
        throw new VersionConflictError(
          `${read.collection}/${read.id} changed (version ${read.version} → ${current})`,
        )
      }
    }
    for (const query of queries) {
      if (fingerprint(this.#findSync(query.collection, query.filter)) !== query.fingerprint) {
        throw new VersionConflictError(`${query.collection} matching ${JSON.stringify(query.filter)} changed`)
      }
    }
    for (const write of writes) {
      const table = tableName(write.collection)
      if (write.op === 'insert') {
        this.#statement(`INSERT INTO ${table} (id, version, doc) VALUES (?, ?, ?)`).run(
          write.doc.id,
          write.doc.version,
          JSON.stringify(write.doc),
        )
      } else if (write.op === 'replace') {
        const { changes } = this.#statement(
          `UPDATE ${table} SET version = ?, doc = ? WHERE id = ? AND version = ?`,
        ).run(write.doc.version, JSON.stringify(write.doc), write.doc.id, write.expectedVersion)
        if (changes !== 1) throw new VersionConflictError(`${write.collection}/${write.doc.id} changed`)
      } else {
        const { changes } = this.#statement(`DELETE FROM ${table} WHERE id = ? AND version = ?`).run(
          write.id,
          write.expectedVersion,
        )
        if (changes !== 1) throw new VersionConflictError(`${write.collection}/${write.id} changed`)
      }
    }
  }

  #watch<T>(read: () => T): T {
    try {
      return read()
    } catch (err) {
      this.#noteDamage(err)
      throw err
    }
  }

  #noteDamage(err: unknown): void {
    if (isDamage(err)) this.#damage ??= (err as Error).message
  }

  #translate(err: unknown): Error {
    this.#noteDamage(err)
    if (err instanceof VersionConflictError) return err
    const e = err as { code?: string; message?: string }
    if (e.code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || e.code === 'SQLITE_CONSTRAINT_UNIQUE') {
      const index = /index '([^']+)'/.exec(e.message ?? '')?.[1]
      const known = index ? this.#uniqueIndexes.get(index) : undefined
      if (known) return new UniqueViolationError(known.collection, known.fields)
      const table = /c_([a-z0-9_]+)\.id/.exec(e.message ?? '')?.[1]
      return new UniqueViolationError(table ?? 'document', ['id'])
    }
    return err as Error
  }

  #getSync(collection: string, id: string): StoredDoc | null {
    const row = this.#statement(`SELECT doc FROM ${tableName(collection)} WHERE id = ?`).get(id) as
      { doc: string } | undefined
    return row ? (JSON.parse(row.doc) as StoredDoc) : null
  }

  #versionSync(collection: string, id: string): number | null {
    const row = this.#statement(`SELECT version FROM ${tableName(collection)} WHERE id = ?`).get(id) as
      { version: number } | undefined
    return row?.version ?? null
  }

  #findSync(collection: string, filter: Filter): StoredDoc[] {
    const fields = Object.keys(filter).sort()
    const where = fields.length ? ` WHERE ${fields.map((f) => `${fieldExpr(f)} IS ?`).join(' AND ')}` : ''
    const rows = this.#statement(`SELECT doc FROM ${tableName(collection)}${where} ORDER BY id`).all(
      ...fields.map((f) => sqlValue(filter[f] ?? null)),
    ) as { doc: string }[]
    return rows.map((r) => JSON.parse(r.doc) as StoredDoc)
  }

  #statement(sql: string): Database.Statement {
    let statement = this.#statements.get(sql)
    if (!statement) {
      statement = this.#db.prepare(sql)
      this.#statements.set(sql, statement)
    }
    return statement
  }
}

function tableName(collection: string): string {
  if (!NAME.test(collection)) throw new Error(`invalid collection name ${collection}`)
  return `c_${collection}`
}

function fieldName(field: string): string {
  if (!FIELD.test(field)) throw new Error(`invalid field name ${field}`)
  return field
}

function fieldExpr(field: string): string {
  return `json_extract(doc, '$.${fieldName(field)}')`
}

function indexName(prefix: string, collection: string, fields: readonly string[]): string {
  return `${prefix}_${collection}_${fields.join('_')}`
}

/** json_extract yields 1/0 for JSON booleans. */
function sqlValue(value: string | number | boolean | null): string | number | null {
  return typeof value === 'boolean' ? (value ? 1 : 0) : value
}

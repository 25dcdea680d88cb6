import { randomBytes } from 'node:crypto'
import { readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import Database from 'better-sqlite3'
import type { StoreIntegrityCheck } from '../config.ts'

/**
 * How the embedded store protects itself from being served damaged or silently empty: an integrity
 * check when it opens, an identity that ties the database file to its data directory, and the
 * online backup and offline verification that `stagehub backup` / `stagehub verify` run.
 */

export const STORE_FILE = 'stagehub.db'
/**
 * Written next to the database once it has an identity. Its presence says "a hub has kept data here":
 * a missing, empty or foreign database beside it is refused instead of starting empty.
 */
export const MARKER_FILE = 'stagehub.id'
export const META_TABLE = 'stagehub_meta'

interface Marker {
  storeId: string
  createdAt: string
}

/** The store cannot be opened safely; the message names the file and says how to restore. */
export class StoreRefusedError extends Error {
  override readonly name = 'StoreRefusedError'
  constructor(
    readonly file: string,
    problem: string,
  ) {
    const dir = dirname(file)
    super(
      `refusing to open the store: ${file} ${problem}.\n` +
        `To restore it: stop the hub; check a backup with \`stagehub verify --file BACKUP\`; delete ` +
        `${file}-wal and ${file}-shm if present; copy the backup to ${file}; start the hub. Backups are ` +
        `made with \`stagehub backup --out FILE\` (see "Backup and restore" in the README).\n` +
        `To start over with an empty store on purpose instead, move ${dir} away (or delete ` +
        `${join(dir, MARKER_FILE)}).`,
    )
  }
}

/** SQLite result codes that mean the file itself is damaged (not a busy lock or a full disk). */
export function isDamage(err: unknown): boolean {
  const code = (err as { code?: unknown }).code
  return typeof code === 'string' && (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB')
}

/** The problems `PRAGMA quick_check` / `integrity_check` reports (at most `limit`), or the error that stopped it. */
export function checkIntegrity(db: Database.Database, check: 'quick' | 'full', limit = 5): string[] {
  try {
    const rows = db.pragma(`${check === 'full' ? 'integrity_check' : 'quick_check'}(${limit})`) as Record<
      string,
      string
    >[]
    const problems = rows.map((row) => Object.values(row)[0]!.replace(/\s*\n\s*/g, ' '))
    return problems.length === 1 && problems[0] === 'ok' ? [] : problems
  } catch (err) {
    if (isDamage(err)) return [(err as Error).message]
    throw err
  }
}

/**
 * Opens the database of `dataDir` for the hub: refuses a missing, empty, foreign or damaged database
 * where the marker shows a hub ran before, gives a new database its identity, and writes the marker.
 * Returns the open database and its store id.
 */
export function openCheckedDatabase(
  dataDir: string,
  check: StoreIntegrityCheck,
): { db: Database.Database; file: string; storeId: string } {
  const file = join(dataDir, STORE_FILE)
  const markerFile = join(dataDir, MARKER_FILE)
  const marker = readMarker(markerFile)
  const size = statSync(file, { throwIfNoEntry: false })?.size
  if (marker && !size) {
    throw new StoreRefusedError(
      file,
      `is ${size === undefined ? 'missing' : 'empty (0 bytes)'}, but ${markerFile} shows that this hub has ` +
        `kept its data in ${dataDir} since ${marker.createdAt}; starting empty would lose every account, ` +
        `stage and device`,
    )
  }
  if (size === 0) {
    // no hub leaves a zero-byte database behind (its first start writes the identity at once), and a
    // store from before the marker existed has none to show: an emptied file is refused either way
    throw new StoreRefusedError(
      file,
      `is empty (0 bytes); a hub's store never is, so it was most likely truncated. If this is a new ` +
        `installation and nothing was ever stored, delete the file to start empty`,
    )
  }
  const db = new Database(file)
  try {
    if (check !== 'off') {
      const problems = checkIntegrity(db, check)
      if (problems.length > 0) {
        throw new StoreRefusedError(file, `is damaged (${check} check: ${problems.join('; ')})`)
      }
    }
    let storeId = readStoreId(db)
    if (marker && storeId !== marker.storeId) {
      throw new StoreRefusedError(
        file,
        storeId
          ? `is the database of another store (id ${storeId}) than the one ${markerFile} names (id ${marker.storeId})`
          : `has no store identity, but ${markerFile} shows that this hub has kept its data in ${dataDir} since ${marker.createdAt}`,
      )
    }
    if (!storeId) {
      // a first start, or a database from before stores had an identity
      storeId = randomBytes(12).toString('base64url')
      db.exec(`CREATE TABLE IF NOT EXISTS ${META_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL)`)
      const insert = db.prepare(`INSERT INTO ${META_TABLE} (key, value) VALUES (?, ?)`)
      db.transaction(() => {
        insert.run('store_id', storeId)
        insert.run('created_at', new Date().toISOString())
      })()
    }
    if (!marker) writeMarker(markerFile, { storeId, createdAt: readMeta(db, 'created_at') ?? '' })
    return { db, file, storeId }
  } catch (err) {
    db.close()
    if (isDamage(err)) throw new StoreRefusedError(file, `is damaged (${(err as Error).message})`)
    throw err
  }
}

export function readStoreId(db: Database.Database): string | undefined {
  return readMeta(db, 'store_id')
}

function readMeta(db: Database.Database, key: string): string | undefined {
  const exists = db.prepare(`SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?`).get(META_TABLE)
  if (!exists) return undefined
  const row = db.prepare(`SELECT value FROM ${META_TABLE} WHERE key = ?`).get(key) as
    { value: string } | undefined
  return row?.value
}

function readMarker(markerFile: string): Marker | undefined {
  let text: string
  try {
    text = readFileSync(markerFile, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  try {
    const marker = JSON.parse(text) as Partial<Marker>
    if (typeof marker.storeId === 'string' && typeof marker.createdAt === 'string') return marker as Marker
  } catch {
    // reported below
  }
  throw new Error(
    `${markerFile} is not a stagehub store marker (expected {"storeId","createdAt"}); restore it from a backup of the data directory or delete it`,
  )
}

function writeMarker(markerFile: string, marker: Marker): void {
  const temporary = `${markerFile}.${process.pid}.tmp`
  writeFileSync(temporary, JSON.stringify(marker) + '\n')
  renameSync(temporary, markerFile)
}

export interface Verification {
  file: string
  /** Empty when the file is an intact stagehub store. */
  problems: string[]
  storeId?: string | undefined
  /** Documents per collection. */
  documents: Record<string, number>
}

/** Checks a store file (the live database or a backup) without changing it. */
export function verifyStoreFile(file: string, check: 'quick' | 'full' = 'full'): Verification {
  const size = statSync(file, { throwIfNoEntry: false })?.size
  if (size === undefined) return { file, problems: ['the file does not exist'], documents: {} }
  if (size === 0) return { file, problems: ['the file is empty (0 bytes)'], documents: {} }
  let db: Database.Database
  try {
    db = new Database(file, { readonly: true, fileMustExist: true })
  } catch (err) {
    return { file, problems: [(err as Error).message], documents: {} }
  }
  try {
    const problems = checkIntegrity(db, check)
    if (problems.length > 0) return { file, problems, documents: {} }
    const storeId = readStoreId(db)
    const tables = db
      .prepare(`SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE 'c\\_%' ESCAPE '\\'`)
      .all() as { name: string }[]
    const documents = Object.fromEntries(
      tables.map(({ name }) => [
        name.slice(2),
        (db.prepare(`SELECT count(*) AS n FROM "${name}"`).get() as { n: number }).n,
      ]),
    )
    return {
      file,
      // without an identity but with collections: written before stores had one (the hub adds it)
      problems: storeId || tables.length > 0 ? [] : ['not a stagehub store (no identity, no collections)'],
      storeId,
      documents,
    }
  } catch (err) {
    return { file, problems: [(err as Error).message], documents: {} }
  } finally {
    db.close()
  }
}

/**
 * An online backup of the store file to `out` with SQLite's backup API (consistent even while a hub
 * writes), written beside `out` first and renamed into place once it verified intact.
 */
export async function backupStoreFile(file: string, out: string): Promise<Verification> {
  const source = verifyStoreFile(file, 'quick')
  if (source.problems.length > 0) return source
  const temporary = `${out}.${process.pid}.tmp`
  const db = new Database(file, { fileMustExist: true })
  try {
    db.pragma('busy_timeout = 5000')
    // all pages in one step: one read transaction, so writes by the hub meanwhile cannot make SQLite
    // restart the copy (it does after every step that a write overtook); WAL lets the hub write on
    await db.backup(temporary, { progress: () => 0x7fffffff })
    // one self-contained file (the copy inherits WAL mode; a hub restored from it turns WAL on again)
    const copy = new Database(temporary)
    copy.pragma('journal_mode = DELETE')
    copy.close()
  } catch (err) {
    rmSync(temporary, { force: true })
    throw err
  } finally {
    db.close()
  }
  const copy = verifyStoreFile(temporary, 'full')
  if (copy.problems.length > 0) {
    rmSync(temporary, { force: true })
    return { ...copy, file: out }
  }
  renameSync(temporary, out)
  return { ...copy, file: out }
}

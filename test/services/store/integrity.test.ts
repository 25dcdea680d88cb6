import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import t from 'tap'
import { configFromEnv } from '../../../services/config.ts'
import { collections, type UserDoc } from '../../../services/collections.ts'
import {
  MARKER_FILE,
  STORE_FILE,
  StoreRefusedError,
  verifyStoreFile,
} from '../../../services/store/embedded-integrity.ts'
import { TEST_SECRET, type Teardown, type TestHub, startTestHub } from '../../helpers/hub.ts'

function tempDir(t: Teardown): string {
  const dir = mkdtempSync(join(tmpdir(), 'stagehub-integrity-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A hub that ran on `dir` and stored `users` users, stopped cleanly (its WAL checkpointed and gone). */
async function storeThatRan(t: Teardown, dir: string, users = 400): Promise<void> {
  const th = await startTestHub(t, { DATA_DIR: dir })
  await th.hub.store.transaction(async (tx) => {
    for (let i = 0; i < users; i++)
      tx.insert<UserDoc>(collections.users.name, { id: `u${i}`, name: `User ${i}`, createdAt: '' })
  })
  await th.hub.close()
}

/** Overwrites the first page of the users table (its b-tree root) in the file with garbage. */
function damageUsersTable(file: string): void {
  const db = new Database(file, { readonly: true })
  const pageSize = db.pragma('page_size', { simple: true }) as number
  const { rootpage } = db.prepare(`SELECT rootpage FROM sqlite_schema WHERE name = 'c_users'`).get() as {
    rootpage: number
  }
  db.close()
  const fd = openSync(file, 'r+')
  writeSync(fd, Buffer.alloc(pageSize / 2, 0xa5), 0, pageSize / 2, (rootpage - 1) * pageSize + 8)
  closeSync(fd)
}

async function refusal(
  t: Teardown,
  dir: string,
  env: Record<string, string> = {},
): Promise<StoreRefusedError> {
  const started = await startTestHub(t, { DATA_DIR: dir, ...env }).then(
    () => new Error('the hub started'),
    (err: unknown) => err,
  )
  if (!(started instanceof StoreRefusedError)) throw started
  return started
}

t.test('an empty data directory starts normally, and the store gets an identity and a marker', async (t) => {
  const dir = tempDir(t)
  const th = await startTestHub(t, { DATA_DIR: dir })
  t.equal((await fetch(`${th.httpUrl}/readyz`)).status, 200, 'ready')
  const marker = JSON.parse(readFileSync(join(dir, MARKER_FILE), 'utf8')) as { storeId: string }
  t.match(marker, { storeId: /^[A-Za-z0-9_-]{16}$/, createdAt: String })
  await th.restart()
  t.equal((await fetch(`${th.httpUrl}/readyz`)).status, 200, 'and restarts on its own store')
  t.equal(verifyStoreFile(join(dir, STORE_FILE)).storeId, marker.storeId, 'the database carries the same id')
})

t.test('a zero-byte or missing database where a hub ran before is refused, naming the file', async (t) => {
  const dir = tempDir(t)
  await storeThatRan(t, dir, 3)
  const file = join(dir, STORE_FILE)

  truncateSync(file, 0)
  const empty = await refusal(t, dir)
  t.match(empty.message, `${file} is empty (0 bytes), but ${join(dir, MARKER_FILE)} shows`)
  t.match(empty.message, 'stagehub backup --out FILE', 'says how backups are made')
  t.match(empty.message, `copy the backup to ${file}`, 'and how to restore one')
  t.equal(readFileSync(file).length, 0, 'the empty file is left as it was')

  rmSync(file)
  t.match((await refusal(t, dir)).message, `${file} is missing`)
  t.notOk(existsSync(file), 'no new database was created')
})

t.test(
  'a zero-byte database is refused also without a marker (a store from before markers existed)',
  async (t) => {
    const dir = tempDir(t)
    await storeThatRan(t, dir, 3)
    const file = join(dir, STORE_FILE)
    rmSync(join(dir, MARKER_FILE))
    truncateSync(file, 0)
    t.match((await refusal(t, dir)).message, `${file} is empty (0 bytes); a hub's store never is`)
    t.equal(readFileSync(file).length, 0, 'the empty file is left as it was')
    t.notOk(existsSync(join(dir, MARKER_FILE)), 'and no marker is written for it')
  },
)

t.test('a database with a damaged page is refused at start, naming the file', async (t) => {
  const dir = tempDir(t)
  await storeThatRan(t, dir)
  const file = join(dir, STORE_FILE)
  damageUsersTable(file)
  const damaged = await refusal(t, dir)
  t.match(damaged.message, `refusing to open the store: ${file} is damaged (quick check: `)
  t.match(damaged.message, 'To restore it')
  t.not(verifyStoreFile(file).problems, [], 'verify finds it damaged too')
  const full = await refusal(t, dir, { STORE_INTEGRITY_CHECK: 'full' })
  t.match(full.message, `${file} is damaged (full check: `, 'STORE_INTEGRITY_CHECK=full refuses it too')
  t.throws(() => configFromEnv({ JWT_SECRET: TEST_SECRET, STORE_INTEGRITY_CHECK: 'fast' }), {
    message: 'STORE_INTEGRITY_CHECK must be quick, full or off, got "fast"',
  })
})

t.test('a database from another data directory is refused', async (t) => {
  const mine = tempDir(t)
  const theirs = tempDir(t)
  await storeThatRan(t, mine, 1)
  await storeThatRan(t, theirs, 1)
  rmSync(join(mine, STORE_FILE))
  const copy = readFileSync(join(theirs, STORE_FILE))
  const fd = openSync(join(mine, STORE_FILE), 'w')
  writeSync(fd, copy)
  closeSync(fd)
  t.match((await refusal(t, mine)).message, /is the database of another store \(id [\w-]+\) than the one/)
})

async function readyz(th: TestHub): Promise<{ status: number; body: { status: string; reason?: string } }> {
  const response = await fetch(`${th.httpUrl}/readyz`)
  return { status: response.status, body: (await response.json()) as { status: string; reason?: string } }
}

t.test('/readyz reports not ready when the database file is deleted under the running hub', async (t) => {
  const dir = tempDir(t)
  const th = await startTestHub(t, { DATA_DIR: dir })
  t.equal((await readyz(th)).status, 200)
  rmSync(join(dir, STORE_FILE))
  const after = await readyz(th)
  t.equal(after.status, 503)
  t.match(after.body, {
    status: 'not ready',
    reason: `${join(dir, STORE_FILE)} was deleted while the hub ran`,
  })
})

t.test('/readyz reports not ready once a read runs into a damaged page', async (t) => {
  const dir = tempDir(t)
  await storeThatRan(t, dir)
  const th = await startTestHub(t, { DATA_DIR: dir })
  const file = join(dir, STORE_FILE)
  // another process moves every page into the file, damages one, then writes, which makes the hub
  // drop its page cache and read the damaged page from the disk
  const other = new Database(file)
  other.pragma('wal_checkpoint(TRUNCATE)')
  damageUsersTable(file)
  other.exec(`INSERT OR REPLACE INTO stagehub_meta (key, value) VALUES ('probe', 'x')`)
  other.close()
  t.equal((await readyz(th)).status, 200, 'ready until the damage is seen')
  await t.rejects(th.hub.store.find(collections.users.name, {}), /malformed|corrupt/i, 'a read fails')
  const after = await readyz(th)
  t.equal(after.status, 503)
  t.match(after.body.reason, `${file} is damaged`)
})

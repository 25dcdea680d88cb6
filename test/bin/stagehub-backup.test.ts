import { execFile } from 'node:child_process'
import { closeSync, copyFileSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { collections } from '../../services/collections.ts'
import { STORE_FILE } from '../../services/store/embedded-integrity.ts'
import { actor, ok, roomy } from '../helpers/actors.ts'
import { startTestHub } from '../helpers/hub.ts'

const CLI = new URL('../../bin/stagehub.ts', import.meta.url).pathname

/** Runs the CLI with the environment given (no JWT configuration: the store commands need none). */
async function stagehub(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const { PATH, HOME } = process.env
  return promisify(execFile)('node', ['--import=tsx', CLI, ...args], {
    env: { PATH, HOME, ...env },
  }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (err: { code: number; stdout: string; stderr: string }) => err,
  )
}

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'stagehub-backup-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

t.test(
  'backup while the hub runs and writes; the hub restored from it has the data of the backup',
  async (t) => {
    const dir = tempDir(t)
    const out = join(tempDir(t), 'backup.db')
    const th = await startTestHub(t, { DATA_DIR: dir, ...roomy })
    const ann = await actor(th, 'Ann')
    const before = await ok<{ id: string }>(ann, 'stage.create', { name: 'Before the backup' })

    // requests keep committing while the backup copies pages
    let writing = true
    let renames = 0
    const writer = (async () => {
      while (writing) await ok(ann, 'user.update', { name: `Ann ${++renames}` })
    })()
    const backup = await stagehub(['backup', '--out', out], { DATA_DIR: dir })
    writing = false
    await writer
    t.equal(backup.code, 0, `backup exits 0 (${backup.stderr.trim()})`)
    t.match(backup.stdout, `backed up ${join(dir, STORE_FILE)} to ${out}, verified intact`)
    t.ok(renames > 0, `${renames} renames were committed around the backup`)

    const verified = await stagehub(['verify', '--file', out])
    t.equal(verified.code, 0, 'the backup verifies')
    t.match(verified.stdout, /intact stagehub store \(store [\w-]+; documents: .*stages 1/)

    const after = await ok<{ id: string }>(ann, 'stage.create', { name: 'After the backup' })
    // the documented restore: stop, replace the database (and its WAL files) by the backup, start
    await th.hub.close()
    for (const suffix of ['', '-wal', '-shm']) rmSync(join(dir, STORE_FILE + suffix), { force: true })
    copyFileSync(out, join(dir, STORE_FILE))
    await th.restart()
    t.ok(await th.hub.store.get(collections.users.name, ann.id), 'the user is back')
    t.ok(await th.hub.store.get('stages', before.id), 'with the stage made before the backup')
    t.notOk(await th.hub.store.get('stages', after.id), 'and not the one made after it')
    t.equal((await fetch(`${th.httpUrl}/readyz`)).status, 200, 'ready')
  },
)

t.test('verify: exit 0 for an intact store, 1 for a damaged, empty or foreign file', async (t) => {
  const dir = tempDir(t)
  const th = await startTestHub(t, { DATA_DIR: dir })
  await th.hub.users.createUser({ name: 'Ann' })
  const good = await stagehub(['verify'], { DATA_DIR: dir })
  t.equal(good.code, 0, 'the live store verifies while the hub runs')
  t.match(good.stdout, `${join(dir, STORE_FILE)} is an intact stagehub store`)
  t.match(good.stdout, 'users 1')
  await th.hub.close()

  const damaged = join(dir, 'damaged.db')
  copyFileSync(join(dir, STORE_FILE), damaged)
  const fd = openSync(damaged, 'r+')
  writeSync(fd, Buffer.alloc(4096, 0xa5), 0, 4096, 4096)
  closeSync(fd)
  const bad = await stagehub(['verify', '--file', damaged])
  t.equal(bad.code, 1, 'a damaged page: exit 1')
  t.match(bad.stderr, `${damaged} is not usable:`)

  const empty = join(dir, 'empty.db')
  writeFileSync(empty, '')
  const none = await stagehub(['verify', '--file', empty])
  t.equal(none.code, 1, 'a zero-byte file: exit 1')
  t.match(none.stderr, 'the file is empty (0 bytes)')

  const text = join(dir, 'notes.txt')
  writeFileSync(text, 'not a database at all, but long enough to be read as one. '.repeat(20))
  const foreign = await stagehub(['verify', '--file', text])
  t.equal(foreign.code, 1, 'not a database: exit 1')
  t.match(foreign.stderr, 'file is not a database')
})

t.test('backup and verify refuse wrong use with exit 2', async (t) => {
  const noOut = await stagehub(['backup'], { DATA_DIR: tempDir(t) })
  t.equal(noOut.code, 2)
  t.match(noOut.stderr, 'backup needs --out FILE')
  const mongo = await stagehub(['backup', '--out', 'x.db'], { MONGO_URL: 'mongodb://127.0.0.1:1/' })
  t.equal(mongo.code, 2)
  t.match(mongo.stderr, 'use mongodump')
})

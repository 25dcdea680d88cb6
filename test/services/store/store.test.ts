import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MongoClient } from 'mongodb'
import t from 'tap'
import { EmbeddedBackend } from '../../../services/store/embedded.ts'
import { Store } from '../../../services/store/index.ts'
import { MongoBackend } from '../../../services/store/mongo.ts'
import { type StoreHarness, storeContract } from './contract.ts'

async function embedded(): Promise<StoreHarness> {
  const dir = await mkdtemp(join(tmpdir(), 'stagehub-store-'))
  const opened: Store[] = []
  const open = (): Store => {
    const store = new Store(EmbeddedBackend.open(dir))
    opened.push(store)
    return store
  }
  const harness: StoreHarness = {
    store: open(),
    async reopen() {
      await harness.store.close()
      harness.store = open()
      return harness.store
    },
    async cleanup() {
      for (const store of opened) await store.close()
      await rm(dir, { recursive: true, force: true })
    },
  }
  return harness
}

// not MONGO_URL: the CLI tests pass their environment on to child hubs, which would then use MongoDB
const mongoUrl = process.env.STAGEHUB_TEST_MONGO_URL

async function mongodb(): Promise<StoreHarness> {
  const url = mongoUrl!
  const dbName = `stagehub_test_${process.pid}_${randomBytes(4).toString('hex')}`
  const opened: Store[] = []
  const open = async (): Promise<Store> => {
    const store = new Store(await MongoBackend.connect(url, { dbName }))
    opened.push(store)
    return store
  }
  const harness: StoreHarness = {
    store: await open(),
    async reopen() {
      await harness.store.close()
      harness.store = await open()
      return harness.store
    },
    async cleanup() {
      for (const store of opened) await store.close()
      const client = new MongoClient(url)
      try {
        await client.db(dbName).dropDatabase()
      } finally {
        await client.close()
      }
    },
  }
  return harness
}

storeContract('embedded (SQLite) store', embedded)

storeContract('MongoDB store', mongodb, {
  skip: mongoUrl
    ? false
    : 'STAGEHUB_TEST_MONGO_URL is not set (a replica set, e.g. mongodb://localhost:27017/?replicaSet=rs0, or a MongoDB-compatible test server)',
})

t.test(
  'the embedded store reports commits of another process (connection) on the same file, and not its own',
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'stagehub-store-'))
    const hub = new Store(EmbeddedBackend.open(dir))
    const cli = new Store(EmbeddedBackend.open(dir))
    t.teardown(async () => {
      await hub.close()
      await cli.close()
      await rm(dir, { recursive: true, force: true })
    })
    const spec = { name: 'things' }
    await hub.ensureCollection(spec)
    await cli.ensureCollection(spec)
    let reported = 0
    const stop = hub.onOutsideCommit(() => reported++, 20)
    await hub.transaction(async (tx) => tx.insert('things', { id: 'own' }))
    await new Promise((resolve) => setTimeout(resolve, 100))
    t.equal(reported, 0, 'its own commits are announced as changes instead')
    await cli.transaction(async (tx) => tx.insert('things', { id: 'outside' }))
    const deadline = Date.now() + 2000
    while (reported === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
    t.equal(reported, 1, 'another connection’s commit is reported once')
    stop()
    await cli.transaction(async (tx) => tx.insert('things', { id: 'later' }))
    await new Promise((resolve) => setTimeout(resolve, 100))
    t.equal(reported, 1, 'nothing after stopping')
  },
)

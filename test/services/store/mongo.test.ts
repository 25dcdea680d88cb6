import { once } from 'node:events'
import { type AddressInfo, type Socket, createServer } from 'node:net'
import { BSON, type Document, MongoClient } from 'mongodb'
import t from 'tap'
import { type StoredDoc, openStore } from '../../../services/store/index.ts'
import { DEFAULT_DB_NAME, MongoBackend, databaseFromUrl } from '../../../services/store/mongo.ts'
import type { Teardown } from '../../helpers/hub.ts'
import { freshMongoUrl, mongoMissing, testMongoUrl } from '../../helpers/mongo.ts'

interface Member extends StoredDoc {
  stageId: string
  userId: string
  seat: number | null
}

const members = {
  name: 'members',
  unique: [
    ['stageId', 'userId'],
    ['stageId', 'seat'],
  ],
  indexes: [['stageId']],
}

/** The indexes of a collection, by name, as MongoDB lists them. */
async function indexes(url: string, collection: string): Promise<Map<string, Document>> {
  const client = new MongoClient(url)
  try {
    const listed = (await client.db().collection(collection).listIndexes().toArray()) as Document[]
    return new Map(listed.map((index) => [String(index.name), index]))
  } finally {
    await client.close()
  }
}

t.test('the database name comes from the URL path, stagehub when the URL names none', async (t) => {
  t.equal(databaseFromUrl('mongodb://db1:27017,db2:27017/prod?replicaSet=rs0'), 'prod')
  t.equal(databaseFromUrl('mongodb+srv://cluster.example.org/live'), 'live')
  t.equal(databaseFromUrl('mongodb://db1:27017/?replicaSet=rs0'), DEFAULT_DB_NAME)
  t.equal(databaseFromUrl('mongodb://db1:27017'), DEFAULT_DB_NAME)
  t.equal(databaseFromUrl('mongodb://user:p%2Fw@db1/stage%5Fhub'), 'stage_hub')
  t.equal(DEFAULT_DB_NAME, 'stagehub')
})

t.test(
  'openStore stores into the database MONGO_URL names, not the driver default `test`',
  { skip: mongoMissing },
  async (t) => {
    const url = freshMongoUrl(t)
    const dbName = new URL(url).pathname.slice(1)
    const store = await openStore({ dataDir: '/nonexistent', mongoUrl: url, storeIntegrityCheck: 'off' })
    t.teardown(() => store.close())
    t.equal((store.backend as MongoBackend).databaseName, dbName)
    await store.ensureCollection({ name: 'things' })
    await store.transaction(async (tx) => tx.insert('things', { id: 'here' }))
    const client = new MongoClient(testMongoUrl!)
    t.teardown(() => client.close())
    t.same(
      await client
        .db(dbName)
        .collection('things')
        .findOne({ _id: 'here' as never }),
      { _id: 'here', version: 1 },
    )
    t.equal(
      await client
        .db('test')
        .collection('things')
        .findOne({ _id: 'here' as never }),
      null,
      'nothing in `test`',
    )

    const pathless = new URL(testMongoUrl!)
    pathless.pathname = '/'
    const backend = await MongoBackend.connect(pathless.toString())
    t.teardown(() => backend.close())
    t.equal(backend.databaseName, 'stagehub', 'a URL naming no database uses stagehub')
  },
)

/**
 * A server that answers every command like a replica set secondary (wire protocol: OP_QUERY for the
 * driver's handshake, OP_MSG after it). No MongoDB replica set can run on the test machines.
 */
async function fakeSecondary(t: Teardown): Promise<string> {
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    sockets.add(socket)
    let buffered = Buffer.alloc(0)
    socket.on('data', (chunk) => {
      buffered = Buffer.concat([buffered, chunk])
      while (buffered.length >= 4 && buffered.length >= buffered.readInt32LE(0)) {
        const message = buffered.subarray(0, buffered.readInt32LE(0))
        buffered = buffered.subarray(message.length)
        socket.write(answer(message, port))
      }
    })
    socket.on('error', () => undefined)
    socket.on('close', () => sockets.delete(socket))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as AddressInfo).port
  t.teardown(() => {
    for (const socket of sockets) socket.destroy()
    server.close()
  })
  return `mongodb://127.0.0.1:${port}/stagehub?directConnection=true&serverSelectionTimeoutMS=2000`
}

function answer(message: Buffer, port: number): Buffer {
  const requestId = message.readInt32LE(4)
  const opCode = message.readInt32LE(12)
  const hello = BSON.serialize({
    helloOk: true,
    ismaster: false,
    isWritablePrimary: false,
    secondary: true,
    setName: 'rs0',
    setVersion: 1,
    hosts: [`127.0.0.1:${port}`, 'db1.example.org:27017'],
    primary: 'db1.example.org:27017',
    me: `127.0.0.1:${port}`,
    maxBsonObjectSize: 16 * 1024 * 1024,
    maxMessageSizeBytes: 48_000_000,
    maxWriteBatchSize: 100_000,
    localTime: new Date(),
    logicalSessionTimeoutMinutes: 30,
    minWireVersion: 0,
    maxWireVersion: 21,
    ok: 1,
  })
  if (opCode === 2004) {
    // OP_REPLY: flags, cursor id, starting from, number returned, the document
    const body = Buffer.alloc(20)
    body.writeInt32LE(1, 16)
    return frame(requestId, 1, Buffer.concat([body, hello]))
  }
  // OP_MSG: flag bits, then one body section (kind 0)
  return frame(requestId, 2013, Buffer.concat([Buffer.alloc(5), hello]))
}

function frame(responseTo: number, opCode: number, body: Buffer): Buffer {
  const header = Buffer.alloc(16)
  header.writeInt32LE(16 + body.length, 0)
  header.writeInt32LE(Math.floor(Math.random() * 1e9), 4)
  header.writeInt32LE(responseTo, 8)
  header.writeInt32LE(opCode, 12)
  return Buffer.concat([header, body])
}

t.test('a connection to a replica set secondary is refused with how to connect to the set', async (t) => {
  const url = await fakeSecondary(t)
  const err = await MongoBackend.connect(url).then(
    () => undefined,
    (e: unknown) => e as Error,
  )
  t.ok(err, 'refused')
  t.match(err?.message, /secondary of replica set rs0/)
  t.match(err?.message, /db1\.example\.org:27017/, 'it names the primary')
  t.match(err?.message, /replicaSet=rs0/, 'it says how to reach the set')
})

t.test(
  'an index whose definition changed between releases is replaced at start, a dropped one removed',
  { skip: mongoMissing },
  async (t) => {
    const url = freshMongoUrl(t)
    const client = new MongoClient(url)
    t.teardown(() => client.close())
    const raw = client.db().collection('members')
    // an earlier release: seats unique without the partial filter (two seat-less members collided), and
    // an index the code no longer declares; plus an operator's own index
    await raw.createIndex({ stageId: 1, seat: 1 }, { name: 'u_stageId_seat', unique: true })
    await raw.createIndex({ groupId: 1 }, { name: 'i_groupId' })
    await raw.createIndex({ userId: 1, stageId: 1 }, { name: 'by_user_for_reports' })

    const store = await openStore({ dataDir: '/nonexistent', mongoUrl: url, storeIntegrityCheck: 'off' })
    t.teardown(() => store.close())
    await store.ensureCollection(members)
    const listed = await indexes(url, 'members')
    t.ok(listed.get('u_stageId_seat')?.partialFilterExpression, 'the seat index has the current definition')
    t.equal(listed.get('u_stageId_seat')?.unique, true)
    t.notOk(listed.has('i_groupId'), 'the index the code dropped is gone')
    t.ok(listed.has('by_user_for_reports'), "an operator's own index stays")
    t.ok(listed.has('u_stageId_userId') && listed.has('i_stageId'))
    await store.transaction(async (tx) => {
      tx.insert<Member>('members', { id: 'a', stageId: 's', userId: 'u1', seat: null })
      tx.insert<Member>('members', { id: 'b', stageId: 's', userId: 'u2', seat: null })
    })
    t.equal(
      (await store.find('members', { stageId: 's' })).length,
      2,
      'two members without a seat are fine now',
    )

    const before = JSON.stringify([...listed.values()])
    const again = await openStore({ dataDir: '/nonexistent', mongoUrl: url, storeIntegrityCheck: 'off' })
    t.teardown(() => again.close())
    await again.ensureCollection(members)
    t.equal(
      JSON.stringify([...(await indexes(url, 'members')).values()]),
      before,
      'a restart changes no index',
    )
  },
)

t.test(
  'processes starting at once with the same specs all start, also over an outdated index',
  { skip: mongoMissing },
  async (t) => {
    const url = freshMongoUrl(t)
    const client = new MongoClient(url)
    t.teardown(() => client.close())
    await client
      .db()
      .collection('members')
      .createIndex({ stageId: 1, seat: 1 }, { name: 'u_stageId_seat', unique: true })
    const stores = await Promise.all(
      Array.from({ length: 4 }, () =>
        openStore({ dataDir: '/nonexistent', mongoUrl: url, storeIntegrityCheck: 'off' }),
      ),
    )
    t.teardown(() => Promise.all(stores.map((s) => s.close())))
    const started = await Promise.allSettled(stores.map((s) => s.ensureCollection(members)))
    t.same(
      started.filter((r) => r.status === 'rejected'),
      [],
      'every process started',
    )
    const listed = await indexes(url, 'members')
    t.ok(listed.get('u_stageId_seat')?.partialFilterExpression, 'the current definition won')
    t.ok(listed.has('u_stageId_userId') && listed.has('i_stageId'))
    const fresh = await Promise.allSettled(
      stores.map((s) =>
        s.backend.ensureCollection({
          name: 'groups',
          unique: [['stageId', 'color']],
          indexes: [['stageId']],
        }),
      ),
    )
    t.same(
      fresh.filter((r) => r.status === 'rejected'),
      [],
      'a new collection created by all at once as well',
    )
  },
)

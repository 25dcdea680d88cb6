import { randomBytes } from 'node:crypto'
import { type Db, MongoClient } from 'mongodb'
import { type Context, logFile, sleep } from './context.ts'
import { type RedisServer, redisServerMissing, startRedisServer } from './redis-server.ts'
import { createUsers } from './seed.ts'
import { type HubTarget, startHubTarget, track } from './targets.ts'
import { MongoBackend } from '../../services/store/mongo.ts'
import { Store } from '../../services/store/index.ts'

/**
 * One deployment of several hub processes (docs/cluster.md): a redis-server of its own, a fresh
 * MongoDB database on the server of STAGEHUB_TEST_MONGO_URL (or MONGO_URL), dropped at the end, and N
 * hub processes started as `stagehub start` runs them with REDIS_URL, MONGO_URL (the database in its
 * path) and HUB_ID=p1..pN.
 */

/** The MongoDB server the cluster benchmark may use: the tests' one first, else MONGO_URL. */
export function benchMongoUrl(): string | undefined {
  return process.env.STAGEHUB_TEST_MONGO_URL || process.env.MONGO_URL || undefined
}

/** Why no deployment can be started here, or false. */
export function deploymentMissing(): string | false {
  if (!benchMongoUrl())
    return 'no MongoDB: set STAGEHUB_TEST_MONGO_URL (e.g. $(../shared/mongo-test/start)) or MONGO_URL to a replica set'
  return redisServerMissing()
}

const DROP_TIMEOUT_MS = 10_000

export interface Deployment {
  processes: HubTarget[]
  /** MONGO_URL as the processes got it (the fresh database in its path). */
  mongoUrl: string
  redis: RedisServer
  /** The deployment's database, for looking at the store from outside. */
  db: Db
  /** Ids of the users created before the processes started, in the order of the names given. */
  users: string[]
  stop(): Promise<void>
}

export async function startDeployment(
  ctx: Context,
  options: { processes: number; users: readonly string[]; label: string },
): Promise<Deployment> {
  const base = benchMongoUrl()
  if (!base) throw new Error(deploymentMissing() as string)
  const dbName = `stagehub_bench_${process.pid}_${randomBytes(4).toString('hex')}`
  const url = new URL(base)
  url.pathname = `/${dbName}`
  const mongoUrl = url.toString()
  const client = new MongoClient(base)
  await client.connect()
  const db = client.db(dbName)
  const processes: HubTarget[] = []
  let redis: RedisServer | undefined
  const stop = async () => {
    await Promise.allSettled(processes.map((p) => p.stop()))
    await redis?.stop()
    // a process killed in the middle of a transaction may leave it open on a MongoDB-compatible server
    // that never aborts a dead client's transaction (the test server's gateway): the drop then waits
    // on its locks for ever. Left behind is better than a run that never ends.
    const dropped = await Promise.race([
      db.dropDatabase().then(
        () => true,
        () => false,
      ),
      sleep(DROP_TIMEOUT_MS).then(() => false),
    ])
    if (!dropped)
      ctx.log(`  database ${dbName} could not be dropped within ${DROP_TIMEOUT_MS / 1000} s: left behind`)
    await client.close(true)
  }
  try {
    const server = await startRedisServer({ logFile: logFile(ctx, `${options.label}-redis`) })
    redis = server
    track(server.process)
    const store = new Store(await MongoBackend.connect(mongoUrl, { dbName }))
    let users: string[]
    try {
      users = await createUsers(store, options.users)
    } finally {
      await store.close()
    }
    // p1 creates the collections and indexes, then the others start together
    const start = async (i: number) => {
      processes[i - 1] = await startHubTarget({
        env: { MONGO_URL: mongoUrl, REDIS_URL: server.url, HUB_ID: `p${i}` },
        logFile: logFile(ctx, `${options.label}-p${i}`),
      })
    }
    await start(1)
    const others = await Promise.allSettled(
      Array.from({ length: options.processes - 1 }, (_, i) => start(i + 2)),
    )
    const failed = others.find((o) => o.status === 'rejected')
    if (failed) throw (failed as PromiseRejectedResult).reason
    return {
      processes,
      mongoUrl,
      redis: server,
      db,
      users,
      stop,
    }
  } catch (err) {
    await stop()
    throw err
  }
}

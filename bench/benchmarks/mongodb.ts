import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MongoClient } from 'mongodb'
import { type Context, onHub } from '../lib/context.ts'
import { LiteRequester } from '../lib/requests.ts'
import { type Measured, summarize } from '../lib/results.ts'
import type { HubTarget } from '../lib/targets.ts'
import { EmbeddedBackend } from '../../services/store/embedded.ts'
import { Store } from '../../services/store/index.ts'
import { MongoBackend } from '../../services/store/mongo.ts'
import { PasswordPool } from '../../services/users/password-pool.ts'
import { createUser } from '../../services/users/service.ts'

/**
 * `mongodb_request_latency`: the same requests on a hub with the MongoDB store (a fresh database on
 * STAGEHUB_TEST_MONGO_URL: a replica set, or the MongoDB-compatible test server) and on one with the
 * embedded store, in the same run; the embedded store is the baseline. Per member, one at a time:
 * `stage.join` (a member and its mix inserted, the seat chosen), `mix.set` (the member's own override of
 * its group: reads the stage it shares with everyone, writes its own document) and `invite.list` by the
 * admin (no state changed; the request record is still written). Then all members at once: the wall
 * time of N simultaneous `mix.set` (readers of one group that must not conflict) and of N simultaneous
 * `stage.join` of a second stage (contenders for its seats), with the refusals counted.
 * Skipped, with the reason in the log, when STAGEHUB_TEST_MONGO_URL is not set.
 */
export async function mongodbLatency(ctx: Context): Promise<void> {
  const url = process.env.STAGEHUB_TEST_MONGO_URL
  if (!url) {
    ctx.log(
      'mongodb_request_latency: skipped: STAGEHUB_TEST_MONGO_URL is not set (a replica set, or ../shared/mongo-test/start)',
    )
    return
  }
  const members = { tiny: 3, quick: 20, full: 30 }[ctx.profile.name]
  const rounds = { tiny: 1, quick: 5, full: 10 }[ctx.profile.name]
  const embedded = await measure(ctx, 'embedded', members, rounds, undefined)
  const mongodb = await measure(ctx, 'mongodb', members, rounds, url)
  const figure = (o: Outcome | string, get: (o: Outcome) => Measured): Measured =>
    typeof o === 'string' ? o : get(o)
  const rows: [string, (o: Outcome) => Measured][] = [
    ['mongodb_stage_join_p50', (o) => ({ value: o.join.p50, detail: o.join })],
    ['mongodb_mix_set_p50', (o) => ({ value: o.mix.p50, detail: o.mix })],
    ['mongodb_read_only_request_p50', (o) => ({ value: o.read.p50, detail: o.read })],
    ['mongodb_mix_set_p99', (o) => ({ value: o.mix.p99, detail: o.mix })],
    [
      'mongodb_simultaneous_mix_set_wall',
      (o) => ({ value: o.simultaneousMix.ms, detail: { members, refused: o.simultaneousMix.refused } }),
    ],
    [
      'mongodb_simultaneous_stage_join_wall',
      (o) => ({ value: o.simultaneousJoin.ms, detail: { members, refused: o.simultaneousJoin.refused } }),
    ],
  ]
  for (const [name, get] of rows) {
    ctx.results.compare(name, 'ms', 'lower', figure(mongodb, get), { embedded_store: figure(embedded, get) })
  }
}

interface Outcome {
  join: ReturnType<typeof summarize>
  mix: ReturnType<typeof summarize>
  read: ReturnType<typeof summarize>
  simultaneousMix: { ms: number; refused: number }
  simultaneousJoin: { ms: number; refused: number }
}

async function measure(
  ctx: Context,
  kind: 'embedded' | 'mongodb',
  members: number,
  rounds: number,
  url: string | undefined,
): Promise<Outcome | string> {
  const dataDir = mkdtempSync(join(tmpdir(), 'stagehub-bench-mongodb-'))
  let mongoUrl: string | undefined
  if (url) {
    const fresh = new URL(url)
    fresh.pathname = `/stagehub_bench_${randomBytes(4).toString('hex')}`
    mongoUrl = fresh.toString()
  }
  try {
    const store = mongoUrl
      ? new Store(await MongoBackend.connect(mongoUrl))
      : new Store(EmbeddedBackend.open(dataDir))
    const users: string[] = []
    const passwords = new PasswordPool({ cost: 10, concurrency: 1, queueLimit: 1 })
    for (let i = 0; i <= 2 * members; i++)
      users.push((await createUser(store, { name: `Member ${i}` }, passwords)).id)
    await store.close()
    ctx.log(`mongodb_request_latency: ${kind} store, ${members} members`)
    return await onHub(
      ctx,
      (hub) => run(ctx, hub, users, members, rounds),
      kind === 'mongodb'
        ? { dataDir, env: { MONGO_URL: mongoUrl! }, label: 'hub-mongodb' }
        : { dataDir, label: 'hub-embedded' },
    )
  } catch (err) {
    return `failed: ${(err as Error).message}`
  } finally {
    rmSync(dataDir, { recursive: true, force: true })
    if (mongoUrl) {
      const client = new MongoClient(mongoUrl)
      await client
        .db()
        .dropDatabase()
        .catch(() => undefined)
      await client.close()
    }
  }
}

async function run(
  ctx: Context,
  hub: HubTarget,
  users: string[],
  members: number,
  rounds: number,
): Promise<Outcome> {
  const token = (sub: string) => ctx.tokens.sign({ sub, role: 'user' }, 3600).token
  const connect = (userId: string, i: number) =>
    LiteRequester.connect(hub.host, hub.port, `mdb-${i}`, token(userId))
  const admin = await connect(users[0]!, 0)
  const stage = await admin.ok<{ id: string }>('stage.create', { name: 'Latency' })
  const group = await admin.ok<{ id: string }>('group.create', {
    stageId: stage.id,
    name: 'All',
    color: '#336699',
  })
  const second = await admin.ok<{ id: string }>('stage.create', { name: 'Contention' })
  const secondGroup = await admin.ok<{ id: string }>('group.create', {
    stageId: second.id,
    name: 'All',
    color: '#663399',
  })
  const clients = await Promise.all(users.slice(1, members + 1).map((u, i) => connect(u, i + 1)))
  const timed = async (work: () => Promise<unknown>): Promise<number> => {
    const t0 = performance.now()
    await work()
    return performance.now() - t0
  }

  const join: number[] = []
  for (const c of clients)
    join.push(await timed(() => c.ok('stage.join', { stageId: stage.id, groupId: group.id })))
  const mix: number[] = []
  const read: number[] = []
  for (let round = 0; round < rounds; round++) {
    for (const c of clients) {
      mix.push(await timed(() => c.ok('mix.set', { kind: 'group', id: group.id, volume: 0.5 + round / 100 })))
      read.push(await timed(() => admin.ok('invite.list', { stageId: stage.id })))
    }
  }
  const all = async (who: LiteRequester[], request: (c: LiteRequester) => Promise<unknown>) => {
    const t0 = performance.now()
    const outcomes = await Promise.allSettled(who.map(request))
    return { ms: performance.now() - t0, refused: outcomes.filter((o) => o.status === 'rejected').length }
  }
  const simultaneousMix = await all(clients, (c) =>
    c.ok('mix.set', { kind: 'group', id: group.id, volume: 0.9 }),
  )
  // the others, who are in no stage yet, join the second stage at once
  const joiners = await Promise.all(
    users.slice(members + 1, 2 * members + 1).map((u, i) => connect(u, members + 1 + i)),
  )
  const simultaneousJoin = await all(joiners, (c) =>
    c.ok('stage.join', { stageId: second.id, groupId: secondGroup.id }),
  )
  for (const c of [admin, ...clients, ...joiners]) c.end()
  return {
    join: summarize(join),
    mix: summarize(mix),
    read: summarize(read),
    simultaneousMix,
    simultaneousJoin,
  }
}

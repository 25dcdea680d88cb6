import t from 'tap'
import type { GroupState, MemberState, StageState } from '../../../schemas/actions/stage.ts'
import { VersionConflictError } from '../../../services/store/index.ts'
import { type Actor, actor, ok, roomy } from '../../helpers/actors.ts'
import { type TestHub, startTestHub } from '../../helpers/hub.ts'
import { freshMongoUrl, mongoMissing } from '../../helpers/mongo.ts'

/** Counts the commits the hub's MongoDB store refused as conflicts (each one re-runs a transaction). */
function countConflicts(th: TestHub): { conflicts: number } {
  const counter = { conflicts: 0 }
  const backend = th.hub.store.backend
  const commit = backend.commit.bind(backend)
  backend.commit = async (...args) => {
    try {
      return await commit(...args)
    } catch (err) {
      if (err instanceof VersionConflictError) counter.conflicts++
      throw err
    }
  }
  return counter
}

async function stageWithMembers(th: TestHub, n: number) {
  const alice = await actor(th, 'Alice')
  const stage = await ok<StageState>(alice, 'stage.create', { name: 'Rehearsal' })
  const group = await ok<GroupState>(alice, 'group.create', {
    stageId: stage.id,
    name: 'All',
    color: '#303030',
  })
  const users = await Promise.all(Array.from({ length: n }, (_, i) => actor(th, `User${i}`)))
  return { stage, group, users }
}

const timeout = 60_000
const request = (u: Actor, action: string, params: unknown, id: string) =>
  u.req.send(action, JSON.stringify({ id, params }), id, timeout)

t.test(
  'on MongoDB, 30 members joining one stage at the same moment get 30 distinct seats, none refused',
  { skip: mongoMissing },
  async (t) => {
    const th = await startTestHub(t, { ...roomy, MONGO_URL: freshMongoUrl(t) })
    t.equal(th.hub.store.kind, 'mongodb')
    const { stage, group, users } = await stageWithMembers(th, 30)
    const started = performance.now()
    const responses = await Promise.all(
      users.map((u) => request(u, 'stage.join', { stageId: stage.id, groupId: group.id }, `join-${u.id}`)),
    )
    t.comment(`30 simultaneous stage.join on MongoDB: ${Math.round(performance.now() - started)} ms`)
    t.same(
      responses.filter((r) => !r.ok).map((r) => r.error),
      [],
      'no refusal',
    )
    t.same(
      responses.map((r) => (r.result as MemberState).seat).sort((a, b) => a! - b!),
      Array.from({ length: 30 }, (_, i) => i),
      'seats 0-29, each once',
    )
  },
)

t.test(
  'on MongoDB, 20 members setting their mix of their group at once never conflict: readers do not write',
  { skip: mongoMissing },
  async (t) => {
    const th = await startTestHub(t, { ...roomy, MONGO_URL: freshMongoUrl(t) })
    const { stage, group, users } = await stageWithMembers(th, 20)
    for (const u of users) await ok(u, 'stage.join', { stageId: stage.id, groupId: group.id })
    const counted = countConflicts(th)
    for (let round = 0; round < 2; round++) {
      const started = performance.now()
      const responses = await Promise.all(
        users.map((u) =>
          request(
            u,
            'mix.set',
            { kind: 'group', id: group.id, volume: 0.5 + round / 10 },
            `mix-${round}-${u.id}`,
          ),
        ),
      )
      t.comment(`20 simultaneous mix.set on MongoDB: ${Math.round(performance.now() - started)} ms`)
      t.same(
        responses.filter((r) => !r.ok).map((r) => r.error),
        [],
        `round ${round}: every mix.set succeeded`,
      )
    }
    t.equal(
      counted.conflicts,
      0,
      'no commit conflicted: they all read the stage, the group and the members, each wrote its own mix',
    )
  },
)

t.test(
  'on MongoDB, 30 members joining one stage at once through two hubs sharing the database get 30 distinct seats',
  { skip: mongoMissing },
  async (t) => {
    // two hubs in this test process: each has its own store and connections, so the re-runs of one do
    // not queue behind the other's (as with two processes) and they meet only in MongoDB
    const url = freshMongoUrl(t)
    const [one, two] = [
      await startTestHub(t, { ...roomy, MONGO_URL: url }),
      await startTestHub(t, { ...roomy, MONGO_URL: url }),
    ]
    const alice = await actor(one, 'Alice')
    const stage = await ok<StageState>(alice, 'stage.create', { name: 'Rehearsal' })
    const group = await ok<GroupState>(alice, 'group.create', {
      stageId: stage.id,
      name: 'All',
      color: '#303030',
    })
    const users = await Promise.all(
      Array.from({ length: 30 }, (_, i) => actor(i % 2 === 0 ? one : two, `User${i}`)),
    )
    const started = performance.now()
    const responses = await Promise.all(
      users.map((u) => request(u, 'stage.join', { stageId: stage.id, groupId: group.id }, `join-${u.id}`)),
    )
    t.comment(`30 simultaneous stage.join through two hubs: ${Math.round(performance.now() - started)} ms`)
    t.same(
      responses.filter((r) => !r.ok).map((r) => r.error),
      [],
      'no refusal',
    )
    t.same(
      responses.map((r) => (r.result as MemberState).seat).sort((a, b) => a! - b!),
      Array.from({ length: 30 }, (_, i) => i),
      'seats 0-29, each once',
    )
  },
)

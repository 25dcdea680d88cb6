import t from 'tap'
import type { AssignmentDoc, RouterDoc } from '../../../services/routers/model.ts'
import { routerCollections } from '../../../services/routers/model.ts'
import { routerProjection } from '../../../services/routers/projection.ts'
import { EmbeddedBackend } from '../../../services/store/embedded.ts'
import { Store } from '../../../services/store/store.ts'

const router = (id: string): Omit<RouterDoc, 'version'> => ({
  id,
  tokenVersion: 1,
  name: `Router ${id}`,
  online: true,
  capabilities: ['ov'],
  capacity: { ov: 2 },
  createdAt: '2024-01-02T03:04:05.000Z',
})

const assignment = (stageId: string, routerId: string): Omit<AssignmentDoc, 'version'> => ({
  id: stageId,
  stageId,
  routerId,
  kinds: ['ov'],
  assignedAt: '2024-01-02T03:04:05.000Z',
})

/** Each topic the projection names for a commit, rendered from the store after it. */
async function rendered(
  store: Store,
  work: Parameters<Store['transaction']>[0],
): Promise<Record<string, unknown>> {
  const { changes } = await store.transaction(work)
  const topics = await routerProjection(store).changed(changes)
  return Object.fromEntries(
    await Promise.all([...topics].map(async (p): Promise<[string, unknown]> => [p.topic, await p.render()])),
  )
}

t.test('a stage moved to another router: its assignment moves, both router documents follow', async (t) => {
  const store = new Store(EmbeddedBackend.open(t.testdir()))
  t.teardown(() => store.close())
  for (const spec of Object.values(routerCollections)) await store.ensureCollection(spec)
  await store.transaction(async (tx) => {
    tx.insert(routerCollections.routers.name, router('r1'))
    tx.insert(routerCollections.routers.name, router('r2'))
    tx.insert(routerCollections.assignments.name, assignment('s1', 'r1'))
  })

  const moved = await rendered(store, async (tx) => {
    const current = (await tx.get<AssignmentDoc>(routerCollections.assignments.name, 's1'))!
    tx.delete(routerCollections.assignments.name, current)
    tx.insert(routerCollections.assignments.name, assignment('s1', 'r2'))
  })
  t.same(Object.keys(moved).sort(), [
    'routers/r1',
    'routers/r1/assignments/s1',
    'routers/r2',
    'routers/r2/assignments/s1',
  ])
  t.equal(moved['routers/r1/assignments/s1'], null, "the old router's assignment is cleared")
  t.match(moved['routers/r2/assignments/s1'], { stageId: 's1', kinds: ['ov'] }, 'the new one is published')
  t.match(moved['routers/r1'], { assignments: [] }, 'the old router serves nothing now')
  t.match(moved['routers/r2'], { assignments: ['s1'] }, 'the new one serves the stage')

  const served = await rendered(store, async (tx) => {
    const current = (await tx.get<AssignmentDoc>(routerCollections.assignments.name, 's1'))!
    tx.replace(routerCollections.assignments.name, { ...current, media: { url: 'wss://r2/' } })
  })
  t.same(
    Object.keys(served),
    ['routers/r2/assignments/s1'],
    'what the router said changes no router document',
  )

  const removed = await rendered(store, async (tx) => {
    tx.delete(routerCollections.routers.name, (await tx.get(routerCollections.routers.name, 'r1'))!)
  })
  t.same(
    removed,
    { 'routers/r1': null, 'routers/r1/presence': null },
    'a removed router and its presence are cleared',
  )

  const online = await rendered(store, async (tx) => {
    const r2 = (await tx.get<RouterDoc>(routerCollections.routers.name, 'r2'))!
    tx.replace(routerCollections.routers.name, { ...r2, online: false })
  })
  t.match(online, { 'routers/r2': { online: false } }, 'a router document follows its presence')
  t.notOk('routers/r2/presence' in online, "a registered router's presence is its own to publish")
})

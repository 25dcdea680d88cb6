import t, { type Test } from 'tap'
import type { Change } from '../../../services/store/port.ts'
import type { StoredDoc } from '../../../services/store/port.ts'
import { collections } from '../../../services/collections.ts'
import { EmbeddedBackend } from '../../../services/store/embedded.ts'
import { Store } from '../../../services/store/store.ts'
import {
  type GroupDoc,
  type MemberDoc,
  type MixDoc,
  type StageDoc,
  type StageTrackDoc,
  stageCollections,
} from '../../../services/stages/model.ts'
import { changedStageTopics, stageProjection } from '../../../services/stages/projection.ts'
import { origin, stageDefaults, stageState } from '../../../services/stages/rules.ts'

const stage = (overrides: Partial<StageDoc> = {}): Omit<StageDoc, 'version'> => ({
  id: 's1',
  name: 'Rehearsal',
  ...stageDefaults,
  admins: ['alice'],
  createdBy: 'alice',
  createdAt: '2024-01-02T03:04:05.000Z',
  ...overrides,
})

const group = (id: string, overrides: Partial<GroupDoc> = {}): Omit<GroupDoc, 'version'> => ({
  id,
  stageId: 's1',
  name: `Group ${id}`,
  color: '#000000',
  volume: 1,
  muted: false,
  position: origin,
  ...overrides,
})

const member = (userId: string, overrides: Partial<MemberDoc> = {}): Omit<MemberDoc, 'version'> => ({
  id: `m-${userId}`,
  stageId: 's1',
  userId,
  name: userId,
  groupId: 'g1',
  seat: null,
  joined: false,
  online: false,
  isDirector: false,
  volume: 1,
  muted: false,
  position: origin,
  ...overrides,
})

const track = (id: string, m: { id: string; userId: string }): Omit<StageTrackDoc, 'version'> => ({
  id,
  stageId: 's1',
  userId: m.userId,
  memberId: m.id,
  deviceId: 'd1',
  kind: 'ov',
})

const mix = (userId: string, kind: MixDoc['kind'], targetId: string): Omit<MixDoc, 'version'> => ({
  id: `${userId}/${kind}/${targetId}`,
  userId,
  stageId: 's1',
  kind,
  targetId,
  volume: 0.5,
})

/** A real embedded store in a fresh directory with the stage collections. */
async function openStore(t: Test): Promise<Store> {
  const store = new Store(EmbeddedBackend.open(t.testdir()))
  for (const spec of [...Object.values(stageCollections), collections.assignments])
    await store.ensureCollection(spec)
  t.teardown(() => store.close())
  return store
}

type Docs = Record<keyof typeof stageCollections, Omit<StoredDoc, 'version'>[]>

async function insert(store: Store, docs: Partial<Docs>): Promise<void> {
  await store.transaction(async (tx) => {
    for (const [collection, list] of Object.entries(docs))
      for (const doc of list) tx.insert(stageCollections[collection as keyof Docs].name, doc)
  })
}

t.test('the stage projection lists every retained topic of a stage with its state', async (t) => {
  const store = await openStore(t)
  await insert(store, {
    stages: [stage({ admins: ['alice'], passwordHash: 'secret-hash' })],
    groups: [group('g1', { color: '#111111' }), group('g2', { color: '#222222' })],
    members: [member('bob', { joined: true, seat: 0 }), member('carol', { groupId: 'g2' })],
  })
  const pubs: { topic: string; value: unknown }[] = []
  for await (const p of stageProjection(store).topics()) pubs.push(p)
  const byTopic = new Map(pubs.map((p) => [p.topic, p.value]))

  t.same(
    [...byTopic.keys()].sort(),
    [
      'stages/s1',
      'stages/s1/groups/g1',
      'stages/s1/groups/g2',
      'stages/s1/members/bob',
      'stages/s1/members/carol',
      'users/alice/stages/s1',
      'users/bob/stages/s1',
      'users/carol/stages/s1',
    ].sort(),
    'the stage, its groups, its members (by user id) and a summary per admin and member',
  )
  t.equal(byTopic.size, pubs.length, 'each topic once')
  const stored = await store.get<StageDoc>('stages', 's1')
  t.same(byTopic.get('stages/s1'), stageState(stored!), 'the stage document is the visible state')
  t.same(byTopic.get('stages/s1/groups/g2'), await store.get('groups', 'g2'))
  t.same(byTopic.get('stages/s1/members/carol'), await store.get('members', 'm-carol'))
  t.match(byTopic.get('users/bob/stages/s1'), { isAdmin: false, isMember: true, joined: true })
  t.match(byTopic.get('users/carol/stages/s1'), { isAdmin: false, isMember: true, joined: false })
  t.match(byTopic.get('users/alice/stages/s1'), { isAdmin: true, isMember: false, joined: false })
  t.notMatch(JSON.stringify(pubs), /secret-hash|passwordHash|createdBy|createdAt/, 'nothing secret')
  t.ok(
    pubs.every((p) => p.value !== null),
    'all retained state, nothing cleared',
  )
})

t.test('a stage removal clears every topic of the stage', async (t) => {
  const store = await openStore(t)
  const bob = member('bob', { joined: true, seat: 0 })
  const carol = member('carol')
  await insert(store, {
    stages: [stage({ admins: ['alice', 'bob'] })],
    groups: [group('g1'), group('g2', { color: '#222222' })],
    members: [bob, carol],
    stageTracks: [track('t1', bob), track('t2', carol)],
    mixes: [
      mix('bob', 'member', carol.id),
      mix('carol', 'group', 'g1'),
      mix('carol', 'track', 't1'),
      mix('bob', 'member', bob.id),
    ],
  })
  const published: string[] = []
  for await (const p of stageProjection(store).topics()) published.push(p.topic)

  // what stage.remove deletes: the stage and everything hanging off it, in one commit
  const { changes } = await store.transaction(async (tx) => {
    for (const spec of Object.values(stageCollections))
      for (const doc of await tx.find(spec.name)) tx.delete(spec.name, doc)
  })
  const topics = [...changedStageTopics(changes).topics.keys()]
  t.same(
    [...topics].sort(),
    [
      'stages/s1',
      'stages/s1/groups/g1',
      'stages/s1/groups/g2',
      'stages/s1/members/bob',
      'stages/s1/members/carol',
      'stages/s1/tracks/t1',
      'stages/s1/tracks/t2',
      'users/alice/stages/s1',
      'users/bob/stages/s1',
      'users/carol/stages/s1',
      `users/bob/mix/member/${carol.id}`,
      'users/carol/mix/group/g1',
      'users/carol/mix/track/t1',
      `users/bob/mix/member/${bob.id}`,
    ].sort(),
  )
  t.equal(new Set(topics).size, topics.length, 'no topic twice (bob is admin and member)')
  t.ok(
    published.every((topic) => topics.includes(topic)),
    'every published topic of the stage is cleared',
  )
  const rendered = await Promise.all(
    [...(await stageProjection(store).changed(changes))].map(async (p) => [p.topic, await p.render()]),
  )
  t.same(
    rendered.filter(([, value]) => value !== null),
    [],
    'each renders as cleared',
  )
})

t.test('a group renamed changes every summary of its stage; a track moved, both stages', async (t) => {
  const store = await openStore(t)
  await insert(store, {
    stages: [stage({ admins: ['alice'] })],
    groups: [group('g1')],
    members: [member('bob')],
  })
  const g1 = (await store.get<GroupDoc>('groups', 'g1'))!
  const renamed = await store.transaction(async (tx) =>
    tx.replace('groups', { ...(await tx.get<GroupDoc>('groups', 'g1'))!, name: 'Strings' }),
  )
  const topics = [...(await stageProjection(store).changed(renamed.changes))].map((p) => p.topic)
  t.same(
    topics.sort(),
    ['stages/s1/groups/g1', 'users/alice/stages/s1', 'users/bob/stages/s1'],
    'the group and the summaries of the admin and the member',
  )
  const before: StageTrackDoc = { ...track('t1', { id: 'm', userId: 'u' }), version: 1 }
  const movedTrack: Change<StageTrackDoc> = {
    collection: 'stage_tracks',
    id: 't1',
    before,
    after: { ...before, stageId: 's2', version: 2 },
  }
  const moved = changedStageTopics([movedTrack])
  t.same([...moved.topics.keys()].sort(), ['stages/s1/tracks/t1', 'stages/s2/tracks/t1'])
  const quieter: Change<GroupDoc> = {
    collection: 'groups',
    id: 'g1',
    before: g1,
    after: { ...g1, volume: 0.5, version: 2 },
  }
  const volume = changedStageTopics([quieter])
  t.same(volume.audiences.size, 0, 'a volume change shows in no summary')
})

t.test(
  "a member's seat or position change names only the member topic; joining also the summary",
  async (t) => {
    const was: MemberDoc = { ...member('bob'), version: 1 }
    const moved: Change<MemberDoc> = {
      collection: 'members',
      id: was.id,
      before: was,
      after: { ...was, seat: 3, position: { ...origin, x: 0.5 }, version: 2 },
    }
    t.same([...changedStageTopics([moved]).topics.keys()], ['stages/s1/members/bob'])
    const joined: Change<MemberDoc> = { ...moved, after: { ...was, joined: !was.joined, version: 2 } }
    t.same(
      [...changedStageTopics([joined]).topics.keys()].sort(),
      ['stages/s1/members/bob', 'users/bob/stages/s1'],
      'joined shows in the summary',
    )
    const added: Change<MemberDoc> = { collection: 'members', id: was.id, before: null, after: was }
    t.same(
      [...changedStageTopics([added]).topics.keys()].sort(),
      ['stages/s1/members/bob', 'users/bob/stages/s1'],
      'a new membership shows in the summary',
    )
  },
)

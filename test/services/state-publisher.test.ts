import t from 'tap'
import type { GroupState, StageState } from '../../schemas/actions/stage.ts'
import type { UserProfile } from '../../schemas/state.ts'
import type { UserDoc } from '../../services/collections.ts'
import { actor, connectAs, ok, parse, retainedOn, roomy } from '../helpers/actors.ts'
import { recordMessages, sleep, startTestHub, waitForMessage } from '../helpers/hub.ts'

t.test(
  'concurrent changes of one document are published in commit order: versions only rise, and the newest stays retained',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    const second = await connectAs(th, alice.id, 'Alice')
    const watcher = await connectAs(th, alice.id, 'Alice')
    await watcher.client.subscribeAsync(`users/${alice.id}`, { qos: 1 })
    const seen = recordMessages(watcher.client)

    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        ok<UserProfile>(i % 2 ? alice : second, 'user.update', { name: `Alice ${i}` }),
      ),
    )
    const newest = Math.max(...results.map((r) => r.version))
    await sleep(200)
    seen.stop()
    const versions = seen.messages
      .filter((m) => m.topic === `users/${alice.id}` && !m.retain)
      .map((m) => (parse(m.payload) as UserProfile).version)
    t.ok(versions.length > 0, 'the watcher saw the changes')
    t.same(
      versions,
      [...versions].sort((a, b) => a - b).filter((v, i, all) => all.indexOf(v) === i),
      'no older version after a newer one, none twice',
    )
    t.equal(versions.at(-1), newest, 'the last one published is the newest committed')
    const stored = await th.hub.store.get<UserDoc>('users', alice.id)
    t.match(await retainedOn(alice.client, `users/${alice.id}`), { name: stored!.name, version: newest })
  },
)

t.test('a commit republishes only the topics whose state it changed', async (t) => {
  const th = await startTestHub(t, roomy)
  const alice = await actor(th, 'Alice')
  const stage = await ok<StageState>(alice, 'stage.create', { name: 'Rehearsal' })
  const group = await ok<GroupState>(alice, 'group.create', { stageId: stage.id, name: 'Strings' })
  const summary = `users/${alice.id}/stages/${stage.id}`
  const groupTopic = `stages/${stage.id}/groups/${group.id}`
  const watcher = await connectAs(th, alice.id, 'Alice')
  const retained = [summary, groupTopic].map((topic) => waitForMessage(watcher.client, topic))
  await watcher.client.subscribeAsync([summary, groupTopic], { qos: 1 })
  await Promise.all(retained)
  const seen = recordMessages(watcher.client)
  const changes = () => seen.messages.filter((m) => !m.retain).map((m) => m.topic)

  await ok(alice, 'group.update', { stageId: stage.id, groupId: group.id, patch: { volume: 0.5 } })
  await sleep(200)
  t.same(changes(), [groupTopic], 'a volume change: the group, not the summary (which shows no volume)')
  await ok(alice, 'group.update', { stageId: stage.id, groupId: group.id, patch: { name: 'Winds' } })
  await sleep(200)
  seen.stop()
  t.same(
    seen.messages
      .slice(1)
      .map((m) => m.topic)
      .sort(),
    [summary, `stages/${stage.id}/groups/${group.id}`].sort(),
    'a rename: the group and the summary that lists it',
  )
})

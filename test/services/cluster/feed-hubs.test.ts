import t, { type Test } from 'tap'
import type { MqttClient } from 'mqtt'
import type { GroupState, StageState } from '../../../schemas/actions/stage.ts'
import { type Actor, actor, connectAs, connectDevice, ok, parse, roomy } from '../../helpers/actors.ts'
import {
  type TestHub,
  connackCode,
  connectionClosed,
  nextMessage,
  recordMessages,
  sleep,
  startTestHub,
  subackCodes,
  waitForMessage,
  waitUntil,
} from '../../helpers/hub.ts'
import { freshMongoUrl, mongoMissing } from '../../helpers/mongo.ts'
import { redisMissing, startRedis } from '../../helpers/redis.ts'

const skip = redisMissing || mongoMissing

/** Three hub processes of one deployment: same MongoDB database, same Redis, their own HUB_ID. */
async function cluster(t: Test) {
  const redis = await startRedis(t)
  const mongoUrl = freshMongoUrl(t)
  const hubs: TestHub[] = []
  for (const id of ['p1', 'p2', 'p3'])
    hubs.push(await startTestHub(t, { ...roomy, MONGO_URL: mongoUrl, REDIS_URL: redis.url, HUB_ID: id }))
  return hubs as [TestHub, TestHub, TestHub]
}

/** A user created through `home`, connected to `at` once that process's access index knows them. */
async function userOn(home: TestHub, at: TestHub, name: string): Promise<Actor> {
  const a = await actor(home, name)
  await waitUntil(() => at.hub.access.hasUser(a.id), `${at.config.cluster?.processId} knows ${name}`)
  return at === home ? a : connectAs(at, a.id, name)
}

/** The next live message on `topic` whose JSON satisfies `match`. */
async function stateOn<T>(client: MqttClient, topic: string, match: (value: T) => boolean, ms = 3000) {
  const m = await waitForMessage(
    client,
    (m) => m.topic === topic && m.payload.length > 0 && match(parse(m.payload) as T),
    ms,
  )
  return parse(m.payload) as T
}

/**
 * Alice (admin, through process 1) made a stage with a group; Bob joined it through process 3,
 * Carol through process 2. Each subscribes to the stage on their own process.
 */
async function rehearsal(t: Test) {
  const [p1, p2, p3] = await cluster(t)
  const alice = await userOn(p1, p1, 'Alice')
  const bob = await userOn(p1, p3, 'Bob')
  const carol = await userOn(p1, p2, 'Carol')
  const stage = await ok<StageState>(alice, 'stage.create', { name: 'Rehearsal' })
  const group = await ok<GroupState>(alice, 'group.create', { stageId: stage.id, name: 'Strings' })
  await ok(bob, 'stage.join', { stageId: stage.id, groupId: group.id })
  await ok(carol, 'stage.join', { stageId: stage.id, groupId: group.id })
  const s = stage.id
  const topic = {
    stage: `stages/${s}`,
    group: `stages/${s}/groups/${group.id}`,
    summary: (u: string) => `users/${u}/stages/${s}`,
  }
  for (const who of [bob, carol]) {
    t.same(
      await subackCodes(who.client, [topic.stage, `stages/${s}/#`, topic.summary(who.id)]),
      [1, 1, 1],
      `${who.name} subscribes on their process`,
    )
  }
  return { p1, p2, p3, alice, bob, carol, stage, group, topic }
}

t.test(
  'a change requested through process 1 reaches subscribers on processes 2 and 3',
  { skip },
  async (t) => {
    const { p2, p3, alice, bob, carol, stage, topic } = await rehearsal(t)
    const renamed = (s: StageState) => s.name === 'Dress rehearsal'
    const onP3 = stateOn(bob.client, topic.stage, renamed)
    const onP2 = stateOn(carol.client, topic.stage, renamed)
    await ok(alice, 'stage.update', { stageId: stage.id, patch: { name: 'Dress rehearsal' } })
    t.match(await onP3, { id: stage.id, name: 'Dress rehearsal' }, "Bob's process 3 publishes the new state")
    t.match(await onP2, { id: stage.id, name: 'Dress rehearsal' }, "Carol's process 2 too")
    t.equal(
      p2.hub.feed?.stats.fromRedis !== undefined && p2.hub.feed.stats.fromRedis > 0,
      true,
      'through Redis',
    )

    // a fresh SUBSCRIBE on any process answers the new retained state
    for (const [name, th] of [
      ['p2', p2],
      ['p3', p3],
    ] as const) {
      const ops = await th.connect({
        clientId: `ops-${name}`,
        token: th.token({ sub: 'operator', role: 'admin' }),
      })
      const retained = await nextMessage(ops, topic.stage)
      t.match(
        { retain: retained.retain, state: parse(retained.payload) },
        { retain: true, state: { name: 'Dress rehearsal' } },
        `${name} retains it`,
      )
    }
  },
)

t.test('a member removed through process 2 stops receiving at once on process 3', { skip }, async (t) => {
  const { p2, p3, alice, bob, carol, stage, group, topic } = await rehearsal(t)
  const aliceOnP2 = await connectAs(p2, alice.id, 'Alice')
  t.ok(p3.hub.access.canSeeStage(stage.id, bob.id), 'process 3 lets Bob see the stage')
  const summaryCleared = waitForMessage(
    bob.client,
    (m) => m.topic === topic.summary(bob.id) && m.payload.length === 0,
  )
  await ok(aliceOnP2, 'member.remove', { stageId: stage.id, userId: bob.id })
  const answered = Date.now()
  await waitUntil(() => !p3.hub.access.canSeeStage(stage.id, bob.id), 'process 3 applies the removal', 500)
  t.pass(`process 3's access index applied it ${Date.now() - answered} ms after the answer on process 2`)
  t.equal((await summaryCleared).payload.length, 0, "process 3 clears Bob's summary")

  // the subscription Bob still holds on process 3 delivers nothing more from the stage
  const bobAfter = recordMessages(bob.client)
  const carolSees = stateOn<GroupState>(carol.client, topic.group, (g) => g.name === 'Strings & Brass')
  await ok(alice, 'group.update', {
    stageId: stage.id,
    groupId: group.id,
    patch: { name: 'Strings & Brass' },
  })
  t.match(
    await carolSees,
    { name: 'Strings & Brass' },
    'Carol (process 2) receives the change made through process 1',
  )
  await sleep(300)
  bobAfter.stop()
  t.same(
    bobAfter.messages.filter((m) => m.topic.startsWith(`stages/${stage.id}`)).map((m) => m.topic),
    [],
    'Bob (process 3) receives nothing from the stage',
  )
  t.same(await subackCodes(bob.client, [topic.stage]), [128], 'and process 3 refuses a new subscription')
})

t.test(
  'a process that commits and dies before publishing leaves no other process stale (fault injection)',
  { skip },
  async (t) => {
    const { p1, p2, alice, bob, carol, stage, topic } = await rehearsal(t)
    const feed = p1.hub.feed!
    // from now on process 1 commits but never tells Redis, as if it died right after each commit
    feed.withholdPublishes()
    // Bob (process 3) watches the stage; Carol (process 2) is removed by the second commit
    const renamed = stateOn<StageState>(bob.client, topic.stage, (s) => s.name === 'After the crash', 3000)
    await ok(alice, 'stage.update', { stageId: stage.id, patch: { name: 'After the crash' } })
    await ok(alice, 'member.remove', { stageId: stage.id, userId: carol.id })
    const committed = Date.now()
    // and then it is gone
    void p1.hub.close()
    t.match(
      await renamed,
      { name: 'After the crash' },
      "Bob's process 3 publishes the rename from the change log",
    )
    await waitUntil(
      () => !p2.hub.access.canSeeStage(stage.id, carol.id),
      "process 2 applies Carol's removal",
      1500,
    )
    const ms = Date.now() - committed
    t.ok(ms < 1500, `process 2 followed both commits ${ms} ms after they were answered`)
    t.equal(p2.hub.feed!.stats.fromRedis > 0 && p2.hub.feed!.stats.fromPoll >= 2, true, 'found by the poll')
    t.same(
      await subackCodes(carol.client, [topic.stage]),
      [128],
      'Carol may not subscribe again on process 2',
    )
  },
)

t.test(
  "a sign-out through process 1 closes the user's connections on processes 2 and 3 and refuses the old token there",
  { skip },
  async (t) => {
    const [p1, p2, p3] = await cluster(t)
    const ann = await userOn(p1, p1, 'Ann')
    const oldToken = p1.token({ sub: ann.id, name: 'Ann' })
    await waitUntil(() => p3.hub.access.hasUser(ann.id), 'process 3 knows Ann')
    const onP2 = await p2.connect({ clientId: 'ann-phone', token: oldToken })
    const onP3 = await p3.connect({ clientId: 'ann-web', token: oldToken, ws: true })
    const closed = [connectionClosed(onP2, 1000), connectionClosed(onP3, 1000)]
    const fresh = await ok<{ token: string; generation: number }>(ann, 'user.signOut')
    t.equal(fresh.generation, 1)
    await Promise.all(closed)
    t.same(
      [onP2.connected, onP3.connected],
      [false, false],
      'her connections on processes 2 and 3 are closed',
    )
    t.ok(ann.client.connected, 'the calling connection on process 1 stays')
    t.equal(
      await connackCode(p3.mqttUrl, { clientId: 'ann-again', username: 'token', password: oldToken }),
      5,
      'process 3 refuses the old token',
    )
    t.equal(
      await connackCode(p2.mqttUrl, { clientId: 'ann-new', username: 'token', password: fresh.token }),
      0,
      'process 2 accepts the new one',
    )
  },
)

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!

t.test(
  'request → delivery latency: a subscriber on another process gets every change, about as fast as one on the same process',
  { skip },
  async (t) => {
    const { p1, alice, carol, stage, topic } = await rehearsal(t)
    const watcher = await connectAs(p1, alice.id, 'Alice')
    t.same(await subackCodes(watcher.client, [topic.stage]), [1])
    const same: number[] = []
    const other: number[] = []
    const added: number[] = []
    const rounds = 30
    for (let i = 1; i <= rounds; i++) {
      const name = `Take ${i}`
      const started = performance.now()
      const arrived = (client: MqttClient) =>
        stateOn<StageState>(client, topic.stage, (s) => s.name === name).then(
          () => performance.now() - started,
        )
      const onP1 = arrived(watcher.client)
      const onP2 = arrived(carol.client)
      await ok(alice, 'stage.update', { stageId: stage.id, patch: { name } })
      same.push(await onP1)
      other.push(await onP2)
      added.push(other.at(-1)! - same.at(-1)!)
    }
    t.equal(other.length, rounds, `process 2 delivered all ${rounds} changes`)
    same.sort((a, b) => a - b)
    other.sort((a, b) => a - b)
    added.sort((a, b) => a - b)
    const figures = {
      sameP50: percentile(same, 0.5),
      sameP99: percentile(same, 0.99),
      otherP50: percentile(other, 0.5),
      otherP99: percentile(other, 0.99),
    }
    t.comment(
      `same process p50 ${figures.sameP50.toFixed(1)} ms p99 ${figures.sameP99.toFixed(1)} ms; ` +
        `other process p50 ${figures.otherP50.toFixed(1)} ms p99 ${figures.otherP99.toFixed(1)} ms; ` +
        `ratio p50 ${(figures.otherP50 / figures.sameP50).toFixed(2)} p99 ${(figures.otherP99 / figures.sameP99).toFixed(2)}; ` +
        `process 2 after process 1: p50 ${percentile(added, 0.5).toFixed(1)} ms p99 ${percentile(added, 0.99).toFixed(1)} ms`,
    )
    t.ok(
      percentile(added, 0.5) < 250,
      'most reach process 2 through Redis, well before a poll would find them',
    )
  },
)

t.test(
  'a device removed through process 1 loses its connection on process 3, which refuses its token from then on',
  { skip },
  async (t) => {
    const [p1, , p3] = await cluster(t)
    const ann = await userOn(p1, p1, 'Ann')
    const box = await ok<{ device: { id: string }; token: string }>(ann, 'device.create', {
      name: 'Box',
      kind: 'ovbox',
    })
    await waitUntil(() => p3.hub.access.deviceOwner(box.device.id) === ann.id, 'process 3 knows the box')
    const device = await connectDevice(p3, box.device.id, box.token)
    const closed = connectionClosed(device.client, 1000)
    await ok(ann, 'device.remove', { deviceId: box.device.id })
    await closed
    t.notOk(device.client.connected, "the box's connection on process 3 is closed")
    t.equal(p3.hub.access.deviceOwner(box.device.id), undefined, 'process 3 no longer knows the box')
    t.equal(
      await connackCode(p3.mqttUrl, { clientId: box.device.id, username: 'token', password: box.token }),
      5,
      'and refuses its token',
    )
  },
)

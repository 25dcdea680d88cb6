import t from 'tap'
import mqtt, { type MqttClient } from 'mqtt'
import { ClusterEmitter } from '../../../broker/cluster-emitter.ts'
import type { DeviceDoc, RequestRecordDoc, StageDoc } from '../../../services/collections.ts'
import type { RouterDoc } from '../../../services/routers/model.ts'
import { type Actor, connectAs, ok, parse, retainedOn, roomy } from '../../helpers/actors.ts'
import {
  type ReceivedMessage,
  Requester,
  type TestHub,
  connectionClosed,
  recordMessages,
  sleep,
  startTestHub,
  waitForMessage,
  waitUntil,
} from '../../helpers/hub.ts'
import { metricValue } from '../../helpers/metrics.ts'
import { freshMongoUrl, mongoMissing } from '../../helpers/mongo.ts'
import { redisMissing, startRedis } from '../../helpers/redis.ts'

// The message bus of a cluster of hub processes (docs/cluster.md#message-bus): three processes on one
// Redis and one MongoDB database, real MQTT clients on each.

interface Created {
  device: { id: string }
  token: string
}

const presenceTopic = (d: string) => `devices/${d}/presence`
const sessionPresence = (state: string, session: number) => JSON.stringify({ state, session })

t.test('three hub processes share one message bus', { skip: redisMissing || mongoMissing }, async (t) => {
  const redis = await startRedis(t)
  const mongoUrl = freshMongoUrl(t)
  const member = (id: string) => ({
    ...roomy,
    QUOTA_CHAT_PER_SECOND: '1000',
    QUOTA_CHAT_BURST: '1000',
    MONGO_URL: mongoUrl,
    REDIS_URL: redis.url,
    HUB_ID: id,
  })
  const p1 = await startTestHub(t, member('p1'))
  t.ok(
    (p1.hub.broker.aedes as unknown as { mq: unknown }).mq instanceof ClusterEmitter,
    'Aedes runs on the cluster emitter',
  )
  t.equal(p1.hub.broker.aedes.id, 'p1', "Aedes' broker id is the process id")

  // the deployment's users, stage and device are made through process 1 before 2 and 3 start: they
  // load them from the store (following another process's commits is the change feed's work)
  const users = {
    alice: (await p1.hub.users.createUser({ name: 'Alice' })).id,
    bob: (await p1.hub.users.createUser({ name: 'Bob' })).id,
    carol: (await p1.hub.users.createUser({ name: 'Carol' })).id,
  }
  const alice = await connectAs(p1, users.alice, 'Alice')
  const stage = await ok<{ id: string }>(alice, 'stage.create', { name: 'Rehearsal' })
  const group = await ok<{ id: string }>(alice, 'group.create', { stageId: stage.id, name: 'All' })
  await ok(alice, 'stage.join', { stageId: stage.id, groupId: group.id })
  for (const name of ['bob', 'carol'] as const) {
    const a = await connectAs(p1, users[name], name)
    await ok(a, 'stage.join', { stageId: stage.id, groupId: group.id })
    await a.client.endAsync()
  }
  const device = await ok<Created>(alice, 'device.create', { name: 'Box', kind: 'ovbox' })
  const d = device.device.id
  const ops = await p1.connect({ clientId: 'ops', token: p1.token({ sub: 'ops', role: 'admin' }) })
  const router = await ok<{ router: { id: string }; token: string }>(
    { id: 'ops', name: 'ops', client: ops, req: new Requester(ops) },
    'router.create',
    { name: 'Edge' },
  )
  await ops.endAsync()

  const p2 = await startTestHub(t, member('p2'))
  const p3 = await startTestHub(t, member('p3'))
  const processes = [p1, p2, p3]

  await t.test(
    'a chat message sent through process 1 reaches its subscribers on processes 1, 2 and 3 exactly once',
    async (t) => {
      const chat = `stages/${stage.id}/chat`
      const bob = await connectAs(p2, users.bob, 'Bob')
      const carol = await connectAs(p3, users.carol, 'Carol')
      const watchers = [alice, bob, carol]
      const recordings = watchers.map((w) => recordMessages(w.client))
      for (const w of watchers) await w.client.subscribeAsync([chat, `stages/${stage.id}/#`], { qos: 1 })
      await sleep(100)
      const sent = await ok<{ id: string; text: string }>(alice, 'chat.send', { text: 'across processes' })
      await sleep(500)
      for (const [i, w] of watchers.entries()) {
        recordings[i]!.stop()
        const got = recordings[i]!.messages.filter((m) => m.topic === chat)
        t.equal(got.length, 1, `${w.name} (on process ${i + 1}) got the message once`)
        t.match(parse(got[0]!.payload), { id: sent.id, text: 'across processes' })
      }
    },
  )

  await t.test(
    'chat delivery latency: a subscriber on another process gets each message, a Redis round trip later',
    async (t) => {
      const chat = `stages/${stage.id}/chat`
      const here = await connectAs(p1, users.bob, 'Bob')
      const there = await connectAs(p3, users.carol, 'Carol')
      for (const w of [here, there]) await w.client.subscribeAsync(chat, { qos: 1 })
      const arrivals = new Map<MqttClient, Map<string, number>>()
      for (const w of [here, there]) {
        const got = new Map<string, number>()
        arrivals.set(w.client, got)
        w.client.on('message', (topic, payload) => {
          if (topic === chat) got.set((parse(payload) as { text: string }).text, performance.now())
        })
      }
      const sentAt = new Map<string, number>()
      const count = 50
      for (let i = 0; i < count; i++) {
        sentAt.set(`m${i}`, performance.now())
        await ok(alice, 'chat.send', { text: `m${i}` })
      }
      await sleep(300)
      const percentile = (values: number[], p: number) =>
        values.sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * p))]!
      for (const [name, w] of [
        ['same process', here],
        ['another process', there],
      ] as const) {
        const got = arrivals.get(w.client)!
        t.equal(got.size, count, `${name}: every message arrived`)
        const latencies = [...sentAt].map(([text, at]) => got.get(text)! - at)
        t.comment(
          `request → chat delivery, subscriber on ${name}: p50 ${percentile(latencies, 0.5).toFixed(1)} ms, p99 ${percentile(latencies, 0.99).toFixed(1)} ms`,
        )
      }
      const gap = [...sentAt.keys()].map(
        (text) => arrivals.get(there.client)!.get(text)! - arrivals.get(here.client)!.get(text)!,
      )
      t.comment(
        `another process's subscriber minus the same process's, per message: p50 ${percentile(gap, 0.5).toFixed(2)} ms, p99 ${percentile(gap, 0.99).toFixed(2)} ms`,
      )
      await here.client.endAsync()
      await there.client.endAsync()
    },
  )

  await t.test(
    'a persistent session on process 2 queues what another process published while its client was away',
    async (t) => {
      const chat = `stages/${stage.id}/chat`
      const options = {
        clientId: 'bob-persistent',
        protocolVersion: 4 as const,
        username: 'token',
        password: p2.token({ sub: users.bob, name: 'Bob' }),
        clean: false,
        reconnectPeriod: 0,
      }
      const away = await mqtt.connectAsync(p2.mqttUrl, options)
      await away.subscribeAsync(chat, { qos: 1 })
      await away.endAsync()
      const sent = await ok<{ id: string }>(alice, 'chat.send', { text: 'while you were away' })
      await sleep(200)
      // listening before the CONNACK: the queued message follows it at once
      const back = mqtt.connect(p2.mqttUrl, options)
      t.teardown(() => back.endAsync(true))
      const resumed = waitForMessage(back, (m) => m.topic === chat, 3000)
      t.match(parse((await resumed).payload), { id: sent.id }, 'it gets the message sent through process 1')
    },
  )

  await t.test(
    'a persistent session does not follow its client to another process: the old process ends it, the new one starts afresh',
    async (t) => {
      const options = {
        clientId: 'alice-persistent',
        protocolVersion: 4 as const,
        username: 'token',
        password: p1.token({ sub: users.alice, name: 'Alice' }),
        clean: false,
        reconnectPeriod: 0,
      }
      const endedBefore = await metricValue(p1.httpUrl, 'stagehub_sessions_ended_total{reason="moved"}')
      const onFirst = await mqtt.connectAsync(p1.mqttUrl, options)
      t.teardown(() => onFirst.endAsync(true))
      await onFirst.subscribeAsync(`stages/${stage.id}/chat`, { qos: 1 })
      const firstClosed = connectionClosed(onFirst, 5000)
      const onSecond = await mqtt.connectAsync(p2.mqttUrl, options)
      t.teardown(() => onSecond.endAsync(true))
      await firstClosed
      t.pass('connecting through process 2 closed the connection on process 1')
      await waitUntil(
        async () =>
          (await metricValue(p1.httpUrl, 'stagehub_sessions_ended_total{reason="moved"}')) > endedBefore,
        'process 1 ended the session as moved',
      )
      await onSecond.endAsync()
      const endedOn2 = await metricValue(p2.httpUrl, 'stagehub_sessions_ended_total{reason="moved"}')
      const back = mqtt.connect(p1.mqttUrl, options)
      t.teardown(() => back.endAsync(true))
      const sessionPresent = await new Promise<boolean>((resolve) =>
        back.once('connect', (connack) => resolve(connack.sessionPresent)),
      )
      t.equal(sessionPresent, false, 'back on process 1 the session starts afresh')
      await waitUntil(
        async () =>
          (await metricValue(p2.httpUrl, 'stagehub_sessions_ended_total{reason="moved"}')) > endedOn2,
        'process 2 ended its offline session as moved',
      )
      t.pass('and process 2 ended the session it kept offline')
      await back.endAsync()
    },
  )

  await t.test(
    'a device presence published through process 1 is retained on processes 2 and 3 for later subscribers',
    async (t) => {
      const box = await p1.connect({
        clientId: d,
        token: device.token,
        will: {
          topic: presenceTopic(d),
          payload: Buffer.from(sessionPresence('lost', 1)),
          qos: 1,
          retain: true,
        },
      })
      await box.publishAsync(presenceTopic(d), sessionPresence('online', 1), { qos: 1, retain: true })
      await waitUntil(
        async () => (await p1.hub.store.get<DeviceDoc>('devices', d))?.online === true,
        'device online',
      )
      await sleep(200)
      for (const [i, p] of processes.entries()) {
        const owner = await connectAs(p, users.alice, 'Alice')
        t.same(
          await retainedOn(owner.client, presenceTopic(d), 2000),
          { state: 'online', session: 1 },
          `a subscriber connecting to process ${i + 1} afterwards gets it`,
        )
        await owner.client.endAsync()
      }
      const owner = await connectAs(p3, users.alice, 'Alice')
      const saidOffline = waitForMessage(
        owner.client,
        (m) => m.topic === presenceTopic(d) && (parse(m.payload) as { state: string }).state === 'offline',
        5000,
      )
      await owner.client.subscribeAsync(presenceTopic(d), { qos: 1 })
      await box.endAsync()
      await saidOffline
      t.pass('its clean disconnect is said on process 3 too')
      await owner.client.endAsync()
    },
  )

  await t.test(
    'a device reconnecting through process 2 closes its connection on process 1 and never shows offline',
    async (t) => {
      const will = (session: number) => ({
        topic: presenceTopic(d),
        payload: Buffer.from(sessionPresence('lost', session)),
        qos: 1 as const,
        retain: true,
      })
      const first = await p1.connect({ clientId: d, token: device.token, will: will(2) })
      await first.publishAsync(presenceTopic(d), sessionPresence('online', 2), { qos: 1, retain: true })
      await waitUntil(
        async () => (await p1.hub.store.get<DeviceDoc>('devices', d))?.session === 2,
        'device online in session 2',
      )
      // the owner watches the presence on every process, and the store's flag is sampled meanwhile
      const watchers: MqttClient[] = []
      const recordings: { messages: ReceivedMessage[]; stop(): void }[] = []
      for (const p of processes) {
        const owner = await connectAs(p, users.alice, 'Alice')
        await owner.client.subscribeAsync(presenceTopic(d), { qos: 1 })
        watchers.push(owner.client)
        recordings.push(recordMessages(owner.client))
      }
      const storedFlags: boolean[] = []
      const sampling = setInterval(() => {
        void p2.hub.store.get<DeviceDoc>('devices', d).then((doc) => storedFlags.push(doc?.online ?? false))
      }, 10)
      t.teardown(() => clearInterval(sampling))

      const firstClosed = connectionClosed(first, 5000)
      const second = await p2.connect({ clientId: d, token: device.token, will: will(3) })
      await firstClosed
      t.pass('the connection on process 1 was closed')
      await second.publishAsync(presenceTopic(d), sessionPresence('online', 3), { qos: 1, retain: true })
      await waitUntil(
        async () => (await p1.hub.store.get<DeviceDoc>('devices', d))?.session === 3,
        'device online in session 3',
      )
      await sleep(500)
      clearInterval(sampling)

      t.ok(storedFlags.length > 10, `the store's online flag was sampled (${storedFlags.length} times)`)
      t.notOk(storedFlags.includes(false), 'the stored device never went offline')
      for (const [i, recording] of recordings.entries()) {
        recording.stop()
        const states = recording.messages
          .filter((m) => m.topic === presenceTopic(d))
          .map((m) => (parse(m.payload) as { state: string } | undefined)?.state)
        t.notOk(
          states.some((s) => s !== 'online'),
          `the presence on process ${i + 1} only ever said online (${recording.messages.map((m) => m.payload.toString()).join(', ')})`,
        )
        const late = await connectAs(processes[i]!, users.alice, 'Alice')
        t.same(
          await retainedOn(late.client, presenceTopic(d), 2000),
          { state: 'online', session: 3 },
          `process ${i + 1} retains session 3 online`,
        )
        await late.client.endAsync()
      }
      const doc = await p3.hub.store.get<DeviceDoc>('devices', d)
      t.match(doc, { online: true, session: 3 }, 'the store has it online in session 3')
      await second.endAsync()
    },
  )

  await t.test(
    "a device's old connection that ends on process 1 before it heard of the newer session said through process 2 changes nothing",
    async (t) => {
      const first = await p1.connect({
        clientId: d,
        token: device.token,
        will: {
          topic: presenceTopic(d),
          payload: Buffer.from(sessionPresence('lost', 10)),
          qos: 1,
          retain: true,
        },
      })
      await first.publishAsync(presenceTopic(d), sessionPresence('online', 10), { qos: 1, retain: true })
      await waitUntil(
        async () => (await p1.hub.store.get<DeviceDoc>('devices', d))?.session === 10,
        'device online in session 10',
      )
      // what process 2 does when the device says session 11 through it: its presence committed and
      // retained everywhere; process 1 has not closed the old connection yet (the race a takeover closes)
      await p2.hub.store.transaction(async (tx) => {
        const doc = (await tx.get<DeviceDoc>('devices', d))!
        tx.replace<DeviceDoc>('devices', { ...doc, online: true, session: 11 })
      })
      await p2.hub.broker.publish(presenceTopic(d), sessionPresence('online', 11), { qos: 1, retain: true })
      await sleep(100)
      // the old connection's network goes: process 1 sees it lost and publishes its will (session 10)
      first.stream.destroy()
      await connectionClosed(first)
      await sleep(700)
      t.match(
        await p3.hub.store.get<DeviceDoc>('devices', d),
        { online: true, session: 11 },
        'the store still has it online in session 11',
      )
      for (const [i, p] of processes.entries()) {
        const owner = await connectAs(p, users.alice, 'Alice')
        t.same(
          await retainedOn(owner.client, presenceTopic(d), 2000),
          { state: 'online', session: 11 },
          `process ${i + 1} retains session 11 online`,
        )
        await owner.client.endAsync()
      }
    },
  )

  await t.test(
    'a router reconnecting through process 3 closes its connection on process 1 and never shows offline',
    async (t) => {
      const r = router.router.id
      const topic = `routers/${r}/presence`
      const online = (session: number) =>
        JSON.stringify({
          state: 'online',
          session,
          capabilities: ['ov'],
          capacity: { ov: 2 },
          position: { lat: 52.5, lng: 13.4 },
          url: 'wss://edge.example',
        })
      const will = (session: number) => ({
        topic,
        payload: Buffer.from(sessionPresence('lost', session)),
        qos: 1 as const,
        retain: true,
      })
      const storedRouter = () => p1.hub.store.get<RouterDoc>('routers', r)
      const first = await p1.connect({ clientId: r, token: router.token, will: will(1) })
      await first.publishAsync(topic, online(1), { qos: 1, retain: true })
      await waitUntil(async () => (await storedRouter())?.online === true, 'router online')
      const recordings: { messages: ReceivedMessage[]; stop(): void }[] = []
      for (const [i, p] of processes.entries()) {
        const watcher = await p.connect({
          clientId: `ops-${i}`,
          token: p.token({ sub: 'ops', role: 'admin' }),
        })
        await watcher.subscribeAsync(topic, { qos: 1 })
        recordings.push(recordMessages(watcher))
      }
      const flags: boolean[] = []
      const sampling = setInterval(
        () => void storedRouter().then((doc) => flags.push(doc?.online ?? false)),
        10,
      )
      t.teardown(() => clearInterval(sampling))

      const firstClosed = connectionClosed(first, 5000)
      const second = await p3.connect({ clientId: r, token: router.token, will: will(2) })
      await firstClosed
      await second.publishAsync(topic, online(2), { qos: 1, retain: true })
      await waitUntil(async () => (await storedRouter())?.session === 2, 'router online in session 2')
      await sleep(500)
      clearInterval(sampling)
      t.ok(flags.length > 10, `the store's online flag was sampled (${flags.length} times)`)
      t.notOk(flags.includes(false), 'the stored router never went offline')
      for (const [i, recording] of recordings.entries()) {
        recording.stop()
        const states = recording.messages.map((m) => (parse(m.payload) as { state: string }).state)
        t.same(states, ['online', 'online'], `process ${i + 1} only ever said online (sessions 1 and 2)`)
      }
      await second.endAsync()
    },
  )

  await t.test('a request retried through another process with the same id applies once', async (t) => {
    const clientId = 'alice-retry'
    const token = p1.token({ sub: users.alice, name: 'Alice' })
    const onFirst = await p1.connect({ clientId, token })
    const firstTry = await new Requester(onFirst).request('stage.create', { name: 'Once' }, 'same-id')
    t.equal(firstTry.ok, true, 'applied through process 1')
    await onFirst.endAsync()
    const onSecond = await p2.connect({ clientId, token })
    const retried = await new Requester(onSecond).request('stage.create', { name: 'Once' }, 'same-id')
    t.same(retried, firstTry, 'process 2 answers the retry with the first answer')
    const stages: StageDoc[] = []
    for await (const s of p3.hub.store.scan<StageDoc>('stages')) if (s.name === 'Once') stages.push(s)
    t.equal(stages.length, 1, 'one stage was created')
    const records: RequestRecordDoc[] = []
    for await (const r of p3.hub.store.scan<RequestRecordDoc>('requests'))
      if (r.clientId === clientId) records.push(r)
    t.equal(records.length, 1, 'one request record in the store, shared by every process')
    t.equal(records[0]?.action, 'stage.create')
  })

  await t.test(
    'process 1 restarted with the same id: what it publishes reaches subscribers on process 2 again',
    async (t) => {
      const chat = `stages/${stage.id}/chat`
      const bob = await connectAs(p2, users.bob, 'Bob')
      await bob.client.subscribeAsync(chat, { qos: 1 })
      const recording = recordMessages(bob.client)
      // process 1's message counter is well past what it will count after a restart
      for (let i = 0; i < 5; i++) await ok(alice, 'chat.send', { text: `before ${i}` })
      await p1.restart()
      const aliceAgain = await connectAs(p1, users.alice, 'Alice')
      await ok(aliceAgain, 'chat.send', { text: 'after the restart' })
      await sleep(500)
      recording.stop()
      const texts = recording.messages
        .filter((m) => m.topic === chat)
        .map((m) => (parse(m.payload) as { text: string }).text)
      t.same(
        texts,
        ['before 0', 'before 1', 'before 2', 'before 3', 'before 4', 'after the restart'],
        "Aedes' birth message reset what Bob's connection had counted of process 1",
      )
    },
  )
})

t.test('without REDIS_URL the hub runs alone, as before: no bus, no Redis', async (t) => {
  const th: TestHub = await startTestHub(t, roomy)
  t.notOk(
    (th.hub.broker.aedes as unknown as { mq: unknown }).mq instanceof ClusterEmitter,
    "Aedes' own in-process emitter",
  )
  t.equal(th.hub.config.cluster, undefined)
  const user = await th.hub.users.createUser({ name: 'Solo' })
  const solo: Actor = await connectAs(th, user.id, 'Solo')
  const stage = await ok<{ id: string }>(solo, 'stage.create', { name: 'Alone' })
  const group = await ok<{ id: string }>(solo, 'group.create', { stageId: stage.id, name: 'All' })
  await ok(solo, 'stage.join', { stageId: stage.id, groupId: group.id })
  const chat = `stages/${stage.id}/chat`
  const recording = recordMessages(solo.client)
  await solo.client.subscribeAsync(chat, { qos: 1 })
  await ok(solo, 'chat.send', { text: 'hello' })
  await sleep(200)
  recording.stop()
  t.equal(recording.messages.filter((m) => m.topic === chat).length, 1, 'the chat message arrives once')
  const device = await ok<Created>(solo, 'device.create', { name: 'Box', kind: 'ovbox' })
  const box = await th.connect({ clientId: device.device.id, token: device.token })
  await box.publishAsync(presenceTopic(device.device.id), sessionPresence('online', 1), {
    qos: 1,
    retain: true,
  })
  await sleep(100)
  t.same(await retainedOn(solo.client, presenceTopic(device.device.id), 2000), {
    state: 'online',
    session: 1,
  })
})

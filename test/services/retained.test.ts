import t from 'tap'
import type { MqttClient } from 'mqtt'
import type { DeviceRegistration, RetainedDoc, UserDoc } from '../../services/collections.ts'
import { HUB_VERSION } from '../../services/hub.ts'
import { EmbeddedBackend } from '../../services/store/embedded.ts'
import { Store } from '../../services/store/index.ts'
import {
  Requester,
  type TestHub,
  connectionClosed,
  nextMessage,
  recordMessages,
  sleep,
  startTestHub,
  waitForMessage,
} from '../helpers/hub.ts'

/** Stops the hub, lets `work` read or change its store directly (as an operator could), and leaves it stopped. */
async function whileStopped<R>(th: TestHub, work: (store: Store) => Promise<R>): Promise<R> {
  await th.hub.close()
  const store = new Store(EmbeddedBackend.open(th.dataDir))
  try {
    return await work(store)
  } finally {
    await store.close()
  }
}

/** The retained message on `topic` a fresh subscriber gets, or undefined when none arrives within `ms`. */
async function retainedOn(client: MqttClient, topic: string, ms = 300): Promise<Buffer | undefined> {
  try {
    const message = await nextMessage(client, topic, ms)
    return message.retain ? message.payload : undefined
  } catch {
    return undefined
  } finally {
    await client.unsubscribeAsync(topic)
  }
}

const json = (payload: Buffer | undefined): unknown => (payload ? JSON.parse(payload.toString()) : undefined)

const admin = (th: TestHub, clientId = 'ops') =>
  th.connect({ clientId, token: th.token({ sub: 'operator', role: 'admin' }) })

t.test(
  'user profiles are republished from the store on start, even when the retained archive lost them',
  async (t) => {
    const th = await startTestHub(t)
    const user = await th.hub.users.createUser({ name: 'Alice' })
    const client = await th.connect({ clientId: 'alice', token: th.token({ sub: user.id }) })
    t.ok((await new Requester(client).request('user.update', { name: 'Alice B' })).ok)
    await client.endAsync()

    await th.restart()
    const after = await th.connect({ clientId: 'alice-2', token: th.token({ sub: user.id }) })
    t.same(
      json(await retainedOn(after, `users/${user.id}`)),
      { id: user.id, name: 'Alice B', version: 2 },
      'the profile survives a restart',
    )
    await after.endAsync()

    // the store is the source of truth: change it and drop the archived message while the hub is down
    await whileStopped(th, async (store) => {
      await store.transaction(async (tx) => {
        const doc = (await tx.get<UserDoc>('users', user.id))!
        tx.replace('users', { ...doc, name: 'Renamed Offline' })
        const archived = await tx.get<RetainedDoc>('retained', `users/${user.id}`)
        t.ok(archived, 'the profile was archived as a retained message')
        tx.delete('retained', archived!)
      })
    })
    await th.restart()
    const third = await th.connect({ clientId: 'alice-3', token: th.token({ sub: user.id }) })
    t.same(
      json(await retainedOn(third, `users/${user.id}`)),
      { id: user.id, name: 'Renamed Offline', version: 3 },
      'the profile is republished from the store',
    )
  },
)

t.test('retained state topics the store does not back are cleared on start', async (t) => {
  const th = await startTestHub(t)
  const ops = await admin(th)
  await th.hub.broker.publish('stages/ghost', JSON.stringify({ name: 'Ghost stage' }), {
    qos: 1,
    retain: true,
  })
  await th.hub.broker.publish('users/ghost', JSON.stringify({ id: 'ghost', name: 'Ghost', version: 1 }), {
    qos: 1,
    retain: true,
  })
  t.same(
    json(await retainedOn(ops, 'stages/ghost')),
    { name: 'Ghost stage' },
    'the orphan is retained before the restart',
  )
  t.ok(await retainedOn(ops, 'users/ghost'), 'so is the orphan profile')
  await ops.endAsync()

  await th.restart()
  const later = await admin(th, 'ops-2')
  t.equal(await retainedOn(later, 'stages/ghost'), undefined, 'a new subscriber gets nothing on stages/ghost')
  t.equal(await retainedOn(later, 'users/ghost'), undefined, 'nor on users/ghost')
  const archived = await whileStopped(th, async (store) => [
    await store.get('retained', 'stages/ghost'),
    await store.get('retained', 'users/ghost'),
  ])
  t.same(archived, [null, null], 'and the orphans are gone from the retained archive')
})

t.test(
  'device presence survives a restart while the device is registered; other presence is cleared',
  async (t) => {
    const th = await startTestHub(t)
    const owner = await th.hub.users.createUser({ name: 'Owner' })
    await th.hub.store.transaction(async (tx) => {
      tx.insert<DeviceRegistration>('devices', { id: 'd1', owner: owner.id, tokenVersion: 1 })
    })
    const device = await th.connect({
      clientId: 'd1',
      token: th.token({ sub: 'd1', role: 'device', owner: owner.id, ver: 1 }),
    })
    await device.publishAsync('devices/d1/presence', JSON.stringify({ state: 'online', session: 1 }), {
      qos: 1,
      retain: true,
    })
    await device.publishAsync('devices/d1/presence', JSON.stringify({ state: 'offline', session: 1 }), {
      qos: 1,
      retain: true,
    })
    await device.endAsync()
    // presence of a device that is not (or no longer) registered
    await th.hub.broker.publish('devices/d2/presence', JSON.stringify({ state: 'online', session: 4 }), {
      qos: 1,
      retain: true,
    })
    const before = await admin(th, 'ops-before')
    t.ok(
      await retainedOn(before, 'devices/d2/presence'),
      'the unregistered presence is retained before the restart',
    )

    await th.restart()
    const user = await th.connect({ clientId: 'owner-app', token: th.token({ sub: owner.id }) })
    t.same(
      json(await retainedOn(user, 'devices/d1/presence')),
      { state: 'offline', session: 1 },
      "the registered device's presence is kept",
    )
    const ops = await admin(th)
    t.equal(
      await retainedOn(ops, 'devices/d2/presence'),
      undefined,
      "the unregistered device's presence is cleared",
    )
  },
)

t.test(
  'hub/status is online after start, offline during a clean shutdown, and online again after a restart',
  async (t) => {
    const startedAt = Date.now()
    const th = await startTestHub(t)
    const watcher = await th.connect({ clientId: 'watcher', token: th.token({ sub: 'u-watch' }) })
    const first = await nextMessage(watcher, 'hub/status')
    t.ok(first.retain)
    const online = json(first.payload) as { state: string; version: string; since: string }
    t.same(Object.keys(online).sort(), ['since', 'state', 'version'])
    t.equal(online.state, 'online')
    t.equal(online.version, HUB_VERSION)
    t.ok(
      Date.parse(online.since) >= startedAt - 1000 && Date.parse(online.since) <= Date.now(),
      'since is the start time',
    )

    const seen = recordMessages(watcher)
    const closed = connectionClosed(watcher, 5000)
    const archived = await whileStopped(th, (store) => store.get<RetainedDoc>('retained', 'hub/status'))
    await closed
    const offline = seen.messages
      .filter((m) => m.topic === 'hub/status')
      .map((m) => json(m.payload) as { state: string })
    t.same(
      offline.map((m) => m.state),
      ['offline'],
      'a connected subscriber is told the hub went offline before its connection closes',
    )
    t.ok(archived, 'hub/status is archived')
    const stored = JSON.parse(Buffer.from(archived!.payload, 'base64').toString()) as {
      state: string
      version: string
      since: string
    }
    t.equal(stored.state, 'offline', 'the archive says offline while the hub is down')
    t.equal(stored.version, HUB_VERSION)

    await sleep(5)
    await th.restart()
    const again = await th.connect({ clientId: 'watcher-2', token: th.token({ sub: 'u-watch' }) })
    const restarted = json(await retainedOn(again, 'hub/status')) as { state: string; since: string }
    t.equal(restarted.state, 'online', 'online again after the restart')
    t.ok(Date.parse(restarted.since) > Date.parse(online.since), 'since is the new start time')
  },
)

t.test('over WebSocket, an MQTT.js client gets retained messages', async (t) => {
  const th = await startTestHub(t)
  const user = await th.hub.users.createUser({ name: 'Web' })
  const client = await th.connect({ ws: true, clientId: 'web-tab', token: th.token({ sub: user.id }) })
  const profile = await nextMessage(client, `users/${user.id}`)
  t.ok(profile.retain, 'delivered as a retained message')
  t.same(json(profile.payload), { id: user.id, name: 'Web', version: 1 })
  t.equal((json((await nextMessage(client, 'hub/status')).payload) as { state: string }).state, 'online')
  t.same(
    (await new Requester(client).request('user.update', { name: 'Web 2' })).result,
    { id: user.id, name: 'Web 2', version: 2 },
    'requests work over WebSocket',
  )
})

t.test(
  "the last will of a device on WebSocket reaches its owner when the device's socket dies",
  async (t) => {
    const th = await startTestHub(t)
    const owner = await th.hub.users.createUser({ name: 'Owner' })
    await th.hub.store.transaction(async (tx) => {
      tx.insert<DeviceRegistration>('devices', { id: 'box1', owner: owner.id, tokenVersion: 1 })
    })
    const device = await th.connect({
      ws: true,
      clientId: 'box1',
      token: th.token({ sub: 'box1', role: 'device', owner: owner.id, ver: 1 }),
      will: {
        topic: 'devices/box1/presence',
        payload: Buffer.from(JSON.stringify({ state: 'lost', session: 1 })),
        qos: 1,
        retain: true,
      },
    })
    await device.publishAsync('devices/box1/presence', JSON.stringify({ state: 'online', session: 1 }), {
      qos: 1,
      retain: true,
    })

    const user = await th.connect({ clientId: 'owner-app', token: th.token({ sub: owner.id }) })
    t.same(
      json((await nextMessage(user, 'devices/box1/presence')).payload),
      { state: 'online', session: 1 },
      'the owner sees the device online',
    )

    const next = waitForMessage(user, 'devices/box1/presence', 5000)
    device.stream.destroy()
    const will = await next
    t.same(json(will.payload), { state: 'lost', session: 1 }, 'the owner gets the last will')
    t.notOk(will.retain, 'live, not as a stored retained message')

    const late = await th.connect({ clientId: 'owner-app-2', token: th.token({ sub: owner.id }) })
    t.same(
      json(await retainedOn(late, 'devices/box1/presence')),
      { state: 'lost', session: 1 },
      'the will was retained',
    )
  },
)

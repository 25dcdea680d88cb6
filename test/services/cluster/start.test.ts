import { spawn } from 'node:child_process'
import { MongoClient } from 'mongodb'
import t from 'tap'
import type { DeviceState } from '../../../schemas/actions/device.ts'
import { actor, ok, retainedOn, roomy } from '../../helpers/actors.ts'
import { Requester, startTestHub, waitUntil } from '../../helpers/hub.ts'
import { freshMongoUrl, mongoMissing } from '../../helpers/mongo.ts'
import { startProxy } from '../../helpers/proxy.ts'
import { redisMissing, startRedis } from '../../helpers/redis.ts'

/**
 * A process starting in a cluster (docs/cluster.md#leases-and-liveness) marks offline only what no
 * live process holds: a device online through another live process stays online, one left online by
 * a process that is gone is offline. The `hub` field that says which process is internal: owners never
 * see it.
 */
t.test(
  'a process starting in a cluster leaves online what another live process holds and marks offline what a gone one left',
  { skip: redisMissing || mongoMissing },
  async (t) => {
    const redis = await startRedis(t)
    const mongoUrl = freshMongoUrl(t)
    const env = { ...roomy, MONGO_URL: mongoUrl, REDIS_URL: redis.url }
    const p1 = await startTestHub(t, { ...env, HUB_ID: 'p1' })
    const alice = await actor(p1, 'Alice')
    const held = await ok<{ device: DeviceState; token: string }>(alice, 'device.create', {
      name: 'Held',
      kind: 'native',
    })
    const ghost = await ok<{ device: DeviceState; token: string }>(alice, 'device.create', {
      name: 'Ghost',
      kind: 'native',
    })
    const box = await p1.connect({ clientId: held.device.id, token: held.token })
    await box.publishAsync(
      `devices/${held.device.id}/presence`,
      JSON.stringify({ state: 'online', session: 1 }),
      {
        qos: 1,
        retain: true,
      },
    )
    const mongo = new MongoClient(mongoUrl)
    t.teardown(() => mongo.close())
    const devices = mongo.db().collection<{ _id: string; online: boolean; hub?: string }>('devices')
    await waitUntil(
      async () => (await devices.findOne({ _id: held.device.id }))?.hub === 'p1',
      'the held device online through p1',
    )
    t.match(
      await devices.findOne({ _id: held.device.id }),
      { online: true, hub: 'p1' },
      'stored with its process',
    )
    // what a process killed earlier left behind: online through a process that no longer renews
    await devices.updateOne({ _id: ghost.device.id }, { $set: { online: true, hub: 'gone' } })

    const p2 = await startTestHub(t, { ...env, HUB_ID: 'p2' })
    t.match(
      await devices.findOne({ _id: held.device.id }),
      { online: true, hub: 'p1' },
      'p1 still holds its device',
    )
    t.match(
      await devices.findOne({ _id: ghost.device.id }),
      { online: false },
      'the gone process device is offline',
    )
    t.notOk((await devices.findOne({ _id: ghost.device.id }))?.hub, 'and carries no process')

    const document = (await retainedOn(
      alice.client,
      `users/${alice.id}/devices/${held.device.id}`,
      1000,
    )) as Record<string, unknown>
    t.equal(document.online, true, 'the owner sees the device online')
    t.notOk('hub' in document, 'the owner never sees which process holds it')
    const opsClient = await p2.connect({ clientId: 'ops-1', token: p2.token({ sub: 'ops', role: 'admin' }) })
    const ops = { id: 'ops', name: 'ops', client: opsClient, req: new Requester(opsClient) }
    const status = await ok<{ cluster?: { processes: string[] } }>(ops, 'hub.status')
    t.same(status.cluster?.processes, ['p1', 'p2'], 'hub.status lists both live processes')
  },
)

t.test(
  'a cluster process that loses Redis is not ready (a load balancer takes it out), and ready again when Redis is back',
  { skip: redisMissing || mongoMissing },
  async (t) => {
    const redis = await startRedis(t)
    const th = await startTestHub(t, { MONGO_URL: freshMongoUrl(t), REDIS_URL: redis.url, HUB_ID: 'p1' })
    const ready = async () => {
      const response = await fetch(`${th.httpUrl}/readyz`)
      return { status: response.status, body: (await response.json()) as { reason?: string } }
    }
    t.equal((await ready()).status, 200, 'ready with Redis')
    redis.process.kill('SIGKILL')
    await waitUntil(async () => (await ready()).status === 503, 'not ready without Redis')
    t.match((await ready()).body.reason, /Redis \(REDIS_URL\) is unreachable/, 'and says why')
    // Redis back on its address: ioredis reconnects by itself
    const back = spawn(
      'redis-server',
      ['--port', String(redis.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      {
        stdio: 'ignore',
      },
    )
    t.teardown(() => void back.kill('SIGKILL'))
    await waitUntil(async () => (await ready()).status === 200, 'ready again with Redis', 10_000)
    t.pass('ready again once Redis answers')
  },
)

t.test(
  'a device that reconnected through another process stays online when its old connection is closed there and its will fires',
  { skip: redisMissing || mongoMissing },
  async (t) => {
    const redis = await startRedis(t)
    const mongoUrl = freshMongoUrl(t)
    const env = { ...roomy, MONGO_URL: mongoUrl, REDIS_URL: redis.url }
    const p1 = await startTestHub(t, { ...env, HUB_ID: 'p1' })
    const alice = await actor(p1, 'Alice')
    const { device, token } = await ok<{ device: DeviceState; token: string }>(alice, 'device.create', {
      name: 'Mover',
      kind: 'native',
    })
    const p2 = await startTestHub(t, { ...env, HUB_ID: 'p2' })
    const presence = `devices/${device.id}/presence`
    const will = {
      topic: presence,
      payload: Buffer.from(JSON.stringify({ state: 'lost', session: 1 })),
      qos: 1 as const,
      retain: true,
    }
    const mongo = new MongoClient(mongoUrl)
    t.teardown(() => mongo.close())
    const devices = mongo.db().collection<{ _id: string; online: boolean; hub?: string }>('devices')
    const stored = () => devices.findOne({ _id: device.id })

    const old = await p1.connect({ clientId: device.id, token, will })
    await old.publishAsync(presence, JSON.stringify({ state: 'online', session: 1 }), {
      qos: 1,
      retain: true,
    })
    await waitUntil(async () => (await stored())?.hub === 'p1', 'online through p1')
    // the same session again through p2 (its network moved)
    const moved = await p2.connect({ clientId: device.id, token, will })
    await moved.publishAsync(presence, JSON.stringify({ state: 'online', session: 1 }), {
      qos: 1,
      retain: true,
    })
    await waitUntil(async () => (await stored())?.hub === 'p2', 'held by p2 now')
    // the takeover crossed the bus: p1 closed the old connection, whose will speaks for nobody now
    await waitUntil(async () => old.disconnected || !old.connected, 'the old connection closed by p1')
    await new Promise((resolve) => setTimeout(resolve, 300))
    t.match(
      await stored(),
      { online: true, hub: 'p2' },
      'still online, held by p2: the old end says nothing about it',
    )
  },
)

t.test(
  'a cluster process whose Redis connection goes silent is not ready once its liveness lapses, and says for how long',
  { skip: redisMissing || mongoMissing },
  async (t) => {
    const redis = await startRedis(t)
    const proxy = await startProxy(t, () => ({ host: '127.0.0.1', port: redis.port }))
    const th = await startTestHub(t, {
      MONGO_URL: freshMongoUrl(t),
      REDIS_URL: proxy.url.replace('mqtt:', 'redis:'),
      HUB_ID: 'p1',
    })
    const ready = async () => {
      const response = await fetch(`${th.httpUrl}/readyz`)
      return { status: response.status, body: (await response.json()) as { reason?: string } }
    }
    t.equal((await ready()).status, 200, 'ready')
    // a partition: the connection stays open but carries nothing, so the client library sees no error
    const silencedAt = Date.now()
    proxy.silence()
    await waitUntil(async () => (await ready()).status === 503, 'not ready once its liveness lapsed', 8000)
    const after = Date.now() - silencedAt
    t.ok(
      after >= 3000 && after <= 6500,
      `not ready ${after} ms after the silence (liveness ttl 5 s, renewed every 1 s)`,
    )
    t.match(
      (await ready()).body.reason,
      /could not renew its liveness in Redis \(REDIS_URL\) for \d/,
      'and says why',
    )
    // the silenced connection never answers: cut it so the hub can close (ioredis reconnects through the proxy)
    proxy.cut()
  },
)

t.test(
  'a cluster process whose Redis is gone still shuts down within seconds (no QUIT or UNSUBSCRIBE left waiting for it)',
  { skip: redisMissing || mongoMissing },
  async (t) => {
    const redis = await startRedis(t)
    const th = await startTestHub(t, { MONGO_URL: freshMongoUrl(t), REDIS_URL: redis.url, HUB_ID: 'p1' })
    redis.process.kill('SIGKILL')
    await new Promise((resolve) => redis.process.once('exit', resolve))
    const started = Date.now()
    await th.hub.close()
    const took = Date.now() - started
    t.ok(took < 10_000, `closed in ${took} ms without Redis`)
  },
)

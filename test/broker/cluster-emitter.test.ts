import t from 'tap'
import { Redis } from 'ioredis'
import { pino } from 'pino'
import {
  type BusPacket,
  ClusterEmitter,
  isHubProjected,
  needsBus,
  routeOf,
} from '../../broker/cluster-emitter.ts'
import { topicCatalogue, topics } from '../../schemas/topics.ts'
import { redisMissing, startRedis } from '../helpers/redis.ts'
import type { Teardown } from '../helpers/hub.ts'

const log = pino({ level: 'silent' })

t.test(
  'hub-projected state topics and hub/status stay local; what clients and events carry crosses',
  async (t) => {
    for (const entry of topicCatalogue) {
      if (entry.pattern.startsWith('$')) continue
      const topic = (entry.build as (...values: string[]) => string)(...entry.variables.map((v) => `x${v}`))
      const expected = isHubProjected(entry) || entry.receivers === 'nobody' ? 'local' : 'bus'
      t.equal(routeOf(topic), expected, `${entry.pattern}: ${expected}`)
    }
    t.equal(routeOf(topics.hubStatus.build()), 'local')
    t.equal(routeOf(topics.stage.build('s1')), 'local')
    t.equal(routeOf(topics.chat.build('s1')), 'bus')
    t.equal(routeOf(topics.devicePresence.build('d1')), 'bus')
    t.equal(routeOf(topics.response.build('c1')), 'bus')
    t.equal(routeOf(topics.signal.build('r1')), 'bus')
    t.equal(routeOf(topics.consumed.build()), 'local')
    t.equal(routeOf('$SYS/p1/new/clients'), 'bus', 'takeovers cross')
    t.equal(routeOf('$SYS/p1/birth'), 'bus')
    t.equal(routeOf('$SYS/p1/new/subscribes'), 'local', "a connection's own bookkeeping does not")
    t.equal(routeOf('$SYS/p1/disconnect/clients'), 'local')
  },
)

t.test('a subscription listens on the bus only when it can match a topic the bus carries', async (t) => {
  t.notOk(needsBus('users/u1/#'), "a user's topics are all projected state")
  t.notOk(needsBus(topics.deviceConfig.build('d1')))
  t.notOk(needsBus('stages/s1/members/+'))
  t.ok(needsBus('stages/s1/#'), 'the stage chat is an event')
  t.ok(needsBus('devices/d1/#'), 'presence')
  t.ok(needsBus(topics.response.build('c1')))
  t.ok(needsBus('#'))
  t.ok(needsBus('+/+/presence'))
  t.ok(needsBus('$SYS/+/new/clients'))
})

async function emitterOn(t: Teardown, redis: Redis, processId: string): Promise<ClusterEmitter> {
  const emitter = await ClusterEmitter.open({ processId, redis, channelPrefix: 'stagehub:mqtt/', log })
  t.teardown(() => new Promise<void>((resolve) => emitter.close(resolve)))
  return emitter
}

const packet = (topic: string, fields: Partial<BusPacket> = {}): BusPacket => ({
  topic,
  payload: Buffer.from('x'),
  qos: 1,
  retain: false,
  ...fields,
})

const settle = (ms = 150) => new Promise((resolve) => setTimeout(resolve, ms))

t.test(
  'through real Redis: a bus message reaches each listener of every process once, a local one only its own process',
  { skip: redisMissing },
  async (t) => {
    const server = await startRedis(t)
    const redis = new Redis(server.url, { lazyConnect: true })
    await redis.connect()
    t.teardown(() => redis.quit())
    const [a, b, c] = [
      await emitterOn(t, redis, 'pa'),
      await emitterOn(t, redis, 'pb'),
      await emitterOn(t, redis, 'pc'),
    ]
    const heard: string[] = []
    const listen = (emitter: ClusterEmitter, name: string, filter: string) =>
      new Promise<void>((resolve) =>
        emitter.on(
          filter,
          (p, done) => {
            heard.push(`${name} ${p.topic}`)
            done()
          },
          resolve,
        ),
      )
    // overlapping filters on one process: Redis delivers the message once per matching pattern
    await listen(b, 'b-chat', 'stages/+/chat')
    await listen(b, 'b-stage', 'stages/s1/#')
    await listen(c, 'c-stage', 'stages/s1/#')
    await listen(a, 'a-stage', 'stages/s1/#')

    await new Promise<void>((resolve, reject) =>
      a.emit(packet(topics.chat.build('s1'), { brokerId: 'pa', brokerCounter: 1 }), (err) =>
        err ? reject(err) : resolve(),
      ),
    )
    a.emit(packet(topics.stage.build('s1'), { brokerId: 'pa', brokerCounter: 2 }))
    await settle()
    t.same(
      heard.sort(),
      [
        'a-stage stages/s1',
        'a-stage stages/s1/chat',
        'b-chat stages/s1/chat',
        'b-stage stages/s1/chat',
        'c-stage stages/s1/chat',
      ],
      'the chat message reached every listener once; the projected stage topic stayed on its process',
    )
  },
)

t.test(
  'through real Redis: a retained message the bus carries is told to every process with its origin; a takeover is told before the listener runs, which it may stop',
  { skip: redisMissing },
  async (t) => {
    const server = await startRedis(t)
    const redis = new Redis(server.url, { lazyConnect: true })
    await redis.connect()
    t.teardown(() => redis.quit())
    const [a, b] = [await emitterOn(t, redis, 'pa'), await emitterOn(t, redis, 'pb')]
    const retained: string[] = []
    a.onRetained = (p, origin) => retained.push(`a ${p.topic} from ${origin}`)
    b.onRetained = (p, origin) => retained.push(`b ${p.topic} from ${origin}`)
    const order: string[] = []
    b.onTakeover = (clientId, from) => {
      order.push(`takeover ${clientId} by ${from}`)
      return clientId !== 'dev-2' // b keeps its connection of dev-2 (the newer one)
    }
    a.onTakeover = () => order.push('a heard its own announcement as a takeover') > 0
    a.onAnnounced = (clientId) => order.push(`a's own announcement of ${clientId} came back`)
    await new Promise<void>((resolve) =>
      b.on(
        '$SYS/+/new/clients',
        (p, done) => {
          order.push(`listener ${p.payload.toString()}`)
          done()
        },
        resolve,
      ),
    )
    await new Promise<void>((resolve) => a.on('$SYS/+/new/clients', (_p, done) => done(), resolve))

    a.emit(packet(topics.devicePresence.build('d1'), { retain: true, brokerId: 'pa', brokerCounter: 1 }))
    a.emit(packet(topics.devicePresence.build('d2'), { retain: false, brokerId: 'pa', brokerCounter: 2 }))
    a.emit(packet('$SYS/pa/new/clients', { payload: Buffer.from('dev-1'), qos: 0 }))
    await settle()
    a.emit(packet('$SYS/pa/new/clients', { payload: Buffer.from('dev-2'), qos: 0 }))
    await settle()
    t.same(retained.sort(), ['a devices/d1/presence from pa', 'b devices/d1/presence from pa'])
    t.same([...order].sort(), [
      "a's own announcement of dev-1 came back",
      "a's own announcement of dev-2 came back",
      'listener dev-1',
      'takeover dev-1 by pa',
      'takeover dev-2 by pa',
    ])
    t.ok(
      order.indexOf('takeover dev-1 by pa') < order.indexOf('listener dev-1'),
      "the broker hears of a takeover before Aedes' listener closes the connection",
    )
    t.notOk(order.includes('listener dev-2'), "a takeover the broker declines does not reach Aedes' listener")
  },
)

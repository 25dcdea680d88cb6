import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { pino } from 'pino'
import t from 'tap'
import { Lease } from '../../../services/cluster/lease.ts'
import type { Teardown } from '../../helpers/hub.ts'
import { startProxy } from '../../helpers/proxy.ts'
import { redisMissing, startRedis } from '../../helpers/redis.ts'

const log = pino({ level: 'silent' })
const KEY = 'stagehub:lease:test'
const TTL = 1000
const INTERVAL = 200

function connect(t: Teardown, url: string): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 })
  redis.on('error', () => undefined)
  t.teardown(() => redis.disconnect())
  return redis
}

function lease(t: Teardown, redis: Redis, owner: string): Lease {
  const l = new Lease({ redis, key: KEY, owner, ttlMs: TTL, intervalMs: INTERVAL, log })
  t.teardown(() => l.stop({ release: false }))
  return l
}

async function until(what: string, check: () => boolean, withinMs: number): Promise<number> {
  const started = Date.now()
  while (!check()) {
    if (Date.now() - started > withinMs) throw new Error(`${what}: not within ${withinMs} ms`)
    await sleep(10)
  }
  return Date.now() - started
}

t.test(
  'of three contenders exactly one holds the lease, and keeps it while it renews',
  { skip: redisMissing },
  async (t) => {
    const { url } = await startRedis(t)
    const leases = ['a', 'b', 'c'].map((owner) => lease(t, connect(t, url), owner))
    await Promise.all(leases.map((l) => l.start()))
    const holders = () => leases.filter((l) => l.held)
    t.equal(holders().length, 1, 'one holder right after all tried')
    const first = holders()[0]!
    t.equal(first.term, 1, 'the first acquisition has term 1')
    // several ttls: renewals keep it with the same holder, and nobody else ever holds it meanwhile
    for (let i = 0; i < 30; i++) {
      await sleep(100)
      t.same(holders(), [first], 'the same single holder')
    }
    const stored = await connect(t, url).get(KEY)
    t.match(stored, /^[abc]\/1$/, 'Redis holds owner/term')
  },
)

t.test(
  'a holder that stops renewing without releasing is replaced within ttl + interval, with a higher term',
  { skip: redisMissing },
  async (t) => {
    const { url } = await startRedis(t)
    const a = lease(t, connect(t, url), 'a')
    await a.start()
    const b = lease(t, connect(t, url), 'b')
    await b.start()
    t.ok(a.held && !b.held)
    const changes: boolean[] = []
    b.onChange((held) => changes.push(held))
    // a crash: no release, the key expires by itself
    await a.stop({ release: false })
    t.notOk(a.held, 'a stopped holder does not act')
    const took = await until('b takes the lease', () => b.held, TTL + INTERVAL + 300)
    t.ok(took <= TTL + INTERVAL + 300, `taken over after ${took} ms (ttl ${TTL}, interval ${INTERVAL})`)
    t.equal(b.term, 2, 'the new holder has the next term')
    t.same(changes, [true], 'b heard that it holds the lease')
  },
)

t.test(
  'a released lease is taken by the next contender on its next try',
  { skip: redisMissing },
  async (t) => {
    const { url } = await startRedis(t)
    const a = lease(t, connect(t, url), 'a')
    await a.start()
    const b = lease(t, connect(t, url), 'b')
    await b.start()
    await a.stop()
    t.equal(await connect(t, url).get(KEY), null, 'released at once')
    const took = await until('b takes the released lease', () => b.held, INTERVAL + 300)
    t.ok(took < TTL, `taken after ${took} ms, without waiting for the ttl`)
  },
)

t.test(
  'a holder whose renewals cannot reach Redis stops acting by itself before another takes over',
  { skip: redisMissing },
  async (t) => {
    const redis = await startRedis(t)
    const proxy = await startProxy(t, () => ({ host: '127.0.0.1', port: redis.port }))
    const paused = lease(t, connect(t, proxy.url.replace('mqtt:', 'redis:')), 'paused')
    await paused.start()
    t.ok(paused.held)
    const lost = new Promise<number>((resolve) => paused.onChange((held) => !held && resolve(Date.now())))
    const other = lease(t, connect(t, redis.url), 'other')
    await other.start()
    let gainedAt = 0
    other.onChange((held) => (held ? (gainedAt = Date.now()) : undefined))
    // the holder's connection carries nothing more (a paused VM, a network partition): no reply, no error
    const silencedAt = Date.now()
    proxy.silence()
    const lostAt = await lost
    t.notOk(paused.held, 'held is false without any reply from Redis')
    t.ok(
      lostAt - silencedAt <= TTL + 50,
      `noticed ${lostAt - silencedAt} ms after its last renewal could go out`,
    )
    await until('the other owner takes over', () => other.held, TTL + INTERVAL + 300)
    t.ok(gainedAt >= lostAt, `the paused holder stopped ${gainedAt - lostAt} ms before the other took over`)
    t.notOk(paused.held, 'never two holders')
    t.ok(other.term > paused.term, 'the new holder fences the old one with a higher term')
  },
)

t.test('a lease refuses an interval longer than half its ttl', async (t) => {
  t.throws(
    () => new Lease({ redis: {} as Redis, key: KEY, owner: 'a', ttlMs: 1000, intervalMs: 600, log }),
    /at most half the ttl/,
  )
})

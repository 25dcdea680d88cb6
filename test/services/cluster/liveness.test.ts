import { setTimeout as sleep } from 'node:timers/promises'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import { leaseCoordination, singleProcess } from '../../../services/cluster/coordination.ts'
import { Lease } from '../../../services/cluster/lease.ts'
import { ClusterLink } from '../../../services/cluster/link.ts'
import { Liveness } from '../../../services/cluster/liveness.ts'
import { redisMissing, startRedis } from '../../helpers/redis.ts'

const log = pino({ level: 'silent' })
const TTL = 600
const INTERVAL = 150

async function link(t: Test, url: string, processId: string): Promise<ClusterLink> {
  const l = await ClusterLink.open({ redisUrl: url, processId }, log)
  t.teardown(() => l.close())
  return l
}

function liveness(t: Test, l: ClusterLink, onDeclaredDead?: () => void): Liveness {
  const live = new Liveness({ link: l, log, ttlMs: TTL, intervalMs: INTERVAL, onDeclaredDead })
  t.teardown(() => live.stop())
  return live
}

async function until(what: string, check: () => boolean | Promise<boolean>, withinMs: number): Promise<void> {
  const started = Date.now()
  while (!(await check())) {
    if (Date.now() - started > withinMs) throw new Error(`${what}: not within ${withinMs} ms`)
    await sleep(20)
  }
}

t.test(
  'a process that stops renewing is declared dead once its key expires, and stays so until healed; a renewing one never is',
  { skip: redisMissing },
  async (t) => {
    const { url } = await startRedis(t)
    const [la, lb, lc] = await Promise.all([link(t, url, 'a'), link(t, url, 'b'), link(t, url, 'c')])
    const [a, b, c] = [liveness(t, la), liveness(t, lb), liveness(t, lc)]
    await Promise.all([a.start(), b.start(), c.start()])
    t.same(await b.liveProcesses(), ['a', 'b', 'c'], 'three live processes')
    t.same(await b.declareDead(), [], 'nobody is dead while all renew')
    // a crash: a's renewals stop without a word (its connection is gone)
    const lastRenewal = Date.now()
    la.commands.disconnect()
    t.same(await b.declareDead(), [], 'not dead before its key expires')
    await until('a declared dead', async () => (await b.declareDead()).length > 0, TTL + 500)
    const [dead] = await b.declareDead()
    t.equal(dead!.id, 'a', 'a is dead')
    t.ok(Math.abs(dead!.lastRenewedAt - lastRenewal) < INTERVAL + 100, 'with the time of its last renewal')
    t.same(await c.liveProcesses(), ['b', 'c'], 'no longer live')
    t.same(
      (await c.declareDead()).map((d) => d.id),
      ['a'],
      'another coordinator sees it dead too until it is healed',
    )
    await b.healed('a')
    t.same(await c.declareDead(), [], 'healed: forgotten')
    await until('b sees two live processes', () => b.live.length === 2, 1000)
    t.same(b.live, ['b', 'c'], 'its cached view follows')
  },
)

t.test(
  'a process declared dead while alive hears it at its next renewal (its clients must start over) and is listed again',
  { skip: redisMissing },
  async (t) => {
    const { url } = await startRedis(t)
    const [la, lb] = await Promise.all([link(t, url, 'a'), link(t, url, 'b')])
    let declared = 0
    const a = liveness(t, la, () => declared++)
    const b = liveness(t, lb)
    await Promise.all([a.start(), b.start()])
    // its key expired (a long pause) and the coordinator looked before it renewed again
    await lb.commands.del(lb.key('process:a'))
    t.same(
      (await b.declareDead()).map((d) => d.id),
      ['a'],
      'declared dead',
    )
    await until('a hears it', () => declared > 0, INTERVAL * 3)
    t.equal(declared, 1, 'told once')
    t.same(await b.liveProcesses(), ['a', 'b'], 'listed again after its renewal')
  },
)

t.test(
  'a once-per-deployment task runs only on the holder of the coordinator lease, and on the next holder when it dies',
  { skip: redisMissing },
  async (t) => {
    const { url } = await startRedis(t)
    const runs: string[] = []
    const members = await Promise.all(
      ['a', 'b', 'c'].map(async (id) => {
        const l = await link(t, url, id)
        const lease = new Lease({
          redis: l.commands,
          key: l.key('lease:coordinator'),
          owner: id,
          ttlMs: TTL,
          intervalMs: INTERVAL,
          log,
        })
        const coordination = leaseCoordination(lease, log)
        coordination.every('purge', 50, async () => void runs.push(id))
        t.teardown(() => coordination.stop())
        t.teardown(() => lease.stop({ release: false }))
        return { id, lease, coordination }
      }),
    )
    for (const m of members) await m.lease.start()
    await sleep(400)
    const holder = members.find((m) => m.coordination.isCoordinator())!
    t.same(new Set(runs), new Set([holder.id]), `only ${holder.id} ran the task (${runs.length} runs)`)
    t.equal(members.filter((m) => m.coordination.isCoordinator()).length, 1, 'one coordinator')
    // the holder dies: no release, its timers stop
    holder.coordination.stop()
    await holder.lease.stop({ release: false })
    runs.length = 0
    await until('another process runs it', () => runs.length > 0, TTL + INTERVAL + 300)
    const next = members.find((m) => m.coordination.isCoordinator())!
    t.not(next.id, holder.id, `${next.id} took over`)
    await sleep(200)
    t.same(new Set(runs), new Set([next.id]), 'only the new coordinator runs it')
  },
)

t.test('one process alone is always the coordinator and runs its tasks', async (t) => {
  const alone = singleProcess(log)
  t.teardown(() => alone.stop())
  let runs = 0
  alone.every('purge', 20, async () => void runs++)
  await until('the task ran', () => runs >= 2, 1000)
  t.ok(alone.isCoordinator(), 'coordinator')
  alone.stop()
  t.notOk(alone.isCoordinator(), 'a stopped coordination does nothing more')
  const after = runs
  await sleep(100)
  t.equal(runs, after, 'no run after stop')
})

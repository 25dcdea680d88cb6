import t from 'tap'
import type { Readable } from 'node:stream'
import { pino } from 'pino'
import {
  type RetainedArchive,
  type RetainedRecord,
  DurableRetainedPersistence,
} from '../../broker/persistence.ts'
import { RetainedIndex } from '../../broker/retained-index.ts'
import { recordMessages, sleep, startTestHub } from '../helpers/hub.ts'

/** MQTT 3.1.1 §4.7 matching, written the obvious way: the reference the index must agree with. */
function mqttMatches(filter: string, topic: string): boolean {
  const f = filter.split('/')
  const l = topic.split('/')
  if (topic.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true // `a/#` also matches `a` (i === l.length)
    if (i >= l.length) return false
    if (f[i] !== '+' && f[i] !== l[i]) return false
  }
  return f.length === l.length
}

function indexOf(topics: readonly string[]): RetainedIndex<string> {
  const index = new RetainedIndex<string>()
  for (const topic of topics) index.set(topic, topic)
  return index
}

const sorted = (values: readonly string[]) => [...values].sort()

const TOPICS = [
  'a',
  'a/b',
  'a/b/c',
  'a/c',
  'a//b',
  'a/',
  '/a',
  '/',
  'b/a',
  '$SYS/broker/uptime',
  '$SYS',
  '$other/a',
  'x/$y',
  'hub/status',
  'stages/s1',
  'stages/s1/members/u1',
  'stages/s1/members/u2',
  'stages/s2/members/u1',
  'users/u1/devices/d1',
]

t.test('match follows MQTT topic matching', async (t) => {
  const index = indexOf(TOPICS)
  const cases: [string, string[]][] = [
    ['a', ['a']],
    ['a/b', ['a/b']],
    ['a/+', ['a/b', 'a/c', 'a/']],
    ['a/+/c', ['a/b/c']],
    ['a/#', ['a', 'a/b', 'a/b/c', 'a/c', 'a//b', 'a/']],
    ['a/b/#', ['a/b', 'a/b/c']],
    ['a/b/c/#', ['a/b/c']],
    ['a/+/#', ['a/b', 'a/b/c', 'a/c', 'a//b', 'a/']],
    ['+', ['a']],
    ['+/+', ['a/b', 'a/c', 'a/', '/a', '/', 'b/a', 'hub/status', 'stages/s1', 'x/$y']],
    ['+/a', ['/a', 'b/a']],
    ['a//b', ['a//b']],
    ['a/+/b', ['a//b']],
    ['/#', ['/a', '/']],
    ['/+', ['/a', '/']],
    ['+/', ['a/', '/']],
    ['#', TOPICS.filter((topic) => !topic.startsWith('$'))],
    ['$SYS/#', ['$SYS', '$SYS/broker/uptime']],
    ['$SYS/+/uptime', ['$SYS/broker/uptime']],
    ['$SYS', ['$SYS']],
    ['+/broker/uptime', []],
    ['+/$y', ['x/$y']],
    ['x/+', ['x/$y']],
    ['stages/+/members/u1', ['stages/s1/members/u1', 'stages/s2/members/u1']],
    ['stages/s1/#', ['stages/s1', 'stages/s1/members/u1', 'stages/s1/members/u2']],
    ['stages/s3/#', []],
    ['users/u1/devices/+', ['users/u1/devices/d1']],
    ['users/u2/devices/+', []],
    ['nothing/here', []],
    ['a/b/c/d', []],
    ['a/b/c/+', []],
  ]
  for (const [filter, expected] of cases) {
    t.same(sorted(index.match(filter)), sorted(expected), filter)
    t.same(
      sorted(index.match(filter)),
      sorted(TOPICS.filter((topic) => mqttMatches(filter, topic))),
      `${filter} agrees with the reference`,
    )
  }
})

t.test('a parent comes before its children, siblings in insertion order', async (t) => {
  const index = indexOf(['a/b', 'a', 'a/c', 'a/b/d'])
  t.same(index.match('a/#'), ['a', 'a/b', 'a/b/d', 'a/c'])
  t.same(index.values(), ['a', 'a/b', 'a/b/d', 'a/c'])
})

t.test('set overwrites, delete forgets and prunes', async (t) => {
  const index = new RetainedIndex<string>()
  index.set('a/b', 'one')
  index.set('a/b', 'two')
  t.equal(index.size, 1, 'an overwrite is not a new topic')
  t.equal(index.get('a/b'), 'two')
  t.same(index.match('a/+'), ['two'])

  index.set('a', 'parent')
  index.set('a/b/c', 'child')
  t.equal(index.size, 3)
  t.equal(index.get('a/b/x'), undefined)
  t.equal(index.get('a/b/c/d'), undefined)

  t.ok(index.delete('a/b'), 'deleting a topic with children')
  t.equal(index.get('a/b'), undefined)
  t.equal(index.get('a/b/c'), 'child', 'its children stay')
  t.same(sorted(index.match('a/#')), ['child', 'parent'])
  t.same(index.match('a/+'), [], 'a/b holds nothing any more')

  t.notOk(index.delete('a/b'), 'deleting twice')
  t.notOk(index.delete('a/b/c/d'), 'deleting below a leaf')
  t.notOk(index.delete('nothing'), 'deleting an unknown topic')

  t.ok(index.delete('a'), 'deleting a parent')
  t.equal(index.get('a/b/c'), 'child')
  t.ok(index.delete('a/b/c'))
  t.equal(index.size, 0)
  t.same(index.match('#'), [])
  t.same(index.values(), [])

  index.set('a/b/c', 'again')
  t.same(index.match('a/+/c'), ['again'], 'a pruned branch can grow again')
  t.equal(index.size, 1)
})

t.test('agrees with the reference on random topics and filters', async (t) => {
  let seed = 42
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31
    return seed / 2 ** 31
  }
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!
  const levels = ['a', 'b', 'c', '', '$s']
  const topics = new Set<string>()
  for (let i = 0; i < 400; i++) {
    const n = 1 + Math.floor(random() * 4)
    topics.add(Array.from({ length: n }, () => pick(levels)).join('/'))
  }
  const index = indexOf([...topics])
  const removed = [...topics].filter(() => random() < 0.3)
  for (const topic of removed) {
    index.delete(topic)
    topics.delete(topic)
  }
  t.equal(index.size, topics.size)
  let mismatches = 0
  for (let i = 0; i < 2000; i++) {
    const n = 1 + Math.floor(random() * 4)
    const parts = Array.from({ length: n }, () => pick([...levels, '+', '+']))
    if (random() < 0.3) parts[n - 1] = '#'
    const filter = parts.join('/')
    const expected = sorted([...topics].filter((topic) => mqttMatches(filter, topic)))
    const actual = sorted(index.match(filter))
    if (JSON.stringify(actual) !== JSON.stringify(expected)) {
      mismatches++
      if (mismatches < 5) t.same(actual, expected, filter)
    }
  }
  t.equal(mismatches, 0, '2000 random filters match like the reference')
})

t.test('finding nothing among 100k retained topics does not scan them', async (t) => {
  const index = new RetainedIndex<string>()
  for (let i = 0; i < 100_000; i++) index.set(`users/u${i}/stages/s${i % 100}`, String(i))
  const started = performance.now()
  for (let i = 0; i < 1000; i++) index.match(`users/u${i}/devices/+`)
  const perMatch = (performance.now() - started) / 1000
  // a scan of 100k topics takes milliseconds; a lookup microseconds (generous bound for slow machines)
  t.ok(perMatch < 0.5, `a non-matching filter took ${perMatch.toFixed(4)} ms`)
  t.same(index.match('users/u7/stages/+'), ['7'])
})

// ── the persistence that uses it ───────────────────────────────────────────────────────────────

class MemoryArchive implements RetainedArchive {
  readonly records = new Map<string, RetainedRecord>()
  saves = 0
  constructor(initial: RetainedRecord[] = []) {
    for (const r of initial) this.records.set(r.topic, r)
  }
  async *load() {
    yield* this.records.values()
  }
  async save(changes: ReadonlyMap<string, RetainedRecord | null>) {
    this.saves++
    for (const [topic, record] of changes) {
      if (record) this.records.set(topic, record)
      else this.records.delete(topic)
    }
  }
}

const packet = (topic: string, payload: string, qos: 0 | 1 = 1) => ({
  topic,
  payload: Buffer.from(payload),
  qos,
  retain: true,
})

async function read(stream: Readable): Promise<{ topic: string; payload: string; cmd: string }[]> {
  const out: { topic: string; payload: string; cmd: string }[] = []
  for await (const p of stream) {
    const { topic, payload, cmd } = p as { topic: string; payload: Buffer; cmd: string }
    out.push({ topic, payload: payload.toString(), cmd })
  }
  return out
}

t.test('DurableRetainedPersistence keeps retained messages in the index and the archive', async (t) => {
  const archive = new MemoryArchive([
    { topic: 'devices/d1/presence', payload: Buffer.from('online'), qos: 1 },
  ])
  const persistence = new DurableRetainedPersistence(archive, pino({ level: 'silent' }), {
    maxMessages: 1000,
    maxBytes: 4 * 1024 * 1024,
  })
  await persistence.setup({ id: 'broker' } as never)
  t.same(await read(persistence.createRetainedStream('devices/+/presence')), [
    { topic: 'devices/d1/presence', payload: 'online', cmd: 'publish' },
  ])

  await persistence.storeRetained(packet('stages/s1', 'v1'))
  await persistence.storeRetained(packet('stages/s1/members/u1', 'm1'))
  await persistence.storeRetained(packet('stages/s1', 'v2'))
  await persistence.storeRetained(packet('stages/s2', 'other'))
  t.same(await read(persistence.createRetainedStream('stages/s1/#')), [
    { topic: 'stages/s1', payload: 'v2', cmd: 'publish' },
    { topic: 'stages/s1/members/u1', payload: 'm1', cmd: 'publish' },
  ])
  t.same(
    (await read(persistence.createRetainedStreamCombi(['stages/s2', 'stages/+/members/+']))).map(
      (p) => p.topic,
    ),
    ['stages/s2', 'stages/s1/members/u1'],
    'combined filters yield each filter’s matches in turn',
  )

  await persistence.storeRetained(packet('stages/s1/members/u1', ''))
  t.same(await read(persistence.createRetainedStream('stages/s1/members/+')), [], 'an empty payload deletes')
  await persistence.storeRetained(packet('never/there', ''))
  t.same(
    sorted(persistence.retainedTopics()),
    ['devices/d1/presence', 'stages/s1', 'stages/s2'],
    'retainedTopics lists what is held',
  )

  await persistence.flush()
  t.same(sorted([...archive.records.keys()]), ['devices/d1/presence', 'stages/s1', 'stages/s2'])
  t.equal(archive.records.get('stages/s1')?.payload.toString(), 'v2', 'the archive has the newest payload')
  const saves = archive.saves
  await persistence.storeRetained(packet('stages/s1', 'v2'))
  await persistence.flush()
  t.equal(archive.saves, saves, 'an unchanged payload is not archived again')
})

t.test('a large archive write is split into transactions of at most 1000 topics', async (t) => {
  const archive = new MemoryArchive()
  const persistence = new DurableRetainedPersistence(archive, pino({ level: 'silent' }), {
    maxMessages: 1000,
    maxBytes: 4 * 1024 * 1024,
  })
  await persistence.setup({ id: 'broker' } as never)
  for (let i = 0; i < 2500; i++) await persistence.storeRetained(packet(`users/u${i}`, `profile ${i}`))
  await persistence.storeRetained(packet('users/u7', ''))
  await persistence.flush()
  t.equal(archive.saves, 3, 'three transactions')
  t.equal(archive.records.size, 2499, 'every topic archived, the deleted one not')
  t.equal(archive.records.get('users/u2499')?.payload.toString(), 'profile 2499')
})

// ── end to end ─────────────────────────────────────────────────────────────────────────────────

t.test('a subscription on a real hub gets exactly the retained messages its filter matches', async (t) => {
  const th = await startTestHub(t)
  const retained: Record<string, string> = {
    'stages/s1': 'stage 1',
    'stages/s1/groups/g1': 'group',
    'stages/s1/members/u1': 'member 1',
    'stages/s1/members/u2': 'member 2',
    'stages/s2/members/u1': 'other stage',
    'users/u1': 'profile',
    'users/u1/devices/d1': 'device',
    '$stagehub/bench': 'dollar topic',
  }
  for (const [topic, payload] of Object.entries(retained))
    await th.hub.broker.publish(topic, payload, { qos: 1, retain: true })
  // an overwrite and a deletion
  await th.hub.broker.publish('stages/s1/members/u2', 'member 2 moved', { qos: 1, retain: true })
  await th.hub.broker.publish('stages/s1/groups/g1', '', { qos: 1, retain: true })

  const ops = await th.connect({ clientId: 'ops-index', token: th.token({ sub: 'ops', role: 'admin' }) })
  const sees = async (filters: string[]) => {
    const recording = recordMessages(ops)
    await ops.subscribeAsync(filters, { qos: 1 })
    await sleep(250)
    recording.stop()
    await ops.unsubscribeAsync(filters)
    return recording.messages
      .map((m) => `${m.topic}=${m.payload.toString()}${m.retain ? '' : ' (not retained)'}`)
      .sort()
  }
  t.same(await sees(['stages/s1/#']), [
    'stages/s1/members/u1=member 1',
    'stages/s1/members/u2=member 2 moved',
    'stages/s1=stage 1',
  ])
  t.same(await sees(['stages/+/members/u1']), [
    'stages/s1/members/u1=member 1',
    'stages/s2/members/u1=other stage',
  ])
  t.same(await sees(['users/u1/devices/+', 'nothing/+']), ['users/u1/devices/d1=device'])
  t.same(await sees(['users/u2/#']), [])
  const everything = await sees(['#'])
  t.notOk(
    everything.some((m) => m.startsWith('$')),
    '# does not match $ topics',
  )
  t.ok(everything.includes('stages/s2/members/u1=other stage'))
  t.ok(
    everything.some((m) => m.startsWith('hub/status=')),
    'the hub’s own state is there too',
  )
  t.same(await sees(['$stagehub/+']), ['$stagehub/bench=dollar topic'])

  // a user's ACL still applies to what the index finds
  const user = await th.hub.users.createUser({ name: 'Ann' })
  await th.hub.broker.publish(`users/${user.id}/mix/member/m1`, 'mix', { qos: 1, retain: true })
  const ann = await th.connect({ clientId: 'ann-index', token: th.token({ sub: user.id }) })
  const recording = recordMessages(ann)
  await ann.subscribeAsync(`users/${user.id}/#`, { qos: 1 })
  await sleep(250)
  recording.stop()
  t.same(
    recording.messages.map((m) => m.topic).sort(),
    [`users/${user.id}`, `users/${user.id}/mix/member/m1`].sort(),
  )
})

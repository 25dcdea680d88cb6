import t from 'tap'
import type { AuditEntry } from '../../../schemas/actions/audit.ts'
import { collections } from '../../../services/collections.ts'
import type { StoredDoc } from '../../../services/store/port.ts'
import { type Actor, actor, connectAs, ok, refused, roomy } from '../../helpers/actors.ts'
import {
  Requester,
  type TestHub,
  connackCode,
  connectionClosed,
  sleep,
  startTestHub,
  subackCodes,
  waitUntil,
} from '../../helpers/hub.ts'

interface Page {
  entries: AuditEntry[]
  cursor?: string
}

/** An operator's connection (admin-role token). */
async function operator(th: TestHub): Promise<Actor> {
  const client = await th.connect({ clientId: 'ops-console', token: th.token({ sub: 'ops', role: 'admin' }) })
  return { id: 'ops', name: 'ops', client, req: new Requester(client) }
}

/** What an entry says, without its id and time. */
const gist = (e: AuditEntry) => ({
  identity: e.identity,
  action: e.action,
  outcome: e.outcome,
  targets: e.targets,
})

t.test('the audit trail of a scenario, as an operator queries it', async (t) => {
  const th = await startTestHub(t, roomy)
  const ann = await actor(th, 'Ann')
  const bob = await actor(th, 'Bob')
  const stagePassword = 'open sesame, but secretly'
  const stage = await ok<{ id: string }>(ann, 'stage.create', { name: 'Audit', password: stagePassword })
  const group = await ok<{ id: string }>(ann, 'group.create', {
    stageId: stage.id,
    name: 'Band',
    color: '#112233',
  })
  const member = await ok<{ id: string }>(bob, 'stage.join', {
    stageId: stage.id,
    groupId: group.id,
    password: stagePassword,
  })
  const update = await refused(bob, 'stage.update', { stageId: stage.id, patch: { name: 'Mine now' } })
  t.equal(update.code, 'forbidden')
  // a read is recorded only when refused permission
  t.equal((await refused(bob, 'release.status', { version: '1.0.0' })).code, 'forbidden')
  t.equal((await refused(ann, 'stage.join', { stageId: 'nope', groupId: 'nope' })).code, 'not_found')
  t.same(await subackCodes(bob.client, `users/${ann.id}`), [128], 'subscription refused')
  const device = await ok<{ device: { id: string }; token: string }>(ann, 'device.create', {
    name: 'Box',
    kind: 'ovbox',
  })
  t.equal(
    await connackCode(th.mqttUrl, { clientId: 'intruder', username: 'token', password: 'not-a-jwt' }),
    4,
  )
  const ghost = th.token({ sub: 'ghost', role: 'device', owner: ann.id, ver: 1 })
  t.equal(await connackCode(th.mqttUrl, { clientId: 'ghost', username: 'token', password: ghost }), 5)
  const rogue = await connectAs(th, bob.id, 'Rogue')
  const closed = connectionClosed(rogue.client)
  rogue.client.publish('hub/status', 'taken over')
  await closed

  const ops = await operator(th)
  const all = await ok<Page>(ops, 'audit.query', {})
  t.notOk(all.cursor, 'one page holds everything')
  t.same(
    all.entries.map(gist),
    [
      { identity: bob.id, action: 'mqtt.publish', outcome: 'forbidden', targets: {} },
      { identity: 'ghost', action: 'mqtt.connect', outcome: 'forbidden', targets: {} },
      { identity: null, action: 'mqtt.connect', outcome: 'unauthorized', targets: {} },
      { identity: ann.id, action: 'device.create', outcome: 'ok', targets: { deviceId: device.device.id } },
      { identity: bob.id, action: 'mqtt.subscribe', outcome: 'forbidden', targets: {} },
      {
        identity: ann.id,
        action: 'stage.join',
        outcome: 'not_found',
        targets: { stageId: 'nope', groupId: 'nope' },
      },
      { identity: bob.id, action: 'release.status', outcome: 'forbidden', targets: { release: '1.0.0' } },
      { identity: bob.id, action: 'stage.update', outcome: 'forbidden', targets: { stageId: stage.id } },
      {
        identity: bob.id,
        action: 'stage.join',
        outcome: 'ok',
        targets: { stageId: stage.id, groupId: group.id, memberId: member.id },
      },
      {
        identity: ann.id,
        action: 'group.create',
        outcome: 'ok',
        targets: { stageId: stage.id, groupId: group.id },
      },
      { identity: ann.id, action: 'stage.create', outcome: 'ok', targets: { stageId: stage.id } },
    ],
    'newest first: state changes with every outcome, refusals of permission, nothing else',
  )
  const [publish, ghostConnect, badConnect, , subscribe] = all.entries
  t.match(publish, { role: 'user', clientId: rogue.client.options.clientId, topic: 'hub/status' })
  t.match(ghostConnect, { role: 'device', clientId: 'ghost', reason: /not registered/ })
  t.match(badConnect, { role: null, clientId: 'intruder', reason: /token refused/ })
  t.match(subscribe, { role: 'user', clientId: bob.client.options.clientId, topic: `users/${ann.id}` })
  const times = all.entries.map((e) => Date.parse(e.time))
  t.same(
    times,
    [...times].sort((a, b) => b - a),
    'times are newest first',
  )

  t.test('filters', async (t) => {
    const ids = (page: Page) => page.entries.map((e) => e.id)
    const byBob = await ok<Page>(ops, 'audit.query', { identity: bob.id })
    t.same(
      ids(byBob),
      all.entries.filter((e) => e.identity === bob.id).map((e) => e.id),
    )
    const forbiddenUpdates = await ok<Page>(ops, 'audit.query', {
      action: 'stage.update',
      outcome: 'forbidden',
    })
    t.same(forbiddenUpdates.entries.map(gist), [gist(all.entries[7]!)])
    const aboutStage = await ok<Page>(ops, 'audit.query', { targetId: stage.id })
    t.same(
      aboutStage.entries.map((e) => e.action),
      ['stage.update', 'stage.join', 'group.create', 'stage.create'],
    )
    const devices = await ok<Page>(ops, 'audit.query', { role: 'device' })
    t.same(ids(devices), [ghostConnect!.id])
    const since = all.entries[3]!.time
    const recent = await ok<Page>(ops, 'audit.query', { from: since })
    t.ok(recent.entries.length >= 4, 'from is inclusive')
    t.ok(
      recent.entries.every((e) => e.time >= since),
      'nothing before from',
    )
    const older = await ok<Page>(ops, 'audit.query', { to: since })
    t.ok(
      older.entries.every((e) => e.time < since),
      'nothing at or after to',
    )
    t.equal(recent.entries.length + older.entries.length, all.entries.length, 'from and to split the trail')
  })

  t.test('paging with a cursor returns every entry once, newest first', async (t) => {
    const seen: string[] = []
    let cursor: string | undefined
    let pages = 0
    do {
      const page: Page = await ok<Page>(ops, 'audit.query', { limit: 3, ...(cursor ? { cursor } : {}) })
      t.ok(page.entries.length <= 3)
      seen.push(...page.entries.map((e) => e.id))
      cursor = page.cursor
      pages++
    } while (cursor)
    t.equal(pages, 4)
    t.same(
      seen,
      all.entries.map((e) => e.id),
    )
  })

  t.test("a user's audit.query is forbidden, and recorded", async (t) => {
    const answer = await refused(bob, 'audit.query', {})
    t.equal(answer.code, 'forbidden')
    const recorded = await ok<Page>(ops, 'audit.query', { action: 'audit.query' })
    t.same(recorded.entries.map(gist), [
      { identity: bob.id, action: 'audit.query', outcome: 'forbidden', targets: {} },
    ])
    t.equal(recorded.entries[0]!.role, 'user')
  })

  t.test('no secret reaches the audit store', async (t) => {
    const stored = await th.hub.store.find(collections.audit.name)
    t.ok(stored.length >= all.entries.length)
    const text = JSON.stringify(stored)
    const stageDoc = await th.hub.store.get<StoredDoc & { passwordHash?: string }>(
      collections.stages.name,
      stage.id,
    )
    t.ok(stageDoc?.passwordHash, 'the stage has a password hash')
    for (const [what, secret] of [
      ['the stage password', stagePassword],
      ['its hash', stageDoc!.passwordHash!],
      ['the device token', device.token],
      ['the refused device token', ghost],
    ] as const) {
      t.notOk(text.includes(secret), `not ${what}`)
    }
    t.notOk(text.includes('scrypt$'), 'no password hash at all')
    t.notOk(/eyJ[A-Za-z0-9_-]{10,}/.test(text), 'no JWT at all')
  })
})

t.test('entries older than AUDIT_RETENTION_DAYS are pruned', async (t) => {
  // 0.00005 days = 4.3 s, pruned every tenth of it
  const th = await startTestHub(t, { ...roomy, AUDIT_RETENTION_DAYS: '0.00005' })
  const ann = await actor(th, 'Ann')
  const first = await ok<{ id: string }>(ann, 'stage.create', { name: 'Old' })
  await sleep(2500)
  const second = await ok<{ id: string }>(ann, 'stage.create', { name: 'New' })
  const ops = await operator(th)
  const targets = async () =>
    (await ok<Page>(ops, 'audit.query', { action: 'stage.create' })).entries.map((e) => e.targets.stageId)
  t.same(await targets(), [second.id, first.id], 'both recorded')
  await waitUntil(async () => (await targets()).length === 1, 'the older entry is pruned', 8000)
  t.same(await targets(), [second.id], 'the newer one is kept')
})

t.test('AUDIT_RETENTION_DAYS=0 turns the audit trail off', async (t) => {
  const th = await startTestHub(t, { AUDIT_RETENTION_DAYS: '0' })
  const ann = await actor(th, 'Ann')
  await ok(ann, 'stage.create', { name: 'Unrecorded' })
  t.equal((await refused(ann, 'audit.query', {})).code, 'forbidden')
  const ops = await operator(th)
  t.equal((await refused(ops, 'audit.query', {})).code, 'unavailable')
  await th.restart() // a clean stop writes whatever an audit trail would have pending
  t.same(await th.hub.store.find(collections.audit.name), [], 'nothing recorded')
})

t.test('a retried request is recorded once, a retry of a refusal too', async (t) => {
  const th = await startTestHub(t, roomy)
  const ann = await actor(th, 'Ann')
  const bob = await actor(th, 'Bob')
  const create = JSON.stringify({ id: 'same', params: { name: 'Once' } })
  const first = await ann.req.send('stage.create', create, 'same')
  t.same(await ann.req.send('stage.create', create, 'same'), first, 'the retry gets the original answer')
  const remove = JSON.stringify({ id: 'again', params: { stageId: (first.result as { id: string }).id } })
  t.equal((await bob.req.send('stage.remove', remove, 'again')).error?.code, 'forbidden')
  t.equal((await bob.req.send('stage.remove', remove, 'again')).error?.code, 'forbidden')
  const ops = await operator(th)
  const page = await ok<Page>(ops, 'audit.query', {})
  t.same(
    page.entries.map((e) => [e.action, e.outcome]),
    [
      ['stage.remove', 'forbidden'],
      ['stage.create', 'ok'],
    ],
  )
})

t.test(
  'a flood of refusals is recorded as a burst plus summaries, with topics cut: it cannot fill the store',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const bob = await actor(th, 'Bob')
    const ann = await actor(th, 'Ann')
    const longFilter = `users/${ann.id}/${'x'.repeat(10_000)}`
    const refusals = 200
    for (let i = 0; i < refusals; i++) {
      t.ok((await subackCodes(bob.client, longFilter)).every((code) => code === 128))
    }
    const badTokens = 60
    for (let i = 0; i < badTokens; i++) {
      await connackCode(th.mqttUrl, { clientId: `guess-${i}`, username: 'token', password: 'not-a-jwt' })
    }
    // Ann's own refusal has its own budget: Bob's flood does not push it out
    t.same(await subackCodes(ann.client, 'users/someone-else'), [128])

    const ops = await operator(th)
    const page = await ok<Page>(ops, 'audit.query', { limit: 500 })
    const subscribes = page.entries.filter((e) => e.identity === bob.id && e.action === 'mqtt.subscribe')
    const counted = (entries: AuditEntry[]) => entries.reduce((n, e) => n + (e.suppressed ?? 1), 0)
    t.equal(counted(subscribes), refusals, 'every refusal is counted')
    t.ok(subscribes.length <= 25, `Bob's 200 refusals took ${subscribes.length} entries`)
    t.ok(
      subscribes.every((e) => (e.topic?.length ?? 0) <= 256 && (e.reason?.length ?? 0) <= 256),
      'topics and reasons are cut to 256 characters',
    )
    const connects = page.entries.filter((e) => e.action === 'mqtt.connect' && e.identity === null)
    t.equal(counted(connects), badTokens, 'every refused CONNECT is counted')
    t.ok(connects.length <= 25, `60 refused CONNECTs took ${connects.length} entries`)
    t.ok(
      page.entries.some((e) => e.identity === ann.id && e.action === 'mqtt.subscribe' && !e.suppressed),
      "Ann's refusal is recorded on its own",
    )
  },
)

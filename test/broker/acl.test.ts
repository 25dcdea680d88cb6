import t from 'tap'
import { Acl, type AccessState } from '../../broker/acl.ts'
import { topics } from '../../schemas/topics.ts'
import type { Identity, Role } from '../../broker/tokens.ts'
import type { DeviceRegistration, MemberDoc, StageDoc } from '../../services/collections.ts'
import {
  Requester,
  connectionClosed,
  nextMessage,
  recordMessages,
  recordResponses,
  sleep,
  startTestHub,
  subackCodes,
  waitForMessage,
} from '../helpers/hub.ts'

// docs/protocol/topics.md: who may subscribe and publish where. (a) the Acl alone, on plain data; (b) through a real hub.

/** A fake AccessState: plain, mutable data. */
class FakeAccess implements AccessState {
  stages = new Map<string, { admins: string[]; members: string[] }>([
    ['s1', { admins: ['a1'], members: ['m1'] }],
    ['s2', { admins: ['a2'], members: ['m2'] }],
  ])
  devices = new Map<string, string>([
    ['d1', 'u1'],
    ['d2', 'u2'],
  ])
  canSeeStage(stageId: string, userId: string): boolean {
    const stage = this.stages.get(stageId)
    return stage !== undefined && (stage.admins.includes(userId) || stage.members.includes(userId))
  }
  deviceOwner(deviceId: string): string | undefined {
    return this.devices.get(deviceId)
  }
}

const exp = Math.floor(Date.now() / 1000) + 3600
const who = (role: Role, id: string, extra: Partial<Identity> = {}): Identity => ({
  role,
  id,
  clientId: id,
  exp,
  ...extra,
})
const user = (id: string, clientId = id) => who('user', id, { clientId })
const device = (id: string, owner: string) => who('device', id, { owner, ver: 1 })
const router = (id: string) => who('router', id, { ver: 1 })
const admin = (id: string) => who('admin', id)

/** The assertions the table helpers need, from any tap test object. */
type Asserts = Pick<typeof t, 'equal' | 'same'>

const describe = (w: Identity) => `${w.role} ${w.id}${w.clientId !== w.id ? ` (client ${w.clientId})` : ''}`

t.test('Acl unit', async (t) => {
  const state = new FakeAccess()
  const acl = new Acl(state)

  /** Asserts canSubscribe for each identity: `allowed` may, `denied` may not. */
  const sub = (t: Asserts, filter: string, allowed: Identity[], denied: Identity[]) => {
    for (const w of allowed)
      t.equal(acl.canSubscribe(w, filter), true, `${describe(w)} may subscribe to ${filter}`)
    for (const w of denied)
      t.equal(acl.canSubscribe(w, filter), false, `${describe(w)} may not subscribe to ${filter}`)
  }
  /** Asserts canPublish: `allowed` may (with the given retain decision), `denied` may not. */
  const pub = (t: Asserts, topic: string, allowed: Identity[], denied: Identity[], retain = false) => {
    for (const w of allowed)
      t.same(
        acl.canPublish(w, topic),
        { allowed: true, retain },
        `${describe(w)} may publish to ${topic}, retain ${retain}`,
      )
    for (const w of denied)
      t.same(
        acl.canPublish(w, topic),
        { allowed: false, retain: false },
        `${describe(w)} may not publish to ${topic}`,
      )
  }

  t.test('subscribe: hub/status is for everyone', async (t) => {
    sub(t, 'hub/status', [user('u1'), device('d1', 'u1'), router('r1'), admin('op')], [])
  })

  t.test('subscribe: users/{u}/... only for user u', async (t) => {
    for (const topic of [
      'users/u1',
      'users/u1/devices/d1',
      'users/u1/stages/s1',
      'users/u1/mix/group/g1',
      'users/u1/mix/track/t9',
    ]) {
      // a device or router whose id happens to be u1 is not user u1
      sub(
        t,
        topic,
        [user('u1'), user('u1', 'tab-7'), admin('op')],
        [user('u2'), device('u1', 'u1'), router('u1')],
      )
    }
  })

  t.test('subscribe: stages/{s}/... only for admins and members of s', async (t) => {
    for (const topic of [
      'stages/s1',
      'stages/s1/groups/g1',
      'stages/s1/members/m1',
      'stages/s1/tracks/t1',
      'stages/s1/chat',
    ]) {
      sub(
        t,
        topic,
        [user('a1'), user('m1'), admin('op')],
        [user('m2'), user('a2'), user('outsider'), device('m1', 'm1'), router('r1')],
      )
    }
  })

  t.test('subscribe: devices/{d}/config for device d and its owner', async (t) => {
    sub(
      t,
      'devices/d1/config',
      [device('d1', 'u1'), user('u1'), admin('op')],
      [device('d2', 'u2'), user('u2'), router('d1'), user('d1')],
    )
    sub(t, 'devices/unregistered/config', [device('unregistered', 'u1')], [user('u1')])
  })

  t.test('subscribe: routers/{r} for admins only; routers/{r}/assignments/{s} for router r', async (t) => {
    sub(t, 'routers/r1', [admin('op')], [router('r1'), user('u1'), user('a1')])
    sub(
      t,
      'routers/r1/assignments/s1',
      [router('r1'), admin('op')],
      [router('r2'), user('a1'), user('r1'), device('r1', 'u1')],
    )
  })

  t.test('subscribe: clients/{c}/res only for the connection with client id c', async (t) => {
    sub(
      t,
      'clients/c1/res',
      [user('u1', 'c1'), user('u9', 'c1'), admin('c1')],
      [user('u1', 'c2'), user('c1', 'c2')],
    )
    sub(t, 'clients/d1/res', [device('d1', 'u1')], [user('u1')])
    sub(t, 'clients/r1/res', [router('r1')], [router('r2')])
  })

  t.test('subscribe: topics outside the table are refused', async (t) => {
    const everyone = [user('u1'), user('a1'), device('d1', 'u1'), router('r1')]
    for (const topic of [
      'foo',
      'hub',
      'hub/other',
      'users',
      'users/u1/other',
      'stages/s1/unknown/x',
      'devices/d1/reported',
      'routers/r1/load',
      'clients/c1/req/user.update',
    ]) {
      sub(t, topic, [], everyone)
    }
    // a client id that matches the filter does not make the request topic subscribable
    sub(t, 'clients/u1/req/user.update', [], [user('u1')])
  })

  t.test('publish: devices/{d}/presence (retained) and reported only by device d', async (t) => {
    pub(
      t,
      'devices/d1/presence',
      [device('d1', 'u1')],
      [device('d2', 'u2'), user('u1'), user('d1'), router('d1'), admin('op')],
      true,
    )
    pub(t, 'devices/d1/reported', [device('d1', 'u1')], [device('d2', 'u2'), user('u1'), admin('op')], false)
  })

  t.test('publish: routers/{r}/presence (retained) and load only by router r', async (t) => {
    pub(
      t,
      'routers/r1/presence',
      [router('r1')],
      [router('r2'), user('r1'), device('r1', 'u1'), admin('op')],
      true,
    )
    pub(t, 'routers/r1/load', [router('r1')], [router('r2'), user('r1'), admin('op')], false)
  })

  t.test('publish: clients/{c}/req/{action} only to the own client id, never retained', async (t) => {
    pub(
      t,
      'clients/c1/req/user.update',
      [user('u1', 'c1'), device('c1', 'u1'), router('c1'), admin('c1')],
      [user('u1', 'c2'), user('c1', 'c2')],
    )
    pub(t, 'clients/c1/req/stage.join', [user('u1', 'c1')], [user('u1', 'other')])
    pub(t, 'clients/c1/req', [], [user('u1', 'c1')])
    pub(t, 'clients/c1/req/a/b', [], [user('u1', 'c1')])
  })

  t.test('publish: state topics and everything else are refused, admins included', async (t) => {
    const everyone = (extra: Identity[] = []) => [
      user('u1'),
      user('a1'),
      user('m1'),
      device('d1', 'u1'),
      router('r1'),
      admin('op'),
      ...extra,
    ]
    for (const topic of [
      'hub/status',
      'users/u1',
      'users/u1/devices/d1',
      'users/u1/stages/s1',
      'users/u1/mix/group/g1',
      'stages/s1',
      'stages/s1/groups/g1',
      'stages/s1/members/m1',
      'stages/s1/tracks/t1',
      'stages/s1/chat',
      'devices/d1/config',
      'routers/r1',
      'routers/r1/assignments/s1',
      'clients/c1/res',
      '$SYS/broker/heartbeat',
      'foo',
      'devices/d1/presence/extra',
    ]) {
      pub(t, topic, [], everyone([user('u1', 'c1')]))
    }
  })

  t.test('wildcards never widen access', async (t) => {
    const member = user('m1')
    for (const filter of [
      'stages/+',
      'stages/#',
      'stages/+/members/+',
      'users/#',
      'users/+',
      '#',
      '+',
      '+/status',
      '+/+',
      'users/+/devices/+',
      'devices/+/config',
      'routers/+/assignments/+',
      'clients/+/res',
    ]) {
      sub(t, filter, [admin('op')], [member, user('u1'), device('d1', 'u1'), router('r1')])
    }
    sub(t, 'users/u1/#', [user('u1')], [user('u2'), device('d1', 'u1')])
    sub(t, 'users/u1/devices/+', [user('u1')], [user('u2')])
    sub(t, 'users/u1/mix/+/+', [user('u1')], [user('u2')])
    sub(t, 'stages/s1/#', [user('m1'), user('a1')], [user('m2'), user('outsider')])
    sub(t, 'stages/s1/members/+', [user('m1'), user('a1')], [user('m2')])
    sub(t, 'stages/s1/+/+', [user('m1')], [user('m2')])
    sub(t, 'devices/d1/config', [user('u1')], [user('u2')])
    sub(t, 'routers/r1/assignments/+', [router('r1')], [router('r2')])
    sub(t, 'routers/r1/assignments/#', [router('r1')], [router('r2')])
    sub(t, 'clients/c1/res', [user('u1', 'c1')], [])
    sub(t, 'clients/c1/#', [], [user('u1', 'c1')]) // would reach clients/c1/req/+, which nobody may subscribe to
  })

  t.test('$SYS is for admins only', async (t) => {
    for (const filter of ['$SYS/#', '$SYS/+/heartbeat', '$SYS/broker/new/clients']) {
      sub(t, filter, [admin('op')], [user('u1'), user('a1'), device('d1', 'u1'), router('r1')])
    }
    pub(t, '$SYS/broker/new/clients', [], [admin('op'), user('u1')])
  })

  t.test('canReceive re-checks stored state for stage and device topics on every message', async (t) => {
    const local = new FakeAccess()
    const acl = new Acl(local)
    t.ok(acl.canReceive(user('m1'), 'stages/s1'), 'member receives stages/s1')
    t.ok(acl.canReceive(user('m1'), 'stages/s1/members/m1'))
    t.ok(acl.canReceive(user('a1'), 'stages/s1/chat'), 'admin receives chat')
    t.notOk(acl.canReceive(user('m2'), 'stages/s1/tracks/t1'), 'member of s2 does not receive s1')

    local.stages.get('s1')!.members = []
    t.notOk(acl.canReceive(user('m1'), 'stages/s1'), 'removed member no longer receives stages/s1')
    t.notOk(acl.canReceive(user('m1'), 'stages/s1/groups/g1'), '... nor its groups')
    t.notOk(acl.canReceive(user('m1'), 'stages/s1/chat'), '... nor its chat')
    t.ok(acl.canReceive(user('a1'), 'stages/s1'), 'the stage admin still does')
    local.stages.delete('s1')
    t.notOk(acl.canReceive(user('a1'), 'stages/s1'), 'nobody but operators receives a deleted stage')
    t.ok(acl.canReceive(admin('op'), 'stages/s1'), 'operators (admin role) receive everything')

    t.ok(acl.canReceive(user('u1'), 'devices/d1/config'), 'owner receives its device config')
    t.ok(acl.canReceive(device('d1', 'u1'), 'devices/d1/config'), 'the device receives its config')
    local.devices.set('d1', 'u2')
    t.notOk(acl.canReceive(user('u1'), 'devices/d1/config'), 'the former owner no longer does')
    t.ok(acl.canReceive(user('u2'), 'devices/d1/config'), 'the new owner does')

    t.ok(acl.canReceive(user('u1'), 'users/u1'), 'state-free topics are decided at subscribe time')
    t.ok(acl.canReceive(user('u1', 'c1'), 'clients/c1/res'))
  })

  t.test(
    'canReceive: a client id’s own topics reach that client alone, admins included; consumed messages reach nobody',
    async (t) => {
      t.ok(acl.canReceive(user('u1', 'c1'), 'clients/c1/res'), 'the client that asked receives its response')
      t.notOk(acl.canReceive(user('u1', 'c2'), 'clients/c1/res'), 'another client of the same user does not')
      t.notOk(acl.canReceive(admin('op'), 'clients/c1/res'), 'nor does an operator')
      t.notOk(acl.canReceive(admin('op'), 'clients/c1/req/user.update'), 'nor a request')
      t.ok(acl.canReceive(admin('op'), 'clients'), 'a topic that only begins alike is not a client’s')
      for (const w of [admin('op'), user('u1'), device('d1', 'u1'), router('r1')])
        t.notOk(acl.canReceive(w, topics.consumed.build()), `${describe(w)} receives no consumed message`)
    },
  )
})

t.test('through a real hub', async (t) => {
  const th = await startTestHub(t)
  await th.hub.store.transaction(async (tx) => {
    tx.insert<StageDoc>('stages', { id: 's1', name: 'S', admins: ['admin-user'] })
    tx.insert<MemberDoc>('members', { id: 's1/u2', stageId: 's1', userId: 'u2' })
    tx.insert<DeviceRegistration>('devices', { id: 'd1', owner: 'u1', tokenVersion: 1 })
  })
  const userClient = (id: string, clientId = id) => th.connect({ clientId, token: th.token({ sub: id }) })

  t.test("another user's users/x is refused with SUBACK 128; the connection stays open", async (t) => {
    const u1 = await userClient('u1')
    t.same(await subackCodes(u1, 'users/x'), [128])
    t.same(await subackCodes(u1, 'users/x/devices/d9'), [128])
    t.ok(u1.connected, 'still connected')
    t.same(await subackCodes(u1, 'users/u1'), [1], 'its own profile topic is granted')
    const status = await nextMessage(u1, 'hub/status')
    t.ok(status.retain, 'and it still receives retained state')
  })

  t.test('widening wildcards are refused per filter in one SUBACK; the connection stays open', async (t) => {
    const u1 = await userClient('u1', 'u1-wild')
    const filters = ['stages/+', 'users/#', '#', '+/status', 'users/+/devices/+', 'users/u1/#', 'stages/s1/#']
    t.same(await subackCodes(u1, filters), [128, 128, 128, 128, 128, 1, 128])
    t.ok(u1.connected, 'still connected')

    const u2 = await userClient('u2', 'u2-wild')
    t.same(
      await subackCodes(u2, ['stages/s1/#', 'stages/s1/members/+', 'stages/+/members/+']),
      [1, 1, 128],
      'a member may use wildcards inside its stage',
    )
  })

  t.test('a forbidden publish to a state topic closes that connection only (QoS 0 and 1)', async (t) => {
    // a group topic nothing backs: the stage's own topic carries the hub's projection of stage s1
    const topic = 'stages/s1/groups/g1'
    const good = await userClient('u2', 'good-pub')
    await subackCodes(good, topic)
    const received = recordMessages(good)

    for (const qos of [0, 1] as const) {
      const bad = await userClient('admin-user', `bad-pub-${qos}`)
      const closed = connectionClosed(bad)
      bad.publish(topic, JSON.stringify({ id: 'g1', stageId: 's1', name: 'hijacked' }), {
        qos,
        retain: true,
      })
      await closed
      t.notOk(bad.connected, `QoS ${qos}: the publishing connection was closed by the hub`)
    }

    await sleep(100)
    t.same(received.messages, [], 'the forbidden messages reached nobody')
    t.ok(good.connected, 'another client stays connected')
    const status = await nextMessage(good, 'hub/status')
    t.ok(status.retain, 'and keeps receiving')
    const late = await userClient('u2', 'late-sub')
    const lateMessages = recordMessages(late)
    await subackCodes(late, topic)
    await sleep(100)
    t.same(lateMessages.messages, [], 'nothing was retained on it either')
  })

  t.test(
    "publishing to another client's request topic (spoofing) closes the connection and does nothing",
    async (t) => {
      const victimUser = await th.hub.users.createUser({ name: 'Victim' })
      const victim = await th.connect({ clientId: 'victim-c', token: th.token({ sub: victimUser.id }) })
      const responses = await recordResponses(victim)
      const attacker = await userClient('mallory', 'attacker')

      const closed = connectionClosed(attacker)
      attacker.publish(
        'clients/victim-c/req/user.update',
        JSON.stringify({ id: 'spoof', params: { name: 'Hacked' } }),
        { qos: 1 },
      )
      await closed
      t.notOk(attacker.connected, 'the spoofing connection was closed by the hub')

      await sleep(200)
      t.same(responses.withId('spoof'), [], 'the victim got no response to a request it never sent')
      const stored = await th.hub.store.get<{ id: string; version: number; name: string }>(
        'users',
        victimUser.id,
      )
      t.equal(stored?.name, 'Victim', 'the spoofed request was not applied')

      const own = await new Requester(victim).request('user.update', { name: 'Still me' })
      t.equal(own.ok, true, "the victim's own requests still work")
    },
  )

  t.test(
    'a device may publish its presence retained, but its reported state is never retained',
    async (t) => {
      const d1 = await th.connect({
        clientId: 'd1',
        token: th.token({ sub: 'd1', role: 'device', owner: 'u1', ver: 1 }),
      })
      await d1.publishAsync('devices/d1/presence', JSON.stringify({ state: 'online', session: 1 }), {
        qos: 1,
        retain: true,
      })
      await d1.publishAsync('devices/d1/reported', JSON.stringify({ cpu: 0.5 }), { qos: 1, retain: true })
      t.ok(d1.connected, 'allowed publishes keep the device connected')

      const op = await th.connect({ clientId: 'op', token: th.token({ sub: 'op', role: 'admin' }) })
      const received = recordMessages(op)
      await subackCodes(op, 'devices/d1/#')
      await sleep(200)
      t.same(
        received.messages
          .filter((m) => m.retain && !m.topic.endsWith('/config')) // the hub's own config topic
          .map((m) => m.topic),
        ['devices/d1/presence'],
        'of what the device published, only the presence was retained',
      )
    },
  )

  t.test('stage access follows stored membership, including subscriptions already held', async (t) => {
    await th.hub.broker.publish('stages/s1', JSON.stringify({ id: 's1', name: 'S', rev: 1 }), {
      qos: 1,
      retain: true,
    })

    const member = await userClient('u2', 'member')
    const firstRetained = waitForMessage(member, 'stages/s1')
    t.same(await subackCodes(member, 'stages/s1/#'), [1], 'member u2 may subscribe to stages/s1/#')
    const retained = await firstRetained
    t.ok(retained.retain, 'and receives the retained stage document')
    t.same(JSON.parse(retained.payload.toString()), { id: 's1', name: 'S', rev: 1 })

    const stageAdmin = await userClient('admin-user', 'stage-admin')
    t.same(await subackCodes(stageAdmin, 'stages/s1'), [1], 'the stage admin may subscribe')
    await sleep(100) // let the admin's retained copy arrive before recording

    const outsider = await userClient('u3', 'outsider')
    t.same(await subackCodes(outsider, ['stages/s1', 'stages/s1/#']), [128, 128], 'a non-member is refused')

    // while a member: live publications arrive
    let next = waitForMessage(member, 'stages/s1')
    await th.hub.broker.publish('stages/s1', JSON.stringify({ id: 's1', name: 'S', rev: 2 }), {
      qos: 1,
      retain: true,
    })
    t.same(
      JSON.parse((await next).payload.toString()),
      { id: 's1', name: 'S', rev: 2 },
      'a member receives live updates',
    )

    await th.hub.store.transaction(async (tx) => {
      const doc = await tx.get<MemberDoc>('members', 's1/u2')
      tx.delete('members', doc!)
    })

    const memberAfter = recordMessages(member)
    next = waitForMessage(stageAdmin, 'stages/s1')
    await th.hub.broker.publish('stages/s1', JSON.stringify({ id: 's1', name: 'S', rev: 3 }), {
      qos: 1,
      retain: true,
    })
    await th.hub.broker.publish('stages/s1/chat', JSON.stringify({ text: 'after removal' }), { qos: 1 })
    t.same(
      JSON.parse((await next).payload.toString()),
      { id: 's1', name: 'S', rev: 3 },
      'the stage admin still receives',
    )
    await sleep(200)
    t.same(memberAfter.messages, [], 'the removed member receives nothing more, although still subscribed')
    t.ok(member.connected, 'the removed member stays connected')
    t.same(await subackCodes(member, 'stages/s1'), [128], 'and may not subscribe again')
  })
})

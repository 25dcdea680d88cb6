import t from 'tap'
import type {
  GroupState,
  MemberState,
  MixState,
  StageState,
  StageSummary,
} from '../../../schemas/actions/stage.ts'
import type { UserProfile } from '../../../schemas/state.ts'
import type { UserDoc } from '../../../services/collections.ts'
import type { GroupDoc, MemberDoc, MixDoc, StageDoc } from '../../../services/stages/model.ts'
import { GROUP_PALETTE } from '../../../services/stages/rules.ts'
import {
  type ReceivedMessage,
  type TestHub,
  recordMessages,
  sleep,
  startTestHub,
  subackCodes,
  waitForMessage,
  waitUntil,
} from '../../helpers/hub.ts'
import {
  roomy,
  type Actor,
  actor,
  connectAs,
  ok,
  refused,
  parse,
  retainedOn,
  operatorSees,
} from '../../helpers/actors.ts'

const createStage = (a: Actor, params: Record<string, unknown> = {}) =>
  ok<StageState>(a, 'stage.create', { name: 'Rehearsal', ...params })

const createGroup = (a: Actor, stageId: string, color: string, name = `Group ${color}`) =>
  ok<GroupState>(a, 'group.create', { stageId, name, color })

const join = (a: Actor, stageId: string, groupId: string, password?: string) =>
  ok<MemberState>(a, 'stage.join', { stageId, groupId, ...(password === undefined ? {} : { password }) })

const storedStage = (th: TestHub, id: string) => th.hub.store.get<StageDoc>('stages', id)
const storedUser = async (th: TestHub, id: string) => (await th.hub.store.get<UserDoc>('users', id))!

const origin = { x: 0, y: 0, z: 0, rX: 0, rY: 0, rZ: 0 }

t.test(
  'stage.create takes the room defaults of the original system, makes the caller admin and retains the stage and its summary',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    const bob = await actor(th, 'Bob')

    const stage = await createStage(alice, { name: 'Rehearsal' })
    t.match(
      stage,
      {
        name: 'Rehearsal',
        width: 13,
        length: 25,
        height: 7.5,
        absorption: 0.6,
        damping: 0.7,
        audioType: 'mediasoup',
        videoType: 'mediasoup',
        hasPassword: false,
        version: 1,
      },
      'the room takes the defaults: 13 × 25 × 7.5 m, absorption 0.6, damping 0.7',
    )
    t.same(stage.admins, [alice.id], 'the creator is the only admin')
    t.notOk('password' in stage || 'passwordHash' in stage, 'no password field in the stage')
    t.notOk('createdBy' in stage || 'createdAt' in stage, 'no bookkeeping in the stage')

    t.same(await retainedOn(alice.client, `stages/${stage.id}`), stage, 'stages/{s} is retained as returned')
    t.same(
      await retainedOn(alice.client, `users/${alice.id}/stages/${stage.id}`),
      {
        id: stage.id,
        name: 'Rehearsal',
        hasPassword: false,
        audioType: 'mediasoup',
        videoType: 'mediasoup',
        isAdmin: true,
        isMember: false,
        joined: false,
        groups: [],
      },
      'the creator gets a summary as admin, not (yet) member',
    )
    t.same(
      await subackCodes(bob.client, `stages/${stage.id}`),
      [128],
      'a user who is neither admin nor member may not subscribe to the stage',
    )

    const custom = await createStage(alice, { name: 'Big room', width: 40, audioType: 'ov', damping: 0.2 })
    t.match(
      custom,
      { width: 40, length: 25, height: 7.5, absorption: 0.6, damping: 0.2, audioType: 'ov' },
      'given room fields win over the defaults, the others keep them',
    )
    t.not(custom.id, stage.id, 'every stage gets its own id')
  },
)

t.test(
  'a stage password is stored hashed and never reaches any client, neither the admin nor a member',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const firstPassword = 'Open-Sesame-7781'
    const secondPassword = 'Second-Secret-4432'
    const alice = await actor(th, 'Alice')
    const bob = await actor(th, 'Bob')
    const seenByAlice = recordMessages(alice.client)
    const seenByBob = recordMessages(bob.client)
    await alice.client.subscribeAsync(`users/${alice.id}/#`, { qos: 1 })
    await bob.client.subscribeAsync(`users/${bob.id}/#`, { qos: 1 })

    const stage = await createStage(alice, { name: 'Secret', password: firstPassword })
    t.equal(stage.hasPassword, true, 'the stage says it needs a password')
    const stored = await storedStage(th, stage.id)
    t.match(stored?.passwordHash, /^scrypt\$/, 'the store holds a scrypt hash')
    t.notOk(stored?.passwordHash?.includes(firstPassword), 'not the password itself')

    await alice.client.subscribeAsync(`stages/${stage.id}/#`, { qos: 1 })
    const group = await createGroup(alice, stage.id, '#112233')
    await join(bob, stage.id, group.id, firstPassword)
    await bob.client.subscribeAsync(`stages/${stage.id}/#`, { qos: 1 })
    const updated = await ok<StageState>(alice, 'stage.update', {
      stageId: stage.id,
      patch: { name: 'Still secret', password: secondPassword },
    })
    t.equal(updated.hasPassword, true, 'a changed password still shows only hasPassword')
    const rehashed = await storedStage(th, stage.id)
    t.not(rehashed?.passwordHash, stored?.passwordHash, 'the new password got a new hash')
    await ok(bob, 'stage.leave')
    await join(bob, stage.id, group.id, secondPassword)
    await ok<StageState>(alice, 'stage.update', { stageId: stage.id, patch: { width: 20 } })

    await waitUntil(
      () =>
        seenByBob.messages.some(
          (m) => m.topic === `stages/${stage.id}` && (parse(m.payload) as StageState).width === 20,
        ),
      'the member saw the last update',
    )
    await sleep(100)
    seenByAlice.stop()
    seenByBob.stop()

    for (const [who, seen] of [
      ['the admin', seenByAlice.messages],
      ['the member', seenByBob.messages],
    ] as const) {
      const stageDocs = seen.filter((m) => m.topic === `stages/${stage.id}`)
      t.ok(stageDocs.length >= 2, `${who} received the stage document (${stageDocs.length} times)`)
      t.ok(
        stageDocs.every((m) => (parse(m.payload) as StageState).hasPassword),
        `${who} sees hasPassword true`,
      )
      t.ok(
        seen.some((m) => m.topic.startsWith('clients/')),
        `${who}'s recording includes its responses (${seen.length} messages)`,
      )
      const leaks = seen.filter((m) => {
        const text = m.payload.toString()
        return (
          text.includes(firstPassword) ||
          text.includes(secondPassword) ||
          text.includes('scrypt') ||
          text.includes('passwordHash')
        )
      })
      t.same(
        leaks.map((m) => m.topic),
        [],
        `no message ${who} received contains the password or its hash`,
      )
    }
    const summary = (await retainedOn(bob.client, `users/${bob.id}/stages/${stage.id}`, 1000)) as StageSummary
    t.equal(summary.hasPassword, true, "the member's summary says the stage has a password")
  },
)

t.test(
  'stage.update: admins patch whitelisted fields; non-admins, unknown fields and stale versions change nothing',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    const bob = await actor(th, 'Bob')
    const stage = await createStage(alice)
    const group = await createGroup(alice, stage.id, '#aa0000')
    await join(bob, stage.id, group.id)

    const updated = await ok<StageState>(alice, 'stage.update', {
      stageId: stage.id,
      version: 1,
      patch: {
        name: 'Concert',
        width: 20,
        reverbGain: 0.5,
        audioType: 'ov',
        ambientSound: { render: true, url: 'https://example.org/hall.wav', level: -20 },
        preferredPosition: { lat: 52.5, lng: 13.4 },
      },
    })
    t.match(
      updated,
      {
        id: stage.id,
        name: 'Concert',
        width: 20,
        length: 25,
        reverbGain: 0.5,
        audioType: 'ov',
        ambientSound: { render: true, url: 'https://example.org/hall.wav', level: -20 },
        preferredPosition: { lat: 52.5, lng: 13.4 },
        admins: [alice.id],
        version: 2,
      },
      'the patched fields change, the rest stays, the version goes up',
    )
    t.same(await retainedOn(bob.client, `stages/${stage.id}`), updated, 'members see the updated stage')
    t.match(
      await retainedOn(bob.client, `users/${bob.id}/stages/${stage.id}`),
      { name: 'Concert', audioType: 'ov', isAdmin: false, isMember: true },
      "the members' summaries follow",
    )
    t.match(
      await retainedOn(alice.client, `users/${alice.id}/stages/${stage.id}`),
      { name: 'Concert', audioType: 'ov', isAdmin: true },
      "so does the admin's",
    )

    const before = await storedStage(th, stage.id)
    const notAdmin = await refused(bob, 'stage.update', { stageId: stage.id, patch: { name: 'Mine now' } })
    t.equal(notAdmin.code, 'forbidden', 'a member who is not admin may not update the stage')
    for (const patch of [
      { admins: [bob.id] },
      { passwordHash: 'scrypt$1$x$y' },
      { createdBy: bob.id },
      { hasPassword: false },
      { version: 7 },
      { name: 'Fine', admins: [alice.id, bob.id] },
      {},
    ]) {
      const error = await refused(alice, 'stage.update', { stageId: stage.id, patch })
      t.equal(error.code, 'invalid_request', `patch ${JSON.stringify(patch)} is refused as invalid`)
    }
    t.equal(
      (await refused(alice, 'stage.update', { stageId: stage.id, patch: { name: 'x' }, admins: [bob.id] }))
        .code,
      'invalid_request',
      'so is an unknown top-level parameter',
    )
    const stale = await refused(alice, 'stage.update', {
      stageId: stage.id,
      version: 1,
      patch: { name: 'Stale' },
    })
    t.equal(stale.code, 'conflict', 'a stale version is a conflict')
    t.match(stale.message, /version 2/, 'which says the current version')
    t.equal(
      (await refused(alice, 'stage.update', { stageId: 'no-such-stage', patch: { name: 'x' } })).code,
      'not_found',
      'an unknown stage is not_found',
    )
    t.same(await storedStage(th, stage.id), before, 'none of the refused updates changed the stored stage')
    t.same(await retainedOn(alice.client, `stages/${stage.id}`), updated, 'nor the retained stage')
  },
)

t.test('a password change or removal decides the next join; admins join without one', async (t) => {
  const th = await startTestHub(t, roomy)
  const alice = await actor(th, 'Alice')
  const bob = await actor(th, 'Bob')
  const carol = await actor(th, 'Carol')
  const stage = await createStage(alice, { password: 'first-pass' })
  const group = await createGroup(alice, stage.id, '#00aa00')

  const without = await refused(bob, 'stage.join', { stageId: stage.id, groupId: group.id })
  t.equal(without.code, 'forbidden', 'joining without the password is forbidden')
  t.match(without.message, /password/, 'and the message says a password is needed')
  const wrong = await refused(bob, 'stage.join', { stageId: stage.id, groupId: group.id, password: 'nope' })
  t.equal(wrong.code, 'forbidden', 'a wrong password is forbidden')
  t.same(await th.hub.store.find('members', { stageId: stage.id }), [], 'no membership was created')
  t.equal((await join(bob, stage.id, group.id, 'first-pass')).seat, 0, 'the right password joins')
  await ok(bob, 'stage.leave')
  t.equal((await join(alice, stage.id, group.id)).seat, 0, 'an admin joins without the password')

  await ok(alice, 'stage.update', { stageId: stage.id, patch: { password: 'second-pass' } })
  t.equal(
    (await refused(bob, 'stage.join', { stageId: stage.id, groupId: group.id, password: 'first-pass' })).code,
    'forbidden',
    'after a change the old password no longer joins, even for a member',
  )
  t.equal((await join(bob, stage.id, group.id, 'second-pass')).seat, 1, 'the new one does')

  const open = await ok<StageState>(alice, 'stage.update', { stageId: stage.id, patch: { password: null } })
  t.equal(open.hasPassword, false, 'null removes the password')
  t.equal((await storedStage(th, stage.id))?.passwordHash, undefined, 'the hash is gone from the store')
  t.match(
    await retainedOn(alice.client, `stages/${stage.id}`),
    { hasPassword: false },
    'the retained stage says so',
  )
  t.match(
    await retainedOn(bob.client, `users/${bob.id}/stages/${stage.id}`),
    { hasPassword: false },
    "and so do members' summaries",
  )
  t.equal((await join(carol, stage.id, group.id)).seat, 2, 'now anyone joins without a password')
})

t.test(
  'stage.addAdmin and stage.removeAdmin: admins only, known users only, never the last admin',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    const bob = await actor(th, 'Bob')
    const carol = await actor(th, 'Carol')
    const stage = await createStage(alice)

    t.equal(
      (await refused(bob, 'stage.addAdmin', { stageId: stage.id, userId: bob.id })).code,
      'forbidden',
      'a non-admin may not make itself admin',
    )
    t.equal(
      (await refused(alice, 'stage.addAdmin', { stageId: stage.id, userId: 'no-such-user' })).code,
      'not_found',
      'an unknown user cannot become admin',
    )
    const two = await ok<StageState>(alice, 'stage.addAdmin', { stageId: stage.id, userId: bob.id })
    t.same(two.admins, [alice.id, bob.id], 'the new admin is listed')
    t.equal(two.version, 2, 'the stage version goes up')
    t.match(
      await retainedOn(bob.client, `users/${bob.id}/stages/${stage.id}`),
      { id: stage.id, isAdmin: true, isMember: false },
      'the new admin gets a summary',
    )
    t.same(await retainedOn(bob.client, `stages/${stage.id}`), two, 'and may read the stage')
    t.same(
      (await ok<StageState>(alice, 'stage.addAdmin', { stageId: stage.id, userId: bob.id })).admins,
      [alice.id, bob.id],
      'adding an admin twice lists it once',
    )

    t.equal(
      (await refused(carol, 'stage.removeAdmin', { stageId: stage.id, userId: alice.id })).code,
      'forbidden',
      'a non-admin may not remove admins',
    )
    t.equal(
      (await refused(alice, 'stage.removeAdmin', { stageId: stage.id, userId: carol.id })).code,
      'not_found',
      'removing a user who is no admin is not_found',
    )
    const one = await ok<StageState>(bob, 'stage.removeAdmin', { stageId: stage.id, userId: alice.id })
    t.same(one.admins, [bob.id], 'an admin removes another admin')
    t.equal(
      (await refused(alice, 'stage.addAdmin', { stageId: stage.id, userId: alice.id })).code,
      'forbidden',
      'the removed admin lost its rights',
    )
    const last = await refused(bob, 'stage.removeAdmin', { stageId: stage.id, userId: bob.id })
    t.equal(last.code, 'conflict', 'the last admin cannot be removed')
    t.same((await storedStage(th, stage.id))?.admins, [bob.id], 'and stays admin')
  },
)

t.test(
  'a removed admin who is not a member loses the stage at once, held subscriptions included, and its summary',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    const bob = await actor(th, 'Bob')
    const carol = await actor(th, 'Carol')
    const stage = await createStage(alice)
    const group = await createGroup(alice, stage.id, '#0000aa')
    await ok(alice, 'stage.addAdmin', { stageId: stage.id, userId: bob.id })
    await ok(alice, 'stage.addAdmin', { stageId: stage.id, userId: carol.id })
    await join(carol, stage.id, group.id)

    const bobSawStage = waitForMessage(bob.client, `stages/${stage.id}`)
    // every retained message of the subscription is in before recording starts
    const bobSawRest = [
      `stages/${stage.id}/groups/${group.id}`,
      `stages/${stage.id}/members/${carol.id}`,
    ].map((topic) => waitForMessage(bob.client, topic))
    await bob.client.subscribeAsync([`stages/${stage.id}/#`, `users/${bob.id}/#`], { qos: 1 })
    t.ok((await bobSawStage).retain, 'as admin, bob holds a subscription to the stage and gets it')
    await Promise.all(bobSawRest)
    await alice.client.subscribeAsync(`stages/${stage.id}/#`, { qos: 1 })
    const bobSees = recordMessages(bob.client)

    await ok(alice, 'stage.removeAdmin', { stageId: stage.id, userId: bob.id })
    const renamed = waitForMessage(
      alice.client,
      (m) => m.topic === `stages/${stage.id}` && (parse(m.payload) as StageState).name === 'After',
    )
    await ok(alice, 'stage.update', { stageId: stage.id, patch: { name: 'After' } })
    await createGroup(alice, stage.id, '#0000bb')
    await ok(alice, 'member.update', { stageId: stage.id, userId: carol.id, patch: { volume: 0.5 } })
    await renamed
    await sleep(200)
    bobSees.stop()
    t.same(
      bobSees.messages.filter((m) => m.topic.startsWith('stages/')).map((m) => m.topic),
      [],
      'the held subscription delivers nothing more of the stage',
    )
    t.ok(
      bobSees.messages.some(
        (m) => m.topic === `users/${bob.id}/stages/${stage.id}` && m.payload.length === 0,
      ),
      "bob's summary was cleared",
    )
    t.equal(
      await retainedOn(bob.client, `users/${bob.id}/stages/${stage.id}`),
      undefined,
      'and nothing is retained there',
    )
    t.same(await subackCodes(bob.client, `stages/${stage.id}`), [128], 'a new subscription is refused')

    const carolStage = await ok<StageState>(alice, 'stage.removeAdmin', {
      stageId: stage.id,
      userId: carol.id,
    })
    t.same(carolStage.admins, [alice.id], 'a member can be removed as admin too')
    t.match(
      await retainedOn(carol.client, `users/${carol.id}/stages/${stage.id}`),
      { isAdmin: false, isMember: true, joined: true },
      'a removed admin who is a member keeps its summary, without the admin flag',
    )
    t.match(
      await retainedOn(carol.client, `stages/${stage.id}`),
      { name: 'After' },
      'and still sees the stage',
    )
  },
)

t.test(
  'stage.remove: admins only; it clears every retained topic of the stage, members lose their current stage and the store keeps nothing',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    const dave = await actor(th, 'Dave') // admin, never a member
    const bob = await actor(th, 'Bob') // member in the stage
    const carol = await actor(th, 'Carol') // member who left
    const other = await actor(th, 'Olga') // a stage of her own, untouched
    const stage = await createStage(alice, { password: 'pw' })
    const g1 = await createGroup(alice, stage.id, '#010101')
    const g2 = await createGroup(alice, stage.id, '#020202')
    await ok(alice, 'stage.addAdmin', { stageId: stage.id, userId: dave.id })
    const bobMember = await join(bob, stage.id, g1.id, 'pw')
    await join(carol, stage.id, g2.id, 'pw')
    await ok(carol, 'stage.leave')
    await ok<MixState>(bob, 'mix.set', { kind: 'group', id: g2.id, volume: 0.5 })
    await ok<MixState>(bob, 'mix.set', { kind: 'member', id: bobMember.id, volume: 0.1 })
    const otherStage = await createStage(other, { name: 'Elsewhere' })
    const otherGroup = await createGroup(other, otherStage.id, '#010101')

    const filters = [
      `stages/${stage.id}/#`,
      `users/+/stages/${stage.id}`,
      ...[alice, dave, bob, carol].map((a) => `users/${a.id}/mix/#`),
    ]
    const beforeTopics = new Set((await operatorSees(th, filters)).map((m) => m.topic))
    for (const topic of [
      `stages/${stage.id}`,
      `stages/${stage.id}/groups/${g1.id}`,
      `stages/${stage.id}/groups/${g2.id}`,
      `stages/${stage.id}/members/${bob.id}`,
      `stages/${stage.id}/members/${carol.id}`,
      ...[alice, dave, bob, carol].map((a) => `users/${a.id}/stages/${stage.id}`),
      `users/${bob.id}/mix/group/${g2.id}`,
      `users/${bob.id}/mix/member/${bobMember.id}`,
    ]) {
      t.ok(beforeTopics.has(topic), `before the removal ${topic} is retained`)
    }
    t.ok(
      [...beforeTopics].some((topic) => topic.startsWith(`users/${carol.id}/mix/member/`)),
      "so is carol's own-member mix",
    )
    t.match(
      await retainedOn(bob.client, `users/${bob.id}`),
      { stageId: stage.id },
      "bob's profile names the stage he is in",
    )

    t.equal(
      (await refused(bob, 'stage.remove', { stageId: stage.id })).code,
      'forbidden',
      'a member who is not admin may not remove the stage',
    )
    t.equal(
      (await refused(alice, 'stage.remove', { stageId: 'no-such-stage' })).code,
      'not_found',
      'an unknown stage is not_found',
    )
    t.ok(await storedStage(th, stage.id), 'the refused removal left the stage')

    const bobProfile = waitForMessage(bob.client, `users/${bob.id}`)
    await bob.client.subscribeAsync(`users/${bob.id}`, { qos: 1 })
    t.match(parse((await bobProfile).payload), { stageId: stage.id }, 'bob holds his profile subscription')
    const bobProfileAfter = waitForMessage(bob.client, `users/${bob.id}`)
    t.same(await ok(alice, 'stage.remove', { stageId: stage.id }), {}, 'an admin removes the stage')
    const profile = parse((await bobProfileAfter).payload) as UserProfile
    t.equal(profile.id, bob.id, 'bob gets his profile again')
    t.notOk('stageId' in profile, 'without a current stage')
    t.notOk(
      'stageId' in ((await retainedOn(carol.client, `users/${carol.id}`)) as UserProfile),
      'carol neither',
    )

    t.same(
      (await operatorSees(th, filters)).map((m) => m.topic),
      [],
      'a new subscriber finds nothing retained of the stage, its groups, members, summaries or mixes',
    )
    t.equal(await storedStage(th, stage.id), null, 'the stage is gone from the store')
    for (const collection of ['groups', 'members', 'mixes', 'stage_tracks']) {
      t.same(
        await th.hub.store.find(collection, { stageId: stage.id }),
        [],
        `no ${collection} of the stage are left`,
      )
    }
    t.equal((await storedUser(th, bob.id)).stageId, undefined, "bob's stored user has no current stage")
    t.same(await subackCodes(bob.client, `stages/${stage.id}`), [128], 'former members lose access')
    t.same(await subackCodes(alice.client, `stages/${stage.id}`), [128], 'so do former admins')

    t.match(
      await retainedOn(other.client, `stages/${otherStage.id}/groups/${otherGroup.id}`),
      { id: otherGroup.id, color: '#010101' },
      'another stage with the same group colour is untouched',
    )
  },
)

t.test(
  'group.create without a colour picks a free one: distinct per stage, an explicit colour still wins or conflicts',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    const stage = await createStage(alice)

    const first = await createGroup(alice, stage.id, GROUP_PALETTE[1], 'Explicit')
    t.equal(first.color, GROUP_PALETTE[1], 'an explicit colour is kept')
    const picked: GroupState[] = []
    for (let i = 0; i < GROUP_PALETTE.length + 3; i++) {
      picked.push(await ok<GroupState>(alice, 'group.create', { stageId: stage.id, name: `Auto ${i}` }))
    }
    const colors = [first, ...picked].map((g) => g.color)
    t.equal(new Set(colors).size, colors.length, 'every group of the stage has its own colour')
    t.equal(picked[0]!.color, GROUP_PALETTE[0], 'the first free palette colour comes first')
    t.notOk(
      picked.some((g) => g.color === GROUP_PALETTE[1]),
      'the explicitly used colour is not handed out again',
    )
    t.ok(
      colors.every((c) => /^#[0-9a-f]{6}$/.test(c)),
      'picked colours are #rrggbb like explicit ones',
    )
    t.same(
      await retainedOn(alice.client, `stages/${stage.id}/groups/${picked[0]!.id}`),
      picked[0],
      'the picked colour is what is retained',
    )
    t.equal(
      (await refused(alice, 'group.create', { stageId: stage.id, name: 'Clash', color: picked[3]!.color }))
        .code,
      'conflict',
      'an explicit colour that a picked one took still conflicts',
    )
  },
)

t.test(
  'group.create and group.update: admins only, colours unique per stage ignoring case, versions checked',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    const bob = await actor(th, 'Bob')
    const stage = await createStage(alice)
    const otherStage = await createStage(alice, { name: 'Other' })

    const red = await ok<GroupState>(alice, 'group.create', {
      stageId: stage.id,
      name: 'Strings',
      color: '#FF0000',
    })
    t.same(
      red,
      {
        id: red.id,
        stageId: stage.id,
        name: 'Strings',
        color: '#ff0000',
        volume: 1,
        muted: false,
        position: origin,
        version: 1,
      },
      'a group starts at volume 1, unmuted, at the origin, its colour lower-cased',
    )
    t.same(
      await retainedOn(alice.client, `stages/${stage.id}/groups/${red.id}`),
      red,
      'stages/{s}/groups/{g} is retained',
    )
    t.match(
      await retainedOn(alice.client, `users/${alice.id}/stages/${stage.id}`),
      { groups: [{ id: red.id, name: 'Strings', color: '#ff0000' }] },
      'the summary lists the group',
    )

    for (const color of ['#ff0000', '#FF0000', '#fF0000']) {
      const error = await refused(alice, 'group.create', { stageId: stage.id, name: 'Dup', color })
      t.equal(error.code, 'conflict', `colour ${color} is taken in this stage`)
    }
    t.match(
      await ok<GroupState>(alice, 'group.create', { stageId: otherStage.id, name: 'Red', color: '#ff0000' }),
      { color: '#ff0000', stageId: otherStage.id },
      'the same colour is fine in another stage',
    )
    t.equal(
      (await refused(bob, 'group.create', { stageId: stage.id, name: 'Mine', color: '#123456' })).code,
      'forbidden',
      'a non-admin may not create groups',
    )
    t.equal(
      (await refused(alice, 'group.create', { stageId: stage.id, name: 'Bad', color: 'red' })).code,
      'invalid_request',
      'a colour must be #rrggbb',
    )

    const blue = await createGroup(alice, stage.id, '#0000ff', 'Brass')
    t.equal(
      (
        await refused(alice, 'group.update', {
          stageId: stage.id,
          groupId: blue.id,
          patch: { color: '#FF0000' },
        })
      ).code,
      'conflict',
      "a group may not take another group's colour",
    )
    t.equal(
      (await refused(bob, 'group.update', { stageId: stage.id, groupId: blue.id, patch: { name: 'x' } }))
        .code,
      'forbidden',
      'a non-admin may not update groups',
    )
    const patched = await ok<GroupState>(alice, 'group.update', {
      stageId: stage.id,
      groupId: blue.id,
      version: 1,
      patch: { name: 'Horns', color: '#0000FF', volume: 0.8, muted: true },
    })
    t.same(
      patched,
      { ...blue, name: 'Horns', volume: 0.8, muted: true, version: 2 },
      'an admin patches a group (its own colour in other case is no conflict)',
    )
    t.same(
      await retainedOn(alice.client, `stages/${stage.id}/groups/${blue.id}`),
      patched,
      'the retained group follows',
    )
    const expectedGroups = [red, patched]
      .sort((a, b) => a.id.localeCompare(b.id))
      .map((g) => ({ id: g.id, name: g.name, color: g.color }))
    t.same(
      ((await retainedOn(alice.client, `users/${alice.id}/stages/${stage.id}`)) as StageSummary).groups,
      expectedGroups,
      'the summary shows the new name',
    )
    t.equal(
      (
        await refused(alice, 'group.update', {
          stageId: stage.id,
          groupId: blue.id,
          version: 1,
          patch: { name: 'Stale' },
        })
      ).code,
      'conflict',
      'a stale group version is a conflict',
    )
    t.equal(
      (
        await refused(alice, 'group.update', {
          stageId: otherStage.id,
          groupId: blue.id,
          patch: { name: 'Wrong stage' },
        })
      ).code,
      'not_found',
      'a group is only found in its own stage',
    )
    t.same(
      await th.hub.store.get<GroupDoc>('groups', blue.id),
      { ...patched },
      'the refused updates changed nothing',
    )
  },
)

t.test('the groups-per-stage quota refuses one group too many', async (t) => {
  const th = await startTestHub(t, { ...roomy, QUOTA_GROUPS_PER_STAGE: '2' })
  const alice = await actor(th, 'Alice')
  const stage = await createStage(alice)
  const first = await createGroup(alice, stage.id, '#000001')
  const second = await createGroup(alice, stage.id, '#000002')
  const third = await refused(alice, 'group.create', { stageId: stage.id, name: 'Third', color: '#000003' })
  t.equal(third.code, 'forbidden', 'the third group is forbidden')
  t.match(third.message, /2 groups/, 'the message says how many groups the stage has')
  t.equal((await th.hub.store.find('groups', { stageId: stage.id })).length, 2, 'no third group was stored')
  const otherStage = await createStage(alice, { name: 'Other' })
  await createGroup(alice, otherStage.id, '#000003')
  t.equal((await th.hub.store.find('groups', { stageId: otherStage.id })).length, 1, 'the quota is per stage')
  await ok(alice, 'group.remove', { stageId: stage.id, groupId: first.id })
  const again = await createGroup(alice, stage.id, '#000003')
  t.same(
    (await th.hub.store.find('groups', { stageId: stage.id })).map((g) => g.id).sort(),
    [second.id, again.id].sort(),
    'after removing one, a new group fits again',
  )
})

t.test(
  'group.remove with moveTo moves its members to the other group; moveTo must be a group of the same stage',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    const bob = await actor(th, 'Bob')
    const carol = await actor(th, 'Carol')
    const stage = await createStage(alice)
    const g1 = await createGroup(alice, stage.id, '#111111')
    const g2 = await createGroup(alice, stage.id, '#222222')
    const foreignStage = await createStage(alice, { name: 'Foreign' })
    const foreign = await createGroup(alice, foreignStage.id, '#333333')
    const bobBefore = await join(bob, stage.id, g1.id)
    await join(carol, stage.id, g1.id)
    await ok(carol, 'stage.leave')
    const carolBefore = (await retainedOn(
      carol.client,
      `stages/${stage.id}/members/${carol.id}`,
    )) as MemberState

    t.equal(
      (await refused(bob, 'group.remove', { stageId: stage.id, groupId: g1.id, moveTo: g2.id })).code,
      'forbidden',
      'a non-admin may not remove groups',
    )
    t.equal(
      (await refused(alice, 'group.remove', { stageId: stage.id, groupId: g1.id, moveTo: foreign.id })).code,
      'not_found',
      'moveTo a group of another stage is not_found',
    )
    t.equal(
      (await refused(alice, 'group.remove', { stageId: stage.id, groupId: g1.id, moveTo: g1.id })).code,
      'invalid_request',
      'moveTo the group itself is refused',
    )
    t.ok(await th.hub.store.get('groups', g1.id), 'the refused removals kept the group')
    t.same(
      await retainedOn(bob.client, `stages/${stage.id}/members/${bob.id}`),
      bobBefore,
      'and the members where they were',
    )

    await alice.client.subscribeAsync(`stages/${stage.id}/#`, { qos: 1 })
    const seen = recordMessages(alice.client)
    t.same(
      await ok(alice, 'group.remove', { stageId: stage.id, groupId: g1.id, moveTo: g2.id }),
      {},
      'an admin removes the group, moving its members',
    )
    await waitUntil(
      () => seen.messages.filter((m) => m.topic.startsWith(`stages/${stage.id}/members/`)).length >= 2,
      'both member documents were republished',
    )
    seen.stop()
    t.same(
      await retainedOn(bob.client, `stages/${stage.id}/members/${bob.id}`),
      { ...bobBefore, groupId: g2.id, version: bobBefore.version + 1 },
      'the member in the stage is republished in the new group, still seated and joined',
    )
    t.same(
      await retainedOn(carol.client, `stages/${stage.id}/members/${carol.id}`),
      { ...carolBefore, groupId: g2.id, version: carolBefore.version + 1 },
      'so is the member who left',
    )
    t.ok(
      seen.messages.some((m) => m.topic === `stages/${stage.id}/groups/${g1.id}` && m.payload.length === 0),
      'the group topic was cleared',
    )
    t.equal(
      await retainedOn(alice.client, `stages/${stage.id}/groups/${g1.id}`),
      undefined,
      'and holds nothing any more',
    )
    t.match(
      await retainedOn(bob.client, `users/${bob.id}/stages/${stage.id}`),
      { groups: [{ id: g2.id }], isMember: true, joined: true },
      'summaries list only the remaining group',
    )
    t.match(
      await retainedOn(bob.client, `users/${bob.id}`),
      { stageId: stage.id },
      'bob is still in the stage',
    )
    t.equal(await th.hub.store.get('groups', g1.id), null, 'the group is gone from the store')
  },
)

t.test(
  'group.remove without moveTo removes its memberships and what hangs off them; other groups stay',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    const bob = await actor(th, 'Bob') // in g1, in the stage
    const carol = await actor(th, 'Carol') // in g1, left
    const dave = await actor(th, 'Dave') // in g2
    const stage = await createStage(alice)
    const g1 = await createGroup(alice, stage.id, '#111111')
    const g2 = await createGroup(alice, stage.id, '#222222')
    const bobMember = await join(bob, stage.id, g1.id)
    await join(carol, stage.id, g1.id)
    await ok(carol, 'stage.leave')
    const daveMember = await join(dave, stage.id, g2.id)
    await join(alice, stage.id, g1.id) // an admin who is also a member of the group
    await ok(bob, 'mix.set', { kind: 'member', id: daveMember.id, volume: 0.3 })
    await ok(dave, 'mix.set', { kind: 'member', id: bobMember.id, volume: 0.2 })
    await ok(dave, 'mix.set', { kind: 'group', id: g1.id, volume: 0.4 })
    const daveMemberTopic = await retainedOn(dave.client, `stages/${stage.id}/members/${dave.id}`)

    t.same(
      await ok(alice, 'group.remove', { stageId: stage.id, groupId: g1.id }),
      {},
      'an admin removes the group without moveTo',
    )
    const left = await operatorSees(th, [
      `stages/${stage.id}/#`,
      `users/+/stages/${stage.id}`,
      `users/${alice.id}/mix/#`,
      `users/${bob.id}/mix/#`,
      `users/${carol.id}/mix/#`,
      `users/${dave.id}/mix/#`,
    ])
    const topics = left.map((m) => m.topic).sort()
    t.same(
      topics,
      [
        `stages/${stage.id}`,
        `stages/${stage.id}/groups/${g2.id}`,
        `stages/${stage.id}/members/${dave.id}`,
        `users/${alice.id}/stages/${stage.id}`,
        `users/${dave.id}/mix/member/${daveMember.id}`,
        `users/${dave.id}/stages/${stage.id}`,
      ].sort(),
      "only the other group, its member, dave's own mix and the remaining summaries are retained",
    )
    t.match(
      await retainedOn(alice.client, `users/${alice.id}/stages/${stage.id}`),
      { isAdmin: true, isMember: false, joined: false, groups: [{ id: g2.id }] },
      'the admin who was a member of the group keeps the summary, as admin only',
    )
    t.notOk(
      'stageId' in ((await retainedOn(alice.client, `users/${alice.id}`)) as UserProfile),
      'and is no longer in the stage',
    )
    t.same(
      await retainedOn(dave.client, `stages/${stage.id}/members/${dave.id}`),
      daveMemberTopic,
      'the member of the other group is untouched',
    )
    t.notOk(
      'stageId' in ((await retainedOn(bob.client, `users/${bob.id}`)) as UserProfile),
      'bob, who was in the stage, has no current stage in his profile',
    )
    t.same(
      (await th.hub.store.find<MemberDoc>('members', { stageId: stage.id })).map((m) => m.userId),
      [dave.id],
      'only the other member is stored',
    )
    t.same(
      (await th.hub.store.find<MixDoc>('mixes', { stageId: stage.id })).map((m) => m.id),
      [`${dave.id}/member/${daveMember.id}`],
      "only dave's own-member mix is stored",
    )
    t.same(await subackCodes(bob.client, `stages/${stage.id}`), [128], 'removed members lose access')
    t.same(
      (await ok<MemberState>(bob, 'stage.join', { stageId: stage.id, groupId: g2.id })).seat,
      0,
      'bob may join again, as a new member, and gets the freed seat',
    )
  },
)

t.test(
  'stage.join checks the password, the group and the stage; the member, its mix, summary and profile are retained',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    const bob = await actor(th, 'Bob')
    const stage = await createStage(alice, { password: 'letmein' })
    const group = await createGroup(alice, stage.id, '#abcdef')
    const foreignStage = await createStage(alice, { name: 'Foreign' })
    const foreign = await createGroup(alice, foreignStage.id, '#fedcba')

    t.equal(
      (await refused(bob, 'stage.join', { stageId: stage.id, groupId: group.id })).code,
      'forbidden',
      'no password: forbidden',
    )
    t.equal(
      (await refused(bob, 'stage.join', { stageId: stage.id, groupId: group.id, password: 'LETMEIN' })).code,
      'forbidden',
      'wrong password: forbidden',
    )
    t.equal(
      (await refused(bob, 'stage.join', { stageId: stage.id, groupId: foreign.id, password: 'letmein' }))
        .code,
      'not_found',
      'a group of another stage: not_found',
    )
    t.equal(
      (await refused(bob, 'stage.join', { stageId: stage.id, groupId: 'no-group', password: 'letmein' }))
        .code,
      'not_found',
      'an unknown group: not_found',
    )
    t.equal(
      (await refused(bob, 'stage.join', { stageId: 'no-stage', groupId: group.id })).code,
      'not_found',
      'an unknown stage: not_found',
    )
    t.same(await th.hub.store.find('members', { userId: bob.id }), [], 'none of that made bob a member')
    t.equal((await storedUser(th, bob.id)).stageId, undefined, 'nor put him in a stage')

    const member = await join(bob, stage.id, group.id, 'letmein')
    t.same(
      member,
      {
        id: member.id,
        stageId: stage.id,
        userId: bob.id,
        name: 'Bob',
        groupId: group.id,
        seat: 0,
        joined: true,
        online: false, // no device of Bob's is online (docs/protocol/README.md#presence)
        isDirector: false,
        volume: 1,
        muted: false,
        position: origin,
        version: 1,
      },
      'the new member takes seat 0 in the group',
    )
    t.same(
      await retainedOn(bob.client, `stages/${stage.id}/members/${bob.id}`),
      member,
      'stages/{s}/members/{u} is retained',
    )
    t.same(
      await retainedOn(alice.client, `stages/${stage.id}/members/${bob.id}`),
      member,
      'the admin sees the member too',
    )
    t.match(
      await retainedOn(bob.client, `users/${bob.id}/mix/member/${member.id}`),
      { kind: 'member', id: member.id, stageId: stage.id, muted: true },
      'a member hears itself through its local monitor: muted for itself by default',
    )
    t.same(
      await retainedOn(bob.client, `users/${bob.id}/stages/${stage.id}`),
      {
        id: stage.id,
        name: 'Rehearsal',
        hasPassword: true,
        audioType: 'mediasoup',
        videoType: 'mediasoup',
        isAdmin: false,
        isMember: true,
        joined: true,
        groups: [{ id: group.id, name: group.name, color: '#abcdef' }],
      },
      'the member gets a summary of the stage it is in',
    )
    t.match(
      await retainedOn(bob.client, `users/${bob.id}`),
      { id: bob.id, stageId: stage.id },
      "the member's profile names its current stage",
    )
    t.equal(
      (await join(alice, stage.id, group.id)).seat,
      1,
      'the admin joins without the password, next seat',
    )
  },
)

t.test('seats: the lowest free seat is taken; a seat freed by stage.leave is reused', async (t) => {
  const th = await startTestHub(t, roomy)
  const alice = await actor(th, 'Alice')
  const [bob, carol, dave, erin] = await Promise.all(
    ['Bob', 'Carol', 'Dave', 'Erin'].map((name) => actor(th, name)),
  )
  const stage = await createStage(alice)
  const group = await createGroup(alice, stage.id, '#000000')
  t.same(
    [
      (await join(bob!, stage.id, group.id)).seat,
      (await join(carol!, stage.id, group.id)).seat,
      (await join(dave!, stage.id, group.id)).seat,
    ],
    [0, 1, 2],
    'joiners take seats 0, 1, 2 in order',
  )
  const carolMember = (await retainedOn(
    carol!.client,
    `stages/${stage.id}/members/${carol!.id}`,
  )) as MemberState
  t.same(await ok(carol!, 'stage.leave'), {}, 'carol leaves')
  t.same(
    await retainedOn(carol!.client, `stages/${stage.id}/members/${carol!.id}`),
    { ...carolMember, seat: null, joined: false, online: false, version: carolMember.version + 1 },
    'her member is offline without a seat',
  )
  t.equal(
    (await join(erin!, stage.id, group.id)).seat,
    1,
    'the next joiner gets the freed seat 1, not seat 3',
  )
  const back = await join(carol!, stage.id, group.id)
  t.equal(back.seat, 3, 'carol, back again, takes the lowest free seat')
  t.equal(back.id, carolMember.id, 'in the same membership')
  const seats = (await th.hub.store.find<MemberDoc>('members', { stageId: stage.id })).map((m) => m.seat)
  t.same([...seats].sort(), [0, 1, 2, 3], 'the stored seats are distinct')
})

t.test(
  'joining another stage leaves the current one first; re-joining the same stage and group changes nothing',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    const bob = await actor(th, 'Bob')
    const carol = await actor(th, 'Carol')
    const s1 = await createStage(alice, { name: 'One' })
    const s2 = await createStage(alice, { name: 'Two' })
    const g1 = await createGroup(alice, s1.id, '#100000')
    const g1b = await createGroup(alice, s1.id, '#100001')
    const g2 = await createGroup(alice, s2.id, '#200000')
    await join(carol, s2.id, g2.id)

    const first = await join(bob, s1.id, g1.id)
    const again = await join(bob, s1.id, g1.id)
    t.same(again, first, 're-joining the same stage in the same group returns the same member')
    t.same(
      await retainedOn(bob.client, `stages/${s1.id}/members/${bob.id}`),
      first,
      'the retained member did not change (same version)',
    )
    t.equal(
      (await th.hub.store.find('members', { stageId: s1.id, userId: bob.id })).length,
      1,
      'and there is one membership',
    )
    const regrouped = await join(bob, s1.id, g1b.id)
    t.same(
      regrouped,
      { ...first, groupId: g1b.id, version: first.version + 1 },
      're-joining in another group of the same stage moves the member, keeping the seat',
    )

    const profileSwitched = waitForMessage(
      bob.client,
      (m) => m.topic === `users/${bob.id}` && (parse(m.payload) as UserProfile).stageId === s2.id,
    )
    await bob.client.subscribeAsync(`users/${bob.id}`, { qos: 1 })
    const second = await join(bob, s2.id, g2.id)
    t.equal(second.seat, 1, 'bob takes the next seat in the second stage')
    t.same(
      await retainedOn(bob.client, `stages/${s1.id}/members/${bob.id}`),
      { ...regrouped, joined: false, online: false, seat: null, version: regrouped.version + 1 },
      'his member in the first stage went offline and released its seat',
    )
    await profileSwitched
    t.match(
      await retainedOn(bob.client, `users/${bob.id}/stages/${s1.id}`),
      { isMember: true, joined: false },
      'the first summary says he is no longer in it',
    )
    t.match(
      await retainedOn(bob.client, `users/${bob.id}/stages/${s2.id}`),
      { isMember: true, joined: true },
      'the second says he is',
    )
    t.equal((await storedUser(th, bob.id)).stageId, s2.id, 'his profile switched to the second stage')
    t.equal((await join(carol, s1.id, g1.id)).seat, 0, "bob's seat in the first stage is free again")
    t.equal(
      (await storedUser(th, carol.id)).stageId,
      s1.id,
      'and carol, switching the other way, is in the first stage',
    )
    t.match(
      await retainedOn(carol.client, `stages/${s2.id}/members/${carol.id}`),
      { joined: false, online: false, seat: null },
      'having left the second',
    )
  },
)

t.test('a full stage (30 seats) refuses the 31st joiner with conflict', async (t) => {
  const th = await startTestHub(t, { ...roomy, QUOTA_MEMBERS_PER_STAGE: '1000' })
  const alice = await actor(th, 'Alice')
  const stage = await createStage(alice)
  const group = await createGroup(alice, stage.id, '#303030')
  const users = await Promise.all(Array.from({ length: 31 }, (_, i) => actor(th, `User${i}`)))
  const seats: (number | null)[] = []
  for (const user of users.slice(0, 30)) seats.push((await join(user, stage.id, group.id)).seat)
  t.same(
    seats,
    Array.from({ length: 30 }, (_, i) => i),
    '30 joiners fill seats 0-29',
  )
  const last = users[30]!
  const full = await refused(last, 'stage.join', { stageId: stage.id, groupId: group.id })
  t.equal(full.code, 'conflict', 'the 31st is refused with conflict')
  t.match(full.message, /seats/, 'the message is about seats')
  t.same(await th.hub.store.find('members', { userId: last.id }), [], 'no membership was stored for it')
  await ok(users[17]!, 'stage.leave')
  t.equal((await join(last, stage.id, group.id)).seat, 17, 'once someone leaves, it gets the freed seat')
})

t.test('30 users joining at the same moment all get distinct seats 0-29', async (t) => {
  const th = await startTestHub(t, roomy)
  const alice = await actor(th, 'Alice')
  const stage = await createStage(alice)
  const group = await createGroup(alice, stage.id, '#303030')
  const users = await Promise.all(Array.from({ length: 30 }, (_, i) => actor(th, `User${i}`)))
  const responses = await Promise.all(
    users.map((u) => u.req.request('stage.join', { stageId: stage.id, groupId: group.id })),
  )
  t.same(
    responses.filter((r) => !r.ok).map((r) => r.error),
    [],
    'every join succeeded',
  )
  const seats = responses.map((r) => (r.result as MemberState).seat as number).sort((a, b) => a - b)
  t.same(
    seats,
    Array.from({ length: 30 }, (_, i) => i),
    'the seats are exactly 0-29, each once',
  )
  const stored = await th.hub.store.find<MemberDoc>('members', { stageId: stage.id })
  t.same(
    stored.map((m) => m.seat).sort((a, b) => a! - b!),
    seats,
    'the store agrees',
  )
  const members = await operatorSees(th, [`stages/${stage.id}/members/+`])
  t.same(
    members.map((m) => (parse(m.payload) as MemberState).seat).sort((a, b) => a! - b!),
    seats,
    'and so do the retained member topics',
  )
})

t.test(
  '35 users joining a password stage at the same moment: exactly 30 seated, 5 refused with conflict',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    // the password check is asynchronous work inside every join, so the joins really interleave
    const stage = await createStage(alice, { password: 'crowd' })
    const group = await createGroup(alice, stage.id, '#353535')
    const users = await Promise.all(Array.from({ length: 35 }, (_, i) => actor(th, `User${i}`)))
    const responses = await Promise.all(
      users.map((u) =>
        u.req.request('stage.join', { stageId: stage.id, groupId: group.id, password: 'crowd' }),
      ),
    )
    const seated = responses.filter((r) => r.ok)
    const refusedJoins = responses.filter((r) => !r.ok)
    t.equal(seated.length, 30, '30 joins succeed')
    t.same(
      seated.map((r) => (r.result as MemberState).seat).sort((a, b) => a! - b!),
      Array.from({ length: 30 }, (_, i) => i),
      'with distinct seats 0-29',
    )
    t.equal(refusedJoins.length, 5, '5 are refused')
    t.same(
      refusedJoins.map((r) => r.error?.code),
      Array(5).fill('conflict'),
      'each with conflict',
    )
    t.ok(
      refusedJoins.every((r) => /seats/.test(r.error?.message ?? '')),
      'because the seats are taken (not a lost race)',
    )
    t.equal(
      (await th.hub.store.find('members', { stageId: stage.id })).length,
      30,
      'the store holds exactly 30 members',
    )
    const refusedUsers = users.filter((_, i) => !responses[i]!.ok)
    for (const user of refusedUsers) {
      t.equal((await storedUser(th, user.id)).stageId, undefined, `${user.name}, refused, is in no stage`)
    }
  },
)

t.test('the members-per-stage quota refuses a new member beyond it, not a returning one', async (t) => {
  const th = await startTestHub(t, { ...roomy, QUOTA_MEMBERS_PER_STAGE: '3' })
  const alice = await actor(th, 'Alice')
  const [bob, carol, dave, erin] = await Promise.all(
    ['Bob', 'Carol', 'Dave', 'Erin'].map((name) => actor(th, name)),
  )
  const stage = await createStage(alice)
  const group = await createGroup(alice, stage.id, '#333333')
  for (const user of [bob!, carol!, dave!]) await join(user, stage.id, group.id)
  const fourth = await refused(erin!, 'stage.join', { stageId: stage.id, groupId: group.id })
  t.equal(fourth.code, 'forbidden', 'the 4th new member is forbidden')
  t.match(fourth.message, /3 members/, 'and told how many members the stage has')
  t.equal(
    (await refused(alice, 'stage.join', { stageId: stage.id, groupId: group.id })).code,
    'forbidden',
    'admins count against the quota too',
  )
  await ok(bob!, 'stage.leave')
  t.equal(
    (await refused(erin!, 'stage.join', { stageId: stage.id, groupId: group.id })).code,
    'forbidden',
    'a member who left still holds a membership',
  )
  t.equal((await join(bob!, stage.id, group.id)).seat, 0, 'a returning member joins again')
  await ok(carol!, 'stage.forget', { stageId: stage.id })
  t.equal((await join(erin!, stage.id, group.id)).seat, 1, 'after a forget, a new member fits')
})

t.test('the stages-per-user quota refuses the third stage of one user', async (t) => {
  const th = await startTestHub(t, { ...roomy, QUOTA_STAGES_PER_USER: '2' })
  const alice = await actor(th, 'Alice')
  const bob = await actor(th, 'Bob')
  const first = await createStage(alice, { name: 'One' })
  const two = await createStage(alice, { name: 'Two' })
  const third = await refused(alice, 'stage.create', { name: 'Three' })
  t.equal(third.code, 'forbidden', 'the third stage is forbidden')
  t.equal((await th.hub.store.find('stages', { createdBy: alice.id })).length, 2, 'no third stage was stored')
  await createStage(bob, { name: 'Bobs' })
  t.equal(
    (await th.hub.store.find('stages', { createdBy: bob.id })).length,
    1,
    'another user still creates stages',
  )
  await ok(alice, 'stage.remove', { stageId: first.id })
  const three = await createStage(alice, { name: 'Three' })
  t.same(
    (await th.hub.store.find('stages', { createdBy: alice.id })).map((s) => s.id).sort(),
    [two.id, three.id].sort(),
    'after removing one, the user may create another',
  )
})

t.test('stage.leave keeps the membership; stage.forget deletes it with its mixes and summary', async (t) => {
  const th = await startTestHub(t, roomy)
  const alice = await actor(th, 'Alice')
  const bob = await actor(th, 'Bob')
  const stage = await createStage(alice)
  const group = await createGroup(alice, stage.id, '#444444')
  const otherStage = await createStage(alice, { name: 'Other' })

  const member = await join(bob, stage.id, group.id)
  const groupMix = await ok<MixState>(bob, 'mix.set', { kind: 'group', id: group.id, volume: 0.5 })
  t.same(await ok(bob, 'stage.leave'), {}, 'bob leaves')
  t.match(
    await retainedOn(bob.client, `stages/${stage.id}/members/${bob.id}`),
    { id: member.id, joined: false, online: false, seat: null },
    'his member stays, offline, without a seat',
  )
  t.match(
    await retainedOn(bob.client, `users/${bob.id}/stages/${stage.id}`),
    { isMember: true, joined: false },
    'his summary says member, not in the stage',
  )
  t.notOk(
    'stageId' in ((await retainedOn(bob.client, `users/${bob.id}`)) as UserProfile),
    'his profile has no current stage',
  )
  t.same(await retainedOn(bob.client, `users/${bob.id}/mix/group/${group.id}`), groupMix, 'his mixes stay')
  t.same(await ok(bob, 'stage.leave'), {}, 'leaving when in no stage is a no-op')

  t.equal(
    (await refused(bob, 'stage.forget', { stageId: otherStage.id })).code,
    'not_found',
    'forgetting a stage one is not a member of is not_found',
  )
  t.equal(
    (await refused(bob, 'stage.forget', { stageId: 'no-stage' })).code,
    'not_found',
    'so is forgetting an unknown stage',
  )
  t.same(await ok(bob, 'stage.forget', { stageId: stage.id }), {}, 'bob forgets the stage')
  t.same(
    await operatorSees(th, [`stages/${stage.id}/members/${bob.id}`, `users/${bob.id}/#`]).then((ms) =>
      ms.map((m) => m.topic),
    ),
    [`users/${bob.id}`],
    'his member topic, mixes and summary are cleared; only his profile remains',
  )
  t.same(await th.hub.store.find('members', { userId: bob.id }), [], 'the membership is deleted')
  t.same(await th.hub.store.find('mixes', { userId: bob.id }), [], 'and his mixes')
  t.same(await subackCodes(bob.client, `stages/${stage.id}`), [128], 'he no longer sees the stage')
  t.equal(
    (await refused(bob, 'stage.forget', { stageId: stage.id })).code,
    'not_found',
    'forgetting it twice is not_found',
  )

  await join(bob, stage.id, group.id)
  await ok(bob, 'stage.forget', { stageId: stage.id })
  t.notOk(
    'stageId' in ((await retainedOn(bob.client, `users/${bob.id}`)) as UserProfile),
    'forgetting the stage one is in also leaves it',
  )

  const adminMember = await join(alice, stage.id, group.id)
  await ok(alice, 'stage.forget', { stageId: stage.id })
  t.match(
    await retainedOn(alice.client, `users/${alice.id}/stages/${stage.id}`),
    { isAdmin: true, isMember: false, joined: false },
    'an admin who forgets keeps the summary as admin',
  )
  t.equal(
    await retainedOn(alice.client, `users/${alice.id}/mix/member/${adminMember.id}`),
    undefined,
    "but the admin's own mixes in the stage are cleared",
  )
})

t.test(
  'a restart keeps stages, groups, members, summaries and profiles; the next joiner gets the next seat',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    const bob = await actor(th, 'Bob')
    const stage = await createStage(alice, { name: 'Durable', password: 'keep' })
    const group = await createGroup(alice, stage.id, '#555555')
    const member = await join(bob, stage.id, group.id, 'keep')
    const carol = await actor(th, 'Carol')

    const topics = [
      `stages/${stage.id}`,
      `stages/${stage.id}/groups/${group.id}`,
      `stages/${stage.id}/members/${bob.id}`,
      `users/${alice.id}/stages/${stage.id}`,
      `users/${bob.id}/stages/${stage.id}`,
      `users/${bob.id}`,
      `users/${bob.id}/mix/member/${member.id}`,
    ]
    const before = await operatorSees(th, topics)
    t.equal(before.length, topics.length, 'every topic is retained before the restart')

    await th.restart()

    const after = await operatorSees(th, topics)
    const byTopic = (ms: ReceivedMessage[]) => Object.fromEntries(ms.map((m) => [m.topic, parse(m.payload)]))
    t.same(byTopic(after), byTopic(before), 'after the restart every topic is retained with the same content')
    const bobAgain = await connectAs(th, bob.id, 'Bob')
    t.match(
      await retainedOn(bobAgain.client, `users/${bob.id}`),
      { stageId: stage.id },
      'bob, reconnected, reads his profile with the current stage',
    )
    t.same(
      await retainedOn(bobAgain.client, `stages/${stage.id}/members/${bob.id}`),
      member,
      'and his member, as a member may',
    )
    const carolAgain = await connectAs(th, carol.id, 'Carol')
    t.equal(
      (await join(carolAgain, stage.id, group.id, 'keep')).seat,
      1,
      'a new joiner gets the next seat, and the stored password still works',
    )
    const aliceAgain = await connectAs(th, alice.id, 'Alice')
    t.match(
      await ok<StageState>(aliceAgain, 'stage.update', {
        stageId: stage.id,
        version: 1,
        patch: { width: 9 },
      }),
      { width: 9, version: 2, admins: [alice.id] },
      'the admin is still admin and the version carried over',
    )
  },
)

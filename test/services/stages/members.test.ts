import t, { type Test } from 'tap'
import type { MqttClient } from 'mqtt'
import type {
  ChatMessage,
  GroupState,
  MemberState,
  MixState,
  StageState,
  StageSummary,
} from '../../../schemas/actions/stage.ts'
import type { UserDoc } from '../../../services/collections.ts'
import type { MixDoc, StageTrackDoc } from '../../../services/stages/model.ts'
import {
  type ReceivedMessage,
  Requester,
  type Response,
  type TestHub,
  nextMessage,
  recordMessages,
  sleep,
  startTestHub,
  subackCodes,
  waitForMessage,
  waitUntil,
} from '../../helpers/hub.ts'

const json = <T = unknown>(payload: Buffer): T => JSON.parse(payload.toString()) as T

/** The result of a request that must succeed (setup steps: a failure here is a broken fixture). */
function must<T>(response: Response, what: string): T {
  if (!response.ok) throw new Error(`${what} failed: ${response.error?.code} ${response.error?.message}`)
  return response.result as T
}

function refused(t: Test, response: Response, code: string, what: string): void {
  t.match(response, { ok: false, error: { code, message: String } }, what)
}

interface Person {
  user: UserDoc
  client: MqttClient
  req: Requester
}

async function person(th: TestHub, name: string, clientId: string): Promise<Person> {
  const user = await th.hub.users.createUser({ name })
  const client = await th.connect({ clientId, token: th.token({ sub: user.id }) })
  return { user, client, req: new Requester(client) }
}

/**
 * The retained message a fresh subscriber gets on `topic` (read by an operator connection that may
 * see every topic), or undefined when the broker holds none.
 */
async function retained<T = unknown>(ops: MqttClient, topic: string, ms = 300): Promise<T | undefined> {
  try {
    const message = await nextMessage(ops, topic, ms)
    return message.retain && message.payload.length > 0 ? json<T>(message.payload) : undefined
  } catch {
    return undefined
  } finally {
    await ops.unsubscribeAsync(topic)
  }
}

/** Subscribes and asserts that every filter was granted. */
async function subscribed(t: Test, client: MqttClient, ...filters: string[]): Promise<void> {
  t.same(
    await subackCodes(client, filters),
    filters.map(() => 1),
    `${client.options.clientId} may subscribe to ${filters.join(', ')}`,
  )
}

/** The next live (non-empty) message on `topic` whose JSON satisfies `match`. */
function update<T>(client: MqttClient, topic: string, match: (value: T) => boolean, ms = 3000) {
  return waitForMessage(
    client,
    (m) => m.topic === topic && m.payload.length > 0 && match(json<T>(m.payload)),
    ms,
  ).then((m) => json<T>(m.payload))
}

/** The next zero-length publish on `topic` (a cleared retained topic). */
function cleared(client: MqttClient, topic: string, ms = 3000): Promise<ReceivedMessage> {
  return waitForMessage(client, (m) => m.topic === topic && m.payload.length === 0, ms)
}

const position = { x: 1.5, y: -2, z: 0.25, rX: 0, rY: 90, rZ: -45 }

/**
 * A hub with a stage administered by Alice (not a member) with two groups; Bob joined group 1 and
 * Carol group 2. Dave is a user with no relation to the stage. `ops` is an operator connection that
 * reads retained topics.
 */
async function stageWithMembers(t: Test, env: Record<string, string> = {}) {
  const th = await startTestHub(t, env)
  const ops = await th.connect({ clientId: 'ops', token: th.token({ sub: 'operator', role: 'admin' }) })
  const alice = await person(th, 'Alice', 'alice')
  const bob = await person(th, 'Bob', 'bob')
  const carol = await person(th, 'Carol', 'carol')
  const dave = await person(th, 'Dave', 'dave')
  const stage = must<StageState>(
    await alice.req.request('stage.create', { name: 'Rehearsal' }),
    'stage.create',
  )
  const g1 = must<GroupState>(
    await alice.req.request('group.create', { stageId: stage.id, name: 'Strings', color: '#aa0000' }),
    'group.create',
  )
  const g2 = must<GroupState>(
    await alice.req.request('group.create', { stageId: stage.id, name: 'Winds', color: '#00aa00' }),
    'group.create',
  )
  const bobMember = must<MemberState>(
    await bob.req.request('stage.join', { stageId: stage.id, groupId: g1.id }),
    'bob joins',
  )
  const carolMember = must<MemberState>(
    await carol.req.request('stage.join', { stageId: stage.id, groupId: g2.id }),
    'carol joins',
  )
  const s = stage.id
  const topics = {
    member: (userId: string) => `stages/${s}/members/${userId}`,
    group: (groupId: string) => `stages/${s}/groups/${groupId}`,
    summary: (userId: string) => `users/${userId}/stages/${s}`,
    mix: (userId: string, kind: string, id: string) => `users/${userId}/mix/${kind}/${id}`,
    chat: `stages/${s}/chat`,
  }
  return { th, ops, alice, bob, carol, dave, stage, g1, g2, bobMember, carolMember, topics }
}

// ── member.update ───────────────────────────────────────────────────────────────────────────

t.test('member.update', async (t) => {
  const { th, ops, alice, bob, carol, stage, g1, g2, bobMember, carolMember, topics } =
    await stageWithMembers(t)
  const bobTopic = topics.member(bob.user.id)
  t.match(await retained(ops, bobTopic), {
    id: bobMember.id,
    groupId: g1.id,
    seat: 0,
    joined: true,
    online: false, // Bob has no device online (docs/protocol/README.md#presence)
    name: 'Bob',
  })

  await t.test('an admin changes group, director flag, volume, muted and position', async (t) => {
    await subscribed(t, carol.client, bobTopic)
    const seen = update<MemberState>(carol.client, bobTopic, (m) => m.version > bobMember.version)
    const response = await alice.req.request('member.update', {
      stageId: stage.id,
      userId: bob.user.id,
      patch: { groupId: g2.id, isDirector: true, volume: 0.5, muted: true, position },
      version: bobMember.version,
    })
    t.equal(response.ok, true, 'accepted')
    const expected = {
      ...bobMember,
      groupId: g2.id,
      isDirector: true,
      volume: 0.5,
      muted: true,
      position,
      version: bobMember.version + 1,
    }
    t.same(response.result, expected, 'the result is the updated member')
    t.same(await seen, expected, 'another member of the stage receives the republished member')
    t.same(await retained(ops, bobTopic), expected, 'and it is retained')

    const back = await alice.req.request('member.update', {
      stageId: stage.id,
      userId: bob.user.id,
      patch: { groupId: g1.id },
    })
    t.match(
      back,
      { ok: true, result: { groupId: g1.id, isDirector: true, volume: 0.5, muted: true, position } },
      'without version: fields not in the patch stay',
    )
  })

  await t.test('a member who is not an admin is forbidden', async (t) => {
    const before = await retained(ops, topics.member(carol.user.id))
    refused(
      t,
      await bob.req.request('member.update', {
        stageId: stage.id,
        userId: carol.user.id,
        patch: { muted: true },
      }),
      'forbidden',
      'bob may not change carol',
    )
    refused(
      t,
      await bob.req.request('member.update', {
        stageId: stage.id,
        userId: bob.user.id,
        patch: { isDirector: true },
      }),
      'forbidden',
      'nor make himself director',
    )
    t.same(await retained(ops, topics.member(carol.user.id)), before, 'carol is unchanged')
    t.same(before, carolMember, 'carol is as she joined')
  })

  await t.test('a group of another stage is not found', async (t) => {
    const other = must<StageState>(await alice.req.request('stage.create', { name: 'Other' }), 'stage.create')
    const foreign = must<GroupState>(
      await alice.req.request('group.create', { stageId: other.id, name: 'Foreign', color: '#0000aa' }),
      'group.create',
    )
    const before = await retained<MemberState>(ops, bobTopic)
    refused(
      t,
      await alice.req.request('member.update', {
        stageId: stage.id,
        userId: bob.user.id,
        patch: { groupId: foreign.id },
      }),
      'not_found',
      'the group belongs to another stage',
    )
    refused(
      t,
      await alice.req.request('member.update', {
        stageId: stage.id,
        userId: bob.user.id,
        patch: { groupId: 'no-such-group' },
      }),
      'not_found',
      'an unknown group',
    )
    refused(
      t,
      await alice.req.request('member.update', {
        stageId: other.id,
        userId: bob.user.id,
        patch: { muted: true },
      }),
      'not_found',
      'bob is no member of the other stage',
    )
    refused(
      t,
      await alice.req.request('member.update', {
        stageId: 'no-such-stage',
        userId: bob.user.id,
        patch: { muted: true },
      }),
      'not_found',
      'an unknown stage',
    )
    t.same(await retained(ops, bobTopic), before, 'bob is unchanged')
  })

  await t.test('a stale version conflicts and changes nothing', async (t) => {
    const before = (await retained<MemberState>(ops, bobTopic))!
    refused(
      t,
      await alice.req.request('member.update', {
        stageId: stage.id,
        userId: bob.user.id,
        patch: { volume: 3 },
        version: before.version - 1,
      }),
      'conflict',
      'an older version',
    )
    refused(
      t,
      await alice.req.request('member.update', {
        stageId: stage.id,
        userId: bob.user.id,
        patch: { volume: 3 },
        version: before.version + 1,
      }),
      'conflict',
      'a future version',
    )
    t.same(await retained(ops, bobTopic), before, 'bob is unchanged')
    t.match(
      await alice.req.request('member.update', {
        stageId: stage.id,
        userId: bob.user.id,
        patch: { volume: 3 },
        version: before.version,
      }),
      { ok: true, result: { volume: 3, version: before.version + 1 } },
      'the current version is accepted',
    )
  })

  await t.test('fields outside the whitelist are refused and nothing changes', async (t) => {
    const before = (await retained<MemberState>(ops, bobTopic))!
    const recorder = recordMessages(carol.client)
    for (const patch of [
      { seat: 5 },
      { userId: carol.user.id },
      { stageId: 'elsewhere' },
      { online: false },
      { name: 'Mallory' },
      { version: 99 },
      { muted: true, seat: 29 },
    ]) {
      refused(
        t,
        await alice.req.request('member.update', { stageId: stage.id, userId: bob.user.id, patch }),
        'invalid_request',
        `patch ${JSON.stringify(patch)}`,
      )
    }
    refused(
      t,
      await alice.req.request('member.update', { stageId: stage.id, userId: bob.user.id, patch: {} }),
      'invalid_request',
      'an empty patch',
    )
    refused(
      t,
      await alice.req.request('member.update', {
        stageId: stage.id,
        userId: bob.user.id,
        patch: { volume: 5 },
      }),
      'invalid_request',
      'a volume out of range',
    )
    await sleep(100)
    recorder.stop()
    t.same(
      recorder.messages.filter((m) => m.topic === bobTopic),
      [],
      'no member update was published',
    )
    t.same(await retained(ops, bobTopic), before, 'bob is unchanged')
    const stored = await th.hub.store.find<MemberState>('members', { stageId: stage.id, userId: bob.user.id })
    t.equal(stored.length, 1)
    t.match(
      stored[0],
      { seat: before.seat, stageId: stage.id, userId: bob.user.id, version: before.version },
      'and so is the store',
    )
  })
})

// ── member.remove ───────────────────────────────────────────────────────────────────────────

t.test('member.remove', async (t) => {
  const { ops, alice, bob, carol, stage, g1, bobMember, topics } = await stageWithMembers(t)
  const stageTree = `stages/${stage.id}/#`
  await subscribed(t, bob.client, stageTree, topics.summary(bob.user.id))
  await subscribed(t, carol.client, stageTree)
  t.match(await retained(ops, topics.summary(bob.user.id)), { isMember: true, joined: true })
  t.match(await retained(ops, topics.mix(bob.user.id, 'member', bobMember.id)), { muted: true })
  t.match(
    await retained(ops, `users/${bob.user.id}`),
    { id: bob.user.id, stageId: stage.id },
    "bob's profile names the stage he is in",
  )

  refused(
    t,
    await carol.req.request('member.remove', { stageId: stage.id, userId: bob.user.id }),
    'forbidden',
    'a member who is not an admin may not remove another',
  )
  t.ok(await retained(ops, topics.member(bob.user.id)), 'bob is still a member')
  refused(
    t,
    await alice.req.request('member.remove', { stageId: stage.id, userId: 'nobody' }),
    'not_found',
    'removing someone who is not a member',
  )

  const summaryCleared = cleared(bob.client, topics.summary(bob.user.id))
  const memberCleared = cleared(carol.client, topics.member(bob.user.id))
  const response = await alice.req.request('member.remove', { stageId: stage.id, userId: bob.user.id })
  t.same(response, { id: response.id, ok: true, result: {} }, 'the admin removes bob')
  t.equal((await memberCleared).payload.length, 0, 'remaining members see the member topic cleared')
  t.equal((await summaryCleared).payload.length, 0, "bob's summary is cleared")
  t.equal(await retained(ops, topics.member(bob.user.id)), undefined, 'no member topic is retained')
  t.equal(await retained(ops, topics.summary(bob.user.id)), undefined, 'no summary is retained')
  t.equal(
    await retained(ops, topics.mix(bob.user.id, 'member', bobMember.id)),
    undefined,
    "bob's mixes in the stage are gone",
  )
  const profile = await retained<Record<string, unknown>>(ops, `users/${bob.user.id}`)
  t.match(profile, { id: bob.user.id, name: 'Bob' }, 'bob still has a profile')
  t.notOk(profile && 'stageId' in profile, 'which no longer names the stage')

  // access ends at once, including the subscription bob already holds
  const bobAfter = recordMessages(bob.client)
  const carolSees = update<GroupState>(carol.client, topics.group(g1.id), (g) => g.name === 'Strings & Brass')
  t.match(
    await alice.req.request('group.update', {
      stageId: stage.id,
      groupId: g1.id,
      patch: { name: 'Strings & Brass' },
    }),
    { ok: true },
  )
  t.match(
    await carolSees,
    { id: g1.id, name: 'Strings & Brass' },
    'a remaining member receives the group update',
  )
  await sleep(200)
  bobAfter.stop()
  t.same(
    bobAfter.messages.filter((m) => m.topic.startsWith(`stages/${stage.id}`)).map((m) => m.topic),
    [],
    'the removed member receives nothing from the stage on the subscription it still holds',
  )
  t.same(
    await subackCodes(bob.client, [`stages/${stage.id}`, topics.chat]),
    [128, 128],
    'and may not subscribe again',
  )
  refused(t, await bob.req.request('chat.send', { text: 'still here?' }), 'forbidden', 'nor chat in it')
  refused(
    t,
    await bob.req.request('mix.set', { kind: 'group', id: g1.id, volume: 1 }),
    'forbidden',
    'nor set a mix in it',
  )
  const rejoined = await bob.req.request('stage.join', { stageId: stage.id, groupId: g1.id })
  t.match(
    rejoined,
    { ok: true, result: { userId: bob.user.id, joined: true } },
    'bob may join again (no ban)',
  )
  t.not((rejoined.result as MemberState).id, bobMember.id, 'as a new member')

  // an admin who is also a member keeps the stage in their list when the membership goes
  must(await alice.req.request('stage.join', { stageId: stage.id, groupId: g1.id }), 'alice joins')
  t.match(await retained(ops, topics.summary(alice.user.id)), { isAdmin: true, isMember: true, joined: true })
  t.match(await alice.req.request('member.remove', { stageId: stage.id, userId: alice.user.id }), {
    ok: true,
  })
  t.equal(await retained(ops, topics.member(alice.user.id)), undefined, "alice's member topic is cleared")
  t.match(
    await retained(ops, topics.summary(alice.user.id)),
    { isAdmin: true, isMember: false, joined: false },
    'her summary stays, as an admin who is no member',
  )
  t.same(await subackCodes(alice.client, [`stages/${stage.id}`]), [1], 'and she still sees the stage')
})

// ── mixes ───────────────────────────────────────────────────────────────────────────────────

t.test('mix.set and mix.remove', async (t) => {
  const { th, ops, bob, carol, dave, stage, g1, g2, bobMember, carolMember, topics } =
    await stageWithMembers(t)
  const bobId = bob.user.id

  await t.test('on first join, one’s own member is muted for oneself', async (t) => {
    for (const [who, member] of [
      [bob, bobMember],
      [carol, carolMember],
    ] as const) {
      const topic = topics.mix(who.user.id, 'member', member.id)
      await subscribed(t, who.client, topic)
      t.same(
        await retained(ops, topic),
        { kind: 'member', id: member.id, stageId: stage.id, muted: true, version: 1 },
        `${who.user.name} hears themself through the monitor only`,
      )
    }
    t.equal(
      await retained(ops, topics.mix(bobId, 'member', carolMember.id)),
      undefined,
      'others are not muted',
    )
  })

  await t.test('a member sets overrides for a group, another member and themself', async (t) => {
    const groupMix = await bob.req.request('mix.set', { kind: 'group', id: g2.id, volume: 0.7 })
    t.same(groupMix.result, { kind: 'group', id: g2.id, stageId: stage.id, volume: 0.7, version: 1 }, 'group')
    const memberMix = await bob.req.request('mix.set', {
      kind: 'member',
      id: carolMember.id,
      muted: true,
      position,
    })
    t.same(
      memberMix.result,
      { kind: 'member', id: carolMember.id, stageId: stage.id, muted: true, position, version: 1 },
      'another member',
    )
    const selfMix = await bob.req.request('mix.set', { kind: 'member', id: bobMember.id, volume: 0.3 })
    t.same(
      selfMix.result,
      { kind: 'member', id: bobMember.id, stageId: stage.id, muted: true, volume: 0.3, version: 2 },
      'themself: the default mute stays',
    )
    for (const r of [groupMix, memberMix, selfMix]) {
      const mix = r.result as MixState
      t.same(
        await retained(ops, topics.mix(bobId, mix.kind, mix.id)),
        mix,
        `users/bob/mix/${mix.kind}/… is retained`,
      )
    }
  })

  await t.test('a mix is visible only to its user', async (t) => {
    const topic = topics.mix(bobId, 'group', g2.id)
    const own = nextMessage(bob.client, topic)
    t.same(json((await own).payload), await retained(ops, topic), 'bob receives his own override')
    t.same(
      await subackCodes(carol.client, [topic]),
      [128],
      'carol, a member of the same stage, may not subscribe',
    )
    t.same(await subackCodes(dave.client, [topic]), [128], 'nor may an outsider')
    t.same(
      await subackCodes(carol.client, [`users/${bobId}/mix/#`, `users/+/mix/group/${g2.id}`, 'users/#']),
      [128, 128, 128],
      'wildcards do not widen access',
    )
  })

  await t.test('partial updates keep earlier fields; versions are checked', async (t) => {
    const topic = topics.mix(bobId, 'group', g2.id)
    await subscribed(t, bob.client, topic)
    const live = update<MixState>(bob.client, topic, (m) => m.version === 2)
    const muted = await bob.req.request('mix.set', { kind: 'group', id: g2.id, muted: true, version: 1 })
    t.same(
      muted.result,
      { kind: 'group', id: g2.id, stageId: stage.id, volume: 0.7, muted: true, version: 2 },
      'volume stays',
    )
    t.same(await live, muted.result, 'the override is republished to its user')
    const moved = await bob.req.request('mix.set', {
      kind: 'group',
      id: g2.id,
      position,
      directivity: 'cardioid',
    })
    t.same(
      moved.result,
      {
        kind: 'group',
        id: g2.id,
        stageId: stage.id,
        volume: 0.7,
        muted: true,
        position,
        directivity: 'cardioid',
        version: 3,
      },
      'volume and muted stay',
    )
    refused(
      t,
      await bob.req.request('mix.set', { kind: 'group', id: g2.id, volume: 2, version: 2 }),
      'conflict',
      'a stale version',
    )
    refused(
      t,
      await bob.req.request('mix.set', { kind: 'group', id: g1.id, volume: 2, version: 1 }),
      'conflict',
      'a version for an override that does not exist yet',
    )
    t.same(await retained(ops, topic), moved.result, 'the override is unchanged')
    t.equal(
      await retained(ops, topics.mix(bobId, 'group', g1.id)),
      undefined,
      'no override for group 1 was created',
    )
    refused(
      t,
      await bob.req.request('mix.set', { kind: 'group', id: g2.id }),
      'invalid_request',
      'a mix.set without any field to set',
    )
    refused(
      t,
      await bob.req.request('mix.set', { kind: 'group', id: g2.id, volume: 1, stageId: stage.id }),
      'invalid_request',
      'an unknown field',
    )
  })

  await t.test('a non-member may not set overrides in the stage', async (t) => {
    for (const [kind, id] of [
      ['group', g1.id],
      ['member', bobMember.id],
    ] as const) {
      refused(t, await dave.req.request('mix.set', { kind, id, volume: 0 }), 'forbidden', `dave on ${kind}`)
      t.equal(
        await retained(ops, topics.mix(dave.user.id, kind, id)),
        undefined,
        `no ${kind} override for dave`,
      )
    }
    t.same(await th.hub.store.find('mixes', { userId: dave.user.id }), [], 'nothing stored for dave')
  })

  await t.test('unknown targets are not found', async (t) => {
    refused(
      t,
      await bob.req.request('mix.set', { kind: 'group', id: 'no-such-group', volume: 1 }),
      'not_found',
      'group',
    )
    refused(
      t,
      await bob.req.request('mix.set', { kind: 'member', id: 'no-such-member', volume: 1 }),
      'not_found',
      'member',
    )
    refused(
      t,
      await bob.req.request('mix.set', { kind: 'track', id: 'no-such-track', volume: 1 }),
      'not_found',
      'track',
    )
    refused(
      t,
      await bob.req.request('mix.set', { kind: 'member', id: g1.id, volume: 1 }),
      'not_found',
      'a group id given as a member',
    )
    refused(
      t,
      await bob.req.request('mix.set', { kind: 'group', id: carolMember.id, volume: 1 }),
      'not_found',
      'a member id given as a group',
    )
  })

  await t.test('mix.remove clears the override', async (t) => {
    const topic = topics.mix(bobId, 'group', g2.id)
    await subscribed(t, bob.client, topic)
    const gone = cleared(bob.client, topic)
    t.same((await bob.req.request('mix.remove', { kind: 'group', id: g2.id })).result, {}, 'removed')
    t.equal((await gone).payload.length, 0, 'bob sees the topic cleared')
    t.equal(await retained(ops, topic), undefined, 'nothing is retained')
    refused(
      t,
      await bob.req.request('mix.remove', { kind: 'group', id: g2.id }),
      'not_found',
      'a second removal',
    )
    refused(t, await bob.req.request('mix.remove', { kind: 'group', id: g1.id }), 'not_found', 'never set')
    refused(
      t,
      await carol.req.request('mix.remove', { kind: 'member', id: carolMember.id, userId: bobId }),
      'invalid_request',
      'one cannot name another user',
    )
    refused(
      t,
      await carol.req.request('mix.remove', { kind: 'member', id: bobMember.id }),
      'not_found',
      "carol cannot remove bob's override of himself",
    )
    t.match(
      await retained(ops, topics.mix(bobId, 'member', bobMember.id)),
      { muted: true, volume: 0.3 },
      "bob's stays",
    )
    const again = await bob.req.request('mix.set', { kind: 'group', id: g2.id, volume: 1.5 })
    t.same(
      again.result,
      { kind: 'group', id: g2.id, stageId: stage.id, volume: 1.5, version: 1 },
      'a fresh override starts over',
    )
  })
})

// ── chat ────────────────────────────────────────────────────────────────────────────────────

t.test('chat.send', async (t) => {
  const { th, alice, bob, carol, dave, stage, topics } = await stageWithMembers(t)
  await subscribed(t, bob.client, topics.chat)
  await subscribed(t, carol.client, topics.chat)
  await subscribed(t, alice.client, topics.chat)
  t.same(await subackCodes(dave.client, [topics.chat]), [128], 'a non-member may not subscribe to the chat')
  const carolChat = recordMessages(carol.client)
  const chatOf = (r: { messages: ReceivedMessage[] }) =>
    r.messages.filter((m) => m.topic === topics.chat).map((m) => json<ChatMessage>(m.payload))

  const toCarol = update<ChatMessage>(carol.client, topics.chat, (m) => m.text === 'hello stage')
  const toAlice = update<ChatMessage>(alice.client, topics.chat, (m) => m.text === 'hello stage')
  const toBob = update<ChatMessage>(bob.client, topics.chat, (m) => m.text === 'hello stage')
  const before = Date.now()
  const sent = await bob.req.request('chat.send', { text: 'hello stage' })
  t.equal(sent.ok, true, 'a member in the stage sends')
  const message = sent.result as ChatMessage
  t.match(message, { stageId: stage.id, userId: bob.user.id, name: 'Bob', text: 'hello stage', id: String })
  const time = Date.parse(message.time)
  t.ok(time >= before - 1000 && time <= Date.now() + 1000, 'time is now')
  t.equal(new Date(time).toISOString(), message.time, 'as an ISO date-time')
  t.same(await toCarol, message, 'another member receives it')
  t.same(await toBob, message, 'the sender receives it')
  t.same(await toAlice, message, 'an admin receives it')

  await t.test('chat is not retained', async (t) => {
    const late = await th.connect({ clientId: 'carol-late', token: th.token({ sub: carol.user.id }) })
    const recorder = recordMessages(late)
    await subscribed(t, late, topics.chat)
    await sleep(300)
    recorder.stop()
    t.same(recorder.messages, [], 'a late subscriber gets nothing')
  })

  await t.test('invalid texts are refused', async (t) => {
    refused(
      t,
      await bob.req.request('chat.send', { text: 'x'.repeat(1001) }),
      'invalid_request',
      '1001 characters',
    )
    refused(t, await bob.req.request('chat.send', { text: '' }), 'invalid_request', 'empty')
    refused(t, await bob.req.request('chat.send', {}), 'invalid_request', 'missing')
    refused(
      t,
      await bob.req.request('chat.send', { text: 'hi', stageId: stage.id }),
      'invalid_request',
      'extra field',
    )
    const longest = await bob.req.request('chat.send', { text: 'y'.repeat(1000) })
    t.match(longest, { ok: true, result: { text: 'y'.repeat(1000) } }, '1000 characters are fine')
  })

  await t.test('only members currently in a stage may chat', async (t) => {
    refused(t, await dave.req.request('chat.send', { text: 'let me in' }), 'forbidden', 'a user in no stage')
    refused(
      t,
      await alice.req.request('chat.send', { text: 'admin here' }),
      'forbidden',
      'an admin who has not joined',
    )
    t.match(await carol.req.request('stage.leave', {}), { ok: true })
    refused(t, await carol.req.request('chat.send', { text: 'bye' }), 'forbidden', 'a member who left')
    const later = await bob.req.request('chat.send', { text: 'carol left' })
    t.equal(later.ok, true)
    const toAliceLater = update<ChatMessage>(alice.client, topics.chat, (m) => m.text === 'last one')
    t.equal((await bob.req.request('chat.send', { text: 'last one' })).ok, true)
    t.equal((await toAliceLater).text, 'last one', 'messages still flow')
  })

  await sleep(100)
  carolChat.stop()
  t.same(
    chatOf(carolChat).map((m) => m.text),
    ['hello stage', 'y'.repeat(1000), 'carol left', 'last one'],
    'carol received exactly the accepted messages, refused ones never went out (she keeps the subscription as a member)',
  )
  t.ok(
    chatOf(carolChat).every((m) => m.userId === bob.user.id && m.name === 'Bob'),
    'with the sender',
  )
})

t.test('chat.send is rate limited per user', async (t) => {
  const { bob, carol, topics } = await stageWithMembers(t, {
    QUOTA_CHAT_BURST: '3',
    QUOTA_CHAT_PER_SECOND: '1',
  })
  await subscribed(t, carol.client, topics.chat)
  const received = recordMessages(carol.client)
  const responses = await Promise.all(
    [1, 2, 3, 4, 5].map((n) => bob.req.request('chat.send', { text: `message ${n}` })),
  )
  const ok = responses.filter((r) => r.ok)
  const limited = responses.filter((r) => !r.ok)
  t.equal(ok.length, 3, 'the burst of 3 goes through')
  t.equal(limited.length, 2, 'the rest is refused')
  for (const r of limited) t.match(r.error, { code: 'rate_limited', message: String })
  await waitUntil(
    () => received.messages.filter((m) => m.topic === topics.chat).length >= 3,
    'carol has 3 messages',
  )
  await sleep(100)
  received.stop()
  t.same(
    received.messages
      .filter((m) => m.topic === topics.chat)
      .map((m) => json<ChatMessage>(m.payload).text)
      .sort(),
    ok.map((r) => (r.result as ChatMessage).text).sort(),
    'only the accepted messages are delivered',
  )
  const carolsTurn = await carol.req.request('chat.send', { text: 'my own bucket' })
  t.equal(carolsTurn.ok, true, "another user's bucket is separate")
  await sleep(1100)
  t.equal((await bob.req.request('chat.send', { text: 'after a second' })).ok, true, 'the bucket refills')
})

// ── names ───────────────────────────────────────────────────────────────────────────────────

t.test("user.update renames the user's member in every stage", async (t) => {
  const { ops, alice, bob, carol, stage, topics } = await stageWithMembers(t)
  const other = must<StageState>(await alice.req.request('stage.create', { name: 'Second' }), 'stage.create')
  const og = must<GroupState>(
    await alice.req.request('group.create', { stageId: other.id, name: 'Choir', color: '#123456' }),
    'group.create',
  )
  // bob joins the second stage: he leaves the first but stays a member (offline)
  must(
    await bob.req.request('stage.join', { stageId: other.id, groupId: og.id }),
    'bob joins the second stage',
  )
  const first = (await retained<MemberState>(ops, topics.member(bob.user.id)))!
  const secondTopic = `stages/${other.id}/members/${bob.user.id}`
  const second = (await retained<MemberState>(ops, secondTopic))!
  t.match(
    first,
    { stageId: stage.id, name: 'Bob', joined: false, online: false, seat: null },
    'out of the first stage',
  )
  t.match(second, { stageId: other.id, name: 'Bob', joined: true }, 'in the second stage')
  const carolMember = await retained(ops, topics.member(carol.user.id))

  await subscribed(t, carol.client, topics.member(bob.user.id))
  const carolSees = update<MemberState>(carol.client, topics.member(bob.user.id), (m) => m.name === 'Robert')
  const renamed = await bob.req.request('user.update', { name: 'Robert' })
  t.match(renamed, { ok: true, result: { id: bob.user.id, name: 'Robert' } })
  t.same(
    await carolSees,
    { ...first, name: 'Robert', version: first.version + 1 },
    'a member of the first stage sees it',
  )
  t.same(await retained(ops, topics.member(bob.user.id)), {
    ...first,
    name: 'Robert',
    version: first.version + 1,
  })
  t.same(
    await retained(ops, secondTopic),
    { ...second, name: 'Robert', version: second.version + 1 },
    'and in the second',
  )
  t.same(await retained(ops, topics.member(carol.user.id)), carolMember, "other members' docs are untouched")
  t.match(await retained(ops, `users/${bob.user.id}`), { name: 'Robert' }, 'the profile too')

  const avatarOnly = await bob.req.request('user.update', { avatarUrl: 'https://example.com/bob.png' })
  t.equal(avatarOnly.ok, true)
  t.equal(
    (await retained<MemberState>(ops, secondTopic))!.version,
    second.version + 1,
    'a change that does not touch the name does not republish members',
  )
  const chat = await bob.req.request('chat.send', { text: 'call me Robert' })
  t.match(chat, { ok: true, result: { name: 'Robert', stageId: other.id } }, 'chat uses the new name')
})

// ── stage.forget ────────────────────────────────────────────────────────────────────────────

t.test('stage.forget removes the membership and every mix hanging off it', async (t) => {
  const { th, ops, bob, carol, dave, stage, g1, bobMember, carolMember, topics } = await stageWithMembers(t)
  const b = bob.user.id
  const c = carol.user.id
  // a media track of carol's in the stage, as a router would announce one
  const carolTrack = 'track-carol-1'
  await th.hub.store.transaction(async (tx) => {
    tx.insert<StageTrackDoc>('stage_tracks', {
      id: carolTrack,
      stageId: stage.id,
      userId: c,
      memberId: carolMember.id,
      deviceId: 'carols-browser',
      kind: 'audio',
    })
  })
  must(await bob.req.request('mix.set', { kind: 'member', id: carolMember.id, volume: 0.2 }), 'bob on carol')
  must(
    await bob.req.request('mix.set', { kind: 'track', id: carolTrack, volume: 0.4 }),
    "bob on carol's track",
  )
  must(await bob.req.request('mix.set', { kind: 'group', id: g1.id, volume: 0.6 }), 'bob on group 1')
  must(await carol.req.request('mix.set', { kind: 'member', id: bobMember.id, muted: true }), 'carol on bob')
  must(await carol.req.request('mix.set', { kind: 'group', id: g1.id, volume: 1.2 }), 'carol on group 1')

  const gone = [
    topics.mix(b, 'member', carolMember.id),
    topics.mix(b, 'track', carolTrack),
    topics.mix(c, 'member', bobMember.id),
    topics.mix(c, 'group', g1.id),
    topics.mix(c, 'member', carolMember.id),
    topics.member(c),
    topics.summary(c),
  ]
  const kept = [
    topics.mix(b, 'group', g1.id),
    topics.mix(b, 'member', bobMember.id),
    topics.member(b),
    topics.summary(b),
    `stages/${stage.id}`,
  ]
  for (const topic of [...gone, ...kept]) t.ok(await retained(ops, topic), `before: ${topic} is retained`)

  await subscribed(t, bob.client, topics.mix(b, 'member', carolMember.id), topics.mix(b, 'track', carolTrack))
  const bobSees = [
    cleared(bob.client, topics.mix(b, 'member', carolMember.id)),
    cleared(bob.client, topics.mix(b, 'track', carolTrack)),
  ]
  refused(
    t,
    await dave.req.request('stage.forget', { stageId: stage.id }),
    'not_found',
    'a non-member has nothing to forget',
  )
  t.same(
    await carol.req.request('stage.forget', { stageId: stage.id }).then((r) => r.result),
    {},
    'carol forgets the stage',
  )
  t.same(
    (await Promise.all(bobSees)).map((m) => [m.topic, m.payload.length]),
    [
      [topics.mix(b, 'member', carolMember.id), 0],
      [topics.mix(b, 'track', carolTrack), 0],
    ],
    "bob sees his overrides of carol and of carol's track cleared",
  )
  for (const topic of gone) t.equal(await retained(ops, topic), undefined, `after: ${topic} is cleared`)
  for (const topic of kept) t.ok(await retained(ops, topic), `after: ${topic} stays`)
  t.same(await th.hub.store.find('mixes', { userId: c }), [], "none of carol's mixes is stored")
  t.same(
    (await th.hub.store.find<MixDoc>('mixes', { userId: b })).map((m) => m.targetId).sort(),
    [bobMember.id, g1.id].sort(),
    "bob's unrelated mixes are stored",
  )
  t.same(await th.hub.store.find('stage_tracks', { memberId: carolMember.id }), [], "carol's track is gone")
  t.same(await subackCodes(carol.client, [`stages/${stage.id}`]), [128], 'carol no longer sees the stage')
  const profile = await retained<Record<string, unknown>>(ops, `users/${c}`)
  t.ok(profile && !('stageId' in profile), 'her profile no longer names the stage she was in')
  refused(t, await carol.req.request('stage.forget', { stageId: stage.id }), 'not_found', 'forgetting twice')
  refused(
    t,
    await carol.req.request('mix.set', { kind: 'group', id: g1.id, volume: 1 }),
    'forbidden',
    'no more mixes',
  )
})

// ── secrets ─────────────────────────────────────────────────────────────────────────────────

t.test('the password is never in any message a member receives', async (t) => {
  const th = await startTestHub(t)
  const password = 'Correct-Horse-7f3a'
  const newPassword = 'Battery-Staple-91c'
  const alice = await person(th, 'Alice', 'alice')
  const bob = await person(th, 'Bob', 'bob')
  const aliceLog = recordMessages(alice.client)
  const bobLog = recordMessages(bob.client)
  await subscribed(t, alice.client, `users/${alice.user.id}/#`)
  await subscribed(t, bob.client, `users/${bob.user.id}/#`)

  const stage = must<StageState>(
    await alice.req.request('stage.create', { name: 'Private', password }),
    'stage.create',
  )
  t.equal(stage.hasPassword, true)
  await subscribed(t, alice.client, `stages/${stage.id}/#`)
  const group = must<GroupState>(
    await alice.req.request('group.create', { stageId: stage.id, name: 'All', color: '#abcdef' }),
    'group.create',
  )
  refused(
    t,
    await bob.req.request('stage.join', { stageId: stage.id, groupId: group.id }),
    'forbidden',
    'no password',
  )
  refused(
    t,
    await bob.req.request('stage.join', { stageId: stage.id, groupId: group.id, password: 'wrong' }),
    'forbidden',
    'a wrong password',
  )
  const member = must<MemberState>(
    await bob.req.request('stage.join', { stageId: stage.id, groupId: group.id, password }),
    'bob joins with the password',
  )
  const stageSeen = update<StageState>(bob.client, `stages/${stage.id}`, () => true)
  await subscribed(t, bob.client, `stages/${stage.id}/#`)
  t.equal((await stageSeen).hasPassword, true, 'bob sees that the stage has a password')
  const summary = (await retained<StageSummary>(bob.client, `users/${bob.user.id}/stages/${stage.id}`))!
  t.match(summary, { hasPassword: true, isMember: true, joined: true })

  const renamed = update<StageState>(bob.client, `stages/${stage.id}`, (s) => s.name === 'Private 2')
  must(
    await alice.req.request('stage.update', {
      stageId: stage.id,
      patch: { name: 'Private 2', password: newPassword },
    }),
    'stage.update',
  )
  t.equal((await renamed).hasPassword, true)
  must(
    await alice.req.request('member.update', {
      stageId: stage.id,
      userId: bob.user.id,
      patch: { volume: 2 },
    }),
    'member.update',
  )
  must(await bob.req.request('mix.set', { kind: 'group', id: group.id, volume: 0.5 }), 'mix.set')
  must(await bob.req.request('mix.set', { kind: 'member', id: member.id, volume: 0.5 }), 'mix.set')
  must(await bob.req.request('chat.send', { text: 'is it safe?' }), 'chat.send')
  const last = update<StageState>(bob.client, `stages/${stage.id}`, (s) => s.name === 'Private 3')
  must(
    await alice.req.request('stage.update', {
      stageId: stage.id,
      patch: { name: 'Private 3', password: null },
    }),
    'stage.update',
  )
  t.equal((await last).hasPassword, false, 'hasPassword follows the removal')
  await sleep(200)
  aliceLog.stop()
  bobLog.stop()

  const bobTopics = new Set(bobLog.messages.map((m) => m.topic))
  for (const topic of [
    `clients/bob/res`,
    `stages/${stage.id}`,
    `stages/${stage.id}/groups/${group.id}`,
    `stages/${stage.id}/members/${bob.user.id}`,
    `stages/${stage.id}/chat`,
    `users/${bob.user.id}/stages/${stage.id}`,
    `users/${bob.user.id}/mix/group/${group.id}`,
    `users/${bob.user.id}/mix/member/${member.id}`,
  ])
    t.ok(bobTopics.has(topic), `bob received ${topic}`)
  for (const [who, log] of [
    ['bob', bobLog],
    ['alice', aliceLog],
  ] as const) {
    const leaks = log.messages.filter((m) =>
      [password, newPassword, 'scrypt', 'passwordHash'].some((secret) =>
        m.payload.toString().includes(secret),
      ),
    )
    t.same(
      leaks.map((m) => m.topic),
      [],
      `none of the ${log.messages.length} messages ${who} received contains the password or its hash`,
    )
  }
})

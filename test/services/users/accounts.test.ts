import t from 'tap'
import type { UserDoc } from '../../../services/collections.ts'
import { type TestHub, connackCode, connectionClosed, startTestHub, waitUntil } from '../../helpers/hub.ts'
import { type Actor, actor, connectDevice, ok, refused, retainedOn, roomy } from '../../helpers/actors.ts'
import { Requester } from '../../helpers/hub.ts'

/**
 * Accounts secured by their owners (issue 10, item 8): sign out everywhere, password change and
 * account deletion, through real MQTT clients and HTTP against a real hub.
 */

interface FreshToken {
  token: string
  expiresAt: string
  generation: number
}

interface TokenReply {
  userId: string
  token: string
}

async function post(th: TestHub, path: string, body: unknown): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`${th.httpUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  return { status: response.status, body: await response.json() }
}

let seq = 0
/** A connection with a given token (a new client id each time). */
async function connectWith(th: TestHub, userId: string, token: string): Promise<Actor> {
  const client = await th.connect({ clientId: `conn-${++seq}`, token })
  return { id: userId, name: userId, client, req: new Requester(client) }
}

const connack = (th: TestHub, token: string) =>
  connackCode(th.mqttUrl, { clientId: `probe-${++seq}`, username: 'token', password: token })

const ann = { email: 'ann@example.org', password: 'first long passphrase', name: 'Ann' }
const annLogin = { email: ann.email, password: ann.password }

t.test(
  'user.signOut closes the user’s other connections, refuses their old tokens (CONNACK 5) and hands the caller a new token that works',
  async (t) => {
    const th = await startTestHub(t)
    const user = await th.hub.users.createUser({ name: 'Ann' })
    const oldToken = th.token({ sub: user.id, name: 'Ann' })
    const laptop = await connectWith(th, user.id, oldToken)
    const phone = await connectWith(th, user.id, oldToken)
    const webClient = await th.connect({ clientId: `web-${++seq}`, token: oldToken, ws: true })
    const bob = await actor(th, 'Bob')
    const box = await ok<{ device: { id: string }; token: string }>(laptop, 'device.create', {
      name: 'Box',
      kind: 'ovbox',
    })
    const device = await connectDevice(th, box.device.id, box.token)
    const phoneClosed = connectionClosed(phone.client)
    const webClosed = connectionClosed(webClient)

    const fresh = await ok<FreshToken>(laptop, 'user.signOut')

    t.equal(fresh.generation, 1, 'the first sign-out moves the account to generation 1')
    await phoneClosed
    await webClosed
    t.same(
      [phone.client.connected, webClient.connected],
      [false, false],
      'the other TCP and WebSocket connections were closed at once',
    )
    t.ok(laptop.client.connected, 'the calling connection stays')
    t.equal(
      (await ok<{ name: string }>(laptop, 'user.update', { name: 'Ann B' })).name,
      'Ann B',
      'and can still send requests',
    )
    t.ok(bob.client.connected, 'another user is not affected')
    t.ok(device.client.connected, 'devices keep their own tokens (device.token rotates them)')
    t.equal(await connack(th, oldToken), 5, 'a token issued before the sign-out is refused with CONNACK 5')
    t.equal(await connack(th, fresh.token), 0, 'the new token connects')
    const again = await connectWith(th, user.id, fresh.token)
    t.equal((await ok<{ id: string }>(again, 'user.update', { name: 'Ann C' })).id, user.id)
    const stored = await th.hub.store.get<UserDoc>('users', user.id)
    t.equal(stored?.tokenVersion, 1, 'the generation is stored in the user document')

    await th.restart()
    t.equal(await connack(th, oldToken), 5, 'after a restart the old token is still refused')
    t.equal(await connack(th, fresh.token), 0, 'and the new one still works')
  },
)

t.test(
  'user.changePassword: the current password is required, the old one stops working on /auth/login, other sessions close, the caller’s new token works',
  async (t) => {
    const th = await startTestHub(t)
    const signup = (await post(th, '/auth/signup', ann)).body as TokenReply
    const caller = await connectWith(th, signup.userId, signup.token)
    const other = await connectWith(th, signup.userId, signup.token)
    const newPassword = 'second long passphrase'

    t.equal((await refused(caller, 'user.changePassword', { newPassword })).code, 'forbidden')
    const wrong = await refused(caller, 'user.changePassword', { currentPassword: 'nope', newPassword })
    t.same(wrong, { code: 'forbidden', message: 'wrong password' })
    t.equal(
      (await refused(caller, 'user.changePassword', { currentPassword: ann.password, newPassword: 'short' }))
        .code,
      'invalid_request',
    )
    t.ok(other.client.connected, 'refused changes close nothing')
    t.equal((await post(th, '/auth/login', annLogin)).status, 200, 'and leave the password as it was')

    const otherClosed = connectionClosed(other.client)
    const fresh = await ok<FreshToken>(caller, 'user.changePassword', {
      currentPassword: ann.password,
      newPassword,
    })
    await otherClosed
    t.notOk(other.client.connected, 'the other session was closed')
    t.ok(caller.client.connected, 'the caller stays connected')
    t.equal(await connack(th, signup.token), 5, 'the token from sign-up is refused')
    t.equal(await connack(th, fresh.token), 0, 'the token from the change connects')

    const oldLogin = await post(th, '/auth/login', annLogin)
    t.equal(oldLogin.status, 401, 'the old password is refused on /auth/login')
    const login = await post(th, '/auth/login', { email: ann.email, password: newPassword })
    t.equal(login.status, 200, 'the new password logs in')
    t.equal(
      await connack(th, (login.body as TokenReply).token),
      0,
      'and its token carries the new generation',
    )
  },
)

t.test('an account without a password sets one without giving a current one', async (t) => {
  const th = await startTestHub(t)
  const user = await th.hub.users.createUser({ name: 'Cli', email: 'cli@example.org' })
  const a = await connectWith(th, user.id, th.token({ sub: user.id }))
  await ok(a, 'user.changePassword', { newPassword: 'a long enough one' })
  t.equal(
    (await post(th, '/auth/login', { email: 'cli@example.org', password: 'a long enough one' })).status,
    200,
  )
})

t.test(
  'wrong passwords for signed-in actions are refused per client id, so a thief guessing with a stolen token cannot keep the owner from changing the password; across the account they only slow the checks',
  async (t) => {
    const th = await startTestHub(t, {
      ...roomy,
      ACCOUNT_PASSWORD_FAILURES_PER_USER: '3',
      LOGIN_SLOWDOWN_MS: '400',
    })
    const signup = (await post(th, '/auth/signup', ann)).body as TokenReply
    const thief = await connectWith(th, signup.userId, signup.token)
    const owner = await connectWith(th, signup.userId, signup.token)
    const codes: string[] = []
    for (let i = 0; i < 12; i++)
      codes.push((await refused(thief, 'user.delete', { password: `guess ${i}` })).code)
    t.same(
      codes,
      [...Array<string>(5).fill('forbidden'), ...Array<string>(7).fill('rate_limited')],
      'five wrong passwords from one client id, then that client is refused without a check',
    )
    t.match(
      await refused(thief, 'user.delete', { password: ann.password }),
      { code: 'rate_limited', message: /too many wrong passwords from this client: retry in \d+ s/ },
      'even the right password waits on that client, and it is told how long',
    )
    t.ok(await th.hub.store.get('users', signup.userId), 'the account is still there')

    const started = performance.now()
    const fresh = await ok<FreshToken>(owner, 'user.changePassword', {
      currentPassword: ann.password,
      newPassword: 'owner changed it',
    })
    const waited = performance.now() - started
    t.equal(fresh.generation, 1, 'the owner’s own client changes the password')
    t.ok(waited >= 400, `after the slowdown for an account being guessed (${waited.toFixed(0)} ms)`)
  },
)

t.test(
  'user.signOut cannot extend a session: its new token expires when the presented one does; user.changePassword issues a full lifetime',
  async (t) => {
    const th = await startTestHub(t)
    const signup = (await post(th, '/auth/signup', ann)).body as TokenReply
    const user = await th.hub.store.get<UserDoc>('users', signup.userId)
    const shortLived = th.token({ sub: signup.userId, name: 'Ann', ver: user?.tokenVersion ?? 0 }, 120)
    const expiry = (token: string) =>
      (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { exp: number }).exp
    const presented = expiry(shortLived)

    let a = await connectWith(th, signup.userId, shortLived)
    for (let round = 1; round <= 3; round++) {
      const fresh = await ok<FreshToken>(a, 'user.signOut')
      t.ok(expiry(fresh.token) <= presented, `sign-out ${round}: the new token ends no later than the first`)
      t.equal(Date.parse(fresh.expiresAt) / 1000, expiry(fresh.token), 'and says so')
      a = await connectWith(th, signup.userId, fresh.token)
    }

    const changed = await ok<FreshToken>(a, 'user.changePassword', {
      currentPassword: ann.password,
      newPassword: 'second long passphrase',
    })
    const lifetime = expiry(changed.token) - Date.now() / 1000
    t.ok(
      lifetime > th.config.userTokenTtlSeconds - 60,
      `proving the password gives a full lifetime (${Math.round(lifetime)} s)`,
    )
  },
)

interface Stage {
  id: string
  admins: string[]
}

async function stageWithGroup(a: Actor, name: string): Promise<{ stageId: string; groupId: string }> {
  const stage = await ok<Stage>(a, 'stage.create', { name })
  const group = await ok<{ id: string }>(a, 'group.create', {
    stageId: stage.id,
    name: 'G',
    color: '#112233',
  })
  return { stageId: stage.id, groupId: group.id }
}

/**
 * Alice: only admin of "handed" (Bob and Dora are members, Dora a director) and of "empty" (no other
 * member), co-admin of Carol's "shared", member of Carol's "visited" with a mix there; one device,
 * connected; two app connections.
 */
async function aliceWorld(th: TestHub) {
  const signup = (await post(th, '/auth/signup', { ...ann, name: 'Alice', email: 'alice@example.org' }))
    .body as TokenReply
  const alice = await connectWith(th, signup.userId, signup.token)
  const aliceOther = await connectWith(th, signup.userId, signup.token)
  const [bob, carol, dora] = [await actor(th, 'Bob'), await actor(th, 'Carol'), await actor(th, 'Dora')]

  const handed = await stageWithGroup(alice, 'handed')
  await ok(alice, 'stage.join', handed)
  await ok(bob, 'stage.join', handed)
  await ok(dora, 'stage.join', handed)
  await ok(alice, 'member.update', { stageId: handed.stageId, userId: dora.id, patch: { isDirector: true } })
  const empty = await stageWithGroup(alice, 'empty')
  const shared = await stageWithGroup(carol, 'shared')
  await ok(carol, 'stage.addAdmin', { stageId: shared.stageId, userId: alice.id })
  const visited = await stageWithGroup(carol, 'visited')
  await ok(carol, 'stage.join', visited)
  await ok(alice, 'stage.join', visited)
  const carolMember = await ok<{ id: string }>(carol, 'stage.join', visited)
  await ok(alice, 'mix.set', { kind: 'member', id: carolMember.id, volume: 0.5 })

  const device = await ok<{ device: { id: string }; token: string }>(alice, 'device.create', {
    name: 'Box',
    kind: 'ovbox',
  })
  const box = await connectDevice(th, device.device.id, device.token)
  return {
    signup,
    alice,
    aliceOther,
    bob,
    carol,
    dora,
    handed,
    empty,
    shared,
    visited,
    carolMember,
    device: { id: device.device.id, token: device.token, client: box.client },
  }
}

t.test(
  'user.delete refuses without the password, or without a choice for stages it is the only admin of, and changes nothing',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const w = await aliceWorld(th)
    t.equal((await refused(w.alice, 'user.delete', { soleAdminStages: 'remove' })).code, 'forbidden')
    const noChoice = await refused(w.alice, 'user.delete', { password: ann.password })
    t.equal(noChoice.code, 'invalid_request')
    t.match(noChoice.message, /only admin of .*soleAdminStages/)
    t.match(noChoice.message, `"handed" (${w.handed.stageId})`, 'it names each stage')
    t.match(noChoice.message, `"empty" (${w.empty.stageId})`)
    t.ok(await th.hub.store.get('users', w.alice.id), 'the account stays')
    t.ok(await th.hub.store.get('stages', w.empty.stageId), 'its stages stay')
    t.ok(w.device.client.connected, 'its device stays connected')
  },
)

t.test(
  'user.delete with handOver: memberships, mixes and devices go with their topics, the only-admin stage passes to its director, an empty one is removed, tokens and log-in die',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const w = await aliceWorld(th)
    const u = w.alice.id
    const closed = [w.aliceOther.client, w.device.client].map((c) => connectionClosed(c))

    const removal = await ok<{
      stagesHandedOver: { stageId: string; adminId: string }[]
      stagesRemoved: string[]
      devicesRemoved: string[]
    }>(w.alice, 'user.delete', { password: ann.password, soleAdminStages: 'handOver' })

    t.same(removal, {
      stagesHandedOver: [{ stageId: w.handed.stageId, adminId: w.dora.id }],
      stagesRemoved: [w.empty.stageId],
      devicesRemoved: [w.device.id],
    })
    await Promise.all(closed)
    t.same(
      [w.aliceOther.client.connected, w.device.client.connected],
      [false, false],
      'the other app connection and the device connection were closed',
    )
    await connectionClosed(w.alice.client).catch(() => undefined)
    t.notOk(w.alice.client.connected, 'the calling connection is closed too once answered')

    const { store } = th.hub
    t.equal(await store.get('users', u), null, 'the user document is gone')
    t.same(await store.find('members', { userId: u }), [], 'every membership is gone')
    t.same(await store.find('mixes', { userId: u }), [], 'every mix is gone')
    t.same(await store.find('devices', { owner: u }), [], 'the device is gone')
    t.equal(await store.get('stages', w.empty.stageId), null, 'the stage nobody else was in is removed')
    t.same((await store.get<Stage & { version: number }>('stages', w.handed.stageId))?.admins, [w.dora.id])
    t.same((await store.get<Stage & { version: number }>('stages', w.shared.stageId))?.admins, [w.carol.id])

    const ops = await th.connect({ clientId: 'ops-check', token: th.token({ sub: 'ops', role: 'admin' }) })
    for (const topic of [
      `users/${u}`,
      `users/${u}/stages/${w.handed.stageId}`,
      `users/${u}/stages/${w.shared.stageId}`,
      `users/${u}/stages/${w.visited.stageId}`,
      `users/${u}/mix/member/${w.carolMember.id}`,
      `users/${u}/devices/${w.device.id}`,
      `devices/${w.device.id}/config`,
      `devices/${w.device.id}/presence`,
      `stages/${w.empty.stageId}`,
      `stages/${w.handed.stageId}/members/${u}`,
      `stages/${w.visited.stageId}/members/${u}`,
    ])
      t.equal(await retainedOn(ops, topic), undefined, `${topic} is cleared`)
    t.match(
      await retainedOn(w.dora.client, `users/${w.dora.id}/stages/${w.handed.stageId}`),
      { isAdmin: true },
      'the heir’s summary says admin',
    )
    t.match(await retainedOn(w.dora.client, `stages/${w.handed.stageId}`), { admins: [w.dora.id] })

    t.equal(await connack(th, w.signup.token), 5, 'the account’s token is refused')
    t.equal(await connack(th, th.token({ sub: u })), 5, 'so is a fresh token without a generation')
    t.equal(
      await connackCode(th.mqttUrl, { clientId: w.device.id, username: 'token', password: w.device.token }),
      5,
      'and the device token',
    )
    t.equal(
      (await post(th, '/auth/login', { email: 'alice@example.org', password: ann.password })).status,
      401,
    )
    await th.restart()
    t.equal(await connack(th, w.signup.token), 5, 'still refused after a restart')
  },
)

t.test('user.delete with remove: the only-admin stage goes even when others are members', async (t) => {
  const th = await startTestHub(t, roomy)
  const w = await aliceWorld(th)
  const bobSummary = `users/${w.bob.id}/stages/${w.handed.stageId}`
  t.ok(await retainedOn(w.bob.client, bobSummary), 'Bob had a summary of the stage')
  const removal = await ok<{ stagesRemoved: string[] }>(w.alice, 'user.delete', {
    password: ann.password,
    soleAdminStages: 'remove',
  })
  t.same(removal.stagesRemoved.sort(), [w.handed.stageId, w.empty.stageId].sort())
  t.equal(await th.hub.store.get('stages', w.handed.stageId), null)
  t.same(await th.hub.store.find('members', { stageId: w.handed.stageId }), [])
  t.equal(await retainedOn(w.bob.client, bobSummary), undefined, 'the members’ summaries are cleared')
  await waitUntil(
    async () => (await th.hub.store.get<UserDoc>('users', w.bob.id))?.stageId === undefined,
    'Bob is out of the stage',
  )
})

t.test(
  'tombstones of deleted accounts are purged once every token of the account has expired (USER_TOKEN_TTL_SECONDS), also from the access index',
  async (t) => {
    const th = await startTestHub(t, { USER_TOKEN_TTL_SECONDS: '1' })
    const signup = (await post(th, '/auth/signup', ann)).body as TokenReply
    // the hub's own tokens live a second here: connect with one minted for the test
    const a = await connectWith(th, signup.userId, th.token({ sub: signup.userId, name: 'Ann' }))
    await ok(a, 'user.delete', { password: ann.password })
    t.ok(await th.hub.store.get('deleted_users', signup.userId), 'the deletion leaves a tombstone')
    t.equal(
      th.hub.access.tokenGeneration('user', signup.userId),
      Infinity,
      'which refuses the account’s tokens',
    )

    // the sweeper runs as often as a tombstone can expire: every second here
    await waitUntil(
      async () => (await th.hub.store.get('deleted_users', signup.userId)) === null,
      'the tombstone is purged',
      5000,
    )
    t.equal(
      await th.hub.store.get('deleted_users', signup.userId),
      null,
      'the tombstone is gone after the token lifetime',
    )
    t.equal(
      th.hub.access.tokenGeneration('user', signup.userId),
      0,
      'and the access index forgot the account',
    )
    t.equal(await connack(th, signup.token), 4, 'the account’s token has expired by then anyway (CONNACK 4)')
  },
)

t.test(
  'two connections changing the password at once: one wins, and the other connection ends closed even when its request failed after losing the race (its generation moves only when its own change is stored)',
  async (t) => {
    const th = await startTestHub(t, { ...roomy, PASSWORD_HASH_CONCURRENCY: '2' })
    let raced = 0
    for (let round = 0; round < 8; round++) {
      const person = { email: `racer${round}@example.org`, password: 'first long passphrase', name: 'Racer' }
      const signup = (await post(th, '/auth/signup', person)).body as TokenReply
      const pair = [
        await connectWith(th, signup.userId, signup.token),
        await connectWith(th, signup.userId, signup.token),
      ]
      const answers = await Promise.all(
        pair.map((a, i) =>
          a.req
            .send(
              'user.changePassword',
              JSON.stringify({
                id: `race-${i}`,
                params: { currentPassword: person.password, newPassword: `new passphrase ${i}` },
              }),
              `race-${i}`,
              1000,
            )
            .then(
              (r) => (r.ok ? 'ok' : r.error!.code),
              () => 'closed before its answer',
            ),
        ),
      )
      const winner = answers.indexOf('ok')
      t.ok(winner >= 0, `round ${round}: one change wins (${answers.join(', ')})`)
      const loser = pair[1 - winner]!
      if (answers[1 - winner] === 'forbidden') raced++
      await connectionClosed(loser.client).catch(() => undefined)
      t.notOk(
        loser.client.connected,
        `round ${round}: the other connection (${answers[1 - winner]}) is closed`,
      )
      t.ok(pair[winner]!.client.connected, `round ${round}: the winner stays`)
    }
    t.comment(
      `${raced} of 8 rounds had the losing request fail after its first attempt reached the new generation`,
    )
  },
)

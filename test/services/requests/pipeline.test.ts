import t from 'tap'
import type { DeviceRegistration, UserDoc } from '../../../services/collections.ts'
import {
  Requester,
  type Response,
  type TestHub,
  connectionClosed,
  nextMessage,
  recordMessages,
  recordResponses,
  sleep,
  startTestHub,
  waitUntil,
} from '../../helpers/hub.ts'

/** A user in the store and a connected MQTT client with that user's token. */
async function userClient(th: TestHub, name: string, clientId = `${name.toLowerCase()}-app`) {
  const user = await th.hub.users.createUser({ name })
  const client = await th.connect({ clientId, token: th.token({ sub: user.id, name }) })
  return { user, client, requester: new Requester(client) }
}

const storedUser = async (th: TestHub, id: string) => (await th.hub.store.get<UserDoc>('users', id))!

const profileOf = (payload: Buffer) =>
  JSON.parse(payload.toString()) as { id: string; name: string; version: number }

t.test(
  'user.update changes the profile, bumps its version and republishes users/{u} before the response',
  async (t) => {
    const th = await startTestHub(t)
    const { user, client, requester } = await userClient(th, 'Alice')
    const retained = await nextMessage(client, `users/${user.id}`)
    t.same(
      profileOf(retained.payload),
      { id: user.id, name: 'Alice', version: 1 },
      'the profile is retained at version 1',
    )

    const seen = recordMessages(client).messages
    const response = await requester.request(
      'user.update',
      { name: 'Alice B', avatarUrl: 'https://example.org/a.png' },
      'upd-1',
    )
    t.same(response, {
      id: 'upd-1',
      ok: true,
      result: { id: user.id, name: 'Alice B', avatarUrl: 'https://example.org/a.png', version: 2 },
    })

    const profileAt = seen.findIndex(
      (m) => m.topic === `users/${user.id}` && profileOf(m.payload).version === 2,
    )
    const responseAt = seen.findIndex((m) => m.topic === `clients/${client.options.clientId}/res`)
    t.ok(profileAt >= 0, 'the new profile was delivered on users/{u}')
    t.ok(profileAt < responseAt, 'the retained profile arrived before the response')
    t.same(profileOf(seen[profileAt]!.payload), response.result, 'the retained profile equals the result')

    const stored = await storedUser(th, user.id)
    t.equal(stored.version, 2, 'stored at version 2')
    t.equal(stored.name, 'Alice B')

    // a late subscriber gets the new profile as the retained message
    const other = await th.connect({ clientId: 'alice-tab2', token: th.token({ sub: user.id }) })
    t.same(profileOf((await nextMessage(other, `users/${user.id}`)).payload), response.result)

    const removed = await requester.request('user.update', { avatarUrl: null, version: 2 })
    t.same(
      removed.result,
      { id: user.id, name: 'Alice B', version: 3 },
      'avatarUrl null removes the avatar; version matches',
    )
  },
)

t.test('user.update with a stale version is a conflict and changes nothing', async (t) => {
  const th = await startTestHub(t)
  const { user, client, requester } = await userClient(th, 'Alice')
  t.ok((await requester.request('user.update', { name: 'Second' })).ok)
  await nextMessage(client, `users/${user.id}`)

  const seen = recordMessages(client).messages
  const response = await requester.request('user.update', { name: 'Third', version: 1 }, 'stale')
  t.equal(response.id, 'stale')
  t.equal(response.ok, false)
  t.equal(response.error?.code, 'conflict')
  t.match(response.error?.message, /version 2/, 'the message says the current version')

  await sleep(200)
  t.same(
    seen.filter((m) => m.topic === `users/${user.id}`),
    [],
    'no profile was republished',
  )
  const stored = await storedUser(th, user.id)
  t.equal(stored.version, 2)
  t.equal(stored.name, 'Second')
  const other = await th.connect({ clientId: 'alice-tab2', token: th.token({ sub: user.id }) })
  t.same(profileOf((await nextMessage(other, `users/${user.id}`)).payload), {
    id: user.id,
    name: 'Second',
    version: 2,
  })
})

t.test('malformed requests are refused with invalid_request and change nothing', async (t) => {
  const th = await startTestHub(t)
  const { user, requester } = await userClient(th, 'Alice')

  t.test('broken JSON with a readable id echoes the id', async (t) => {
    const response = await requester.send('user.update', '{"id":"broken-1","params":{"name":', 'broken-1')
    t.equal(response.ok, false)
    t.equal(response.error?.code, 'invalid_request')
    t.match(response.error?.message, /JSON/)
  })

  t.test('garbage without an id is answered with an empty id', async (t) => {
    const response = await requester.send('user.update', 'this is not json', '')
    t.same(response.error?.code, 'invalid_request')
    t.equal(response.id, '')
  })

  t.test('an envelope without id is refused', async (t) => {
    const response = await requester.send('user.update', JSON.stringify({ params: { name: 'No id' } }), '')
    t.equal(response.error?.code, 'invalid_request')
    t.match(response.error?.message, /id/)
  })

  t.test('an envelope with extra top-level fields is refused', async (t) => {
    const response = await requester.send(
      'user.update',
      JSON.stringify({ id: 'env-x', params: {}, action: 'x' }),
      'env-x',
    )
    t.equal(response.error?.code, 'invalid_request')
    t.match(response.error?.message, /action/)
  })

  t.test('an unknown field in params is named', async (t) => {
    const response = await requester.request('user.update', { name: 'X', nickname: 'x' })
    t.equal(response.error?.code, 'invalid_request')
    t.match(response.error?.message, /nickname/)
  })

  t.test('a name that is too long is named', async (t) => {
    const response = await requester.request('user.update', { name: 'x'.repeat(101) })
    t.equal(response.error?.code, 'invalid_request')
    t.match(response.error?.message, /name/)
    t.match(response.error?.message, /100/)
  })

  t.test('a name of the wrong type is named', async (t) => {
    const response = await requester.request('user.update', { name: 42 })
    t.equal(response.error?.code, 'invalid_request')
    t.match(response.error?.message, /name must be string/)
  })

  t.test('a version that is not a positive integer is refused', async (t) => {
    const response = await requester.request('user.update', { name: 'V', version: 'one' })
    t.equal(response.error?.code, 'invalid_request')
    t.match(response.error?.message, /version/)
  })

  t.test('empty params are refused (nothing to update)', async (t) => {
    const response = await requester.request('user.update', {})
    t.equal(response.error?.code, 'invalid_request')
  })

  t.test('an unknown action is refused, named, and the message points at the list of actions', async (t) => {
    const response = await requester.request('user.explode', { name: 'X' }, 'unknown-1')
    t.equal(response.id, 'unknown-1')
    t.equal(response.error?.code, 'invalid_request')
    t.match(response.error?.message, /user\.explode/)
    t.match(response.error?.message, /docs\/protocol\/actions\.md/)
  })

  t.test('nothing changed', async (t) => {
    const stored = await storedUser(th, user.id)
    t.equal(stored.version, 1)
    t.equal(stored.name, 'Alice')
  })
})

t.test(
  'a request above the 64 KiB payload limit is refused with too_large and the connection stays',
  async (t) => {
    const th = await startTestHub(t)
    const { user, client, requester } = await userClient(th, 'Alice')
    const payload = JSON.stringify({ id: 'big-1', params: { name: 'x'.repeat(100 * 1024) } })
    const response = await requester.send('user.update', payload, 'big-1')
    t.equal(response.ok, false)
    t.equal(response.error?.code, 'too_large')
    t.match(response.error?.message, /65536/)
    t.ok(client.connected, 'the connection is kept')
    t.ok((await requester.request('user.update', { name: 'Small' })).ok, 'the next normal request succeeds')
    t.equal((await storedUser(th, user.id)).version, 2, 'only the small request was applied')
  },
)

t.test('a packet above the transport limit closes that connection only', async (t) => {
  const th = await startTestHub(t)
  const { client } = await userClient(th, 'Alice')
  const { requester: bobRequester } = await userClient(th, 'Bob')
  const closed = connectionClosed(client, 5000)
  client.publish(`clients/${client.options.clientId}/req/user.update`, Buffer.alloc(2 * 1024 * 1024, 'x'), {
    qos: 0,
  })
  await t.resolves(closed, 'the hub closed the connection')
  t.ok((await bobRequester.request('user.update', { name: 'Bobby' })).ok, 'other clients are still served')
})

t.test(
  'a request flood is rate limited, every request gets exactly one response, and other clients are not stalled',
  async (t) => {
    const th = await startTestHub(t)
    const alice = await userClient(th, 'Alice')
    const bob = await userClient(th, 'Bob')
    const log = await recordResponses(alice.client)

    const ids = Array.from({ length: 200 }, (_, i) => `flood-${i}`)
    const flood = Promise.all(
      ids.map((id, i) => alice.requester.request('user.update', { name: `Alice ${i}` }, id)),
    )
    // while the flood is being processed, another client's request is answered promptly
    const started = Date.now()
    const bobResponse = await bob.requester.request('user.update', { name: 'Bob B' })
    const bobLatency = Date.now() - started
    t.ok(bobResponse.ok, 'the other client is answered')
    t.ok(bobLatency < 1000, `the other client is answered promptly (${bobLatency} ms)`)

    const responses = await flood
    await waitUntil(() => log.all.length >= 200, 'every flood request is answered')
    await sleep(300)
    t.equal(log.all.length, 200, 'exactly 200 responses arrived')
    t.same(new Set(log.all.map((r) => r.id)), new Set(ids), 'one response per request id')

    const codes = new Map<string, number>()
    for (const r of responses) {
      const code = r.ok ? 'ok' : r.error!.code
      codes.set(code, (codes.get(code) ?? 0) + 1)
    }
    t.ok(
      (codes.get('rate_limited') ?? 0) > 0,
      `some requests were rate limited: ${JSON.stringify([...codes])}`,
    )
    t.ok((codes.get('ok') ?? 0) >= 40, 'the burst was served')
    t.same(
      [...codes.keys()].filter((c) => c !== 'ok' && c !== 'rate_limited'),
      [],
      'no other outcome',
    )
    t.equal(
      (await storedUser(th, alice.user.id)).version,
      1 + (codes.get('ok') ?? 0),
      'every accepted request was applied once',
    )
  },
)

t.test('a rate limited client may continue once its bucket refills', async (t) => {
  const th = await startTestHub(t, { RATE_LIMIT_BURST: '2', RATE_LIMIT_PER_SECOND: '10' })
  const { requester } = await userClient(th, 'Alice')
  const burst = await Promise.all([1, 2, 3].map((i) => requester.request('user.update', { name: `A${i}` })))
  t.same(
    burst.map((r) => (r.ok ? 'ok' : r.error!.code)),
    ['ok', 'ok', 'rate_limited'],
  )
  await sleep(200)
  t.ok((await requester.request('user.update', { name: 'Later' })).ok, 'served again after the refill')
})

t.test('a retried request id is answered with the original response and applied once', async (t) => {
  const th = await startTestHub(t)
  const { user, requester } = await userClient(th, 'Alice')
  const first = await requester.request('user.update', { name: 'Once' }, 'retry-1')
  t.ok(first.ok)
  const second = await requester.request('user.update', { name: 'Once' }, 'retry-1')
  t.same(second, first, 'the second response equals the first')
  const changed = await requester.request('user.update', { name: 'Different' }, 'retry-1')
  t.same(changed, first, 'even with other params, the original response is sent again')
  const stored = await storedUser(th, user.id)
  t.equal(stored.version, 2, 'the version was bumped once')
  t.equal(stored.name, 'Once')

  // refusals are remembered too
  const refused = await requester.request('user.update', { name: 'Stale', version: 1 }, 'retry-2')
  t.equal(refused.error?.code, 'conflict')
  t.same(await requester.request('user.update', { name: 'Stale', version: 1 }, 'retry-2'), refused)
  t.equal((await storedUser(th, user.id)).version, 2)
})

t.test('concurrent duplicates of one request are applied once and answered twice identically', async (t) => {
  const th = await startTestHub(t)
  const { user, client } = await userClient(th, 'Alice')
  const log = await recordResponses(client)
  const payload = JSON.stringify({ id: 'dup-1', params: { name: 'Dup' } })
  const topic = `clients/${client.options.clientId}/req/user.update`
  await Promise.all([
    client.publishAsync(topic, payload, { qos: 1 }),
    client.publishAsync(topic, payload, { qos: 1 }),
  ])
  await waitUntil(() => log.withId('dup-1').length >= 2, 'both duplicates are answered')
  await sleep(200)
  const answers = log.withId('dup-1')
  t.equal(answers.length, 2, 'exactly two responses')
  t.same(answers[0], answers[1], 'identical responses')
  t.same((answers[0] as Response).result, { id: user.id, name: 'Dup', version: 2 })
  t.equal((await storedUser(th, user.id)).version, 2, 'applied once')
})

t.test(
  "a request id reused by another user on the same client id is not answered with the first user's response",
  async (t) => {
    const th = await startTestHub(t)
    const alice = await userClient(th, 'Alice', 'shared-client')
    const first = await alice.requester.request('user.update', { name: 'Alice 2' }, 'same-id')
    t.ok(first.ok)
    await alice.client.endAsync()

    const bob = await userClient(th, 'Bob', 'shared-client')
    const second = await bob.requester.request('user.update', { name: 'Bob 2' }, 'same-id')
    t.same(second, { id: 'same-id', ok: true, result: { id: bob.user.id, name: 'Bob 2', version: 2 } })
    t.equal((await storedUser(th, bob.user.id)).name, 'Bob 2', "Bob's change was applied")
    const aliceStored = await storedUser(th, alice.user.id)
    t.equal(aliceStored.version, 2, 'Alice was not changed again')
    t.equal(aliceStored.name, 'Alice 2')

    // and the same id from a different user on a different client id
    const carol = await userClient(th, 'Carol')
    const third = await carol.requester.request('user.update', { name: 'Carol 2' }, 'same-id')
    t.same(third.result, { id: carol.user.id, name: 'Carol 2', version: 2 })
  },
)

t.test('only users may call user.update: devices and admins are forbidden', async (t) => {
  const th = await startTestHub(t)
  const owner = await th.hub.users.createUser({ name: 'Owner' })
  await th.hub.store.transaction(async (tx) => {
    tx.insert<DeviceRegistration>('devices', { id: 'd1', owner: owner.id, tokenVersion: 1 })
  })

  const device = await th.connect({
    clientId: 'd1',
    token: th.token({ sub: 'd1', role: 'device', owner: owner.id, ver: 1 }),
  })
  const fromDevice = await new Requester(device).request('user.update', { name: 'Hijack' })
  t.equal(fromDevice.ok, false)
  t.equal(fromDevice.error?.code, 'forbidden')

  const admin = await th.connect({
    clientId: 'ops-console',
    token: th.token({ sub: owner.id, role: 'admin' }),
  })
  const fromAdmin = await new Requester(admin).request('user.update', { name: 'Hijack' })
  t.equal(fromAdmin.error?.code, 'forbidden', 'an admin token with a user id as sub is not that user')

  const stored = await storedUser(th, owner.id)
  t.equal(stored.version, 1)
  t.equal(stored.name, 'Owner')
})

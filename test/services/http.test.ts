import t from 'tap'
import type { UserDoc } from '../../services/collections.ts'
import { Requester, type TestHub, nextMessage, startTestHub } from '../helpers/hub.ts'

interface TokenReply {
  userId: string
  token: string
  expiresAt: string
}

interface ErrorReply {
  error: { code: string; message: string }
}

async function post(th: TestHub, path: string, body: unknown): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`${th.httpUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
  return { status: response.status, body: await response.json() }
}

const alice = { email: 'alice@example.org', password: 'correct horse battery', name: 'Alice' }

t.test(
  'POST /auth/signup creates a user whose token connects over MQTT and sees its retained profile',
  async (t) => {
    const th = await startTestHub(t)
    const before = Date.now()
    const { status, body } = await post(th, '/auth/signup', alice)
    t.equal(status, 201)
    const reply = body as TokenReply
    t.match(reply, { userId: /^[A-Za-z0-9_-]{1,64}$/, token: String, expiresAt: String })
    t.ok(Date.parse(reply.expiresAt) > before + 24 * 3600 * 1000, 'the token is valid for more than a day')

    const client = await th.connect({ clientId: 'alice-browser', token: reply.token })
    const profile = await nextMessage(client, `users/${reply.userId}`)
    t.ok(profile.retain, 'the profile is retained')
    t.same(
      JSON.parse(profile.payload.toString()),
      { id: reply.userId, name: 'Alice', version: 1 },
      'no e-mail or password hash in it',
    )

    const stored = await th.hub.store.get<UserDoc>('users', reply.userId)
    t.equal(stored?.email, 'alice@example.org')
    t.match(stored?.passwordHash, /^scrypt\$/, 'the password is stored as a salted scrypt hash')
    t.notMatch(stored?.passwordHash, /correct horse/)
  },
)

t.test('POST /auth/signup refuses a duplicate e-mail (case-insensitive) with 409 conflict', async (t) => {
  const th = await startTestHub(t)
  t.equal((await post(th, '/auth/signup', alice)).status, 201)
  const again = await post(th, '/auth/signup', { ...alice, email: 'ALICE@Example.org', name: 'Other Alice' })
  t.equal(again.status, 409)
  t.equal((again.body as ErrorReply).error.code, 'conflict')
  t.match((again.body as ErrorReply).error.message, /exists/)
})

t.test('POST /auth/signup refuses invalid bodies with 400 invalid_request', async (t) => {
  const th = await startTestHub(t)
  const cases: Array<[string, unknown]> = [
    ['missing password', { email: 'bob@example.org', name: 'Bob' }],
    ['short password', { email: 'bob@example.org', password: 'short', name: 'Bob' }],
    ['not an e-mail', { email: 'bob', password: 'long enough password', name: 'Bob' }],
    ['empty name', { email: 'bob@example.org', password: 'long enough password', name: '' }],
    ['name of the wrong type', { email: 'bob@example.org', password: 'long enough password', name: 42 }],
    [
      'unknown field',
      { email: 'bob@example.org', password: 'long enough password', name: 'Bob', role: 'admin' },
    ],
    ['not JSON', '{"email":'],
  ]
  for (const [what, body] of cases) {
    const response = await post(th, '/auth/signup', body)
    t.equal(response.status, 400, `${what}: 400`)
    t.equal((response.body as ErrorReply).error?.code, 'invalid_request', `${what}: invalid_request`)
  }
  const users: unknown[] = []
  for await (const user of th.hub.store.scan('users')) users.push(user)
  t.same(users, [], 'no user was created')
})

t.test(
  'POST /auth/login returns a token for the right password only, with a case-insensitive e-mail',
  async (t) => {
    const th = await startTestHub(t)
    const signup = (await post(th, '/auth/signup', alice)).body as TokenReply

    const right = await post(th, '/auth/login', { email: alice.email, password: alice.password })
    t.equal(right.status, 200)
    t.equal((right.body as TokenReply).userId, signup.userId)
    const client = await th.connect({ clientId: 'alice-login', token: (right.body as TokenReply).token })
    t.ok(
      (await new Requester(client).request('user.update', { name: 'Alice L' })).ok,
      'the login token works over MQTT',
    )

    const upper = await post(th, '/auth/login', { email: 'Alice@EXAMPLE.org', password: alice.password })
    t.equal(upper.status, 200, 'e-mail is case-insensitive')
    t.equal((upper.body as TokenReply).userId, signup.userId)

    const wrong = await post(th, '/auth/login', { email: alice.email, password: 'wrong password' })
    t.equal(wrong.status, 401)
    t.equal((wrong.body as ErrorReply).error.code, 'unauthorized')

    const unknown = await post(th, '/auth/login', { email: 'nobody@example.org', password: alice.password })
    t.equal(unknown.status, 401, 'an unknown e-mail is refused the same way')
    t.same(unknown.body, wrong.body, 'with the same message, so accounts cannot be enumerated')

    const invalid = await post(th, '/auth/login', { email: alice.email })
    t.equal(invalid.status, 400)
    t.equal((invalid.body as ErrorReply).error.code, 'invalid_request')
  },
)

t.test('POST /auth/login refuses an address after 5 failures on one e-mail, with Retry-After', async (t) => {
  const th = await startTestHub(t)
  await post(th, '/auth/signup', alice)
  const statuses: number[] = []
  for (let i = 0; i < 7; i++) {
    statuses.push((await post(th, '/auth/login', { email: alice.email, password: `guess ${i}` })).status)
  }
  t.same(statuses.slice(0, 5), Array(5).fill(401), 'the first five guesses are checked')
  t.same(statuses.slice(5), [429, 429], 'then guessing from this address is refused')
  const response = await fetch(`${th.httpUrl}/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: alice.email, password: alice.password }),
  })
  t.equal(response.status, 429, 'even the right password waits, from this address')
  t.equal(((await response.json()) as ErrorReply).error.code, 'rate_limited')
  t.equal(response.headers.get('retry-after'), '30', 'one failure is forgiven every 30 s')
})

t.test(
  'successful log-ins do not count towards the limit (many people behind one address can log in)',
  async (t) => {
    const th = await startTestHub(t)
    await post(th, '/auth/signup', alice)
    const statuses: number[] = []
    for (let i = 0; i < 15; i++) {
      statuses.push((await post(th, '/auth/login', { email: alice.email, password: alice.password })).status)
    }
    t.same(statuses, Array(15).fill(200))
  },
)

t.test('/healthz and /readyz report a live, ready hub', async (t) => {
  const th = await startTestHub(t)
  const health = await fetch(`${th.httpUrl}/healthz`)
  t.equal(health.status, 200)
  t.same(await health.json(), { status: 'ok' })
  const ready = await fetch(`${th.httpUrl}/readyz`)
  t.equal(ready.status, 200)
  t.same(await ready.json(), { status: 'ready' })
})

t.test(
  '/metrics exports connections, requests, latencies and message counts in Prometheus text format',
  async (t) => {
    const th = await startTestHub(t)
    const user = await th.hub.users.createUser({ name: 'Metered' })
    const client = await th.connect({ clientId: 'metered', token: th.token({ sub: user.id }) })
    const requester = new Requester(client)
    t.ok((await requester.request('user.update', { name: 'Metered 2' })).ok)
    t.equal((await requester.request('user.update', { name: 'x', version: 9 })).error?.code, 'conflict')

    const response = await fetch(`${th.httpUrl}/metrics`)
    t.equal(response.status, 200)
    t.match(response.headers.get('content-type'), /^text\/plain/)
    const text = await response.text()
    t.match(text, /^# TYPE stagehub_connections gauge$/m)
    t.match(text, /^stagehub_connections\{role="user"\} 1$/m, 'one user connection')
    t.match(text, /^stagehub_requests_total\{action="user\.update",code="ok"\} 1$/m)
    t.match(text, /^stagehub_requests_total\{action="user\.update",code="conflict"\} 1$/m)
    t.match(text, /^stagehub_request_duration_seconds_count\{action="user\.update"\} 2$/m)
    t.match(text, /^stagehub_request_duration_seconds_bucket\{le="\+Inf",action="user\.update"\} 2$/m)
    t.match(text, /^stagehub_store_commit_duration_seconds_count \d+$/m)
    t.notMatch(text, /^stagehub_store_commit_duration_seconds_count 0$/m, 'the commit was timed')
    const messagesIn = /^stagehub_messages_in_total (\d+)$/m.exec(text)
    t.ok(messagesIn && Number(messagesIn[1]) >= 2, 'both request publishes were counted')
  },
)

t.test('an unknown route is a 404 with a JSON error', async (t) => {
  const th = await startTestHub(t)
  const response = await fetch(`${th.httpUrl}/no/such/route`)
  t.equal(response.status, 404)
  t.match(response.headers.get('content-type'), /application\/json/)
  const body = (await response.json()) as ErrorReply
  t.equal(body.error.code, 'not_found')
  t.match(body.error.message, /\/no\/such\/route/)
})

import jwt from 'jsonwebtoken'
import t from 'tap'
import { TEST_SECRET, type TestHub, connackCode, startTestHub } from '../../helpers/hub.ts'
import { Requester } from '../../helpers/hub.ts'
import { ok } from '../../helpers/actors.ts'

/** POST /auth/renew: a signed-in person's token, renewed before it expires (issue 13, staying signed in). */

interface Reply {
  status: number
  body: { userId?: string; token?: string; expiresAt?: string; error?: { code: string; message: string } }
  retryAfter: string | null
}

async function renew(th: TestHub, token: string | undefined, body: unknown = {}): Promise<Reply> {
  const response = await fetch(`${th.httpUrl}/auth/renew`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify(body),
  })
  return {
    status: response.status,
    body: (await response.json()) as Reply['body'],
    retryAfter: response.headers.get('retry-after'),
  }
}

interface Claims {
  sub: string
  role: string
  name?: string
  ver?: number
  exp: number
}
const claims = (token: string) => jwt.decode(token) as Claims

let seq = 0
const connack = (th: TestHub, token: string, clientId = `renew-probe-${++seq}`) =>
  connackCode(th.mqttUrl, { clientId, username: 'token', password: token })

t.test('a current user token is renewed: same claims, a new full lifetime, and it connects', async (t) => {
  const th = await startTestHub(t, { USER_TOKEN_TTL_SECONDS: '600' })
  const signup = await fetch(`${th.httpUrl}/auth/signup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: 'ann@example.org', password: 'a long passphrase', name: 'Ann' }),
  })
  const first = (await signup.json()) as { userId: string; token: string; expiresAt: string }
  // a token nearer its end than a fresh one: renewal must give the full configured lifetime again
  const old = th.token({ sub: first.userId, name: 'Ann', ver: 0 }, 60)
  const reply = await renew(th, old)
  t.equal(reply.status, 200)
  t.equal(reply.body.userId, first.userId)
  const fresh = claims(reply.body.token!)
  const before = claims(old)
  t.same(
    { sub: fresh.sub, role: fresh.role, name: fresh.name, ver: fresh.ver },
    { sub: before.sub, role: 'user', name: 'Ann', ver: 0 },
    'the claims are kept',
  )
  t.ok(fresh.exp - before.exp > 500, 'the new token lives the configured lifetime, not what was left')
  t.equal(reply.body.expiresAt, new Date(fresh.exp * 1000).toISOString())
  t.equal(await connack(th, reply.body.token!), 0, 'the renewed token connects')
})

t.test('an expired token is refused: unauthorized, saying to sign in again', async (t) => {
  const th = await startTestHub(t)
  const user = await th.hub.users.createUser({ name: 'Ann' })
  const expired = jwt.sign({ role: 'user', name: 'Ann', ver: 0 }, TEST_SECRET, {
    subject: user.id,
    expiresIn: -10,
  })
  const reply = await renew(th, expired)
  t.equal(reply.status, 401)
  t.equal(reply.body.error?.code, 'unauthorized')
  t.match(reply.body.error?.message, /expired at .*an expired token cannot be renewed, sign in again/)
})

t.test('a token revoked by signing out everywhere is refused, the new one renews', async (t) => {
  const th = await startTestHub(t)
  const user = await th.hub.users.createUser({ name: 'Ann' })
  const old = th.token({ sub: user.id, name: 'Ann' })
  const client = await th.connect({ clientId: `ann-${++seq}`, token: old })
  const signedOut = await ok<{ token: string }>(
    { id: user.id, name: 'Ann', client, req: new Requester(client) },
    'user.signOut',
  )
  const refused = await renew(th, old)
  t.equal(refused.status, 401)
  t.equal(refused.body.error?.code, 'unauthorized')
  t.match(refused.body.error?.message, /generation 0 was revoked \(current: 1\).*sign in again/)
  const renewed = await renew(th, signedOut.token)
  t.equal(renewed.status, 200, 'the token of the current generation renews')
  t.equal(claims(renewed.body.token!).ver, 1)
})

t.test('device, router and admin tokens are refused: forbidden, naming how they are renewed', async (t) => {
  const th = await startTestHub(t)
  const device = await renew(th, th.token({ sub: 'box1', role: 'device', owner: 'ann', ver: 0 }))
  t.equal(device.status, 403)
  t.equal(device.body.error?.code, 'forbidden')
  t.match(device.body.error?.message, /only user tokens .* not device tokens: rotate it with device.token/)
  const router = await renew(th, th.token({ sub: 'r1', role: 'router', ver: 0 }))
  t.equal(router.status, 403)
  t.match(router.body.error?.message, /not router tokens: rotate it with router.token/)
  const admin = await renew(th, th.token({ sub: 'ops', role: 'admin' }))
  t.equal(admin.status, 403)
  t.match(admin.body.error?.message, /not admin tokens: mint a new one with `stagehub token`/)
})

t.test('no token, a forged one, or another body is refused', async (t) => {
  const th = await startTestHub(t)
  const none = await renew(th, undefined)
  t.equal(none.status, 401)
  t.match(none.body.error?.message, /Authorization: Bearer <token>/)
  const forged = jwt.sign({ role: 'user', ver: 0 }, 'another-secret-that-is-long-enough-000', {
    subject: 'ann',
    expiresIn: 600,
  })
  const bad = await renew(th, forged)
  t.equal(bad.status, 401)
  t.match(bad.body.error?.message, /invalid signature: sign in again/)
  const user = await th.hub.users.createUser({ name: 'Ann' })
  const extra = await renew(th, th.token({ sub: user.id }), { ttl: 99999 })
  t.equal(extra.status, 400, 'nothing in the body can change the renewal')
  t.equal(extra.body.error?.code, 'invalid_request')
})

t.test('refused renewals are limited per address like failed log-ins, with Retry-After', async (t) => {
  const th = await startTestHub(t, { LOGIN_FAILURES_PER_ADDRESS: '3' })
  for (let i = 0; i < 3; i++) t.equal((await renew(th, 'not-a-token')).status, 401)
  const limited = await renew(th, 'not-a-token')
  t.equal(limited.status, 429)
  t.equal(limited.body.error?.code, 'rate_limited')
  t.match(limited.body.error?.message, /too many refused renewals from your address: retry in \d+ s/)
  t.ok(Number(limited.retryAfter) > 0)
})

t.test('one account renewing in a loop is limited', async (t) => {
  const th = await startTestHub(t)
  const user = await th.hub.users.createUser({ name: 'Ann' })
  const token = th.token({ sub: user.id })
  const statuses: number[] = []
  for (let i = 0; i < 10; i++) statuses.push((await renew(th, token)).status)
  t.same(statuses, Array(10).fill(200), 'ten renewals at once pass')
  const limited = await renew(th, token)
  t.equal(limited.status, 429)
  t.match(limited.body.error?.message, /this account renewed its token too often: retry in \d+ s/)
})

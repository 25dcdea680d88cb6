import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import jwt from 'jsonwebtoken'
import t, { type Test } from 'tap'
import type { ExplainReply } from '../../../schemas/http.ts'
import { actor, ok } from '../../helpers/actors.ts'
import { type TestHub, TEST_SECRET, connackCode, startTestHub } from '../../helpers/hub.ts'

async function explain(
  th: TestHub,
  token: string | undefined,
  clientId: string,
): Promise<{
  status: number
  body: ExplainReply & { error?: { code: string; message: string } }
  text: string
}> {
  const response = await fetch(`${th.httpUrl}/auth/explain`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify({ clientId }),
  })
  const text = await response.text()
  return { status: response.status, body: JSON.parse(text) as never, text }
}

/** The explanation, checked against what a real CONNECT with the same token and client id gets. */
async function verdict(t: Test, th: TestHub, token: string, clientId: string): Promise<ExplainReply> {
  const { status, body, text } = await explain(th, token, clientId)
  t.equal(status, 200)
  t.notOk(text.includes(token), 'the token is never echoed')
  const code = await connackCode(th.mqttUrl, { clientId, username: 'token', password: token })
  t.equal(body.returnCode, code, `the explanation matches the CONNACK a real CONNECT gets (${code})`)
  t.equal(body.accepted, code === 0)
  return body
}

t.test('a good token and client id: accepted, with its claims and expiry', async (t) => {
  const th = await startTestHub(t)
  const alice = await th.hub.users.createUser({ name: 'Alice' })
  const token = th.token({ sub: alice.id, name: 'Alice' }, 600)
  const body = await verdict(t, th, token, 'alice-phone')
  t.match(body, { accepted: true, returnCode: 0, token: { role: 'user', sub: alice.id, expired: false } })
  t.notOk(body.check)
  t.ok(Math.abs(Date.parse(body.token!.expiresAt) - (Date.now() + 600_000)) < 5000, body.token!.expiresAt)
})

t.test(
  'a token that is not signed by the hub: refused by the token check, and nothing of its claims shown',
  async (t) => {
    const th = await startTestHub(t)
    const forged = jwt.sign({ role: 'admin' }, 'another-secret-that-is-long-enough-012345', {
      subject: 'ops',
      expiresIn: 600,
    })
    const body = await verdict(t, th, forged, 'ops')
    t.match(body, { accepted: false, returnCode: 4, check: 'token', reason: /invalid signature/ })
    t.notOk(body.token, 'no claims of a token the hub did not sign: not an oracle')
    const garbage = await verdict(t, th, 'not-a-jwt', 'x')
    t.match(garbage, { check: 'token', reason: /malformed/ })
  },
)

t.test('an expired token: refused for its expiry, saying when, with its claims', async (t) => {
  const th = await startTestHub(t)
  const alice = await th.hub.users.createUser({ name: 'Alice' })
  const exp = Math.floor(Date.now() / 1000) - 120
  const expired = jwt.sign({ role: 'user', exp }, TEST_SECRET, { subject: alice.id })
  const body = await verdict(t, th, expired, 'alice-phone')
  const when = new Date(exp * 1000).toISOString()
  t.match(body, {
    accepted: false,
    returnCode: 4,
    check: 'expiry',
    reason: `token refused: expired at ${when}`,
    token: { role: 'user', sub: alice.id, expiresAt: when, expired: true },
  })
})

t.test(
  'a signed token with missing or wrong claims: refused by the claims check, naming the claim',
  async (t) => {
    const th = await startTestHub(t)
    const noVer = jwt.sign({ role: 'device', owner: 'u1' }, TEST_SECRET, { subject: 'd1', expiresIn: 600 })
    t.match(await verdict(t, th, noVer, 'd1'), {
      check: 'claims',
      reason: /device tokens need an integer ver/,
    })
    const badRole = jwt.sign({ role: 'root' }, TEST_SECRET, { subject: 'u1', expiresIn: 600 })
    t.match(await verdict(t, th, badRole, 'u1'), { check: 'claims', reason: /role must be one of/ })
    const expiredNoRole = jwt.sign({ exp: Math.floor(Date.now() / 1000) - 60 }, TEST_SECRET, {
      subject: 'u1',
    })
    t.match(await verdict(t, th, expiredNoRole, 'u1'), {
      returnCode: 4,
      check: 'claims',
      reason: /role must be one of/,
    })
    t.notOk(
      (await explain(th, expiredNoRole, 'u1')).body.token,
      'expired and without a role: no claims shown',
    )
    const noExp = jwt.sign({ role: 'user' }, TEST_SECRET, { subject: 'u1' })
    t.match(await verdict(t, th, noExp, 'u1'), { check: 'claims', reason: /exp is required/ })
  },
)

t.test('client id rules: characters, a device on another id, an id held by someone else', async (t) => {
  const th = await startTestHub(t)
  const alice = await actor(th, 'Alice')
  const bob = await th.hub.users.createUser({ name: 'Bob' })
  const bobToken = th.token({ sub: bob.id })
  t.match(await verdict(t, th, bobToken, 'a/b'), {
    returnCode: 5,
    check: 'client-id',
    reason: /client id "a\/b" is not allowed: use 1-64 characters/,
  })
  t.match(await verdict(t, th, bobToken, ''), { returnCode: 5, check: 'client-id' })
  t.match(await verdict(t, th, bobToken, alice.client.options.clientId!), {
    returnCode: 5,
    check: 'client-id',
    reason: /held by another identity/,
  })

  const { device, token } = await ok<{ device: { id: string }; token: string }>(alice, 'device.create', {
    name: 'Box',
    kind: 'ovbox',
  })
  t.match(await verdict(t, th, token, 'my-box'), {
    returnCode: 5,
    check: 'client-id',
    reason: `device ${device.id} must connect with client id "${device.id}"`,
    token: { role: 'device', sub: device.id, owner: alice.id, ver: 1 },
  })
  t.match(await verdict(t, th, bobToken, device.id), { check: 'client-id', reason: /registered device's id/ })
  t.match(await verdict(t, th, token, device.id), { accepted: true, returnCode: 0 })
})

t.test('registration: a device that is not registered, a revoked generation, a deleted device', async (t) => {
  const th = await startTestHub(t)
  const alice = await actor(th, 'Alice')
  const ghost = th.token({ sub: 'ghost', role: 'device', owner: alice.id, ver: 1 })
  t.match(await verdict(t, th, ghost, 'ghost'), {
    returnCode: 5,
    check: 'registration',
    reason: 'device ghost is not registered',
  })
  const { device, token } = await ok<{ device: { id: string }; token: string }>(alice, 'device.create', {
    name: 'Box',
    kind: 'ovbox',
  })
  await ok(alice, 'device.token', { deviceId: device.id })
  t.match(await verdict(t, th, token, device.id), {
    returnCode: 5,
    check: 'registration',
    reason: 'device token generation 1 was revoked (current: 2)',
  })
})

t.test('the token goes in the Authorization header: without it, 401 saying how', async (t) => {
  const th = await startTestHub(t)
  const { status, body } = await explain(th, undefined, 'x')
  t.equal(status, 401)
  t.match(body.error, { code: 'unauthorized', message: /Authorization: Bearer/ })
  const inBody = await fetch(`${th.httpUrl}/auth/explain`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ clientId: 'x', token: th.token({ sub: 'u1' }) }),
  })
  t.equal(inBody.status, 400, 'a token in the body is refused, not read')
})

t.test("the protocol reference's curl command gets the explanation of a token", async (t) => {
  const th = await startTestHub(t)
  const bob = await th.hub.users.createUser({ name: 'Bob' })
  // docs/protocol/README.md, "Why was my connection refused?", with the test hub's address
  const command = `curl -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \\
    -d '{"clientId":"my-client"}' http://localhost:8080/auth/explain`
  const { stdout } = await promisify(execFile)(
    'sh',
    ['-c', command.replace('http://localhost:8080', th.httpUrl)],
    { env: { ...process.env, TOKEN: th.token({ sub: bob.id }) } },
  )
  t.match(JSON.parse(stdout), { accepted: true, returnCode: 0, token: { role: 'user', sub: bob.id } })
})

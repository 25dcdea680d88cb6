import jwt from 'jsonwebtoken'
import t from 'tap'
import type { DeviceRegistration, RouterDoc } from '../../services/collections.ts'
import {
  TEST_SECRET,
  connackCode,
  connectionClosed,
  nextMessage,
  sleep,
  startTestHub,
  subackCodes,
  waitForMessage,
} from '../helpers/hub.ts'

// docs/protocol/README.md#authentication: who may connect, and with which CONNACK a connection is refused.

const th = await startTestHub(t)
const now = () => Math.floor(Date.now() / 1000)
const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
/** CONNACK code for a connection attempt with this token as the MQTT password. */
const codeFor = (password: string | undefined, clientId = 'c1', extra: Record<string, unknown> = {}) =>
  connackCode(th.mqttUrl, {
    clientId,
    ...(password !== undefined ? { username: 'token', password } : {}),
    ...extra,
  })

await th.hub.store.transaction(async (tx) => {
  tx.insert<DeviceRegistration>('devices', { id: 'd1', owner: 'u1', tokenVersion: 2 })
  tx.insert<RouterDoc>('routers', { id: 'r1', tokenVersion: 3 })
})

t.test('a valid user token is accepted (CONNACK 0), with any allowed client id', async (t) => {
  t.equal(await codeFor(th.token({ sub: 'u1', name: 'U' }), 'any_Client-id-1'), 0)
  t.equal(await codeFor(th.token({ sub: 'op', role: 'admin' }), 'console'), 0)
})

t.test(
  'CONNACK 4: missing, malformed, badly signed, unpinned-algorithm, expired or exp-less tokens',
  async (t) => {
    t.equal(await codeFor(undefined), 4, 'no username and no password')
    t.equal(
      await connackCode(th.mqttUrl, { clientId: 'c1', username: 'token' }),
      4,
      'username but no password',
    )
    t.equal(await codeFor(''), 4, 'empty password')
    t.equal(await codeFor('not-a-jwt'), 4, 'malformed token')
    t.equal(await codeFor('a.b.c'), 4, 'three garbage segments')

    const claims = { role: 'user', name: 'U' }
    t.equal(
      await codeFor(
        jwt.sign(claims, 'another-secret-that-is-also-long-enough', { subject: 'u1', expiresIn: 3600 }),
      ),
      4,
      'signed with another secret',
    )

    const unsigned = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ ...claims, sub: 'u1', exp: now() + 3600 })}`
    t.equal(await codeFor(`${unsigned}.`), 4, 'alg none, empty signature')
    const hs256Sig = jwt.sign({ ...claims, sub: 'u1', exp: now() + 3600 }, TEST_SECRET).split('.')[2]!
    t.equal(await codeFor(`${unsigned}.${hs256Sig}`), 4, 'alg none with a signature attached')

    t.equal(
      await codeFor(jwt.sign(claims, TEST_SECRET, { algorithm: 'HS512', subject: 'u1', expiresIn: 3600 })),
      4,
      'HS512 with the right secret: algorithm not pinned',
    )
    t.equal(
      await codeFor(jwt.sign(claims, TEST_SECRET, { algorithm: 'HS384', subject: 'u1', expiresIn: 3600 })),
      4,
      'HS384 with the right secret: algorithm not pinned',
    )

    t.equal(await codeFor(jwt.sign({ ...claims, sub: 'u1', exp: now() - 10 }, TEST_SECRET)), 4, 'expired')
    t.equal(await codeFor(jwt.sign({ ...claims, sub: 'u1' }, TEST_SECRET)), 4, 'no exp claim')
    t.equal(await codeFor(th.token({ sub: 'u1', role: 'superuser' as never })), 4, 'unknown role')
    t.equal(await codeFor(th.token({ sub: 'a/b' })), 4, 'sub that is not an id')
  },
)

t.test('CONNACK 5: a device or router must use its own id as client id', async (t) => {
  const device = th.token({ sub: 'd1', role: 'device', owner: 'u1', ver: 2 })
  t.equal(await codeFor(device, 'd2'), 5, 'device d1 as client d2')
  t.equal(await codeFor(device, 'browser'), 5, 'device d1 as client browser')
  t.equal(await codeFor(device, 'd1'), 0, 'device d1 as client d1 is accepted')

  const router = th.token({ sub: 'r1', role: 'router', ver: 3 })
  t.equal(await codeFor(router, 'r2'), 5, 'router r1 as client r2')
  t.equal(await codeFor(router, 'r1'), 0, 'router r1 as client r1 is accepted')
})

t.test('CONNACK 5: banned client ids (+, #, /, too long, empty) even with a valid token', async (t) => {
  const token = th.token({ sub: 'u1' })
  for (const clientId of ['a+b', '#', 'a/b', '+', 'a b', 'x'.repeat(65)]) {
    t.equal(await codeFor(token, clientId), 5, `client id ${JSON.stringify(clientId)}`)
  }
  t.equal(await codeFor(token, 'x'.repeat(64)), 0, '64 characters are still allowed')
  t.equal(await codeFor(token, '', { clean: true }), 5, 'empty client id with a clean session')
})

t.test('CONNACK 5: devices and routers must be registered and their token generation current', async (t) => {
  t.equal(
    await codeFor(th.token({ sub: 'ghost', role: 'device', owner: 'u1', ver: 1 }), 'ghost'),
    5,
    'unregistered device',
  )
  t.equal(
    await codeFor(th.token({ sub: 'ghost', role: 'router', ver: 1 }), 'ghost'),
    5,
    'unregistered router',
  )

  t.equal(
    await codeFor(th.token({ sub: 'd1', role: 'device', owner: 'u1', ver: 1 }), 'd1'),
    5,
    'device ver 1 < stored 2: revoked',
  )
  t.equal(
    await codeFor(th.token({ sub: 'd1', role: 'device', owner: 'u1', ver: 2 }), 'd1'),
    0,
    'device ver 2 = stored: accepted',
  )

  t.equal(
    await codeFor(th.token({ sub: 'r1', role: 'router', ver: 2 }), 'r1'),
    5,
    'router ver 2 < stored 3: revoked',
  )
  t.equal(
    await codeFor(th.token({ sub: 'r1', role: 'router', ver: 3 }), 'r1'),
    0,
    'router ver 3 = stored: accepted',
  )

  // a generation bumped in the store revokes the token from then on
  await th.hub.store.transaction(async (tx) => {
    const device = await tx.get<DeviceRegistration>('devices', 'd1')
    tx.replace('devices', { ...device!, tokenVersion: 3 })
  })
  t.teardown(() =>
    th.hub.store.transaction(async (tx) => {
      const device = await tx.get<DeviceRegistration>('devices', 'd1')
      tx.replace('devices', { ...device!, tokenVersion: 2 })
    }),
  )
  t.equal(
    await codeFor(th.token({ sub: 'd1', role: 'device', owner: 'u1', ver: 2 }), 'd1'),
    5,
    'ver 2 after the bump to 3: revoked',
  )
  t.equal(
    await codeFor(th.token({ sub: 'd1', role: 'device', owner: 'u1', ver: 3 }), 'd1'),
    0,
    'ver 3 after the bump: accepted',
  )
})

t.test('the hub closes a connection when its token expires, and only that one', async (t) => {
  const shortToken = th.token({ sub: 'u1' }, 2)
  const exp = (jwt.decode(shortToken) as jwt.JwtPayload).exp!
  const expiring = await th.connect({ clientId: 'expiring', token: shortToken })
  const staying = await th.connect({ clientId: 'staying', token: th.token({ sub: 'u2' }) })
  t.ok(expiring.connected, 'the short-lived token is accepted while valid')

  await connectionClosed(expiring, 4000)
  t.ok(Date.now() >= exp * 1000 - 100, 'closed no earlier than exp')
  t.notOk(expiring.connected)

  t.ok(staying.connected, 'a connection with a valid token stays open')
  const status = await nextMessage(staying, 'hub/status')
  t.equal((JSON.parse(status.payload.toString()) as { state: string }).state, 'online', 'and keeps receiving')
})

t.test('$SYS/# is for admins: an admin subscribes and receives broker events', async (t) => {
  const admin = await th.connect({ clientId: 'operator', token: th.token({ sub: 'op', role: 'admin' }) })
  const codes = await subackCodes(admin, '$SYS/#')
  t.ok(codes[0] === 0 || codes[0] === 1, `granted (SUBACK ${codes[0]})`)

  const event = waitForMessage(
    admin,
    (m) => /^\$SYS\/[^/]+\/new\/clients$/.test(m.topic) && m.payload.toString() === 'newcomer',
  )
  await th.connect({ clientId: 'newcomer', token: th.token({ sub: 'u3' }) })
  t.ok(await event, 'the admin sees $SYS/<broker>/new/clients for a new connection')
})

t.test('$SYS/# is refused to users with SUBACK 128, and the connection stays open', async (t) => {
  const user = await th.connect({ clientId: 'nosy', token: th.token({ sub: 'u4' }) })
  t.same(await subackCodes(user, '$SYS/#'), [128])
  t.same(await subackCodes(user, '$SYS/+/new/clients'), [128])

  const seen: string[] = []
  user.on('message', (topic) => seen.push(topic))
  await th.connect({ clientId: 'another', token: th.token({ sub: 'u5' }) })
  await sleep(200)
  t.same(
    seen.filter((topic) => topic.startsWith('$SYS')),
    [],
    'no $SYS message reaches the user',
  )

  t.ok(user.connected, 'still connected')
  t.same(await subackCodes(user, 'hub/status'), [1], 'and can still subscribe where it may')
})

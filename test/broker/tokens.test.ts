import { generateKeyPairSync } from 'node:crypto'
import jwt from 'jsonwebtoken'
import t from 'tap'
import { ConfigError } from '../../broker/config.ts'
import { configFromEnv } from '../../services/config.ts'
import { createTokenService, TokenRefusal } from '../../broker/tokens.ts'
import { connackCode, startTestHub, rs256Env } from '../helpers/hub.ts'

const SECRET = 'a-secret-that-is-at-least-32-characters'

function refusalCode(fn: () => unknown): number | undefined {
  try {
    fn()
  } catch (err) {
    return err instanceof TokenRefusal ? err.returnCode : -1
  }
  return undefined
}

t.test(
  'RS256 with a public key: RS256 tokens pass, HS256 tokens signed with the public key as secret are refused',
  async (t) => {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const pub = publicKey.export({ type: 'spki', format: 'pem' }).toString()
    const priv = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
    const config = configFromEnv({ JWT_PUBLIC_KEY: pub, JWT_PRIVATE_KEY: priv })
    t.equal(config.jwt.algorithm, 'RS256')
    const tokens = createTokenService(config.jwt)
    const { token } = tokens.sign({ sub: 'u1', role: 'user' }, 60)
    t.match(tokens.verify(token), { id: 'u1', role: 'user' })
    // the classic key-confusion attack: HMAC with the public key as the secret
    const confused = jwt.sign({ sub: 'u1', role: 'user' }, pub, { algorithm: 'HS256', expiresIn: 60 })
    t.equal(
      refusalCode(() => tokens.verify(confused)),
      4,
    )
  },
)

t.test('ES256 with an EC public key is detected and verified', async (t) => {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const config = configFromEnv({
    JWT_PUBLIC_KEY: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    JWT_PRIVATE_KEY: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  })
  t.equal(config.jwt.algorithm, 'ES256')
  const tokens = createTokenService(config.jwt)
  const { token } = tokens.sign({ sub: 'r1', role: 'router', ver: 1 }, 60)
  t.match(tokens.verify(token), { id: 'r1', role: 'router', ver: 1 })
})

t.test(
  'a hub configured for RS256 accepts RS256 tokens over MQTT and refuses HS256 ones with CONNACK 4',
  async (t) => {
    const th = await startTestHub(t, rs256Env())
    t.equal(
      await connackCode(th.mqttUrl, { clientId: 'rs', username: 't', password: th.token({ sub: 'u1' }) }),
      0,
    )
    const hs = jwt.sign({ sub: 'u1', role: 'user' }, SECRET, { algorithm: 'HS256', expiresIn: 60 })
    t.equal(await connackCode(th.mqttUrl, { clientId: 'hs', username: 't', password: hs }), 4)
  },
)

t.test(
  'tokens without a role, with an unknown role, or with a sub that is not an id are refused with 4',
  async (t) => {
    const tokens = createTokenService(configFromEnv({ JWT_SECRET: SECRET }).jwt)
    const sign = (claims: object) => jwt.sign(claims, SECRET, { algorithm: 'HS256', expiresIn: 60 })
    t.equal(
      refusalCode(() => tokens.verify(sign({ sub: 'u1' }))),
      4,
    )
    t.equal(
      refusalCode(() => tokens.verify(sign({ sub: 'u1', role: 'root' }))),
      4,
    )
    t.equal(
      refusalCode(() => tokens.verify(sign({ sub: 'a/b', role: 'user' }))),
      4,
    )
    t.equal(
      refusalCode(() => tokens.verify(sign({ sub: 'd1', role: 'device', ver: 1 }))),
      4,
      'device without owner',
    )
    t.equal(
      refusalCode(() => tokens.verify(sign({ sub: 'r1', role: 'router' }))),
      4,
      'router without ver',
    )
    t.equal(
      refusalCode(() => tokens.verify(sign({ sub: 'u1', role: 'user', ver: '2' }))),
      4,
      'user with a ver that is not an integer',
    )
  },
)

t.test('a user token carries its generation; one without ver is generation 0 (undefined)', async (t) => {
  const tokens = createTokenService(configFromEnv({ JWT_SECRET: SECRET }).jwt)
  const sign = (claims: object) => jwt.sign(claims, SECRET, { algorithm: 'HS256', expiresIn: 60 })
  t.equal(tokens.verify(sign({ sub: 'u1', role: 'user', ver: 3 })).ver, 3)
  t.equal(tokens.verify(sign({ sub: 'u1', role: 'user' })).ver, undefined)
  t.equal(tokens.verify(sign({ sub: 'ops', role: 'admin', ver: 3 })).ver, undefined, 'admins have none')
})

t.test('configuration errors name the variable to fix', async (t) => {
  t.throws(() => configFromEnv({}), ConfigError)
  t.throws(() => configFromEnv({ JWT_SECRET: 'short' }), /at least 32/)
  t.throws(() => configFromEnv({ JWT_SECRET: SECRET, MQTT_PORT: 'x' }), /MQTT_PORT/)
  t.throws(() => configFromEnv({ JWT_SECRET: SECRET, TLS_CERT: 'x' }), /TLS_CERT and TLS_KEY/)
  t.throws(() => configFromEnv({ JWT_SECRET: SECRET, RATE_LIMIT_BURST: '-1' }), /RATE_LIMIT_BURST/)
  t.throws(
    () => configFromEnv({ JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----' }),
    /JWT_PUBLIC_KEY/,
  )
})

t.test(
  'signing again with the same issue time gives the same HS256 token, and its iat and exp follow that time',
  async (t) => {
    const tokens = createTokenService(configFromEnv({ JWT_SECRET: SECRET }).jwt)
    const claims = { sub: 'd1', role: 'device', owner: 'u1', ver: 3 } as const
    const issuedAt = Math.floor(Date.now() / 1000) - 120
    const first = tokens.sign(claims, 600, issuedAt)
    t.same(tokens.sign(claims, 600, issuedAt), first, 'the same token and expiry')
    t.equal(first.exp, issuedAt + 600, 'the expiry counts from the issue time given')
    t.match(jwt.decode(first.token), { iat: issuedAt, exp: issuedAt + 600, sub: 'd1', ver: 3 })
    t.match(tokens.verify(first.token), { id: 'd1', role: 'device', owner: 'u1', ver: 3 })
    t.not(tokens.sign(claims, 600).token, first.token, 'without one, the token is issued now')
  },
)

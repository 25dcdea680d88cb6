import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { configFromEnv, ensureJwtSecretFile } from '../../broker/config.ts'

const SECRET = 'a-secret-of-at-least-32-characters!!'

t.test(
  'the limits per account, sign-up, log-in and password hashing come from the environment',
  async (t) => {
    const config = configFromEnv({
      JWT_SECRET: SECRET,
      RATE_LIMIT_ACCOUNT_PER_SECOND: '5',
      RATE_LIMIT_ACCOUNT_BURST: '7',
      SIGNUP_PER_ADDRESS_PER_HOUR: '36',
      SIGNUP_PER_ADDRESS_BURST: '3',
      SIGNUP_PER_HOUR: '7200',
      SIGNUP_BURST: '50',
      LOGIN_FAILURES_PER_ADDRESS: '9',
      LOGIN_FAILURES_PER_ADDRESS_AND_EMAIL: '4',
      LOGIN_FAILURES_PER_EMAIL: '8',
      LOGIN_FAILURE_FORGIVEN_SECONDS: '60',
      LOGIN_SLOWDOWN_MS: '1000',
      PASSWORD_HASH_CONCURRENCY: '3',
      PASSWORD_HASH_QUEUE: '16',
    })
    t.same(config.accountRateLimit, { perSecond: 5, burst: 7 })
    t.same(config.signupLimits, {
      perAddress: { perSecond: 0.01, burst: 3 },
      global: { perSecond: 2, burst: 50 },
    })
    t.same(config.loginThrottle, {
      perAddress: 9,
      perAddressAndEmail: 4,
      perEmail: 8,
      forgiveSeconds: 60,
      slowdownMs: 1000,
    })
    t.same(config.passwordHashing, { concurrency: 3, queueLimit: 16 })
  },
)

t.test('defaults leave a core to the event loop and refuse a count that is not a whole number', async (t) => {
  const defaults = configFromEnv({ JWT_SECRET: SECRET })
  t.same(defaults.accountRateLimit, { perSecond: 20, burst: 40 })
  t.ok(defaults.passwordHashing.concurrency >= 1 && defaults.passwordHashing.concurrency <= 4)
  t.throws(
    () => configFromEnv({ JWT_SECRET: SECRET, PASSWORD_HASH_CONCURRENCY: '1.5' }),
    /PASSWORD_HASH_CONCURRENCY must be a whole number/,
  )
  t.throws(
    () => configFromEnv({ JWT_SECRET: SECRET, LOGIN_FAILURES_PER_EMAIL: '0' }),
    /LOGIN_FAILURES_PER_EMAIL must be a positive number/,
  )
})

t.test('TRUST_PROXY is a list of addresses or CIDR ranges; anything else is refused', async (t) => {
  t.same(configFromEnv({ JWT_SECRET: SECRET }).trustedProxies, [], 'no proxy is trusted by default')
  t.same(
    configFromEnv({ JWT_SECRET: SECRET, TRUST_PROXY: '10.0.0.1, 192.168.0.0/16,fd00::/8' }).trustedProxies,
    ['10.0.0.1', '192.168.0.0/16', 'fd00::/8'],
  )
  for (const bad of ['true', '2', '10.0.0.0/33', 'proxy.example.org', '10.0.0.1/8/1']) {
    t.throws(
      () => configFromEnv({ JWT_SECRET: SECRET, TRUST_PROXY: bad }),
      /TRUST_PROXY must be a comma-separated list of IP addresses or CIDR ranges/,
      `refuses "${bad}"`,
    )
  }
})

t.test(
  'without JWT_SECRET a start keeps one generated secret (mode 600) in DATA_DIR, and the configuration reads it from there',
  async (t) => {
    const dataDir = join(mkdtempSync(join(tmpdir(), 'stagehub-secret-')), 'not-yet-made')
    t.teardown(() => rmSync(join(dataDir, '..'), { recursive: true, force: true }))
    const env = { DATA_DIR: dataDir }
    t.throws(() => configFromEnv(env), /set JWT_SECRET .* start the hub once .*not-yet-made\/jwt-secret/)

    const first = ensureJwtSecretFile(env)
    t.same(first, { file: join(dataDir, 'jwt-secret'), created: true })
    t.equal(statSync(first!.file).mode & 0o777, 0o600, 'readable and writable by the owner only')
    const secret = readFileSync(first!.file, 'utf8').trim()
    t.ok(secret.length >= 43, `${secret.length} characters of 32 random bytes`)

    t.same(ensureJwtSecretFile(env), { file: first!.file, created: false }, 'a second start keeps it')
    t.equal(readFileSync(first!.file, 'utf8').trim(), secret)
    t.match(configFromEnv(env).jwt, { algorithm: 'HS256', secret, secretFile: first!.file })

    t.equal(ensureJwtSecretFile({ ...env, JWT_SECRET: SECRET }), undefined, 'nothing is made with JWT_SECRET')
    t.match(configFromEnv({ ...env, JWT_SECRET: SECRET }).jwt, { secret: SECRET, secretFile: undefined })
  },
)

t.test('a secret file that others may read, or that is too short, is refused with its path', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'stagehub-secret-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const file = join(dataDir, 'jwt-secret')
  writeFileSync(file, 'x'.repeat(40), { mode: 0o600 })
  chmodSync(file, 0o644)
  t.throws(() => configFromEnv({ DATA_DIR: dataDir }), /may be read by other users \(mode 644\).*chmod 600/)
  writeFileSync(file, 'short\n')
  chmodSync(file, 0o600)
  t.throws(() => configFromEnv({ DATA_DIR: dataDir }), /jwt-secret must be at least 32 characters long/)
})

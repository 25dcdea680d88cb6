import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { configFromEnv, ensureJwtSecretFile } from '../../services/config.ts'

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
  'CLAIM_* and PUBLIC_MQTT_URL have defaults, and a bad value is refused naming its variable',
  async (t) => {
    t.same(configFromEnv({ JWT_SECRET: SECRET }).claims, {
      codeTtlSeconds: 600,
      codesPerUserPerHour: 20,
      failuresPerAddress: 10,
      publicMqttUrl: undefined,
    })
    t.same(
      configFromEnv({
        JWT_SECRET: SECRET,
        CLAIM_CODE_TTL_SECONDS: '300',
        CLAIM_CODES_PER_USER_PER_HOUR: '6',
        CLAIM_FAILURES_PER_ADDRESS: '4',
        PUBLIC_MQTT_URL: 'mqtts://hub.example.org:8883',
      }).claims,
      {
        codeTtlSeconds: 300,
        codesPerUserPerHour: 6,
        failuresPerAddress: 4,
        publicMqttUrl: 'mqtts://hub.example.org:8883',
      },
    )
    t.throws(
      () => configFromEnv({ JWT_SECRET: SECRET, CLAIM_CODE_TTL_SECONDS: '0' }),
      /CLAIM_CODE_TTL_SECONDS must be a positive number/,
    )
    t.throws(
      () => configFromEnv({ JWT_SECRET: SECRET, CLAIM_FAILURES_PER_ADDRESS: '2.5' }),
      /CLAIM_FAILURES_PER_ADDRESS must be a whole number/,
    )
    for (const bad of ['https://hub.example.org', 'hub.example.org:1883', 'mqtt://hub/path']) {
      t.throws(
        () => configFromEnv({ JWT_SECRET: SECRET, PUBLIC_MQTT_URL: bad }),
        /PUBLIC_MQTT_URL must be mqtt:\/\/host:port or mqtts:\/\/host:port/,
        `refuses "${bad}"`,
      )
    }
  },
)

t.test('CORS_ORIGINS takes exact origins; paths, wildcards and other schemes are refused', async (t) => {
  t.same(configFromEnv({ JWT_SECRET: SECRET }).corsOrigins, [], 'no origin by default')
  t.same(
    configFromEnv({ JWT_SECRET: SECRET, CORS_ORIGINS: 'https://app.example.org, http://localhost:5173' })
      .corsOrigins,
    ['https://app.example.org', 'http://localhost:5173'],
  )
  for (const bad of [
    'https://app.example.org/',
    '*',
    'app.example.org',
    'ftp://x.org',
    'https://a.org/path',
  ]) {
    t.throws(() => configFromEnv({ JWT_SECRET: SECRET, CORS_ORIGINS: bad }), /CORS_ORIGINS/, bad)
  }
})

t.test('METRICS_TOKEN is optional and must be long enough to guess', async (t) => {
  t.equal(configFromEnv({ JWT_SECRET: SECRET }).metricsToken, undefined)
  t.equal(
    configFromEnv({ JWT_SECRET: SECRET, METRICS_TOKEN: 'scrape-token-0123456789' }).metricsToken,
    'scrape-token-0123456789',
  )
  t.throws(() => configFromEnv({ JWT_SECRET: SECRET, METRICS_TOKEN: 'short' }), /METRICS_TOKEN/)
})

t.test('METRICS_PORT is a port and METRICS_HOST an address, 127.0.0.1 by default', async (t) => {
  const plain = configFromEnv({ JWT_SECRET: SECRET })
  t.equal(plain.metricsPort, undefined, 'metrics on the public port by default')
  t.equal(plain.metricsHost, '127.0.0.1')
  const own = configFromEnv({ JWT_SECRET: SECRET, METRICS_PORT: '9464', METRICS_HOST: '0.0.0.0' })
  t.equal(own.metricsPort, 9464)
  t.equal(own.metricsHost, '0.0.0.0')
  t.throws(() => configFromEnv({ JWT_SECRET: SECRET, METRICS_PORT: '70000' }), /METRICS_PORT/)
  t.throws(() => configFromEnv({ JWT_SECRET: SECRET, METRICS_HOST: 'example.org' }), /METRICS_HOST/)
})

t.test('ROUTER_RETURN_GRACE_SECONDS: 30 by default, 0 allowed, negative refused', async (t) => {
  t.equal(configFromEnv({ JWT_SECRET: SECRET }).routerReturnGraceSeconds, 30)
  t.equal(configFromEnv({ JWT_SECRET: SECRET, ROUTER_RETURN_GRACE_SECONDS: '0' }).routerReturnGraceSeconds, 0)
  t.throws(
    () => configFromEnv({ JWT_SECRET: SECRET, ROUTER_RETURN_GRACE_SECONDS: '-1' }),
    /ROUTER_RETURN_GRACE_SECONDS/,
  )
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

t.test(
  'the wrong-password limits of signed-in users come from the environment, with defaults; a bad value is refused naming its variable',
  async (t) => {
    t.same(configFromEnv({ JWT_SECRET: SECRET }).passwordChecks, {
      stagePerUserAndStage: 5,
      stagePerUser: 20,
      stagePerStage: 50,
      accountPerClient: 5,
      accountPerUser: 20,
      forgiveSeconds: 30,
    })
    const config = configFromEnv({
      JWT_SECRET: SECRET,
      STAGE_PASSWORD_FAILURES_PER_USER_STAGE: '3',
      STAGE_PASSWORD_FAILURES_PER_USER: '9',
      STAGE_PASSWORD_FAILURES_PER_STAGE: '40',
      ACCOUNT_PASSWORD_FAILURES_PER_CLIENT: '4',
      ACCOUNT_PASSWORD_FAILURES_PER_USER: '12',
      PASSWORD_FAILURE_FORGIVEN_SECONDS: '90',
    })
    t.same(config.passwordChecks, {
      stagePerUserAndStage: 3,
      stagePerUser: 9,
      stagePerStage: 40,
      accountPerClient: 4,
      accountPerUser: 12,
      forgiveSeconds: 90,
    })
    t.throws(
      () => configFromEnv({ JWT_SECRET: SECRET, ACCOUNT_PASSWORD_FAILURES_PER_CLIENT: '2.5' }),
      /ACCOUNT_PASSWORD_FAILURES_PER_CLIENT must be a whole number/,
    )
  },
)

t.test(
  'SESSION_* variables have their defaults, and a bad value is refused naming its variable',
  async (t) => {
    t.same(configFromEnv({ JWT_SECRET: SECRET }).sessions, {
      expiryMs: 2 * 60 * 60 * 1000,
      maxPerIdentity: 10,
    })
    t.same(
      configFromEnv({ JWT_SECRET: SECRET, SESSION_EXPIRY_SECONDS: '90', SESSION_MAX_PER_IDENTITY: '3' })
        .sessions,
      { expiryMs: 90_000, maxPerIdentity: 3 },
    )
    t.throws(
      () => configFromEnv({ JWT_SECRET: SECRET, SESSION_EXPIRY_SECONDS: '0' }),
      /SESSION_EXPIRY_SECONDS must be a positive number/,
    )
    t.throws(
      () => configFromEnv({ JWT_SECRET: SECRET, SESSION_MAX_PER_IDENTITY: '2.5' }),
      /SESSION_MAX_PER_IDENTITY must be a whole number/,
    )
  },
)

t.test(
  'REDIS_URL makes this process one of a deployment and needs MONGO_URL and a valid HUB_ID',
  async (t) => {
    t.equal(configFromEnv({ JWT_SECRET: SECRET }).cluster, undefined, 'one process without REDIS_URL')
    t.throws(
      () => configFromEnv({ JWT_SECRET: SECRET, REDIS_URL: 'redis://127.0.0.1:6379' }),
      /REDIS_URL is set without MONGO_URL/,
    )
    const mongo = { JWT_SECRET: SECRET, REDIS_URL: 'redis://r:6379', MONGO_URL: 'mongodb://m/stagehub' }
    t.same(configFromEnv({ ...mongo, HUB_ID: 'hub-1' }).cluster, {
      redisUrl: 'redis://r:6379',
      processId: 'hub-1',
    })
    const a = configFromEnv(mongo).cluster!.processId
    const b = configFromEnv(mongo).cluster!.processId
    t.match(a, /^[A-Za-z0-9][A-Za-z0-9._-]+-\d+-[0-9a-f]{6}$/, 'default: host-pid-random')
    t.not(a, b, 'two processes on one host never share a default id')
    t.throws(() => configFromEnv({ ...mongo, HUB_ID: 'hub 1/x' }), /HUB_ID must be/)
  },
)

import t from 'tap'
import { configFromEnv } from '../../broker/config.ts'

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

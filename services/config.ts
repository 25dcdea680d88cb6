import { createPublicKey, randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { availableParallelism, hostname } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ConfigError, type JwtAlgorithm, type JwtConfig, type ListenerConfig } from '../broker/config.ts'

/** The hub's whole configuration, read from the environment: the broker's part and the services'. */
export interface HubConfig extends ListenerConfig {
  jwt: JwtConfig
  dataDir: string
  mongoUrl?: string | undefined
  /** What the embedded store checks when it opens (STORE_INTEGRITY_CHECK). */
  storeIntegrityCheck: StoreIntegrityCheck
  /**
   * Several hub processes serving one deployment (REDIS_URL, docs/cluster.md): Redis carries the
   * message bus, commits and leases between them; MONGO_URL is required with it.
   */
  cluster?: ClusterSettings | undefined
  logLevel: string
  /**
   * Per connection: messages (and their bytes) sent but not yet taken by its socket; beyond either
   * QoS 0 is dropped and QoS 1 closes the connection, as does a socket that stays full `drainTimeoutMs`.
   */
  outbound: { maxMessages: number; maxBytes: number; drainTimeoutMs: number }
  /**
   * Persistent sessions (CONNECT with clean session 0): each ends after `expiryMs` offline, and an
   * identity keeps at most `maxPerIdentity` (beyond, its longest-unused offline session ends). Their
   * queued QoS 1 messages are bounded by the `outbound` message and byte limits.
   */
  sessions: { expiryMs: number; maxPerIdentity: number }
  /** Requests per client: a bucket of `burst` refilled at `perSecond`. */
  rateLimit: { perSecond: number; burst: number }
  /** Requests per account (role and id) across all its connections, on top of the per-client limit. */
  accountRateLimit: { perSecond: number; burst: number }
  /** Sign-ups per remote address (IPv4, or IPv6 /64) and for the whole hub. */
  signupLimits: {
    perAddress: { perSecond: number; burst: number }
    global: { perSecond: number; burst: number }
  }
  /** Failed log-ins tolerated per address, per (address, e-mail) and per e-mail; see LoginThrottle. */
  loginThrottle: {
    perAddress: number
    perAddressAndEmail: number
    perEmail: number
    forgiveSeconds: number
    slowdownMs: number
  }
  /**
   * Wrong passwords tolerated from signed-in users (stage passwords of stage.join, the current
   * password of user.changePassword and user.delete); see GuessThrottle in services/users/auth-limits.ts.
   */
  passwordChecks: {
    /** Wrong passwords of one user for one stage, then refused. */
    stagePerUserAndStage: number
    /** Wrong stage passwords of one user over all stages, then refused. */
    stagePerUser: number
    /** Wrong passwords for one stage from anyone, then each check waits `loginThrottle.slowdownMs`. */
    stagePerStage: number
    /** Wrong current passwords from one client id of a user, then refused. */
    accountPerClient: number
    /** Wrong current passwords of one user from any client id, then each check waits. */
    accountPerUser: number
    forgiveSeconds: number
  }
  /** scrypt computations at once, and new hashes that may wait for one (beyond: 503 unavailable). */
  passwordHashing: { concurrency: number; queueLimit: number }
  /** How long a request id is remembered for idempotent retries. */
  requestIdTtlMs: number
  /** Lifetime of user tokens issued by /auth. */
  userTokenTtlSeconds: number
  /** Lifetime of device tokens from device.create / device.token (revocable at any time by rotation). */
  deviceTokenTtlSeconds: number
  routerTokenTtlSeconds: number
  /** How long after a hub start routers keep their stages while they reconnect, before failover. */
  routerReturnGraceSeconds: number
  /** scrypt cost for stored passwords (N = 2^cost). */
  passwordHashCost: number
  quotas: Quotas
  /** Days audit trail entries are kept; 0 turns the audit trail off. */
  auditRetentionDays: number
  /** Device claiming (device.claimCode, POST /devices/claim). */
  claims: {
    codeTtlSeconds: number
    /** Codes one user may create an hour (a bucket of 5 at once, refilled at this rate). */
    codesPerUserPerHour: number
    /** Wrong, expired or used codes one address may send before it is refused (429); one is forgiven a minute. */
    failuresPerAddress: number
    /** The MQTT address a claimed box is told to use; unset: the HTTP request's host name and the MQTT port. */
    publicMqttUrl?: string | undefined
  }
  /** When set, `/metrics` answers only requests with `Authorization: Bearer <metricsToken>`. */
  metricsToken?: string | undefined
  /** When set, `/metrics` is served only on this port of `metricsHost`, not on the public HTTP port. */
  metricsPort?: number | undefined
  metricsHost: string
  /** Web origins (scheme://host[:port]) whose pages may call the HTTP API from a browser (CORS). */
  corsOrigins: string[]
  /** The built web app (`npm run build:web`), served at `/`: WEB_DIR, default `web/dist` of this checkout. */
  webDir: string
}

export interface Quotas {
  /** Stages one user may have created and not removed. */
  stagesPerUser: number
  groupsPerStage: number
  /** Memberships (online or not) per stage; seats (in the stage at once) are capped at 30 regardless. */
  membersPerStage: number
  /** Chat messages per user: a bucket of `chatBurst` refilled at `chatPerSecond`. */
  chatPerSecond: number
  chatBurst: number
  devicesPerUser: number
}

export interface ClusterSettings {
  redisUrl: string
  /** This process's name in the deployment (HUB_ID; default host-pid-random): Aedes' broker id, lease owner. */
  processId: string
}

/** quick: PRAGMA quick_check (page and b-tree structure); full: integrity_check (also indexes); off: none. */
export type StoreIntegrityCheck = 'quick' | 'full' | 'off'

/** Where the store is, read on its own: the store commands (backup, verify) need no JWT configuration. */
export interface StoreSettings {
  dataDir: string
  mongoUrl?: string | undefined
  storeIntegrityCheck: StoreIntegrityCheck
}

const defaults = {
  host: '0.0.0.0',
  mqttPort: 1883,
  httpPort: 8080,
  mqttsPort: 8883,
  dataDir: './data',
  // metrics on their own port are for a scraper on this machine (or a sidecar) unless said otherwise
  metricsHost: '127.0.0.1',
  storeIntegrityCheck: 'quick' as StoreIntegrityCheck,
  logLevel: 'info',
  maxPayloadBytes: 64 * 1024,
  // Mosquitto's max_queued_messages and EMQX's max_mqueue_len are 1000 too
  outbound: { maxMessages: 1000, maxBytes: 4 * 1024 * 1024, drainTimeoutSeconds: 30 },
  // Mosquitto's persistent_client_expiration has no default (never); two hours outlasts a dropped
  // phone connection or a router reboot without keeping abandoned sessions for ever
  sessions: { expirySeconds: 2 * 60 * 60, maxPerIdentity: 10 },
  rateLimit: { perSecond: 20, burst: 40 },
  accountRateLimit: { perSecond: 20, burst: 40 },
  signupLimits: {
    perAddress: { perHour: 20, burst: 10 },
    global: { perHour: 3600, burst: 100 },
  },
  loginThrottle: {
    perAddress: 20,
    perAddressAndEmail: 5,
    perEmail: 10,
    forgiveSeconds: 30,
    slowdownMs: 2000,
  },
  passwordChecks: {
    stagePerUserAndStage: 5,
    stagePerUser: 20,
    stagePerStage: 50,
    accountPerClient: 5,
    accountPerUser: 20,
    forgiveSeconds: 30,
  },
  // one core is left to the event loop; libuv runs four threads by default, more would queue there
  passwordHashing: { concurrency: Math.min(4, Math.max(1, availableParallelism() - 1)), queueLimit: 32 },
  requestIdTtlMs: 10 * 60 * 1000,
  userTokenTtlSeconds: 7 * 24 * 3600,
  deviceTokenTtlSeconds: 365 * 24 * 3600,
  routerTokenTtlSeconds: 365 * 24 * 3600,
  routerReturnGraceSeconds: 30,
  passwordHashCost: 15,
  auditRetentionDays: 90,
  claims: { codeTtlSeconds: 600, codesPerUserPerHour: 20, failuresPerAddress: 10 },
  quotas: {
    stagesPerUser: 20,
    groupsPerStage: 30,
    membersPerStage: 300,
    chatPerSecond: 1,
    chatBurst: 10,
    devicesPerUser: 50,
  },
}

export function storeSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): StoreSettings {
  const check = env.STORE_INTEGRITY_CHECK || defaults.storeIntegrityCheck
  if (check !== 'quick' && check !== 'full' && check !== 'off') {
    throw new ConfigError(`STORE_INTEGRITY_CHECK must be quick, full or off, got "${check}"`)
  }
  return {
    dataDir: env.DATA_DIR || defaults.dataDir,
    mongoUrl: env.MONGO_URL || undefined,
    storeIntegrityCheck: check,
  }
}

const PROCESS_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/

function clusterSettingsFromEnv(env: NodeJS.ProcessEnv): ClusterSettings | undefined {
  if (!env.REDIS_URL) return undefined
  if (!env.MONGO_URL) {
    throw new ConfigError(
      'REDIS_URL is set without MONGO_URL: hub processes share one deployment through Redis and MongoDB, and the embedded store belongs to one process. Set MONGO_URL (a replica set), or unset REDIS_URL to run one process.',
    )
  }
  const host =
    hostname()
      .replace(/[^A-Za-z0-9._-]/g, '-')
      .slice(0, 40) || 'hub'
  const processId = env.HUB_ID || `${host}-${process.pid}-${randomBytes(3).toString('hex')}`
  if (!PROCESS_ID.test(processId)) {
    throw new ConfigError(`HUB_ID must be 1-63 letters, digits, '.', '_' or '-', got "${processId}"`)
  }
  return { redisUrl: env.REDIS_URL, processId }
}

/** The signing secret `stagehub start` keeps in DATA_DIR when neither JWT_SECRET nor JWT_PUBLIC_KEY is set. */
export function jwtSecretFile(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(storeSettingsFromEnv(env).dataDir, 'jwt-secret')
}

/**
 * For `stagehub start`: without JWT_SECRET and JWT_PUBLIC_KEY, makes sure DATA_DIR holds a signing
 * secret (32 random bytes, readable by the owner only), so a first start needs no configuration and
 * the CLI in another terminal signs with the same key. Returns the file, and whether it was just made.
 */
export function ensureJwtSecretFile(
  env: NodeJS.ProcessEnv = process.env,
): { file: string; created: boolean } | undefined {
  if (env.JWT_SECRET || env.JWT_PUBLIC_KEY) return undefined
  const file = jwtSecretFile(env)
  mkdirSync(join(file, '..'), { recursive: true, mode: 0o700 })
  try {
    // 'wx': two hubs starting at once on one directory keep the first one's secret
    writeFileSync(file, randomBytes(32).toString('base64url') + '\n', { mode: 0o600, flag: 'wx' })
    return { file, created: true }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return { file, created: false }
    throw new ConfigError(`cannot write the JWT secret to ${file}: ${(err as Error).message}`)
  }
}

/** The secret in DATA_DIR/jwt-secret, or undefined when there is none; refused if others may read it. */
function readJwtSecretFile(env: NodeJS.ProcessEnv): { secret: string; file: string } | undefined {
  const file = jwtSecretFile(env)
  let mode: number
  try {
    mode = statSync(file).mode
  } catch {
    return undefined
  }
  if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
    throw new ConfigError(
      `${file} may be read by other users (mode ${(mode & 0o777).toString(8)}): anyone who reads it can sign tokens; chmod 600 ${file}`,
    )
  }
  return { secret: readFileSync(file, 'utf8').trim(), file }
}

/** Reads the configuration (README.md, Configuration) from the environment; every problem is reported with its variable. */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): HubConfig {
  const port = (name: string, fallback: number): number => {
    const raw = env[name]
    if (raw === undefined || raw === '') return fallback
    const value = Number(raw)
    if (!Number.isInteger(value) || value < 0 || value > 65535) {
      throw new ConfigError(`${name} must be a port number 0-65535 (0 picks a free port), got "${raw}"`)
    }
    return value
  }
  const positive = (name: string, fallback: number): number => {
    const raw = env[name]
    if (raw === undefined || raw === '') return fallback
    const value = Number(raw)
    if (!Number.isFinite(value) || value <= 0)
      throw new ConfigError(`${name} must be a positive number, got "${raw}"`)
    return value
  }
  const count = (name: string, fallback: number): number => {
    const value = positive(name, fallback)
    if (!Number.isInteger(value)) throw new ConfigError(`${name} must be a whole number, got "${env[name]}"`)
    return value
  }
  const addressList = (name: string): string[] => {
    const entries = (env[name] ?? '')
      .split(',')
      .map((entry) => entry.trim())
      .filter(Boolean)
    for (const entry of entries) {
      const [address = '', prefix, extra] = entry.split('/')
      const family = isIP(address)
      const bits = family === 4 ? 32 : 128
      const prefixOk = prefix === undefined || (/^\d+$/.test(prefix) && Number(prefix) <= bits)
      if (!family || !prefixOk || extra !== undefined) {
        throw new ConfigError(
          `${name} must be a comma-separated list of IP addresses or CIDR ranges (10.0.0.0/8), got "${entry}"`,
        )
      }
    }
    return entries
  }
  const originList = (name: string): string[] => {
    const entries = (env[name] ?? '')
      .split(',')
      .map((entry) => entry.trim())
      .filter(Boolean)
    for (const entry of entries) {
      // a browser sends its Origin as scheme://host[:port] and nothing else; anything longer never matches
      let exact = false
      try {
        const url = new URL(entry)
        exact = (url.protocol === 'http:' || url.protocol === 'https:') && url.origin === entry
      } catch {
        // not a URL: reported below
      }
      if (!exact) {
        throw new ConfigError(
          `${name} must be a comma-separated list of origins like https://app.example.org (scheme, host and port only, no trailing slash), got "${entry}"`,
        )
      }
    }
    return entries
  }
  const address = (name: string, fallback: string): string => {
    const raw = env[name]
    if (raw === undefined || raw === '') return fallback
    if (!isIP(raw))
      throw new ConfigError(
        `${name} must be an IP address to listen on (127.0.0.1, ::1, 0.0.0.0), got "${raw}"`,
      )
    return raw
  }
  const nonNegative = (name: string, fallback: number): number => {
    const raw = env[name]
    if (raw === undefined || raw === '') return fallback
    const value = Number(raw)
    if (!Number.isFinite(value) || value < 0)
      throw new ConfigError(`${name} must be a number ≥ 0, got "${raw}"`)
    return value
  }
  const mqttUrl = (name: string): string | undefined => {
    const raw = env[name]
    if (!raw) return undefined
    if (!/^mqtts?:\/\/[^/\s]+$/.test(raw))
      throw new ConfigError(`${name} must be mqtt://host:port or mqtts://host:port, got "${raw}"`)
    return raw
  }
  const fileOrPem = (name: string): string | undefined => {
    const raw = env[name]
    if (!raw) return undefined
    return raw.includes('-----BEGIN') ? raw : readFileSync(raw, 'utf8')
  }

  const publicKey = fileOrPem('JWT_PUBLIC_KEY')
  const stored = env.JWT_SECRET || publicKey ? undefined : readJwtSecretFile(env)
  const secret = env.JWT_SECRET || stored?.secret
  let algorithm: JwtAlgorithm = 'HS256'
  if (publicKey) {
    let keyType: string | undefined
    try {
      keyType = createPublicKey(publicKey).asymmetricKeyType
    } catch (err) {
      throw new ConfigError(`JWT_PUBLIC_KEY is not a PEM public key: ${(err as Error).message}`)
    }
    algorithm = (env.JWT_ALGORITHM as JwtAlgorithm | undefined) ?? (keyType === 'ec' ? 'ES256' : 'RS256')
    if (algorithm !== 'RS256' && algorithm !== 'ES256') {
      throw new ConfigError(`JWT_ALGORITHM must be RS256 or ES256 with JWT_PUBLIC_KEY, got "${algorithm}"`)
    }
  } else if (!secret) {
    throw new ConfigError(
      `set JWT_SECRET (HS256 key, at least 32 characters) or JWT_PUBLIC_KEY (PEM for RS256/ES256), or start the hub once (npm start) with this DATA_DIR: it then keeps a generated secret in ${jwtSecretFile(env)}`,
    )
  } else if (secret.length < 32) {
    throw new ConfigError(`${stored ? stored.file : 'JWT_SECRET'} must be at least 32 characters long`)
  }

  const metricsToken = env.METRICS_TOKEN || undefined
  if (metricsToken !== undefined && metricsToken.length < 16) {
    throw new ConfigError('METRICS_TOKEN must be at least 16 characters long')
  }

  const cert = env.TLS_CERT
  const key = env.TLS_KEY
  if (Boolean(cert) !== Boolean(key)) throw new ConfigError('TLS_CERT and TLS_KEY must be set together')

  return {
    host: env.HOST || defaults.host,
    mqttPort: port('MQTT_PORT', defaults.mqttPort),
    httpPort: port('HTTP_PORT', defaults.httpPort),
    tls:
      cert && key
        ? {
            port: port('MQTTS_PORT', defaults.mqttsPort),
            cert: fileOrPem('TLS_CERT')!,
            key: fileOrPem('TLS_KEY')!,
          }
        : undefined,
    jwt: {
      algorithm,
      secret: publicKey ? undefined : secret,
      secretFile: stored?.file,
      publicKey,
      privateKey: fileOrPem('JWT_PRIVATE_KEY'),
    },
    ...storeSettingsFromEnv(env),
    cluster: clusterSettingsFromEnv(env),
    logLevel: env.LOG_LEVEL || defaults.logLevel,
    maxPayloadBytes: positive('MAX_PAYLOAD_BYTES', defaults.maxPayloadBytes),
    outbound: {
      maxMessages: count('OUTBOUND_QUEUE_MESSAGES', defaults.outbound.maxMessages),
      maxBytes: count('OUTBOUND_QUEUE_BYTES', defaults.outbound.maxBytes),
      drainTimeoutMs:
        1000 * positive('OUTBOUND_DRAIN_TIMEOUT_SECONDS', defaults.outbound.drainTimeoutSeconds),
    },
    sessions: {
      expiryMs: 1000 * positive('SESSION_EXPIRY_SECONDS', defaults.sessions.expirySeconds),
      maxPerIdentity: count('SESSION_MAX_PER_IDENTITY', defaults.sessions.maxPerIdentity),
    },
    rateLimit: {
      perSecond: positive('RATE_LIMIT_PER_SECOND', defaults.rateLimit.perSecond),
      burst: positive('RATE_LIMIT_BURST', defaults.rateLimit.burst),
    },
    accountRateLimit: {
      perSecond: positive('RATE_LIMIT_ACCOUNT_PER_SECOND', defaults.accountRateLimit.perSecond),
      burst: positive('RATE_LIMIT_ACCOUNT_BURST', defaults.accountRateLimit.burst),
    },
    signupLimits: {
      perAddress: {
        perSecond: positive('SIGNUP_PER_ADDRESS_PER_HOUR', defaults.signupLimits.perAddress.perHour) / 3600,
        burst: positive('SIGNUP_PER_ADDRESS_BURST', defaults.signupLimits.perAddress.burst),
      },
      global: {
        perSecond: positive('SIGNUP_PER_HOUR', defaults.signupLimits.global.perHour) / 3600,
        burst: positive('SIGNUP_BURST', defaults.signupLimits.global.burst),
      },
    },
    loginThrottle: {
      perAddress: count('LOGIN_FAILURES_PER_ADDRESS', defaults.loginThrottle.perAddress),
      perAddressAndEmail: count(
        'LOGIN_FAILURES_PER_ADDRESS_AND_EMAIL',
        defaults.loginThrottle.perAddressAndEmail,
      ),
      perEmail: count('LOGIN_FAILURES_PER_EMAIL', defaults.loginThrottle.perEmail),
      forgiveSeconds: positive('LOGIN_FAILURE_FORGIVEN_SECONDS', defaults.loginThrottle.forgiveSeconds),
      slowdownMs: positive('LOGIN_SLOWDOWN_MS', defaults.loginThrottle.slowdownMs),
    },
    passwordChecks: {
      stagePerUserAndStage: count(
        'STAGE_PASSWORD_FAILURES_PER_USER_STAGE',
        defaults.passwordChecks.stagePerUserAndStage,
      ),
      stagePerUser: count('STAGE_PASSWORD_FAILURES_PER_USER', defaults.passwordChecks.stagePerUser),
      stagePerStage: count('STAGE_PASSWORD_FAILURES_PER_STAGE', defaults.passwordChecks.stagePerStage),
      accountPerClient: count(
        'ACCOUNT_PASSWORD_FAILURES_PER_CLIENT',
        defaults.passwordChecks.accountPerClient,
      ),
      accountPerUser: count('ACCOUNT_PASSWORD_FAILURES_PER_USER', defaults.passwordChecks.accountPerUser),
      forgiveSeconds: positive('PASSWORD_FAILURE_FORGIVEN_SECONDS', defaults.passwordChecks.forgiveSeconds),
    },
    trustedProxies: addressList('TRUST_PROXY'),
    passwordHashing: {
      concurrency: count('PASSWORD_HASH_CONCURRENCY', defaults.passwordHashing.concurrency),
      queueLimit: count('PASSWORD_HASH_QUEUE', defaults.passwordHashing.queueLimit),
    },
    requestIdTtlMs: defaults.requestIdTtlMs,
    userTokenTtlSeconds: positive('USER_TOKEN_TTL_SECONDS', defaults.userTokenTtlSeconds),
    deviceTokenTtlSeconds: positive('DEVICE_TOKEN_TTL_SECONDS', defaults.deviceTokenTtlSeconds),
    routerTokenTtlSeconds: positive('ROUTER_TOKEN_TTL_SECONDS', defaults.routerTokenTtlSeconds),
    routerReturnGraceSeconds: nonNegative('ROUTER_RETURN_GRACE_SECONDS', defaults.routerReturnGraceSeconds),
    passwordHashCost: positive('PASSWORD_HASH_COST', defaults.passwordHashCost),
    auditRetentionDays: nonNegative('AUDIT_RETENTION_DAYS', defaults.auditRetentionDays),
    claims: {
      codeTtlSeconds: count('CLAIM_CODE_TTL_SECONDS', defaults.claims.codeTtlSeconds),
      codesPerUserPerHour: positive('CLAIM_CODES_PER_USER_PER_HOUR', defaults.claims.codesPerUserPerHour),
      failuresPerAddress: count('CLAIM_FAILURES_PER_ADDRESS', defaults.claims.failuresPerAddress),
      publicMqttUrl: mqttUrl('PUBLIC_MQTT_URL'),
    },
    metricsToken,
    metricsPort: env.METRICS_PORT ? port('METRICS_PORT', 0) : undefined,
    metricsHost: address('METRICS_HOST', defaults.metricsHost),
    corsOrigins: originList('CORS_ORIGINS'),
    webDir: resolve(env.WEB_DIR || fileURLToPath(new URL('../web/dist', import.meta.url))),
    quotas: {
      stagesPerUser: positive('QUOTA_STAGES_PER_USER', defaults.quotas.stagesPerUser),
      groupsPerStage: positive('QUOTA_GROUPS_PER_STAGE', defaults.quotas.groupsPerStage),
      membersPerStage: positive('QUOTA_MEMBERS_PER_STAGE', defaults.quotas.membersPerStage),
      chatPerSecond: positive('QUOTA_CHAT_PER_SECOND', defaults.quotas.chatPerSecond),
      chatBurst: positive('QUOTA_CHAT_BURST', defaults.quotas.chatBurst),
      devicesPerUser: positive('QUOTA_DEVICES_PER_USER', defaults.quotas.devicesPerUser),
    },
  }
}

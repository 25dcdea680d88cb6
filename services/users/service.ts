import { randomBytes } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { Static } from '@sinclair/typebox'
import { type Identity, type TokenService, TokenRefusal } from '../../broker/tokens.ts'
import { Type } from '@sinclair/typebox'
import {
  UserName,
  userChangePassword,
  userDelete,
  userSignOut,
  userUpdate,
} from '../../schemas/actions/user.ts'
import { LoginBody, RenewBody, SignupBody, TokenReply } from '../../schemas/http.ts'
import { validator } from '../../schemas/validate.ts'
import { type DeletedUserDoc, collections, type UserDoc } from '../collections.ts'
import { HubError, checkVersion, forbidden, notFound } from '../errors.ts'
import type { RequestContext, RequestPipeline } from '../requests/pipeline.ts'
import type { StatePublisher } from '../state-publisher.ts'
import { UniqueViolationError } from '../store/port.ts'
import type { Store, Transaction } from '../store/store.ts'
import {
  type Bucket,
  GuessThrottle,
  addressKey,
  LoginThrottle,
  type LoginThrottleOptions,
  SignupLimit,
  throttledCheck,
} from './auth-limits.ts'
import { RateLimiter } from '../requests/rate-limit.ts'
import type { PasswordPool } from './password-pool.ts'
import { profileProjection, userProfile } from './projection.ts'

export function newId(): string {
  return randomBytes(12).toString('base64url')
}

const validTokenName = validator(Type.Object({ name: UserName }))

/** The profile name a token's `name` claim gives (normalised as user.update would), else the id. */
export function nameFromClaims(who: Pick<Identity, 'id' | 'name'>): string {
  const claims = { name: who.name }
  return validTokenName(claims) ? claims.name : who.id
}

export interface NewUser {
  name: string
  email?: string | undefined
  password?: string | undefined
}

/**
 * Creates a user in the store (sign-up, and the operator CLI, which has no broker). E-mail addresses
 * are unique, compared lower-cased.
 */
export async function createUser(store: Store, input: NewUser, passwords: PasswordPool): Promise<UserDoc> {
  await store.ensureCollection(collections.users)
  const email = input.email?.trim().toLowerCase()
  const passwordHash = input.password ? await passwords.hash(input.password) : undefined
  try {
    const { value } = await store.transaction(async (tx) =>
      tx.insert<UserDoc>(collections.users.name, {
        id: newId(),
        name: input.name,
        ...(email ? { email } : {}),
        ...(passwordHash ? { passwordHash } : {}),
        createdAt: new Date().toISOString(),
      }),
    )
    return value
  } catch (err) {
    if (err instanceof UniqueViolationError) {
      throw new HubError('conflict', 'an account with this e-mail address exists already: log in instead')
    }
    throw err
  }
}

/** A user token of the account's current generation, as the HTTP auth routes, the CLI and the requests (ctx.sign) hand it out. */
export function userToken(
  tokens: Pick<TokenService, 'sign'>,
  user: Pick<UserDoc, 'id' | 'name' | 'tokenVersion'>,
  ttlSeconds: number,
): TokenReply {
  // a lifetime below a second would be refused by the signer; such a token is as good as expired
  ttlSeconds = Math.max(1, ttlSeconds)
  const { token, exp } = tokens.sign(
    { sub: user.id, role: 'user', name: user.name, ver: user.tokenVersion ?? 0 },
    ttlSeconds,
  )
  return { userId: user.id, token, expiresAt: new Date(exp * 1000).toISOString() }
}

/** The user as stored with a new password hash and the next token generation (older tokens die). */
export function withNewPassword(user: UserDoc, passwordHash: string): UserDoc {
  return { ...user, passwordHash, tokenVersion: (user.tokenVersion ?? 0) + 1 }
}

/**
 * The operator's password reset (`stagehub user reset-password`; the hub sends no e-mail): sets the
 * password of the user with this id or e-mail address and signs out every session.
 */
export async function resetPassword(
  store: Store,
  user: { id?: string | undefined; email?: string | undefined },
  password: string,
  passwords: PasswordPool,
): Promise<UserDoc> {
  await store.ensureCollection(collections.users)
  const passwordHash = await passwords.hash(password)
  const { value } = await store.transaction(async (tx) => {
    const found = await findUser(tx, user)
    return tx.replace(collections.users.name, withNewPassword(found, passwordHash))
  })
  return value
}

async function findUser(
  tx: Transaction,
  { id, email }: { id?: string | undefined; email?: string | undefined },
): Promise<UserDoc> {
  if (id) {
    const user = await tx.get<UserDoc>(collections.users.name, id)
    if (!user) throw notFound(`user ${id}`)
    return user
  }
  const address = email?.trim().toLowerCase() ?? ''
  const [user] = await tx.find<UserDoc>(collections.users.name, { email: address })
  if (!user) throw notFound(`a user with the e-mail address ${address}`)
  return user
}

/** Runs inside the user.update transaction, after the user document was replaced. */
export type ProfileHook = (ctx: RequestContext, user: UserDoc) => Promise<void>

export type AccountRemovalChoice = Static<typeof userDelete.params>
export type AccountRemoval = Static<typeof userDelete.result>

/**
 * Runs inside the user.delete transaction, before the user document goes: removes what the service
 * keeps of the user (clearing its topics) and notes it in `removal`, the caller's answer.
 */
export type AccountRemovalHook = (
  ctx: RequestContext,
  user: UserDoc,
  choice: AccountRemovalChoice,
  removal: AccountRemoval,
) => Promise<void>

export interface UsersServiceOptions {
  /**
   * Whether this process does the deployment's once-only work (services/cluster/coordination.ts):
   * its periodic purge runs only while it is true. Default: always (one process).
   */
  isCoordinator?: () => boolean
  store: Store
  pipeline: RequestPipeline
  publisher: StatePublisher
  tokens: TokenService
  passwords: PasswordPool
  signupLimits: { perAddress: Bucket; global: Bucket }
  loginThrottle: LoginThrottleOptions
  /** Wrong current passwords of signed-in actions: per (user, client id) refused, per user slowed. */
  passwordChecks: { perClient: number; perUser: number; forgiveSeconds: number; slowdownMs: number }
  userTokenTtlSeconds: number
  log: Logger
}

/** Token renewals per account: 10 at once, then one a minute. */
const RENEWALS_PER_USER = { burst: 10, perSecond: 1 / 60 }

/** Tombstones deleted in one transaction: a short write, whatever the backlog. */
const TOMBSTONE_BATCH = 200

/** Users: profiles (`users/{u}`), the `user.update` action, and sign-up/log-in over HTTP (docs/protocol/README.md#http). */
export class UsersService {
  readonly #options: UsersServiceOptions
  readonly #signups: SignupLimit
  readonly #logins: LoginThrottle
  /** Refused renewals (bad, expired or revoked tokens) per address, as failed log-ins are counted. */
  readonly #renewalFailures: GuessThrottle
  /** Renewals per account: an app renews a few times per token lifetime, never in a loop. */
  readonly #renewals = new RateLimiter(RENEWALS_PER_USER)
  readonly #profileHooks: ProfileHook[] = []
  readonly #removalHooks: AccountRemovalHook[] = []
  /**
   * Connections whose own user.delete is being answered: spared from the close when the deletion
   * commits (see hub.ts), so that the answer reaches them; the hub closes them right after it.
   */
  readonly #answeringDeletion = new WeakSet<Identity>()
  /**
   * Guards the password checks of signed-in actions: a stolen token must not become a password
   * oracle, nor a way to keep the owner from changing the password (it is refused per client id, and
   * only slowed across the account).
   */
  readonly #passwordChecks: GuessThrottle
  /** Connections whose own sign-out or password change is being committed: see `renewing`. */
  readonly #renewing = new WeakSet<Identity>()
  #tombstoneSweeper: NodeJS.Timeout | undefined
  /** Checked against when the e-mail is unknown, at the configured cost, so timing reveals nothing. */
  #dummyHash = ''

  constructor(options: UsersServiceOptions) {
    this.#options = options
    this.#signups = new SignupLimit(options.signupLimits)
    this.#logins = new LoginThrottle(options.loginThrottle)
    const { perAddress, forgiveSeconds, slowdownMs } = options.loginThrottle
    this.#renewalFailures = new GuessThrottle({
      refuse: [perAddress],
      slow: perAddress,
      forgiveSeconds,
      slowdownMs,
    })
    const { perClient, perUser, ...pace } = options.passwordChecks
    this.#passwordChecks = new GuessThrottle({ refuse: [perClient], slow: perUser, ...pace })
  }

  async start(): Promise<void> {
    const { store, pipeline, publisher } = this.#options
    await store.ensureCollection(collections.users)
    this.#dummyHash = await this.#options.passwords.hash(randomBytes(16).toString('hex'))
    // as often as a tombstone can expire, at most hourly: few accounts are deleted
    const sweepMs = Math.min(3600, this.#options.userTokenTtlSeconds) * 1000
    this.#tombstoneSweeper = setInterval(() => {
      if (!(this.#options.isCoordinator?.() ?? true)) return
      this.#purgeTombstones().catch((err: unknown) =>
        this.#options.log.warn({ err }, 'could not purge the tombstones of deleted accounts'),
      )
    }, sweepMs)
    this.#tombstoneSweeper.unref()
    publisher.project(profileProjection(store))

    pipeline.register(userUpdate, async (ctx, params) => {
      const { who, tx } = ctx
      if (who.role !== 'user') throw new HubError('forbidden', 'only users have a profile to update')
      const user = await tx.get<UserDoc>(collections.users.name, who.id)
      if (!user) throw notFound(`user ${who.id}`)
      checkVersion(`user ${who.id}`, user, params.version)
      const next: UserDoc = { ...user }
      if (params.name !== undefined) next.name = params.name
      if (params.avatarUrl === null) delete next.avatarUrl
      else if (params.avatarUrl !== undefined) next.avatarUrl = params.avatarUrl
      const saved = tx.replace(collections.users.name, next)
      for (const hook of this.#profileHooks) await hook(ctx, saved)
      return userProfile(saved)
    })

    pipeline.register(userSignOut, async (ctx) => {
      const user = await this.#caller(ctx)
      // no password was proven: the new token ends when the presented one does, so a stolen token
      // cannot be kept alive by signing out over and over
      const remaining = ctx.who.exp - Math.ceil(Date.now() / 1000)
      return this.#renew(ctx, { ...user, tokenVersion: (user.tokenVersion ?? 0) + 1 }, remaining)
    })

    pipeline.register(userChangePassword, async (ctx, params) => {
      const user = await this.#caller(ctx)
      await this.#checkPassword(ctx, user, params.currentPassword)
      const hash = await ctx.once('hash', () => this.#options.passwords.hash(params.newPassword))
      return this.#renew(ctx, withNewPassword(user, hash), this.#options.userTokenTtlSeconds)
    })

    pipeline.register(userDelete, async (ctx, params) => {
      const user = await this.#caller(ctx)
      await this.#checkPassword(ctx, user, params.password)
      const removal: AccountRemoval = { stagesHandedOver: [], stagesRemoved: [], devicesRemoved: [] }
      for (const hook of this.#removalHooks) await hook(ctx, user, params, removal)
      // read again: the hooks may have changed it (leaving the stage the user is in)
      const current = (await ctx.tx.get<UserDoc>(collections.users.name, user.id))!
      ctx.tx.delete(collections.users.name, current)
      // the tombstone refuses the account's tokens (and closes its connections, see hub.ts)
      ctx.tx.insert<DeletedUserDoc>(collections.deletedUsers.name, {
        id: user.id,
        deletedAt: new Date().toISOString(),
      })
      this.#answeringDeletion.add(ctx.who)
      return removal
    })
  }

  stop(): void {
    clearInterval(this.#tombstoneSweeper)
  }

  /**
   * Deletes the tombstones of accounts deleted longer ago than a user token lives: every token of
   * such an account has expired, so nothing is left for the tombstone to refuse (and the access index
   * need not hold it).
   */
  async #purgeTombstones(): Promise<void> {
    const { store, userTokenTtlSeconds } = this.#options
    const cutoff = Date.now() - userTokenTtlSeconds * 1000
    const expired: DeletedUserDoc[] = []
    for await (const tombstone of store.scan<DeletedUserDoc>(collections.deletedUsers.name))
      if (Date.parse(tombstone.deletedAt) < cutoff) expired.push(tombstone)
    for (let i = 0; i < expired.length; i += TOMBSTONE_BATCH) {
      await store.transaction(async (tx) => {
        for (const { id } of expired.slice(i, i + TOMBSTONE_BATCH)) {
          const current = await tx.get<DeletedUserDoc>(collections.deletedUsers.name, id)
          if (current) tx.delete(collections.deletedUsers.name, current)
        }
      })
    }
  }

  /** Whether this connection waits for the answer to the deletion of its own account. */
  answersDeletion(who: Identity): boolean {
    return this.#answeringDeletion.has(who)
  }

  /** Other services remove what they keep of a deleted account through these hooks. */
  onAccountRemoval(hook: AccountRemovalHook): void {
    this.#removalHooks.push(hook)
  }

  async #caller(ctx: RequestContext): Promise<UserDoc> {
    if (ctx.who.role !== 'user') throw forbidden('only users have an account to secure')
    const user = await ctx.tx.get<UserDoc>(collections.users.name, ctx.who.id)
    if (!user) throw notFound(`user ${ctx.who.id}: sign up first`)
    return user
  }

  /** Refuses a wrong or missing password of an account that has one (accounts without one have none to give). */
  async #checkPassword(ctx: RequestContext, user: UserDoc, password: string | undefined): Promise<void> {
    const hash = user.passwordHash
    if (!hash) return
    if (password === undefined) throw forbidden('this needs your current password')
    // once per request: a transaction re-run neither counts nor checks again
    const right = await ctx.once(`verify:${hash}`, () =>
      throttledCheck(
        this.#passwordChecks.admit([`${user.id}|${ctx.who.clientId}`], user.id),
        'too many wrong passwords from this client',
        () => this.#options.passwords.verify(password, hash, 'signedIn'),
      ),
    )
    if (!right) throw forbidden('wrong password')
  }

  /**
   * Saves the user at a new token generation and hands the caller a token of it, valid for
   * `ttlSeconds`. Every connection of an older generation is closed when this commits (see hub.ts),
   * except the caller's, so that the answer reaches it: its identity (the broker's own object) moves
   * to the new generation once the commit is durable; if the commit fails it stays where it was, and
   * is closed after its answer if someone else raised the generation meanwhile.
   */
  #renew(ctx: RequestContext, next: UserDoc, ttlSeconds: number): Static<typeof userSignOut.result> {
    const saved = ctx.tx.replace(collections.users.name, next)
    const generation = saved.tokenVersion ?? 0
    const { who } = ctx
    this.#renewing.add(who)
    ctx.settled((committed) => {
      this.#renewing.delete(who)
      if (committed) who.ver = generation
    })
    const { token, expiresAt } = userToken(ctx, saved, ttlSeconds)
    return { token, expiresAt, generation }
  }

  /**
   * Whether this connection's own sign-out or password change is being committed: spared from the
   * close of older generations at that commit (see hub.ts); the pipeline answers it right after.
   */
  renewing(who: Identity): boolean {
    return this.#renewing.has(who)
  }

  /** Other services keep copies of profile fields (a member's name) current through these hooks. */
  onProfileChange(hook: ProfileHook): void {
    this.#profileHooks.push(hook)
  }

  /**
   * A user token names its account (SPEC §2): one minted by the operator's CLI or by an external
   * identity provider for a user the store does not know yet gets a profile from its claims, before
   * its CONNACK. Concurrent first connections create it once (the losing transaction re-runs and
   * finds it); a deleted account's tombstone refuses the token instead, recreating nothing.
   */
  async admitNewUser(who: Identity): Promise<void> {
    await this.#options.store.transaction(async (tx) => {
      if (await tx.get<UserDoc>(collections.users.name, who.id)) return null
      if (await tx.get<DeletedUserDoc>(collections.deletedUsers.name, who.id))
        throw new TokenRefusal(5, `user ${who.id} was deleted`, 'registration')
      return tx.insert<UserDoc>(collections.users.name, {
        id: who.id,
        name: nameFromClaims(who),
        createdAt: new Date().toISOString(),
      })
    })
  }

  /** Sign-up: creates the account (its profile follows the commit). */
  createUser(input: NewUser): Promise<UserDoc> {
    return createUser(this.#options.store, input, this.#options.passwords)
  }

  userToken(user: Pick<UserDoc, 'id' | 'name' | 'tokenVersion'>): TokenReply {
    return userToken(this.#options.tokens, user, this.#options.userTokenTtlSeconds)
  }

  /** The HTTP routes (docs/protocol/README.md#http) that concern users. */
  routes = async (http: FastifyInstance): Promise<void> => {
    http.post<{ Body: SignupBody }>(
      '/auth/signup',
      { schema: { body: SignupBody, response: { 201: TokenReply } } },
      async (request, reply) => {
        const allowed = this.#signups.take(request.ip)
        if (!allowed.ok) {
          const { retryAfterSeconds: seconds } = allowed
          throw new HubError(
            'rate_limited',
            allowed.limit === 'address'
              ? `too many sign-ups from your address: retry in ${seconds} s`
              : `the hub takes no more sign-ups for now: retry in ${seconds} s`,
            seconds,
          )
        }
        const user = await this.createUser(request.body)
        return reply.code(201).send(this.userToken(user))
      },
    )

    http.post<{ Body: LoginBody }>(
      '/auth/login',
      { schema: { body: LoginBody, response: { 200: TokenReply } } },
      async (request) => {
        const email = request.body.email.trim().toLowerCase()
        let user: UserDoc | undefined
        // only failures count, so people sharing one address (a venue, a school) can all log in
        const valid = await throttledCheck(
          this.#logins.admit(request.ip, email),
          'too many failed log-ins from your address',
          async () => {
            ;[user] = await this.#options.store.find<UserDoc>(collections.users.name, { email })
            // hash even when the user does not exist, so response time does not reveal which e-mails have accounts
            return this.#options.passwords.verify(
              request.body.password,
              user?.passwordHash ?? this.#dummyHash,
            )
          },
        )
        if (!user?.passwordHash || !valid) {
          throw new HubError('unauthorized', 'wrong e-mail address or password')
        }
        return this.userToken(user)
      },
    )

    http.post<{ Body: RenewBody }>(
      '/auth/renew',
      { schema: { body: RenewBody, response: { 200: TokenReply } } },
      async (request) => {
        const address = addressKey(request.ip)
        const attempt = this.#renewalFailures.admit([address], address)
        if (attempt.refused) {
          throw new HubError(
            'rate_limited',
            `too many refused renewals from your address: retry in ${attempt.retryAfterSeconds} s`,
            attempt.retryAfterSeconds,
          )
        }
        const user = await this.#renewable(request.headers.authorization)
        attempt.forgive()
        if (!this.#renewals.take(user.id)) {
          const seconds = this.#renewals.retryAfterSeconds(user.id)
          throw new HubError(
            'rate_limited',
            `this account renewed its token too often: retry in ${seconds} s`,
            seconds,
          )
        }
        return this.userToken(user)
      },
    )
  }

  /**
   * The account of a bearer user token that may be renewed: signed by the hub, unexpired, a user's,
   * and of the account's current generation (sign-out everywhere and password changes revoke).
   */
  async #renewable(authorization: string | undefined): Promise<UserDoc> {
    const match = /^Bearer (\S+)$/i.exec(authorization ?? '')
    if (!match) {
      throw new HubError(
        'unauthorized',
        'send the token to renew in the header Authorization: Bearer <token>, and {} as the body',
      )
    }
    let claims: Omit<Identity, 'clientId'>
    try {
      claims = this.#options.tokens.verify(match[1]!)
    } catch (err) {
      if (!(err instanceof TokenRefusal)) throw err
      throw new HubError(
        'unauthorized',
        err.check === 'expiry'
          ? `${err.message}: an expired token cannot be renewed, sign in again`
          : `${err.message}: sign in again`,
      )
    }
    if (claims.role !== 'user') {
      throw new HubError(
        'forbidden',
        `only user tokens are renewed here, not ${claims.role} tokens: ${
          claims.role === 'admin'
            ? 'mint a new one with `stagehub token`'
            : `rotate it with ${claims.role}.token`
        }`,
      )
    }
    const user = await this.#options.store.get<UserDoc>(collections.users.name, claims.id)
    if (!user)
      throw new HubError('unauthorized', `user ${claims.id} does not exist (any more): sign up again`)
    const generation = user.tokenVersion ?? 0
    if ((claims.ver ?? 0) < generation) {
      throw new HubError(
        'unauthorized',
        `token generation ${claims.ver ?? 0} was revoked (current: ${generation}) by a sign-out everywhere or a password change: sign in again`,
      )
    }
    return user
  }
}

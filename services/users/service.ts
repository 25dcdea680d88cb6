import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import type { TokenService } from '../../broker/tokens.ts'
import { userUpdate } from '../../schemas/actions/user.ts'
import { LoginBody, SignupBody, TokenReply } from '../../schemas/http.ts'
import type { UserProfile } from '../../schemas/state.ts'
import { collections, type UserDoc } from '../collections.ts'
import { HubError, checkVersion, notFound } from '../errors.ts'
import type { RequestContext, RequestPipeline } from '../requests/pipeline.ts'
import type { StatePublisher } from '../state-publisher.ts'
import { UniqueViolationError } from '../store/port.ts'
import type { Store } from '../store/store.ts'
import { LoginThrottle, type LoginThrottleOptions, SignupLimit, type Bucket } from './auth-limits.ts'
import type { PasswordPool } from './password-pool.ts'

export const userTopic = (userId: string) => `users/${userId}`

export function userProfile(user: UserDoc): UserProfile {
  return {
    id: user.id,
    name: user.name,
    ...(user.avatarUrl ? { avatarUrl: user.avatarUrl } : {}),
    ...(user.stageId ? { stageId: user.stageId } : {}),
    version: user.version,
  }
}

export function newId(): string {
  return randomBytes(12).toString('base64url')
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

/** A user token as the HTTP auth routes and the CLI hand it out. */
export function userToken(
  tokens: TokenService,
  user: Pick<UserDoc, 'id' | 'name'>,
  ttlSeconds: number,
): TokenReply {
  const { token, exp } = tokens.sign({ sub: user.id, role: 'user', name: user.name }, ttlSeconds)
  return { userId: user.id, token, expiresAt: new Date(exp * 1000).toISOString() }
}

/** Runs inside the user.update transaction, after the user document was replaced. */
export type ProfileHook = (ctx: RequestContext, user: UserDoc) => Promise<void>

export interface UsersServiceOptions {
  store: Store
  pipeline: RequestPipeline
  publisher: StatePublisher
  tokens: TokenService
  passwords: PasswordPool
  signupLimits: { perAddress: Bucket; global: Bucket }
  loginThrottle: LoginThrottleOptions
  userTokenTtlSeconds: number
}

/** Users: profiles (`users/{u}`), the `user.update` action, and sign-up/log-in over HTTP (SPEC §9). */
export class UsersService {
  readonly #options: UsersServiceOptions
  readonly #signups: SignupLimit
  readonly #logins: LoginThrottle
  readonly #profileHooks: ProfileHook[] = []
  /** Checked against when the e-mail is unknown, at the configured cost, so timing reveals nothing. */
  #dummyHash = ''

  constructor(options: UsersServiceOptions) {
    this.#options = options
    this.#signups = new SignupLimit(options.signupLimits)
    this.#logins = new LoginThrottle(options.loginThrottle)
  }

  async start(): Promise<void> {
    const { store, pipeline, publisher } = this.#options
    await store.ensureCollection(collections.users)
    this.#dummyHash = await this.#options.passwords.hash(randomBytes(16).toString('hex'))
    publisher.register({
      name: 'users',
      topics: async function* () {
        for await (const user of store.scan<UserDoc>(collections.users.name)) {
          yield { topic: userTopic(user.id), value: userProfile(user) }
        }
      },
    })

    pipeline.register(userUpdate, async (ctx, params) => {
      const { who, tx, publish } = ctx
      if (who.role !== 'user') throw new HubError('forbidden', 'only users have a profile to update')
      const user = await tx.get<UserDoc>(collections.users.name, who.id)
      if (!user) throw notFound(`user ${who.id}`)
      checkVersion(`user ${who.id}`, user, params.version)
      const next: UserDoc = { ...user }
      if (params.name !== undefined) next.name = params.name
      if (params.avatarUrl === null) delete next.avatarUrl
      else if (params.avatarUrl !== undefined) next.avatarUrl = params.avatarUrl
      const saved = tx.replace(collections.users.name, next)
      const profile = userProfile(saved)
      publish(userTopic(saved.id), profile)
      for (const hook of this.#profileHooks) await hook(ctx, saved)
      return profile
    })
  }

  /** Other services keep copies of profile fields (a member's name) current through these hooks. */
  onProfileChange(hook: ProfileHook): void {
    this.#profileHooks.push(hook)
  }

  /** Creates a user (sign-up and the operator CLI). E-mail addresses are unique, compared lower-cased. */
  /** Sign-up: creates the account and publishes its profile. */
  async createUser(input: NewUser): Promise<UserDoc> {
    const user = await createUser(this.#options.store, input, this.#options.passwords)
    await this.#options.publisher.publish(userTopic(user.id), userProfile(user))
    return user
  }

  userToken(user: Pick<UserDoc, 'id' | 'name'>): TokenReply {
    return userToken(this.#options.tokens, user, this.#options.userTokenTtlSeconds)
  }

  /** The HTTP routes of SPEC §9 that concern users. */
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
        const attempt = this.#logins.admit(request.ip, email)
        if (attempt.refused) {
          const seconds = attempt.retryAfterSeconds
          throw new HubError(
            'rate_limited',
            `too many failed log-ins from your address: retry in ${seconds} s`,
            seconds,
          )
        }
        // before the check, so a guesser cannot tell a failure early by the missing delay
        if (attempt.delayMs > 0) await sleep(attempt.delayMs)
        const [user] = await this.#options.store.find<UserDoc>(collections.users.name, { email })
        let valid: boolean
        try {
          // hash even when the user does not exist, so response time does not reveal which e-mails have accounts
          valid = await this.#options.passwords.verify(
            request.body.password,
            user?.passwordHash ?? this.#dummyHash,
          )
        } catch (err) {
          attempt.forgive() // nothing was checked
          throw err
        }
        if (!user || !user.passwordHash || !valid) {
          throw new HubError('unauthorized', 'wrong e-mail address or password')
        }
        // only failures count, so people sharing one address (a venue, a school) can all log in
        attempt.forgive()
        return this.userToken(user)
      },
    )
  }
}

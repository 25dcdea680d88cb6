import { type KeyObject, createPrivateKey, createPublicKey, createSecretKey } from 'node:crypto'
import jwt from 'jsonwebtoken'
import type { JwtAlgorithm, JwtConfig } from './config.ts'

export type Role = 'user' | 'device' | 'router' | 'admin'

/** Who a connection is, from its verified token (docs/protocol/README.md#authentication). Never taken from anything else the client sends. */
export interface Identity {
  role: Role
  /** `sub`: the user, device, router or operator id. */
  id: string
  /** The MQTT client id of the connection. */
  clientId: string
  name?: string | undefined
  /** Devices: the owning user. */
  owner?: string | undefined
  /** Users, devices and routers: the token generation (a user token without one is generation 0). */
  ver?: number | undefined
  /** Expiry, seconds since the epoch. */
  exp: number
}

export type TokenClaims = Omit<Identity, 'clientId' | 'exp' | 'id'> & { sub: string }

/**
 * Which CONNECT check refused: the token itself (missing, malformed, badly signed), its expiry, its
 * claims, the client id rules, or the stored registration and token generation.
 */
export type ConnectCheck = 'token' | 'expiry' | 'claims' | 'client-id' | 'registration'

/** A token that must be refused; `returnCode` is the CONNACK code docs/protocol/README.md#authentication names. */
export class TokenRefusal extends Error {
  override readonly name = 'TokenRefusal'
  constructor(
    readonly returnCode: 4 | 5,
    message: string,
    readonly check: ConnectCheck,
  ) {
    super(message)
  }
}

const ID = /^[A-Za-z0-9_-]{1,64}$/
const ROLES: ReadonlySet<string> = new Set(['user', 'device', 'router', 'admin'])

export interface TokenService {
  readonly algorithm: JwtAlgorithm
  /**
   * Verifies signature (pinned algorithm), `exp`, and the claim shape; throws TokenRefusal(4).
   * `ignoreExpiration` only to explain a refusal (POST /auth/explain), never to admit anyone.
   */
  verify(token: string, options?: { ignoreExpiration?: boolean }): Omit<Identity, 'clientId'>
  /**
   * Mints a token; needs JWT_SECRET or JWT_PRIVATE_KEY. `issuedAt` (seconds since the epoch, default
   * now) signs a token again: the same claims and issue time give the same token (ES256: an equivalent one).
   */
  sign(claims: TokenClaims, ttlSeconds: number, issuedAt?: number): { token: string; exp: number }
}

export function createTokenService(config: JwtConfig): TokenService {
  const hs = config.algorithm === 'HS256'
  // KeyObjects made once: given a string, jsonwebtoken first tries (and fails) to parse it as a public
  // key and then builds a secret key, on every single verify — a third of the cost of a CONNECT
  const verifyKey = keyObject(hs ? config.secret : config.publicKey, hs ? createSecretKey : createPublicKey)
  const signKey = keyObject(hs ? config.secret : config.privateKey, hs ? createSecretKey : createPrivateKey)
  if (!verifyKey) throw new Error(`no key to verify ${config.algorithm} tokens`)
  const algorithms: jwt.Algorithm[] = [config.algorithm]

  return {
    algorithm: config.algorithm,

    verify(token, options = {}) {
      let payload: jwt.JwtPayload
      try {
        const decoded = jwt.verify(token, verifyKey, {
          algorithms,
          ignoreExpiration: options.ignoreExpiration === true,
        })
        if (typeof decoded === 'string') throw new Error('token payload is not a JSON object')
        payload = decoded
      } catch (err) {
        if (err instanceof jwt.TokenExpiredError) {
          throw new TokenRefusal(4, `token refused: expired at ${err.expiredAt.toISOString()}`, 'expiry')
        }
        throw new TokenRefusal(4, `token refused: ${(err as Error).message}`, 'token')
      }
      const claims = (message: string) => new TokenRefusal(4, `token refused: ${message}`, 'claims')
      if (typeof payload.exp !== 'number') throw claims('exp is required')
      const role: unknown = payload.role
      if (typeof role !== 'string' || !ROLES.has(role))
        throw claims('role must be one of user, device, router, admin')
      if (typeof payload.sub !== 'string' || !ID.test(payload.sub)) {
        throw claims('sub must be an id of [A-Za-z0-9_-]{1,64}')
      }
      if ((role === 'device' || role === 'router') && !Number.isInteger(payload.ver)) {
        throw claims(`${role} tokens need an integer ver`)
      }
      if (role === 'user' && payload.ver !== undefined && !Number.isInteger(payload.ver)) {
        throw claims('ver must be an integer')
      }
      if (role === 'device' && (typeof payload.owner !== 'string' || !ID.test(payload.owner))) {
        throw claims('device tokens need an owner')
      }
      return {
        role: role as Role,
        id: payload.sub,
        name: typeof payload.name === 'string' ? payload.name : undefined,
        owner: role === 'device' ? (payload.owner as string) : undefined,
        ver: role === 'admin' ? undefined : (payload.ver as number | undefined),
        exp: payload.exp,
      }
    },

    sign(claims, ttlSeconds, issuedAt) {
      if (!signKey) throw new Error(`cannot mint ${config.algorithm} tokens without JWT_PRIVATE_KEY`)
      const { sub, ...rest } = claims
      const body = Object.fromEntries(
        Object.entries({ ...rest, iat: issuedAt }).filter(([, v]) => v !== undefined),
      )
      const token = jwt.sign(body, signKey, {
        algorithm: config.algorithm,
        subject: sub,
        expiresIn: ttlSeconds,
      })
      const exp = (jwt.decode(token) as jwt.JwtPayload).exp as number
      return { token, exp }
    },
  }
}

/** The key as a KeyObject; the key as given when it cannot be made one (jsonwebtoken then reports it). */
function keyObject(
  key: string | undefined,
  make: (key: Buffer) => KeyObject,
): KeyObject | string | undefined {
  if (!key) return undefined
  try {
    return make(Buffer.from(key))
  } catch {
    return key
  }
}

/** Client-id rules (docs/protocol/README.md#client-ids): banned ids and role/client-id mismatch both answer CONNACK 5. */
export function checkClientId(identity: Omit<Identity, 'clientId'>, clientId: string): void {
  if (!ID.test(clientId)) {
    throw new TokenRefusal(
      5,
      `client id "${clientId}" is not allowed: use 1-64 characters of [A-Za-z0-9_-]`,
      'client-id',
    )
  }
  if ((identity.role === 'device' || identity.role === 'router') && clientId !== identity.id) {
    throw new TokenRefusal(
      5,
      `${identity.role} ${identity.id} must connect with client id "${identity.id}"`,
      'client-id',
    )
  }
}

/**
 * The identity a client id is bound to, as one comparable key: role and id, since a user and an
 * operator may share an id.
 */
export const holderKey = (identity: Pick<Identity, 'role' | 'id'>): string =>
  `${identity.role}:${identity.id}`

/**
 * Client ids belong to identities (README, Protocol overview): a registered device's or router's id is
 * reserved for that device's or router's own tokens, as is every id of the form `{id}-…` for the
 * registered identity `{id}`; any other id is bound to the identity that holds it (connected, or with
 * a persistent session in the broker), so only that identity may take it over. Refusals answer
 * CONNACK 5.
 */
export function checkClientIdHolder(
  identity: Omit<Identity, 'clientId'>,
  clientId: string,
  /** The role whose registered id this client id is, if any. */
  reservedFor: 'device' | 'router' | undefined,
  /** Holder keys of the registered identities whose id followed by '-' begins this client id. */
  prefixOwners: readonly string[],
  /** The holder key of the connection or persistent session that has this client id now, if any. */
  holder: string | undefined,
): void {
  if (reservedFor) {
    if (identity.role === reservedFor && identity.id === clientId) return
    throw new TokenRefusal(
      5,
      `client id "${clientId}" is a registered ${reservedFor}'s id: only that ${reservedFor}'s token may use it`,
      'client-id',
    )
  }
  // the prefix is the caller's own: nobody else can hold this id, so it may always take it
  if (clientId.startsWith(`${identity.id}-`)) return
  if (prefixOwners.length > 0) {
    throw new TokenRefusal(
      5,
      `client id "${clientId}" begins with the id of ${prefixOwners[0]!.replace(':', ' ')} and is reserved for it: choose an id of the form {yourId}-{random}`,
      'client-id',
    )
  }
  if (holder !== undefined && holder !== holderKey(identity)) {
    throw new TokenRefusal(
      5,
      `client id "${clientId}" is held by another identity (connected, or keeping a persistent session): choose another`,
      'client-id',
    )
  }
}

import { createHash, randomInt } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { HubConfig } from '../config.ts'
import type { TokenService } from '../../broker/tokens.ts'
import { CLAIM_CODE_ALPHABET, type DeviceKind, deviceClaimCode } from '../../schemas/actions/device.ts'
import { ClaimBody, ClaimReply } from '../../schemas/http.ts'
import { type DeviceDoc, collections } from '../collections.ts'
import { HubError, notFound } from '../errors.ts'
import type { RequestPipeline } from '../requests/pipeline.ts'
import { RateLimiter } from '../requests/rate-limit.ts'
import type { StoredDoc } from '../store/port.ts'
import type { Store } from '../store/store.ts'
import { addressKey } from '../users/auth-limits.ts'
import { getDevice, requireUser, signDeviceToken } from './service.ts'

/**
 * A device's live claim code, by device id (so a device has at most one). Only the code's sha256 is
 * stored: the code itself exists in the owner's response and on the box's command line.
 */
export interface ClaimDoc extends StoredDoc {
  owner: string
  codeHash: string
  /** Milliseconds. */
  expiresAt: number
  /** Set when the code was exchanged, so a second use is told so (until the document is purged). */
  usedAt?: number
}

export const claimCollection = { name: 'device_claims', unique: [['codeHash']], indexes: [['expiresAt']] }

const CODE_LENGTH = 8
/** Used and expired codes are kept this long after they expire, to say why they no longer work. */
const KEEP_EXPIRED_MS = 24 * 3600 * 1000
const PURGE_INTERVAL_MS = 3600 * 1000
/** One wrong code of an address is forgiven this often. */
const FAILURE_FORGIVEN_SECONDS = 60

/** A new code, `ABCD-EFGH`: 31^8 ≈ 8.5·10^11 codes, each live for minutes. */
export function newClaimCode(): string {
  const chars = Array.from(
    { length: CODE_LENGTH },
    () => CLAIM_CODE_ALPHABET[randomInt(CLAIM_CODE_ALPHABET.length)],
  )
  return `${chars.slice(0, 4).join('')}-${chars.slice(4).join('')}`
}

/** A code as a person typed it (any case, spaces or dashes anywhere), or null when it cannot be one. */
export function normalizeClaimCode(typed: string): string | null {
  const code = typed.toUpperCase().replace(/[\s-]/g, '')
  if (code.length !== CODE_LENGTH) return null
  return [...code].every((c) => CLAIM_CODE_ALPHABET.includes(c)) ? code : null
}

export function hashClaimCode(normalized: string): string {
  return createHash('sha256').update(normalized).digest('hex')
}

type Exchange =
  | { ok: true; device: DeviceDoc }
  | { ok: false; reason: 'unknown' | 'used' | 'expired' | 'removed'; at?: number }
  | { ok: false; reason: 'kind'; kind: DeviceKind; asked: DeviceKind }

export interface DeviceClaimsOptions {
  /**
   * Whether this process does the deployment's once-only work (services/cluster/coordination.ts):
   * its periodic purge runs only while it is true. Default: always (one process).
   */
  isCoordinator?: () => boolean
  store: Store
  pipeline: RequestPipeline
  tokens: TokenService
  log: Logger
  claims: HubConfig['claims']
  deviceTokenTtlSeconds: number
  /** The listeners' ports, known once they are open (a port of 0 picks one). */
  ports: () => { mqtt: number; mqtts?: number | undefined }
}

/**
 * Device claiming (as ThingsBoard's and AWS IoT's fleet provisioning): the owner asks for a short
 * one-time code (`device.claimCode`), and the box exchanges it over HTTP (`POST /devices/claim`) for a
 * device token of a new generation, so an owner sets up a box without the operator's signing key.
 */
export class DeviceClaims {
  readonly #options: DeviceClaimsOptions
  readonly #codes: RateLimiter
  /** Wrong, used and expired codes per remote address: guessing is refused long before it could pay. */
  readonly #failures: RateLimiter
  #sweptAt = 0
  #purger: NodeJS.Timeout | undefined

  constructor(options: DeviceClaimsOptions) {
    this.#options = options
    const perHour = options.claims.codesPerUserPerHour
    this.#codes = new RateLimiter({ perSecond: perHour / 3600, burst: Math.max(1, Math.min(5, perHour)) })
    this.#failures = new RateLimiter({
      perSecond: 1 / FAILURE_FORGIVEN_SECONDS,
      burst: options.claims.failuresPerAddress,
    })
  }

  async start(): Promise<void> {
    const { store, pipeline, claims } = this.#options
    await store.ensureCollection(claimCollection)
    pipeline.register(deviceClaimCode, async (ctx, params) => {
      const owner = requireUser(ctx.who)
      const device = await getDevice(ctx.tx, params.deviceId)
      if (!device || device.owner !== owner) throw notFound(`device ${params.deviceId} of yours`)
      if (!this.#codes.take(owner)) {
        const seconds = this.#codes.retryAfterSeconds(owner)
        throw new HubError('rate_limited', `you asked for many claim codes: retry in ${seconds} s`, seconds)
      }
      const code = newClaimCode()
      const expiresAt = Date.now() + claims.codeTtlSeconds * 1000
      const claim = { id: device.id, owner, codeHash: hashClaimCode(normalizeClaimCode(code)!), expiresAt }
      const previous = await ctx.tx.get<ClaimDoc>(claimCollection.name, device.id)
      if (previous) ctx.tx.replace<ClaimDoc>(claimCollection.name, { ...claim, version: previous.version })
      else ctx.tx.insert<ClaimDoc>(claimCollection.name, claim)
      return { code, expiresAt: new Date(expiresAt).toISOString() }
    })
    this.#purger = setInterval(
      () => void ((this.#options.isCoordinator?.() ?? true) ? this.purge() : undefined),
      PURGE_INTERVAL_MS,
    )
    this.#purger.unref()
  }

  stop(): void {
    clearInterval(this.#purger)
  }

  /** `POST /devices/claim {code}` → the device's id, kind, a new token and where to connect. */
  routes = async (http: FastifyInstance): Promise<void> => {
    http.post<{ Body: ClaimBody }>(
      '/devices/claim',
      { schema: { body: ClaimBody, response: { 200: ClaimReply } } },
      async (request) => this.#exchange(request.body, request.ip, request.hostname),
    )
  }

  async #exchange(body: ClaimBody, ip: string, hostname: string): Promise<ClaimReply> {
    const now = Date.now()
    const address = addressKey(ip)
    if (performance.now() - this.#sweptAt > 60_000) {
      this.#failures.sweep()
      this.#sweptAt = performance.now()
    }
    if (!this.#failures.take(address)) {
      const seconds = this.#failures.retryAfterSeconds(address)
      throw new HubError(
        'rate_limited',
        `too many wrong claim codes from your address: retry in ${seconds} s`,
        seconds,
      )
    }
    const code = normalizeClaimCode(body.code)
    if (code === null) {
      throw new HubError(
        'invalid_request',
        'a claim code is 8 letters and digits like ABCD-EFGH (no 0, 1, I, L or O): check what you typed',
      )
    }
    const { store, tokens, deviceTokenTtlSeconds } = this.#options
    const { value: outcome } = await store.transaction(async (tx): Promise<Exchange> => {
      const [claim] = await tx.find<ClaimDoc>(claimCollection.name, { codeHash: hashClaimCode(code) })
      if (!claim) return { ok: false, reason: 'unknown' }
      if (claim.usedAt !== undefined) return { ok: false, reason: 'used', at: claim.usedAt }
      if (claim.expiresAt <= now) return { ok: false, reason: 'expired', at: claim.expiresAt }
      const device = await getDevice(tx, claim.id)
      if (!device || device.owner !== claim.owner) {
        tx.delete(claimCollection.name, claim)
        return { ok: false, reason: 'removed' }
      }
      if (body.kind !== undefined && body.kind !== device.kind) {
        return { ok: false, reason: 'kind', kind: device.kind, asked: body.kind }
      }
      tx.replace<ClaimDoc>(claimCollection.name, { ...claim, usedAt: now })
      // as device.token: older tokens are refused and their connections closed when this commits (hub.ts)
      return {
        ok: true,
        device: tx.replace<DeviceDoc>(collections.devices.name, {
          ...device,
          tokenVersion: device.tokenVersion + 1,
        }),
      }
    })
    if (!outcome.ok) throw refusal(outcome)
    this.#failures.refund(address)
    const { device } = outcome
    this.#options.log.info({ deviceId: device.id, generation: device.tokenVersion }, 'device claimed')
    return {
      deviceId: device.id,
      kind: device.kind,
      ...signDeviceToken(tokens, device, deviceTokenTtlSeconds),
      generation: device.tokenVersion,
      mqttUrl: this.#mqttUrl(hostname),
    }
  }

  /** PUBLIC_MQTT_URL, else the host the box reached over HTTP with the MQTT (over TLS when set up) port. */
  #mqttUrl(hostname: string): string {
    const { claims } = this.#options
    if (claims.publicMqttUrl) return claims.publicMqttUrl
    const ports = this.#options.ports()
    return ports.mqtts !== undefined
      ? `mqtts://${hostname}:${ports.mqtts}`
      : `mqtt://${hostname}:${ports.mqtt}`
  }

  /** Forgets codes that expired more than a day before `now` (hourly); returns how many. */
  async purge(now = Date.now()): Promise<number> {
    try {
      return await this.#options.store.backend.purgeExpired(
        claimCollection.name,
        'expiresAt',
        now - KEEP_EXPIRED_MS,
      )
    } catch (err) {
      this.#options.log.warn({ err }, 'could not purge expired claim codes')
      return 0
    }
  }
}

function refusal(outcome: Extract<Exchange, { ok: false }>): HubError {
  if (outcome.reason === 'kind') {
    return new HubError(
      'conflict',
      `this claim code is for a device of kind ${outcome.kind}, not ${outcome.asked}: it stays valid for that device`,
    )
  }
  const when = outcome.at !== undefined ? new Date(outcome.at).toISOString() : ''
  switch (outcome.reason) {
    case 'unknown':
      return new HubError(
        'not_found',
        'no such claim code: check what you typed, or ask the owner for a new one (device.claimCode)',
      )
    case 'used':
      return new HubError(
        'conflict',
        `this claim code was used at ${when}: each code works once, ask the owner for a new one`,
      )
    case 'expired':
      return new HubError('conflict', `this claim code expired at ${when}: ask the owner for a new one`)
    case 'removed':
      return new HubError('not_found', 'the device of this claim code was removed')
  }
}

import type { Logger } from 'pino'
import type { Static, TSchema } from '@sinclair/typebox'
import type { Identity, TokenClaims, TokenService } from '../../broker/tokens.ts'
import type { HubMetrics } from '../../broker/metrics.ts'
import type { ActionSchema } from '../../schemas/action.ts'
import { RequestEnvelope, type ErrorBody, type ResponseEnvelope } from '../../schemas/protocol.ts'
import { type Validator, validator } from '../../schemas/validate.ts'
import { type IssuedToken, collections, type RequestRecordDoc } from '../collections.ts'
import { HubError } from '../errors.ts'
import type { StatePublisher } from '../state-publisher.ts'
import { UniqueViolationError, VersionConflictError } from '../store/port.ts'
import type { Store, Transaction } from '../store/store.ts'
import { RequestLimits } from './rate-limit.ts'

/** A request that reached its action (known action, well-formed envelope) and its response. */
export interface RequestOutcome {
  who: Identity
  action: ActionSchema
  /** The params, when they passed the action's schema (otherwise no target is read from them). */
  params: unknown
  response: ResponseEnvelope
}

/**
 * What a handler gets: who asks (from the token, never from the payload), the transaction, and a way
 * to sign the token its response hands out. State topics follow the commit
 * (services/state-publisher.ts); only events are the handler's to send.
 */
export interface RequestContext {
  who: Identity
  tx: Transaction
  /** A non-retained event (chat) to publish once the transaction is durable, before the response. */
  notify(topic: string, value: unknown): void
  /**
   * Mints the token the response hands out in `result.token` (one per request). The retry record
   * keeps what signs it, never the token: a retry gets it signed again, of the same generation.
   */
  sign(claims: TokenClaims, ttlSeconds: number): { token: string; exp: number }
  /**
   * Computes an expensive value (a password hash or check) once per request, however often the
   * transaction is re-run after losing a race.
   */
  once<T>(key: string, compute: () => Promise<T>): Promise<T>
  /**
   * Runs `effect` once the request is settled, before its response: `committed` says whether this
   * request's changes are durable. For state outside the store that must follow it (a connection's
   * token generation). Each registration is called once; every re-run of the transaction may add one.
   */
  settled(effect: (committed: boolean) => void): void
}

export type ActionHandler<A extends ActionSchema> = (
  ctx: RequestContext,
  params: Static<A['params']>,
) => Promise<Static<A['result']>>

interface RegisteredAction {
  schema: ActionSchema
  validate: Validator<unknown>
  handle: ActionHandler<ActionSchema>
}

export interface PipelineOptions {
  /**
   * Whether this process does the deployment's once-only work (services/cluster/coordination.ts):
   * its periodic purge runs only while it is true. Default: always (one process).
   */
  isCoordinator?: () => boolean
  store: Store
  publisher: StatePublisher
  tokens: TokenService
  /** Publishes a response on `clients/{c}/res` (QoS 1, not retained). */
  respond(clientId: string, payload: string): Promise<void>
  metrics: HubMetrics
  log: Logger
  maxPayloadBytes: number
  /** Requests per client id, and per account (role and id) across all its connections. */
  rateLimit: { perSecond: number; burst: number }
  accountRateLimit: { perSecond: number; burst: number }
  requestIdTtlMs: number
  /** Told of every request that reached its action and was not a retry (for the audit trail). */
  onOutcome?(outcome: RequestOutcome): void
}

const validEnvelope = validator(RequestEnvelope)

/**
 * docs/protocol/README.md#requests-and-responses: `clients/{c}/req/{action}` → rate limit → size → JSON → envelope → retry lookup → action →
 * params schema → handler in a store transaction (with the retry record in the same transaction, so
 * a request is applied at most once) → retained state (projected as the commit is announced) and events → exactly one response on `clients/{c}/res`.
 */
export class RequestPipeline {
  readonly #actions = new Map<string, RegisteredAction>()
  readonly #inFlight = new Map<string, Promise<ResponseEnvelope>>()
  readonly #limits: RequestLimits
  readonly #options: PipelineOptions
  #sweeper: NodeJS.Timeout | undefined

  constructor(options: PipelineOptions) {
    this.#options = options
    this.#limits = new RequestLimits({ perClient: options.rateLimit, perAccount: options.accountRateLimit })
  }

  async start(): Promise<void> {
    await this.#options.store.ensureCollection(collections.requests)
    this.#sweeper = setInterval(() => {
      this.#limits.sweep()
      // request records are the deployment's: one process purges them
      if (this.#options.isCoordinator?.() ?? true) void this.#purgeExpired() // never rejects: it logs its failure
    }, 60_000)
    this.#sweeper.unref()
  }

  stop(): void {
    clearInterval(this.#sweeper)
  }

  register<A extends ActionSchema>(schema: A, handle: ActionHandler<A>): void {
    if (this.#actions.has(schema.name)) throw new Error(`action ${schema.name} is registered twice`)
    this.#actions.set(schema.name, {
      schema,
      validate: validator(schema.params as TSchema),
      handle: handle as unknown as ActionHandler<ActionSchema>,
    })
  }

  get actions(): readonly ActionSchema[] {
    return [...this.#actions.values()].map((a) => a.schema)
  }

  /** Called by the broker for every authorized request publish; never throws. */
  handle(who: Identity, action: string, payload: Buffer): void {
    const started = performance.now()
    this.#process(who, action, payload)
      .then((response) => this.#send(who, action, response, started))
      // a response that cannot be sent (the hub closing) is logged like a failed request
      .catch((err: unknown) =>
        this.#options.log.error({ err, clientId: who.clientId, action }, 'request pipeline failed'),
      )
  }

  async #process(who: Identity, action: string, payload: Buffer): Promise<ResponseEnvelope> {
    const { maxPayloadBytes } = this.#options
    const allowed = this.#limits.take(who)
    if (!allowed.ok) {
      const whose = allowed.limit === 'client' ? 'this client' : 'your account across all its connections'
      return failure(
        guessId(payload),
        'rate_limited',
        `too many requests from ${whose}: slow down and retry in ${allowed.retryAfterSeconds} s`,
      )
    }
    if (payload.length > maxPayloadBytes) {
      return failure(
        guessId(payload),
        'too_large',
        `request of ${payload.length} bytes exceeds the ${maxPayloadBytes}-byte limit`,
      )
    }
    let body: unknown
    try {
      body = JSON.parse(payload.toString('utf8'))
    } catch {
      return failure(guessId(payload), 'invalid_request', 'the payload is not valid JSON')
    }
    if (!validEnvelope(body)) {
      return failure(guessId(payload), 'invalid_request', `malformed request: ${validEnvelope.describe()}`)
    }
    const key = `${clientKey(who)}|${body.id}`
    const running = this.#inFlight.get(key)
    if (running) return running
    const outcome = this.#execute(key, who, action, body)
    this.#inFlight.set(key, outcome)
    try {
      return await outcome
    } finally {
      this.#inFlight.delete(key)
    }
  }

  async #execute(
    key: string,
    who: Identity,
    action: string,
    request: RequestEnvelope,
  ): Promise<ResponseEnvelope> {
    const { store, publisher, tokens, log, requestIdTtlMs } = this.#options
    const registered = this.#actions.get(action)
    if (!registered) {
      return failure(
        request.id,
        'invalid_request',
        `unknown action "${action}"; docs/protocol/actions.md lists the actions this hub serves`,
      )
    }
    const params = request.params ?? {}
    if (!registered.validate(params)) {
      const invalid = failure(
        request.id,
        'invalid_request',
        `invalid params: ${registered.validate.describe()}`,
      )
      this.#options.onOutcome?.({ who, action: registered.schema, params: undefined, response: invalid })
      return invalid
    }

    let events: { topic: string; value: unknown }[] = []
    let retry = false
    let issued: (IssuedToken & { token: string }) | undefined
    const memo = new Map<string, Promise<unknown>>()
    // kept over re-runs of the transaction: each run may have started something that needs ending
    const settlers: ((committed: boolean) => void)[] = []
    let isSettled = false
    const settle = (committed: boolean) => {
      if (isSettled) return // a failure after the commit (publishing) does not undo it
      isSettled = true
      settlers.forEach((effect) => effect(committed))
    }
    const once = <T>(key: string, compute: () => Promise<T>): Promise<T> => {
      if (!memo.has(key)) memo.set(key, compute())
      return memo.get(key) as Promise<T>
    }
    try {
      const started = performance.now()
      const { value } = await store.transaction(async (tx) => {
        events = []
        retry = false
        issued = undefined
        // inside the transaction: a retry racing its original (on any hub process) conflicts here
        const earlier = await tx.get<RequestRecordDoc>(collections.requests.name, key)
        if (earlier && earlier.expiresAt > Date.now()) {
          if (earlier.action !== action) throw new RequestIdReused(earlier.action)
          retry = true
          return answerAgain(earlier, tokens)
        }
        const ctx: RequestContext = {
          who,
          tx,
          notify: (topic, value) => events.push({ topic, value }),
          sign: (claims, ttlSeconds) => {
            const issuedAt = Math.floor(Date.now() / 1000)
            const signed = tokens.sign(claims, ttlSeconds, issuedAt)
            issued = { claims, ttlSeconds, issuedAt, token: signed.token }
            return signed
          },
          once,
          settled: (effect) => settlers.push(effect),
        }
        const result = await registered.handle(ctx, params)
        const success: ResponseEnvelope = { id: request.id, ok: true, result: result ?? {} }
        writeRecord(tx, key, who, action, success, requestIdTtlMs, earlier, issued)
        return success
      })
      this.#options.metrics.storeLatency.observe((performance.now() - started) / 1000)
      settle(!retry)
      await Promise.all(events.map(({ topic, value }) => publisher.notify(topic, value)))
      if (!retry) this.#options.onOutcome?.({ who, action: registered.schema, params, response: value })
      return value
    } catch (err) {
      settle(false)
      const response = this.#refusal(request.id, err, who, action)
      this.#options.onOutcome?.({ who, action: registered.schema, params, response })
      if (!response.ok && !TRANSIENT.has(response.error.code) && !(err instanceof RequestIdReused)) {
        // remembered so that a retry gets the same answer; nothing else changed
        await store
          .transaction(async (tx) => {
            const earlier = await tx.get<RequestRecordDoc>(collections.requests.name, key)
            if (earlier && earlier.expiresAt > Date.now()) return // a concurrent copy recorded its answer
            writeRecord(tx, key, who, action, response, requestIdTtlMs, earlier)
          })
          .catch((recordErr: unknown) => log.warn({ err: recordErr }, 'could not record a refused request'))
      }
      return response
    }
  }

  #refusal(id: string, err: unknown, who: Identity, action: string): ResponseEnvelope {
    if (err instanceof HubError) return failure(id, err.code, err.message)
    if (err instanceof UniqueViolationError) return failure(id, 'conflict', err.message)
    if (err instanceof VersionConflictError) {
      return failure(id, 'conflict', 'the data changed under a burst of concurrent requests; retry')
    }
    this.#options.log.error({ err, clientId: who.clientId, action }, 'request failed')
    return failure(id, 'internal', 'the hub could not process this request; it has been logged')
  }

  async #send(who: Identity, action: string, response: ResponseEnvelope, started: number): Promise<void> {
    const { metrics, log, respond } = this.#options
    const code = response.ok ? 'ok' : response.error.code
    metrics.requests.inc({ action: this.#actions.has(action) ? action : 'unknown', code })
    if (!response.ok)
      log.info({ clientId: who.clientId, action, id: response.id, error: response.error }, 'request refused')
    await respond(who.clientId, JSON.stringify(response))
    metrics.requestLatency.observe(
      { action: this.#actions.has(action) ? action : 'unknown' },
      (performance.now() - started) / 1000,
    )
  }

  async #purgeExpired(): Promise<void> {
    try {
      await this.#options.store.backend.purgeExpired(collections.requests.name, 'expiresAt', Date.now())
    } catch (err) {
      this.#options.log.warn({ err }, 'could not purge expired request records')
    }
  }
}

function writeRecord(
  tx: Transaction,
  key: string,
  who: Identity,
  action: string,
  response: ResponseEnvelope,
  ttlMs: number,
  expired: RequestRecordDoc | null,
  issued?: IssuedToken & { token: string },
): void {
  const record: Omit<RequestRecordDoc, 'version'> = {
    id: key,
    clientId: who.clientId,
    action,
    expiresAt: Date.now() + ttlMs,
    response: JSON.stringify(response),
  }
  if (issued) {
    const result = response.ok ? (response.result as { token?: unknown }) : undefined
    if (result?.token !== issued.token) throw new Error(`${action} signed a token it does not answer with`)
    const { token: _token, ...reissue } = issued
    record.response = JSON.stringify({ ...response, result: { ...result, token: '' } })
    record.issued = reissue
  }
  if (expired)
    tx.replace<RequestRecordDoc>(collections.requests.name, { ...record, version: expired.version })
  else tx.insert<RequestRecordDoc>(collections.requests.name, record)
}

/** The recorded answer to a retry, with the token it handed out signed again. */
function answerAgain(record: RequestRecordDoc, tokens: TokenService): ResponseEnvelope {
  const response = JSON.parse(record.response) as ResponseEnvelope
  if (!record.issued || !response.ok) return response
  const { claims, ttlSeconds, issuedAt } = record.issued
  return {
    ...response,
    result: { ...(response.result as object), token: tokens.sign(claims, ttlSeconds, issuedAt).token },
  }
}

/** Refusals a retry of the same request may not get again: they are not remembered for its id. */
const TRANSIENT = new Set<ErrorBody['code']>(['internal', 'unavailable'])

/** A request id seen with another action within the retry window: not a retry, and not to be applied. */
class RequestIdReused extends HubError {
  constructor(earlierAction: string) {
    super(
      'conflict',
      `request id already used for ${earlierAction} in the last 10 minutes: use a new id for every request`,
    )
  }
}

/** Requests are remembered per authenticated identity and client id, so one user cannot replay another's ids. */
function clientKey(who: Identity): string {
  return `${who.role}:${who.id}:${who.clientId}`
}

function failure(id: string, code: ErrorBody['code'], message: string): ResponseEnvelope {
  return { id, ok: false, error: { code, message } }
}

/** For refusals before the JSON is trusted: echo the id when one is plainly there, so the client can correlate. */
function guessId(payload: Buffer): string {
  const match = /"id"\s*:\s*"([^"\\]{1,64})"/.exec(payload.subarray(0, 1024).toString('utf8'))
  return match?.[1] ?? ''
}

import { randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
import type { BrokerRefusal } from '../../broker/broker.ts'
import type { HubMetrics } from '../../broker/metrics.ts'
import type { Identity } from '../../broker/tokens.ts'
import { type AuditEntry, auditQuery } from '../../schemas/actions/audit.ts'
import type { ActionParams, ActionResult } from '../../schemas/action.ts'
import { type AuditDoc, collections } from '../collections.ts'
import { HubError, forbidden } from '../errors.ts'
import type { RequestOutcome, RequestPipeline } from '../requests/pipeline.ts'
import type { NewDoc, Store } from '../store/store.ts'
import {
  type NewAuditEntry,
  entryId,
  isAudited,
  outcomeOf,
  refusalEntry,
  refusalSource,
  requestEntry,
  suppressedEntry,
  timeKey,
} from './rules.ts'
import { RateLimiter } from '../requests/rate-limit.ts'

export interface AuditTrailOptions {
  /**
   * Whether this process does the deployment's once-only work (services/cluster/coordination.ts):
   * its periodic purge runs only while it is true. Default: always (one process).
   */
  isCoordinator?: () => boolean
  store: Store
  metrics: HubMetrics
  log: Logger
  /** How long entries are kept; 0 turns the audit trail off. */
  retentionDays: number
}

const DAY_MS = 24 * 3600 * 1000
/** Pending entries are written at least this often, or as soon as a batch is full. */
const FLUSH_MS = 1000
/** On the embedded store a batch of 200 is one transaction of ~8 ms (one fsync + ~20 µs per entry). */
const BATCH = 200
/**
 * Entries waiting for the store beyond this are dropped (and counted): memory stays bounded (an entry
 * is at most about 1 KB: ids, codes, and topic and reason cut to 256 characters).
 */
const MAX_PENDING = 20_000
/**
 * Broker refusals recorded one by one per source (see refusalSource): a burst, then one a second;
 * beyond that they are counted and recorded as one summary entry a second, so a client repeating a
 * refused SUBSCRIBE at network speed (or a flood of bad tokens) cannot fill the store or push out the
 * entries of others.
 */
const REFUSALS = { perSecond: 1, burst: 20 }
const PRUNE_MS = 3600 * 1000

/**
 * The audit trail (who changed what, and who was refused what) in the store's `audit` collection.
 *
 * Entries are written behind, in batches (one store transaction per second or per 200 entries), not
 * in the request's own transaction: recording costs a request an array push, on both backends (in the
 * request's transaction it would add a write, and on MongoDB lock-document updates that make
 * concurrent requests collide), and refusals, which have no transaction, take the same path. The
 * price: a hard crash loses the entries of the last second. Entries are pruned hourly once older
 * than the retention period.
 */
export class AuditTrail {
  readonly #options: AuditTrailOptions
  #pending: NewDoc<AuditDoc>[] = []
  #flushing: Promise<void> = Promise.resolve()
  #flushTimer: NodeJS.Timeout | undefined
  #pruneTimer: NodeJS.Timeout | undefined
  #sequence = 0
  #dropped = 0
  readonly #refusalBudget = new RateLimiter(REFUSALS)
  /** Per source: the refusals counted but not recorded since its last entry, and the last of them. */
  readonly #suppressed = new Map<string, { count: number; last: NewAuditEntry }>()

  constructor(options: AuditTrailOptions) {
    this.#options = options
  }

  get enabled(): boolean {
    return this.#options.retentionDays > 0
  }

  async start(): Promise<void> {
    const { store, retentionDays } = this.#options
    await store.ensureCollection(collections.audit)
    if (!this.enabled) return
    if (this.#pruning()) await this.prune()
    this.#flushTimer = setInterval(() => void this.flush(), FLUSH_MS)
    this.#flushTimer.unref()
    // a retention shorter than ten hours is pruned every tenth of it (for tests and trials)
    const every = Math.max(100, Math.min(PRUNE_MS, (retentionDays * DAY_MS) / 10))
    this.#pruneTimer = setInterval(() => void (this.#pruning() ? this.prune() : undefined), every)
    this.#pruneTimer.unref()
  }

  /** Whether this process prunes the deployment's trail now. */
  #pruning(): boolean {
    return this.#options.isCoordinator?.() ?? true
  }

  /** Stops the timers and writes what is pending (before the store closes). */
  async stop(): Promise<void> {
    clearInterval(this.#flushTimer)
    clearInterval(this.#pruneTimer)
    await this.flush()
  }

  /** A request that reached its action; recorded when it changes state or was refused permission. */
  request(outcome: RequestOutcome): void {
    if (this.enabled && isAudited(outcome.action, outcomeOf(outcome.response)))
      this.#add(requestEntry(outcome))
  }

  /** A connection, subscription or publish the broker refused. */
  refused(refusal: BrokerRefusal): void {
    if (!this.enabled) return
    const entry = refusalEntry(refusal)
    const source = refusalSource(entry)
    if (this.#refusalBudget.take(source)) return this.#add(entry)
    const suppressed = this.#suppressed.get(source)
    if (suppressed) {
      suppressed.count++
      suppressed.last = entry
    } else this.#suppressed.set(source, { count: 1, last: entry })
  }

  /** Writes every pending entry; resolves when they are durable (or logged as lost). */
  flush(): Promise<void> {
    for (const { count, last } of this.#suppressed.values()) this.#add(suppressedEntry(last, count))
    this.#suppressed.clear()
    this.#refusalBudget.sweep()
    this.#flushing = this.#flushing.then(() => this.#writePending())
    return this.#flushing
  }

  /** Deletes the entries older than the retention period; returns how many. */
  async prune(): Promise<number> {
    const { store, retentionDays, log } = this.#options
    try {
      return await store.backend.purgeExpired(
        collections.audit.name,
        'at',
        Date.now() - retentionDays * DAY_MS,
      )
    } catch (err) {
      log.warn({ err }, 'could not prune the audit trail')
      return 0
    }
  }

  /** `audit.query` for admin-role tokens; refused (and so recorded) for everybody else. */
  registerQuery(pipeline: RequestPipeline): void {
    pipeline.register(auditQuery, (ctx, params) => this.#query(ctx.who, params))
  }

  async #query(
    who: Identity,
    params: ActionParams<typeof auditQuery>,
  ): Promise<ActionResult<typeof auditQuery>> {
    if (who.role !== 'admin') throw forbidden('the audit trail is for hub operators (admin-role tokens)')
    if (!this.enabled)
      throw new HubError('unavailable', 'the audit trail is turned off (AUDIT_RETENTION_DAYS=0)')
    // what was recorded until now is part of the answer
    await this.flush()
    const limit = params.limit ?? 100
    const filter: Record<string, string> = {}
    for (const field of ['identity', 'role', 'clientId', 'action', 'outcome'] as const) {
      const value = params[field]
      if (value !== undefined) filter[field] = value
    }
    const to = params.to === undefined ? undefined : timeKey(Date.parse(params.to))
    const idBelow =
      params.cursor !== undefined && (to === undefined || params.cursor < to) ? params.cursor : to
    const docs = await this.#options.store.page<AuditDoc>(collections.audit.name, {
      filter,
      contains: params.targetId === undefined ? undefined : { field: 'targetIds', value: params.targetId },
      idFrom: params.from === undefined ? undefined : timeKey(Date.parse(params.from)),
      idBelow,
      limit: limit + 1,
    })
    const entries = docs.slice(0, limit).map(toEntry)
    return docs.length > limit ? { entries, cursor: entries[entries.length - 1]!.id } : { entries }
  }

  #add(entry: NewAuditEntry): void {
    if (this.#pending.length >= MAX_PENDING) {
      this.#dropped++
      this.#options.metrics.auditDropped.inc()
      return
    }
    const at = Date.now()
    this.#pending.push({
      ...entry,
      id: entryId(at, this.#sequence++, randomBytes(3).toString('hex')),
      time: new Date(at).toISOString(),
      at,
      targetIds: [...new Set(Object.values(entry.targets).filter((id) => id !== undefined))],
    })
    // flush never rejects: a failed write keeps the entries for the next flush and logs
    if (this.#pending.length === BATCH) void this.flush()
  }

  async #writePending(): Promise<void> {
    const { store, log } = this.#options
    if (this.#dropped > 0) {
      log.warn({ dropped: this.#dropped }, 'audit trail entries dropped: the store did not keep up')
      this.#dropped = 0
    }
    while (this.#pending.length > 0) {
      const batch = this.#pending.splice(0, BATCH)
      try {
        await store.transaction(async (tx) => {
          for (const doc of batch) tx.insert<AuditDoc>(collections.audit.name, doc)
        })
      } catch (err) {
        // kept for the next flush (within MAX_PENDING): a store that is briefly unavailable loses nothing
        this.#pending.unshift(...batch.slice(0, MAX_PENDING - this.#pending.length))
        log.warn({ err, entries: batch.length }, 'could not write audit trail entries; retrying later')
        return
      }
    }
  }
}

function toEntry({ version: _version, at: _at, targetIds: _targetIds, ...entry }: AuditDoc): AuditEntry {
  return entry
}

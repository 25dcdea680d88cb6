import type { Logger } from 'pino'
import type { ClusterLink } from './link.ts'

/**
 * Renews this process's key and lists it with the time of this renewal. Returns whether the
 * process was listed before (0 on the first renewal, and after others declared it dead).
 * KEYS: process key, processes hash. ARGV: process id, ttl ms, now ms.
 */
const RENEW = `
local listed = redis.call('HEXISTS', KEYS[2], ARGV[1])
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return listed`

/**
 * A listed process whose key expired moves from the processes hash to the dead hash (with its last
 * renewal time), atomically, so a process that renews meanwhile is never declared dead.
 * KEYS: process key, processes hash, dead hash. ARGV: process id.
 */
const DECLARE_DEAD = `
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local last = redis.call('HGET', KEYS[2], ARGV[1])
if not last then return false end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], last)
return last`

export interface LivenessOptions {
  link: ClusterLink
  log: Logger
  /** How long this process counts as alive after a renewal; default 5 s. */
  ttlMs?: number
  /** How often it renews; default 1 s. */
  intervalMs?: number
  /**
   * The deployment declared this process dead while it was alive (paused longer than the ttl, or cut
   * off from Redis): its devices and routers were marked lost, so its connections must start over.
   */
  onDeclaredDead?: () => void
  /** The live processes changed (seen at a renewal). */
  onLiveChange?: (live: readonly string[]) => void
}

/** A process that stopped renewing: its id and when it last renewed (ms since the epoch). */
export interface LostProcess {
  id: string
  lastRenewedAt: number
}

/**
 * Liveness (docs/cluster.md#leases-and-liveness): every process renews `stagehub:process:<id>`
 * (PX 5 s, every second) and is listed in the hash `stagehub:processes` with its last renewal. A
 * listed process whose key is gone is dead; `declareDead` (run by the coordinator) moves it to
 * `stagehub:processes:dead` until it is healed, so a coordinator that dies while healing leaves the
 * work to the next one.
 */
export class Liveness {
  readonly #options: Required<Omit<LivenessOptions, 'onDeclaredDead' | 'onLiveChange'>> &
    Pick<LivenessOptions, 'onDeclaredDead' | 'onLiveChange'>
  #timer: NodeJS.Timeout | undefined
  #renewing = false
  #registered = false
  #live: string[] = []
  /** When the last successful renewal was sent (performance.now(), a monotonic clock). */
  #renewedAt = -Infinity

  constructor(options: LivenessOptions) {
    this.#options = { ttlMs: 5000, intervalMs: 1000, ...options }
  }

  get processId(): string {
    return this.#options.link.processId
  }

  /** The processes alive at the last renewal, this one included, sorted. */
  get live(): readonly string[] {
    return this.#live
  }

  /**
   * Whether this process's liveness key is surely still there: its last successful renewal was sent
   * less than the ttl ago. False while Redis cannot be reached or does not answer: the others are
   * about to declare this process dead, so it should not take clients (readiness).
   */
  get current(): boolean {
    return performance.now() - this.#renewedAt < this.#options.ttlMs
  }

  /** Seconds since the last successful renewal was sent. */
  get secondsSinceRenewal(): number {
    return Math.round((performance.now() - this.#renewedAt) / 100) / 10
  }

  /** Registers this process (resolves once it is listed) and renews it every interval. */
  async start(): Promise<void> {
    await this.#renew()
    this.#timer = setInterval(() => void this.#renew(), this.#options.intervalMs)
    this.#timer.unref()
  }

  /**
   * Stops renewing and deletes this process's key, so the coordinator heals what it leaves online
   * within a second instead of after the ttl.
   */
  async stop(): Promise<void> {
    clearInterval(this.#timer)
    const { link, log } = this.#options
    await link.commands.del(this.#key(this.processId)).catch((err: unknown) => {
      log.warn({ err }, 'could not end this process liveness key: it expires by itself')
    })
  }

  /** The processes whose keys exist now. */
  async liveProcesses(): Promise<string[]> {
    const { commands } = this.#options.link
    const listed = Object.keys(await commands.hgetall(this.#processes()))
    if (listed.length === 0) return []
    const exists = await commands.mget(...listed.map((id) => this.#key(id)))
    return listed.filter((_id, i) => exists[i] !== null).sort()
  }

  /**
   * Declares every listed process whose key expired dead; returns those dead and not yet healed
   * (also ones declared by an earlier coordinator that did not finish).
   */
  async declareDead(): Promise<LostProcess[]> {
    const { commands } = this.#options.link
    const listed = Object.keys(await commands.hgetall(this.#processes()))
    for (const id of listed) {
      if (id === this.processId) continue
      await commands.eval(DECLARE_DEAD, 3, this.#key(id), this.#processes(), this.#dead(), id)
    }
    const dead = await commands.hgetall(this.#dead())
    return Object.entries(dead).map(([id, at]) => ({ id, lastRenewedAt: Number(at) }))
  }

  /** A dead process's devices and routers are marked lost: it is forgotten. */
  async healed(id: string): Promise<void> {
    await this.#options.link.commands.hdel(this.#dead(), id)
  }

  async #renew(): Promise<void> {
    if (this.#renewing) return
    this.#renewing = true
    const { link, log, ttlMs } = this.#options
    const sentAt = performance.now()
    try {
      const listed = await link.commands.eval(
        RENEW,
        2,
        this.#key(this.processId),
        this.#processes(),
        this.processId,
        ttlMs,
        Date.now(),
      )
      if (this.#registered && listed === 0) {
        log.error(
          { processId: this.processId },
          'the deployment declared this process dead (it could not renew its liveness in time): its clients start over',
        )
        this.#options.onDeclaredDead?.()
      }
      this.#registered = true
      this.#renewedAt = sentAt
      const live = await this.liveProcesses()
      const changed = live.join() !== this.#live.join()
      this.#live = live
      if (changed) this.#options.onLiveChange?.(live)
    } catch (err) {
      if (!this.#registered) throw err
      log.warn({ err }, 'could not renew this process liveness in Redis')
    } finally {
      this.#renewing = false
    }
  }

  #key(id: string): string {
    return this.#options.link.key(`process:${id}`)
  }

  #processes(): string {
    return this.#options.link.key('processes')
  }

  #dead(): string {
    return this.#options.link.key('processes:dead')
  }
}

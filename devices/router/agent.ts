import { randomInt } from 'node:crypto'
import { availableParallelism, loadavg } from 'node:os'
import type { Static } from '@sinclair/typebox'
import type { types } from 'mediasoup'
import type { Logger } from 'pino'
import { type RouterAgentConfig, SignalRequest } from '../../schemas/actions/media.ts'
import {
  AssignmentState,
  type OvRelay,
  type RouterKind,
  type RouterLoad,
  type RouterPresencePayload,
} from '../../schemas/actions/router.ts'
import type { ErrorBody } from '../../schemas/protocol.ts'
import { validator } from '../../schemas/validate.ts'
import { HubClient } from '../hub-client/hub-client.ts'
import { RequestError } from '../hub-client/requests.ts'
import { topics } from '../../schemas/topics.ts'
import { noDelay } from '../tcp.ts'
import { SignalError, StageRoom } from './room.ts'
import { SessionCounter } from './sessions.ts'
import { createWorkers } from './worker.ts'

const validSignal = validator(SignalRequest)
const validAssignment = validator(AssignmentState)
const decoder = new TextDecoder()
/** Routers come back sooner than boxes: their stages wait for them. */
const ROUTER_BACKOFF = { initialMs: 500, maxMs: 30_000 }

/** The configuration with every default filled in. */
export type ResolvedRouterConfig = Required<
  Pick<
    RouterAgentConfig,
    'listenIp' | 'rtcMinPort' | 'rtcMaxPort' | 'workers' | 'url' | 'loadIntervalSeconds' | 'keepaliveSeconds'
  >
> &
  RouterAgentConfig

export function withDefaults(config: RouterAgentConfig): ResolvedRouterConfig {
  const listenIp = config.listenIp ?? '0.0.0.0'
  return {
    ...config,
    listenIp,
    rtcMinPort: config.rtcMinPort ?? 40000,
    rtcMaxPort: config.rtcMaxPort ?? 49999,
    workers: config.workers ?? availableParallelism(),
    url: config.url ?? `webrtc://${config.announcedAddress ?? listenIp}`,
    loadIntervalSeconds: config.loadIntervalSeconds ?? 10,
    keepaliveSeconds: config.keepaliveSeconds ?? 30,
  }
}

export interface RouterAgentOptions {
  log: Logger
  /** A mediasoup worker died: the agent cannot vouch for its stages any more (main.ts exits). */
  onFatal?(err: Error): void
  /** mediasoup worker log level (default warn). */
  workerLogLevel?: types.WorkerLogLevel
}

/** A stage assigned to this router. */
interface StageSlot {
  assignedAt?: string
  room?: StageRoom
  /** Work on this stage runs one step at a time: assignment changes and signals, in arrival order. */
  chain: Promise<void>
  pending: number
}

/**
 * The media router agent (issue 6 item 3): connects as the router, runs mediasoup workers, creates a
 * mediasoup Router per assigned stage (on the least busy worker), answers `router.served`, serves the
 * hub's signals for its stages, closes everything of a stage when its assignment is cleared and says
 * `router.unserved`, and reports its load. It trusts signals because only the hub can publish on
 * `routers/{r}/signal` (the hub's ACL), and still checks that every id belongs to the participant.
 *
 * When the connection to the hub is lost, the hub declares the router lost and moves its stages: so
 * does the agent, closing every stage at once; the assignments that are still its own arrive again
 * (retained) when it is back.
 */
export class RouterAgent {
  readonly config: ResolvedRouterConfig
  readonly #options: RouterAgentOptions
  readonly #log: Logger
  readonly #connection: HubClient
  readonly #stages = new Map<string, StageSlot>()
  /**
   * The ov relay handed out per stage, kept while the stage is this router's, across lost connections
   * and hub restarts: a new PIN would give every ov-box of the stage a new configuration (and restart
   * its ov-client). Dropped when the hub takes the stage away.
   */
  readonly #relays = new Map<string, Static<typeof OvRelay>>()
  #workers: types.Worker[] = []
  #loadTimer: NodeJS.Timeout | undefined
  #stopped = false

  constructor(config: RouterAgentConfig, options: RouterAgentOptions) {
    this.config = withDefaults(config)
    if (this.config.rtcMinPort > this.config.rtcMaxPort)
      throw new Error(`rtcMinPort ${this.config.rtcMinPort} is above rtcMaxPort ${this.config.rtcMaxPort}`)
    this.#options = options
    this.#log = options.log
    const { routerId, token, hubUrl, keepaliveSeconds, capacity, position, url, ov } = this.config
    const capabilities: RouterKind[] = ['mediasoup', ...(ov ? (['ov'] as const) : [])]
    const announcement: Omit<Extract<RouterPresencePayload, { state: 'online' }>, 'state' | 'session'> = {
      capabilities,
      capacity: {
        mediasoup: capacity.mediasoup,
        ...(ov ? { ov: capacity.ov ?? capacity.mediasoup } : {}),
      },
      position,
      url,
    }
    this.#connection = new HubClient(
      {
        url: hubUrl,
        clientId: routerId,
        username: 'router',
        token,
        keepaliveSeconds,
        presence: {
          topic: topics.routerPresence.build(routerId),
          sessions: new SessionCounter(this.config.stateFile),
          announcement,
        },
        subscriptions: [topics.assignment.filter({ r: routerId }), topics.signal.build(routerId)],
        backoff: ROUTER_BACKOFF,
        // back online, the next loss starts from the shortest delay again
        stableAfterMs: 0,
        onConnection: noDelay,
        log: this.#log,
      },
      {
        connected: () => this.#reportLoad(),
        disconnected: () => this.#closeAll('the connection to the hub was lost'),
        message: (topic, payload) => this.#message(topic, payload),
      },
    )
  }

  /** Starts the workers, then connects. */
  async start(): Promise<void> {
    this.#workers = await createWorkers(this.config.workers, {
      logLevel: this.#options.workerLogLevel ?? 'warn',
    })
    for (const worker of this.#workers) {
      worker.on('died', (err) => {
        if (this.#stopped) return
        this.#log.fatal({ err, pid: worker.pid }, 'a mediasoup worker died: its stages are gone')
        this.#options.onFatal?.(err)
      })
    }
    this.#connection.start()
    this.#loadTimer = setInterval(() => this.#reportLoad(), this.config.loadIntervalSeconds * 1000)
    this.#loadTimer.unref()
  }

  /** Clean shutdown: every stage closed, `offline`, DISCONNECT, workers closed. */
  async stop(): Promise<void> {
    this.#stopped = true
    clearInterval(this.#loadTimer)
    this.#closeAll('the router is shutting down')
    await this.#connection.stop()
    for (const worker of this.#workers) worker.close()
  }

  /** As a crash: the connection drops without a word (the hub sees the will), everything closes. */
  crash(): void {
    this.#stopped = true
    clearInterval(this.#loadTimer)
    this.#connection.abandon()
    this.#closeAll('crash')
    for (const worker of this.#workers) worker.close()
  }

  get online(): boolean {
    return this.#connection.online
  }

  /** The stage's room while this router serves it (for tests and diagnostics). */
  room(stageId: string): StageRoom | undefined {
    return this.#stages.get(stageId)?.room
  }

  /** Stages served now, with transports, producers and consumers over all of them. */
  load(): RouterLoad {
    let stages = 0
    const totals = { transports: 0, producers: 0, consumers: 0 }
    for (const slot of this.#stages.values()) {
      if (!slot.room || slot.room.closed) continue
      stages++
      const counts = slot.room.counts()
      totals.transports += counts.transports
      totals.producers += counts.producers
      totals.consumers += counts.consumers
    }
    const cpu = Math.round((loadavg()[0]! / availableParallelism()) * 1000) / 1000
    return { stages, ...totals, cpu }
  }

  #reportLoad(): void {
    if (!this.#connection.online) return
    this.#connection
      .publish(topics.routerLoad.build(this.config.routerId), JSON.stringify(this.load()), { qos: 0 })
      .catch((err: unknown) => this.#log.debug({ err }, 'load report not sent'))
  }

  #message(topic: string, payload: Uint8Array): void {
    const { routerId } = this.config
    if (topic === topics.signal.build(routerId)) return this.#signal(payload)
    const assignment = topics.assignment.parse(topic)
    const stageId = assignment?.r === routerId ? assignment.s : undefined
    if (stageId !== undefined) this.#assignment(stageId, payload)
  }

  // ── assignments ─────────────────────────────────────────────────────────────────────────────

  #assignment(stageId: string, payload: Uint8Array): void {
    if (payload.length === 0) {
      this.#enqueue(stageId, () => this.#unserve(stageId))
      return
    }
    let state: unknown
    try {
      state = JSON.parse(decoder.decode(payload))
    } catch {
      state = undefined
    }
    if (!validAssignment(state) || state.stageId !== stageId) {
      this.#log.error({ stageId, problem: validAssignment.describe() }, 'ignoring an invalid assignment')
      return
    }
    this.#enqueue(stageId, () => this.#serve(state))
  }

  async #serve(assignment: AssignmentState): Promise<void> {
    const { stageId, kinds, assignedAt } = assignment
    const slot = this.#stages.get(stageId)!
    if (slot.assignedAt === assignedAt && (slot.room === undefined || !slot.room.closed)) return
    slot.room?.close()
    delete slot.room
    slot.assignedAt = assignedAt
    const served: { stageId: string; media?: { url: string }; ov?: Static<typeof OvRelay> } = { stageId }
    if (kinds.includes('mediasoup')) {
      slot.room = await StageRoom.open(this.#leastBusyWorker(), stageId, { listenInfos: this.#listenInfos() })
      served.media = { url: this.config.url }
    }
    if (kinds.includes('ov') && this.config.ov) served.ov = this.#relay(stageId, this.config.ov)
    if (!served.media && !served.ov) {
      this.#log.warn({ stageId, kinds }, 'assigned a stage this router cannot serve')
      return
    }
    this.#log.info({ stageId, kinds }, 'serving a stage')
    try {
      await this.#connection.request('router.served', served)
    } catch (err) {
      this.#log.warn({ err, stageId }, 'the hub did not take router.served')
    }
  }

  #relay(stageId: string, ov: NonNullable<ResolvedRouterConfig['ov']>): Static<typeof OvRelay> {
    let relay = this.#relays.get(stageId)
    if (!relay) {
      const { pin, ...address } = ov
      relay = { ...address, pin: pin ?? randomInt(1, 2 ** 31 - 1) }
      this.#relays.set(stageId, relay)
    }
    return relay
  }

  async #unserve(stageId: string): Promise<void> {
    const slot = this.#stages.get(stageId)!
    this.#relays.delete(stageId)
    const wasServing = slot.assignedAt !== undefined
    slot.room?.close()
    delete slot.room
    delete slot.assignedAt
    if (!wasServing) return
    this.#log.info({ stageId }, 'stage unassigned: closed')
    try {
      await this.#connection.request('router.unserved', { stageId })
    } catch (err) {
      // conflict: assigned to this router again meanwhile (its assignment follows)
      if (!(err instanceof RequestError && err.code === 'conflict'))
        this.#log.warn({ err, stageId }, 'the hub did not take router.unserved')
    }
  }

  #closeAll(reason: string): void {
    for (const [stageId, slot] of this.#stages) {
      if (!slot.room && !slot.assignedAt) continue
      this.#log.info({ stageId, reason }, 'closing a stage')
      slot.room?.close()
      delete slot.room
      delete slot.assignedAt
      if (slot.pending === 0) this.#stages.delete(stageId)
    }
  }

  // ── signals ─────────────────────────────────────────────────────────────────────────────────

  #signal(payload: Uint8Array): void {
    let request: unknown
    try {
      request = JSON.parse(decoder.decode(payload))
    } catch {
      request = undefined
    }
    if (!validSignal(request)) {
      const id = (request as { id?: unknown } | undefined)?.id
      this.#log.warn({ problem: validSignal.describe() }, 'invalid signal')
      if (typeof id === 'string' && id.length > 0 && id.length <= 64)
        this.#answer(id, { code: 'invalid_request', message: `invalid signal: ${validSignal.describe()}` })
      return
    }
    const { id, stageId } = request
    if (!this.#stages.get(stageId)?.room) {
      this.#answer(id, {
        code: 'unavailable',
        message: `router ${this.config.routerId} does not serve stage ${stageId}`,
      })
      return
    }
    this.#enqueue(stageId, async () => {
      const room = this.#stages.get(stageId)?.room
      if (!room || room.closed) {
        this.#answer(id, { code: 'unavailable', message: `stage ${stageId} closed on this router` })
        return
      }
      try {
        this.#answer(id, undefined, await room.handle(request))
      } catch (err) {
        if (err instanceof SignalError) this.#answer(id, { code: err.code, message: err.message })
        else {
          this.#log.error({ err, action: request.action, stageId }, 'signal failed')
          this.#answer(id, { code: 'internal', message: 'the router could not serve this request' })
        }
      }
    })
  }

  #answer(id: string, error: ErrorBody | undefined, result?: unknown): void {
    const answer = error ? { id, ok: false, error } : { id, ok: true, result: result ?? {} }
    this.#connection
      .publish(topics.signalAnswers.build(this.config.routerId), JSON.stringify(answer))
      .catch((err: unknown) => this.#log.warn({ err, id }, 'answer not delivered'))
  }

  // ── helpers ─────────────────────────────────────────────────────────────────────────────────

  /** Runs `work` after everything queued for the stage before it. */
  #enqueue(stageId: string, work: () => Promise<void>): void {
    let slot = this.#stages.get(stageId)
    if (!slot) {
      slot = { chain: Promise.resolve(), pending: 0 }
      this.#stages.set(stageId, slot)
    }
    const current = slot
    current.pending++
    current.chain = current.chain
      .then(work)
      .catch((err: unknown) => this.#log.error({ err, stageId }, 'stage work failed'))
      .finally(() => {
        current.pending--
        if (current.pending === 0 && !current.room && !current.assignedAt) this.#stages.delete(stageId)
      })
  }

  #leastBusyWorker(): types.Worker {
    const rooms = new Map<types.Worker, number>(this.#workers.map((w) => [w, 0]))
    for (const slot of this.#stages.values()) {
      if (!slot.room || slot.room.closed) continue
      const { worker } = slot.room
      rooms.set(worker, (rooms.get(worker) ?? 0) + 1)
    }
    let best = this.#workers[0]
    if (!best) throw new Error('no mediasoup worker is running')
    for (const [worker, count] of rooms) if (count < (rooms.get(best) ?? 0)) best = worker
    return best
  }

  #listenInfos(): types.TransportListenInfo[] {
    const { listenIp, announcedAddress, rtcMinPort, rtcMaxPort } = this.config
    return (['udp', 'tcp'] as const).map((protocol) => ({
      protocol,
      ip: listenIp,
      ...(announcedAddress ? { announcedAddress } : {}),
      portRange: { min: rtcMinPort, max: rtcMaxPort },
    }))
  }
}

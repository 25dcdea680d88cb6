import { randomUUID } from 'node:crypto'
import type { Static, TSchema } from '@sinclair/typebox'
import type { Logger } from 'pino'
import * as sdpTransform from 'sdp-transform'
import type { Identity } from '../../broker/tokens.ts'
import {
  type SignalAction,
  SignalAnswer,
  type SignalPeer,
  type SignalRequest,
  hubSignals,
  mediaCapabilities,
  mediaAnswer,
  mediaClose,
  mediaConnectTransport,
  mediaConsume,
  mediaCreateTransport,
  mediaPause,
  mediaOffer,
  mediaProduce,
  mediaReceive,
  mediaResume,
  signalResults,
} from '../../schemas/actions/media.ts'
import { type Validator, validator } from '../../schemas/validate.ts'
import { topics } from '../../schemas/topics.ts'
import { collections, type UserDoc } from '../collections.ts'
import { HubError, forbidden, notFound } from '../errors.ts'
import type { RequestContext, RequestPipeline } from '../requests/pipeline.ts'
import type { Change } from '../store/port.ts'
import type { Store } from '../store/store.ts'
import { type AssignmentDoc, type RouterDoc, routerCollections } from '../routers/model.ts'
import { type MemberDoc, type StageDoc, type StageTrackDoc, stageCollections as c } from '../stages/model.ts'
import { deleteTracks, insertTrack } from '../stages/tracks.ts'
import { isMediaTrack } from './tracks.ts'

const validAnswer = validator(SignalAnswer)
const validResult = new Map<string, Validator<unknown>>(
  Object.entries(signalResults).map(([action, schema]) => [
    action,
    validator(schema as TSchema) as Validator<unknown>,
  ]),
)
const MAX_ANSWER_BYTES = 256 * 1024

export interface MediaServiceOptions {
  store: Store
  pipeline: RequestPipeline
  log: Logger
  /** Publishes a signal for a router (the broker's own publish: QoS 1, not retained, no client ACL). */
  sendSignal(topic: string, payload: string): Promise<void>
  /** How long the hub waits for a router's answer before answering `unavailable` (default 10 s). */
  answerTimeoutMs?: number
  /**
   * How long a participant's media outlives its MQTT connection (default 5 s): a client that comes
   * back with the same client id within it keeps its transports and tracks.
   */
  peerGraceMs?: number
}

interface Pending {
  routerId: string
  action: SignalAction
  resolve(result: unknown): void
  reject(err: HubError): void
  timer: NodeJS.Timeout
}

/** Who asks, checked against the store: a member in the stage now, and the router serving it. */
interface Caller {
  userId: string
  stage: StageDoc
  member: MemberDoc
  routerId: string
  peer: Required<SignalPeer>
}

/** A client that signalled: its media goes when it disconnects for longer than the grace period. */
interface KnownPeer {
  userId: string
  stageId: string
}

const unavailable = (message: string) => new HubError('unavailable', message)

/**
 * Media signalling through the hub (issue 6 item 4, `media.*` in docs/protocol/actions.md). Every request is checked
 * against the store: the caller (user, or a device for its owner) is a member in a stage now, the
 * stage has a mediasoup router that is online and has said `router.served`; then the request goes to
 * that router on `routers/{r}/signal` with the caller's identity from the token and the store (never
 * from params), once per request however often its transaction re-runs (`ctx.once`), and the
 * router's answer on `routers/{r}/signal/answers` becomes the response. A producer becomes the
 * retained stage track `stages/{s}/tracks/{producerId}`; closing it, leaving the stage, the client
 * going away, or the stage's router changing (loss, failover, restart, unassignment) removes it.
 */
export class MediaService {
  readonly #options: MediaServiceOptions
  readonly #pending = new Map<string, Pending>()
  readonly #peers = new Map<string, KnownPeer>()
  readonly #graceTimers = new Map<string, NodeJS.Timeout>()

  constructor(options: MediaServiceOptions) {
    this.#options = options
  }

  async start(): Promise<void> {
    const { store } = this.#options
    // after a restart no router is connected: no producer the store names is reachable any more
    await store.transaction(async (tx) =>
      deleteTracks(tx, (await tx.find<StageTrackDoc>(c.stageTracks.name)).filter(isMediaTrack)),
    )
    this.#registerActions()
    // in a cluster every process runs it for every commit (the change feed): each forgets its own
    // peers; deleting tracks is idempotent (the first commit wins, the others find nothing), and so
    // is member.leave on the router, which then hears it once per process
    store.onChange((changes) => this.#afterCommit(changes))
  }

  stop(): void {
    for (const [id, pending] of this.#pending) {
      clearTimeout(pending.timer)
      pending.reject(unavailable('the hub is shutting down'))
      this.#pending.delete(id)
    }
    for (const timer of this.#graceTimers.values()) clearTimeout(timer)
    this.#graceTimers.clear()
  }

  /** The broker's hook for `routers/{r}/signal/answers`; returns a reason to refuse the message. */
  inspect(who: Identity, topic: string, payload: Buffer): string | undefined {
    const match = topics.signalAnswers.parse(topic)
    if (!match) return undefined
    // the ACL lets only router r publish here; checked again, it is what answers are trusted for
    if (who.role !== 'router' || who.id !== match.r) return 'only the router itself answers its signals'
    if (payload.length > MAX_ANSWER_BYTES) return `signal answer of ${payload.length} bytes is too large`
    let answer: unknown
    try {
      answer = JSON.parse(payload.toString('utf8'))
    } catch {
      return 'signal answer is not JSON'
    }
    if (!validAnswer(answer)) {
      const problem = `signal answer: ${validAnswer.describe()}`
      // the request it answers fails now rather than at the timeout
      const id = (answer as { id?: unknown } | null)?.id
      if (typeof id === 'string')
        this.#settle(id, who.id, unavailable(`the stage's media router answered malformed`))
      return problem
    }
    if (!answer.ok) {
      this.#settle(answer.id, who.id, new HubError(answer.error.code, answer.error.message))
      return undefined
    }
    const action = this.#pending.get(answer.id)?.action
    const check = action && validResult.get(action)
    if (check && !check(answer.result ?? {})) {
      this.#options.log.error(
        { routerId: who.id, action, problem: check.describe() },
        'malformed signal answer',
      )
      this.#settle(answer.id, who.id, unavailable(`the stage's media router answered ${action} malformed`))
      return undefined
    }
    this.#settle(answer.id, who.id, answer.result ?? {})
    return undefined
  }

  /**
   * Ends the wait for signal `id` with a result or a refusal, if it was sent to this router; a late
   * answer (after the timeout) or one for another router's signal is dropped.
   */
  #settle(id: string, routerId: string, outcome: unknown): void {
    const pending = this.#pending.get(id)
    if (!pending || pending.routerId !== routerId) return
    this.#pending.delete(id)
    clearTimeout(pending.timer)
    if (outcome instanceof HubError) pending.reject(outcome)
    else pending.resolve(outcome)
  }

  /** A client (re)connected: a participant that comes back within the grace period keeps its media. */
  connected(who: Identity): void {
    const timer = this.#graceTimers.get(who.clientId)
    const peer = this.#peers.get(who.clientId)
    if (timer && peer && peer.userId === userOf(who)) {
      clearTimeout(timer)
      this.#graceTimers.delete(who.clientId)
    }
  }

  /** The broker closed a connection: a router's pending signals fail now, a participant's media goes after the grace period. */
  disconnected(who: Identity, superseded: boolean): void {
    if (who.role === 'router') {
      for (const [id, pending] of this.#pending) {
        if (pending.routerId !== who.id) continue
        clearTimeout(pending.timer)
        this.#pending.delete(id)
        pending.reject(unavailable(`the stage's router disconnected before answering; retry`))
      }
      return
    }
    if (superseded) return
    const peer = this.#peers.get(who.clientId)
    if (!peer || peer.userId !== userOf(who)) return
    clearTimeout(this.#graceTimers.get(who.clientId))
    const timer = setTimeout(() => {
      this.#graceTimers.delete(who.clientId)
      // #peerGone never rejects: it logs what it could not clean up
      void this.#peerGone(who.clientId, peer)
    }, this.#options.peerGraceMs ?? 5000)
    timer.unref()
    this.#graceTimers.set(who.clientId, timer)
  }

  // ── actions ─────────────────────────────────────────────────────────────────────────────────

  #registerActions(): void {
    const { pipeline } = this.#options
    pipeline.register(mediaCapabilities, async (ctx) => {
      const caller = await this.#caller(ctx)
      return this.#forward<typeof mediaCapabilities>(ctx, caller, 'media.capabilities', {})
    })

    pipeline.register(mediaCreateTransport, async (ctx, params) => {
      const caller = await this.#caller(ctx)
      const result = await this.#forward<typeof mediaCreateTransport>(
        ctx,
        caller,
        'media.createTransport',
        params,
      )
      await this.#dropOwnTracks(ctx, caller, result.closedProducers)
      return result
    })

    pipeline.register(mediaOffer, async (ctx, params) => {
      const caller = await this.#caller(ctx)
      const { stage } = caller
      for (const kind of offeredKinds(params.sdp)) {
        const type = kind === 'audio' ? stage.audioType : stage.videoType
        if (type !== 'mediasoup')
          throw forbidden(
            `this stage's ${kind} is ${type}, not mediasoup: offer no ${kind} m-line (or reject it with port 0)`,
          )
      }
      const result = await this.#forward<typeof mediaOffer>(ctx, caller, 'media.offer', params)
      await this.#dropOwnTracks(ctx, caller, result.closedProducers)
      for (const { producerId, kind } of result.producers) this.#addTrack(ctx, caller, producerId, kind)
      return result
    })

    pipeline.register(mediaReceive, async (ctx, params) => {
      const caller = await this.#caller(ctx)
      return this.#forward<typeof mediaReceive>(ctx, caller, 'media.receive', params)
    })

    pipeline.register(mediaAnswer, async (ctx, params) => {
      const caller = await this.#caller(ctx)
      return this.#forward<typeof mediaAnswer>(ctx, caller, 'media.answer', params)
    })

    pipeline.register(mediaConnectTransport, async (ctx, params) => {
      const caller = await this.#caller(ctx)
      return this.#forward<typeof mediaConnectTransport>(ctx, caller, 'media.connectTransport', params)
    })

    pipeline.register(mediaProduce, async (ctx, params) => {
      const caller = await this.#caller(ctx)
      const { stage } = caller
      const type = params.kind === 'audio' ? stage.audioType : stage.videoType
      if (type !== 'mediasoup')
        throw forbidden(
          `this stage's ${params.kind} is ${type}, not mediasoup: it takes no ${params.kind} producers`,
        )
      const result = await this.#forward<typeof mediaProduce>(ctx, caller, 'media.produce', params)
      this.#addTrack(ctx, caller, result.producerId, params.kind)
      return result
    })

    pipeline.register(mediaConsume, async (ctx, params) => {
      const caller = await this.#caller(ctx)
      const track = await ctx.tx.get<StageTrackDoc>(c.stageTracks.name, params.producerId)
      if (!track || !isMediaTrack(track) || track.stageId !== caller.stage.id)
        throw notFound(`producer ${params.producerId} in your stage`)
      if (ownTrack(track, caller))
        throw new HubError(
          'invalid_request',
          'that is your own producer: a participant does not consume itself',
        )
      return this.#forward<typeof mediaConsume>(ctx, caller, 'media.consume', params)
    })

    for (const action of [mediaPause, mediaResume] as const) {
      pipeline.register(action, async (ctx, params) => {
        const caller = await this.#caller(ctx)
        const track = params.producerId ? await this.#ownProducer(ctx, caller, params.producerId) : null
        const result = await this.#forward<typeof action>(ctx, caller, action.name as 'media.pause', params)
        // the others' receivers tell a paused sender from a poor connection by the retained track
        const paused = action === mediaPause
        if (track && (track.paused ?? false) !== paused) {
          const { paused: _was, ...sending } = track
          ctx.tx.replace(c.stageTracks.name, paused ? { ...sending, paused: true } : sending)
        }
        return result
      })
    }

    pipeline.register(mediaClose, async (ctx, params) => {
      const caller = await this.#caller(ctx)
      const track = params.producerId ? await this.#ownProducer(ctx, caller, params.producerId) : null
      let closedProducers: string[]
      try {
        ;({ closedProducers } = await this.#forward<typeof mediaClose>(ctx, caller, 'media.close', params))
      } catch (err) {
        // the router lost it already (closed with its transport): the track goes all the same
        if (!(track && err instanceof HubError && err.code === 'not_found')) throw err
        closedProducers = [track.id]
      }
      await this.#dropOwnTracks(ctx, caller, closedProducers)
      return { closedProducers }
    })
  }

  async #caller(ctx: RequestContext): Promise<Caller> {
    const { who, tx } = ctx
    const userId = userOf(who)
    if (!userId) throw forbidden('media is exchanged by stage members: connect with a user or device token')
    const user = await tx.get<UserDoc>(collections.users.name, userId)
    const stageId = user?.stageId
    if (!stageId) throw forbidden('you are in no stage: join one (stage.join) to send or receive its media')
    const [member] = await tx.find<MemberDoc>(c.members.name, { stageId, userId })
    if (!member?.joined) throw forbidden(`you are not in stage ${stageId} now: join it first`)
    const stage = await tx.get<StageDoc>(c.stages.name, stageId)
    if (!stage) throw notFound(`stage ${stageId}`)
    if (stage.audioType !== 'mediasoup' && stage.videoType !== 'mediasoup')
      throw unavailable(
        `stage ${stageId} has no mediasoup media (audio ${stage.audioType}, video ${stage.videoType})`,
      )
    const assignment = await tx.get<AssignmentDoc>(routerCollections.assignments.name, stageId)
    if (!assignment?.kinds.includes('mediasoup'))
      throw unavailable(`no media router serves stage ${stageId} now: retry when stages/${stageId} names one`)
    // read outside the transaction: load reports rewrite the router document every few seconds
    const router = await this.#options.store.get<RouterDoc>(
      routerCollections.routers.name,
      assignment.routerId,
    )
    if (!router?.online) throw unavailable(`the media router of stage ${stageId} is offline: retry shortly`)
    if (!assignment.media)
      throw unavailable(`the media router of stage ${stageId} is still preparing it: retry shortly`)
    return {
      userId,
      stage,
      member,
      routerId: router.id,
      peer: { clientId: who.clientId, userId, memberId: member.id },
    }
  }

  /**
   * Sends the request to the stage's router once per request, however often the transaction re-runs,
   * and resolves with its answer. A re-run that finds the stage on another router by now fails: what
   * the first router made is not reachable through the new one.
   */
  async #forward<A extends { result: TSchema }>(
    ctx: RequestContext,
    caller: Caller,
    action: SignalAction,
    params: object,
  ): Promise<Static<A['result']>> {
    const sent = await ctx.once('media.forward', async () => {
      const result = await this.#signal(caller.routerId, {
        id: randomUUID(),
        action,
        stageId: caller.stage.id,
        peer: caller.peer,
        params: params as Record<string, unknown>,
      })
      this.#peers.set(caller.peer.clientId, { userId: caller.userId, stageId: caller.stage.id })
      return { routerId: caller.routerId, result }
    })
    if (sent.routerId !== caller.routerId)
      throw unavailable('the stage moved to another media router during this request: start over')
    return sent.result as Static<A['result']>
  }

  /** A new producer of the caller is a retained stage track. */
  #addTrack(ctx: RequestContext, caller: Caller, producerId: string, kind: 'audio' | 'video'): void {
    insertTrack(ctx.tx, {
      id: producerId,
      stageId: caller.stage.id,
      userId: caller.userId,
      memberId: caller.member.id,
      deviceId: caller.peer.clientId,
      kind,
    })
  }

  /** A producer id the caller may pause, resume or close: its track, if the hub knows it, is the caller's. */
  async #ownProducer(ctx: RequestContext, caller: Caller, producerId: string): Promise<StageTrackDoc | null> {
    const track = await ctx.tx.get<StageTrackDoc>(c.stageTracks.name, producerId)
    if (!track || !isMediaTrack(track) || track.stageId !== caller.stage.id) return null
    if (!ownTrack(track, caller)) throw forbidden(`producer ${producerId} belongs to another participant`)
    return track
  }

  /** Removes the caller's tracks of producers the router closed. */
  async #dropOwnTracks(ctx: RequestContext, caller: Caller, producerIds: readonly string[]): Promise<void> {
    const tracks: StageTrackDoc[] = []
    for (const id of producerIds) {
      const track = await ctx.tx.get<StageTrackDoc>(c.stageTracks.name, id)
      if (track && isMediaTrack(track) && track.stageId === caller.stage.id && ownTrack(track, caller))
        tracks.push(track)
    }
    await deleteTracks(ctx.tx, tracks)
  }

  // ── signals ─────────────────────────────────────────────────────────────────────────────────

  /** Publishes a signal to router `routerId` and resolves with its answer; `unavailable` after the timeout. */
  #signal(routerId: string, request: SignalRequest): Promise<unknown> {
    const timeoutMs = this.#options.answerTimeoutMs ?? 10_000
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(request.id)
        reject(unavailable(`the stage's media router did not answer within ${timeoutMs / 1000} s: retry`))
      }, timeoutMs)
      timer.unref()
      this.#pending.set(request.id, { routerId, action: request.action, resolve, reject, timer })
      this.#options
        .sendSignal(topics.signal.build(routerId), JSON.stringify(request))
        .catch((err: unknown) => {
          clearTimeout(timer)
          this.#pending.delete(request.id)
          this.#options.log.warn({ err, routerId }, 'could not publish a signal')
          reject(unavailable('the signal could not be sent to the media router'))
        })
    })
  }

  /** A signal of the hub's own (nobody waits for the answer): to the router serving the stage now, if any. */
  async #tell(stageId: string, action: SignalAction, peer: SignalPeer): Promise<void> {
    const { store, log } = this.#options
    // never rejects (its callers do not wait): a store or router that fails it only loses the clean-up
    try {
      const assignment = await store.get<AssignmentDoc>(routerCollections.assignments.name, stageId)
      if (!assignment?.kinds.includes('mediasoup')) return
      const router = await store.get<RouterDoc>(routerCollections.routers.name, assignment.routerId)
      if (!router?.online) return
      await this.#signal(router.id, { id: randomUUID(), action, stageId, peer, params: {} })
    } catch (err) {
      log.debug({ err, stageId, action }, 'a clean-up signal did not reach the router')
    }
  }

  // ── clean-up ────────────────────────────────────────────────────────────────────────────────

  /**
   * After every commit: a user who left a stage takes their media out of it; a stage whose router
   * assignment ended or changed, or whose router restarted (a new presence session while online),
   * loses all its media tracks (their producers lived on that router).
   */
  #afterCommit(changes: readonly Change[]): Promise<void> | undefined {
    const left: KnownPeer[] = []
    const stages = new Set<string>()
    const restarted = new Set<string>()
    for (const { collection, before, after } of changes) {
      if (collection === collections.users.name) {
        const was = (before as UserDoc | null)?.stageId
        if (was && was !== (after as UserDoc | null)?.stageId) left.push({ userId: before!.id, stageId: was })
      } else if (collection === routerCollections.assignments.name) {
        const b = before as AssignmentDoc | null
        const a = after as AssignmentDoc | null
        if (b && (!a || a.routerId !== b.routerId || a.assignedAt !== b.assignedAt)) stages.add(b.stageId)
      } else if (collection === routerCollections.routers.name) {
        const b = before as RouterDoc | null
        const a = after as RouterDoc | null
        if (b?.online && a?.online && a.session !== b.session) restarted.add(a.id)
      }
    }
    if (left.length === 0 && stages.size === 0 && restarted.size === 0) return undefined
    return this.#cleanUp(left, stages, restarted).catch((err: unknown) =>
      this.#options.log.error({ err }, 'could not remove media tracks'),
    )
  }

  async #cleanUp(left: readonly KnownPeer[], stages: ReadonlySet<string>, restarted: ReadonlySet<string>) {
    const { store } = this.#options
    await store.transaction(async (tx) => {
      const reset = new Set(stages)
      for (const routerId of restarted)
        for (const a of await tx.find<AssignmentDoc>(routerCollections.assignments.name, { routerId }))
          reset.add(a.stageId)
      const doomed = new Map<string, StageTrackDoc>()
      for (const stageId of reset)
        for (const track of await tx.find<StageTrackDoc>(c.stageTracks.name, { stageId }))
          if (isMediaTrack(track)) doomed.set(track.id, track)
      for (const { userId, stageId } of left)
        for (const track of await tx.find<StageTrackDoc>(c.stageTracks.name, { userId }))
          if (isMediaTrack(track) && track.stageId === stageId) doomed.set(track.id, track)
      await deleteTracks(tx, [...doomed.values()])
    })
    for (const { userId, stageId } of left) {
      for (const [clientId, peer] of this.#peers)
        if (peer.userId === userId && peer.stageId === stageId) this.#peers.delete(clientId)
      void this.#tell(stageId, hubSignals.memberLeave, { userId }) // never rejects (see #tell)
    }
  }

  /** A participant's client stayed away past the grace period: its media goes. */
  async #peerGone(clientId: string, peer: KnownPeer): Promise<void> {
    const { store, log } = this.#options
    if (this.#peers.get(clientId) !== peer) return
    this.#peers.delete(clientId)
    try {
      await store.transaction(async (tx) => {
        const tracks = await tx.find<StageTrackDoc>(c.stageTracks.name, { userId: peer.userId })
        await deleteTracks(
          tx,
          tracks.filter((t) => isMediaTrack(t) && t.deviceId === clientId && t.stageId === peer.stageId),
        )
      })
    } catch (err) {
      log.error({ err, clientId }, 'could not remove the media tracks of a client that went away')
    }
    await this.#tell(peer.stageId, hubSignals.peerClose, { clientId, userId: peer.userId })
  }
}

/** The media kinds an SDP offer wants to send (m-lines not rejected with port 0); the router checks the rest. */
function offeredKinds(sdp: string): Set<string> {
  try {
    return new Set(
      sdpTransform
        .parse(sdp)
        .media.filter((m) => m.port !== 0 && (m.type === 'audio' || m.type === 'video'))
        .map((m) => m.type),
    )
  } catch {
    return new Set()
  }
}

/** The user a connection acts for: the user itself, or a device's owner. */
function userOf(who: Identity): string | undefined {
  return who.role === 'user' ? who.id : who.role === 'device' ? who.owner : undefined
}

function ownTrack(track: StageTrackDoc, caller: Caller): boolean {
  return track.userId === caller.userId && track.deviceId === caller.peer.clientId
}

import type { types } from 'mediasoup'
import type { TSchema } from '@sinclair/typebox'
import {
  type DtlsParameters,
  type MediaActionName,
  type RtpCapabilities,
  type SignalAction,
  type SignalPeer,
  type SignalRequest,
  type TransportDirection,
  hubSignals,
  mediaActions,
} from '../../schemas/actions/media.ts'
import type { ErrorCode } from '../../schemas/protocol.ts'
import { type Validator, validator } from '../../schemas/validate.ts'
import {
  createRecvOffer,
  parseRecvAnswer,
  parseSendOffer,
  produceFromOffer,
  rtpCapabilitiesFromSdp,
} from './sdp-bridge.ts'

/** The codecs every stage router offers: opus for audio, VP8 and H.264 (constrained baseline) for video. */
export const MEDIA_CODECS: types.RouterRtpCodecCapability[] = [
  { kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 },
  { kind: 'video', mimeType: 'video/VP8', clockRate: 90000 },
  {
    kind: 'video',
    mimeType: 'video/H264',
    clockRate: 90000,
    parameters: { 'packetization-mode': 1, 'profile-level-id': '42e01f', 'level-asymmetry-allowed': 1 },
  },
]

/** Per participant, so one client cannot exhaust the router for the whole stage. */
export const PEER_LIMITS = { producers: 8, consumers: 256 }

/** A refusal with an error code (docs/protocol/README.md#errors), answered to the hub (which relays it to the client). */
export class SignalError extends Error {
  override readonly name = 'SignalError'
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message)
  }
}

/** One participant: an MQTT client of a stage member (the hub says who; ids are the router's). */
interface Peer {
  key: string
  clientId: string
  userId: string
  transports: Map<string, types.WebRtcTransport>
  direction: Partial<Record<TransportDirection, string>>
  producers: Map<string, types.Producer>
  /** The transport each producer is on: closing a transport closes its producers. */
  producerTransport: Map<string, string>
  consumers: Map<string, types.Consumer>
  sdp: NativeState
}

/** A native device's SDP negotiation (media.offer / media.receive / media.answer). */
interface NativeState {
  /** The device's latest send offer: the codecs it can also receive. */
  sendOffer?: string
  /** The recv offer's m-lines in order; consumers that closed stay, rejected, as SDP demands. */
  recvLines: types.Consumer[]
  session?: { id: number; version: number }
  /** The recv transport's DTLS parameters were given (first answer). */
  recvConnected: boolean
  /** A recv offer waits for its answer. */
  offered: boolean
  /** Producers the device rejected (port 0): not offered again. */
  declined: Set<string>
}

const validParams = new Map<string, Validator<unknown>>(
  mediaActions.map((a) => [a.name, validator(a.params as TSchema) as Validator<unknown>]),
)

export interface RoomOptions {
  /** Where WebRTC transports listen (UDP and TCP, with the announced address and port range). */
  listenInfos: types.TransportListenInfo[]
}

/**
 * A stage on this router: one mediasoup Router, and per participant (user + MQTT client id) at most one
 * send and one recv WebRtcTransport with their producers and consumers. Every id in a request is
 * looked up among the requesting participant's own objects: someone else's is `forbidden`, an unknown
 * one `not_found`. Producers of other participants are found only within this stage's Router, for
 * consuming, never looked up anywhere else.
 */
export class StageRoom {
  readonly stageId: string
  readonly router: types.Router
  /** The mediasoup worker (process) the Router runs in. */
  readonly worker: types.Worker
  readonly #options: RoomOptions
  readonly #peers = new Map<string, Peer>()
  /** transport, producer and consumer ids → the key of the participant that owns them. */
  readonly #owners = new Map<string, string>()
  readonly #producers = new Map<string, { producer: types.Producer; peer: Peer }>()

  private constructor(stageId: string, router: types.Router, worker: types.Worker, options: RoomOptions) {
    this.stageId = stageId
    this.router = router
    this.worker = worker
    this.#options = options
  }

  static async open(worker: types.Worker, stageId: string, options: RoomOptions): Promise<StageRoom> {
    const router = await worker.createRouter({ mediaCodecs: MEDIA_CODECS, appData: { stageId } })
    return new StageRoom(stageId, router, worker, options)
  }

  get closed(): boolean {
    return this.router.closed
  }

  /** Closes the Router and with it every transport, producer and consumer of the stage. */
  close(): void {
    this.router.close()
    this.#peers.clear()
  }

  counts(): { transports: number; producers: number; consumers: number } {
    let transports = 0
    let consumers = 0
    for (const peer of this.#peers.values()) {
      transports += peer.transports.size
      consumers += peer.consumers.size
    }
    return { transports, producers: this.#producers.size, consumers }
  }

  /** Serves one signal of the hub; throws SignalError for refusals. */
  async handle(request: SignalRequest): Promise<unknown> {
    if (this.closed) throw new SignalError('unavailable', `stage ${this.stageId} is closed on this router`)
    const action: SignalAction = request.action
    if (action === hubSignals.memberLeave) return this.#closePeers((p) => p.userId === request.peer.userId)
    const ref = participant(request.peer)
    if (action === hubSignals.peerClose) return this.#closePeers((p) => p.key === ref.key)
    const valid = validParams.get(action)!
    if (!valid(request.params))
      throw new SignalError('invalid_request', `invalid params: ${valid.describe()}`)
    const peer = this.#peers.get(ref.key) ?? { ...ref, ...emptyPeer() }
    try {
      return await this.#media(action, peer, request.params as Record<string, unknown>)
    } catch (err) {
      throw asSignalError(err)
    }
  }

  async #media(action: MediaActionName, peer: Peer, params: Record<string, unknown>): Promise<unknown> {
    switch (action) {
      case 'media.capabilities':
        return { rtpCapabilities: this.router.rtpCapabilities }
      case 'media.createTransport':
        return this.#createTransport(peer, params.direction as TransportDirection)
      case 'media.connectTransport': {
        const transport = this.#own(peer, 'transport', params.transportId as string)
        await transport.connect({ dtlsParameters: params.dtlsParameters as DtlsParameters })
        return {}
      }
      case 'media.produce':
        return this.#produce(
          peer,
          params as { transportId: string; kind: types.MediaKind; rtpParameters: unknown; paused?: boolean },
        )
      case 'media.consume':
        return this.#consume(peer, params.producerId as string, params.rtpCapabilities as RtpCapabilities)
      case 'media.pause':
      case 'media.resume': {
        const target = params.producerId
          ? this.#own(peer, 'producer', params.producerId as string)
          : this.#own(peer, 'consumer', params.consumerId as string)
        await (action === 'media.pause' ? target.pause() : target.resume())
        return {}
      }
      case 'media.close':
        return this.#close(peer, params as { producerId?: string; consumerId?: string; transportId?: string })
      case 'media.offer':
        return this.#offer(peer, params.sdp as string)
      case 'media.receive':
        return this.#receive(peer)
      case 'media.answer':
        return this.#answer(peer, params.sdp as string)
    }
  }

  async #createTransport(peer: Peer, direction: TransportDirection) {
    const { transport, closedProducers } = await this.#newTransport(peer, direction)
    return {
      transportId: transport.id,
      direction,
      iceParameters: transport.iceParameters,
      iceCandidates: transport.iceCandidates,
      dtlsParameters: transport.dtlsParameters,
      closedProducers,
    }
  }

  /** The participant's new transport of a direction; an earlier one closes (with its producers, named). */
  async #newTransport(peer: Peer, direction: TransportDirection) {
    const closedProducers: string[] = []
    const earlier = peer.direction[direction]
    if (earlier) closedProducers.push(...this.#closeTransport(peer, earlier))
    const transport = await this.router.createWebRtcTransport({
      listenInfos: this.#options.listenInfos,
      appData: { clientId: peer.clientId, userId: peer.userId, direction },
    })
    if (this.closed) throw new SignalError('unavailable', `stage ${this.stageId} closed meanwhile`)
    this.#peers.set(peer.key, peer)
    this.#claim(transport.id, peer)
    peer.transports.set(transport.id, transport)
    peer.direction[direction] = transport.id
    if (direction === 'recv')
      peer.sdp = { ...peer.sdp, recvLines: [], recvConnected: false, offered: false, declined: new Set() }
    transport.observer.once('close', () => {
      peer.transports.delete(transport.id)
      if (peer.direction[direction] === transport.id) delete peer.direction[direction]
      this.#owners.delete(transport.id)
    })
    return { transport, closedProducers }
  }

  async #produce(
    peer: Peer,
    params: { transportId: string; kind: types.MediaKind; rtpParameters: unknown; paused?: boolean },
  ) {
    const transport = this.#own(peer, 'transport', params.transportId)
    if (peer.direction.send !== transport.id)
      throw new SignalError(
        'invalid_request',
        `transport ${transport.id} is your recv transport: produce on your send transport`,
      )
    if (peer.producers.size >= PEER_LIMITS.producers)
      throw new SignalError(
        'forbidden',
        `you have ${peer.producers.size} producers, the most one participant may have`,
      )
    const producer = await transport.produce({
      kind: params.kind,
      rtpParameters: params.rtpParameters as types.RtpParameters,
      paused: params.paused ?? false,
    })
    this.#adoptProducer(peer, producer, transport.id)
    return { producerId: producer.id, kind: producer.kind }
  }

  #adoptProducer(peer: Peer, producer: types.Producer, transportId: string): void {
    this.#claim(producer.id, peer)
    peer.producers.set(producer.id, producer)
    peer.producerTransport.set(producer.id, transportId)
    this.#producers.set(producer.id, { producer, peer })
    producer.observer.once('close', () => {
      peer.producers.delete(producer.id)
      peer.producerTransport.delete(producer.id)
      this.#producers.delete(producer.id)
      this.#owners.delete(producer.id)
    })
  }

  async #consume(peer: Peer, producerId: string, rtpCapabilities: RtpCapabilities) {
    const entry = this.#producers.get(producerId)
    if (!entry) throw new SignalError('not_found', `producer ${producerId} does not exist in this stage`)
    if (entry.peer.key === peer.key)
      throw new SignalError(
        'invalid_request',
        'that is your own producer: a participant does not consume itself',
      )
    const recv = peer.direction.recv ? peer.transports.get(peer.direction.recv) : undefined
    if (!recv)
      throw new SignalError(
        'not_found',
        'you have no recv transport: create one with media.createTransport first',
      )
    const capabilities = rtpCapabilities as types.RtpCapabilities
    if (!this.router.canConsume({ producerId, rtpCapabilities: capabilities }))
      throw new SignalError('invalid_request', `your rtpCapabilities cannot receive producer ${producerId}`)
    // one consumer per producer and participant: consuming again replaces the earlier one
    for (const consumer of peer.consumers.values()) if (consumer.producerId === producerId) consumer.close()
    if (peer.consumers.size >= PEER_LIMITS.consumers)
      throw new SignalError(
        'forbidden',
        `you have ${peer.consumers.size} consumers, the most one participant may have`,
      )
    const consumer = await recv.consume({ producerId, rtpCapabilities: capabilities, paused: true })
    this.#adoptConsumer(peer, consumer)
    return {
      consumerId: consumer.id,
      producerId,
      kind: consumer.kind,
      rtpParameters: consumer.rtpParameters,
      paused: consumer.paused,
      producerPaused: consumer.producerPaused,
    }
  }

  #close(peer: Peer, params: { producerId?: string; consumerId?: string; transportId?: string }) {
    if (params.producerId) {
      this.#own(peer, 'producer', params.producerId).close()
      return { closedProducers: [params.producerId] }
    }
    if (params.consumerId) {
      this.#own(peer, 'consumer', params.consumerId).close()
      return { closedProducers: [] }
    }
    const transport = this.#own(peer, 'transport', params.transportId!)
    return { closedProducers: this.#closeTransport(peer, transport.id) }
  }

  #adoptConsumer(peer: Peer, consumer: types.Consumer): void {
    this.#claim(consumer.id, peer)
    peer.consumers.set(consumer.id, consumer)
    consumer.observer.once('close', () => {
      peer.consumers.delete(consumer.id)
      this.#owners.delete(consumer.id)
    })
  }

  // ── native devices: SDP ─────────────────────────────────────────────────────────────────────

  /** A send offer: a new send transport (replacing the earlier one), a producer per m-line, the answer. */
  async #offer(peer: Peer, sdp: string) {
    const offer = sdpStep(() => parseSendOffer(sdp, this.router.rtpCapabilities))
    if (offer.media.length > PEER_LIMITS.producers)
      throw new SignalError(
        'forbidden',
        `the offer has ${offer.media.length} m-lines, more producers than one participant may have`,
      )
    const { transport, closedProducers } = await this.#newTransport(peer, 'send')
    let result
    try {
      result = await produceFromOffer({ sdp, router: this.router, transport })
    } catch (err) {
      transport.close()
      throw new SignalError('invalid_request', `the offer could not be served: ${(err as Error).message}`)
    }
    for (const producer of result.producers) this.#adoptProducer(peer, producer, transport.id)
    peer.sdp.sendOffer = sdp
    return {
      sdp: result.answer,
      producers: result.producers.map((p) => ({
        producerId: p.id,
        kind: p.kind,
        mid: p.rtpParameters.mid ?? '',
      })),
      closedProducers,
    }
  }

  /** A recv offer: a consumer of every other participant's producer not consumed yet, on the recv transport. */
  async #receive(peer: Peer) {
    const transport =
      (peer.direction.recv && peer.transports.get(peer.direction.recv)) ||
      (await this.#newTransport(peer, 'recv')).transport
    const capabilities = peer.sdp.sendOffer
      ? sdpStep(() => rtpCapabilitiesFromSdp(peer.sdp.sendOffer!, this.router.rtpCapabilities))
      : this.router.rtpCapabilities
    const consumed = new Set([...peer.consumers.values()].map((c) => c.producerId))
    for (const { producer, peer: owner } of this.#producers.values()) {
      if (owner.key === peer.key || consumed.has(producer.id) || peer.sdp.declined.has(producer.id)) continue
      if (!this.router.canConsume({ producerId: producer.id, rtpCapabilities: capabilities })) continue
      if (peer.consumers.size >= PEER_LIMITS.consumers) break
      const consumer = await transport.consume({
        producerId: producer.id,
        rtpCapabilities: capabilities,
        paused: true,
      })
      this.#adoptConsumer(peer, consumer)
      peer.sdp.recvLines.push(consumer)
    }
    const live = peer.sdp.recvLines.filter((c) => !c.closed)
    const consumers = live.map((c) => ({
      consumerId: c.id,
      producerId: c.producerId,
      kind: c.kind,
      mid: c.rtpParameters.mid ?? '',
    }))
    if (live.length === 0) return { transportId: transport.id, consumers }
    const session = peer.sdp.session
      ? { id: peer.sdp.session.id, version: peer.sdp.session.version + 1 }
      : { id: Date.now(), version: 1 }
    const sdp = createRecvOffer({ transport, consumers: peer.sdp.recvLines, session })
    peer.sdp.session = session
    peer.sdp.offered = true
    return { sdp, transportId: transport.id, consumers }
  }

  /** The device's answer to the latest recv offer: connect (once), resume what it took, close what it rejected. */
  async #answer(peer: Peer, sdp: string) {
    const transport = peer.direction.recv ? peer.transports.get(peer.direction.recv) : undefined
    if (!transport || !peer.sdp.offered)
      throw new SignalError('conflict', 'no receive offer waits for an answer: ask with media.receive first')
    const answer = sdpStep(() => parseRecvAnswer(sdp))
    if (!peer.sdp.recvConnected) {
      await transport.connect({ dtlsParameters: answer.dtlsParameters })
      peer.sdp.recvConnected = true
    }
    peer.sdp.offered = false
    const resumed: string[] = []
    const closed: string[] = []
    for (const consumer of peer.sdp.recvLines) {
      if (consumer.closed) continue
      const mid = consumer.rtpParameters.mid ?? ''
      if (answer.rejectedMids.includes(mid)) {
        peer.sdp.declined.add(consumer.producerId)
        consumer.close()
        closed.push(consumer.id)
      } else if (answer.acceptedMids.includes(mid)) {
        await consumer.resume()
        resumed.push(consumer.id)
      }
    }
    return { resumed, closed }
  }

  /** Closes one of the participant's transports; returns the ids of the producers that went with it. */
  #closeTransport(peer: Peer, transportId: string): string[] {
    const closed = [...peer.producerTransport].filter(([, t]) => t === transportId).map(([p]) => p)
    peer.transports.get(transportId)?.close()
    return closed
  }

  #closePeers(which: (peer: Peer) => boolean) {
    const closedProducers: string[] = []
    for (const peer of [...this.#peers.values()]) {
      if (!which(peer)) continue
      closedProducers.push(...peer.producers.keys())
      for (const transport of [...peer.transports.values()]) transport.close()
      this.#peers.delete(peer.key)
    }
    return { closedProducers }
  }

  #claim(id: string, peer: Peer): void {
    this.#owners.set(id, peer.key)
  }

  /** One of the participant's own objects; someone else's is forbidden, an unknown id not found. */
  #own(peer: Peer, kind: 'transport', id: string): types.WebRtcTransport
  #own(peer: Peer, kind: 'producer', id: string): types.Producer
  #own(peer: Peer, kind: 'consumer', id: string): types.Consumer
  #own(peer: Peer, kind: 'transport' | 'producer' | 'consumer', id: string) {
    const mine = (
      kind === 'transport' ? peer.transports : kind === 'producer' ? peer.producers : peer.consumers
    ).get(id)
    if (mine) return mine
    if (this.#owners.has(id))
      throw new SignalError('forbidden', `${kind} ${id} belongs to another participant`)
    throw new SignalError('not_found', `${kind} ${id} does not exist (any more) in this stage`)
  }
}

function participant(ref: SignalPeer): Pick<Peer, 'key' | 'clientId' | 'userId'> {
  if (!ref.clientId)
    throw new SignalError('invalid_request', 'media signals name the participant (peer.clientId)')
  return { key: `${ref.userId}/${ref.clientId}`, clientId: ref.clientId, userId: ref.userId }
}

function emptyPeer(): Omit<Peer, 'key' | 'clientId' | 'userId'> {
  return {
    transports: new Map(),
    direction: {},
    producers: new Map(),
    producerTransport: new Map(),
    consumers: new Map(),
    sdp: { recvLines: [], recvConnected: false, offered: false, declined: new Set() },
  }
}

/** The SDP bridge throws plain Errors naming the m-line and the problem: the device's own input. */
function sdpStep<T>(step: () => T): T {
  try {
    return step()
  } catch (err) {
    throw new SignalError('invalid_request', (err as Error).message)
  }
}

/** mediasoup refuses bad input with TypeError/UnsupportedError and out-of-order calls with InvalidStateError. */
function asSignalError(err: unknown): SignalError {
  if (err instanceof SignalError) return err
  const error = err as Error
  const code: ErrorCode = error.name === 'InvalidStateError' ? 'conflict' : 'invalid_request'
  return new SignalError(code, `mediasoup: ${error.message}`)
}

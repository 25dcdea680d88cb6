import { type Static, type TSchema, Type } from '@sinclair/typebox'
import { defineAction } from '../action.ts'
import { Id } from '../common.ts'
import { ErrorBody, RequestId } from '../protocol.ts'
import { OvRelay } from './router.ts'
import { GeoPosition } from './stage.ts'

/**
 * Media signalling (`media.*` in docs/protocol/actions.md): WebRTC through the stage's mediasoup router, with the hub in
 * between. A client asks the hub; the hub checks that the caller is in the stage, forwards the request
 * with the caller's identity to the router assigned to the stage on `routers/{r}/signal`, and relays
 * the router's answer (from `routers/{r}/signal/answers`) as the response. The objects below are
 * mediasoup's (https://mediasoup.org/documentation/v3/mediasoup/rtp-parameters-and-capabilities/):
 * the hub checks their shape and size, the router checks them in full.
 */

export const MediaKind = Type.Union([Type.Literal('audio'), Type.Literal('video')])
export type MediaKind = Static<typeof MediaKind>

export const TransportDirection = Type.Union([Type.Literal('send'), Type.Literal('recv')])
export type TransportDirection = Static<typeof TransportDirection>

/** Ids of transports, producers and consumers: chosen by the router (UUIDs), usable as topic levels. */
const MediaId = Id

const Word = (maxLength = 128) => Type.String({ minLength: 1, maxLength })
/** Codec-specific parameters (`minptime`, `useinbandfec`, `profile-level-id`, …). */
const CodecParameters = Type.Record(
  Type.String({ maxLength: 64 }),
  Type.Union([Type.String({ maxLength: 256 }), Type.Number()]),
  { maxProperties: 32 },
)
const RtcpFeedback = Type.Array(
  Type.Object(
    { type: Word(64), parameter: Type.Optional(Type.String({ maxLength: 64 })) },
    { additionalProperties: false },
  ),
  { maxItems: 32 },
)
const MimeType = Type.String({ pattern: '^(audio|video)/[A-Za-z0-9.+_-]{1,32}$' })
const Ssrc = Type.Integer({ minimum: 0, maximum: 4294967295 })

export const DtlsParameters = Type.Object(
  {
    role: Type.Optional(Type.Union([Type.Literal('auto'), Type.Literal('client'), Type.Literal('server')])),
    fingerprints: Type.Array(
      Type.Object(
        {
          algorithm: Type.Union([
            Type.Literal('sha-1'),
            Type.Literal('sha-224'),
            Type.Literal('sha-256'),
            Type.Literal('sha-384'),
            Type.Literal('sha-512'),
          ]),
          value: Type.String({ pattern: '^[0-9A-Fa-f:]{1,200}$' }),
        },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 8 },
    ),
  },
  { additionalProperties: false, description: "the client's DTLS role and certificate fingerprints" },
)
export type DtlsParameters = Static<typeof DtlsParameters>

/** What a sender sends (media.produce) or a receiver gets (media.consume). */
export const RtpParameters = Type.Object(
  {
    mid: Type.Optional(Word(32)),
    codecs: Type.Array(
      Type.Object(
        {
          mimeType: MimeType,
          payloadType: Type.Integer({ minimum: 0, maximum: 127 }),
          clockRate: Type.Integer({ minimum: 1 }),
          channels: Type.Optional(Type.Integer({ minimum: 1, maximum: 32 })),
          parameters: Type.Optional(CodecParameters),
          rtcpFeedback: Type.Optional(RtcpFeedback),
        },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 32 },
    ),
    headerExtensions: Type.Optional(
      Type.Array(
        Type.Object(
          {
            uri: Word(256),
            id: Type.Integer({ minimum: 1, maximum: 255 }),
            encrypt: Type.Optional(Type.Boolean()),
            parameters: Type.Optional(CodecParameters),
          },
          { additionalProperties: false },
        ),
        { maxItems: 32 },
      ),
    ),
    encodings: Type.Optional(
      Type.Array(
        Type.Object(
          {
            ssrc: Type.Optional(Ssrc),
            rid: Type.Optional(Word(32)),
            codecPayloadType: Type.Optional(Type.Integer({ minimum: 0, maximum: 127 })),
            rtx: Type.Optional(Type.Object({ ssrc: Ssrc }, { additionalProperties: false })),
            dtx: Type.Optional(Type.Boolean()),
            scalabilityMode: Type.Optional(Word(16)),
            scaleResolutionDownBy: Type.Optional(Type.Number({ minimum: 1 })),
            maxBitrate: Type.Optional(Type.Integer({ minimum: 0 })),
            maxFramerate: Type.Optional(Type.Number({ minimum: 0 })),
            adaptivePtime: Type.Optional(Type.Boolean()),
            priority: Type.Optional(Word(16)),
            networkPriority: Type.Optional(Word(16)),
            active: Type.Optional(Type.Boolean()),
          },
          { additionalProperties: false },
        ),
        { maxItems: 16 },
      ),
    ),
    rtcp: Type.Optional(
      Type.Object(
        {
          cname: Type.Optional(Type.String({ maxLength: 256 })),
          reducedSize: Type.Optional(Type.Boolean()),
          mux: Type.Optional(Type.Boolean()),
        },
        { additionalProperties: false },
      ),
    ),
    msid: Type.Optional(Type.String({ maxLength: 256 })),
  },
  { additionalProperties: false },
)
export type RtpParameters = Static<typeof RtpParameters>

/** What a receiver can decode (media.consume) and what the router supports (media.capabilities). */
export const RtpCapabilities = Type.Object(
  {
    codecs: Type.Optional(
      Type.Array(
        Type.Object(
          {
            kind: MediaKind,
            mimeType: MimeType,
            preferredPayloadType: Type.Optional(Type.Integer({ minimum: 0, maximum: 127 })),
            clockRate: Type.Integer({ minimum: 1 }),
            channels: Type.Optional(Type.Integer({ minimum: 1, maximum: 32 })),
            parameters: Type.Optional(CodecParameters),
            rtcpFeedback: Type.Optional(RtcpFeedback),
          },
          { additionalProperties: false },
        ),
        { maxItems: 64 },
      ),
    ),
    headerExtensions: Type.Optional(
      Type.Array(
        Type.Object(
          {
            kind: MediaKind,
            uri: Word(256),
            preferredId: Type.Integer({ minimum: 1, maximum: 255 }),
            preferredEncrypt: Type.Optional(Type.Boolean()),
            direction: Type.Optional(
              Type.Union([
                Type.Literal('sendrecv'),
                Type.Literal('sendonly'),
                Type.Literal('recvonly'),
                Type.Literal('inactive'),
              ]),
            ),
          },
          { additionalProperties: false },
        ),
        { maxItems: 64 },
      ),
    ),
  },
  { additionalProperties: false },
)
export type RtpCapabilities = Static<typeof RtpCapabilities>

/** Objects the router makes (ICE parameters and candidates): passed on as they are. */
const RouterObject = Type.Object({}, { additionalProperties: true })

const Empty = Type.Object({}, { additionalProperties: false })
const ClosedProducers = Type.Array(MediaId, {
  description: 'producers this request closed (their stage tracks are gone with them)',
})

export const mediaCapabilities = defineAction({
  name: 'media.capabilities',
  changesState: false,
  description:
    "The RTP capabilities of the stage's mediasoup router (load them into the WebRTC device first). The stage is always the one the caller is in now.",
  params: Empty,
  result: Type.Object({ rtpCapabilities: RtpCapabilities }, { additionalProperties: false }),
})

export const mediaCreateTransport = defineAction({
  name: 'media.createTransport',
  changesState: true,
  targets: { transportId: 'result.transportId' },
  description:
    'Create a WebRTC transport on the stage router: one send and one recv transport per participant (MQTT client id); creating one of a direction again replaces (closes) the earlier one with its producers and consumers.',
  params: Type.Object({ direction: TransportDirection }, { additionalProperties: false }),
  result: Type.Object(
    {
      transportId: MediaId,
      direction: TransportDirection,
      iceParameters: RouterObject,
      iceCandidates: Type.Array(RouterObject, { maxItems: 64 }),
      dtlsParameters: RouterObject,
      closedProducers: ClosedProducers,
    },
    { additionalProperties: false },
  ),
})

export const mediaConnectTransport = defineAction({
  name: 'media.connectTransport',
  changesState: false,
  targets: { transportId: 'params.transportId' },
  description: "Give one of your transports the client's DTLS parameters (once per transport).",
  params: Type.Object(
    { transportId: MediaId, dtlsParameters: DtlsParameters },
    { additionalProperties: false },
  ),
  result: Empty,
})

export const mediaProduce = defineAction({
  name: 'media.produce',
  changesState: true,
  targets: { transportId: 'params.transportId', producerId: 'result.producerId' },
  description:
    "Send audio or video on your send transport; the producer becomes the retained stage track stages/{s}/tracks/{producerId}, which the stage's members consume.",
  params: Type.Object(
    {
      transportId: MediaId,
      kind: MediaKind,
      rtpParameters: RtpParameters,
      paused: Type.Optional(Type.Boolean()),
    },
    { additionalProperties: false },
  ),
  result: Type.Object({ producerId: MediaId, kind: MediaKind }, { additionalProperties: false }),
})

export const mediaConsume = defineAction({
  name: 'media.consume',
  changesState: false,
  targets: { producerId: 'params.producerId', consumerId: 'result.consumerId' },
  description:
    "Receive another participant's producer of your stage on your recv transport. The consumer starts paused: resume it (media.resume) once your side is ready. Consuming a producer again replaces your earlier consumer of it.",
  params: Type.Object(
    { producerId: MediaId, rtpCapabilities: RtpCapabilities },
    { additionalProperties: false },
  ),
  result: Type.Object(
    {
      consumerId: MediaId,
      producerId: MediaId,
      kind: MediaKind,
      rtpParameters: RtpParameters,
      paused: Type.Boolean(),
      producerPaused: Type.Boolean(),
    },
    { additionalProperties: false },
  ),
})

/** Exactly one of the ids, of something the caller owns. */
const exactlyOne = { additionalProperties: false, minProperties: 1, maxProperties: 1 } as const
const producerOrConsumer = { producerId: Type.Optional(MediaId), consumerId: Type.Optional(MediaId) }
const PauseTarget = Type.Object(producerOrConsumer, exactlyOne)
const CloseTarget = Type.Object({ ...producerOrConsumer, transportId: Type.Optional(MediaId) }, exactlyOne)

export const mediaPause = defineAction({
  name: 'media.pause',
  changesState: true,
  targets: { producerId: 'params.producerId', consumerId: 'params.consumerId' },
  description:
    "Pause one of your producers or consumers. A paused producer's track (stages/{s}/tracks/{t}) says `paused`, so the others know nothing arrives on purpose.",
  params: PauseTarget,
  result: Empty,
})

export const mediaResume = defineAction({
  name: 'media.resume',
  changesState: true,
  targets: { producerId: 'params.producerId', consumerId: 'params.consumerId' },
  description:
    "Resume one of your producers or consumers; a resumed producer's track no longer says `paused`.",
  params: PauseTarget,
  result: Empty,
})

export const mediaClose = defineAction({
  name: 'media.close',
  changesState: true,
  targets: {
    producerId: 'params.producerId',
    consumerId: 'params.consumerId',
    transportId: 'params.transportId',
  },
  description:
    'Close one of your producers (its stage track goes), consumers, or transports (with everything on it).',
  params: CloseTarget,
  result: Type.Object({ closedProducers: ClosedProducers }, { additionalProperties: false }),
})

// ── native devices: SDP offer/answer (devices/router/sdp-bridge.ts does the translation) ──────────

const Sdp = Type.String({ minLength: 10, maxLength: 32768, description: 'an SDP (RFC 8866) document' })

export const mediaOffer = defineAction({
  name: 'media.offer',
  changesState: true,
  description:
    'Native devices: an SDP offer of the audio/video the device sends (BUNDLE, ICE, DTLS-SRTP, rtcp-mux; opus, VP8, H264). Creates (replaces) your send transport and a producer per m-line; each producer becomes a stage track. Returns the SDP answer.',
  params: Type.Object({ sdp: Sdp }, { additionalProperties: false }),
  result: Type.Object(
    {
      sdp: Sdp,
      producers: Type.Array(
        Type.Object({ producerId: MediaId, kind: MediaKind, mid: Word(32) }, { additionalProperties: false }),
      ),
      closedProducers: ClosedProducers,
    },
    { additionalProperties: false },
  ),
})

export const mediaReceive = defineAction({
  name: 'media.receive',
  changesState: false,
  description:
    "Native devices: an SDP offer of everything you should receive: a consumer of every other participant's producer in your stage, on your recv transport (created on first use). Call it again when stages/{s}/tracks/+ changes: the new offer keeps the earlier m-lines in order (gone ones rejected) and adds new ones. Answer it with media.answer.",
  params: Empty,
  result: Type.Object(
    {
      /** Absent while there is nothing to receive. */
      sdp: Type.Optional(Sdp),
      transportId: MediaId,
      consumers: Type.Array(
        Type.Object(
          { consumerId: MediaId, producerId: MediaId, kind: MediaKind, mid: Word(32) },
          { additionalProperties: false },
        ),
      ),
    },
    { additionalProperties: false },
  ),
})

export const mediaAnswer = defineAction({
  name: 'media.answer',
  changesState: false,
  description:
    'Native devices: your SDP answer to the latest media.receive offer. Connects the recv transport (first answer), resumes the consumers you accepted and closes the ones you rejected (port 0).',
  params: Type.Object({ sdp: Sdp }, { additionalProperties: false }),
  result: Type.Object(
    { resumed: Type.Array(MediaId), closed: Type.Array(MediaId) },
    { additionalProperties: false },
  ),
})

/** The media actions clients send and the hub forwards, by name. */
export const mediaActions = [
  mediaCapabilities,
  mediaCreateTransport,
  mediaConnectTransport,
  mediaProduce,
  mediaConsume,
  mediaPause,
  mediaResume,
  mediaClose,
  mediaOffer,
  mediaReceive,
  mediaAnswer,
] as const

export type MediaActionName = (typeof mediaActions)[number]['name']

// ── hub ↔ router ────────────────────────────────────────────────────────────────────────────────

/** Requests only the hub makes: a participant's client went away, or a member left the stage. */
export const hubSignals = {
  /** Close one participant (peer.clientId) with all it has. */
  peerClose: 'peer.close',
  /** Close every participant of the user (peer.userId) in the stage. */
  memberLeave: 'member.leave',
} as const

export const SignalAction = Type.Union([
  ...mediaActions.map((a) => Type.Literal(a.name)),
  Type.Literal(hubSignals.peerClose),
  Type.Literal(hubSignals.memberLeave),
])
export type SignalAction = Static<typeof SignalAction>

/** Who a signal is for, from the hub's checks of the caller's token and membership, never from params. */
export const SignalPeer = Type.Object(
  {
    /** The participant: the caller's MQTT client id (absent for member.leave). */
    clientId: Type.Optional(Id),
    userId: Id,
    /** The caller's membership in the stage (absent when it is gone, e.g. after stage.forget). */
    memberId: Type.Optional(Id),
  },
  { additionalProperties: false },
)
export type SignalPeer = Static<typeof SignalPeer>

/** `routers/{r}/signal` (published by the hub only, QoS 1, not retained; subscribed by router r only). */
export const SignalRequest = Type.Object(
  {
    id: RequestId,
    action: SignalAction,
    stageId: Id,
    peer: SignalPeer,
    /** The client's params, validated by the hub against the action's schema. */
    params: Type.Object({}, { additionalProperties: true }),
  },
  { additionalProperties: false, $id: 'SignalRequest' },
)
export type SignalRequest = Static<typeof SignalRequest>

/** `routers/{r}/signal/answers` (published by router r only, not retained): exactly one per signal. */
export const SignalAnswer = Type.Union(
  [
    Type.Object(
      { id: RequestId, ok: Type.Literal(true), result: Type.Unknown() },
      { additionalProperties: false },
    ),
    Type.Object(
      { id: RequestId, ok: Type.Literal(false), error: ErrorBody },
      { additionalProperties: false },
    ),
  ],
  { $id: 'SignalAnswer' },
)
export type SignalAnswer = Static<typeof SignalAnswer>

/** The result schema of each signal action, for the hub's check of what the router answered. */
export const signalResults: Readonly<Record<SignalAction, TSchema>> = {
  ...(Object.fromEntries(mediaActions.map((a): [string, TSchema] => [a.name, a.result])) as Record<
    MediaActionName,
    TSchema
  >),
  [hubSignals.peerClose]: Type.Object({ closedProducers: ClosedProducers }, { additionalProperties: false }),
  [hubSignals.memberLeave]: Type.Object(
    { closedProducers: ClosedProducers },
    { additionalProperties: false },
  ),
}

// ── the router agent's configuration file ───────────────────────────────────────────────────────

/** `router.json` for `devices/router/main.ts` (see devices/router/README.md). */
export const RouterAgentConfig = Type.Object(
  {
    hubUrl: Type.String({
      pattern: '^(mqtts?|wss?)://',
      description: 'the hub, e.g. mqtts://hub.example.org:8883',
    }),
    routerId: Id,
    token: Type.String({ minLength: 1, description: 'router token (role router, sub = routerId)' }),
    position: GeoPosition,
    capacity: Type.Object(
      {
        mediasoup: Type.Integer({ minimum: 0, maximum: 100000 }),
        ov: Type.Optional(Type.Integer({ minimum: 0, maximum: 100000 })),
      },
      { additionalProperties: false, description: 'stages served at most, per kind' },
    ),
    /** Where mediasoup listens for WebRTC (default 0.0.0.0; ICE candidates use announcedAddress when set). */
    listenIp: Type.Optional(Type.String({ minLength: 1 })),
    /** The public IPv4/IPv6 address or host name clients reach this machine at (behind NAT). */
    announcedAddress: Type.Optional(Type.String({ minLength: 1, maxLength: 253 })),
    /** The UDP/TCP ports of WebRTC transports (default 40000-49999). */
    rtcMinPort: Type.Optional(Type.Integer({ minimum: 1024, maximum: 65535 })),
    rtcMaxPort: Type.Optional(Type.Integer({ minimum: 1024, maximum: 65535 })),
    /** mediasoup workers (one per core by default). */
    workers: Type.Optional(Type.Integer({ minimum: 1, maximum: 256 })),
    /** Announced in presence and in router.served {media: {url}}: informational, signalling goes through the hub. */
    url: Type.Optional(Type.String({ minLength: 1, maxLength: 2000 })),
    /** The ov relay (ov-server) this router announces for ov stages; without it the router serves no ov. */
    ov: Type.Optional(
      Type.Object(
        {
          ipv4: OvRelay.properties.ipv4,
          ipv6: OvRelay.properties.ipv6,
          port: OvRelay.properties.port,
          /** A fixed PIN; without it each stage gets a random one, kept while this router serves it. */
          pin: Type.Optional(OvRelay.properties.pin),
        },
        { additionalProperties: false },
      ),
    ),
    /** How often load goes to routers/{r}/load (default 10 s). */
    loadIntervalSeconds: Type.Optional(Type.Number({ minimum: 0.05, maximum: 3600 })),
    /** MQTT keepalive (default 30 s; the hub declares the router lost after 1.5 times this). */
    keepaliveSeconds: Type.Optional(Type.Integer({ minimum: 5, maximum: 600 })),
    /** Where the presence session counter is kept (a JSON file); without it the session is time-based. */
    stateFile: Type.Optional(Type.String({ minLength: 1 })),
  },
  { additionalProperties: false, $id: 'RouterAgentConfig' },
)
export type RouterAgentConfig = Static<typeof RouterAgentConfig>

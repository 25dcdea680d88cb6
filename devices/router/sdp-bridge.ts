/**
 * Native SDP bridge: translates between the SDP offer/answer of a native device (anything that speaks
 * WebRTC's ICE + DTLS-SRTP but not mediasoup's ORTC-style signalling, e.g. a box with libwebrtc,
 * GStreamer webrtcbin, Pion or werift) and mediasoup's transport/producer/consumer parameters.
 * Plain functions over mediasoup objects and parameters; no MQTT, no state. Every refusal is an Error
 * whose message names the m-line and the problem, meant to go back to the device as the action's error.
 *
 * Send side (the device sends, mediasoup receives), i.e. the `media.offer` action:
 *
 *     const offer = parseSendOffer(sdp, router.rtpCapabilities) // throws on an unusable offer
 *     const transport = await router.createWebRtcTransport({ listenInfos })
 *     await transport.connect({ dtlsParameters: offer.dtlsParameters })
 *     const producers = []
 *     for (const { kind, rtpParameters } of offer.media) {
 *       producers.push(await transport.produce({ kind, rtpParameters }))
 *     }
 *     return { sdp: createSendAnswer({ offer, transport, producers }) }
 *
 * or, after creating the transport, in one call that closes its producers again if a step fails:
 *
 *     const { producers, answer } = await produceFromOffer({ sdp, router, transport })
 *
 * Receive side (mediasoup sends, the device receives): create a recv WebRtcTransport and a consumer per
 * producer the device should get, with rtpCapabilities `router.rtpCapabilities` or, better,
 * `rtpCapabilitiesFromSdp(deviceSendOffer, router.rtpCapabilities)` (what the device listed in its own
 * offer); video consumers are best created paused and resumed once the answer is in. Then
 *
 *     const sdp = createRecvOffer({ transport, consumers })              // to the device
 *     const answer = parseRecvAnswer(answerSdp)                           // the device's answer
 *     await transport.connect({ dtlsParameters: answer.dtlsParameters }) // first answer only
 *     // close the consumers whose mid is in answer.rejectedMids, resume the others
 *
 * Renegotiation (a member joins or leaves): call createRecvOffer again for the same transport with the
 * same `session.id` and a higher `session.version`, the consumers in the same order as before with new
 * ones appended, and gone ones kept in place with `closed: true` (an m-line can't be removed, only
 * rejected with port 0); don't connect the transport again.
 *
 * Plain RTP (no ICE/DTLS, e.g. ffmpeg's `-sdp_file` for an `rtp://` output): parsePlainRtpSdp() gives
 * rtpParameters for a PlainTransport producer and the address the sender writes to.
 *
 * What is chosen: per m-line the first codec of the offer that the router has (this project: opus, VP8,
 * H264 with the same packetization-mode and profile), answered alone, plus its RTX when the offer and
 * the router both have RTX (so audio never gets RTX). Header extensions and RTCP feedback are the
 * intersection of the offer and the router's capabilities. The stream is identified by a=ssrc (with
 * ssrc-group FID for RTX), by ssrc-group SIM or rid (a=rid + a=simulcast) for simulcast, or, with
 * neither, by the mid header extension. ICE: mediasoup is ICE-lite and learns the device's address from
 * its connectivity checks, so the device's candidates (in the offer or trickled later) are not needed;
 * the answer/offer carry mediasoup's candidates with a=end-of-candidates.
 * Not supported: data channels (m=application), FEC/RED (left out of the answer), RTCP without
 * rtcp-mux, m-lines that don't share one BUNDLE transport, recvonly/inactive m-lines in a send offer.
 */
import * as sdpTransform from 'sdp-transform'
import type { MediaAttributes, MediaDescription, SessionDescription } from 'sdp-transform'
import type { types } from 'mediasoup'

type MediaKind = types.MediaKind
type RtpParameters = types.RtpParameters
type RtpCodecParameters = types.RtpCodecParameters
type RtpEncodingParameters = types.RtpEncodingParameters
type RtpHeaderExtensionParameters = types.RtpHeaderExtensionParameters
type RtpCapabilities = types.RtpCapabilities
type RtpCodecCapability = types.RtpCodecCapability
type RtcpFeedback = types.RtcpFeedback
type DtlsParameters = types.DtlsParameters
type DtlsFingerprint = types.DtlsFingerprint
type IceParameters = types.IceParameters
type IceCandidate = types.IceCandidate

/** What the SDP needs from a WebRtcTransport; a `types.WebRtcTransport` or its serialized params fit. */
export type TransportSdpParams = {
  iceParameters: IceParameters
  iceCandidates: IceCandidate[]
  dtlsParameters: DtlsParameters
}

/** One m-line of a send offer that becomes a producer. */
export type SendMedia = { mid: string; kind: MediaKind; rtpParameters: RtpParameters }

/** An m-line of the offer in its original order, for writing the answer. */
type OfferMLine = {
  mid: string | undefined
  kind: string
  protocol: string
  payloads: string
  rejected: boolean
}

export type SendOffer = {
  /** The device's DTLS parameters, for `transport.connect()`. */
  dtlsParameters: DtlsParameters
  /** The device's ICE credentials (mediasoup is ICE-lite and doesn't need them; for logging/checks). */
  iceParameters?: { usernameFragment: string; password: string }
  /** The m-lines to produce, in offer order (m-lines the offerer itself rejected with port 0 are left out). */
  media: SendMedia[]
  /** The offer's `a=setup` (the answer takes the complement). */
  setup: 'actpass' | 'active' | 'passive'
  /** Every m-line of the offer, rejected ones included (an answer must mirror them all). */
  mlines: OfferMLine[]
}

/** What createSendAnswer needs of a producer; a mediasoup `types.Producer` fits. */
export type ProducerLike = { kind: MediaKind; rtpParameters: RtpParameters }

/** What createRecvOffer needs of a consumer; a mediasoup `types.Consumer` fits. */
export type ConsumerLike = {
  id: string
  kind: MediaKind
  rtpParameters: RtpParameters
  /** msid stream id: tracks with the same one are played in sync. Defaults to the RTCP cname. */
  streamId?: string
  /** Keeps the m-line of a consumer that has gone, rejected (port 0), in a renegotiation. */
  closed?: boolean
}

export type RecvAnswer = {
  /** The device's DTLS parameters, for `transport.connect()` (after the first answer only). */
  dtlsParameters: DtlsParameters
  iceParameters?: { usernameFragment: string; password: string }
  /** mids the device accepted and rejected (port 0); close the consumers of rejected ones. */
  acceptedMids: string[]
  rejectedMids: string[]
}

const MID_URI = 'urn:ietf:params:rtp-hdrext:sdes:mid'
const RID_URI = 'urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id'
const FINGERPRINT_ALGORITHMS = new Set(['sha-1', 'sha-224', 'sha-256', 'sha-384', 'sha-512'])

/** Parses an SDP offer listing the tracks a native device wants to send. Throws on what mediasoup can't take. */
export function parseSendOffer(sdp: string, routerRtpCapabilities: RtpCapabilities): SendOffer {
  const session = parseSdp(sdp, 'offer')
  if (session.media.length === 0) throw new Error('SDP offer has no m-lines: nothing to send')

  // bundle-only m-lines have port 0 but are live; other port 0 ones were rejected by the offerer.
  const live = (m: MediaDescription) => m.port !== 0 || m.bundleOnly !== undefined
  const mlines: OfferMLine[] = session.media.map((m) => ({
    mid: m.mid === undefined ? undefined : String(m.mid),
    kind: m.type,
    protocol: m.protocol,
    payloads: String(m.payloads ?? ''),
    rejected: !live(m),
  }))
  const active = session.media.map((m, index) => ({ m, index })).filter(({ m }) => live(m))
  if (active.length === 0) throw new Error('SDP offer has only rejected m-lines (port 0): nothing to send')

  const mids = new Set<string>()
  for (const { m, index } of active) {
    const where = describe(m, index)
    if (m.type !== 'audio' && m.type !== 'video') {
      throw new Error(`${where}: only audio and video can be sent through the router, not ${m.type}`)
    }
    if (!/^UDP\/TLS\/RTP\/SAVPF?$/i.test(m.protocol)) {
      throw new Error(
        `${where}: protocol ${m.protocol} is not DTLS-SRTP (UDP/TLS/RTP/SAVPF); ` +
          'plain RTP goes through a PlainTransport (parsePlainRtpSdp)',
      )
    }
    if (m.mid === undefined || String(m.mid) === '') throw new Error(`${where}: no a=mid`)
    const mid = String(m.mid)
    if (mids.has(mid)) throw new Error(`${where}: mid ${mid} is used twice`)
    mids.add(mid)
    const direction = m.direction ?? session.direction ?? 'sendrecv'
    if (direction !== 'sendonly' && direction !== 'sendrecv') {
      throw new Error(
        `${where}: direction ${direction}; the send offer lists the tracks the device sends ` +
          '(sendonly or sendrecv), what it receives comes in the receive offer',
      )
    }
    if (!m.rtcpMux) throw new Error(`${where}: no a=rtcp-mux (mediasoup needs RTP and RTCP on one port)`)
  }

  // Everything must run over one ICE/DTLS transport: mediasoup's WebRtcTransport.
  const bundle = (session.groups ?? []).find((g) => g.type.toUpperCase() === 'BUNDLE')
  const bundled = new Set(bundle ? String(bundle.mids).split(/\s+/).filter(Boolean) : [])
  if (active.length > 1) {
    const missing = [...mids].filter((mid) => !bundled.has(mid))
    if (!bundle) {
      throw new Error(`SDP offer is not BUNDLE-able: ${active.length} m-lines but no a=group:BUNDLE`)
    }
    if (missing.length > 0) {
      throw new Error(`SDP offer is not BUNDLE-able: mid ${missing.join(', ')} not in a=group:BUNDLE`)
    }
  }
  const fingerprints = new Set<string>()
  const ufrags = new Set<string>()
  let fingerprint: DtlsFingerprint | undefined
  let ice: { usernameFragment: string; password: string } | undefined
  let setup: SendOffer['setup'] | undefined
  for (const { m, index } of active) {
    const f = m.fingerprint ?? session.fingerprint
    if (!f) throw new Error(`${describe(m, index)}: no a=fingerprint (DTLS can't be authenticated)`)
    const algorithm = f.type.toLowerCase()
    if (!FINGERPRINT_ALGORITHMS.has(algorithm)) {
      throw new Error(`${describe(m, index)}: unsupported fingerprint algorithm ${f.type}`)
    }
    fingerprints.add(`${algorithm} ${f.hash.toUpperCase()}`)
    fingerprint ??= { algorithm: algorithm as DtlsFingerprint['algorithm'], value: f.hash.toUpperCase() }
    const ufrag = m.iceUfrag ?? session.iceUfrag
    const pwd = m.icePwd ?? session.icePwd
    if (ufrag !== undefined) ufrags.add(String(ufrag))
    if (ufrag !== undefined && pwd !== undefined)
      ice ??= { usernameFragment: String(ufrag), password: String(pwd) }
    const s = (m.setup ?? session.setup ?? 'active').toLowerCase()
    if (s !== 'actpass' && s !== 'active' && s !== 'passive') {
      throw new Error(`${describe(m, index)}: a=setup:${s} (expected actpass, active or passive)`)
    }
    if (setup !== undefined && s !== setup)
      throw new Error('SDP offer is not BUNDLE-able: a=setup differs between m-lines')
    setup = s
  }
  if (fingerprints.size > 1 || ufrags.size > 1) {
    throw new Error(
      'SDP offer is not BUNDLE-able: its m-lines have different ICE credentials or DTLS fingerprints',
    )
  }
  if (!fingerprint || !setup) throw new Error('SDP offer has no a=fingerprint')

  const media = active.map(({ m, index }) => ({
    mid: String(m.mid),
    kind: m.type as MediaKind,
    rtpParameters: offerRtpParameters(m, index, routerRtpCapabilities),
  }))

  return {
    // The device is DTLS client unless it insists on being the server (a=setup:passive).
    dtlsParameters: { role: setup === 'passive' ? 'server' : 'client', fingerprints: [fingerprint] },
    ...(ice ? { iceParameters: ice } : {}),
    media,
    setup,
    mlines,
  }
}

/** Writes the SDP answer to a send offer once the transport exists and the producers are created. */
export function createSendAnswer({
  offer,
  transport,
  producers,
}: {
  offer: SendOffer
  transport: TransportSdpParams
  producers: ProducerLike[]
}): string {
  const byMid = new Map<string, ProducerLike>()
  for (const producer of producers) {
    if (producer.rtpParameters.mid !== undefined) byMid.set(producer.rtpParameters.mid, producer)
  }
  const media: MediaDescription[] = []
  const bundleMids: string[] = []
  for (const line of offer.mlines) {
    if (line.rejected || line.mid === undefined || !offer.media.some((m) => m.mid === line.mid)) {
      media.push(rejectedMedia(line.kind, line.protocol, line.payloads, line.mid))
      continue
    }
    const producer = byMid.get(line.mid)
    if (!producer) throw new Error(`no producer for mid ${line.mid} of the offer`)
    const m = transportMedia(producer.kind, line.protocol, transport)
    m.mid = line.mid
    m.setup = offer.setup === 'passive' ? 'active' : 'passive'
    m.direction = 'recvonly'
    writeRtp(m, producer.rtpParameters)
    const encodings = producer.rtpParameters.encodings ?? []
    const rids = encodings.map((e) => e.rid).filter((rid): rid is string => rid !== undefined)
    if (rids.length > 0) {
      m.rids = rids.map((id) => ({ id, direction: 'recv' }))
      if (rids.length > 1) m.simulcast = { dir1: 'recv', list1: rids.join(';') }
    }
    media.push(m)
    bundleMids.push(line.mid)
  }
  return writeSession(media, bundleMids, { id: Date.now(), version: 1 })
}

/**
 * Parses a send offer, creates a producer per m-line on `transport` (connecting it with the offer's DTLS
 * parameters unless `connect: false`) and writes the answer. Producers created before a failure are closed.
 */
export async function produceFromOffer({
  sdp,
  router,
  transport,
  connect = true,
}: {
  sdp: string
  router: { rtpCapabilities: RtpCapabilities }
  transport: TransportSdpParams & Pick<types.WebRtcTransport, 'connect' | 'produce'>
  connect?: boolean
}): Promise<{ offer: SendOffer; producers: types.Producer[]; answer: string }> {
  const offer = parseSendOffer(sdp, router.rtpCapabilities)
  const producers: types.Producer[] = []
  try {
    for (const { kind, rtpParameters } of offer.media)
      producers.push(await transport.produce({ kind, rtpParameters }))
    if (connect) await transport.connect({ dtlsParameters: offer.dtlsParameters })
  } catch (err) {
    for (const producer of producers) producer.close()
    throw err
  }
  return { offer, producers, answer: createSendAnswer({ offer, transport, producers }) }
}

/** Writes an SDP offer with a sendonly m-line per consumer, for the device to answer. */
export function createRecvOffer({
  transport,
  consumers,
  session = { id: Date.now(), version: 1 },
}: {
  transport: TransportSdpParams
  consumers: ConsumerLike[]
  /** o= line: keep `id` and raise `version` when renegotiating with the same device. */
  session?: { id: number; version: number }
}): string {
  const media: MediaDescription[] = []
  const bundleMids: string[] = []
  const used = new Set(consumers.map((c) => c.rtpParameters.mid).filter((mid) => mid !== undefined))
  let next = 0
  for (const consumer of consumers) {
    let mid = consumer.rtpParameters.mid
    if (mid === undefined) {
      while (used.has(String(next))) next++
      mid = String(next)
      used.add(mid)
    }
    const protocol = 'UDP/TLS/RTP/SAVPF'
    if (consumer.closed) {
      const payloads = consumer.rtpParameters.codecs.map((c) => c.payloadType).join(' ')
      media.push(rejectedMedia(consumer.kind, protocol, payloads, mid))
      continue
    }
    const { rtpParameters } = consumer
    const m = transportMedia(consumer.kind, protocol, transport)
    m.mid = mid
    m.setup = 'actpass'
    m.direction = 'sendonly'
    writeRtp(m, rtpParameters)
    const cname = rtpParameters.rtcp?.cname ?? consumer.id
    const streamId = consumer.streamId ?? cname
    m.msid = [{ id: streamId, appdata: consumer.id }]
    const ssrcs: NonNullable<MediaAttributes['ssrcs']> = []
    const groups: NonNullable<MediaAttributes['ssrcGroups']> = []
    for (const encoding of rtpParameters.encodings ?? []) {
      if (encoding.ssrc === undefined) continue
      const streamSsrcs = [encoding.ssrc, ...(encoding.rtx ? [encoding.rtx.ssrc] : [])]
      if (encoding.rtx) groups.push({ semantics: 'FID', ssrcs: streamSsrcs.join(' ') })
      for (const ssrc of streamSsrcs) {
        ssrcs.push({ id: ssrc, attribute: 'cname', value: cname })
        ssrcs.push({ id: ssrc, attribute: 'msid', value: `${streamId} ${consumer.id}` })
      }
    }
    if (ssrcs.length > 0) m.ssrcs = ssrcs
    if (groups.length > 0) m.ssrcGroups = groups
    media.push(m)
    bundleMids.push(mid)
  }
  if (bundleMids.length === 0 && consumers.length === 0) throw new Error('no consumers: nothing to offer')
  return writeSession(media, bundleMids, session)
}

/** Parses the device's answer to a receive offer. */
export function parseRecvAnswer(sdp: string): RecvAnswer {
  const session = parseSdp(sdp, 'answer')
  const acceptedMids: string[] = []
  const rejectedMids: string[] = []
  let fingerprint: DtlsFingerprint | undefined
  let setup: string | undefined
  let ice: { usernameFragment: string; password: string } | undefined
  session.media.forEach((m, index) => {
    const mid = m.mid === undefined ? undefined : String(m.mid)
    if (mid === undefined) throw new Error(`${describe(m, index)}: no a=mid in the answer`)
    if (m.port === 0 && !m.bundleOnly) {
      rejectedMids.push(mid)
      return
    }
    acceptedMids.push(mid)
    const f = m.fingerprint ?? session.fingerprint
    if (f && !fingerprint) {
      const algorithm = f.type.toLowerCase()
      if (!FINGERPRINT_ALGORITHMS.has(algorithm)) {
        throw new Error(`${describe(m, index)}: unsupported fingerprint algorithm ${f.type}`)
      }
      fingerprint = { algorithm: algorithm as DtlsFingerprint['algorithm'], value: f.hash.toUpperCase() }
    }
    setup ??= m.setup ?? session.setup
    const ufrag = m.iceUfrag ?? session.iceUfrag
    const pwd = m.icePwd ?? session.icePwd
    if (ufrag !== undefined && pwd !== undefined)
      ice ??= { usernameFragment: String(ufrag), password: String(pwd) }
  })
  if (acceptedMids.length === 0) throw new Error('SDP answer rejects every m-line')
  if (!fingerprint) throw new Error("SDP answer has no a=fingerprint (DTLS can't be authenticated)")
  // We offered actpass; `active` (or a non-conforming actpass) makes the device the DTLS client.
  const s = (setup ?? 'active').toLowerCase()
  if (s !== 'active' && s !== 'passive' && s !== 'actpass') throw new Error(`SDP answer has a=setup:${s}`)
  return {
    dtlsParameters: { role: s === 'passive' ? 'server' : 'client', fingerprints: [fingerprint] },
    ...(ice ? { iceParameters: ice } : {}),
    acceptedMids,
    rejectedMids,
  }
}

/**
 * Parses the SDP of a plain RTP sender (RTP/AVP, e.g. ffmpeg's `-sdp_file`) into rtpParameters for a
 * PlainTransport producer. ffmpeg writes no a=ssrc: pass the ssrc it was told to use (`-ssrc N`) in
 * `ssrcs` (one per m-line, in order), since mediasoup tells streams apart by ssrc on a PlainTransport.
 */
export function parsePlainRtpSdp(
  sdp: string,
  routerRtpCapabilities: RtpCapabilities,
  { ssrcs = [] }: { ssrcs?: (number | undefined)[] } = {},
): {
  media: {
    kind: MediaKind
    destination: { ip: string; port: number; rtcpPort?: number }
    rtpParameters: RtpParameters
  }[]
} {
  const session = parseSdp(sdp, 'SDP')
  const media = session.media
    .map((m, index) => ({ m, index }))
    .filter(({ m }) => m.port !== 0)
    .map(({ m, index }) => {
      const where = describe(m, index)
      if (m.type !== 'audio' && m.type !== 'video') throw new Error(`${where}: not audio or video`)
      if (!/^RTP\/AVPF?$/i.test(m.protocol)) {
        throw new Error(`${where}: protocol ${m.protocol} is not plain RTP (RTP/AVP); use parseSendOffer`)
      }
      const ip = m.connection?.ip ?? session.connection?.ip
      if (ip === undefined) throw new Error(`${where}: no c= line`)
      const rtpParameters = offerRtpParameters(m, index, routerRtpCapabilities, { requireStreamId: false })
      const ssrc = ssrcs[index] ?? rtpParameters.encodings?.[0]?.ssrc
      if (ssrc === undefined) {
        throw new Error(`${where}: no a=ssrc; pass the sender's ssrc (ffmpeg: -ssrc N) in options.ssrcs`)
      }
      if (rtpParameters.encodings?.[0]?.ssrc === undefined) rtpParameters.encodings = [{ ssrc }]
      return {
        kind: m.type as MediaKind,
        destination: {
          ip: ip.split('/')[0] ?? ip,
          port: m.port,
          ...(m.rtcp ? { rtcpPort: m.rtcp.port } : m.rtcpMux ? {} : { rtcpPort: m.port + 1 }),
        },
        rtpParameters,
      }
    })
  if (media.length === 0) throw new Error('SDP has no usable m-lines')
  return { media }
}

/**
 * RTP capabilities of a device, read from its SDP (the codecs and header extensions it offers), for
 * creating its consumers: `transport.consume({ producerId, rtpCapabilities })`. Only codecs the router
 * also has are kept, with the router's preferred payload types, as mediasoup requires.
 */
export function rtpCapabilitiesFromSdp(sdp: string, routerRtpCapabilities: RtpCapabilities): RtpCapabilities {
  const session = parseSdp(sdp, 'SDP')
  const codecs: RtpCodecCapability[] = []
  const headerExtensions: NonNullable<RtpCapabilities['headerExtensions']> = []
  for (const m of session.media) {
    if (m.type !== 'audio' && m.type !== 'video') continue
    for (const codec of sdpCodecs(m)) {
      const cap = (routerRtpCapabilities.codecs ?? []).find((c) => !isRtx(c) && matchCodec(codec, c))
      if (cap && !codecs.includes(cap)) {
        codecs.push(cap)
        const rtx = (routerRtpCapabilities.codecs ?? []).find(
          (c) => isRtx(c) && c.parameters?.['apt'] === cap.preferredPayloadType,
        )
        if (rtx && sdpCodecs(m).some((c) => isRtx(c) && c.parameters?.['apt'] === codec.payloadType))
          codecs.push(rtx)
      }
    }
    for (const ext of m.ext ?? []) {
      const cap = (routerRtpCapabilities.headerExtensions ?? []).find(
        (h) => h.kind === m.type && h.uri === ext.uri,
      )
      if (cap && !headerExtensions.includes(cap)) headerExtensions.push(cap)
    }
  }
  return { codecs, headerExtensions }
}

// ---------------------------------------------------------------------------------------------------

function parseSdp(sdp: string, what: string): SessionDescription {
  if (typeof sdp !== 'string' || !/^v=0/m.test(sdp)) throw new Error(`not an SDP ${what} (no v=0 line)`)
  return sdpTransform.parse(sdp)
}

function describe(m: MediaDescription, index: number): string {
  return `m-line ${index} (${m.type}${m.mid === undefined ? '' : `, mid ${m.mid}`})`
}

function isRtx(codec: { mimeType: string }): boolean {
  return /\/rtx$/i.test(codec.mimeType)
}

/** Codecs of an m-line in the offer's order, with fmtp parameters and RTCP feedback. */
function sdpCodecs(m: MediaDescription): RtpCodecParameters[] {
  const order = sdpTransform.parsePayloads(String(m.payloads ?? ''))
  const codecs: RtpCodecParameters[] = []
  for (const pt of order) {
    const rtp = m.rtp.find((r) => r.payload === pt)
    if (!rtp) continue
    const mimeType = `${m.type}/${rtp.codec}`
    const parameters: Record<string, string | number> = {}
    for (const fmtp of m.fmtp.filter((f) => f.payload === pt)) {
      Object.assign(parameters, sdpTransform.parseParams(fmtp.config))
    }
    // sdp-transform turns digit-only values into numbers; profile-level-id is hex and stays a string.
    if (parameters['profile-level-id'] !== undefined) {
      parameters['profile-level-id'] = String(parameters['profile-level-id'])
    }
    const rtcpFeedback: RtcpFeedback[] = (m.rtcpFb ?? [])
      .filter((fb) => fb.payload === pt || String(fb.payload) === String(pt) || fb.payload === '*')
      .map((fb) => (fb.subtype ? { type: fb.type, parameter: fb.subtype } : { type: fb.type }))
    let channels: number | undefined
    if (m.type === 'audio') channels = rtp.encoding ?? (rtp.codec.toLowerCase() === 'opus' ? 2 : 1)
    codecs.push({
      mimeType,
      payloadType: pt,
      clockRate: rtp.rate ?? 90000,
      ...(channels === undefined ? {} : { channels }),
      parameters,
      rtcpFeedback,
    })
  }
  return codecs
}

/** Whether a codec of the SDP is one the router has (mediasoup's strict matching, H264 profiles included). */
function matchCodec(codec: RtpCodecParameters, cap: RtpCodecCapability): boolean {
  const mimeType = codec.mimeType.toLowerCase()
  if (mimeType !== cap.mimeType.toLowerCase() || codec.clockRate !== cap.clockRate) return false
  if (cap.kind === 'audio' && (codec.channels ?? 1) !== (cap.channels ?? 1)) return false
  if (mimeType === 'video/h264') {
    const a = codec.parameters ?? {}
    const b = cap.parameters ?? {}
    if (Number(a['packetization-mode'] ?? 0) !== Number(b['packetization-mode'] ?? 0)) return false
    const profile = h264Profile(a['profile-level-id'])
    if (profile === undefined || profile !== h264Profile(b['profile-level-id'])) return false
  }
  if (mimeType === 'video/vp9') {
    if (Number(codec.parameters?.['profile-id'] ?? 0) !== Number(cap.parameters?.['profile-id'] ?? 0))
      return false
  }
  return true
}

// RFC 6184 section 8.1, as mediasoup's h264-profile-level-id matches them ('.': any bit of profile-iop).
const H264_PROFILES: [number, string, string][] = [
  [0x42, '.1..0000', 'constrained-baseline'],
  [0x4d, '1...0000', 'constrained-baseline'],
  [0x58, '11..0000', 'constrained-baseline'],
  [0x42, '.0..0000', 'baseline'],
  [0x58, '10..0000', 'baseline'],
  [0x4d, '0.0.0000', 'main'],
  [0x64, '00000000', 'high'],
  [0x64, '00001100', 'constrained-high'],
  [0xf4, '00000000', 'predictive-high-444'],
]

function h264Profile(profileLevelId: unknown): string | undefined {
  // RFC 6184's and libwebrtc's default
  const id =
    profileLevelId === undefined
      ? '42e01f'
      : typeof profileLevelId === 'number'
        ? String(profileLevelId)
        : profileLevelId
  if (typeof id !== 'string' || !/^[0-9a-f]{6}$/i.test(id)) return undefined
  const idc = parseInt(id.slice(0, 2), 16)
  const iop = parseInt(id.slice(2, 4), 16)
  for (const [profileIdc, pattern, profile] of H264_PROFILES) {
    if (profileIdc !== idc) continue
    const matches = [...pattern].every((bit, i) => bit === '.' || ((iop >> (7 - i)) & 1) === Number(bit))
    if (matches) return profile
  }
  return undefined
}

function sameFeedback(a: RtcpFeedback, b: RtcpFeedback): boolean {
  return a.type === b.type && (a.parameter ?? '') === (b.parameter ?? '')
}

/** The producer's rtpParameters for one m-line of an offer. */
function offerRtpParameters(
  m: MediaDescription,
  index: number,
  caps: RtpCapabilities,
  { requireStreamId = true }: { requireStreamId?: boolean } = {},
): RtpParameters {
  const where = describe(m, index)
  const kind = m.type as MediaKind
  const offered = sdpCodecs(m)
  let chosen: RtpCodecParameters | undefined
  let cap: RtpCodecCapability | undefined
  for (const codec of offered) {
    if (isRtx(codec)) continue
    cap = (caps.codecs ?? []).find((c) => c.kind === kind && !isRtx(c) && matchCodec(codec, c))
    if (cap) {
      chosen = codec
      break
    }
  }
  if (!chosen || !cap) {
    const names = offered.map((c) => `${c.mimeType.split('/')[1]}/${c.clockRate}`).join(', ') || 'none'
    const supported = (caps.codecs ?? []).filter((c) => c.kind === kind && !isRtx(c)).map((c) => c.mimeType)
    throw new Error(
      `${where}: no supported codec (offered ${names}; the router takes ${supported.join(', ') || 'no ' + kind})`,
    )
  }
  const capFeedback = cap.rtcpFeedback ?? []
  const media: RtpCodecParameters = {
    ...chosen,
    rtcpFeedback: (chosen.rtcpFeedback ?? []).filter((fb) => capFeedback.some((c) => sameFeedback(c, fb))),
  }
  const codecs: RtpCodecParameters[] = [media]
  const capRtx = (caps.codecs ?? []).find(
    (c) => isRtx(c) && c.parameters?.['apt'] === cap.preferredPayloadType,
  )
  const rtx = offered.find((c) => isRtx(c) && Number(c.parameters?.['apt']) === chosen.payloadType)
  if (rtx && capRtx) codecs.push({ ...rtx, parameters: { apt: chosen.payloadType }, rtcpFeedback: [] })

  const headerExtensions: RtpHeaderExtensionParameters[] = []
  for (const ext of m.ext ?? []) {
    if (ext.direction === 'recvonly' || ext.direction === 'inactive') continue
    const supported = (caps.headerExtensions ?? []).some(
      (h) =>
        h.kind === kind &&
        h.uri === ext.uri &&
        (h.direction ?? 'sendrecv') !== 'sendonly' &&
        h.direction !== 'inactive',
    )
    if (supported)
      headerExtensions.push({ uri: ext.uri as RtpHeaderExtensionParameters['uri'], id: ext.value })
  }

  const encodings = offerEncodings(m, where)
  const rtxSsrcs = encodings.some((e) => e.rtx)
  if (!codecs.some(isRtx) && rtxSsrcs) for (const e of encodings) delete e.rtx
  const hasRid = encodings.some((e) => e.rid !== undefined)
  if (hasRid && !headerExtensions.some((h) => h.uri === RID_URI)) {
    throw new Error(`${where}: rid simulcast without the ${RID_URI} header extension`)
  }
  if (requireStreamId && encodings.length === 0 && !headerExtensions.some((h) => h.uri === MID_URI)) {
    throw new Error(
      `${where}: no a=ssrc, no rid and no mid header extension: mediasoup can't find its RTP stream`,
    )
  }
  // The cname of the (first) media ssrc, else any the m-line has.
  const ssrcLines = m.ssrcs ?? []
  const cname = (
    ssrcLines.find((s) => s.attribute === 'cname' && Number(s.id) === encodings[0]?.ssrc) ??
    ssrcLines.find((s) => s.attribute === 'cname')
  )?.value
  return {
    ...(m.mid === undefined ? {} : { mid: String(m.mid) }),
    codecs,
    headerExtensions,
    encodings: encodings.length > 0 ? encodings : [{}],
    rtcp: {
      ...(cname === undefined ? {} : { cname: String(cname) }),
      reducedSize: m.rtcpRsize !== undefined,
    },
  }
}

function offerEncodings(m: MediaDescription, where: string): RtpEncodingParameters[] {
  // rid-based simulcast (a=rid:x send + a=simulcast:send x;y;z) or a single rid.
  const sendRids = (m.rids ?? []).filter((r) => r.direction === 'send').map((r) => String(r.id))
  if (sendRids.length > 0) {
    let order = sendRids
    const sim = m.simulcast
    const list = sim?.dir1 === 'send' ? sim.list1 : sim?.dir2 === 'send' ? sim.list2 : undefined
    if (list) {
      order = sdpTransform
        .parseSimulcastStreamList(list)
        .map((alternatives) => String(alternatives[0]?.scid ?? ''))
        .filter((rid) => sendRids.includes(rid))
    }
    return order.map((rid) => ({ rid }))
  }
  const groups = m.ssrcGroups ?? []
  const ids = [...new Set((m.ssrcs ?? []).map((s) => Number(s.id)))]
  const fid = new Map<number, number>()
  const secondary = new Set<number>()
  for (const group of groups) {
    const [primary, repair] = group.ssrcs.split(/\s+/).map(Number)
    if (primary === undefined || repair === undefined) continue
    if (group.semantics.toUpperCase() === 'FID') fid.set(primary, repair)
    if (group.semantics.toUpperCase() === 'FID' || /^FEC/i.test(group.semantics)) secondary.add(repair)
  }
  const sim = groups.find((g) => g.semantics.toUpperCase() === 'SIM')
  const primaries = sim
    ? sim.ssrcs.split(/\s+/).map(Number)
    : ids.filter((id) => !secondary.has(id)).slice(0, 1)
  if (primaries.some((id) => !Number.isInteger(id) || id < 0 || id > 0xffffffff)) {
    throw new Error(`${where}: bad ssrc in ${sim ? 'a=ssrc-group:SIM' : 'a=ssrc'}`)
  }
  return primaries.map((ssrc) => {
    const rtx = fid.get(ssrc)
    return rtx === undefined ? { ssrc } : { ssrc, rtx: { ssrc: rtx } }
  })
}

/** rtpmap/fmtp/rtcp-fb/extmap/rtcp-rsize of an m-line from rtpParameters. */
function writeRtp(m: MediaDescription, rtpParameters: RtpParameters): void {
  m.payloads = rtpParameters.codecs.map((c) => c.payloadType).join(' ')
  m.rtp = rtpParameters.codecs.map((c) => ({
    payload: c.payloadType,
    codec: c.mimeType.split('/')[1] ?? c.mimeType,
    rate: c.clockRate,
    ...(c.channels !== undefined && c.channels > 1 ? { encoding: c.channels } : {}),
  }))
  m.fmtp = rtpParameters.codecs
    .filter((c) => Object.keys(c.parameters ?? {}).length > 0)
    .map((c) => ({
      payload: c.payloadType,
      config: Object.entries(c.parameters ?? {})
        .map(([k, v]) => `${k}=${String(v)}`)
        .join(';'),
    }))
  const fb = rtpParameters.codecs.flatMap((c) =>
    (c.rtcpFeedback ?? []).map((f) => ({
      payload: c.payloadType,
      type: f.type,
      ...(f.parameter ? { subtype: f.parameter } : {}),
    })),
  )
  if (fb.length > 0) m.rtcpFb = fb
  const ext = (rtpParameters.headerExtensions ?? []).map((h) => ({ value: h.id, uri: h.uri }))
  if (ext.length > 0) m.ext = ext
  m.rtcpMux = 'rtcp-mux'
  if (rtpParameters.rtcp?.reducedSize) m.rtcpRsize = 'rtcp-rsize'
}

/** An m-line with mediasoup's ICE-lite candidates and DTLS fingerprint, ready for RTP attributes. */
function transportMedia(kind: string, protocol: string, transport: TransportSdpParams): MediaDescription {
  const candidates = transport.iceCandidates
  const preferred = candidates.find((c) => c.protocol === 'udp') ?? candidates[0]
  if (!preferred) throw new Error('the transport has no ICE candidates')
  const address = candidateAddress(preferred)
  const fingerprint =
    transport.dtlsParameters.fingerprints.find((f) => f.algorithm === 'sha-256') ??
    transport.dtlsParameters.fingerprints.at(-1)
  if (!fingerprint) throw new Error('the transport has no DTLS fingerprint')
  return {
    type: kind,
    port: preferred.port,
    protocol,
    payloads: '',
    connection: { version: address.includes(':') ? 6 : 4, ip: address },
    rtp: [],
    fmtp: [],
    iceUfrag: transport.iceParameters.usernameFragment,
    icePwd: transport.iceParameters.password,
    fingerprint: { type: fingerprint.algorithm, hash: fingerprint.value.toUpperCase() },
    candidates: candidates.map((c) => ({
      foundation: c.foundation,
      component: 1,
      transport: c.protocol,
      priority: c.priority,
      ip: candidateAddress(c),
      port: c.port,
      type: c.type,
      ...(c.tcpType ? { tcptype: c.tcpType } : {}),
    })),
    endOfCandidates: 'end-of-candidates',
  }
}

function candidateAddress(candidate: IceCandidate): string {
  // mediasoup 3.19 fills `address`; `ip` is its deprecated alias.
  return candidate.address ?? candidate.ip
}

function rejectedMedia(
  kind: string,
  protocol: string,
  payloads: string,
  mid: string | undefined,
): MediaDescription {
  const pts = sdpTransform.parsePayloads(payloads)
  return {
    type: kind,
    port: 0,
    protocol,
    payloads: pts.length > 0 ? pts.join(' ') : '0',
    connection: { version: 4, ip: '0.0.0.0' },
    rtp: [],
    fmtp: [],
    ...(mid === undefined ? {} : { mid }),
    direction: 'inactive',
  }
}

function writeSession(
  media: MediaDescription[],
  bundleMids: string[],
  { id, version }: { id: number; version: number },
): string {
  const session: SessionDescription = {
    version: 0,
    origin: {
      username: 'stagehub',
      sessionId: id,
      sessionVersion: version,
      netType: 'IN',
      ipVer: 4,
      address: '0.0.0.0',
    },
    name: '-',
    timing: { start: 0, stop: 0 },
    icelite: 'ice-lite',
    ...(bundleMids.length > 0 ? { groups: [{ type: 'BUNDLE', mids: bundleMids.join(' ') }] } : {}),
    msidSemantic: { semantic: 'WMS', token: '*' },
    media,
  }
  return sdpTransform.write(session)
}

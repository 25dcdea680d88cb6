import { MediaStreamTrack, RTCPeerConnection, RTCRtpCodecParameters, RtpHeader, RtpPacket } from 'werift'

/**
 * Real WebRTC peers (werift) for tests, signalled through the hub's media.* actions. mediasoup is
 * ICE-lite and never sends an SDP: what the hub returns (ICE parameters and candidates, DTLS
 * fingerprints, the consumer's RTP parameters) is written into SDP here, as mediasoup-client does in
 * a browser.
 */

export interface TransportInfo {
  transportId: string
  iceParameters: { usernameFragment: string; password: string }
  iceCandidates: { foundation: string; priority: number; address: string; protocol: string; port: number }[]
  dtlsParameters: { fingerprints: { algorithm: string; value: string }[] }
}

export interface ConsumerInfo {
  consumerId: string
  producerId: string
  kind: string
  rtpParameters: {
    mid?: string
    codecs: { mimeType: string; payloadType: number; clockRate: number; channels?: number }[]
    encodings?: { ssrc?: number }[]
    rtcp?: { cname?: string }
  }
}

export const OPUS = { mimeType: 'audio/opus', clockRate: 48000, channels: 2 } as const
const SEND_PT = 111

/** What a receiver tells the router it can decode (media.consume's rtpCapabilities). */
export const OPUS_CAPABILITIES = {
  codecs: [{ kind: 'audio' as const, ...OPUS, preferredPayloadType: 100 }],
  headerExtensions: [],
}

function transportLines(transport: TransportInfo, setup: 'passive' | 'actpass'): string[] {
  const fingerprint = transport.dtlsParameters.fingerprints.find((f) => f.algorithm === 'sha-256')
  if (!fingerprint) throw new Error('the router offers no sha-256 fingerprint')
  return [
    'c=IN IP4 127.0.0.1',
    `a=ice-ufrag:${transport.iceParameters.usernameFragment}`,
    `a=ice-pwd:${transport.iceParameters.password}`,
    `a=fingerprint:sha-256 ${fingerprint.value}`,
    `a=setup:${setup}`,
    // werift speaks ICE over UDP only
    ...transport.iceCandidates
      .filter((c) => c.protocol === 'udp')
      .map((c) => `a=candidate:${c.foundation} 1 udp ${c.priority} ${c.address} ${c.port} typ host`),
    'a=end-of-candidates',
    'a=rtcp-mux',
  ]
}

const header = (mid: string) => [
  'v=0',
  'o=mediasoup 1 1 IN IP4 127.0.0.1',
  's=-',
  't=0 0',
  'a=ice-lite',
  `a=group:BUNDLE ${mid}`,
  'a=msid-semantic: WMS *',
]

function field(sdp: string, pattern: RegExp, what: string): string {
  const value = pattern.exec(sdp)?.[1]
  if (value === undefined) throw new Error(`no ${what} in werift's SDP`)
  return value
}

/** The DTLS parameters of werift's side: its role from a=setup (active: it is the DTLS client). */
function clientDtls(sdp: string) {
  const setup = /a=setup:(\w+)/.exec(sdp)?.[1]
  return {
    role: setup === 'passive' ? ('server' as const) : ('client' as const),
    fingerprints: [
      { algorithm: 'sha-256' as const, value: field(sdp, /a=fingerprint:sha-256 (\S+)/, 'fingerprint') },
    ],
  }
}

function connected(pc: RTCPeerConnection, ms = 15_000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (pc.connectionState === 'connected') return resolve()
    const timer = setTimeout(
      () => reject(new Error(`werift not connected after ${ms} ms (${pc.connectionState})`)),
      ms,
    )
    pc.connectionStateChange.subscribe((state) => {
      if (state === 'connected') {
        clearTimeout(timer)
        resolve()
      } else if (state === 'failed') {
        clearTimeout(timer)
        reject(new Error('werift connection failed'))
      }
    })
  })
}

/** A sender of opus: make an offer, then hand it the router's transport. */
export async function opusSender() {
  const pc = new RTCPeerConnection({
    codecs: { audio: [new RTCRtpCodecParameters({ ...OPUS, payloadType: SEND_PT })], video: [] },
  })
  const track = new MediaStreamTrack({ kind: 'audio' })
  pc.addTransceiver(track, { direction: 'sendonly' })
  await pc.setLocalDescription(await pc.createOffer())
  const offer = pc.localDescription?.sdp ?? ''
  const mid = field(offer, /a=mid:(\S+)/, 'mid')
  const ssrc = Number(field(offer, /a=ssrc:(\d+)/, 'ssrc'))
  let timer: NodeJS.Timeout | undefined
  let sent = 0
  return {
    pc,
    dtlsParameters: clientDtls(offer),
    /** media.produce's rtpParameters for this offer. */
    rtpParameters: { mid, codecs: [{ ...OPUS, payloadType: SEND_PT }], encodings: [{ ssrc }] },
    /** Gives werift the router's side (an SDP answer) and waits for ICE + DTLS. */
    async connect(transport: TransportInfo) {
      const answer = [
        ...header(mid),
        `m=audio 7 UDP/TLS/RTP/SAVPF ${SEND_PT}`,
        `a=mid:${mid}`,
        ...transportLines(transport, 'passive'),
        'a=recvonly',
        `a=rtpmap:${SEND_PT} opus/48000/2`,
        '',
      ].join('\r\n')
      await pc.setRemoteDescription({ type: 'answer', sdp: answer })
      await connected(pc)
    },
    /** Sends 20 ms opus packets (opaque bytes: mediasoup does not decode) until stopped. */
    startSending() {
      timer = setInterval(() => {
        const h = new RtpHeader({
          payloadType: SEND_PT,
          sequenceNumber: sent & 0xffff,
          timestamp: sent * 960,
          ssrc,
        })
        track.writeRtp(new RtpPacket(h, Buffer.alloc(60, 0xab)))
        sent++
      }, 20)
    },
    get sent() {
      return sent
    },
    close() {
      clearInterval(timer)
      void pc.close() // at a test's end: a failure to close surfaces as an unhandled rejection
    },
  }
}

/** A receiver of one consumer: the router's offer goes to werift, whose answer gives its DTLS side. */
export async function opusReceiver(transport: TransportInfo, consumer: ConsumerInfo) {
  const codec = consumer.rtpParameters.codecs[0]!
  const mid = consumer.rtpParameters.mid ?? '0'
  const ssrc = consumer.rtpParameters.encodings?.[0]?.ssrc
  const pc = new RTCPeerConnection({
    codecs: { audio: [new RTCRtpCodecParameters({ ...OPUS, payloadType: codec.payloadType })], video: [] },
  })
  let received = 0
  pc.onTrack.subscribe((track) => {
    track.onReceiveRtp.subscribe(() => received++)
  })
  const offer = [
    ...header(mid),
    `m=audio 7 UDP/TLS/RTP/SAVPF ${codec.payloadType}`,
    `a=mid:${mid}`,
    ...transportLines(transport, 'actpass'),
    'a=sendonly',
    `a=rtpmap:${codec.payloadType} opus/48000/2`,
    ...(ssrc !== undefined
      ? [`a=ssrc:${ssrc} cname:${consumer.rtpParameters.rtcp?.cname ?? 'stagehub'}`]
      : []),
    '',
  ].join('\r\n')
  await pc.setRemoteDescription({ type: 'offer', sdp: offer })
  await pc.setLocalDescription(await pc.createAnswer())
  const answer = pc.localDescription?.sdp ?? ''
  return {
    pc,
    dtlsParameters: clientDtls(answer),
    connected: () => connected(pc),
    get received() {
      return received
    },
    close() {
      void pc.close() // at a test's end: a failure to close surfaces as an unhandled rejection
    },
  }
}

import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import type { types } from 'mediasoup'
import * as sdpTransform from 'sdp-transform'
import {
  MediaStreamTrack,
  RTCPeerConnection,
  RTCRtpCodecParameters,
  RtpHeader,
  RtpPacket,
  useAbsSendTime,
  useAudioLevelIndication,
  useOPUS,
  useSdesMid,
  useTransportWideCC,
  useVP8,
} from 'werift'
import {
  createRecvOffer,
  createSendAnswer,
  parsePlainRtpSdp,
  parseRecvAnswer,
  parseSendOffer,
  produceFromOffer,
  rtpCapabilitiesFromSdp,
} from '../../../devices/router/sdp-bridge.ts'
import { createWorkers } from '../../../devices/router/worker.ts'
import { mediasoupMissing, mediasoupTest } from '../../helpers/mediasoup.ts'

/** These tests start mediasoup workers: skipped where mediasoup is not installed. */
const msTest = mediasoupTest(t)

const MEDIA_CODECS: types.RouterRtpCodecCapability[] = [
  { kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 },
  { kind: 'video', mimeType: 'video/VP8', clockRate: 90000 },
  {
    kind: 'video',
    mimeType: 'video/H264',
    clockRate: 90000,
    parameters: { 'packetization-mode': 1, 'profile-level-id': '42e01f', 'level-asymmetry-allowed': 1 },
  },
]
const LISTEN: types.WebRtcTransportOptions = { listenInfos: [{ protocol: 'udp', ip: '127.0.0.1' }] }
const OPUS_PT = 111
const VP8_PT = 96
const AUDIO_PACKETS = 50
const VIDEO_PACKETS = 30
// A VP8 payload descriptor (S=1, partition 0) and a key-frame header: mediasoup forwards video to a new
// consumer only from a key frame on, and reads these bytes to tell.
const VP8_KEY_FRAME = Buffer.from([
  0x10,
  0x50,
  0x02,
  0x00,
  0x9d,
  0x01,
  0x2a,
  0x40,
  0x01,
  0xf0,
  0x00,
  ...Array<number>(40).fill(0),
])

/**
 * A werift peer configured like a native device: opus, VP8 with RTX, the usual header extensions.
 * werift quirks: with its default bundlePolicy it gathers an ICE transport per m-line and `close()` leaves
 * the unused one's UDP sockets open (the test process never exits), hence max-bundle; its offers write
 * the opus codec as `OPUS/48000/2` and carry no a=msid (both fine for the bridge).
 */
function weriftPeer(): RTCPeerConnection {
  return new RTCPeerConnection({
    bundlePolicy: 'max-bundle',
    codecs: {
      audio: [useOPUS({ payloadType: OPUS_PT })],
      video: [
        useVP8({ payloadType: VP8_PT }),
        new RTCRtpCodecParameters({
          mimeType: 'video/rtx',
          clockRate: 90000,
          payloadType: 97,
          parameters: 'apt=96',
        }),
      ],
    },
    headerExtensions: {
      audio: [useSdesMid(), useAudioLevelIndication()],
      video: [useSdesMid(), useAbsSendTime(), useTransportWideCC()],
    },
  })
}

async function until(what: string, ready: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await ready())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

async function inboundPackets(producer: types.Producer): Promise<number> {
  const stats = await producer.getStats()
  return stats.filter((s) => s.type === 'inbound-rtp').reduce((sum, s) => sum + s.packetCount, 0)
}

let worker: types.Worker
let router: types.Router

t.before(async () => {
  if (mediasoupMissing) return
  const [w] = await createWorkers(1, { logLevel: 'warn' })
  if (!w) throw new Error('createWorkers(1) returned no worker')
  worker = w
  router = await worker.createRouter({ mediaCodecs: MEDIA_CODECS })
})
t.teardown(() => worker?.close())

msTest(
  'werift sends opus + VP8 through the send bridge; a second werift receives them through the recv bridge',
  async (t) => {
    // --- send side: the device's offer -> producers -> answer
    const sender = weriftPeer()
    t.teardown(() => sender.close())
    const audioTrack = new MediaStreamTrack({ kind: 'audio' })
    const videoTrack = new MediaStreamTrack({ kind: 'video' })
    sender.addTransceiver(audioTrack, { direction: 'sendonly' })
    sender.addTransceiver(videoTrack, { direction: 'sendonly' })
    await sender.setLocalDescription(await sender.createOffer())
    const offerSdp = sender.localDescription?.sdp ?? ''

    const offer = parseSendOffer(offerSdp, router.rtpCapabilities)
    t.equal(offer.setup, 'actpass')
    t.same(offer.dtlsParameters.role, 'client', 'the device is DTLS client for an actpass offer')
    t.match(offer.dtlsParameters.fingerprints[0], { algorithm: 'sha-256', value: /^[0-9A-F:]+$/ })
    t.match(offer.iceParameters, { usernameFragment: String, password: String })
    t.same(
      offer.media.map((m) => [m.mid, m.kind]),
      [
        ['0', 'audio'],
        ['1', 'video'],
      ],
    )
    const [audio, video] = offer.media
    t.match(audio?.rtpParameters, {
      mid: '0',
      codecs: [{ mimeType: 'audio/OPUS', payloadType: OPUS_PT, clockRate: 48000, channels: 2 }],
      encodings: [{ ssrc: Number }],
      rtcp: { cname: String },
    })
    t.same(
      audio?.rtpParameters.headerExtensions?.map((h) => h.uri),
      ['urn:ietf:params:rtp-hdrext:sdes:mid', 'urn:ietf:params:rtp-hdrext:ssrc-audio-level'],
    )
    t.match(video?.rtpParameters, {
      codecs: [
        { mimeType: 'video/VP8', payloadType: VP8_PT },
        { mimeType: 'video/rtx', payloadType: 97, parameters: { apt: VP8_PT } },
      ],
      encodings: [{ ssrc: Number, rtx: { ssrc: Number } }],
    })
    t.same(
      video?.rtpParameters.codecs[0]?.rtcpFeedback,
      [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'goog-remb' }],
      'RTCP feedback is what both sides support',
    )
    t.same(
      video?.rtpParameters.headerExtensions?.map((h) => h.id),
      [3, 4, 5],
      'mid, abs-send-time, transport-cc',
    )

    const sendTransport = await router.createWebRtcTransport(LISTEN)
    t.teardown(() => sendTransport.close())
    await sendTransport.connect({ dtlsParameters: offer.dtlsParameters })
    const producers: types.Producer[] = []
    for (const { kind, rtpParameters } of offer.media)
      producers.push(await sendTransport.produce({ kind, rtpParameters }))
    const [audioProducer, videoProducer] = producers
    if (!audioProducer || !videoProducer) throw new Error('no producers')
    const answerSdp = createSendAnswer({ offer, transport: sendTransport, producers })
    const answer = sdpTransform.parse(answerSdp)
    t.equal(answer.icelite, 'ice-lite')
    t.same(answer.groups, [{ type: 'BUNDLE', mids: '0 1' }])
    t.same(
      answer.media.map((m) => [m.mid, m.direction, m.setup, m.payloads]),
      [
        ['0', 'recvonly', 'passive', String(OPUS_PT)],
        ['1', 'recvonly', 'passive', `${VP8_PT} 97`],
      ],
    )
    t.equal(answer.media[0]?.candidates?.[0]?.port, sendTransport.iceCandidates[0]?.port)
    await sender.setRemoteDescription({ type: 'answer', sdp: answerSdp })

    // --- receive side: consumers -> recv offer -> the device's answer -> connect
    const receiver = weriftPeer()
    t.teardown(() => receiver.close())
    const received = { audio: 0, video: 0 }
    receiver.onTrack.subscribe((track) => {
      const kind = track.kind
      if (kind !== 'audio' && kind !== 'video') return
      track.onReceiveRtp.subscribe(() => {
        received[kind]++
      })
    })
    const recvTransport = await router.createWebRtcTransport(LISTEN)
    t.teardown(() => recvTransport.close())
    // Both werift peers share a configuration, so the sender's offer tells what the receiver decodes too.
    const rtpCapabilities = rtpCapabilitiesFromSdp(offerSdp, router.rtpCapabilities)
    t.same(
      rtpCapabilities.codecs?.map((c) => c.mimeType),
      ['audio/opus', 'video/VP8', 'video/rtx'],
      'device capabilities from its SDP',
    )
    const consumers: types.Consumer[] = []
    for (const producer of producers) {
      consumers.push(await recvTransport.consume({ producerId: producer.id, rtpCapabilities }))
    }
    const recvOfferSdp = createRecvOffer({ transport: recvTransport, consumers })
    const recvOffer = sdpTransform.parse(recvOfferSdp)
    t.same(
      recvOffer.media.map((m) => [m.mid, m.direction, m.setup]),
      consumers.map((c) => [c.rtpParameters.mid, 'sendonly', 'actpass']),
    )
    t.match(recvOffer.media[1]?.ssrcGroups, [{ semantics: 'FID' }], 'video consumer has its RTX ssrc')
    await receiver.setRemoteDescription({ type: 'offer', sdp: recvOfferSdp })
    await receiver.setLocalDescription(await receiver.createAnswer())
    const recvAnswer = parseRecvAnswer(receiver.localDescription?.sdp ?? '')
    t.same(recvAnswer.acceptedMids, ['0', '1'])
    t.same(recvAnswer.rejectedMids, [])
    await recvTransport.connect({ dtlsParameters: recvAnswer.dtlsParameters })

    await until('both transports DTLS-connected', () => {
      if (worker.died) throw new Error('mediasoup-worker died')
      return sendTransport.dtlsState === 'connected' && recvTransport.dtlsState === 'connected'
    })
    await until('werift receiver connected', () => receiver.connectionState === 'connected')

    for (let i = 0; i < AUDIO_PACKETS; i++) {
      const header = new RtpHeader({ payloadType: OPUS_PT, sequenceNumber: i, timestamp: i * 960 })
      audioTrack.writeRtp(new RtpPacket(header, Buffer.alloc(60, 0xab)))
      if (i < VIDEO_PACKETS) {
        const vh = new RtpHeader({
          payloadType: VP8_PT,
          sequenceNumber: i,
          timestamp: i * 3000,
          marker: true,
        })
        videoTrack.writeRtp(new RtpPacket(vh, VP8_KEY_FRAME))
      }
      await sleep(20)
    }
    await until('packets at the producers and the receiver', async () => {
      const [a, v] = [await inboundPackets(audioProducer), await inboundPackets(videoProducer)]
      return a >= AUDIO_PACKETS * 0.9 && v >= VIDEO_PACKETS * 0.9 && received.audio >= AUDIO_PACKETS * 0.8
    }).catch(() => undefined)
    const audioIn = await inboundPackets(audioProducer)
    const videoIn = await inboundPackets(videoProducer)
    t.ok(
      audioIn >= AUDIO_PACKETS * 0.9,
      `opus producer got ${audioIn}/${AUDIO_PACKETS} SRTP packets from werift`,
    )
    t.ok(
      videoIn >= VIDEO_PACKETS * 0.9,
      `VP8 producer got ${videoIn}/${VIDEO_PACKETS} SRTP packets from werift`,
    )
    t.ok(
      received.audio >= AUDIO_PACKETS * 0.8,
      `werift receiver got ${received.audio}/${AUDIO_PACKETS} opus packets`,
    )
    t.ok(
      received.video >= VIDEO_PACKETS * 0.8,
      `werift receiver got ${received.video}/${VIDEO_PACKETS} VP8 packets`,
    )
    t.equal(worker.died, false, 'the worker is still alive')
  },
)

msTest('an offer without a=ssrc works through the mid header extension', async (t) => {
  const sender = weriftPeer()
  t.teardown(() => sender.close())
  const track = new MediaStreamTrack({ kind: 'audio' })
  sender.addTransceiver(track, { direction: 'sendonly' })
  await sender.setLocalDescription(await sender.createOffer())
  // Some native stacks don't signal their ssrc; mediasoup then maps the stream by its mid extension.
  const sdp = (sender.localDescription?.sdp ?? '')
    .split('\r\n')
    .filter((line) => !line.startsWith('a=ssrc'))
    .join('\r\n')
  const transport = await router.createWebRtcTransport(LISTEN)
  t.teardown(() => transport.close())
  const { offer, producers, answer } = await produceFromOffer({ sdp, router, transport })
  t.same(offer.media[0]?.rtpParameters.encodings, [{}])
  const [producer] = producers
  if (!producer) throw new Error('no producer')
  await sender.setRemoteDescription({ type: 'answer', sdp: answer })
  await until('DTLS', () => transport.dtlsState === 'connected')
  for (let i = 0; i < AUDIO_PACKETS; i++) {
    const header = new RtpHeader({ payloadType: OPUS_PT, sequenceNumber: i, timestamp: i * 960 })
    track.writeRtp(new RtpPacket(header, Buffer.alloc(60, 0xab)))
    await sleep(20)
  }
  await until('packets', async () => (await inboundPackets(producer)) >= AUDIO_PACKETS * 0.9).catch(
    () => undefined,
  )
  const count = await inboundPackets(producer)
  t.ok(count >= AUDIO_PACKETS * 0.9, `producer got ${count}/${AUDIO_PACKETS} packets matched by mid`)
})

/** A libwebrtc-style offer (Chrome's layout), varied per test. */
function nativeOffer({
  audio = [
    'a=rtpmap:111 opus/48000/2',
    'a=rtcp-fb:111 transport-cc',
    'a=fmtp:111 minptime=10;useinbandfec=1',
  ],
  audioPayloads = '111',
  video = [
    'a=rtpmap:96 VP8/90000',
    'a=rtcp-fb:96 goog-remb',
    'a=rtcp-fb:96 transport-cc',
    'a=rtcp-fb:96 ccm fir',
    'a=rtcp-fb:96 nack',
    'a=rtcp-fb:96 nack pli',
    'a=rtpmap:97 rtx/90000',
    'a=fmtp:97 apt=96',
  ],
  videoPayloads = '96 97',
  videoStreams = ['a=ssrc-group:FID 2001 2002', 'a=ssrc:2001 cname:dev', 'a=ssrc:2002 cname:dev'],
  audioSsrc = 1001,
  bundle = 'a=group:BUNDLE 0 1',
  fingerprint = 'a=fingerprint:sha-256 ' + Array(32).fill('AB').join(':'),
  videoUfrag = 'abcd',
  setup = 'actpass',
  withVideo = true,
}: {
  audio?: string[]
  audioPayloads?: string
  video?: string[]
  videoPayloads?: string
  videoStreams?: string[]
  audioSsrc?: number
  bundle?: string
  fingerprint?: string
  videoUfrag?: string
  setup?: string
  withVideo?: boolean
} = {}): string {
  const transport = (ufrag: string) => [
    'c=IN IP4 0.0.0.0',
    'a=rtcp:9 IN IP4 0.0.0.0',
    `a=ice-ufrag:${ufrag}`,
    'a=ice-pwd:aaaaaaaaaaaaaaaaaaaaaaaa',
    'a=ice-options:trickle',
    ...(fingerprint ? [fingerprint] : []),
    `a=setup:${setup}`,
  ]
  const lines = [
    'v=0',
    'o=- 4611731400430051336 2 IN IP4 127.0.0.1',
    's=-',
    't=0 0',
    ...(bundle ? [bundle] : []),
    'a=msid-semantic: WMS dev',
    `m=audio 9 UDP/TLS/RTP/SAVPF ${audioPayloads}`,
    ...transport('abcd'),
    'a=mid:0',
    'a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level',
    'a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01',
    'a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid',
    'a=extmap:9 urn:example:unknown',
    'a=sendonly',
    'a=msid:dev track-a',
    'a=rtcp-mux',
    ...audio,
    `a=ssrc:${audioSsrc} cname:dev`,
  ]
  if (withVideo) {
    lines.push(
      `m=video 9 UDP/TLS/RTP/SAVPF ${videoPayloads}`,
      ...transport(videoUfrag),
      'a=mid:1',
      'a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time',
      'a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01',
      'a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid',
      'a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id',
      'a=sendonly',
      'a=msid:dev track-v',
      'a=rtcp-mux',
      'a=rtcp-rsize',
      ...video,
      ...videoStreams,
    )
  }
  return lines.join('\r\n') + '\r\n'
}

msTest('a libwebrtc-style offer: codec choice, RTX, extensions, simulcast', async (t) => {
  const caps = router.rtpCapabilities
  const offer = parseSendOffer(
    nativeOffer({
      audio: [
        'a=rtpmap:63 red/48000/2',
        'a=fmtp:63 111/111',
        'a=rtpmap:111 opus/48000/2',
        'a=rtcp-fb:111 transport-cc',
        'a=fmtp:111 minptime=10;useinbandfec=1',
        'a=rtpmap:9 G722/8000',
        'a=rtpmap:0 PCMU/8000',
      ],
      audioPayloads: '63 111 9 0',
      video: [
        'a=rtpmap:98 VP9/90000',
        'a=fmtp:98 profile-id=0',
        'a=rtpmap:100 H264/90000',
        'a=fmtp:100 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640c1f',
        'a=rtpmap:102 H264/90000',
        'a=rtcp-fb:102 nack',
        'a=rtcp-fb:102 nack pli',
        'a=rtcp-fb:102 transport-cc',
        'a=rtcp-fb:102 rrtr',
        'a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f',
        'a=rtpmap:103 rtx/90000',
        'a=fmtp:103 apt=102',
      ],
      videoPayloads: '98 100 102 103',
    }),
    caps,
  )
  const [audio, video] = offer.media
  t.match(audio?.rtpParameters.codecs, [
    { mimeType: 'audio/opus', payloadType: 111, channels: 2, parameters: { minptime: 10, useinbandfec: 1 } },
  ])
  t.equal(audio?.rtpParameters.codecs.length, 1, 'RED, G722 and PCMU are left out')
  t.same(audio?.rtpParameters.codecs[0]?.rtcpFeedback, [{ type: 'transport-cc' }])
  t.same(
    audio?.rtpParameters.headerExtensions,
    [
      { uri: 'urn:ietf:params:rtp-hdrext:ssrc-audio-level', id: 1 },
      { uri: 'http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01', id: 3 },
      { uri: 'urn:ietf:params:rtp-hdrext:sdes:mid', id: 4 },
    ],
    'unknown extensions are left out',
  )
  t.same(audio?.rtpParameters.encodings, [{ ssrc: 1001 }])
  t.same(audio?.rtpParameters.rtcp, { cname: 'dev', reducedSize: false })
  t.same(
    video?.rtpParameters.codecs.map((c) => [c.mimeType, c.payloadType]),
    [
      ['video/H264', 102],
      ['video/rtx', 103],
    ],
    'VP9 (not in the router) and H264 High (other profile) are skipped, constrained baseline is taken',
  )
  t.match(video?.rtpParameters.codecs[0]?.parameters, {
    'profile-level-id': '42e01f',
    'packetization-mode': 1,
  })
  t.same(
    video?.rtpParameters.codecs[0]?.rtcpFeedback,
    [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'transport-cc' }],
    'rrtr is not something the router does',
  )
  t.same(video?.rtpParameters.encodings, [{ ssrc: 2001, rtx: { ssrc: 2002 } }])
  t.equal(video?.rtpParameters.rtcp?.reducedSize, true)

  // Real producers and answer, through the one-call helper; no peer connects (the fingerprint is made up).
  const transport = await router.createWebRtcTransport(LISTEN)
  t.teardown(() => transport.close())
  const result = await produceFromOffer({ sdp: nativeOffer(), router, transport })
  t.equal(result.producers.length, 2)
  t.same(
    result.producers.map((p) => [p.kind, p.rtpParameters.mid]),
    [
      ['audio', '0'],
      ['video', '1'],
    ],
  )
  const answer = sdpTransform.parse(result.answer)
  t.match(answer.media[1], {
    mid: '1',
    direction: 'recvonly',
    setup: 'passive',
    payloads: '96 97',
    rtcpRsize: 'rtcp-rsize',
    fmtp: [{ payload: 97, config: 'apt=96' }],
    fingerprint: { type: 'sha-256' },
    iceUfrag: transport.iceParameters.usernameFragment,
  })
  t.same(
    answer.media[1]?.rtcpFb?.map((fb) => `${fb.type} ${fb.subtype ?? ''}`.trim()),
    ['goog-remb', 'transport-cc', 'ccm fir', 'nack', 'nack pli'],
  )

  // A failing produce() closes the producers created before it.
  const transport2 = await router.createWebRtcTransport(LISTEN)
  t.teardown(() => transport2.close())
  const clash = nativeOffer({ videoStreams: ['a=ssrc:1001 cname:dev'] }) // video reuses the audio ssrc
  await t.rejects(produceFromOffer({ sdp: clash, router, transport: transport2 }))
  t.same((await transport2.dump()).producerIds, [], 'no producer left behind')

  // ssrc-group SIM simulcast: one encoding per SIM ssrc, each with its FID RTX.
  const sim = parseSendOffer(
    nativeOffer({
      videoStreams: [
        'a=ssrc-group:SIM 2001 2003 2005',
        'a=ssrc-group:FID 2001 2002',
        'a=ssrc-group:FID 2003 2004',
        'a=ssrc-group:FID 2005 2006',
        ...[2001, 2002, 2003, 2004, 2005, 2006].map((ssrc) => `a=ssrc:${ssrc} cname:dev`),
      ],
    }),
    caps,
  )
  t.same(sim.media[1]?.rtpParameters.encodings, [
    { ssrc: 2001, rtx: { ssrc: 2002 } },
    { ssrc: 2003, rtx: { ssrc: 2004 } },
    { ssrc: 2005, rtx: { ssrc: 2006 } },
  ])

  // rid simulcast: encodings by rid, answered with a=rid recv + a=simulcast:recv.
  const ridOffer = parseSendOffer(
    nativeOffer({ videoStreams: ['a=rid:q send', 'a=rid:h send', 'a=rid:f send', 'a=simulcast:send q;h;f'] }),
    caps,
  )
  t.same(ridOffer.media[1]?.rtpParameters.encodings, [{ rid: 'q' }, { rid: 'h' }, { rid: 'f' }])
  const transport3 = await router.createWebRtcTransport(LISTEN)
  t.teardown(() => transport3.close())
  const ridProducers: types.Producer[] = []
  for (const { kind, rtpParameters } of ridOffer.media) {
    ridProducers.push(await transport3.produce({ kind, rtpParameters }))
  }
  const ridAnswer = sdpTransform.parse(
    createSendAnswer({ offer: ridOffer, transport: transport3, producers: ridProducers }),
  )
  t.same(ridAnswer.media[1]?.rids, [
    { id: 'q', direction: 'recv' },
    { id: 'h', direction: 'recv' },
    { id: 'f', direction: 'recv' },
  ])
  t.match(ridAnswer.media[1]?.simulcast, { dir1: 'recv', list1: 'q;h;f' })

  // Offered a=setup:passive: the device is DTLS server, the answer says active.
  const passive = parseSendOffer(nativeOffer({ setup: 'passive' }), caps)
  t.equal(passive.dtlsParameters.role, 'server')
  const passiveAnswer = createSendAnswer({
    offer: passive,
    transport,
    producers: passive.media.map((m) => ({ kind: m.kind, rtpParameters: m.rtpParameters })),
  })
  t.match(passiveAnswer, /a=setup:active/)
})

msTest('refusals name the problem', async (t) => {
  const caps = router.rtpCapabilities
  t.throws(
    () =>
      parseSendOffer(
        nativeOffer({
          audio: ['a=rtpmap:0 PCMU/8000', 'a=rtpmap:9 G722/8000'],
          audioPayloads: '0 9',
          withVideo: false,
          bundle: '',
        }),
        caps,
      ),
    {
      message:
        /m-line 0 \(audio, mid 0\): no supported codec \(offered PCMU\/8000, G722\/8000; the router takes audio\/opus\)/,
    },
  )
  t.throws(
    () =>
      parseSendOffer(
        nativeOffer({
          video: ['a=rtpmap:100 H264/90000', 'a=fmtp:100 packetization-mode=1;profile-level-id=640c1f'],
          videoPayloads: '100',
        }),
        caps,
      ),
    { message: /m-line 1 \(video, mid 1\): no supported codec \(offered H264\/90000/ },
  )
  t.throws(() => parseSendOffer(nativeOffer({ fingerprint: '' }), caps), {
    message: /no a=fingerprint/,
  })
  t.throws(() => parseSendOffer(nativeOffer({ bundle: '' }), caps), {
    message: /not BUNDLE-able: 2 m-lines but no a=group:BUNDLE/,
  })
  t.throws(() => parseSendOffer(nativeOffer({ bundle: 'a=group:BUNDLE 0' }), caps), {
    message: /not BUNDLE-able: mid 1 not in a=group:BUNDLE/,
  })
  t.throws(() => parseSendOffer(nativeOffer({ videoUfrag: 'other' }), caps), {
    message: /not BUNDLE-able: .*different ICE credentials/,
  })
  t.throws(() => parseSendOffer(nativeOffer().replace('a=sendonly', 'a=recvonly'), caps), {
    message: /m-line 0 \(audio, mid 0\): direction recvonly/,
  })
  t.throws(() => parseSendOffer(nativeOffer().replaceAll('a=rtcp-mux\r\n', ''), caps), {
    message: /no a=rtcp-mux/,
  })
  t.throws(
    () =>
      parseSendOffer(
        nativeOffer({ bundle: 'a=group:BUNDLE 0 1 2' }) +
          'm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\n',
        caps,
      ),
    { message: /m-line 2 \(application, mid 2\): only audio and video/ },
  )
  const ffmpegSdp =
    'v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n' +
    'm=audio 40000 RTP/AVP 100\r\na=rtpmap:100 opus/48000/2\r\n'
  t.throws(() => parseSendOffer(ffmpegSdp, caps), { message: /RTP\/AVP is not DTLS-SRTP/ })
  t.throws(() => parseSendOffer('hello', caps), { message: /not an SDP offer/ })
  t.throws(() => parsePlainRtpSdp(ffmpegSdp, caps), { message: /no a=ssrc; pass the sender's ssrc/ })
})

msTest('recv offer: renegotiation keeps closed m-lines; answers are parsed', async (t) => {
  const transport = await router.createWebRtcTransport(LISTEN)
  t.teardown(() => transport.close())
  const consumer = (id: string, kind: types.MediaKind, mid: string | undefined, ssrc: number) => ({
    id,
    kind,
    rtpParameters: {
      ...(mid === undefined ? {} : { mid }),
      codecs: [
        kind === 'audio'
          ? {
              mimeType: 'audio/opus',
              payloadType: 100,
              clockRate: 48000,
              channels: 2,
              parameters: { useinbandfec: 1 },
            }
          : { mimeType: 'video/VP8', payloadType: 101, clockRate: 90000 },
      ],
      encodings: [{ ssrc }],
      rtcp: { cname: `cname-${id}`, reducedSize: true },
    },
  })
  const first = sdpTransform.parse(
    createRecvOffer({
      transport,
      consumers: [consumer('a', 'audio', '0', 11), consumer('b', 'video', undefined, 22)],
      session: { id: 42, version: 1 },
    }),
  )
  t.same(
    first.media.map((m) => m.mid),
    ['0', '1'],
    'a missing mid is generated without clashing',
  )
  t.match(first.media[0], {
    port: transport.iceCandidates[0]?.port,
    msid: [{ id: 'cname-a', appdata: 'a' }],
    rtp: [{ payload: 100, codec: 'opus', rate: 48000, encoding: 2 }],
    fmtp: [{ payload: 100, config: 'useinbandfec=1' }],
    rtcpRsize: 'rtcp-rsize',
  })
  t.same(first.media[0]?.ssrcs, [
    { id: 11, attribute: 'cname', value: 'cname-a' },
    { id: 11, attribute: 'msid', value: 'cname-a a' },
  ])
  const second = sdpTransform.parse(
    createRecvOffer({
      transport,
      consumers: [
        { ...consumer('a', 'audio', '0', 11), closed: true },
        consumer('b', 'video', '1', 22),
        consumer('c', 'audio', '2', 33),
      ],
      session: { id: 42, version: 2 },
    }),
  )
  t.match(second.origin, { sessionId: 42, sessionVersion: 2 })
  t.same(
    second.media.map((m) => [m.mid, m.port === 0, m.direction]),
    [
      ['0', true, 'inactive'],
      ['1', false, 'sendonly'],
      ['2', false, 'sendonly'],
    ],
  )
  t.same(second.groups, [{ type: 'BUNDLE', mids: '1 2' }], 'the closed m-line leaves the BUNDLE group')

  const answer = (setup: string, fingerprint = true) =>
    [
      'v=0',
      'o=- 1 1 IN IP4 0.0.0.0',
      's=-',
      't=0 0',
      'a=group:BUNDLE 1',
      'm=audio 0 UDP/TLS/RTP/SAVPF 100',
      'a=mid:0',
      'm=video 9 UDP/TLS/RTP/SAVPF 101',
      'c=IN IP4 0.0.0.0',
      'a=mid:1',
      'a=ice-ufrag:u1',
      'a=ice-pwd:p1p1p1p1p1p1p1p1p1p1p1p1',
      ...(fingerprint ? ['a=fingerprint:sha-256 ' + Array(32).fill('cd').join(':')] : []),
      `a=setup:${setup}`,
      'a=recvonly',
      'a=rtpmap:101 VP8/90000',
      '',
    ].join('\r\n')
  const parsed = parseRecvAnswer(answer('passive'))
  t.same(parsed, {
    dtlsParameters: {
      role: 'server',
      fingerprints: [{ algorithm: 'sha-256', value: Array(32).fill('CD').join(':') }],
    },
    iceParameters: { usernameFragment: 'u1', password: 'p1p1p1p1p1p1p1p1p1p1p1p1' },
    acceptedMids: ['1'],
    rejectedMids: ['0'],
  })
  t.equal(parseRecvAnswer(answer('active')).dtlsParameters.role, 'client')
  t.throws(() => parseRecvAnswer(answer('active', false)), { message: /no a=fingerprint/ })
})

msTest("ffmpeg's own SDP (-sdp_file) gives PlainTransport producers that receive its RTP", async (t) => {
  const plain = { protocol: 'udp', ip: '127.0.0.1' } as const
  const audioIn = await router.createPlainTransport({ listenInfo: plain, rtcpMux: false, comedia: true })
  const videoIn = await router.createPlainTransport({ listenInfo: plain, rtcpMux: false, comedia: true })
  t.teardown(() => {
    audioIn.close()
    videoIn.close()
  })
  const dir = await mkdtemp(join(tmpdir(), 'sdp-bridge-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const sdpFile = join(dir, 'ffmpeg.sdp')
  const target = (tr: types.PlainTransport) =>
    `rtp://127.0.0.1:${tr.tuple.localPort}?rtcpport=${tr.rtcpTuple?.localPort ?? tr.tuple.localPort + 1}`
  // ffmpeg writes no a=ssrc into its SDP; `-ssrc` fixes the ones it sends with.
  const ffmpeg = spawn(
    'ffmpeg',
    [
      ...['-hide_banner', '-loglevel', 'error', '-re'],
      ...['-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000'],
      ...['-f', 'lavfi', '-i', 'testsrc=size=160x120:rate=15'],
      ...['-t', '20'],
      ...[
        '-map',
        '0:a',
        '-c:a',
        'libopus',
        '-ssrc',
        '1111',
        '-payload_type',
        '100',
        '-f',
        'rtp',
        target(audioIn),
      ],
      ...['-map', '1:v', '-c:v', 'libvpx', '-deadline', 'realtime', '-b:v', '200k'],
      ...['-ssrc', '2222', '-payload_type', '101', '-f', 'rtp', target(videoIn)],
      ...['-sdp_file', sdpFile],
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  )
  let ffmpegErrors = ''
  ffmpeg.stderr.on('data', (chunk: Buffer) => (ffmpegErrors += chunk.toString()))
  t.teardown(() => {
    ffmpeg.kill('SIGKILL')
  })
  let sdp = ''
  await until(
    'ffmpeg to write its SDP',
    async () => {
      if (ffmpeg.exitCode !== null) throw new Error(`ffmpeg exited ${ffmpeg.exitCode}: ${ffmpegErrors}`)
      sdp = await readFile(sdpFile, 'utf8').catch(() => '')
      return /m=video/.test(sdp)
    },
    15_000,
  )
  const { media } = parsePlainRtpSdp(sdp, router.rtpCapabilities, { ssrcs: [1111, 2222] })
  t.same(
    media.map((m) => [m.kind, m.destination.port, m.rtpParameters.codecs.map((c) => c.mimeType)]),
    [
      ['audio', audioIn.tuple.localPort, ['audio/opus']],
      ['video', videoIn.tuple.localPort, ['video/VP8']],
    ],
    'the m-lines name the transport each stream goes to',
  )
  t.same(media[0]?.rtpParameters.encodings, [{ ssrc: 1111 }])
  const transports = [audioIn, videoIn]
  const producers: types.Producer[] = []
  for (const m of media) {
    const transport = transports.find((tr) => tr.tuple.localPort === m.destination.port)
    if (!transport) throw new Error(`no PlainTransport on port ${m.destination.port}`)
    producers.push(await transport.produce({ kind: m.kind, rtpParameters: m.rtpParameters }))
  }
  const [audio, video] = producers
  if (!audio || !video) throw new Error('no producers')
  await until(
    'RTP from ffmpeg',
    async () => (await inboundPackets(audio)) >= 25 && (await inboundPackets(video)) >= 10,
  )
  const counts = [await inboundPackets(audio), await inboundPackets(video)]
  t.ok(counts[0]! >= 25, `opus producer got ${counts[0]} packets from ffmpeg`)
  t.ok(counts[1]! >= 10, `VP8 producer got ${counts[1]} packets from ffmpeg`)
})

import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import type { types } from 'mediasoup'
import { MediaStreamTrack, RTCPeerConnection, RTCRtpCodecParameters, RtpHeader, RtpPacket } from 'werift'
import { createWorkers } from '../../../devices/router/worker.ts'
import { mediasoupTest } from '../../helpers/mediasoup.ts'

/** These tests start mediasoup workers: skipped where mediasoup is not installed. */
const msTest = mediasoupTest(t)

const OPUS = { mimeType: 'audio/opus', clockRate: 48000, channels: 2 } as const
const PAYLOAD_TYPE = 111
const PACKETS = 50

/** Resolves when `ready()` holds, rejects if the worker dies first or after `ms`. */
function until(
  worker: types.Worker,
  emitter: { on(event: string, listener: () => void): unknown },
  event: string,
  ready: () => boolean,
  what: string,
  ms = 15_000,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms)
    const check = () => {
      if (!ready()) return
      clearTimeout(timer)
      resolve()
    }
    worker.on('died', (err) => {
      clearTimeout(timer)
      reject(new Error(`mediasoup-worker died while waiting for ${what}: ${err.message}`))
    })
    emitter.on(event, check)
    check()
  })
}

/** mediasoup is ICE-lite and the DTLS server; the answer carries its ICE credentials and fingerprint. */
function answerSdp(transport: types.WebRtcTransport, mid: string): string {
  const { usernameFragment, password } = transport.iceParameters
  const fingerprint = transport.dtlsParameters.fingerprints.find((f) => f.algorithm === 'sha-256')
  if (!fingerprint) throw new Error('mediasoup offers no sha-256 fingerprint')
  const candidates = transport.iceCandidates.map(
    (c) => `a=candidate:${c.foundation} 1 ${c.protocol} ${c.priority} ${c.address} ${c.port} typ host`,
  )
  return [
    'v=0',
    'o=mediasoup 1 1 IN IP4 127.0.0.1',
    's=-',
    't=0 0',
    'a=ice-lite',
    `a=group:BUNDLE ${mid}`,
    `m=audio 7 UDP/TLS/RTP/SAVPF ${PAYLOAD_TYPE}`,
    'c=IN IP4 127.0.0.1',
    `a=mid:${mid}`,
    `a=ice-ufrag:${usernameFragment}`,
    `a=ice-pwd:${password}`,
    `a=fingerprint:sha-256 ${fingerprint.value}`,
    'a=setup:passive',
    ...candidates,
    'a=end-of-candidates',
    'a=recvonly',
    'a=rtcp-mux',
    `a=rtpmap:${PAYLOAD_TYPE} opus/48000/2`,
    '',
  ].join('\r\n')
}

function offerField(sdp: string, pattern: RegExp, what: string): string {
  const value = pattern.exec(sdp)?.[1]
  if (value === undefined) throw new Error(`no ${what} in werift's offer`)
  return value
}

msTest('a WebRTC peer (werift) sends opus over ICE + DTLS + SRTP to a mediasoup producer', async (t) => {
  const [worker] = await createWorkers(1, { logLevel: 'warn', logTags: ['ice', 'dtls', 'srtp'] })
  if (!worker) throw new Error('createWorkers(1) returned no worker')
  t.teardown(() => worker.close())
  const router = await worker.createRouter({ mediaCodecs: [{ kind: 'audio', ...OPUS }] })
  const transport = await router.createWebRtcTransport({
    listenInfos: [{ protocol: 'udp', ip: '127.0.0.1' }],
  })

  const pc = new RTCPeerConnection({
    codecs: { audio: [new RTCRtpCodecParameters({ ...OPUS, payloadType: PAYLOAD_TYPE })], video: [] },
  })
  t.teardown(() => pc.close())
  const track = new MediaStreamTrack({ kind: 'audio' })
  pc.addTransceiver(track, { direction: 'sendonly' })
  await pc.setLocalDescription(await pc.createOffer())
  const offer = pc.localDescription?.sdp ?? ''
  const mid = offerField(offer, /a=mid:(\S+)/, 'mid')
  const ssrc = Number(offerField(offer, /a=ssrc:(\d+)/, 'ssrc'))

  await transport.connect({
    dtlsParameters: {
      role: 'client',
      fingerprints: [
        { algorithm: 'sha-256', value: offerField(offer, /a=fingerprint:sha-256 (\S+)/, 'fingerprint') },
      ],
    },
  })
  const producer = await transport.produce({
    kind: 'audio',
    rtpParameters: { mid, codecs: [{ ...OPUS, payloadType: PAYLOAD_TYPE }], encodings: [{ ssrc }] },
  })

  await pc.setRemoteDescription({ type: 'answer', sdp: answerSdp(transport, mid) })
  // Without the BIO-callback fix in scripts/build-mediasoup-worker.sh the worker crashes right here,
  // on werift's DTLS ClientHello.
  await until(worker, transport, 'dtlsstatechange', () => transport.dtlsState === 'connected', 'DTLS')
  t.equal(transport.dtlsState, 'connected', 'DTLS handshake with werift completes')
  t.match(transport.iceState, /^(connected|completed)$/, 'ICE connected')

  // 20 ms of opus per packet; the payload is opaque to mediasoup, so any bytes will do.
  for (let i = 0; i < PACKETS; i++) {
    const header = new RtpHeader({ payloadType: PAYLOAD_TYPE, sequenceNumber: i, timestamp: i * 960 })
    track.writeRtp(new RtpPacket(header, Buffer.alloc(60, 0xab)))
    await sleep(20)
  }
  let inbound: types.RtpStreamRecvStats | undefined
  for (let tries = 0; tries < 50; tries++) {
    inbound = (await producer.getStats()).find((s) => s.type === 'inbound-rtp')
    if (inbound && inbound.packetCount >= PACKETS * 0.9) break
    await sleep(100)
  }
  t.ok(inbound, 'the producer has an inbound RTP stream')
  // SRTP packets decrypted with the keys from the DTLS handshake: proof that the whole path works.
  t.ok(
    (inbound?.packetCount ?? 0) >= PACKETS * 0.9,
    `most packets arrive (${inbound?.packetCount}/${PACKETS})`,
  )
  t.ok((inbound?.byteCount ?? 0) > 0, 'with their bytes counted')
  t.equal(worker.died, false, 'the worker is still alive')
})

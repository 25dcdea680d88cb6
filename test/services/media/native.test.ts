import t from 'tap'
import { MediaStreamTrack, RTCPeerConnection, RTCRtpCodecParameters, RtpHeader, RtpPacket } from 'werift'
import { actor, connectDevice, ok, refused } from '../../helpers/actors.ts'
import { waitUntil } from '../../helpers/hub.ts'
import { mediaStage, watchTracks } from './fixture.ts'
import { OPUS } from './webrtc.ts'
import { mediasoupTest } from '../../helpers/mediasoup.ts'

/** These tests start mediasoup workers: skipped where mediasoup is not installed. */
const msTest = mediasoupTest(t)

/**
 * Native devices: SDP offer/answer through the hub (media.offer, media.receive, media.answer), with
 * werift writing and reading real SDP on the device side.
 */

interface Offered {
  sdp: string
  producers: { producerId: string; kind: string; mid: string }[]
}
interface ReceiveOffer {
  sdp?: string
  transportId: string
  consumers: { consumerId: string; producerId: string; kind: string; mid: string }[]
}

function connected(pc: RTCPeerConnection): Promise<void> {
  return new Promise((resolve, reject) => {
    if (pc.connectionState === 'connected') return resolve()
    const timer = setTimeout(() => reject(new Error(`not connected (${pc.connectionState})`)), 15_000)
    pc.connectionStateChange.subscribe((state) => {
      if (state !== 'connected') return
      clearTimeout(timer)
      resolve()
    })
  })
}

/** A native sender: werift's own offer for one sendonly opus track. */
async function nativeSender() {
  const pc = new RTCPeerConnection({
    codecs: { audio: [new RTCRtpCodecParameters({ ...OPUS, payloadType: 111 })], video: [] },
  })
  const track = new MediaStreamTrack({ kind: 'audio' })
  pc.addTransceiver(track, { direction: 'sendonly' })
  await pc.setLocalDescription(await pc.createOffer())
  let timer: NodeJS.Timeout | undefined
  let sent = 0
  return {
    pc,
    offer: pc.localDescription!.sdp,
    start() {
      timer = setInterval(() => {
        const header = new RtpHeader({
          payloadType: 111,
          sequenceNumber: sent & 0xffff,
          timestamp: sent * 960,
        })
        track.writeRtp(new RtpPacket(header, Buffer.alloc(60, 0xcd)))
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

msTest('a native device sends by SDP offer, a member receives by SDP offer from the router', async (t) => {
  const { th, agent, alice, bob, stage } = await mediaStage(t)
  const bobSees = await watchTracks(bob, stage.id)

  // Alice's native box (a device of hers: its media counts as hers, in the stage she is in)
  const { device, token } = await ok<{ device: { id: string }; token: string }>(alice, 'device.create', {
    name: 'Stage box',
    kind: 'native',
  })
  const box = await connectDevice(th, device.id, token)
  const sender = await nativeSender()
  t.teardown(() => sender.close())
  const offered = await ok<Offered>(box, 'media.offer', { sdp: sender.offer })
  t.equal(offered.producers.length, 1, 'one producer per m-line')
  t.match(offered.sdp, /a=ice-lite/, 'the answer is the router’s (ICE-lite)')
  await sender.pc.setRemoteDescription({ type: 'answer', sdp: offered.sdp })
  await connected(sender.pc)
  sender.start()
  const { producerId } = offered.producers[0]!
  await waitUntil(() => bobSees.current().has(producerId), 'the producer is a stage track')
  t.match(bobSees.current().get(producerId), { userId: alice.id, deviceId: device.id, kind: 'audio' })

  // Bob receives the native way: the router offers, werift answers
  const receive = await ok<ReceiveOffer>(bob, 'media.receive')
  t.match(receive.consumers, [{ producerId, kind: 'audio' }], "a consumer of Alice's box")
  const pt = Number(/a=rtpmap:(\d+) opus\/48000\/2/.exec(receive.sdp!)![1])
  const receiver = new RTCPeerConnection({
    codecs: { audio: [new RTCRtpCodecParameters({ ...OPUS, payloadType: pt })], video: [] },
  })
  t.teardown(() => receiver.close())
  let received = 0
  receiver.onTrack.subscribe((track) => track.onReceiveRtp.subscribe(() => received++))
  await receiver.setRemoteDescription({ type: 'offer', sdp: receive.sdp! })
  await receiver.setLocalDescription(await receiver.createAnswer())
  const answered = await ok<{ resumed: string[]; closed: string[] }>(bob, 'media.answer', {
    sdp: receiver.localDescription!.sdp,
  })
  t.same(answered, { resumed: [receive.consumers[0]!.consumerId], closed: [] })
  await connected(receiver)
  await waitUntil(() => received >= 50, 'Bob receives the box’s RTP', 15_000)
  t.ok(received >= 50, `Bob received ${received} RTP packets of the ${sender.sent} the box sent`)

  const again = await ok<ReceiveOffer>(bob, 'media.receive')
  t.same(again.consumers, receive.consumers, 'nothing new: the same consumers')
  t.match(again.sdp, /^o=\S+ \d+ 2 /m, 'a renegotiation raises the session version')
  t.equal((await refused(bob, 'media.answer', { sdp: 'v=0 garbage' })).code, 'invalid_request')

  // the box's producer goes: the track goes, and Bob's next offer keeps its m-line, rejected
  await ok(box, 'media.close', { producerId })
  await waitUntil(() => !bobSees.current().has(producerId), 'the track is cleared')
  await waitUntil(() => agent.load().consumers === 0, "the router closed Bob's consumer")
  const after = await ok<ReceiveOffer>(bob, 'media.receive')
  t.same(after.consumers, [], 'nothing to receive')

  // the box offers anew (a new send transport); Bob renegotiates on the same connection
  const sender2 = await nativeSender()
  t.teardown(() => sender2.close())
  const offered2 = await ok<Offered & { closedProducers: string[] }>(box, 'media.offer', {
    sdp: sender2.offer,
  })
  await sender2.pc.setRemoteDescription({ type: 'answer', sdp: offered2.sdp })
  await connected(sender2.pc)
  sender2.start()
  const second = offered2.producers[0]!.producerId
  await waitUntil(() => bobSees.current().has(second), 'the new producer is a stage track')
  const renegotiated = await ok<ReceiveOffer>(bob, 'media.receive')
  t.match(renegotiated.consumers, [{ producerId: second }])
  t.equal((renegotiated.sdp!.match(/^m=audio 0 /gm) ?? []).length, 1, 'the gone consumer stays, rejected')
  t.equal((renegotiated.sdp!.match(/^m=audio/gm) ?? []).length, 2, 'the new one is appended')
  const before = received
  // werift (unlike browsers) wants an rtpmap even on a rejected m-line
  const forWerift = renegotiated.sdp!.replace(
    /^(m=audio 0 [^\r\n]* (\d+)\r\n(?:[^m][^\r\n]*\r\n)*)/m,
    `$1a=rtpmap:$2 opus/48000/2\r\n`,
  )
  await receiver.setRemoteDescription({ type: 'offer', sdp: forWerift })
  await receiver.setLocalDescription(await receiver.createAnswer())
  const answered2 = await ok<{ resumed: string[] }>(bob, 'media.answer', {
    sdp: receiver.localDescription!.sdp,
  })
  t.same(answered2.resumed, [renegotiated.consumers[0]!.consumerId])
  await waitUntil(() => received >= before + 50, 'Bob receives the new track on the same connection', 15_000)
  t.ok(received - before >= 50, `after renegotiating, Bob received ${received - before} more RTP packets`)

  // refusals: garbage SDP, a kind the stage does not use, a box whose owner is in no stage
  t.equal((await refused(box, 'media.offer', { sdp: 'v=0 this is not an offer' })).code, 'invalid_request')
  const video = sender.offer.replace(/^m=audio/m, 'm=video')
  t.equal(
    (await refused(box, 'media.offer', { sdp: video })).code,
    'forbidden',
    'no video in an audio-only stage',
  )
  const carol = await actor(th, 'Carol')
  const other = await ok<{ device: { id: string }; token: string }>(carol, 'device.create', {
    name: 'Carol box',
    kind: 'native',
  })
  const carolBox = await connectDevice(th, other.device.id, other.token)
  t.equal(
    (await refused(carolBox, 'media.offer', { sdp: sender.offer })).code,
    'forbidden',
    'a device whose owner is in no stage gets no media',
  )
})

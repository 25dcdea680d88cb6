import t from 'tap'
import type { TSchema } from '@sinclair/typebox'
import {
  type SignalAction,
  type SignalPeer,
  mediaCapabilities,
  mediaConsume,
  mediaCreateTransport,
} from '../../../schemas/actions/media.ts'
import { validator } from '../../../schemas/validate.ts'
import { SignalError, StageRoom } from '../../../devices/router/room.ts'
import { createWorkers } from '../../../devices/router/worker.ts'
import { waitUntil } from '../../helpers/hub.ts'
import { mediasoupTest } from '../../helpers/mediasoup.ts'

/** These tests start mediasoup workers: skipped where mediasoup is not installed. */
const msTest = mediasoupTest(t)

/** One stage on a real mediasoup worker: the router side of signalling, without MQTT. */

const alice: SignalPeer = { clientId: 'alice-app', userId: 'alice', memberId: 'm-alice' }
const bob: SignalPeer = { clientId: 'bob-app', userId: 'bob', memberId: 'm-bob' }
let seq = 0

const opus = (ssrc: number) => ({
  mid: String(ssrc),
  codecs: [{ mimeType: 'audio/opus', payloadType: 111, clockRate: 48000, channels: 2 }],
  encodings: [{ ssrc }],
})
const vp8 = (ssrc: number) => ({
  mid: String(ssrc),
  codecs: [
    { mimeType: 'video/VP8', payloadType: 96, clockRate: 90000 },
    { mimeType: 'video/rtx', payloadType: 97, clockRate: 90000, parameters: { apt: 96 } },
  ],
  encodings: [{ ssrc, rtx: { ssrc: ssrc + 1 } }],
})

function matches(schema: TSchema, value: unknown): string | true {
  const check = validator(schema)
  return check(value) ? true : check.describe()
}

msTest('a stage room: transports, producers and consumers per participant, checked by owner', async (t) => {
  const [worker] = await createWorkers(1, { logLevel: 'warn' })
  if (!worker) throw new Error('no worker')
  t.teardown(() => worker.close())
  const room = await StageRoom.open(worker, 'stage-1', {
    listenInfos: [{ protocol: 'udp', ip: '127.0.0.1' }],
  })
  const ask = <T = Record<string, unknown>>(peer: SignalPeer, action: SignalAction, params: object = {}) =>
    room.handle({
      id: `s${++seq}`,
      action,
      stageId: 'stage-1',
      peer,
      params: params as Record<string, unknown>,
    }) as Promise<T>
  const refusal = async (peer: SignalPeer, action: SignalAction, params: object = {}) => {
    try {
      await ask(peer, action, params)
    } catch (err) {
      if (err instanceof SignalError) return err.code
      throw err
    }
    throw new Error(`${action} was not refused`)
  }

  const caps = await ask<{ rtpCapabilities: { codecs: { mimeType: string }[] } }>(alice, 'media.capabilities')
  t.equal(matches(mediaCapabilities.result, caps), true, 'the capabilities fit the schema the hub checks')
  t.same([...new Set(caps.rtpCapabilities.codecs.map((c) => c.mimeType))].sort(), [
    'audio/opus',
    'video/H264',
    'video/VP8',
    'video/rtx',
  ])

  const sendA = await ask<{ transportId: string }>(alice, 'media.createTransport', { direction: 'send' })
  t.equal(matches(mediaCreateTransport.result, sendA), true, 'a transport fits the schema the hub checks')
  const audio = await ask<{ producerId: string }>(alice, 'media.produce', {
    transportId: sendA.transportId,
    kind: 'audio',
    rtpParameters: opus(1000),
  })
  const replaced = await ask<{ transportId: string; closedProducers: string[] }>(
    alice,
    'media.createTransport',
    {
      direction: 'send',
    },
  )
  t.same(
    replaced.closedProducers,
    [audio.producerId],
    'a second send transport replaces the first, with its producers',
  )
  t.equal(
    await refusal(alice, 'media.connectTransport', {
      transportId: sendA.transportId,
      dtlsParameters: dtls(),
    }),
    'not_found',
  )
  const video = await ask<{ producerId: string }>(alice, 'media.produce', {
    transportId: replaced.transportId,
    kind: 'video',
    rtpParameters: vp8(2000),
  })

  const recvB = await ask<{ transportId: string }>(bob, 'media.createTransport', { direction: 'recv' })
  const consumer = await ask<{ consumerId: string }>(bob, 'media.consume', {
    producerId: video.producerId,
    rtpCapabilities: caps.rtpCapabilities,
  })
  t.equal(
    matches(mediaConsume.result, consumer),
    true,
    'a video consumer (with RTX) fits the schema the hub checks',
  )
  const again = await ask<{ consumerId: string }>(bob, 'media.consume', {
    producerId: video.producerId,
    rtpCapabilities: caps.rtpCapabilities,
  })
  t.not(again.consumerId, consumer.consumerId)
  t.match(
    room.counts(),
    { transports: 2, producers: 1, consumers: 1 },
    'consuming again replaces the earlier consumer',
  )

  // ownership
  t.equal(
    await refusal(bob, 'media.connectTransport', {
      transportId: replaced.transportId,
      dtlsParameters: dtls(),
    }),
    'forbidden',
  )
  t.equal(
    await refusal(bob, 'media.produce', {
      transportId: replaced.transportId,
      kind: 'audio',
      rtpParameters: opus(3000),
    }),
    'forbidden',
  )
  t.equal(await refusal(bob, 'media.pause', { producerId: video.producerId }), 'forbidden')
  t.equal(await refusal(alice, 'media.resume', { consumerId: again.consumerId }), 'forbidden')
  t.equal(await refusal(alice, 'media.close', { transportId: recvB.transportId }), 'forbidden')
  t.equal(
    await refusal({ ...bob, clientId: 'bob-other-app' }, 'media.close', { consumerId: again.consumerId }),
    'forbidden',
    "a participant is a client: the user's other client owns nothing of it",
  )
  t.equal(await refusal(alice, 'media.pause', { consumerId: 'nothing-like-it' }), 'not_found')
  t.equal(
    await refusal(alice, 'media.consume', {
      producerId: video.producerId,
      rtpCapabilities: caps.rtpCapabilities,
    }),
    'invalid_request',
    'nobody consumes their own producer',
  )
  t.equal(
    await refusal(alice, 'media.produce', { transportId: replaced.transportId }),
    'invalid_request',
    'params are checked',
  )
  t.equal(
    await refusal({ userId: 'alice' }, 'media.capabilities'),
    'invalid_request',
    'media signals name the participant',
  )
  await ask(bob, 'media.pause', { consumerId: again.consumerId })
  await ask(bob, 'media.resume', { consumerId: again.consumerId })

  // the hub's own signals
  const left = await ask<{ closedProducers: string[] }>({ userId: 'alice' }, 'member.leave')
  t.same(left.closedProducers, [video.producerId], "member.leave closes the user's participants")
  // the worker tells a consumer that its producer closed: asynchronously
  await waitUntil(() => room.counts().consumers === 0, "Bob's consumer of them closes too")
  t.match(room.counts(), { transports: 1, producers: 0, consumers: 0 })
  await ask(bob, 'peer.close')
  t.match(room.counts(), { transports: 0, producers: 0, consumers: 0 }, 'peer.close closes one participant')

  room.close()
  t.ok(room.router.closed, 'closing the room closes its mediasoup Router')
  t.equal(await refusal(alice, 'media.capabilities'), 'unavailable')
})

function dtls() {
  return { role: 'client', fingerprints: [{ algorithm: 'sha-256', value: 'AB:CD' }] }
}

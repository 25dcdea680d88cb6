import t from 'tap'
import { actor, connectAs, ok, refused } from '../../helpers/actors.ts'
import { connectionClosed, recordMessages, subackCodes, waitUntil } from '../../helpers/hub.ts'
import { createRouter, mediaStage, watchTracks } from './fixture.ts'
import {
  type ConsumerInfo,
  OPUS_CAPABILITIES,
  type TransportInfo,
  opusReceiver,
  opusSender,
} from './webrtc.ts'
import { mediasoupTest } from '../../helpers/mediasoup.ts'

/** These tests start mediasoup workers: skipped where mediasoup is not installed. */
const msTest = mediasoupTest(t)

/** Media end to end: real hub, real router agent with a real mediasoup worker, real WebRTC peers (werift). */

interface Capabilities {
  rtpCapabilities: { codecs: { mimeType: string }[] }
}

msTest('a member sends opus through hub signalling and another member receives it', async (t) => {
  const { th, agent, alice, bob, stage } = await mediaStage(t)
  const bobSees = await watchTracks(bob, stage.id)

  const { rtpCapabilities } = await ok<Capabilities>(alice, 'media.capabilities')
  t.ok(
    rtpCapabilities.codecs.some((c) => c.mimeType === 'audio/opus'),
    'the router offers opus (and VP8, H264)',
  )

  // Alice: send transport → connect → produce opus
  const send = await ok<TransportInfo>(alice, 'media.createTransport', { direction: 'send' })
  const sender = await opusSender()
  t.teardown(() => sender.close())
  await ok(alice, 'media.connectTransport', {
    transportId: send.transportId,
    dtlsParameters: sender.dtlsParameters,
  })
  const { producerId } = await ok<{ producerId: string }>(alice, 'media.produce', {
    transportId: send.transportId,
    kind: 'audio',
    rtpParameters: sender.rtpParameters,
  })
  await sender.connect(send)
  sender.startSending()

  // Bob sees the retained track and consumes it
  await waitUntil(() => bobSees.current().has(producerId), 'Bob sees the producer as a stage track')
  t.match(bobSees.current().get(producerId), {
    id: producerId,
    stageId: stage.id,
    userId: alice.id,
    deviceId: alice.client.options.clientId,
    kind: 'audio',
  })
  const recv = await ok<TransportInfo>(bob, 'media.createTransport', { direction: 'recv' })
  const consumer = await ok<ConsumerInfo & { paused: boolean }>(bob, 'media.consume', {
    producerId,
    rtpCapabilities: OPUS_CAPABILITIES,
  })
  t.match(consumer, { producerId, kind: 'audio', paused: true }, 'a consumer starts paused')
  const receiver = await opusReceiver(recv, consumer)
  t.teardown(() => receiver.close())
  await ok(bob, 'media.connectTransport', {
    transportId: recv.transportId,
    dtlsParameters: receiver.dtlsParameters,
  })
  await receiver.connected()
  await ok(bob, 'media.resume', { consumerId: consumer.consumerId })
  await waitUntil(() => receiver.received >= 50, 'Bob receives RTP from Alice', 15_000)
  t.ok(
    receiver.received >= 50,
    `Bob received ${receiver.received} RTP packets of the ${sender.sent} Alice sent`,
  )
  t.match(agent.load(), { stages: 1, transports: 2, producers: 1, consumers: 1 }, 'the load counts them')

  // the router checks that every id belongs to the participant asking
  const own = { transportId: send.transportId, dtlsParameters: receiver.dtlsParameters }
  t.equal(
    (await refused(bob, 'media.connectTransport', own)).code,
    'forbidden',
    "Bob cannot connect Alice's transport",
  )
  t.equal(
    (
      await refused(bob, 'media.produce', {
        transportId: send.transportId,
        kind: 'audio',
        rtpParameters: sender.rtpParameters,
      })
    ).code,
    'forbidden',
    "Bob cannot produce on Alice's transport",
  )
  t.equal(
    (await refused(alice, 'media.pause', { consumerId: consumer.consumerId })).code,
    'forbidden',
    "Alice cannot pause Bob's consumer",
  )
  t.equal(
    (await refused(alice, 'media.close', { consumerId: consumer.consumerId })).code,
    'forbidden',
    "Alice cannot close Bob's consumer",
  )
  t.equal(
    (await refused(bob, 'media.close', { producerId })).code,
    'forbidden',
    "Bob cannot close Alice's producer",
  )
  t.equal(
    (await refused(bob, 'media.pause', { producerId })).code,
    'forbidden',
    "Bob cannot pause Alice's producer",
  )
  // sending off: the others learn from the retained track that nothing arrives on purpose
  await ok(alice, 'media.pause', { producerId })
  await waitUntil(() => bobSees.current().get(producerId)?.paused === true, 'Bob sees the track paused')
  await ok(alice, 'media.resume', { producerId })
  await waitUntil(
    () => bobSees.current().get(producerId)?.paused === undefined,
    'Bob sees the track sending again',
  )
  t.pass("Alice's pause and resume of her producer show on the retained track")
  const aliceAgain = await connectAs(th, alice.id, 'Alice')
  t.equal(
    (await refused(aliceAgain, 'media.connectTransport', own)).code,
    'forbidden',
    "a participant is one client: Alice's other app cannot use the first one's transport",
  )
  t.equal(
    (await refused(alice, 'media.consume', { producerId, rtpCapabilities: OPUS_CAPABILITIES })).code,
    'invalid_request',
    'a participant does not consume itself',
  )
  t.equal(
    (
      await refused(bob, 'media.produce', {
        transportId: recv.transportId,
        kind: 'audio',
        rtpParameters: sender.rtpParameters,
      })
    ).code,
    'invalid_request',
    'nobody produces on a recv transport',
  )
  t.equal(
    (
      await refused(bob, 'media.consume', {
        producerId: 'no-such-producer',
        rtpCapabilities: OPUS_CAPABILITIES,
      })
    ).code,
    'not_found',
  )
  t.equal(
    (
      await refused(alice, 'media.produce', {
        transportId: send.transportId,
        kind: 'video',
        rtpParameters: sender.rtpParameters,
      })
    ).code,
    'forbidden',
    'no video producers in a stage without mediasoup video',
  )
  t.equal((await refused(bob, 'media.createTransport', { direction: 'sideways' })).code, 'invalid_request')
  t.match(agent.load(), { transports: 2, producers: 1, consumers: 1 }, 'nothing changed on the router')

  // closing the producer removes the track, and the router closes Bob's consumer of it
  const closed = await ok<{ closedProducers: string[] }>(alice, 'media.close', { producerId })
  t.same(closed.closedProducers, [producerId])
  await waitUntil(() => !bobSees.current().has(producerId), 'the track is cleared')
  t.match(agent.load(), { producers: 0, consumers: 0 })

  // a new producer; leaving the stage takes it out, and the router closes Alice's transports
  const again = await ok<{ producerId: string }>(alice, 'media.produce', {
    transportId: send.transportId,
    kind: 'audio',
    rtpParameters: sender.rtpParameters,
  })
  await waitUntil(() => bobSees.current().has(again.producerId), 'the new track is published')
  await ok(alice, 'stage.leave')
  await waitUntil(() => !bobSees.current().has(again.producerId), 'leaving the stage clears the track')
  await waitUntil(() => agent.load().transports === 1, "the router closed Alice's transport")
  t.equal((await refused(alice, 'media.capabilities')).code, 'forbidden', 'out of the stage, no media')

  // a client that goes away (past the grace period) loses its transports on the router
  await bob.client.endAsync()
  await waitUntil(() => agent.load().transports === 0, "Bob's client is gone: so is his transport", 10_000)
  t.equal(agent.load().transports, 0, 'the router closed the transport of a client that disconnected')
})

msTest(
  'media.* from outside the stage is refused and reaches no router; routers take signals only from the hub',
  async (t) => {
    const { th, ops, router, alice, bob, stage, group } = await mediaStage(t)
    const recording = recordMessages(ops.client)
    await ops.client.subscribeAsync(`routers/${router.id}/signal`, { qos: 1 })
    // the hub's own clean-up signals (member.leave) go out as members leave: count media requests only
    const forwards = () =>
      recording.messages.filter((m) =>
        (JSON.parse(m.payload.toString()) as { action: string }).action.startsWith('media.'),
      )

    const carol = await actor(th, 'Carol')
    for (const action of ['media.capabilities', 'media.createTransport'] as const) {
      const params = action === 'media.createTransport' ? { direction: 'send' } : {}
      t.equal((await refused(carol, action, params)).code, 'forbidden', `a non-member: ${action} refused`)
    }
    await ok(bob, 'stage.leave')
    t.equal((await refused(bob, 'media.capabilities')).code, 'forbidden', 'a member who left: refused')
    t.equal(
      (await refused(bob, 'media.consume', { producerId: 'x', rtpCapabilities: OPUS_CAPABILITIES })).code,
      'forbidden',
    )
    const dave = await actor(th, 'Dave')
    await ok(dave, 'stage.join', { stageId: stage.id, groupId: group.id })
    await ok(alice, 'member.remove', { stageId: stage.id, userId: dave.id })
    t.equal((await refused(dave, 'media.capabilities')).code, 'forbidden', 'a removed member: refused')
    t.equal(forwards().length, 0, 'none of it reached the router')
    await ok(alice, 'media.capabilities')
    await waitUntil(() => forwards().length === 1, 'a member in the stage is forwarded')
    const forwarded = JSON.parse(forwards()[0]!.payload.toString()) as Record<string, unknown>
    t.match(
      forwarded,
      {
        action: 'media.capabilities',
        stageId: stage.id,
        peer: { clientId: alice.client.options.clientId, userId: alice.id },
      },
      "with the caller's identity from the hub",
    )
    t.equal(forwards()[0]!.retain, false, 'signals are not retained')
    t.ok(
      recording.messages.some(
        (m) => (JSON.parse(m.payload.toString()) as { action: string }).action === 'member.leave',
      ),
      'members leaving are told to the router (member.leave)',
    )

    // nobody but the router reads its signals, and nobody but the hub sends them
    t.same(
      await subackCodes(carol.client, `routers/${router.id}/signal`),
      [128],
      'a user cannot read signals',
    )
    t.same(await subackCodes(carol.client, `routers/+/signal`), [128], 'nor with a wildcard')
    const carolClosed = connectionClosed(carol.client)
    carol.client.publish(`routers/${router.id}/signal`, JSON.stringify(forwarded), { qos: 1 })
    await carolClosed
    t.notOk(carol.client.connected, "a user publishing on a router's signal topic loses the connection")

    const rogue = await createRouter(ops, 'rogue')
    const rogueClient = await th.connect({ clientId: rogue.id, token: rogue.token })
    t.same(
      await subackCodes(rogueClient, `routers/${router.id}/signal`),
      [128],
      "a router cannot read another's signals",
    )
    const rogueClosed = connectionClosed(rogueClient)
    rogueClient.publish(
      `routers/${router.id}/signal/answers`,
      JSON.stringify({ id: forwarded.id, ok: true, result: {} }),
      { qos: 1 },
    )
    await rogueClosed
    t.notOk(
      rogueClient.connected,
      "a router answering on another router's answers topic loses the connection",
    )
    const rogueAgain = await th.connect({ clientId: rogue.id, token: rogue.token })
    const againClosed = connectionClosed(rogueAgain)
    rogueAgain.publish(`routers/${rogue.id}/signal`, '{}', { qos: 1 })
    await againClosed
    t.notOk(rogueAgain.connected, 'a router cannot publish signals, not even to itself')
    const { rtpCapabilities } = await ok<Capabilities>(alice, 'media.capabilities')
    t.ok(rtpCapabilities.codecs.length > 0, 'the real router still answers')
  },
)

import t from 'tap'
import mqtt from 'mqtt'
import type { Packet } from 'mqtt-packet'
import type { RouterDoc } from '../../services/collections.ts'
import type { DeviceDoc } from '../../services/collections.ts'
import { actor, connectDevice, ok } from '../helpers/actors.ts'
import {
  Requester,
  type Response,
  connackCode,
  connectionClosed,
  nextMessage,
  sleep,
  startTestHub,
  waitUntil,
} from '../helpers/hub.ts'
import { metricValue } from '../helpers/metrics.ts'
import { connectPacket, rawMqtt } from '../helpers/raw-mqtt.ts'

// Client ids belong to identities (README, "Client ids"): one hub, real clients over TCP.

const th = await startTestHub(t)
const codeFor = (token: string, clientId: string, clean = true) =>
  connackCode(th.mqttUrl, { clientId, clean, username: 'token', password: token })

/** A persistent-session connection attempt: its CONNACK code and what it received within 500 ms. */
async function attemptWithin(token: string, clientId: string): Promise<{ code: number; received: string[] }> {
  const client = mqtt.connect(th.mqttUrl, {
    protocolVersion: 4,
    reconnectPeriod: 0,
    clientId,
    clean: false,
    username: 'token',
    password: token,
  })
  const received: string[] = []
  client.on('message', (_topic, payload) => received.push(payload.toString()))
  const code = await new Promise<number>((resolve) => {
    client.once('connect', () => resolve(0))
    client.once('error', (err: Error & { code?: number }) =>
      resolve(typeof err.code === 'number' ? err.code : -1),
    )
  })
  await sleep(500)
  await client.endAsync(true)
  return { code, received }
}

const refusals = (code: number) =>
  metricValue(th.httpUrl, `stagehub_connection_refusals_total{code="${code}"}`)

t.test(
  "a persistent session's queued responses reach only its own identity: another user cannot take its client id",
  async (t) => {
    const alice = await th.hub.users.createUser({ name: 'Alice' })
    const mallory = await th.hub.users.createUser({ name: 'Mallory' })
    const aliceToken = th.token({ sub: alice.id, name: 'Alice' })

    // Alice's phone keeps a persistent session, asks for a new device, and loses its connection
    // before acknowledging the response (QoS 1): the response with the device token stays queued
    const phone = await rawMqtt(t, th.hub.ports.mqtt)
    const send = (packet: Packet) => phone.send(packet)
    send(connectPacket('alice-phone', aliceToken, { clean: false }))
    t.ok(await phone.next('connack'), 'the phone is connected')
    send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'clients/alice-phone/res', qos: 1 }] })
    t.ok(await phone.next('suback'), 'and subscribed to its responses')
    send({
      cmd: 'publish',
      topic: 'clients/alice-phone/req/device.create',
      payload: Buffer.from(JSON.stringify({ id: 'd1', params: { name: 'Box', kind: 'ovbox' } })),
      qos: 1,
      messageId: 2,
      retain: false,
      dup: false,
    })
    const response = await phone.next('publish')
    t.ok(response, 'the response was sent')
    phone.destroy()
    const queued = JSON.parse((response as Packet & { payload: Buffer }).payload.toString()) as Response

    const before = await refusals(5)
    const attempt = await attemptWithin(th.token({ sub: mallory.id, name: 'Mallory' }), 'alice-phone')
    t.equal(attempt.code, 5, "another user's token is refused Alice's persistent client id (CONNACK 5)")
    t.same(attempt.received, [], 'and receives nothing of her session')
    t.equal(await refusals(5), before + 1, 'the refusal is counted in /metrics')

    // Alice resumes her session and gets what was queued for her
    const resumed = await th.connect({ clientId: 'alice-phone', clean: false, token: aliceToken })
    const again = await nextMessage(resumed, 'clients/alice-phone/res')
    t.same(
      (JSON.parse(again.payload.toString()) as Response).result,
      queued.result,
      'Alice receives her queued response',
    )
  },
)

t.test(
  'a registered device or router id is reserved for its own tokens: a user cannot kick the device off',
  async (t) => {
    const owner = await actor(th, 'Owner')
    const stranger = await th.hub.users.createUser({ name: 'Stranger' })
    const created = await ok<{ device: { id: string }; token: string }>(owner, 'device.create', {
      name: 'Box',
      kind: 'ovbox',
    })
    const d = created.device.id
    const device = await connectDevice(th, d, created.token)
    await device.client.publishAsync(
      `devices/${d}/presence`,
      JSON.stringify({ state: 'online', session: 1 }),
      {
        qos: 1,
        retain: true,
      },
    )
    await waitUntil(
      async () => (await th.hub.store.get<DeviceDoc>('devices', d))?.online === true,
      'the device is online',
    )
    const closed = connectionClosed(device.client, 1000).then(
      () => true,
      () => false,
    )

    t.equal(await codeFor(th.token({ sub: stranger.id }), d), 5, "another user's token: CONNACK 5")
    t.equal(await codeFor(th.token({ sub: owner.id }), d), 5, "even the owner's user token: CONNACK 5")
    t.equal(await codeFor(th.token({ sub: 'ops', role: 'admin' }), d), 5, 'an operator token: CONNACK 5')
    t.notOk(await closed, 'the device stays connected')
    t.ok(device.client.connected, 'and its client says so')
    t.equal((await th.hub.store.get<DeviceDoc>('devices', d))?.online, true, 'and it is online')

    await th.hub.store.transaction(async (tx) => {
      tx.insert<RouterDoc>('routers', { id: 'router-7', tokenVersion: 1 })
    })
    t.equal(await codeFor(th.token({ sub: stranger.id }), 'router-7'), 5, "a router's id: CONNACK 5")
  },
)

t.test(
  'a connected client id can be taken over only by the same identity; once released anyone may use it',
  async (t) => {
    const ann = await th.hub.users.createUser({ name: 'Ann' })
    const bob = await th.hub.users.createUser({ name: 'Bob' })
    const annToken = th.token({ sub: ann.id })
    const first = await th.connect({ clientId: 'shared-name', token: annToken })
    const firstClosed = connectionClosed(first, 2000)

    t.equal(await codeFor(th.token({ sub: bob.id }), 'shared-name'), 5, 'another user: CONNACK 5')
    t.equal(
      await codeFor(th.token({ sub: ann.id, role: 'admin' }), 'shared-name'),
      5,
      'another role, same id: 5',
    )
    await sleep(100)
    t.ok(first.connected, "Ann's connection is untouched by the refusals")

    const second = await th.connect({
      clientId: 'shared-name',
      token: th.token({ sub: ann.id, name: 'Ann 2' }),
    })
    await t.resolves(firstClosed, "Ann's own new connection takes over and closes the old one")
    await second.endAsync()
    await sleep(100)
    t.equal(await codeFor(th.token({ sub: bob.id }), 'shared-name'), 0, 'released: Bob may now use it')
  },
)

t.test(
  'a persistent session holds its client id until its holder ends it with a clean session',
  async (t) => {
    const cy = await th.hub.users.createUser({ name: 'Cy' })
    const dee = await th.hub.users.createUser({ name: 'Dee' })
    const cyToken = th.token({ sub: cy.id })
    const kept = await th.connect({ clientId: 'cy-tablet', clean: false, token: cyToken })
    await kept.subscribeAsync(`users/${cy.id}`, { qos: 1 })
    await kept.endAsync()

    t.equal(await codeFor(th.token({ sub: dee.id }), 'cy-tablet', true), 5, 'held while disconnected (clean)')
    t.equal(
      await codeFor(th.token({ sub: dee.id }), 'cy-tablet', false),
      5,
      'held while disconnected (persistent)',
    )
    t.equal(await codeFor(cyToken, 'cy-tablet', true), 0, 'Cy ends the session with a clean connection')
    await sleep(100)
    t.equal(await codeFor(th.token({ sub: dee.id }), 'cy-tablet', false), 0, 'then the id is free for Dee')
  },
)

t.test("a persistent session's queued messages are re-checked against the ACL when delivered", async (t) => {
  const admin = await actor(th, 'Host')
  const stage = await ok<{ id: string }>(admin, 'stage.create', { name: 'Queued' })
  const group = await ok<{ id: string }>(admin, 'group.create', {
    stageId: stage.id,
    name: 'All',
    color: '#336699',
  })
  await ok(admin, 'stage.join', { stageId: stage.id, groupId: group.id })
  const guest = await th.hub.users.createUser({ name: 'Guest' })
  const guestToken = th.token({ sub: guest.id, name: 'Guest' })
  const chat = `stages/${stage.id}/chat`

  /** The guest's persistent session, resumed: what it receives within 500 ms of connecting. */
  const resume = async (): Promise<string[]> => {
    const client = mqtt.connect(th.mqttUrl, {
      protocolVersion: 4,
      reconnectPeriod: 0,
      clientId: 'guest-phone',
      clean: false,
      username: 'token',
      password: guestToken,
    })
    const texts: string[] = []
    client.on('message', (topic, payload) => {
      if (topic === chat) texts.push((JSON.parse(payload.toString()) as { text: string }).text)
    })
    await new Promise((resolve, reject) => client.once('connect', resolve).once('error', reject))
    await sleep(500)
    await client.endAsync()
    return texts
  }

  const first = await th.connect({ clientId: 'guest-phone', clean: false, token: guestToken })
  await ok({ id: guest.id, name: 'Guest', client: first, req: new Requester(first) }, 'stage.join', {
    stageId: stage.id,
    groupId: group.id,
  })
  await first.subscribeAsync(chat, { qos: 1 })
  await first.endAsync()

  await ok(admin, 'chat.send', { text: 'while you were away' })
  t.same(await resume(), ['while you were away'], 'a member gets what was queued for the session')

  await ok(admin, 'chat.send', { text: 'after you were removed' })
  await ok(admin, 'member.remove', { stageId: stage.id, userId: guest.id })
  t.same(await resume(), [], 'queued before the removal, it is not delivered after it')
})

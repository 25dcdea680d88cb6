import t from 'tap'
import type { Packet } from 'mqtt-packet'
import { startTestHub } from '../helpers/hub.ts'
import { metricValue } from '../helpers/metrics.ts'
import { connectBytes, connectPacket, rawMqtt } from '../helpers/raw-mqtt.ts'

// MQTT 3.1.1 as written: the protocol violations Aedes and mqtt-packet let through are refused, each
// on a raw socket that sends exactly the bytes under test.

const th = await startTestHub(t)
const token = th.token({ sub: 'u1', name: 'U' })
const USERNAME = 0x80
const PASSWORD = 0x40
const WILL = 0x04
const CLEAN = 0x02
const willQos = (qos: number) => qos << 3

let seq = 0
/** A raw connection that has been accepted (CONNACK 0) with a user token. */
async function accepted() {
  const clientId = `raw-${++seq}`
  const raw = await rawMqtt(t, th.hub.ports.mqtt)
  raw.send(connectPacket(clientId, token))
  const connack = await raw.next('connack')
  if (connack?.cmd !== 'connack' || connack.returnCode !== 0)
    throw new Error('the control CONNECT was refused')
  return { raw, clientId }
}

const returnCode = (packet: Packet | undefined) => (packet?.cmd === 'connack' ? packet.returnCode : undefined)

t.test('an unsupported protocol level gets CONNACK 0x01 and then the connection is closed', async (t) => {
  // level 5 as a real MQTT 5 client sends it; then levels in a 3.1.1 layout (level 5 without its
  // properties, levels no parser knows, the non-standard bridge bit)
  const refusals = () => metricValue(th.httpUrl, 'stagehub_connection_refusals_total{code="1"}')
  const before = await refusals()
  const v5 = await rawMqtt(t, th.hub.ports.mqtt)
  v5.send({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 5,
    clean: true,
    clientId: 'v5-client',
    keepalive: 60,
    username: 'token',
    password: Buffer.from(token),
    properties: { sessionExpiryInterval: 10 },
  })
  t.equal(returnCode(await v5.next('connack')), 1, 'MQTT 5: CONNACK 0x01')
  t.ok(await v5.closes(), 'and closed')
  for (const level of [0, 2, 5, 6, 0x84]) {
    const raw = await rawMqtt(t, th.hub.ports.mqtt)
    raw.send(
      connectBytes({
        level,
        flags: USERNAME | PASSWORD | CLEAN,
        clientId: `level-${level}`,
        fields: ['token', token],
      }),
    )
    t.equal(returnCode(await raw.next('connack')), 1, `level ${level}: CONNACK 0x01`)
    t.ok(await raw.closes(), `level ${level}: closed`)
  }
  t.equal(await refusals(), before + 6, 'each refusal is counted in /metrics')
})

t.test('a will of QoS 3 is refused: the connection is closed without being accepted', async (t) => {
  const raw = await rawMqtt(t, th.hub.ports.mqtt)
  raw.send(
    connectBytes({
      flags: USERNAME | PASSWORD | WILL | willQos(3) | CLEAN,
      clientId: 'will-qos-3',
      fields: ['hub/status', 'gone', 'token', token],
    }),
  )
  t.ok(await raw.closes(), 'closed')
  t.equal(returnCode(raw.received.find((p) => p.cmd === 'connack')), undefined, 'never accepted')

  const control = await rawMqtt(t, th.hub.ports.mqtt)
  control.send(
    connectBytes({
      flags: USERNAME | PASSWORD | WILL | willQos(1) | CLEAN,
      clientId: 'will-qos-1',
      fields: ['hub/status', 'gone', 'token', token],
    }),
  )
  t.equal(returnCode(await control.next('connack')), 0, 'the same CONNECT with a will of QoS 1 is accepted')
})

t.test('a password flag without the username flag is refused: closed without being accepted', async (t) => {
  const raw = await rawMqtt(t, th.hub.ports.mqtt)
  raw.send(connectBytes({ flags: PASSWORD | CLEAN, clientId: 'no-username', fields: [token] }))
  t.ok(await raw.closes(), 'closed')
  t.equal(returnCode(raw.received.find((p) => p.cmd === 'connack')), undefined, 'never accepted')
})

t.test('PUBLISH of QoS 1 with packet id 0 closes the connection and is not acknowledged', async (t) => {
  const { raw, clientId } = await accepted()
  raw.send({
    cmd: 'publish',
    topic: `clients/${clientId}/req/user.get`,
    payload: Buffer.from(JSON.stringify({ id: 'x', params: {} })),
    qos: 1,
    messageId: 0,
    retain: false,
    dup: false,
  })
  t.ok(await raw.closes(), 'closed')
  t.notOk(
    raw.received.some((p) => p.cmd === 'puback'),
    'no PUBACK',
  )

  const control = await accepted()
  control.raw.send({
    cmd: 'publish',
    topic: `clients/${control.clientId}/req/user.get`,
    payload: Buffer.from(JSON.stringify({ id: 'x', params: {} })),
    qos: 1,
    messageId: 1,
    retain: false,
    dup: false,
  })
  t.ok(await control.raw.next('puback'), 'with packet id 1 the same PUBLISH is acknowledged')
})

t.test('SUBSCRIBE and UNSUBSCRIBE with packet id 0 close the connection unanswered', async (t) => {
  const sub = await accepted()
  sub.raw.send({ cmd: 'subscribe', messageId: 0, subscriptions: [{ topic: 'hub/status', qos: 1 }] })
  t.ok(await sub.raw.closes(), 'SUBSCRIBE 0: closed')
  t.notOk(
    sub.raw.received.some((p) => p.cmd === 'suback'),
    'no SUBACK',
  )

  const unsub = await accepted()
  unsub.raw.send({ cmd: 'unsubscribe', messageId: 0, unsubscriptions: ['hub/status'] })
  t.ok(await unsub.raw.closes(), 'UNSUBSCRIBE 0: closed')
  t.notOk(
    unsub.raw.received.some((p) => p.cmd === 'unsuback'),
    'no UNSUBACK',
  )

  const control = await accepted()
  control.raw.send({ cmd: 'subscribe', messageId: 7, subscriptions: [{ topic: 'hub/status', qos: 1 }] })
  t.ok(await control.raw.next('suback'), 'SUBSCRIBE with packet id 7 is answered')
  control.raw.send({ cmd: 'unsubscribe', messageId: 8, unsubscriptions: ['hub/status'] })
  t.ok(await control.raw.next('unsuback'), 'and so is UNSUBSCRIBE with packet id 8')
  t.notOk(control.raw.closed, 'and the connection stays open')
})

t.test('SUBSCRIBE and UNSUBSCRIBE without any topic filter close the connection unanswered', async (t) => {
  // mqtt-packet will not generate these: fixed header, remaining length 2, packet id only
  const sub = await accepted()
  sub.raw.send(Buffer.from([0x82, 2, 0, 5]))
  t.ok(await sub.raw.closes(), 'SUBSCRIBE: closed')
  t.notOk(
    sub.raw.received.some((p) => p.cmd === 'suback'),
    'no SUBACK',
  )
  const unsub = await accepted()
  unsub.raw.send(Buffer.from([0xa2, 2, 0, 6]))
  t.ok(await unsub.raw.closes(), 'UNSUBSCRIBE: closed')
  t.notOk(
    unsub.raw.received.some((p) => p.cmd === 'unsuback'),
    'no UNSUBACK',
  )
})

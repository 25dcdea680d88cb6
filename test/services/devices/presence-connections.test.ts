import t, { type Test } from 'tap'
import type { MqttClient } from 'mqtt'
import type { DeviceDoc } from '../../../services/collections.ts'
import { type Actor, actor, ok, retainedOn } from '../../helpers/actors.ts'
import { type TestHub, connectionClosed, sleep, startTestHub, waitUntil } from '../../helpers/hub.ts'
import { connectPacket, rawMqtt } from '../../helpers/raw-mqtt.ts'

// A device's presence follows its connection (docs/protocol/README.md#presence): a takeover by the device itself keeps it
// online, and every way the hub closes its connection without a newer one leaves it offline, in the
// stored document and in the retained presence every subscriber gets.

interface Created {
  device: { id: string }
  token: string
}

const th = await startTestHub(t)
const presenceTopic = (d: string) => `devices/${d}/presence`
const online = (session: number) => JSON.stringify({ state: 'online', session })
const lost = (session: number) => ({
  topic: '',
  payload: Buffer.from(JSON.stringify({ state: 'lost', session })),
})
const stored = async (d: string) => (await th.hub.store.get<DeviceDoc>('devices', d))!

let seq = 0
async function newDevice(): Promise<{ owner: Actor; created: Created }> {
  const owner = await actor(th, `Owner ${++seq}`)
  const created = await ok<Created>(owner, 'device.create', { name: `Box ${seq}`, kind: 'ovbox' })
  return { owner, created }
}

/** The device connected with its token and its `lost` will, then online in `session`. */
async function goOnline(
  th: TestHub,
  created: Created,
  session: number,
  token = created.token,
): Promise<MqttClient> {
  const d = created.device.id
  const client = await th.connect({
    clientId: d,
    token,
    will: { ...lost(session), topic: presenceTopic(d), qos: 1, retain: true },
  })
  await client.publishAsync(presenceTopic(d), online(session), { qos: 1, retain: true })
  await waitUntil(async () => (await stored(d)).online, `${d} is online`)
  return client
}

async function offlineEverywhere(t: Test, owner: Actor, d: string, how: string): Promise<void> {
  await waitUntil(async () => !(await stored(d)).online, `${d} is offline after ${how}`)
  t.equal((await stored(d)).online, false, `${how}: stored offline`)
  // the retained presence follows the stored one (a publish after the commit; on MongoDB a few ms later)
  let retained: { state: string } | undefined
  await waitUntil(async () => {
    retained = (await retainedOn(owner.client, presenceTopic(d), 100)) as { state: string } | undefined
    return retained?.state !== 'online'
  }, `${d}'s retained presence no longer says online`).catch(() => undefined)
  t.not(retained?.state, 'online', `${how}: the retained presence no longer says online (${retained?.state})`)
}

t.test('a device taken over by its own new connection stays online', async (t) => {
  const { owner, created } = await newDevice()
  const d = created.device.id
  const first = await goOnline(th, created, 1)
  const firstClosed = connectionClosed(first)
  // the new connection says nothing yet: the device is connected, so it is online
  await th.connect({ clientId: d, token: created.token })
  await firstClosed
  await sleep(300)
  t.equal((await stored(d)).online, true, 'still online after the old connection closed')
  t.same(await retainedOn(owner.client, presenceTopic(d)), JSON.parse(online(1)), 'the retained presence too')
})

t.test('every path that closes a device connection without a successor leaves it offline', async (t) => {
  await t.test('its token expires', async (t) => {
    const { owner, created } = await newDevice()
    const d = created.device.id
    const short = th.token(
      { sub: d, role: 'device', owner: owner.id, ver: (await stored(d)).tokenVersion },
      2,
    )
    const client = await goOnline(th, created, 1, short)
    await connectionClosed(client, 4000)
    await offlineEverywhere(t, owner, d, 'token expiry')
  })

  await t.test('its token is revoked by rotation', async (t) => {
    const { owner, created } = await newDevice()
    const d = created.device.id
    const client = await goOnline(th, created, 1)
    const closed = connectionClosed(client)
    await ok(owner, 'device.token', { deviceId: d })
    await closed
    await offlineEverywhere(t, owner, d, 'token rotation')
  })

  await t.test('it publishes where it may not', async (t) => {
    const { owner, created } = await newDevice()
    const d = created.device.id
    const client = await goOnline(th, created, 1)
    const closed = connectionClosed(client)
    client.publish('devices/another/reported', '{}', { qos: 1 })
    await closed
    await offlineEverywhere(t, owner, d, 'an unauthorized publish')
  })

  await t.test('it breaks the protocol', async (t) => {
    const { owner, created } = await newDevice()
    const d = created.device.id
    const raw = await rawMqtt(t, th.hub.ports.mqtt)
    raw.send(connectPacket(d, created.token))
    t.ok(await raw.next('connack'))
    raw.send({
      cmd: 'publish',
      topic: presenceTopic(d),
      payload: Buffer.from(online(1)),
      qos: 1,
      messageId: 1,
      retain: true,
      dup: false,
    })
    await waitUntil(async () => (await stored(d)).online, `${d} is online`)
    raw.send({ cmd: 'subscribe', messageId: 0, subscriptions: [{ topic: presenceTopic(d), qos: 1 }] })
    t.ok(await raw.closes(), 'the hub closed the connection')
    await offlineEverywhere(t, owner, d, 'a protocol violation')
  })
})

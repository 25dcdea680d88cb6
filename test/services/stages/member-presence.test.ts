import type { MqttClient } from 'mqtt'
import t, { type Test } from 'tap'
import type { MemberState } from '../../../schemas/actions/stage.ts'
import { Requester, startTestHub, waitUntil } from '../../helpers/hub.ts'

/** docs/protocol/README.md#presence: a stage member is online while any of its user's devices is. */

interface Device {
  id: string
  client: MqttClient
}

async function setUp(t: Test) {
  const th = await startTestHub(t)
  const admin = await th.hub.users.createUser({ name: 'Admin' })
  const bob = await th.hub.users.createUser({ name: 'Bob' })
  const adminApp = new Requester(
    await th.connect({ clientId: 'admin-app', token: th.token({ sub: admin.id }) }),
  )
  const bobClient = await th.connect({ clientId: 'bob-app', token: th.token({ sub: bob.id }) })
  const bobApp = new Requester(bobClient)
  const stage = (await adminApp.request('stage.create', { name: 'Stage' })).result as { id: string }
  const group = (await adminApp.request('group.create', { stageId: stage.id, name: 'G', color: '#123456' }))
    .result as {
    id: string
  }
  const seen: MemberState[] = []
  const memberTopic = `stages/${stage.id}/members/${bob.id}`
  bobClient.on('message', (topic, payload) => {
    if (topic === memberTopic && payload.length > 0) seen.push(JSON.parse(payload.toString()) as MemberState)
  })
  await bobClient.subscribeAsync(`stages/${stage.id}/#`, { qos: 1 }).catch(() => undefined)
  const latest = () => seen.at(-1)
  const until = (what: string, check: (m: MemberState) => boolean) =>
    waitUntil(() => !!latest() && check(latest()!), what)
  const join = async () => {
    const joined = await bobApp.request('stage.join', { stageId: stage.id, groupId: group.id })
    if (!joined.ok) throw new Error(JSON.stringify(joined))
    await bobClient.subscribeAsync(memberTopic, { qos: 1 })
  }
  const device = async (name: string): Promise<Device> => {
    const created = (await bobApp.request('device.create', { name, kind: 'browser' })).result as {
      device: { id: string }
      token: string
    }
    const client = await th.connect({ clientId: created.device.id, token: created.token })
    return { id: created.device.id, client }
  }
  const presence = (d: Device, state: string, session = 1) =>
    d.client.publishAsync(`devices/${d.id}/presence`, JSON.stringify({ state, session }), {
      qos: 1,
      retain: true,
    })
  return { th, bobApp, join, device, presence, until, latest, seen }
}

t.test('a joined member is online exactly while at least one of its devices is', async (t) => {
  const { join, device, presence, until, latest } = await setUp(t)
  await join()
  await until('joined, offline without devices', (m) => m.joined && !m.online)
  t.match(latest(), { joined: true, online: false })

  const laptop = await device('Laptop')
  const box = await device('Box')
  await presence(laptop, 'online')
  await until('online with one device', (m) => m.online)
  await presence(box, 'online')
  await presence(laptop, 'offline')
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.equal(latest()?.online, true, 'still online while the box is')
  await presence(box, 'offline')
  await until('offline when no device is', (m) => !m.online)
  t.equal(latest()?.joined, true, 'and still in the stage')
})

t.test('a member joining while a device is online is online at once; leaving makes it offline', async (t) => {
  const { join, device, presence, until, bobApp, latest } = await setUp(t)
  const laptop = await device('Laptop')
  await presence(laptop, 'online')
  await join()
  await until('online on joining', (m) => m.joined && m.online)
  await bobApp.request('stage.leave')
  await until('left', (m) => !m.joined)
  t.match(latest(), { joined: false, online: false, seat: null })
})

t.test("removing a user's last online device takes its member offline", async (t) => {
  const { join, device, presence, until, bobApp, latest } = await setUp(t)
  await join()
  const laptop = await device('Laptop')
  await presence(laptop, 'online')
  await until('online', (m) => m.online)
  const removed = await bobApp.request('device.remove', { deviceId: laptop.id })
  t.equal(removed.ok, true)
  await until('offline after the removal', (m) => !m.online)
  t.match(latest(), { joined: true, online: false }, 'the member followed the removal')
})

t.test('an abrupt loss of the only device takes the member offline', async (t) => {
  const { join, device, presence, until, th } = await setUp(t)
  await join()
  const laptop = await device('Laptop')
  await presence(laptop, 'online')
  await until('online', (m) => m.online)
  ;(laptop.client as unknown as { stream: { destroy(): void } }).stream.destroy()
  await until('offline after the socket loss', (m) => !m.online)
  t.ok(th.hub, 'the hub keeps running')
})

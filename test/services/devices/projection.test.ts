import type { MqttClient } from 'mqtt'
import t from 'tap'
import type { OvAudio, OvClientConfig } from '../../../schemas/firmware.ts'
import type { AssignmentDoc } from '../../../services/collections.ts'
import type { Transaction } from '../../../services/store/store.ts'
import { Requester, type TestHub, startTestHub, waitUntil } from '../../helpers/hub.ts'

/** What an ov router's router.served leaves in the store: the stage assigned to it, with its relay. */
function relayAnswers(tx: Transaction, stageId: string): void {
  tx.insert<AssignmentDoc>('router_assignments', {
    id: stageId,
    stageId,
    routerId: 'relay-router',
    kinds: ['ov'],
    assignedAt: new Date().toISOString(),
    ov: { ipv4: '198.51.100.9', port: 5555, pin: 1234 },
  })
}

/** An ov-box's devices/{d}/config carries the ov-client configuration and follows the state it is rendered from. */

interface Box {
  id: string
  client: MqttClient
  configs: { revision: string; ov?: OvClientConfig; audio?: OvAudio }[]
}

async function user(th: TestHub, name: string) {
  const doc = await th.hub.users.createUser({ name })
  const client = await th.connect({ clientId: `${name.toLowerCase()}-app`, token: th.token({ sub: doc.id }) })
  return { id: doc.id, app: new Requester(client) }
}

async function ovBox(th: TestHub, app: Requester, inputs: number, channels: number[]): Promise<Box> {
  const { device, token } = (await app.request('device.create', { name: 'Box', kind: 'ovbox' })).result as {
    device: { id: string }
    token: string
  }
  const soundCard = {
    name: 'hw:1',
    driver: 'jack',
    sampleRate: 48000,
    periodSize: 96,
    numPeriods: 2,
    numInputChannels: inputs,
    numOutputChannels: 2,
  }
  await app.request('soundcard.set', { deviceId: device.id, soundCard })
  for (const channel of channels)
    await app.request('track.add', { deviceId: device.id, soundCardName: 'hw:1', channel })
  const client = await th.connect({ clientId: device.id, token })
  const box: Box = { id: device.id, client, configs: [] }
  client.on('message', (topic, payload) => {
    if (topic === `devices/${device.id}/config` && payload.length > 0)
      box.configs.push(JSON.parse(payload.toString()) as Box['configs'][number])
  })
  await client.subscribeAsync(`devices/${device.id}/config`, { qos: 1 })
  await client.publishAsync(
    `devices/${device.id}/presence`,
    JSON.stringify({ state: 'online', session: 1 }),
    { qos: 1, retain: true },
  )
  return box
}

const latest = (box: Box) => box.configs.at(-1)?.ov
const until = (box: Box, what: string, check: (ov: OvClientConfig) => boolean) =>
  waitUntil(() => latest(box) !== undefined && check(latest(box)!), what)

t.test(
  'an ov-box configuration follows the stage, the seats, the other ov-boxes, the mix and the relay',
  async (t) => {
    const th = await startTestHub(t, { RATE_LIMIT_BURST: '200', RATE_LIMIT_ACCOUNT_BURST: '200' })
    const ann = await user(th, 'Ann')
    const bob = await user(th, 'Bob')
    const annBox = await ovBox(th, ann.app, 2, [0])
    await until(annBox, 'a first configuration', (ov) => ov.rendersettings.channels.length === 1)
    t.equal(latest(annBox)!.room.host, '', 'no relay while not on a stage')
    t.same(latest(annBox)!.roomdev, [])

    const stage = (await ann.app.request('stage.create', { name: 'Ov stage', audioType: 'ov' })).result as {
      id: string
    }
    const group = (await ann.app.request('group.create', { stageId: stage.id, name: 'G', color: '#00aa00' }))
      .result as { id: string }
    await ann.app.request('stage.join', { stageId: stage.id, groupId: group.id })
    await until(
      annBox,
      'seat and room after joining',
      (ov) => ov.rendersettings.id === 0 && ov.room.size.x === 25,
    )

    const bobBox = await ovBox(th, bob.app, 2, [0, 1])
    const bobJoin = await bob.app.request('stage.join', { stageId: stage.id, groupId: group.id })
    const bobMemberId = (bobJoin.result as { id: string }).id
    await until(annBox, "Bob's ov-box appears in Ann's session", (ov) => ov.roomdev.length === 1)
    t.match(latest(annBox)!.roomdev[0], { id: 1, label: 'Bob', gain: 1, mute: false })
    t.equal(latest(annBox)!.roomdev[0]!.channels.length, 2, "with Bob's two tracks")
    await until(bobBox, "and Ann's in Bob's", (ov) => ov.roomdev.length === 1 && ov.rendersettings.id === 1)

    await ann.app.request('mix.set', { kind: 'member', id: bobMemberId, volume: 0.5 })
    await until(annBox, "Ann's own mix of Bob", (ov) => ov.roomdev[0]?.gain === 0.5)
    t.equal(latest(bobBox)!.roomdev[0]!.gain, 1, "Ann's mix is hers alone")

    // the router's answer (the routers service records it with the stage's assignment)
    await th.hub.store.transaction(async (tx) => relayAnswers(tx, stage.id))
    await until(
      annBox,
      'the relay of the stage',
      (ov) => ov.room.host === '198.51.100.9' && ov.room.pin === 1234,
    )

    await ann.app.request('device.update', {
      deviceId: annBox.id,
      settings: { receiverType: 'hrtf', sendAudio: false },
    })
    await until(
      annBox,
      'device settings',
      (ov) => ov.rendersettings.rectype === 'hrtf' && !ov.rendersettings.sendlocal,
    )

    await bob.app.request('stage.leave')
    await until(annBox, 'Bob gone from the session after leaving', (ov) => ov.roomdev.length === 0)
    const published = annBox.configs.length
    await ann.app.request('user.update', { avatarUrl: 'https://example.org/a.png' })
    // reports change the device document, never what the device should be
    await annBox.client.publishAsync(
      `devices/${annBox.id}/reported`,
      JSON.stringify({
        status: { cpuLoad: 0.3 },
        appliedConfig: { revision: annBox.configs.at(-1)!.revision, appliedAt: new Date().toISOString() },
      }),
      { qos: 1 },
    )
    await new Promise((resolve) => setTimeout(resolve, 200))
    t.equal(annBox.configs.length, published, 'an unrelated change or a report publishes nothing')
  },
)

t.test('a browser device gets its desired configuration without an ov part', async (t) => {
  const th = await startTestHub(t)
  const ann = await user(th, 'Ann')
  const { device, token } = (await ann.app.request('device.create', { name: 'Tab', kind: 'browser' }))
    .result as {
    device: { id: string }
    token: string
  }
  const client = await th.connect({ clientId: device.id, token })
  const configs: Record<string, unknown>[] = []
  client.on('message', (_topic, payload) =>
    configs.push(JSON.parse(payload.toString()) as Record<string, unknown>),
  )
  await client.subscribeAsync(`devices/${device.id}/config`, { qos: 1 })
  await ann.app.request('device.update', { deviceId: device.id, settings: { sendVideo: true } })
  await waitUntil(
    () => (configs.at(-1)?.desired as { sendVideo?: boolean } | undefined)?.sendVideo === true,
    'desired',
  )
  t.notOk('ov' in configs.at(-1)!)
})

t.test('after a restart every ov-box configuration is rendered again from the store', async (t) => {
  const th = await startTestHub(t)
  const ann = await user(th, 'Ann')
  const box = await ovBox(th, ann.app, 1, [0])
  await until(box, 'configured', (ov) => ov.rendersettings.channels.length === 1)
  await th.restart()
  const again = await th.connect({ clientId: 'ann-app-2', token: th.token({ sub: ann.id }) })
  const config = await new Promise<{ ov?: OvClientConfig }>((resolve, reject) => {
    again.on('message', (_topic, payload) =>
      resolve(JSON.parse(payload.toString()) as { ov?: OvClientConfig }),
    )
    again.subscribeAsync(`devices/${box.id}/config`, { qos: 1 }).catch(reject)
  })
  t.equal(config.ov?.rendersettings.channels.length, 1)
})

t.test(
  "a seated member's ov-box coming online, changing its tracks or going offline changes the others' session",
  async (t) => {
    const th = await startTestHub(t, { RATE_LIMIT_BURST: '200', RATE_LIMIT_ACCOUNT_BURST: '200' })
    const ann = await user(th, 'Ann')
    const bob = await user(th, 'Bob')
    const annBox = await ovBox(th, ann.app, 1, [0])
    const stage = (await ann.app.request('stage.create', { name: 'S' })).result as { id: string }
    const group = (await ann.app.request('group.create', { stageId: stage.id, name: 'G', color: '#0000aa' }))
      .result as { id: string }
    await ann.app.request('stage.join', { stageId: stage.id, groupId: group.id })
    await bob.app.request('stage.join', { stageId: stage.id, groupId: group.id })
    await until(annBox, 'Ann seated', (ov) => ov.rendersettings.id === 0)
    t.same(latest(annBox)!.roomdev, [], 'Bob has no ov-box online yet')

    const bobBox = await ovBox(th, bob.app, 2, [0])
    await until(
      annBox,
      "Bob's ov-box joins Ann's session when it comes online",
      (ov) => ov.roomdev.length === 1,
    )
    // a track added on Bob's box changes no member: Ann's session must follow the device itself
    await bob.app.request('track.add', { deviceId: bobBox.id, soundCardName: 'hw:1', channel: 1 })
    await until(annBox, "Bob's new track in Ann's session", (ov) => ov.roomdev[0]?.channels.length === 2)
    await bobBox.client.publishAsync(
      `devices/${bobBox.id}/presence`,
      JSON.stringify({ state: 'offline', session: 1 }),
      { qos: 1, retain: true },
    )
    await until(annBox, 'and leaves it when it goes offline', (ov) => ov.roomdev.length === 0)
  },
)

t.test(
  "an ov-box's configuration says why it has no audio: no stage, a stage that is not ov, no router, then ready",
  async (t) => {
    const th = await startTestHub(t, { RATE_LIMIT_BURST: '200', RATE_LIMIT_ACCOUNT_BURST: '200' })
    const ann = await user(th, 'Ann')
    const box = await ovBox(th, ann.app, 2, [0])
    const audio = () => box.configs.at(-1)?.audio
    const untilAudio = (state: OvAudio['state']) =>
      waitUntil(() => audio()?.state === state, `audio ${state} (now ${JSON.stringify(audio())})`)

    await untilAudio('no-stage')
    // a stage with the default audioType (mediasoup): the box used to get an empty relay and no hint
    const stage = (await ann.app.request('stage.create', { name: 'Web stage' })).result as { id: string }
    const group = (await ann.app.request('group.create', { stageId: stage.id, name: 'G', color: '#00aa00' }))
      .result as { id: string }
    await ann.app.request('stage.join', { stageId: stage.id, groupId: group.id })
    await untilAudio('stage-not-ov')
    t.match(audio()!.message, /stage "Web stage" has audioType "mediasoup"/)
    t.equal(box.configs.at(-1)!.ov!.room.host, '', 'the relay is empty, and now the box knows why')
    const notOv = box.configs.at(-1)!.revision

    await ann.app.request('stage.update', { stageId: stage.id, patch: { audioType: 'ov' } })
    await untilAudio('no-router')
    t.not(box.configs.at(-1)!.revision, notOv, 'the reason is part of the revision')

    await th.hub.store.transaction(async (tx) => relayAnswers(tx, stage.id))
    await untilAudio('ready')
    t.match(audio()!.message, /198\.51\.100\.9:5555/)

    await ann.app.request('stage.leave')
    await untilAudio('no-stage')
  },
)

import type { MqttClient } from 'mqtt'
import { pino } from 'pino'
import t from 'tap'
import { RouterAgent } from '../../../devices/router/agent.ts'
import type { StageState } from '../../../schemas/actions/stage.ts'
import type { OvClientConfig } from '../../../schemas/firmware.ts'
import type { RouterDoc } from '../../../services/routers/model.ts'
import type { AssignmentDoc } from '../../../services/collections.ts'
import { servedBy } from '../../../services/stages/rules.ts'
import { type Actor, actor, ok, roomy } from '../../helpers/actors.ts'
import { type TestHub, startTestHub, waitUntil } from '../../helpers/hub.ts'
import { freePort } from '../../helpers/proxy.ts'
import { berlin, createRouter, operator } from '../../services/media/fixture.ts'

/**
 * The router agent keeps an ov stage's relay (address, port, PIN) while it serves the stage, and the
 * hub keeps a router's stages while it reconnects after a hub restart: an ov-box's configuration
 * (its revision) is the same before and after.
 */

interface DeviceConfig {
  revision: string
  ov?: OvClientConfig
}

/** An ov-box online and listening to its configuration; `configs` collects what it receives. */
async function connectBox(th: TestHub, id: string, token: string, session: number) {
  const client: MqttClient = await th.connect({ clientId: id, token })
  const configs: DeviceConfig[] = []
  client.on('message', (topic, payload) => {
    if (topic === `devices/${id}/config` && payload.length > 0)
      configs.push(JSON.parse(payload.toString()) as DeviceConfig)
  })
  await client.subscribeAsync(`devices/${id}/config`, { qos: 1 })
  await client.publishAsync(`devices/${id}/presence`, JSON.stringify({ state: 'online', session }), {
    qos: 1,
    retain: true,
  })
  return { client, configs }
}

const relayOf = async (th: TestHub, stageId: string) =>
  servedBy(await th.hub.store.get<AssignmentDoc>('router_assignments', stageId)).ovServer
const routerOnline = async (th: TestHub, routerId: string) =>
  (await th.hub.store.get<RouterDoc>('routers', routerId))?.online === true

t.test(
  'an ov stage keeps its relay (address, port, PIN) and an ov-box its configuration revision across a router reconnect and a hub restart',
  async (t) => {
    const th = await startTestHub(t, { ...roomy, MQTT_PORT: String(await freePort()) })
    const ops = await operator(th)
    const router = await createRouter(ops, 'ov-relay')
    const agent = new RouterAgent(
      {
        hubUrl: th.mqttUrl,
        routerId: router.id,
        token: router.token,
        position: berlin,
        capacity: { mediasoup: 5, ov: 5 },
        ov: { ipv4: '127.0.0.1', port: 5000 },
        listenIp: '127.0.0.1',
        workers: 1,
        keepaliveSeconds: 10,
      },
      { log: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }) },
    )
    await agent.start()
    t.teardown(() => agent.stop())

    const ann: Actor = await actor(th, 'Ann')
    const { device, token } = await ok<{ device: { id: string }; token: string }>(ann, 'device.create', {
      name: 'Box',
      kind: 'ovbox',
    })
    let box = await connectBox(th, device.id, token, 1)
    const stage = await ok<StageState>(ann, 'stage.create', {
      name: 'Ov',
      audioType: 'ov',
      videoType: 'none',
    })
    const group = await ok<{ id: string }>(ann, 'group.create', { stageId: stage.id, name: 'Band' })
    await ok(ann, 'stage.join', { stageId: stage.id, groupId: group.id })
    await waitUntil(
      () => box.configs.at(-1)?.ov?.room.host === '127.0.0.1',
      'the box is configured with the relay',
      10_000,
    )
    const relay = await relayOf(th, stage.id)
    t.match(relay, { router: router.id, ipv4: '127.0.0.1', port: 5000 }, 'the router serves the stage')
    const revision = box.configs.at(-1)!.revision
    t.equal(box.configs.at(-1)!.ov!.room.pin, relay!.pin, 'the box has the relay’s PIN')

    // a router reconnect: the hub loses the router's connection, the agent comes back by itself
    t.equal(
      th.hub.broker.disconnectWhere((who) => who.role === 'router'),
      1,
      'the router’s connection is dropped',
    )
    await waitUntil(async () => !(await routerOnline(th, router.id)), 'the hub sees the router gone', 5000)
    await waitUntil(
      async () => (await routerOnline(th, router.id)) && (await relayOf(th, stage.id)) !== undefined,
      'the router is back and serves the stage again',
      15_000,
    )
    t.same(await relayOf(th, stage.id), relay, 'the same relay after the router reconnected')
    await waitUntil(
      () => box.configs.at(-1)?.ov?.room.host === '127.0.0.1',
      'the box has a relay again',
      5000,
    )
    t.equal(box.configs.at(-1)!.revision, revision, 'the box’s configuration revision is the same')

    // a hub restart: everything reconnects; the router's stages wait for it
    await th.restart()
    box = await connectBox(th, device.id, token, 2)
    await waitUntil(() => box.configs.length > 0, 'the box reads its retained configuration', 5000)
    t.equal(
      box.configs[0]!.revision,
      revision,
      'right after the restart the retained configuration is unchanged (the relay was not withdrawn)',
    )
    await waitUntil(() => routerOnline(th, router.id), 'the router reconnects to the restarted hub', 15_000)
    await waitUntil(() => agent.online, 'the agent is online', 5000)
    // the agent answers router.served again once its assignment arrives
    await new Promise((resolve) => setTimeout(resolve, 500))
    t.same(await relayOf(th, stage.id), relay, 'the same relay after the hub restart')
    t.same(
      box.configs.map((c) => c.revision),
      [revision],
      'the box got no other configuration across the restart',
    )
  },
)

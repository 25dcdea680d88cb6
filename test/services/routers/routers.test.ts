import t from 'tap'
import type { AssignmentDoc } from '../../../services/routers/model.ts'
import type { StageState } from '../../../schemas/actions/stage.ts'
import type { RouterState } from '../../../schemas/actions/router.ts'
import {
  Requester,
  type TestHub,
  connectionClosed,
  recordMessages,
  startTestHub,
  waitUntil,
} from '../../helpers/hub.ts'
import { type Actor, actor, ok, parse, refused, roomy } from '../../helpers/actors.ts'

/** Routers end to end: registry, presence, nearest-first distribution, capacity, failover, removal. */

const berlin = { lat: 52.52, lng: 13.405 }
const newYork = { lat: 40.7128, lng: -74.006 }

async function operator(th: TestHub): Promise<Actor> {
  const client = await th.connect({
    clientId: `ops-${Math.random().toString(36).slice(2)}`,
    token: th.token({ sub: 'ops', role: 'admin' }),
  })
  return { id: 'ops', name: 'operator', client, req: new Requester(client) }
}

interface SimRouter extends Actor {
  token: string
  /** Stage ids currently assigned (retained assignments seen minus cleared ones). */
  assigned(): string[]
}

/** A router process: connects with its token, a last will and an online announcement. */
async function startRouter(
  th: TestHub,
  id: string,
  token: string,
  session: number,
  announce: {
    capabilities?: string[]
    capacity?: Record<string, number>
    position?: { lat: number; lng: number }
  } = {},
): Promise<SimRouter> {
  const client = await th.connect({
    clientId: id,
    token,
    will: {
      topic: `routers/${id}/presence`,
      payload: Buffer.from(JSON.stringify({ state: 'lost', session })),
      qos: 1,
      retain: true,
    },
  })
  const seen = recordMessages(client)
  await client.subscribeAsync(`routers/${id}/assignments/+`, { qos: 1 })
  await client.publishAsync(
    `routers/${id}/presence`,
    JSON.stringify({
      state: 'online',
      session,
      capabilities: announce.capabilities ?? ['mediasoup', 'ov'],
      capacity: announce.capacity ?? { mediasoup: 5, ov: 5 },
      position: announce.position ?? berlin,
      url: `wss://${id}.example.org`,
    }),
    { qos: 1, retain: true },
  )
  const assigned = () => {
    const current = new Map<string, boolean>()
    for (const m of seen.messages) {
      if (!m.topic.startsWith(`routers/${id}/assignments/`)) continue
      const stageId = m.topic.split('/')[3]!
      current.set(stageId, m.payload.length > 0)
    }
    return [...current].filter(([, on]) => on).map(([s]) => s)
  }
  return { id, name: `router ${id}`, token, client, req: new Requester(client), assigned }
}

async function createRouter(ops: Actor, name: string) {
  const { router, token } = await ok<{ router: RouterState; token: string }>(ops, 'router.create', { name })
  return { id: router.id, token }
}

function watchStage(member: Actor, stageId: string) {
  const seen = recordMessages(member.client)
  const latest = () =>
    seen.messages
      .filter((m) => m.topic === `stages/${stageId}`)
      .map((m) => parse(m.payload) as StageState)
      .at(-1)
  return { latest, subscribe: () => member.client.subscribeAsync(`stages/${stageId}`, { qos: 1 }) }
}

t.test('the registry: admins create, rotate and remove routers; nobody else may', async (t) => {
  const th = await startTestHub(t, roomy)
  const ops = await operator(th)
  const alice = await actor(th, 'Alice')
  t.equal(
    (await refused(alice, 'router.create', { name: 'mine' })).code,
    'forbidden',
    'a user cannot create routers',
  )
  const r = await createRouter(ops, 'eu-1')
  const router = await startRouter(th, r.id, r.token, 1)
  const adminView = recordMessages(ops.client)
  await ops.client.subscribeAsync(`routers/${r.id}`, { qos: 1 })
  await waitUntil(
    () => adminView.messages.some((m) => (parse(m.payload) as RouterState | undefined)?.online === true),
    'admins see the router online',
  )
  const doc = parse(adminView.messages.at(-1)!.payload) as RouterState
  t.match(doc, {
    id: r.id,
    name: 'eu-1',
    online: true,
    capabilities: ['mediasoup', 'ov'],
    position: berlin,
    url: `wss://${r.id}.example.org`,
  })
  t.notOk('tokenVersion' in doc, 'the token generation is not published')

  await router.client.publishAsync(`routers/${r.id}/load`, JSON.stringify({ cpu: 0.42, stages: 0 }), {
    qos: 1,
  })
  await waitUntil(
    () => (parse(adminView.messages.at(-1)!.payload) as RouterState | undefined)?.load?.cpu === 0.42,
    'load reports reach the router document',
  )

  const closed = connectionClosed(router.client)
  const rotated = await ok<{ token: string; generation: number }>(ops, 'router.token', { routerId: r.id })
  t.equal(rotated.generation, 2)
  await closed
  t.notOk(router.client.connected, 'rotating the token closes the connection of the old one')
  const again = await startRouter(th, r.id, rotated.token, 2)
  t.ok(again.client.connected, 'the new token connects')
  const gone = connectionClosed(again.client)
  await ok(ops, 'router.remove', { routerId: r.id })
  await gone
  t.notOk(again.client.connected, 'removing the router closes its connection')
  t.equal((await refused(ops, 'router.token', { routerId: r.id })).code, 'not_found')
})

t.test(
  'stages go to the nearest capable router with room, fail over when it is lost, and wait for capacity',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const ops = await operator(th)
    const alice = await actor(th, 'Alice')
    const eu = await createRouter(ops, 'eu')
    const us = await createRouter(ops, 'us')
    const euRouter = await startRouter(th, eu.id, eu.token, 1, {
      position: berlin,
      capacity: { mediasoup: 1, ov: 1 },
    })
    const usRouter = await startRouter(th, us.id, us.token, 1, {
      position: newYork,
      capacity: { mediasoup: 1, ov: 1 },
    })

    const stage = await ok<StageState>(alice, 'stage.create', {
      name: 'Berlin jam',
      preferredPosition: berlin,
      audioType: 'mediasoup',
      videoType: 'mediasoup',
    })
    await waitUntil(() => euRouter.assigned().includes(stage.id), 'the Berlin stage goes to the EU router')
    t.same(usRouter.assigned(), [], 'not to the far one')

    const watch = watchStage(alice, stage.id)
    await watch.subscribe()
    const stranger = await refused(usRouter, 'router.served', {
      stageId: stage.id,
      media: { url: 'wss://evil' },
    })
    t.equal(stranger.code, 'forbidden', 'a router cannot answer for a stage assigned to another')
    t.equal(
      (await refused(alice, 'router.served', { stageId: stage.id, media: { url: 'wss://x' } })).code,
      'forbidden',
    )
    await ok(euRouter, 'router.served', { stageId: stage.id, media: { url: 'wss://eu.example.org/s1' } })
    await waitUntil(
      () => watch.latest()?.mediaRouter?.url === 'wss://eu.example.org/s1',
      'members see the media URL',
    )

    const second = await ok<StageState>(alice, 'stage.create', {
      name: 'Also Berlin',
      preferredPosition: berlin,
      audioType: 'mediasoup',
      videoType: 'none',
    })
    await waitUntil(
      () => usRouter.assigned().includes(second.id),
      'the EU router is full: the next stage goes to the US',
    )

    // abrupt loss: the socket dies, the broker fires the will
    ;(euRouter.client as unknown as { stream: { destroy(): void } }).stream.destroy()
    await waitUntil(
      () => watch.latest()?.mediaRouter === undefined,
      'the lost router no longer serves the stage',
      10000,
    )
    t.same(usRouter.assigned(), [second.id], 'the US router is full, so the Berlin stage waits')

    const third = await ok<StageState>(alice, 'stage.create', {
      name: 'Nothing',
      audioType: 'none',
      videoType: 'none',
    })
    t.ok(third.id, 'a stage without media needs no router')

    await ok(alice, 'stage.remove', { stageId: second.id })
    await waitUntil(
      () => usRouter.assigned().includes(stage.id),
      'removing a stage frees capacity and the waiting stage takes it',
    )
    t.notOk(usRouter.assigned().includes(second.id), "the removed stage's assignment is cleared")
    await ok(usRouter, 'router.served', { stageId: stage.id, media: { url: 'wss://us.example.org/s1' } })
    await waitUntil(
      () => watch.latest()?.mediaRouter?.url === 'wss://us.example.org/s1',
      'members see the new router',
    )

    const back = await startRouter(th, eu.id, eu.token, 2, {
      position: berlin,
      capacity: { mediasoup: 1, ov: 1 },
    })
    const fourth = await ok<StageState>(alice, 'stage.create', {
      name: 'Later',
      preferredPosition: berlin,
      audioType: 'mediasoup',
      videoType: 'none',
    })
    await waitUntil(() => back.assigned().includes(fourth.id), 'a router that comes back takes new stages')
    t.same(usRouter.assigned(), [stage.id], 'a served stage is not moved back')
  },
)

t.test(
  'after a hub restart a router keeps its stages while it reconnects within ROUTER_RETURN_GRACE_SECONDS; one that does not come back loses them after it',
  async (t) => {
    const th = await startTestHub(t, { ...roomy, ROUTER_RETURN_GRACE_SECONDS: '2' })
    const ops = await operator(th)
    const alice = await actor(th, 'Alice')
    const eu = await createRouter(ops, 'eu')
    await startRouter(th, eu.id, eu.token, 1)
    const stage = await ok<StageState>(alice, 'stage.create', { name: 'Jam', audioType: 'mediasoup' })
    const assignedTo = async () =>
      (await th.hub.store.get<AssignmentDoc>('router_assignments', stage.id))?.routerId
    await waitUntil(async () => (await assignedTo()) === eu.id, 'the stage goes to the router')

    await th.restart()
    const started = Date.now()
    t.equal(await assignedTo(), eu.id, 'right after the restart the stage is still the router’s')
    await waitUntil(async () => (await assignedTo()) === undefined, 'the router did not return', 5000)
    const waited = Date.now() - started
    t.ok(waited >= 1500, `the stage was released only after the grace period (${waited} ms)`)

    await startRouter(th, eu.id, eu.token, 2)
    await waitUntil(
      async () => (await assignedTo()) === eu.id,
      'a router that comes back later gets it again',
    )
  },
)

t.test("type filtering and the ov relay: members' ov-box configurations see the relay", async (t) => {
  const th = await startTestHub(t, roomy)
  const ops = await operator(th)
  const alice = await actor(th, 'Alice')
  const media = await createRouter(ops, 'media-only')
  const ov = await createRouter(ops, 'ov-far')
  const mediaRouter = await startRouter(th, media.id, media.token, 1, {
    capabilities: ['mediasoup'],
    position: berlin,
  })
  const ovRouter = await startRouter(th, ov.id, ov.token, 1, {
    capabilities: ['ov'],
    capacity: { ov: 3 },
    position: newYork,
  })
  const stage = await ok<StageState>(alice, 'stage.create', {
    name: 'ov',
    preferredPosition: berlin,
    audioType: 'ov',
    videoType: 'none',
  })
  await waitUntil(
    () => ovRouter.assigned().includes(stage.id),
    'an ov stage goes to the ov router, however far',
  )
  t.same(mediaRouter.assigned(), [])
  t.equal(
    (await refused(ovRouter, 'router.served', { stageId: stage.id, media: { url: 'wss://x' } })).code,
    'invalid_request',
    'an ov stage takes no media URL',
  )
  const group = await ok<{ id: string }>(alice, 'group.create', {
    stageId: stage.id,
    name: 'Band',
    color: '#123456',
  })
  await ok(alice, 'stage.join', { stageId: stage.id, groupId: group.id })
  const { device, token } = await ok<{ device: { id: string }; token: string }>(alice, 'device.create', {
    name: 'Box',
    kind: 'ovbox',
  })
  const box = await th.connect({ clientId: device.id, token })
  const configs = recordMessages(box)
  await box.subscribeAsync(`devices/${device.id}/config`, { qos: 1 })
  await ok(ovRouter, 'router.served', {
    stageId: stage.id,
    ov: { ipv4: '198.51.100.7', port: 5000, pin: 4711 },
  })
  await waitUntil(() => {
    const config = parse(configs.messages.at(-1)?.payload ?? Buffer.alloc(0)) as
      { ov?: { room: { host: string; port: number; pin: number } } } | undefined
    return (
      config?.ov?.room.host === '198.51.100.7' && config.ov.room.port === 5000 && config.ov.room.pin === 4711
    )
  }, "the member's ov-box configuration names the relay")
})

t.test('only a router publishes its own presence, and bad announcements change nothing', async (t) => {
  const th = await startTestHub(t, roomy)
  const ops = await operator(th)
  const r = await createRouter(ops, 'eu')
  const other = await createRouter(ops, 'other')
  const alice = await actor(th, 'Alice')
  const aliceClosed = connectionClosed(alice.client)
  alice.client.publish(`routers/${r.id}/presence`, JSON.stringify({ state: 'online', session: 9 }), {
    qos: 1,
    retain: true,
  })
  await aliceClosed
  t.notOk(alice.client.connected, "a user publishing a router's presence is disconnected")
  const impostor = await startRouter(th, other.id, other.token, 1)
  const impostorClosed = connectionClosed(impostor.client)
  impostor.client.publish(`routers/${r.id}/presence`, JSON.stringify({ state: 'lost', session: 1 }), {
    qos: 1,
    retain: true,
  })
  await impostorClosed
  t.notOk(impostor.client.connected, "a router publishing another router's presence is disconnected")

  const router = await startRouter(th, r.id, r.token, 1)
  const adminView = recordMessages(ops.client)
  await ops.client.subscribeAsync(`routers/${r.id}`, { qos: 1 })
  await waitUntil(() => adminView.messages.length > 0, 'the router document')
  await router.client.publishAsync(
    `routers/${r.id}/presence`,
    JSON.stringify({ state: 'online', session: 2, capabilities: ['teleport'] }),
    { qos: 1, retain: true },
  )
  await router.client.publishAsync(`routers/${r.id}/load`, '{not json', { qos: 1 })
  await router.client.publishAsync(`routers/${r.id}/load`, JSON.stringify({ cpu: 0.1 }), { qos: 1 })
  await waitUntil(
    () => (parse(adminView.messages.at(-1)!.payload) as RouterState).load?.cpu === 0.1,
    'a valid load report after bad ones',
  )
  t.same(
    (parse(adminView.messages.at(-1)!.payload) as RouterState).capabilities,
    ['mediasoup', 'ov'],
    'the invalid announcement changed nothing',
  )
  t.ok(router.client.connected, 'and the router stays connected')
  const retained = await th.connect({ clientId: 'ops-check', token: th.token({ sub: 'ops', role: 'admin' }) })
  const presence = recordMessages(retained)
  await retained.subscribeAsync(`routers/${r.id}/presence`, { qos: 1 })
  await waitUntil(() => presence.messages.length > 0, 'the retained presence')
  t.match(
    parse(presence.messages[0]!.payload),
    { state: 'online', session: 1 },
    'the refused announcement was not retained',
  )
})

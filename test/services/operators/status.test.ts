import t from 'tap'
import { Requester, sleep, startTestHub } from '../../helpers/hub.ts'
import { actor, connectDevice, ok, refused } from '../../helpers/actors.ts'
import { HUB_VERSION } from '../../../services/hub.ts'

interface Status {
  version: string
  startedAt: string
  uptimeSeconds: number
  store: string
  connections: { user: number; device: number; router: number; admin: number; total: number }
}

t.test(
  'hub.status counts the live connections of each role, over TCP and WebSocket, for operators only',
  async (t) => {
    const th = await startTestHub(t)
    const opsClient = await th.connect({ clientId: 'ops-1', token: th.token({ sub: 'ops', role: 'admin' }) })
    const ops = { id: 'ops', name: 'ops', client: opsClient, req: new Requester(opsClient) }
    const status = () => ok<Status>(ops, 'hub.status')

    const alone = await status()
    t.equal(alone.version, HUB_VERSION)
    t.equal(alone.store, 'embedded')
    t.ok(alone.uptimeSeconds >= 0 && Date.parse(alone.startedAt) <= Date.now(), 'uptime since start')
    t.same(alone.connections, { user: 0, device: 0, router: 0, admin: 1, total: 1 }, 'only the operator')

    const alice = await actor(th, 'Alice')
    const web = await th.connect({
      clientId: 'alice-web',
      token: th.token({ sub: alice.id, name: 'Alice' }),
      ws: true,
    })
    const box = await ok<{ device: { id: string }; token: string }>(alice, 'device.create', {
      name: 'Box',
      kind: 'ovbox',
    })
    const device = await connectDevice(th, box.device.id, box.token)
    const router = await ok<{ router: { id: string }; token: string }>(ops, 'router.create', { name: 'r1' })
    const routerClient = await th.connect({ clientId: router.router.id, token: router.token })

    const busy = await status()
    t.same(
      busy.connections,
      { user: 2, device: 1, router: 1, admin: 1, total: 5 },
      'two user connections, a device, a router, the operator',
    )
    t.ok(busy.uptimeSeconds >= alone.uptimeSeconds, 'uptime grows')

    await Promise.all([web.endAsync(), device.client.endAsync(), routerClient.endAsync()])
    let after = await status()
    for (let i = 0; i < 20 && after.connections.total !== 2; i++) {
      await sleep(100)
      after = await status()
    }
    t.same(
      after.connections,
      { user: 1, device: 0, router: 0, admin: 1, total: 2 },
      'closed connections are no longer counted',
    )

    const error = await refused(alice, 'hub.status')
    t.equal(error.code, 'forbidden', 'a user is refused')
    t.match(error.message, /hub operators/)
    const again = await connectDevice(th, box.device.id, box.token)
    t.equal((await refused(again, 'hub.status')).code, 'forbidden', 'a device is refused')
  },
)

import t from 'tap'
import net from 'node:net'
import { Aedes } from 'aedes'
import { LiteClient } from '../../bench/lib/mqtt-lite.ts'
import { close, open } from '../../bench/load/tasks.ts'
import type { Teardown } from '../helpers/hub.ts'

/**
 * What the cluster benchmark asks of the load generator, against real (in-process) Aedes brokers:
 * devices with a last will, and clients spread over several processes' ports by one `open` task.
 */

async function startBroker(t: Teardown): Promise<{ broker: Aedes; port: number; clientIds: string[] }> {
  const broker = await Aedes.createBroker()
  const server = net.createServer(broker.handle)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const clientIds: string[] = []
  broker.on('client', (client) => clientIds.push(client.id))
  t.teardown(async () => {
    await new Promise<void>((resolve) => broker.close(() => resolve()))
    await new Promise((resolve) => server.close(resolve))
  })
  return { broker, port: (server.address() as net.AddressInfo).port, clientIds }
}

function connect(port: number, clientId: string, will?: Parameters<typeof LiteClient.connect>[0]['will']) {
  return LiteClient.connect({ host: '127.0.0.1', port, clientId, keepalive: 0, ...(will ? { will } : {}) })
}

t.test('a connection lost without DISCONNECT publishes its last will, retained', async (t) => {
  const { port } = await startBroker(t)
  const device = connect(port, 'device-1', {
    topic: 'devices/device-1/presence',
    payload: '{"state":"lost","session":7}',
    qos: 1,
    retain: true,
  })
  t.equal(await device.connected, 0, 'the broker accepts the CONNECT with a will')
  const watcher = connect(port, 'watcher')
  await watcher.connected
  const heard = new Promise<string>((resolve) => {
    watcher.onPublish = (_topic, payload) => resolve(payload.toString())
  })
  await watcher.subscribe(['devices/+/presence'], 1)
  device.destroy()
  t.equal(await heard, '{"state":"lost","session":7}', 'the will reaches a subscriber')

  const late = connect(port, 'late')
  await late.connected
  const retained = new Promise<{ topic: string; retain: boolean }>((resolve) => {
    late.onPublish = (topic, _payload, retain) => resolve({ topic, retain })
  })
  await late.subscribe(['devices/+/presence'], 1)
  t.same(await retained, { topic: 'devices/device-1/presence', retain: true }, 'and stays retained')
  watcher.end()
  late.end()
})

t.test('a clean DISCONNECT publishes no will', async (t) => {
  const { port } = await startBroker(t)
  const watcher = connect(port, 'watcher')
  await watcher.connected
  let heard = 0
  watcher.onPublish = () => heard++
  await watcher.subscribe(['w/#'], 1)
  const device = connect(port, 'device-2', { topic: 'w/device-2', payload: 'lost', qos: 1, retain: false })
  await device.connected
  device.end()
  await new Promise((resolve) => setTimeout(resolve, 200))
  await watcher.ping()
  t.equal(heard, 0)
  watcher.end()
})

t.test(
  'one open task spreads its clients over the ports they name (processes behind a balancer)',
  async (t) => {
    const a = await startBroker(t)
    const b = await startBroker(t)
    const ports = [a.port, b.port]
    const clients = Array.from({ length: 6 }, (_, i) => ({ clientId: `c${i}`, port: ports[i % 2]! }))
    const result = await open({
      group: 'spread',
      host: '127.0.0.1',
      port: a.port,
      clients,
      keepalive: 0,
      window: 3,
    })
    t.teardown(() => close({ group: 'spread' }))
    t.equal(result.accepted, 6, 'every client connected')
    t.same(a.clientIds.sort(), ['c0', 'c2', 'c4'], 'the even clients on the first broker')
    t.same(b.clientIds.sort(), ['c1', 'c3', 'c5'], 'the odd ones on the second')
  },
)

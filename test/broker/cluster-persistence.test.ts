import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { pino } from 'pino'
import type { Teardown } from '../helpers/hub.ts'
import { routeOf } from '../../broker/cluster-emitter.ts'
import { DurableRetainedPersistence } from '../../broker/persistence.ts'
import { storeRetainedArchive } from '../../services/retained-archive.ts'
import type { RetainedDoc } from '../../services/collections.ts'
import { EmbeddedBackend } from '../../services/store/embedded.ts'
import { Store } from '../../services/store/index.ts'

// The retained persistence of one process of a cluster (docs/cluster.md#message-bus), on a real
// embedded store's archive.

const log = pino({ level: 'silent' })
const limits = { maxMessages: 100, maxBytes: 1 << 20 }
const retained = (topic: string, payload: string) => ({
  topic,
  payload: Buffer.from(payload),
  qos: 1 as const,
  retain: true,
})

async function storeIn(t: Teardown): Promise<Store> {
  const dir = mkdtempSync(join(tmpdir(), 'stagehub-cluster-persistence-'))
  const store = new Store(EmbeddedBackend.open(dir))
  t.teardown(async () => {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  })
  return store
}

async function read(stream: Readable): Promise<string[]> {
  const out: string[] = []
  for await (const packet of stream as AsyncIterable<{ topic: string; payload: Buffer }>)
    out.push(`${packet.topic}=${String(packet.payload)}`)
  return out
}

async function archived(store: Store): Promise<string[]> {
  const out: string[] = []
  for await (const doc of store.scan<RetainedDoc>('retained'))
    out.push(`${doc.topic}=${Buffer.from(doc.payload, 'base64').toString()}`)
  return out.sort()
}

const member = async (store: Store, processId: string) => {
  const persistence = new DurableRetainedPersistence(await storeRetainedArchive(store), log, limits)
  persistence.joinCluster({ processId, carries: (topic) => routeOf(topic) === 'bus' })
  return persistence
}

t.test(
  'in a cluster, a bus topic is retained when it arrives from the bus, and archived only by the process it came from',
  async (t) => {
    const store = await storeIn(t)
    const p1 = await member(store, 'p1')
    const p2 = await member(store, 'p2')
    await p1.setup({} as never)
    await p2.setup({} as never)
    const presence = retained('devices/d1/presence', '{"state":"online","session":1}')

    await p1.storeRetained(presence)
    t.same(await read(p1.createRetainedStream('devices/#')), [], 'not before the bus brings it back')
    p1.storeArrived(presence, 'p1')
    p2.storeArrived(presence, 'p1')
    for (const p of [p1, p2])
      t.same(await read(p.createRetainedStream('devices/+/presence')), [
        'devices/d1/presence={"state":"online","session":1}',
      ])
    await Promise.all([p1.flush(), p2.flush()])
    t.same(await archived(store), ['devices/d1/presence={"state":"online","session":1}'], 'archived once')

    p2.storeArrived({ ...presence, payload: Buffer.alloc(0) }, 'p1')
    t.same(await read(p2.createRetainedStream('devices/#')), [], 'a cleared topic is forgotten')
  },
)

t.test(
  "in a cluster, the hub's projected state is retained by the process that publishes it and never archived",
  async (t) => {
    const store = await storeIn(t)
    const p1 = await member(store, 'p1')
    await p1.setup({} as never)
    await p1.storeRetained(retained('stages/s1', '{"id":"s1"}'))
    await p1.storeRetained(retained('hub/status', '{"state":"online"}'))
    t.same(await read(p1.createRetainedStreamCombi(['stages/s1', 'hub/status'])), [
      'stages/s1={"id":"s1"}',
      'hub/status={"state":"online"}',
    ])
    await p1.flush()
    t.same(await archived(store), [], 'nothing archived: each process republishes it from the store')
  },
)

t.test(
  'a process that starts keeps what the bus brought during its archive load over the older archive, and loads no projected state',
  async (t) => {
    const store = await storeIn(t)
    const alone = new DurableRetainedPersistence(await storeRetainedArchive(store), log, limits)
    await alone.setup({} as never)
    for (const [topic, payload] of [
      ['devices/d1/presence', 'old d1'],
      ['devices/d2/presence', 'old d2'],
      ['devices/d3/presence', 'd3'],
      ['stages/s1', 'stage from a one-process hub'],
    ] as const)
      await alone.storeRetained(retained(topic, payload))
    await alone.flush()

    const starting = await member(store, 'p3')
    starting.storeArrived(retained('devices/d1/presence', 'new d1'), 'p1')
    starting.storeArrived({ ...retained('devices/d2/presence', ''), payload: Buffer.alloc(0) }, 'p1')
    await starting.setup({} as never)
    t.same(
      (await read(starting.createRetainedStream('#'))).sort(),
      ['devices/d1/presence=new d1', 'devices/d3/presence=d3'],
      "the newer presence wins, the cleared one stays cleared, the archive's other presence loads",
    )
  },
)

t.test("Aedes' dead-broker will replay finds no wills to publish", async (t) => {
  const store = await storeIn(t)
  const p = new DurableRetainedPersistence(await storeRetainedArchive(store), log, limits)
  await p.setup({} as never)
  const persistence = p as unknown as {
    putWill(client: object, packet: object): Promise<void>
    streamWill(brokers?: object): Readable
  }
  await persistence.putWill({ id: 'dev-1', broker: { id: 'gone' } }, { topic: 'devices/dev-1/presence' })
  t.same(await read(persistence.streamWill({})), [], 'none, whichever brokers are alive')
})

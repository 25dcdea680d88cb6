import { createReadStream } from 'node:fs'
import net from 'node:net'
import { createInterface } from 'node:readline'
import { Aedes, type AedesPublishPacket } from 'aedes'

/**
 * The bare-Aedes baseline: Aedes 1.2 with its default in-memory persistence, no authentication, no
 * authorization hooks, no services, on a plain TCP server (noDelay, as the hub's listener). With
 * BENCH_RETAINED_FILE (lines of `topic<TAB>base64 payload`) it starts with that retained set.
 */
const broker = await Aedes.createBroker()

const file = process.env.BENCH_RETAINED_FILE
let retained = 0
if (file) {
  for await (const line of createInterface({ input: createReadStream(file) })) {
    const tab = line.indexOf('\t')
    if (tab < 0) continue
    const packet = {
      cmd: 'publish',
      topic: line.slice(0, tab),
      payload: Buffer.from(line.slice(tab + 1), 'base64'),
      qos: 1,
      retain: true,
      dup: false,
    }
    await new Promise<void>((resolve, reject) =>
      broker.publish(packet as unknown as AedesPublishPacket, (err) => (err ? reject(err) : resolve())),
    )
    retained++
  }
}

const server = net.createServer({ noDelay: true }, (socket) => broker.handle(socket))
server.listen(0, '127.0.0.1', () => {
  process.send!({ type: 'ready', ports: { mqtt: (server.address() as net.AddressInfo).port }, retained })
})

const gc = (globalThis as { gc?: () => void }).gc
process.on('message', (m: { cmd: string }) => {
  if (m.cmd === 'gc') {
    gc?.()
    gc?.()
    process.send!({ type: 'gc', memory: process.memoryUsage() })
  } else if (m.cmd === 'stop') {
    server.close()
    broker.close(() => {
      process.send!({ type: 'stopped' })
      process.exit(0)
    })
  }
})
process.on('disconnect', () => process.exit(0))

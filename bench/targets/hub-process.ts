import { createWriteStream } from 'node:fs'
import type { Readable } from 'node:stream'
import { configFromEnv } from '../../services/config.ts'
import { startHub } from '../../services/hub.ts'

/**
 * The hub as the benchmarks run it: `startHub(configFromEnv())` exactly as `stagehub start` does, in
 * its own process, plus an IPC channel for what only the process itself can do (a full GC before
 * memory is sampled, dumping the retained set so the baselines get the same one, a clean stop).
 */
const hub = await startHub(configFromEnv())
process.send!({ type: 'ready', ports: hub.ports })

const gc = (globalThis as { gc?: () => void }).gc

process.on('message', (m: { cmd: string; file?: string }) => {
  // every failure is reported to the parent by the .catch below
  void (async () => {
    switch (m.cmd) {
      case 'gc':
        gc?.()
        gc?.()
        return process.send!({ type: 'gc', memory: process.memoryUsage() })
      case 'settle': {
        // retained changes written behind to the store (a large batch after start) are written now
        const persistence = (hub.broker.aedes as unknown as { persistence: { flush(): Promise<void> } })
          .persistence
        await persistence.flush()
        return process.send!({ type: 'settled' })
      }
      case 'dump-retained': {
        const persistence = (hub.broker.aedes as unknown as { persistence: unknown }).persistence as {
          createRetainedStream(pattern: string): Readable
        }
        const out = createWriteStream(m.file!)
        let count = 0
        for await (const packet of persistence.createRetainedStream('#')) {
          const { topic, payload } = packet as { topic: string; payload: Buffer }
          if (!out.write(`${topic}\t${payload.toString('base64')}\n`))
            await new Promise<void>((resolve) => out.once('drain', () => resolve()))
          count++
        }
        await new Promise<void>((resolve) => out.end(() => resolve()))
        return process.send!({ type: 'dumped', count })
      }
      case 'stop':
        await hub.close()
        process.send!({ type: 'stopped' })
        return process.exit(0)
    }
  })().catch((err: unknown) => {
    process.send!({ type: 'error', error: String((err as Error).stack ?? err) })
  })
})
process.on('disconnect', () => {
  // the parent is gone, nobody reads an error: the process ends whatever closing did
  void hub.close().finally(() => process.exit(0))
})

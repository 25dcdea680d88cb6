import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { createServer } from 'node:net'
import { Redis } from 'ioredis'
import type { Teardown } from './hub.ts'

const REDIS_SERVER = process.env.REDIS_SERVER ?? 'redis-server'

/** Why Redis tests cannot run here, or false: for `{ skip: redisMissing }`. */
export const redisMissing: string | false =
  spawnSync(REDIS_SERVER, ['--version']).status === 0
    ? false
    : `${REDIS_SERVER} is not installed (Debian package redis-server)`

export interface TestRedis {
  url: string
  port: number
  process: ChildProcess
}

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** A real redis-server on a free port, in memory only, stopped at teardown. */
export async function startRedis(t: Teardown): Promise<TestRedis> {
  const port = await freePort()
  const child = spawn(
    REDIS_SERVER,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  )
  t.teardown(() => {
    child.kill('SIGKILL')
  })
  const url = `redis://127.0.0.1:${port}`
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
  probe.on('error', () => undefined)
  for (let attempt = 0; ; attempt++) {
    try {
      await probe.connect()
      await probe.ping()
      break
    } catch (err) {
      if (attempt > 100 || child.exitCode !== null)
        throw new Error(`redis-server did not start on ${port}`, { cause: err })
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
  probe.disconnect()
  return { url, port, process: child }
}

import type { ChildProcess } from 'node:child_process'
import { REDIS_SERVER, redisServerMissing, startRedisServer } from '../../bench/lib/redis-server.ts'
import type { Teardown } from './hub.ts'

export { REDIS_SERVER }

/** Why Redis tests cannot run here, or false: for `{ skip: redisMissing }`. */
export const redisMissing: string | false = redisServerMissing()

export interface TestRedis {
  url: string
  port: number
  process: ChildProcess
}

/** A real redis-server on a free port, in memory only, stopped at teardown (bench/lib/redis-server.ts). */
export async function startRedis(t: Teardown): Promise<TestRedis> {
  const server = await startRedisServer()
  t.teardown(() => server.stop())
  return { url: server.url, port: server.port, process: server.process }
}

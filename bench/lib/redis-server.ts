import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'
import { Redis } from 'ioredis'
import { freePort } from './procs.ts'

/**
 * A real redis-server on a free port of 127.0.0.1, in memory only (no RDB, no AOF): what the cluster
 * tests (test/helpers/redis.ts) and the cluster benchmark (bench/benchmarks/cluster.ts) share.
 */

/** The redis-server binary: REDIS_SERVER, or the one on PATH (Debian package redis-server). */
export const REDIS_SERVER = process.env.REDIS_SERVER ?? 'redis-server'

/** Why no redis-server can be started here, or false. */
export function redisServerMissing(): string | false {
  return spawnSync(REDIS_SERVER, ['--version']).status === 0
    ? false
    : `${REDIS_SERVER} is not installed (Debian package redis-server, or set REDIS_SERVER)`
}

export interface RedisServer {
  url: string
  port: number
  process: ChildProcess
  /** Kills the server (SIGKILL: nothing is persisted anyway) and resolves once it has exited. */
  stop(): Promise<void>
}

/** Starts redis-server and resolves once it answers PING; `logFile` receives its output. */
export async function startRedisServer(options: { logFile?: string } = {}): Promise<RedisServer> {
  const port = await freePort()
  const log = options.logFile === undefined ? undefined : openSync(options.logFile, 'a')
  const child = spawn(
    REDIS_SERVER,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: log === undefined ? 'ignore' : ['ignore', log, log] },
  )
  if (log !== undefined) closeSync(log)
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await exited
  }
  const url = `redis://127.0.0.1:${port}`
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
  probe.on('error', () => undefined)
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await probe.connect()
        await probe.ping()
        break
      } catch (err) {
        if (attempt > 100 || child.exitCode !== null)
          throw new Error(`redis-server did not start on port ${port}`, { cause: err })
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    }
  } catch (err) {
    await stop()
    throw err
  } finally {
    probe.disconnect()
  }
  return { url, port, process: child, stop }
}

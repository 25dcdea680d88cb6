import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import { TEST_SECRET, type Teardown } from './hub.ts'

const STAGEHUB = fileURLToPath(new URL('../../bin/stagehub.js', import.meta.url))
/** The Node that runs the hub: this test's own (Node 24 when the tests run on it). */
const NODE = process.execPath

export interface HubProcess {
  pid: number
  ports: { mqtt: number; http: number }
  mqttUrl: string
  wsUrl: string
  httpUrl: string
  /** Every log line so far, parsed (pino JSON). */
  readonly logs: readonly Record<string, unknown>[]
  /** Sends a signal (default SIGKILL: a crash, no clean-up at all). */
  kill(signal?: NodeJS.Signals): void
  /** Resolves with the exit code (or signal) once the process has ended. */
  exited: Promise<number | NodeJS.Signals>
  /** Resolves with the first log line for which `matches` is true, or rejects after `timeoutMs`. */
  logLine(
    matches: (line: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>
}

/**
 * A real hub as a child process, the way `stagehub start` runs in production (`node bin/stagehub.js
 * start`), on free ports with its own data directory; resolves once its log says it is listening.
 * `env` is added to the test configuration (JWT_SECRET = TEST_SECRET, ports 0, 127.0.0.1, cheap
 * password hashing, LOG_LEVEL info). Stopped at teardown if still running (SIGTERM, SIGKILL after 5 s).
 */
export async function spawnHub(t: Teardown, env: Record<string, string> = {}): Promise<HubProcess> {
  const dataDir = mkdtempSync(join(tmpdir(), 'stagehub-process-'))
  const child: ChildProcess = spawn(NODE, [STAGEHUB, 'start'], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      JWT_SECRET: TEST_SECRET,
      MQTT_PORT: '0',
      HTTP_PORT: '0',
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      PASSWORD_HASH_COST: '10',
      LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const exited = new Promise<number | NodeJS.Signals>((resolve) =>
    child.once('exit', (code, signal) => resolve(signal ?? code ?? 0)),
  )
  t.teardown(async () => {
    // a clean stop first (what it holds in the store and Redis is let go), a kill if it hangs
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    }
    await exited
    rmSync(dataDir, { recursive: true, force: true })
  })
  const logs: Record<string, unknown>[] = []
  const waiting = new Set<{
    matches: (line: Record<string, unknown>) => boolean
    resolve: (line: Record<string, unknown>) => void
  }>()
  let stderr = ''
  child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)))
  createInterface({ input: child.stdout! }).on('line', (text) => {
    let line: Record<string, unknown>
    try {
      line = JSON.parse(text) as Record<string, unknown>
    } catch {
      line = { msg: text }
    }
    logs.push(line)
    for (const w of waiting)
      if (w.matches(line)) {
        waiting.delete(w)
        w.resolve(line)
      }
  })
  const logLine = (matches: (line: Record<string, unknown>) => boolean, timeoutMs = 30_000) => {
    const seen = logs.find(matches)
    if (seen) return Promise.resolve(seen)
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      const entry = {
        matches,
        resolve: (line: Record<string, unknown>) => {
          clearTimeout(timer)
          resolve(line)
        },
      }
      const timer = setTimeout(() => {
        waiting.delete(entry)
        reject(new Error(`hub process ${child.pid}: no such log line within ${timeoutMs} ms`))
      }, timeoutMs)
      waiting.add(entry)
    })
  }
  const listening = await Promise.race([
    logLine((line) => line.msg === 'stagehub is listening'),
    exited.then((end) => {
      throw new Error(
        `hub process ended (${end}) before it listened: ${stderr || JSON.stringify(logs.slice(-5))}`,
      )
    }),
  ])
  const ports = listening.ports as { mqtt: number; http: number }
  return {
    pid: child.pid!,
    ports,
    mqttUrl: `mqtt://127.0.0.1:${ports.mqtt}`,
    wsUrl: `ws://127.0.0.1:${ports.http}/mqtt`,
    httpUrl: `http://127.0.0.1:${ports.http}`,
    logs,
    kill: (signal = 'SIGKILL') => void child.kill(signal),
    exited,
    logLine,
  }
}

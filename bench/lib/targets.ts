import { type ChildProcess, execFileSync, fork, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, openSync, closeSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort, rssBytes } from './procs.ts'

export type TargetName = 'hub' | 'aedes' | 'mosquitto'

/** A broker under test, in its own process. */
export interface Target {
  name: TargetName
  pid: number
  host: string
  port: number
  httpPort?: number
  /** Milliseconds from spawn to ready (hub: `startHub` resolved and /readyz answered 200). */
  startMs: number
  /** Collects garbage where the target can (Node targets), then samples its memory (bytes). */
  settledMemory(): Promise<MemorySample>
  stop(): Promise<void>
}

export interface HubTarget extends Target {
  name: 'hub'
  dataDir: string
  /** Writes the hub's retained set to `file` (lines of `topic<TAB>base64 payload`); returns how many. */
  dumpRetained(file: string): Promise<number>
  /** Resolves once retained changes written behind to the store so far are written. */
  settle(): Promise<void>
  /** kill -9 (no clean-up, no DISCONNECT, no will handled by this process); resolves once it exited. */
  kill(): Promise<void>
}

export interface MemorySample {
  rss: number
  /** Node targets: V8 heap in use, and memory outside it (Buffers). */
  heapUsed?: number
  external?: number
}

export const BENCH_SECRET = 'bench-secret-that-is-long-enough-0123456789abcdef'
const HOST = '127.0.0.1'
const here = (path: string) => fileURLToPath(new URL(path, import.meta.url))

/**
 * Extra Node flags for one kind of target, for investigations: BENCH_HUB_NODE_ARGS and
 * BENCH_AEDES_NODE_ARGS, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`.
 */
function extraNodeArgs(variable: string): string[] {
  return process.env[variable]?.split(/\s+/).filter(Boolean) ?? []
}

type Reply = { type: string; [key: string]: unknown }

function nextReply(child: ChildProcess, type: string, timeoutMs: number): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup()
      reject(new Error(`no ${type} from pid ${child.pid} within ${timeoutMs} ms`))
    }, timeoutMs)
    const onMessage = (m: Reply) => {
      if (m.type === type) {
        cleanup()
        resolve(m)
      } else if (m.type === 'error') {
        cleanup()
        reject(new Error(String(m.error)))
      }
    }
    const onExit = (code: number | null) => {
      cleanup()
      reject(new Error(`pid ${child.pid} exited (${code}) before ${type}`))
    }
    const cleanup = () => {
      clearTimeout(timer)
      child.off('message', onMessage)
      child.off('exit', onExit)
    }
    child.on('message', onMessage)
    child.once('exit', onExit)
  })
}

/** Every target process still running, so an interrupted run can stop them (Mosquitto has no IPC). */
const running = new Set<ChildProcess>()

/** Kills `child` with the other targets when the run is interrupted (killTargets). */
export function track(child: ChildProcess): void {
  running.add(child)
  child.once('exit', () => running.delete(child))
}

/** Kills every target process this harness started and that is still running. */
export function killTargets(): void {
  for (const child of running) child.kill('SIGKILL')
}

function stopChild(child: ChildProcess, graceful: () => void, timeoutMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('exit', () => {
      clearTimeout(timer)
      resolve()
    })
    graceful()
  })
}

async function nodeMemory(child: ChildProcess): Promise<MemorySample> {
  const reply = nextReply(child, 'gc', 30_000)
  child.send({ cmd: 'gc' })
  const { memory } = (await reply) as unknown as { memory: NodeJS.MemoryUsage }
  return { rss: rssBytes(child.pid), heapUsed: memory.heapUsed, external: memory.external }
}

export interface HubOptions {
  /** An existing DATA_DIR (e.g. seeded); default: a fresh temp directory, removed on stop. */
  dataDir?: string
  env?: Record<string, string>
  logFile: string
}

/** The hub in its own process with the embedded store. */
export async function startHubTarget(options: HubOptions): Promise<HubTarget> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'stagehub-bench-'))
  const log = openSync(options.logFile, 'a')
  const spawnedAt = performance.now()
  const child = fork(here('../targets/hub-process.ts'), [], {
    execArgv: ['--import', 'tsx', '--expose-gc', ...extraNodeArgs('BENCH_HUB_NODE_ARGS')],
    env: {
      ...process.env,
      JWT_SECRET: BENCH_SECRET,
      MQTT_PORT: '0',
      HTTP_PORT: '0',
      HOST,
      DATA_DIR: dataDir,
      LOG_LEVEL: 'info',
      // the request limits (default 20/s per client and per account) are a policy, not a cost: one
      // admin drives the fan-out
      RATE_LIMIT_PER_SECOND: '1000000',
      RATE_LIMIT_BURST: '1000000',
      RATE_LIMIT_ACCOUNT_PER_SECOND: '1000000',
      RATE_LIMIT_ACCOUNT_BURST: '1000000',
      PASSWORD_HASH_COST: '10',
      ...options.env,
    },
    stdio: ['ignore', log, log, 'ipc'],
  })
  track(child)
  closeSync(log)
  let ready: Reply
  try {
    ready = await nextReply(child, 'ready', 300_000)
  } catch (err) {
    child.kill('SIGKILL')
    throw err
  }
  const ports = ready.ports as { mqtt: number; http: number }
  const response = await fetch(`http://${HOST}:${ports.http}/readyz`)
  if (response.status !== 200) throw new Error(`hub /readyz answered ${response.status}`)
  const startMs = performance.now() - spawnedAt
  return {
    name: 'hub',
    pid: child.pid!,
    host: HOST,
    port: ports.mqtt,
    httpPort: ports.http,
    startMs,
    dataDir,
    settledMemory: () => nodeMemory(child),
    async settle() {
      const reply = nextReply(child, 'settled', 120_000)
      child.send({ cmd: 'settle' })
      await reply
    },
    async dumpRetained(file) {
      const reply = nextReply(child, 'dumped', 120_000)
      child.send({ cmd: 'dump-retained', file })
      return (await reply).count as number
    },
    kill() {
      if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
      return new Promise<void>((resolve) => {
        child.once('exit', () => resolve())
        child.kill('SIGKILL')
      })
    },
    async stop() {
      await stopChild(child, () => child.send({ cmd: 'stop' }), 30_000)
      if (!options.dataDir) rmSync(dataDir, { recursive: true, force: true })
    },
  }
}

/** Bare Aedes (no auth, no services) in its own process; optionally preloaded with a retained set. */
export async function startAedesTarget(options: { retainedFile?: string; logFile: string }): Promise<Target> {
  const log = openSync(options.logFile, 'a')
  const spawnedAt = performance.now()
  const child = fork(here('../targets/aedes-process.ts'), [], {
    execArgv: ['--import', 'tsx', '--expose-gc', ...extraNodeArgs('BENCH_AEDES_NODE_ARGS')],
    env: { ...process.env, ...(options.retainedFile ? { BENCH_RETAINED_FILE: options.retainedFile } : {}) },
    stdio: ['ignore', log, log, 'ipc'],
  })
  track(child)
  closeSync(log)
  const ready = await nextReply(child, 'ready', 300_000)
  const startMs = performance.now() - spawnedAt
  return {
    name: 'aedes',
    pid: child.pid!,
    host: HOST,
    port: (ready.ports as { mqtt: number }).mqtt,
    startMs,
    settledMemory: () => nodeMemory(child),
    stop: () => stopChild(child, () => child.send({ cmd: 'stop' })),
  }
}

const MOSQUITTO_CANDIDATES = ['/usr/sbin/mosquitto', '/usr/bin/mosquitto', '/usr/local/sbin/mosquitto']

/** The Mosquitto binary, or undefined when it is not installed. */
export function mosquittoBinary(): string | undefined {
  const env = process.env.MOSQUITTO_BIN
  if (env) return existsSync(env) ? env : undefined
  const found = MOSQUITTO_CANDIDATES.find((p) => existsSync(p))
  if (found) return found
  try {
    return execFileSync('sh', ['-c', 'command -v mosquitto'], { encoding: 'utf8' }).trim() || undefined
  } catch {
    return undefined
  }
}

export function mosquittoVersion(bin: string): string {
  try {
    const out = execFileSync(bin, ['-h'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
    return /version ([\d.]+)/.exec(out)?.[1] ?? 'unknown'
  } catch (err) {
    const out = String((err as { stdout?: string }).stdout ?? '')
    return /version ([\d.]+)/.exec(out)?.[1] ?? 'unknown'
  }
}

function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const socket = net.connect({ host: HOST, port })
      socket.once('connect', () => {
        socket.destroy()
        resolve()
      })
      socket.once('error', () => {
        socket.destroy()
        if (Date.now() > deadline) reject(new Error(`nothing listens on ${port} after ${timeoutMs} ms`))
        else setTimeout(attempt, 20)
      })
    }
    attempt()
  })
}

/** Mosquitto on a free port with a generated configuration (anonymous, no persistence, TCP_NODELAY). */
export async function startMosquittoTarget(bin: string, options: { logFile: string }): Promise<Target> {
  const dir = mkdtempSync(join(tmpdir(), 'stagehub-bench-mosquitto-'))
  const port = await freePort()
  const conf = join(dir, 'mosquitto.conf')
  writeFileSync(
    conf,
    [
      `listener ${port} ${HOST}`,
      'allow_anonymous true',
      'persistence false',
      'set_tcp_nodelay true',
      'max_queued_messages 100000',
      'log_dest stdout',
      'log_type error',
      'log_type warning',
      // running as root, Mosquitto would otherwise switch to the `mosquitto` user
      ...(process.getuid?.() === 0 ? ['user root'] : []),
      '',
    ].join('\n'),
  )
  const log = openSync(options.logFile, 'a')
  const spawnedAt = performance.now()
  const child = spawn(bin, ['-c', conf], { stdio: ['ignore', log, log] })
  track(child)
  closeSync(log)
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`mosquitto exited (${code}); see ${options.logFile}`))),
  )
  exited.catch(() => undefined)
  await Promise.race([waitForPort(port, 10_000), exited])
  const startMs = performance.now() - spawnedAt
  return {
    name: 'mosquitto',
    pid: child.pid!,
    host: HOST,
    port,
    startMs,
    settledMemory: async () => ({ rss: rssBytes(child.pid) }),
    async stop() {
      await stopChild(child, () => child.kill('SIGTERM'))
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

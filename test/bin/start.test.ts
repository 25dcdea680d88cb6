import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import mqtt from 'mqtt'
import t, { type Test } from 'tap'

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const CLI = join(ROOT, 'bin/stagehub.js')

/** The environment of a user who set nothing but free ports and a fresh data directory. */
function freshEnv(dataDir: string, ports: { mqtt?: string; http?: string } = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATA_DIR: dataDir,
    MQTT_PORT: ports.mqtt ?? '0',
    HTTP_PORT: ports.http ?? '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
  }
  delete env.JWT_SECRET
  delete env.JWT_PUBLIC_KEY
  return env
}

/** Every process below `pid`, read from /proc (no procps needed). */
function descendants(pid: number): number[] {
  const children = readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
        // "pid (comm) state ppid …": comm may hold spaces, so count from its closing parenthesis
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid
      } catch {
        return false // gone meanwhile
      }
    })
    .map(Number)
  return [...children, ...children.flatMap(descendants)]
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Resolves once nothing listens on `port` any more: it can be listened on again. */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

interface RunningHub {
  npm: ChildProcess
  exited: Promise<number | null>
  /** The hub's log lines so far. */
  log: string[]
  ports: { mqtt: number; http: number }
  /** From the log line that says where the generated secret is. */
  secretFile: string
  dataDir: string
  env: NodeJS.ProcessEnv
}

/** `npm start` in the checkout with nothing configured but a fresh DATA_DIR and free ports; killed at teardown. */
async function npmStart(t: Test, options: { detached?: boolean } = {}): Promise<RunningHub> {
  const dataDir = mkdtempSync(join(tmpdir(), 'stagehub-start-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const env = freshEnv(dataDir)
  const npm = spawn('npm', ['start', '--silent'], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.detached ?? false,
  })
  const exited = new Promise<number | null>((resolve) => npm.once('exit', (code) => resolve(code)))
  let stderr = ''
  const log: string[] = []
  npm.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  // a failed test must not leave a hub holding ports; the ones stopped cleanly have no descendants left
  t.teardown(() => {
    for (const pid of descendants(npm.pid!).filter(alive)) process.kill(pid, 'SIGKILL')
    npm.kill('SIGKILL')
  })
  const seen = await new Promise<{ ports: { mqtt: number; http: number }; secretFile: string }>(
    (resolve, reject) => {
      let ports: { mqtt: number; http: number } | undefined
      createInterface({ input: npm.stdout! }).on('line', (line) => {
        log.push(line)
        const entry = JSON.parse(line) as { msg: string; ports?: typeof ports; file?: string }
        if (entry.msg === 'stagehub is listening') ports = entry.ports
        if (ports && entry.file && /generated a signing secret/.test(entry.msg))
          resolve({ ports, secretFile: entry.file })
      })
      npm.once('exit', () => reject(new Error(`npm start exited before it was ready: ${stderr}`)))
    },
  )
  return { npm, exited, log, dataDir, env, ...seen }
}

/** After a stop: exit code 0, none of the processes npm ran is left, both ports can be listened on again. */
async function assertStoppedCleanly(t: Test, hub: RunningHub, processes: number[]): Promise<void> {
  t.equal(await hub.exited, 0, 'npm start exits 0')
  t.same(processes.filter(alive), [], 'no process of the hub is left (before: the tsx child kept running)')
  t.ok(await portFree(hub.ports.mqtt), `MQTT port ${hub.ports.mqtt} is free again`)
  t.ok(await portFree(hub.ports.http), `HTTP port ${hub.ports.http} is free again`)
}

t.test(
  'npm start without JWT_SECRET: a generated secret (mode 600, logged) that the CLI in another process signs with; SIGTERM to npm exits 0, frees the ports and leaves no process',
  async (t) => {
    const hub = await npmStart(t)
    t.equal(hub.secretFile, join(hub.dataDir, 'jwt-secret'), 'the log says where the secret is')
    t.equal(statSync(hub.secretFile).mode & 0o777, 0o600)
    const secret = readFileSync(hub.secretFile, 'utf8').trim()
    t.ok(secret.length >= 43, 'the file holds 32 random bytes')

    const minted = await run('node', [CLI, 'token', '--role', 'user', '--sub', 'u-cli'], { env: hub.env })
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${hub.ports.mqtt}`, {
      clientId: 'cli-token',
      username: 'token',
      password: minted.stdout.trim(),
      protocolVersion: 4,
      reconnectPeriod: 0,
    })
    t.ok(client.connected, 'the hub accepts a token the CLI signed with no JWT_SECRET set')
    client.end(true)

    const processes = descendants(hub.npm.pid!)
    t.ok(processes.length >= 1, `npm runs the hub as ${processes.length} process(es)`)
    hub.npm.kill('SIGTERM')
    await assertStoppedCleanly(t, hub, processes)
    t.notOk(
      hub.log.some((line) => line.includes(secret)),
      `the secret is in none of the ${hub.log.length} log lines`,
    )
  },
)

t.test('Ctrl-C (SIGINT to the whole process group of npm start) stops the hub cleanly', async (t) => {
  const hub = await npmStart(t, { detached: true })
  const processes = descendants(hub.npm.pid!)
  process.kill(-hub.npm.pid!, 'SIGINT')
  await assertStoppedCleanly(t, hub, processes)
})

t.test(
  'a port already in use ends start-up with exit 1 and a message naming the port and its variable (before: a hang)',
  async (t) => {
    const busy = net.createServer()
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve))
    t.teardown(() => busy.close())
    const port = String((busy.address() as net.AddressInfo).port)
    // MQTT opens first; a busy HTTP port fails after MQTT is listening, which must be closed again
    for (const variable of ['MQTT_PORT', 'HTTP_PORT'] as const) {
      const dataDir = mkdtempSync(join(tmpdir(), 'stagehub-busy-'))
      t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
      const env = freshEnv(dataDir, variable === 'MQTT_PORT' ? { mqtt: port } : { http: port })
      const started = Date.now()
      const failed = await run('node', [CLI, 'start'], { env, timeout: 60_000 }).then(
        () => undefined,
        (err: { code: number | null; killed: boolean; stderr: string }) => err,
      )
      t.equal(failed?.killed, false, `${variable}: the process ended by itself in ${Date.now() - started} ms`)
      t.equal(failed?.code, 1, `${variable}: exit code 1`)
      t.match(
        failed?.stderr,
        new RegExp(
          `${variable}: port ${port} on 127\\.0\\.0\\.1 is already in use.*set ${variable} to a free port`,
        ),
      )
    }
  },
)

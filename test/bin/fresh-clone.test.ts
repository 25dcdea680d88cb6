import { execFile, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t from 'tap'

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const enabled = process.env.STAGEHUB_TEST_FRESH_CLONE === '1'

// npm ci with an empty cache downloads every package and may compile better-sqlite3: minutes
t.setTimeout(20 * 60_000)

t.test(
  "README's first commands, in a fresh clone with an empty npm cache and no mediasoup worker, give a hub that answers /readyz",
  {
    skip: enabled
      ? false
      : 'takes minutes and downloads every package: set STAGEHUB_TEST_FRESH_CLONE=1 (.ci/run does)',
  },
  async (t) => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
    const first = /```sh\n([^`]*)```/.exec(readme)?.[1]?.trim().split('\n')
    t.same(first, ['npm ci', 'npm start'], "the README's first commands, as a user copies them")

    const home = mkdtempSync(join(tmpdir(), 'stagehub-fresh-'))
    t.teardown(() => rmSync(home, { recursive: true, force: true }))
    const clone = join(home, 'stagehub')
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      npm_config_cache: join(home, 'npm-cache'),
      HTTP_PORT: '0',
      MQTT_PORT: '0',
      HOST: '127.0.0.1',
    }
    for (const name of ['MEDIASOUP_WORKER_BIN', 'JWT_SECRET', 'JWT_PUBLIC_KEY', 'DATA_DIR', 'MONGO_URL'])
      delete env[name]

    const started = Date.now()
    await run('git', ['clone', '--quiet', ROOT, clone])
    await run('npm', ['ci', '--no-audit', '--no-fund'], { cwd: clone, env, maxBuffer: 64 * 1024 * 1024 })
    const installed = Date.now()
    t.comment(`git clone + npm ci: ${Math.round((installed - started) / 1000)} s`)
    if (existsSync(join(clone, 'node_modules/mediasoup/package.json')))
      t.comment('mediasoup could be installed here (its worker was downloadable)')

    const hub = spawn('npm', ['start', '--silent'], { cwd: clone, env, stdio: ['ignore', 'pipe', 'inherit'] })
    const exited = new Promise<number | null>((resolve) => hub.once('exit', (code) => resolve(code)))
    t.teardown(() => hub.kill('SIGKILL'))
    const http = await new Promise<number>((resolve, reject) => {
      createInterface({ input: hub.stdout }).on('line', (line) => {
        const entry = JSON.parse(line) as { msg: string; ports?: { http: number } }
        if (entry.msg === 'stagehub is listening' && entry.ports) resolve(entry.ports.http)
      })
      hub.once('exit', () => reject(new Error('npm start exited before listening')))
    })
    const ready = await fetch(`http://127.0.0.1:${http}/readyz`)
    t.equal(ready.status, 200, 'the hub is ready')
    t.comment(`clone to ready hub: ${Math.round((Date.now() - started) / 1000)} s`)
    t.ok(existsSync(join(clone, 'data/jwt-secret')), 'with a generated secret in ./data')
    hub.kill('SIGTERM')
    t.equal(await exited, 0)
  },
)

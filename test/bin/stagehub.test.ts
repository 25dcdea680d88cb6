import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { promisify } from 'node:util'
import mqtt from 'mqtt'
import t from 'tap'
import { createTokenService } from '../../broker/tokens.ts'
import { TEST_SECRET } from '../helpers/hub.ts'

const run = promisify(execFile)
const CLI = new URL('../../bin/stagehub.ts', import.meta.url).pathname
const nodeArgs = ['--import=tsx', CLI]

t.test('token prints a token the hub verifies, with the claims asked for', async (t) => {
  const { stdout } = await run(
    'node',
    [...nodeArgs, 'token', '--role', 'device', '--sub', 'd1', '--owner', 'u1', '--ver', '3', '--ttl', '120'],
    {
      env: { ...process.env, JWT_SECRET: TEST_SECRET },
    },
  )
  const identity = createTokenService({ algorithm: 'HS256', secret: TEST_SECRET }).verify(stdout.trim())
  t.match(identity, { role: 'device', id: 'd1', owner: 'u1', ver: 3 })
  t.ok(identity.exp - Date.now() / 1000 <= 120)
})

t.test('a CLI call with a missing option fails with a message and a non-zero exit', async (t) => {
  const failed = await run('node', [...nodeArgs, 'token', '--sub', 'x'], {
    env: { ...process.env, JWT_SECRET: TEST_SECRET },
  }).then(
    () => undefined,
    (err: { code: number; stderr: string }) => err,
  )
  t.ok(failed && failed.code !== 0)
  t.match(failed?.stderr, /--role/)
})

t.test(
  'user create + start: the hub serves the new user, and SIGTERM publishes hub/status offline and exits 0',
  async (t) => {
    const dataDir = mkdtempSync(join(tmpdir(), 'stagehub-cli-'))
    t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
    const env = {
      ...process.env,
      JWT_SECRET: TEST_SECRET,
      DATA_DIR: dataDir,
      MQTT_PORT: '0',
      HTTP_PORT: '0',
      HOST: '127.0.0.1',
      PASSWORD_HASH_COST: '10',
    }

    const created = await run(
      'node',
      [
        ...nodeArgs,
        'user',
        'create',
        '--name',
        'Cli',
        '--email',
        'cli@example.org',
        '--password',
        'long enough pw',
      ],
      { env },
    )
    const { userId, token } = JSON.parse(created.stdout) as { userId: string; token: string }

    const hub = spawn('node', [...nodeArgs, 'start'], { env, stdio: ['ignore', 'pipe', 'inherit'] })
    const exited = new Promise<number | null>((resolve) => hub.once('exit', (code) => resolve(code)))
    t.teardown(() => hub.kill('SIGKILL'))
    const ports = await new Promise<{ mqtt: number; http: number }>((resolve, reject) => {
      const lines = createInterface({ input: hub.stdout })
      lines.on('line', (line) => {
        const entry = JSON.parse(line) as { msg: string; ports?: { mqtt: number; http: number } }
        if (entry.msg === 'stagehub is listening' && entry.ports) resolve(entry.ports)
      })
      hub.once('exit', () => reject(new Error('the hub exited before listening')))
    })

    const ready = await fetch(`http://127.0.0.1:${ports.http}/readyz`)
    t.equal(ready.status, 200)

    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${ports.mqtt}`, {
      clientId: 'cli-user',
      username: 't',
      password: token,
      reconnectPeriod: 0,
    })
    const statuses: string[] = []
    let profile: unknown
    client.on('message', (topic, payload) => {
      if (topic === 'hub/status') statuses.push((JSON.parse(payload.toString()) as { state: string }).state)
      else profile = JSON.parse(payload.toString())
    })
    await client.subscribeAsync(['hub/status', `users/${userId}`], { qos: 1 })
    await new Promise((resolve) => setTimeout(resolve, 200))
    t.match(
      profile,
      { id: userId, name: 'Cli' },
      'the profile of a user created offline is published at start',
    )
    t.same(statuses, ['online'])

    hub.kill('SIGTERM')
    t.equal(await exited, 0, 'clean exit')
    t.same(statuses, ['online', 'offline'], 'subscribers hear the hub go offline before it closes')
    client.end(true)
  },
)

import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { actor, roomy } from '../../helpers/actors.ts'
import { startTestHub, waitUntil } from '../../helpers/hub.ts'
import { registerBox, watchDevice } from './fixture.ts'

const run = promisify(execFile)
const CLI = new URL('../../../devices/ovbox/main.ts', import.meta.url).pathname

t.test('the CLI runs the agent from its config file; SIGTERM publishes offline and exits 0', async (t) => {
  const th = await startTestHub(t, roomy)
  const owner = await actor(th, 'Owner')
  const box = await registerBox(t, th, owner)
  const view = await watchDevice(owner, box.deviceId)
  const file = join(box.dir, 'agent.json')
  writeFileSync(file, JSON.stringify(box.config, null, 2))

  const child = spawn('node', ['--import=tsx', CLI, '--config', file], {
    env: { ...process.env, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  t.teardown(() => void child.kill('SIGKILL'))

  await view.until((d) => d.online && d.soundCards.length === 2, 'the agent process is online', 20_000)
  const online = view.presences.at(-1)!
  t.equal(online.state, 'online')

  child.kill('SIGTERM')
  t.equal(await exited, 0, `exit code 0 ${stderr}`)
  await waitUntil(
    () => view.presences.at(-1)?.state === 'offline' && view.presences.at(-1)?.session === online.session,
    'presence offline of the same session',
  )
  await view.until((d) => !d.online, 'the device document says offline')
  t.notOk(
    view.presences.some((p) => p?.state === 'lost'),
    'a clean shutdown is offline, never lost',
  )
})

t.test('an invalid or missing config file: exit code 2 and a message naming the problem', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ovbox-cli-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const fails = (args: string[]) =>
    run('node', ['--import=tsx', CLI, ...args]).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => err,
    )

  const invalid = join(dir, 'invalid.json')
  writeFileSync(
    invalid,
    JSON.stringify({
      hubUrl: 'http://hub.example.org',
      deviceId: 'd1',
      token: 'x',
      ovClientConfigPath: '/tmp/ov.json',
      ovClientRestartCommand: [],
      firmwareInstallCommand: [],
      stateDir: '/tmp/state',
      soundCardsPath: '/proc/asound/cards',
      statusIntervalSeconds: 10,
      keepaliveSeconds: 30,
    }),
  )
  const badUrl = await fails(['--config', invalid])
  t.equal(badUrl.code, 2)
  t.match(badUrl.stderr, /invalid configuration .*invalid\.json: hubUrl must match pattern/)

  const unknown = join(dir, 'unknown.json')
  writeFileSync(unknown, JSON.stringify({ hubUrl: 'mqtt://h:1883', colour: 'red' }))
  t.match((await fails(['--config', unknown])).stderr, /invalid configuration/)

  const notJson = join(dir, 'broken.json')
  writeFileSync(notJson, '{"hubUrl": ')
  t.match((await fails(['--config', notJson])).stderr, /is not JSON/)

  const missing = await fails(['--config', join(dir, 'nope.json')])
  t.equal(missing.code, 2)
  t.match(missing.stderr, /cannot read the configuration .*nope\.json/)

  const noArgs = await fails([])
  t.equal(noArgs.code, 2)
  t.match(noArgs.stderr, /--config is required/)
})

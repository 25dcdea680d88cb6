import { execFile, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { promisify } from 'node:util'
import mqtt from 'mqtt'
import t from 'tap'
import { createTokenService } from '../../broker/tokens.ts'
import { actor, ok } from '../helpers/actors.ts'
import { TEST_SECRET, connackCode, connectionClosed, startTestHub } from '../helpers/hub.ts'

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

t.test(
  'user reset-password against the data directory of a running hub: its old sessions close within seconds, old tokens and the old password are refused, the printed token and the new password work',
  async (t) => {
    const dataDir = mkdtempSync(join(tmpdir(), 'stagehub-reset-'))
    t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
    const th = await startTestHub(t, { DATA_DIR: dataDir })
    const env = { ...process.env, JWT_SECRET: TEST_SECRET, DATA_DIR: dataDir, PASSWORD_HASH_COST: '10' }
    const login = (password: string) =>
      fetch(`${th.httpUrl}/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email: 'reset@example.org', password }),
      })
    const signup = (await (
      await fetch(`${th.httpUrl}/auth/signup`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email: 'reset@example.org', password: 'forgotten passphrase', name: 'Reset' }),
      })
    ).json()) as { userId: string; token: string }
    const session = await th.connect({ clientId: 'forgetful', token: signup.token })
    const closed = connectionClosed(session, 5000)

    const reset = await run(
      'node',
      [
        ...nodeArgs,
        'user',
        'reset-password',
        '--email',
        'Reset@Example.org',
        '--password',
        'a new passphrase',
      ],
      { env },
    )
    const printed = JSON.parse(reset.stdout) as { userId: string; token: string; generation: number }
    t.match(printed, { userId: signup.userId, generation: 1 })
    const started = Date.now()
    await closed
    t.ok(
      Date.now() - started < 5000,
      `the running hub closed the old session ${Date.now() - started} ms later`,
    )
    const probe = (password: string) =>
      connackCode(th.mqttUrl, { clientId: 'probe', username: 'token', password })
    t.equal(await probe(signup.token), 5, 'the old token is refused (CONNACK 5)')
    t.equal(await probe(printed.token), 0, 'the printed token connects')
    t.equal((await login('forgotten passphrase')).status, 401, 'the old password is refused')
    t.equal((await login('a new passphrase')).status, 200, 'the new password logs in')

    // asked for on standard input when not given, here piped as a script would
    const child = spawn('node', [...nodeArgs, 'user', 'reset-password', '--id', signup.userId], { env })
    let out = ''
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()))
    child.stdin.end('typed passphrase\n')
    t.equal(await new Promise((resolve) => child.once('exit', resolve)), 0)
    t.match(JSON.parse(out), { userId: signup.userId, generation: 2 })
    t.equal((await login('typed passphrase')).status, 200, 'the password read from standard input works')
  },
)

t.test('user reset-password refuses an unknown user or a short password, and changes nothing', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'stagehub-reset-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const env = { ...process.env, JWT_SECRET: TEST_SECRET, DATA_DIR: dataDir, PASSWORD_HASH_COST: '10' }
  const fail = (args: string[]) =>
    run('node', [...nodeArgs, 'user', 'reset-password', ...args], { env }).then(
      () => undefined,
      (err: { code: number; stderr: string }) => err,
    )
  const unknown = await fail(['--email', 'nobody@example.org', '--password', 'long enough pw'])
  t.equal(unknown?.code, 1)
  t.match(unknown?.stderr, /not_found: a user with the e-mail address nobody@example.org does not exist/)
  const short = await fail(['--id', 'u1', '--password', 'short'])
  t.match(short?.stderr, /the password value must NOT have fewer than 8 characters/)
  const both = await fail(['--id', 'u1', '--email', 'a@example.org', '--password', 'long enough pw'])
  t.match(both?.stderr, /either --id ID or --email E/)
})

/** A CLI run that is expected to fail: its exit code and standard error. */
async function fails(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stderr: string }> {
  return run('node', [...nodeArgs, ...args], { env }).then(
    () => ({ code: 0, stderr: '' }),
    (err: { code: number; stderr: string }) => err,
  )
}

t.test('ids that start with "-" are values, after a space or an equals sign', async (t) => {
  const env = { ...process.env, JWT_SECRET: TEST_SECRET }
  const tokens = createTokenService({ algorithm: 'HS256', secret: TEST_SECRET })
  for (const args of [
    ['--sub', '-abc', '--role', 'device', '--owner', '-own', '--ver', '1'],
    ['--sub=-abc', '--role=device', '--owner=-own', '--ver=1'],
    ['--role', 'device', '--sub', '--abc', '--owner', '-own', '--ver', '1'],
  ]) {
    const { stdout } = await run('node', [...nodeArgs, 'token', ...args], { env })
    const identity = tokens.verify(stdout.trim())
    t.match(
      identity,
      { role: 'device', id: args.includes('--abc') ? '--abc' : '-abc', owner: '-own' },
      args.join(' '),
    )
  }
})

t.test('wrong options get a usage message naming the options (exit 2), never a stack trace', async (t) => {
  const env = { ...process.env, JWT_SECRET: TEST_SECRET }
  for (const [args, message] of [
    [['token', '--role', 'user', '--sub'], /--sub <value>' argument missing.*takes --role, --sub/],
    [['token', '--role', 'user', '--sub', 'a', '--colour', 'red'], /Unknown option '--colour'.*takes --role/],
    [['token', '--role', 'user', '--sub', 'a', '-x'], /Unknown option '-x'/],
    [
      ['token', '--role', 'user', '--sub', 'a/b'],
      /--sub must be an id of 1-64 characters \[A-Za-z0-9_-\], got "a\/b"/,
    ],
    [['token', '--role', 'user', '--sub', 'a', '--ttl', '1h'], /--ttl must be a whole number of seconds/],
    [
      ['provision', '--device', '-box', '--hub-url', 'mqtt://127.0.0.1:1883', '--bogus'],
      /Unknown option '--bogus'/,
    ],
  ] as const) {
    const failed = await fails([...args], env)
    t.equal(failed.code, 2, args.join(' '))
    t.match(failed.stderr, message, args.join(' '))
    t.notMatch(failed.stderr, /\n\s+at /, 'no stack trace')
  }
})

t.test(
  'provision without --out writes into DATA_DIR/provision/ID (mode 700), not the working directory, and says where',
  async (t) => {
    const th = await startTestHub(t)
    const alice = await actor(th, 'Alice')
    const { device } = await ok<{ device: { id: string } }>(alice, 'device.create', {
      name: 'Box',
      kind: 'ovbox',
    })
    const cwd = mkdtempSync(join(tmpdir(), 'stagehub-cwd-'))
    t.teardown(() => rmSync(cwd, { recursive: true, force: true }))
    const env = { ...process.env, JWT_SECRET: TEST_SECRET, DATA_DIR: th.dataDir }
    const { stdout } = await run(
      'node',
      // tsx by its path: from another directory node cannot find it by name
      [
        `--import=${import.meta.resolve('tsx')}`,
        CLI,
        'provision',
        '--device',
        device.id,
        '--hub-url',
        th.mqttUrl,
      ],
      { env, cwd },
    )
    t.same(readdirSync(cwd), [], 'nothing written to the working directory')
    const dir = join(th.dataDir, 'provision', device.id)
    t.ok(stdout.includes(join(dir, 'agent.json')), 'it prints the full path of the token file')
    t.equal(statSync(join(th.dataDir, 'provision')).mode & 0o777, 0o700)
    t.equal(statSync(dir).mode & 0o777, 0o700, 'only the operator may open the folder')
    t.equal(statSync(join(dir, 'agent.json')).mode & 0o777, 0o600)
    const { token } = JSON.parse(readFileSync(join(dir, 'agent.json'), 'utf8')) as { token: string }
    t.equal(await connackCode(th.mqttUrl, { clientId: device.id, username: 'box', password: token }), 0)
    t.notOk(existsSync(join(cwd, `provision-${device.id}`)))

    const unknown = await fails(['provision', '--device', '-box', '--hub-url', th.mqttUrl], env)
    t.equal(unknown.code, 1)
    t.match(unknown.stderr, /device -box is not registered/)
  },
)

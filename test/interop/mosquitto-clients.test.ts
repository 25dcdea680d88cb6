import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import t from 'tap'
import { startTestHub } from '../helpers/hub.ts'

const run = promisify(execFile)

/**
 * The README's walk-through with Debian's mosquitto-clients: a token from the CLI-equivalent signer,
 * mosquitto_sub on documented topics, mosquitto_pub of a request.
 */
const available = await run('mosquitto_sub', ['--help']).then(
  () => true,
  (err: { code?: string }) => err.code !== 'ENOENT',
)

t.test(
  'mosquitto_sub and mosquitto_pub work against the documented topics',
  { skip: available ? false : 'mosquitto-clients is not installed (apt-get install mosquitto-clients)' },
  async (t) => {
    const th = await startTestHub(t)
    const user = await th.hub.users.createUser({ name: 'Mo' })
    const token = th.token({ sub: user.id, name: 'Mo' })
    const port = String(th.hub.ports.mqtt)
    const common = ['-h', '127.0.0.1', '-p', port, '-u', 'token', '-P', token, '-V', 'mqttv311']

    const status = await run('mosquitto_sub', [
      ...common,
      '-i',
      'mo-status',
      '-t',
      'hub/status',
      '-C',
      '1',
      '-W',
      '5',
    ])
    t.match(JSON.parse(status.stdout), { state: 'online' }, 'hub/status is retained and readable by anyone')

    const profile = await run('mosquitto_sub', [
      ...common,
      '-i',
      'mo-profile',
      '-t',
      `users/${user.id}`,
      '-C',
      '1',
      '-W',
      '5',
    ])
    t.match(JSON.parse(profile.stdout), { id: user.id, name: 'Mo' }, "the user's own profile is retained")

    // a request through mosquitto_pub (its response goes to clients/mo-cli-pub/res, which nobody else may read)
    await run('mosquitto_pub', [
      ...common,
      '-i',
      'mo-cli-pub',
      '-t',
      'clients/mo-cli-pub/req/user.update',
      '-q',
      '1',
      '-m',
      JSON.stringify({ id: 'cli-1', params: { name: 'Maude' } }),
    ])
    const updated = await run('mosquitto_sub', [
      ...common,
      '-i',
      'mo-profile2',
      '-t',
      `users/${user.id}`,
      '-C',
      '1',
      '-W',
      '5',
    ])
    t.match(
      JSON.parse(updated.stdout),
      { name: 'Maude', version: 2 },
      'the request was applied and the profile republished',
    )

    const spy = await run('mosquitto_sub', [
      ...common,
      '-i',
      'mo-spy',
      '-t',
      'users/someone-else',
      '-C',
      '1',
      '-W',
      '2',
    ]).then(
      ({ stdout, stderr }) => stdout + stderr,
      (err: { stdout?: string; stderr?: string }) => `${err.stdout ?? ''}${err.stderr ?? ''}`,
    )
    t.match(spy, /denied/, "another user's profile is refused (SUBACK 0x80)")
  },
)

import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import t from 'tap'
import { collections } from '../../../services/collections.ts'
import { roomy } from '../../helpers/actors.ts'
import { startTestHub } from '../../helpers/hub.ts'

const CLI = new URL('../../../devices/simulator/main.ts', import.meta.url).pathname

t.test(
  'the simulator CLI registers N boxes, runs them, prints stats, and removes them on SIGTERM',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const user = await th.hub.users.createUser({ name: 'Load tester' })
    const token = th.token({ sub: user.id, name: 'Load tester' })
    const child = spawn(
      'node',
      [
        '--import=tsx',
        CLI,
        '--hub',
        th.mqttUrl,
        '--user-token',
        token,
        '--count',
        '3',
        '--every',
        '0.2',
        '--remove',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    )
    t.teardown(() => void child.kill('SIGKILL'))
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    const lines: Record<string, unknown>[] = []
    const allOnline = new Promise<void>((resolve) => {
      createInterface({ input: child.stdout }).on('line', (line) => {
        const parsed = JSON.parse(line) as Record<string, unknown>
        lines.push(parsed)
        if (parsed.event === 'stats' && parsed.online === 3) resolve()
      })
    })
    await allOnline
    const registered = lines.find((l) => l.event === 'registered') as { devices: string[] }
    t.equal(registered.devices.length, 3, 'three devices registered')
    const stored = await th.hub.store.find(collections.devices.name, { owner: user.id })
    t.equal(stored.length, 3)

    child.kill('SIGTERM')
    t.equal(await exited, 0, 'exit code 0')
    t.match(lines.at(-1), { event: 'stopped', online: 0 })
    t.same(await th.hub.store.find(collections.devices.name, { owner: user.id }), [], '--remove removed them')
  },
)

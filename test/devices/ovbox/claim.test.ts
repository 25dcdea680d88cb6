import { execFile, spawn } from 'node:child_process'
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { AgentConfig } from '../../../schemas/firmware.ts'
import { validator } from '../../../schemas/validate.ts'
import { bundleOvbox } from '../../../scripts/bundle-ovbox.ts'
import { OVBOX_PATHS } from '../../../devices/ovbox/provisioning.ts'
import { actor, ok, roomy } from '../../helpers/actors.ts'
import { type Teardown, connackCode, startTestHub } from '../../helpers/hub.ts'
import { registerBox, watchDevice } from './fixture.ts'

const run = promisify(execFile)

/** The bundle, built once and copied alone into a directory with no node_modules anywhere above it. */
async function bundleInEmptyDir(t: Teardown): Promise<{ agentJs: string; unit: string }> {
  const build = mkdtempSync(join(tmpdir(), 'ovbox-bundle-build-'))
  const dir = mkdtempSync(join(tmpdir(), 'ovbox-bundle-'))
  t.teardown(() => {
    rmSync(build, { recursive: true, force: true })
    rmSync(dir, { recursive: true, force: true })
  })
  const built = await bundleOvbox(build)
  copyFileSync(built, join(dir, OVBOX_PATHS.bundle))
  chmodSync(join(dir, OVBOX_PATHS.bundle), 0o755)
  return { agentJs: join(dir, OVBOX_PATHS.bundle), unit: join(build, basename(OVBOX_PATHS.unit)) }
}

t.test(
  'the bundle alone claims a box with the owner’s code, and the agent it configured goes online',
  async (t) => {
    const { agentJs, unit } = await bundleInEmptyDir(t)
    const cwd = dirname(agentJs)
    t.match(
      readFileSync(unit, 'utf8'),
      `ExecStart=/usr/bin/node ${OVBOX_PATHS.installDir}/${OVBOX_PATHS.bundle} --config`,
    )
    t.same(readdirSync(cwd), [OVBOX_PATHS.bundle], 'the bundle is alone in its directory')
    const help = await run('node', [agentJs, '--help'], { cwd })
    t.match(help.stdout, /stagehub-ovbox claim CODE --hub/, '--help names the claim command')
    const asCommand = await run(agentJs, ['--help'], { cwd })
    t.equal(asCommand.stdout, help.stdout, 'the bundle is an executable for plain Node (#!/usr/bin/env node)')

    const th = await startTestHub(t, roomy)
    const owner = await actor(th, 'Owner')
    // the box's own files (fake ALSA, state dir) and an image's agent.json with a stale device and token
    const box = await registerBox(t, th, owner)
    const configPath = join(box.dir, 'agent.json')
    writeFileSync(configPath, JSON.stringify({ ...box.config, deviceId: 'stale', token: 'stale' }))
    const view = await watchDevice(owner, box.deviceId)

    const { code } = await ok<{ code: string }>(owner, 'device.claimCode', { deviceId: box.deviceId })
    const started = performance.now()
    const claimed = await run('node', [agentJs, 'claim', code, '--hub', th.httpUrl, '--config', configPath], {
      cwd,
    })
    t.match(claimed.stdout, `claimed device ${box.deviceId} on ${th.mqttUrl}: wrote ${configPath}`)
    t.equal(statSync(configPath).mode & 0o777, 0o600, 'agent.json is readable by its owner only')
    const config = JSON.parse(readFileSync(configPath, 'utf8')) as AgentConfig
    const valid = validator(AgentConfig)
    t.ok(valid(config), valid.describe())
    t.same(
      { ...config, token: '' },
      { ...box.config, hubUrl: th.mqttUrl, deviceId: box.deviceId, token: '' },
      'the hub address, device id and token are replaced; the box’s own settings kept',
    )
    t.equal(
      await connackCode(th.mqttUrl, { clientId: box.deviceId, username: 't', password: box.token }),
      5,
      'the token the box had before is revoked',
    )

    const agent = spawn('node', [agentJs, '--config', configPath], {
      cwd,
      env: { ...process.env, LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    let stderr = ''
    agent.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    const exited = new Promise<number | null>((resolve) => agent.once('exit', (c) => resolve(c)))
    t.teardown(() => void agent.kill('SIGKILL'))
    await view.until((d) => d.online && d.soundCards.length === 2, 'the claimed box is online', 20_000)
    t.comment(`claim → box online: ${Math.round(performance.now() - started)} ms`)
    agent.kill('SIGTERM')
    t.equal(await exited, 0, `the agent stops cleanly ${stderr}`)
    await view.until((d) => !d.online, 'offline after SIGTERM')

    const before = readFileSync(configPath, 'utf8')
    const reused = await run('node', [agentJs, 'claim', code, '--hub', th.httpUrl, '--config', configPath], {
      cwd,
    }).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => err,
    )
    t.equal(reused.code, 1, 'a used code: exit 1')
    t.match(reused.stderr, /the hub refused the claim \(409 conflict\): this claim code was used at/)
    t.equal(readFileSync(configPath, 'utf8'), before, 'and the configuration is untouched')
  },
)

t.test(
  'the claim command: wrong or expired codes and unreachable hubs exit 1 and write nothing',
  async (t) => {
    const th = await startTestHub(t, { ...roomy, CLAIM_CODE_TTL_SECONDS: '1' })
    const owner = await actor(th, 'Owner')
    const { device } = await ok<{ device: { id: string } }>(owner, 'device.create', {
      name: 'Box',
      kind: 'ovbox',
    })
    const { code } = await ok<{ code: string }>(owner, 'device.claimCode', { deviceId: device.id })
    const dir = mkdtempSync(join(tmpdir(), 'ovbox-claim-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const configPath = join(dir, 'etc', 'agent.json')
    const CLI = new URL('../../../devices/ovbox/main.ts', import.meta.url).pathname
    const claim = (...args: string[]) =>
      run('node', ['--import=tsx', CLI, 'claim', ...args, '--config', configPath]).then(
        (r) => ({ code: 0, stderr: r.stderr }),
        (err: { code: number; stderr: string }) => err,
      )

    const wrong = await claim(code === 'AAAA-AAAA' ? 'BBBB-BBBB' : 'AAAA-AAAA', '--hub', th.httpUrl)
    t.equal(wrong.code, 1)
    t.match(wrong.stderr, /\(404 not_found\): no such claim code: check what you typed/)
    const unreachable = await claim(code, '--hub', 'http://127.0.0.1:9')
    t.equal(unreachable.code, 1)
    t.match(unreachable.stderr, /cannot reach http:\/\/127.0.0.1:9/)
    const notHttp = await claim(code, '--hub', th.mqttUrl)
    t.match(notHttp.stderr, /--hub must be an http:\/\/ or https:\/\/ address/)
    const blocked = await run('node', [
      '--import=tsx',
      CLI,
      'claim',
      code,
      '--hub',
      th.httpUrl,
      '--config',
      '/dev/null/agent.json',
    ]).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => err,
    )
    t.equal(blocked.code, 1)
    t.match(
      blocked.stderr,
      /cannot write \/dev\/null\/agent.json .*choose --config/,
      'checked before the code is used',
    )
    const missing = await claim('--hub', th.httpUrl)
    t.equal(missing.code, 2, 'no code: wrong use')
    await new Promise((resolve) => setTimeout(resolve, 1100))
    const expired = await claim(code, '--hub', th.httpUrl)
    t.equal(expired.code, 1)
    t.match(
      expired.stderr,
      /\(409 conflict\): this claim code expired at/,
      'expired, not used: no attempt used it up',
    )
    t.notOk(existsSync(configPath), 'nothing was written')
  },
)

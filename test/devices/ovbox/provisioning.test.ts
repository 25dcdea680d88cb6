import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { OVBOX_PATHS, renderAgentConfig, renderAgentUnit } from '../../../devices/ovbox/provisioning.ts'
import { AgentConfig } from '../../../schemas/firmware.ts'
import { validator } from '../../../schemas/validate.ts'
import { actor, ok, roomy } from '../../helpers/actors.ts'
import { TEST_SECRET, connackCode, startTestHub } from '../../helpers/hub.ts'

const run = promisify(execFile)
const CLI = new URL('../../../bin/stagehub.ts', import.meta.url).pathname
const validAgentConfig = validator(AgentConfig)

t.test(
  'the agent configuration names the hub, the device and its token, and passes its schema',
  async (t) => {
    const config = renderAgentConfig({
      hubUrl: 'mqtts://hub.example.org:8883',
      deviceId: 'box1',
      token: 'jwt',
    })
    t.ok(validAgentConfig(config), validAgentConfig.describe())
    t.match(config, {
      hubUrl: 'mqtts://hub.example.org:8883',
      deviceId: 'box1',
      token: 'jwt',
      ovClientConfigPath: OVBOX_PATHS.ovClientConfig,
      stateDir: OVBOX_PATHS.stateDir,
    })
    t.notOk('caPath' in config, 'no CA unless one is given')
    t.equal(
      renderAgentConfig({ hubUrl: 'mqtt://h:1883', deviceId: 'b', token: 'j', caPath: '/etc/ca.pem' }).caPath,
      '/etc/ca.pem',
    )
    t.throws(
      () => renderAgentConfig({ hubUrl: 'http://hub', deviceId: 'b', token: 'j' }),
      /mqtt:\/\/host:port/,
      'a hub address that is not MQTT is refused with the expected form',
    )
  },
)

t.test('the systemd unit starts the agent with its configuration and restarts it', async (t) => {
  const unit = renderAgentUnit()
  t.match(unit, `ExecStart=/usr/bin/node /opt/stagehub/agent.mjs --config ${OVBOX_PATHS.agentConfig}`)
  t.match(unit, /^Restart=always$/m)
  t.match(unit, /^After=network-online.target sound.target$/m)
  t.match(unit, /^StateDirectory=stagehub-agent$/m)
  t.match(unit, /^WantedBy=multi-user.target$/m)
  t.match(renderAgentUnit({ agentConfig: '/tmp/a.json' }), /--config \/tmp\/a.json$/m)
})

t.test('stagehub provision writes files with a working device token of the current generation', async (t) => {
  const th = await startTestHub(t, roomy)
  const alice = await actor(th, 'Alice')
  const { device } = await ok<{ device: { id: string } }>(alice, 'device.create', {
    name: 'Box',
    kind: 'ovbox',
  })
  const browser = await ok<{ device: { id: string } }>(alice, 'device.create', {
    name: 'Tab',
    kind: 'browser',
  })
  const out = mkdtempSync(join(tmpdir(), 'stagehub-provision-'))
  const env = { ...process.env, JWT_SECRET: TEST_SECRET, DATA_DIR: th.dataDir }
  const provision = (...args: string[]) => run('node', ['--import=tsx', CLI, 'provision', ...args], { env })

  const { stdout } = await provision('--device', device.id, '--hub-url', th.mqttUrl, '--out', out)
  t.match(stdout, /systemctl enable --now stagehub-ovbox-agent.service/, 'it says what to do with the files')
  const config = JSON.parse(readFileSync(join(out, 'agent.json'), 'utf8')) as AgentConfig
  t.ok(validAgentConfig(config), 'agent.json passes the AgentConfig schema')
  t.equal(
    statSync(join(out, 'agent.json')).mode & 0o777,
    0o600,
    'the token file is readable by its owner only',
  )
  t.match(readFileSync(join(out, 'stagehub-ovbox-agent.service'), 'utf8'), /ExecStart=/)
  t.equal(
    await connackCode(th.mqttUrl, { clientId: device.id, username: 'box', password: config.token }),
    0,
    'the box connects',
  )

  await ok(alice, 'device.token', { deviceId: device.id })
  t.equal(
    await connackCode(th.mqttUrl, { clientId: device.id, username: 'box', password: config.token }),
    5,
    'a rotation revokes a provisioned token like any other',
  )

  for (const [args, message] of [
    [['--device', 'nope', '--hub-url', th.mqttUrl, '--out', out], /not registered/],
    [['--device', browser.device.id, '--hub-url', th.mqttUrl, '--out', out], /not an ov-box/],
    [['--device', device.id, '--hub-url', 'http://x', '--out', out], /mqtt:\/\/host:port/],
    [['--device', device.id], /--hub-url/],
  ] as const) {
    const failed = await provision(...args).then(
      () => undefined,
      (err: { code: number; stderr: string }) => err,
    )
    t.ok(failed && failed.code !== 0, `refused: ${args.join(' ')}`)
    t.match(failed?.stderr, message)
  }
})

import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { withDefaults } from '../../../devices/router/agent.ts'
import { ConfigError, loadRouterConfig } from '../../../devices/router/config.ts'
import { SessionCounter } from '../../../devices/router/sessions.ts'

const base = {
  hubUrl: 'mqtts://hub.example.org:8883',
  routerId: 'r1',
  token: 'secret',
  position: { lat: 52.5, lng: 13.4 },
  capacity: { mediasoup: 10 },
}

t.test('the configuration file, the environment over it, and the defaults', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'router-config-'))
  const file = join(dir, 'router.json')
  writeFileSync(file, JSON.stringify(base))
  t.same(loadRouterConfig(file, {}), base)
  const env = {
    ROUTER_TOKEN: 'newer',
    ROUTER_POSITION: '40.7,-74',
    ROUTER_OV_CAPACITY: '4',
    ROUTER_RTC_PORTS: '41000-41999',
    ROUTER_OV_RELAY: '203.0.113.7:5000:1234',
    ROUTER_ANNOUNCED_ADDRESS: 'media.example.org',
  }
  t.same(loadRouterConfig(file, env), {
    ...base,
    token: 'newer',
    position: { lat: 40.7, lng: -74 },
    capacity: { mediasoup: 10, ov: 4 },
    rtcMinPort: 41000,
    rtcMaxPort: 41999,
    ov: { ipv4: '203.0.113.7', port: 5000, pin: 1234 },
    announcedAddress: 'media.example.org',
  })
  const onlyEnv = loadRouterConfig(undefined, {
    ROUTER_HUB_URL: 'mqtt://127.0.0.1:1883',
    ROUTER_ID: 'r2',
    ROUTER_TOKEN: 't',
    ROUTER_POSITION: '1,2',
    ROUTER_CAPACITY: '3',
  })
  t.match(withDefaults(onlyEnv), {
    routerId: 'r2',
    capacity: { mediasoup: 3 },
    listenIp: '0.0.0.0',
    rtcMinPort: 40000,
    rtcMaxPort: 49999,
    url: 'webrtc://0.0.0.0',
    loadIntervalSeconds: 10,
    keepaliveSeconds: 30,
  })
  t.ok(withDefaults(onlyEnv).workers >= 1, 'one worker per core by default')

  t.throws(() => loadRouterConfig(join(dir, 'missing.json'), {}), ConfigError)
  t.throws(() => loadRouterConfig(file, { ROUTER_POSITION: 'somewhere' }), /ROUTER_POSITION/)
  t.throws(() => loadRouterConfig(file, { ROUTER_RTC_PORTS: '5000-4000' }), /rtcMinPort/)
  t.throws(
    () => loadRouterConfig(undefined, {}),
    /invalid router configuration: value must have required property/,
  )
  writeFileSync(file, JSON.stringify({ ...base, capacity: { mediasoup: 1, webrtc: 2 } }))
  t.throws(() => loadRouterConfig(file, {}), /unknown field "webrtc"/)
})

t.test('presence sessions grow across restarts, with or without a state file', async (t) => {
  const counter = new SessionCounter()
  const first = counter.next()
  t.ok(first >= Date.now() - 1000, 'time-based without a file')
  t.ok(counter.next() > first)
  const file = join(mkdtempSync(join(tmpdir(), 'router-state-')), 'state.json')
  const a = new SessionCounter(file).next()
  t.same(JSON.parse(readFileSync(file, 'utf8')), { session: a })
  writeFileSync(file, JSON.stringify({ session: a + 1_000_000 }))
  t.equal(
    new SessionCounter(file).next(),
    a + 1_000_001,
    'a remembered session is never reused, even if the clock went back',
  )
})

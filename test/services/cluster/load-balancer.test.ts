import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import mqtt from 'mqtt'
import t from 'tap'
import { createTokenService } from '../../../broker/tokens.ts'
import { topics } from '../../../schemas/topics.ts'
import { TEST_SECRET, waitUntil } from '../../helpers/hub.ts'
import { spawnHub } from '../../helpers/hub-process.ts'
import { freePort } from '../../helpers/proxy.ts'
import { freshMongoUrl, mongoMissing } from '../../helpers/mongo.ts'
import { redisMissing, startRedis } from '../../helpers/redis.ts'

const HAPROXY = process.env.HAPROXY ?? 'haproxy'
const haproxyMissing =
  spawnSync(HAPROXY, ['-v']).status === 0 ? false : `${HAPROXY} is not installed (Debian package haproxy)`

/**
 * The shipped haproxy.cfg (docker-compose.yml's load balancer) with the test's addresses: the hubs on
 * 127.0.0.1 instead of Docker's DNS names, the frontends on free ports, checks every 200 ms instead of
 * every second, `balance first`, so that the first hub takes every client until it is gone, and
 * fewer connections (haproxy refuses to start where it cannot have a file descriptor for each).
 */
function haproxyConfig(
  frontends: { mqtt: number; http: number },
  hubs: readonly { mqtt: number; http: number }[],
): string {
  let config = readFileSync(fileURLToPath(new URL('../../../haproxy.cfg', import.meta.url)), 'utf8')
  config = config
    .replace(/^resolvers docker\n(?:[ \t]+.*\n)*/m, '')
    .replace(/ resolvers docker/g, '')
    .replace(/inter 1s/g, 'inter 200ms')
    .replace(/balance leastconn/g, 'balance first')
    // a test machine's file descriptor limit, not a production one's
    .replace(/maxconn \d+/, 'maxconn 1000')
    .replace(/bind :1883/, `bind 127.0.0.1:${frontends.mqtt}`)
    .replace(/bind :8080/, `bind 127.0.0.1:${frontends.http}`)
  hubs.forEach((hub, i) => {
    config = config
      .replace(`hub-${i + 1}:1883 port 8080`, `127.0.0.1:${hub.mqtt} port ${hub.http}`)
      .replace(`hub-${i + 1}:8080`, `127.0.0.1:${hub.http}`)
  })
  return config.replace(/^\s*log .*$/gm, '')
}

t.test(
  'clients behind the shipped haproxy.cfg reconnect to the other hub process when theirs is killed, and are served there',
  { skip: haproxyMissing || redisMissing || mongoMissing },
  async (t) => {
    const redis = await startRedis(t)
    const mongoUrl = freshMongoUrl(t)
    const env = { MONGO_URL: mongoUrl, REDIS_URL: redis.url }
    const p1 = await spawnHub(t, { ...env, HUB_ID: 'p1' })
    const p2 = await spawnHub(t, { ...env, HUB_ID: 'p2' })
    const frontends = { mqtt: await freePort(), http: await freePort() }
    const dir = mkdtempSync(join(tmpdir(), 'stagehub-haproxy-'))
    const file = join(dir, 'haproxy.cfg')
    writeFileSync(file, haproxyConfig(frontends, [p1.ports, p2.ports]))
    t.equal(spawnSync(HAPROXY, ['-c', '-q', '-f', file]).status, 0, 'haproxy accepts the configuration')
    const balancer = spawn(HAPROXY, ['-db', '-f', file], { stdio: 'ignore' })
    t.teardown(() => void balancer.kill('SIGKILL'))
    await waitUntil(
      async () =>
        (await fetch(`http://127.0.0.1:${frontends.http}/readyz`).catch(() => undefined))?.ok === true,
      'HTTP through haproxy',
      10_000,
    )

    const tokens = createTokenService({ algorithm: 'HS256', secret: TEST_SECRET })
    const clientId = 'ann-app'
    const client = mqtt.connect(`mqtt://127.0.0.1:${frontends.mqtt}`, {
      clientId,
      username: 'token',
      password: tokens.sign({ sub: 'ann', name: 'Ann', role: 'user' }, 3600).token,
      protocolVersion: 4,
      reconnectPeriod: 200,
      connectTimeout: 2000,
    })
    t.teardown(() => client.end(true))
    let connects = 0
    client.on('connect', () => connects++)
    const answers = new Map<string, { ok: boolean; result?: { id: string } }>()
    client.on('message', (topic, payload) => {
      const answer = JSON.parse(payload.toString()) as { id: string; ok: boolean; result?: { id: string } }
      answers.set(answer.id, answer)
    })
    await waitUntil(() => client.connected, 'connected through haproxy', 10_000)
    await client.subscribeAsync(topics.response.build(clientId), { qos: 1 })
    const request = async (id: string, name: string) => {
      await client.publishAsync(
        topics.request.build(clientId, 'stage.create'),
        JSON.stringify({ id, params: { name } }),
        { qos: 1 },
      )
      await waitUntil(() => answers.has(id), `answer to ${id}`, 15_000)
      return answers.get(id)!
    }
    t.ok((await request('before', 'Before the crash')).ok, 'served through haproxy (by p1: balance first)')

    const killedAt = Date.now()
    p1.kill('SIGKILL')
    await p1.exited
    await waitUntil(() => connects >= 2 && client.connected, 'reconnected through haproxy', 15_000)
    const reconnectedMs = Date.now() - killedAt
    // a clean session: the new connection subscribes again
    await client.subscribeAsync(topics.response.build(clientId), { qos: 1 })
    const after = await request('after', 'After the crash')
    // p1 is gone: the answer can only come from p2
    t.ok(after.ok, `served by p2 after p1 was killed (reconnected ${reconnectedMs} ms after the kill)`)
  },
)

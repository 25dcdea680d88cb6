import { readFileSync } from 'node:fs'
import t from 'tap'
import { parse } from 'yaml'

/**
 * docker-compose.yml and haproxy.cfg describe one deployment (docs/cluster.md#running-several-processes).
 * `docker compose config` cannot run where the tests run (no Docker), so this reads both files and
 * checks that they refer to each other and to the hub consistently: every host a URL or the load
 * balancer names is a service, every hub is a distinct process of the same deployment, and the
 * health check asks the hub's real readiness route.
 */

const root = new URL('../../', import.meta.url)
const read = (file: string) => readFileSync(new URL(file, root), 'utf8')

interface Service {
  image?: string
  build?: string
  environment?: Record<string, string>
  command?: string[]
  ports?: string[]
  volumes?: string[]
  depends_on?: string[] | Record<string, unknown>
}

const compose = parse(read('docker-compose.yml'), { merge: true }) as {
  services: Record<string, Service>
  volumes?: Record<string, unknown>
}
const services = compose.services
const names = new Set(Object.keys(services))
const hubs = Object.entries(services).filter(([, s]) => s.build === '.')
const haproxyCfg = read('haproxy.cfg')

/** `host:port` pairs of a URL that may list several hosts (a MongoDB seed list). */
function hostsOf(url: string): { host: string; port: number }[] {
  const authority = url.replace(/^[a-z+]+:\/\//, '').split('/')[0]!
  return authority.split(',').map((entry) => {
    const [host, port] = entry.split(':')
    return { host: host!, port: Number(port) }
  })
}

t.test(
  'two hub processes of one deployment: distinct HUB_IDs, the same store, Redis and secret',
  async (t) => {
    t.equal(hubs.length, 2, 'two hubs built from this repository')
    const ids = hubs.map(([, s]) => s.environment?.HUB_ID)
    t.equal(new Set(ids).size, 2, `distinct HUB_IDs: ${ids.join(', ')}`)
    for (const key of ['MONGO_URL', 'REDIS_URL', 'JWT_SECRET'])
      t.equal(new Set(hubs.map(([, s]) => s.environment?.[key])).size, 1, `one ${key} for both`)
    const config = read('services/config.ts')
    for (const key of Object.keys(hubs[0]![1].environment!))
      t.ok(config.includes(`env.${key}`), `${key} is read by services/config.ts`)
    for (const [name, hub] of hubs)
      t.notOk(hub.ports, `${name} publishes no port: clients go through the load balancer`)
  },
)

t.test('every host a hub connects to is a service of the file, on its default port', async (t) => {
  const env = hubs[0]![1].environment!
  for (const { host, port } of [...hostsOf(env.MONGO_URL!), ...hostsOf(env.REDIS_URL!)]) {
    t.ok(names.has(host), `${host} is a service`)
    t.ok(port === 27017 || port === 6379, `${host}:${port}`)
  }
  const replicaSet = new URL(env.MONGO_URL!.replace(/,[^/]+/, '')).searchParams.get('replicaSet')
  const members = hostsOf(env.MONGO_URL!).map(({ host }) => services[host]!)
  t.ok(members.length >= 3, 'a replica set of three members')
  for (const member of members)
    t.same(member.command?.slice(0, 2), ['--replSet', replicaSet], 'in the same replica set')
  for (const [name, service] of Object.entries(services)) {
    const dependsOn = Array.isArray(service.depends_on)
      ? service.depends_on
      : Object.keys(service.depends_on ?? {})
    for (const dependency of dependsOn)
      t.ok(names.has(dependency), `${name} depends on ${dependency}, a service`)
    for (const volume of service.volumes ?? []) {
      const source = volume.split(':')[0]!
      if (source.startsWith('./'))
        t.ok(read(source.slice(2)), `${name} mounts ${source}, a file of the repository`)
      else t.ok(compose.volumes && source in compose.volumes, `${name} mounts the named volume ${source}`)
    }
  }
})

t.test(
  'the load balancer publishes MQTT and HTTP and sends both to every hub, checked on /readyz',
  async (t) => {
    const [name, haproxy] = Object.entries(services).find(([, s]) => s.image?.startsWith('haproxy'))!
    t.same(
      haproxy.ports?.sort(),
      ['1883:1883', '8080:8080'],
      `${name} publishes 1883 (MQTT) and 8080 (HTTP, WebSocket)`,
    )
    t.ok(
      haproxy.volumes?.some((v) => v.startsWith('./haproxy.cfg:')),
      'with haproxy.cfg',
    )
    const servers = [...haproxyCfg.matchAll(/^\s*server\s+(\S+)\s+([^:\s]+):(\d+)(.*)$/gm)].map((m) => ({
      host: m[2]!,
      port: Number(m[3]),
      rest: m[4]!,
    }))
    for (const [hub] of hubs) {
      t.ok(
        servers.some((s) => s.host === hub && s.port === 1883),
        `${hub}:1883 is an MQTT server`,
      )
      t.ok(
        servers.some((s) => s.host === hub && s.port === 8080),
        `${hub}:8080 is an HTTP server`,
      )
    }
    for (const server of servers) t.ok(names.has(server.host), `${server.host} is a service`)
    // MQTT servers are checked over HTTP on the hub's HTTP port
    for (const server of servers.filter((s) => s.port === 1883))
      t.match(server.rest, /port 8080/, 'checked on 8080')
    const checks = [...haproxyCfg.matchAll(/option httpchk GET (\S+)/g)].map((m) => m[1])
    t.equal(checks.length, 2, 'both backends are health-checked')
    const routes = read('services/http/routes.ts')
    for (const path of new Set(checks))
      t.ok(routes.includes(`http.get('${path}'`), `${path} is a route of the hub`)
    t.match(
      haproxyCfg,
      /on-marked-down shutdown-sessions/,
      'a hub taken out loses its connections, which reconnect',
    )
    t.match(haproxyCfg, /^defaults[\s\S]*mode tcp/m, 'TCP load balancing: MQTT and WebSocket pass through')
  },
)

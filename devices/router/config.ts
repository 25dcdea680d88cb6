import { readFileSync } from 'node:fs'
import { RouterAgentConfig } from '../../schemas/actions/media.ts'
import { validator } from '../../schemas/validate.ts'

const validConfig = validator(RouterAgentConfig)

/** A configuration that cannot be used; the message says what to change. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError'
}

/**
 * Environment variables of the router agent; each overrides the same setting of the configuration
 * file (all of them together make the file unnecessary).
 */
export const ENVIRONMENT = {
  ROUTER_HUB_URL: 'hubUrl, e.g. mqtts://hub.example.org:8883',
  ROUTER_ID: 'routerId (from router.create)',
  ROUTER_TOKEN: 'token (from router.create / router.token)',
  ROUTER_POSITION: 'position as "lat,lng", e.g. 52.52,13.405',
  ROUTER_CAPACITY: 'capacity.mediasoup: stages served at most',
  ROUTER_LISTEN_IP: 'listenIp (default 0.0.0.0)',
  ROUTER_ANNOUNCED_ADDRESS: 'announcedAddress: public IP or host name for ICE candidates',
  ROUTER_RTC_PORTS: 'rtcMinPort-rtcMaxPort, e.g. 40000-49999',
  ROUTER_WORKERS: 'workers (default: one per core)',
  ROUTER_URL: 'url announced in presence and router.served',
  ROUTER_OV_RELAY: 'ov: the ov relay to announce as ipv4:port[:pin]',
  ROUTER_OV_CAPACITY: 'capacity.ov: ov stages served at most',
  ROUTER_LOAD_INTERVAL_SECONDS: 'loadIntervalSeconds (default 10)',
  ROUTER_KEEPALIVE_SECONDS: 'keepaliveSeconds (default 30)',
  ROUTER_STATE_FILE: 'stateFile: where the presence session counter is kept',
} as const

/** Reads `path` (when given), applies the environment, and validates the result. */
export function loadRouterConfig(path: string | undefined, env: NodeJS.ProcessEnv): RouterAgentConfig {
  let config: Record<string, unknown> = {}
  if (path) {
    let text: string
    try {
      text = readFileSync(path, 'utf8')
    } catch (err) {
      throw new ConfigError(`cannot read the configuration ${path}: ${(err as Error).message}`)
    }
    try {
      config = JSON.parse(text) as Record<string, unknown>
    } catch (err) {
      throw new ConfigError(`the configuration ${path} is not JSON: ${(err as Error).message}`)
    }
    if (typeof config !== 'object' || config === null || Array.isArray(config))
      throw new ConfigError(`the configuration ${path} is not a JSON object`)
  }
  config = { ...config, ...fromEnvironment(env, config) }
  if (!validConfig(config))
    throw new ConfigError(`invalid router configuration${path ? ` ${path}` : ''}: ${validConfig.describe()}`)
  if ((config.rtcMinPort ?? 40000) > (config.rtcMaxPort ?? 49999))
    throw new ConfigError('rtcMinPort must not be above rtcMaxPort')
  return config
}

function fromEnvironment(env: NodeJS.ProcessEnv, file: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  const set = (name: keyof typeof ENVIRONMENT, apply: (value: string) => void) => {
    const value = env[name]
    if (value === undefined || value === '') return
    apply(value)
  }
  const number = (name: string, value: string) => {
    const n = Number(value)
    if (!Number.isFinite(n)) throw new ConfigError(`${name} must be a number, not "${value}"`)
    return n
  }
  set('ROUTER_HUB_URL', (v) => (out.hubUrl = v))
  set('ROUTER_ID', (v) => (out.routerId = v))
  set('ROUTER_TOKEN', (v) => (out.token = v))
  set('ROUTER_POSITION', (v) => {
    const [lat, lng, ...rest] = v.split(',')
    if (lat === undefined || lng === undefined || rest.length > 0)
      throw new ConfigError(`ROUTER_POSITION must be "lat,lng", not "${v}"`)
    out.position = { lat: number('ROUTER_POSITION', lat), lng: number('ROUTER_POSITION', lng) }
  })
  const capacity = { ...((file.capacity as Record<string, unknown> | undefined) ?? {}) }
  set('ROUTER_CAPACITY', (v) => (capacity.mediasoup = number('ROUTER_CAPACITY', v)))
  set('ROUTER_OV_CAPACITY', (v) => (capacity.ov = number('ROUTER_OV_CAPACITY', v)))
  if (Object.keys(capacity).length > 0) out.capacity = capacity
  set('ROUTER_LISTEN_IP', (v) => (out.listenIp = v))
  set('ROUTER_ANNOUNCED_ADDRESS', (v) => (out.announcedAddress = v))
  set('ROUTER_RTC_PORTS', (v) => {
    const match = /^(\d+)-(\d+)$/.exec(v)
    if (!match) throw new ConfigError(`ROUTER_RTC_PORTS must be "min-max", not "${v}"`)
    out.rtcMinPort = Number(match[1])
    out.rtcMaxPort = Number(match[2])
  })
  set('ROUTER_WORKERS', (v) => (out.workers = number('ROUTER_WORKERS', v)))
  set('ROUTER_URL', (v) => (out.url = v))
  set('ROUTER_OV_RELAY', (v) => {
    const match = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})(?::(\d+))?$/.exec(v)
    if (!match) throw new ConfigError(`ROUTER_OV_RELAY must be "ipv4:port[:pin]", not "${v}"`)
    out.ov = { ipv4: match[1], port: Number(match[2]), ...(match[3] ? { pin: Number(match[3]) } : {}) }
  })
  set(
    'ROUTER_LOAD_INTERVAL_SECONDS',
    (v) => (out.loadIntervalSeconds = number('ROUTER_LOAD_INTERVAL_SECONDS', v)),
  )
  set('ROUTER_KEEPALIVE_SECONDS', (v) => (out.keepaliveSeconds = number('ROUTER_KEEPALIVE_SECONDS', v)))
  set('ROUTER_STATE_FILE', (v) => (out.stateFile = v))
  return out
}

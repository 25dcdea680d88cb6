#!/usr/bin/env -S node --import=tsx
/**
 * `tsx devices/simulator/main.ts --hub mqtt://host:1883 --user-token <jwt> --count N`: registers N
 * ov-boxes of the token's user with `device.create`, runs them all in this process, and prints one
 * JSON line of statistics every `--every` seconds until SIGINT/SIGTERM (then every box goes offline
 * cleanly; with `--remove` the boxes are also removed from the hub).
 */
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { pino } from 'pino'
import { HubClient } from '../hub-client/hub-client.ts'
import type { ActionName, ActionParams } from '../hub-client/actions.ts'
import { RequestError } from '../hub-client/requests.ts'
import { noDelay } from '../tcp.ts'
import { type SimulatedBox, startSimulator } from './simulator.ts'

const USAGE = `usage: simulator --hub mqtt://host:1883 --user-token JWT --count N
          [--every 5] [--status-interval 10] [--name sim] [--ramp-ms 0] [--ca ca.pem] [--remove]
`

function fail(message: string): never {
  process.stderr.write(`simulator: ${message}\n${USAGE}`)
  process.exit(2)
}

function positive(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isFinite(n) || n < 0) fail(`--${name} must be a non-negative number`)
  return n
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const CONNECT_TIMEOUT_MS = 15_000

async function main(): Promise<void> {
  let values: Record<string, string | boolean | undefined>
  try {
    ;({ values } = parseArgs({
      options: {
        hub: { type: 'string' },
        'user-token': { type: 'string' },
        count: { type: 'string' },
        every: { type: 'string' },
        'status-interval': { type: 'string' },
        name: { type: 'string' },
        'ramp-ms': { type: 'string' },
        ca: { type: 'string' },
        remove: { type: 'boolean' },
      },
    }))
  } catch (err) {
    fail((err as Error).message)
  }
  const hub = values.hub as string | undefined
  const token = values['user-token'] as string | undefined
  const count = positive('count', values.count as string | undefined, 0)
  if (!hub || !/^mqtts?:\/\//.test(hub)) fail('--hub mqtt://host:port is required')
  if (!token) fail('--user-token is required')
  if (!Number.isInteger(count) || count < 1) fail('--count must be a whole number of at least 1')
  const every = positive('every', values.every as string | undefined, 5)
  const statusInterval = positive('status-interval', values['status-interval'] as string | undefined, 10)
  const rampMs = positive('ramp-ms', values['ramp-ms'] as string | undefined, 0)
  const prefix = (values.name as string | undefined) ?? 'sim'
  const ca = values.ca ? readFileSync(values.ca as string) : undefined
  const log = pino({ level: process.env.LOG_LEVEL ?? 'warn', base: { service: 'simulator' } })
  const print = (line: Record<string, unknown>) =>
    process.stdout.write(JSON.stringify({ time: new Date().toISOString(), ...line }) + '\n')

  const user = new HubClient({
    url: hub,
    clientId: `simulator-${randomBytes(6).toString('hex')}`,
    token,
    log,
    onConnection: noDelay,
    ...(ca ? { transport: { ca } } : {}),
  })
  user.start()
  // the hub client would keep trying; a command line says at once that it cannot get in
  const gaveUp = sleep(CONNECT_TIMEOUT_MS).then(() => 'gave up')
  if ((await Promise.race([user.untilOnline(), gaveUp])) === 'gave up') {
    await user.stop()
    throw new Error(`no connection to ${hub} within ${CONNECT_TIMEOUT_MS / 1000} s (see the log above)`)
  }
  /** A request of the user, waiting out the per-client rate limit instead of failing on it. */
  const request = async <N extends ActionName>(action: N, params: ActionParams<N>) => {
    for (let wait = 250; ; wait = Math.min(wait * 2, 5000)) {
      try {
        return await user.request(action, params)
      } catch (err) {
        if (!(err instanceof RequestError && err.code === 'rate_limited')) throw err
        await sleep(wait)
      }
    }
  }

  const boxes: SimulatedBox[] = []
  for (let i = 0; i < count; i++) {
    const created = await request('device.create', {
      name: `${prefix}-${i + 1}`,
      kind: 'ovbox',
    })
    boxes.push({ deviceId: created.device.id, token: created.token })
  }
  print({ event: 'registered', devices: boxes.map((b) => b.deviceId) })

  const simulator = await startSimulator({
    hubUrl: hub,
    boxes,
    statusIntervalSeconds: Math.max(1, statusInterval),
    startIntervalMs: rampMs,
    log,
    ...(ca ? { ca } : {}),
  })
  const timer = setInterval(
    () => print({ event: 'stats', ...simulator.stats() }),
    Math.max(0.1, every) * 1000,
  )

  let stopping = false
  const stop = async (signal: string) => {
    if (stopping) return
    stopping = true
    clearInterval(timer)
    setTimeout(() => process.exit(1), 30_000).unref()
    await simulator.stop()
    if (values.remove) {
      for (const box of boxes) {
        await request('device.remove', { deviceId: box.deviceId }).catch((err: unknown) =>
          log.warn({ err: (err as Error).message, deviceId: box.deviceId }, 'device.remove failed'),
        )
      }
    }
    await user.stop()
    print({ event: 'stopped', signal, ...simulator.stats() })
    process.exit(0)
  }
  process.once('SIGTERM', () => void stop('SIGTERM'))
  process.once('SIGINT', () => void stop('SIGINT'))
}

main().catch((err: unknown) => {
  process.stderr.write(`simulator: ${(err as Error).message}\n`)
  process.exit(1)
})

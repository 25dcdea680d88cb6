#!/usr/bin/env -S node --import=tsx
/**
 * The media router agent's command line: `tsx devices/router/main.ts --config router.json`, or with
 * the ROUTER_* environment variables alone (see devices/router/README.md). Exits 2 when the
 * configuration is unusable, 0 after SIGTERM/SIGINT (stages closed, offline published, disconnected),
 * 1 when a mediasoup worker dies (the hub sees the router lost and moves its stages; let the service
 * manager restart it).
 */
import { parseArgs } from 'node:util'
import { pino } from 'pino'
import { RouterAgent } from './agent.ts'
import { ConfigError, ENVIRONMENT, loadRouterConfig } from './config.ts'
import { stopOnSignals } from '../signals.ts'

const USAGE =
  'usage: router-agent [--config router.json] [--log-level info]\n' +
  'environment (overrides the file):\n' +
  Object.entries(ENVIRONMENT)
    .map(([name, what]) => `  ${name.padEnd(30)} ${what}`)
    .join('\n') +
  '\n'

function fail(message: string): never {
  process.stderr.write(`router-agent: ${message}\n`)
  process.exit(2)
}

async function main(): Promise<void> {
  let values: { config?: string; 'log-level'?: string; help?: boolean }
  try {
    ;({ values } = parseArgs({
      options: {
        config: { type: 'string', short: 'c' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }))
  } catch (err) {
    fail(`${(err as Error).message}\n${USAGE}`)
  }
  if (values.help) {
    process.stdout.write(USAGE)
    return
  }
  let config
  try {
    config = loadRouterConfig(values.config, process.env)
  } catch (err) {
    if (err instanceof ConfigError) fail(`${err.message}\n${USAGE}`)
    throw err
  }
  const log = pino({
    level: values['log-level'] ?? process.env.LOG_LEVEL ?? 'info',
    base: { service: 'router-agent', routerId: config.routerId },
  })
  const agent = new RouterAgent(config, {
    log,
    // its stages are gone with the worker: exit without a word, so the hub sees the will and moves them
    onFatal: () => process.exit(1),
  })
  stopOnSignals(agent, log)
  try {
    await agent.start()
  } catch (err) {
    log.fatal({ err }, 'cannot start')
    process.exit(1)
  }
  log.info(
    {
      hub: config.hubUrl,
      workers: agent.config.workers,
      ports: `${agent.config.rtcMinPort}-${agent.config.rtcMaxPort}`,
    },
    'router agent started',
  )
}

// a start-up failure must end the process with its error: an unhandled rejection does exactly that
void main()

#!/usr/bin/env -S node --import=tsx
/**
 * The ov-box agent's command line: `tsx devices/ovbox/main.ts --config /etc/stagehub/agent.json`.
 * Exits 2 with a message when the configuration file is missing or invalid, 0 after SIGTERM/SIGINT
 * (offline published, disconnected) or when the device was removed from the hub.
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { pino } from 'pino'
import { AgentConfig } from '../../schemas/firmware.ts'
import { validator } from '../../schemas/validate.ts'
import { createAgent } from './agent.ts'
import { AGENT_VERSION } from './version.ts'
import { stopOnSignals } from '../signals.ts'

const USAGE = 'usage: ovbox-agent --config /etc/stagehub/agent.json [--log-level info]\n'

function fail(message: string): never {
  process.stderr.write(`ovbox-agent: ${message}\n`)
  process.exit(2)
}

/** Reads and validates the agent's configuration file; exits with a message when it is not usable. */
function loadAgentConfig(path: string): AgentConfig {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    fail(`cannot read the configuration ${path}: ${(err as Error).message}`)
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    fail(`the configuration ${path} is not JSON: ${(err as Error).message}`)
  }
  const valid = validator(AgentConfig)
  if (!valid(value)) fail(`invalid configuration ${path}: ${valid.describe()}`)
  return value
}

function main(): void {
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
  if (!values.config) fail(`--config is required\n${USAGE}`)
  const config = loadAgentConfig(values.config)
  const log = pino({
    level: values['log-level'] ?? process.env.LOG_LEVEL ?? 'info',
    base: { service: 'ovbox-agent', deviceId: config.deviceId, version: AGENT_VERSION },
  })

  let agent: ReturnType<typeof createAgent>
  try {
    agent = createAgent(config, { log, onRemoved: () => process.exit(0) })
  } catch (err) {
    fail((err as Error).message)
  }
  stopOnSignals(agent, log)
  agent.start()
  log.info({ hub: config.hubUrl }, 'agent started')
}

main()

#!/usr/bin/env -S node --import=tsx
/**
 * The ov-box agent's command line: `stagehub-ovbox --config /etc/stagehub/agent.json` runs the agent;
 * `stagehub-ovbox claim CODE --hub URL` sets the box up with an owner's claim code.
 * Exits 2 with a message when the configuration file is missing or invalid (or on wrong use), 1 when a
 * claim is refused, 0 after SIGTERM/SIGINT (offline published, disconnected) or when the device was
 * removed from the hub.
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { pino } from 'pino'
import { AgentConfig } from '../../schemas/firmware.ts'
import { validator } from '../../schemas/validate.ts'
import { createAgent } from './agent.ts'
import { ClaimError, claimDevice } from './claim.ts'
import { AGENT_VERSION } from './version.ts'
import { stopOnSignals } from '../signals.ts'
import { OVBOX_PATHS } from './provisioning.ts'

const USAGE = `usage: stagehub-ovbox --config ${OVBOX_PATHS.agentConfig} [--log-level info]
       stagehub-ovbox claim CODE --hub https://hub.example.org [--config ${OVBOX_PATHS.agentConfig}] [--ca-path PEM]
`

function fail(message: string): never {
  process.stderr.write(`stagehub-ovbox: ${message}\n`)
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

async function claim(args: string[]): Promise<void> {
  let parsed: { values: { hub?: string; config?: string; 'ca-path'?: string }; positionals: string[] }
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: { hub: { type: 'string' }, config: { type: 'string' }, 'ca-path': { type: 'string' } },
    })
  } catch (err) {
    fail(`${(err as Error).message}\n${USAGE}`)
  }
  const { values, positionals } = parsed
  if (positionals.length !== 1 || !values.hub) fail(`claim needs the code and --hub URL\n${USAGE}`)
  const configPath = values.config ?? OVBOX_PATHS.agentConfig
  try {
    const { config, expiresAt } = await claimDevice({
      code: positionals[0]!,
      hubUrl: values.hub,
      configPath,
      caPath: values['ca-path'],
    })
    process.stdout.write(
      `claimed device ${config.deviceId} on ${config.hubUrl}: wrote ${configPath} (token valid until ${expiresAt})\n` +
        `start the agent: systemctl enable --now stagehub-ovbox-agent (or: stagehub-ovbox --config ${configPath})\n`,
    )
  } catch (err) {
    if (!(err instanceof ClaimError)) throw err
    process.stderr.write(`stagehub-ovbox: ${err.message}\n`)
    process.exit(1)
  }
}

function main(): void {
  if (process.argv[2] === 'claim') {
    // claim reports its own failures and sets the exit code: it never rejects
    void claim(process.argv.slice(3))
    return
  }
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

/**
 * `stagehub-ovbox claim CODE --hub URL`: exchanges an owner's one-time claim code for this box's
 * device token (`POST /devices/claim`) and writes the agent's configuration, so a box is set up
 * without the operator. A configuration already at the path keeps its local settings (paths,
 * commands, intervals): only the hub address, device id and token are replaced.
 */
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  writeFileSync,
} from 'node:fs'
import { dirname } from 'node:path'
import { renderAgentConfig } from './provisioning.ts'
import { AgentConfig } from '../../schemas/firmware.ts'
import type { ClaimReply } from '../../schemas/http.ts'
import { validator } from '../../schemas/validate.ts'

const CLAIM_TIMEOUT_MS = 15_000

export class ClaimError extends Error {
  override readonly name = 'ClaimError'
}

export interface ClaimOptions {
  code: string
  /** The hub's HTTP address, e.g. https://hub.example.org (the path /devices/claim is added). */
  hubUrl: string
  configPath: string
  /** A CA certificate for an mqtts:// hub with a private CA (kept from the existing file otherwise). */
  caPath?: string | undefined
}

/** Claims the device and writes its configuration (mode 600: it holds the token). */
export async function claimDevice(
  options: ClaimOptions,
): Promise<{ config: AgentConfig; expiresAt: string }> {
  const { hubUrl: _hub, deviceId: _id, token: _token, ...kept } = readExisting(options.configPath)
  const render = (hub: Pick<ClaimReply, 'mqttUrl' | 'deviceId' | 'token'>) =>
    renderAgentConfig(
      { hubUrl: hub.mqttUrl, deviceId: hub.deviceId, token: hub.token },
      { ...kept, ...(options.caPath ? { caPath: options.caPath } : {}) },
    )
  // checked before the exchange, which uses the code up
  const valid = validator(AgentConfig)
  if (!valid(render({ mqttUrl: 'mqtt://hub', deviceId: 'device', token: 'token' }))) {
    throw new ClaimError(`${options.configPath} has settings that are not valid: ${valid.describe()}`)
  }
  try {
    mkdirSync(dirname(options.configPath), { recursive: true })
    accessSync(dirname(options.configPath), constants.W_OK)
  } catch (err) {
    throw new ClaimError(
      `cannot write ${options.configPath} (${(err as Error).message}): run as root, or choose --config`,
    )
  }
  const reply = await exchange(options.hubUrl, options.code)
  const config = render(reply)
  const temp = `${options.configPath}.${process.pid}.tmp`
  writeFileSync(temp, JSON.stringify(config, null, 2) + '\n', { mode: 0o600 })
  renameSync(temp, options.configPath)
  return { config, expiresAt: reply.expiresAt }
}

async function exchange(hubUrl: string, code: string): Promise<ClaimReply> {
  let url: URL
  try {
    url = new URL('/devices/claim', hubUrl)
  } catch {
    throw new ClaimError(`--hub must be the hub's web address, like https://hub.example.org, not ${hubUrl}`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ClaimError(`--hub must be an http:// or https:// address, not ${hubUrl}`)
  }
  let response: Response
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ code, kind: 'ovbox' }),
      signal: AbortSignal.timeout(CLAIM_TIMEOUT_MS),
    })
  } catch (err) {
    const cause = (err as { cause?: { message?: string } }).cause?.message ?? (err as Error).message
    throw new ClaimError(`cannot reach ${url.origin}: ${cause}`)
  }
  const body = (await response.json().catch(() => undefined)) as
    ClaimReply | { error?: { code?: string; message?: string } } | undefined
  if (!response.ok) {
    const error = body && 'error' in body ? body.error : undefined
    throw new ClaimError(
      `the hub refused the claim (${response.status}${error?.code ? ` ${error.code}` : ''}): ${error?.message ?? 'no reason given'}`,
    )
  }
  if (!body || !('token' in body)) throw new ClaimError(`${url.origin} did not answer like a stagehub hub`)
  return body
}

/** The fields of an existing configuration file, or none; a file that is not a JSON object is an error. */
function readExisting(path: string): Partial<AgentConfig> {
  if (!existsSync(path)) return {}
  let value: unknown
  try {
    value = JSON.parse(readFileSync(path, 'utf8'))
  } catch (err) {
    throw new ClaimError(`${path} exists but is not JSON (${(err as Error).message}): move it away first`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ClaimError(`${path} exists but is not a JSON object: move it away first`)
  }
  return value as Partial<AgentConfig>
}

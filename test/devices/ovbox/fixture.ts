import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import type { DeviceState, PresencePayload } from '../../../schemas/actions/device.ts'
import type { AgentConfig, DeviceConfig } from '../../../schemas/firmware.ts'
import { type AgentRuntimeOptions, createAgent, type OvBoxAgent } from '../../../devices/ovbox/agent.ts'
import { LinuxProbe } from '../../../devices/ovbox/system-probe.ts'
import { AGENT_VERSION } from '../../../devices/ovbox/version.ts'
import { type Actor, ok } from '../../helpers/actors.ts'
import { type Teardown, type TestHub, waitUntil } from '../../helpers/hub.ts'

export const CARDS = ` 0 [Headphones     ]: bcm2835_headpho - bcm2835 Headphones
                      bcm2835 Headphones
 1 [Device         ]: USB-Audio - USB Audio Device
                      C-Media Electronics Inc. USB Audio Device at usb-3f980000.usb-1.4, full speed
`

export const USB_STREAM = `C-Media Electronics Inc. USB Audio Device at usb-3f980000.usb-1.4, full speed : USB Audio

Playback:
  Status: Stop
  Interface 1
    Altset 1
    Format: S16_LE
    Channels: 2
    Endpoint: 0x01 (1 OUT) (ADAPTIVE)
    Rates: 44100, 48000

Capture:
  Status: Stop
  Interface 2
    Altset 1
    Format: S16_LE
    Channels: 1
    Endpoint: 0x82 (2 IN) (ADAPTIVE)
    Rates: 44100, 48000
`

/** The owner's device document, `reported` readable. */
export type DeviceDocument = Omit<DeviceState, 'reported'> & {
  reported: {
    status?: Record<string, unknown>
    firmware?: { version: string; state: string; error?: string }
    appliedConfig?: { revision: string; appliedAt: string; error?: string }
  }
}

/** What the owner's app sees of the device: documents, presence and configurations, in arrival order. */
export interface OwnerView {
  docs: DeviceDocument[]
  presences: (PresencePayload | null)[]
  configs: DeviceConfig[]
  doc(): DeviceDocument
  config(): DeviceConfig
  until(
    condition: (doc: DeviceDocument) => boolean,
    what: string,
    timeoutMs?: number,
  ): Promise<DeviceDocument>
}

export async function watchDevice(owner: Actor, deviceId: string): Promise<OwnerView> {
  const docTopic = `users/${owner.id}/devices/${deviceId}`
  const presenceTopic = `devices/${deviceId}/presence`
  const configTopic = `devices/${deviceId}/config`
  const view: OwnerView = {
    docs: [],
    presences: [],
    configs: [],
    doc: () => view.docs.at(-1)!,
    config: () => view.configs.at(-1)!,
    async until(condition, what, timeoutMs = 10_000) {
      await waitUntil(() => view.docs.length > 0 && condition(view.doc()), what, timeoutMs)
      return view.doc()
    },
  }
  const parse = (payload: Buffer): unknown => (payload.length === 0 ? null : JSON.parse(payload.toString()))
  owner.client.on('message', (topic: string, payload: Buffer) => {
    if (topic === docTopic) view.docs.push(parse(payload) as DeviceDocument)
    else if (topic === presenceTopic) view.presences.push(parse(payload) as PresencePayload | null)
    else if (topic === configTopic && payload.length > 0) view.configs.push(parse(payload) as DeviceConfig)
  })
  await owner.client.subscribeAsync([docTopic, presenceTopic, configTopic], { qos: 1 })
  await waitUntil(() => view.docs.length > 0, 'the owner has the device document')
  return view
}

export interface Box {
  deviceId: string
  token: string
  dir: string
  config: AgentConfig
  configPath: string
  /** How often the restart command ran. */
  restarts(): number
  ovConfig(): DeviceConfig['ov'] | undefined
}

export interface BoxOptions {
  restartCommand?: (dir: string) => string[]
  installCommand?: (dir: string) => string[]
  hubUrl?: string
}

/** An ov-box registered by `owner`, with its files (fake ALSA, thermal zone) in a temp directory. */
export async function registerBox(
  t: Teardown,
  th: TestHub,
  owner: Actor,
  options: BoxOptions = {},
): Promise<Box> {
  const created = await ok<{ device: DeviceState; token: string }>(owner, 'device.create', {
    name: 'Box',
    kind: 'ovbox',
  })
  const dir = mkdtempSync(join(tmpdir(), 'ovbox-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  mkdirSync(join(dir, 'asound', 'card1'), { recursive: true })
  writeFileSync(join(dir, 'asound', 'cards'), CARDS)
  writeFileSync(join(dir, 'asound', 'card1', 'stream0'), USB_STREAM)
  writeFileSync(join(dir, 'thermal'), '48312\n')
  const configPath = join(dir, 'ov', 'ov-client.json')
  const config: AgentConfig = {
    hubUrl: options.hubUrl ?? th.mqttUrl,
    deviceId: created.device.id,
    token: created.token,
    ovClientConfigPath: configPath,
    ovClientRestartCommand: options.restartCommand?.(dir) ?? [
      'sh',
      '-c',
      `echo restarted >> '${join(dir, 'restarts')}'`,
    ],
    firmwareInstallCommand: options.installCommand?.(dir) ?? ['true'],
    stateDir: join(dir, 'state'),
    soundCardsPath: join(dir, 'asound', 'cards'),
    statusIntervalSeconds: 1,
    keepaliveSeconds: 5,
  }
  const read = (file: string) => {
    try {
      return readFileSync(join(dir, file), 'utf8')
    } catch {
      return undefined
    }
  }
  return {
    deviceId: created.device.id,
    token: created.token,
    dir,
    config,
    configPath,
    restarts: () => (read('restarts') ?? '').split('\n').filter(Boolean).length,
    ovConfig: () => {
      const text = read(join('ov', 'ov-client.json'))
      return text === undefined ? undefined : (JSON.parse(text) as DeviceConfig['ov'])
    },
  }
}

export const quietLog = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' })

/** The agent of `box` in this process, with fast reconnects and the fake thermal zone; stopped at teardown. */
export function startAgent(t: Teardown, box: Box, runtime: Partial<AgentRuntimeOptions> = {}): OvBoxAgent {
  const agent = createAgent(box.config, {
    log: quietLog,
    probe: new LinuxProbe({ version: AGENT_VERSION, thermalZonePath: join(box.dir, 'thermal') }),
    backoff: { initialMs: 100, maxMs: 1000 },
    requestTimeoutMs: 3000,
    ...runtime,
  })
  agent.start()
  t.teardown(() => agent.stop())
  return agent
}

/** The configuration the device runs is the newest one published, and the hub knows it. */
export function settled(view: OwnerView, agent: OvBoxAgent): boolean {
  const config = view.configs.at(-1)
  const doc = view.docs.at(-1)
  return (
    config !== undefined &&
    !agent.stats.applying &&
    agent.stats.lastConfig?.revision === config.revision &&
    doc?.reported.appliedConfig?.revision === config.revision
  )
}

/**
 * Waits until the box has reported both fixture sound cards and runs (and reported) the newest
 * configuration; a timeout says what was missing.
 */
export async function untilSettled(view: OwnerView, agent: OvBoxAgent, timeoutMs = 10_000): Promise<void> {
  const done = () => view.config()?.soundCards.length === 2 && settled(view, agent)
  try {
    await waitUntil(done, 'the box runs the newest configuration', timeoutMs)
  } catch (err) {
    const s = agent.stats
    const state = {
      published: view.configs.at(-1)?.revision,
      cards: view.configs.at(-1)?.soundCards.map((c) => c.name),
      received: s.lastConfig?.revision,
      applied: s.appliedRevision,
      reported: view.docs.at(-1)?.reported.appliedConfig,
      applying: s.applying,
      applies: s.applies,
      skipped: s.skipped,
      lastApplyError: s.lastApplyError,
      online: s.online,
      connects: s.connects,
      soundCardsSet: s.soundCardsSet,
    }
    throw new Error(`${(err as Error).message}: ${JSON.stringify(state)}`)
  }
}

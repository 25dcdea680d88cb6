/**
 * The files an ov-box needs to join a hub: the agent's configuration (hub address, device id and
 * token, where ov-client reads its configuration) and a systemd unit that keeps the agent running.
 * Pure functions: `stagehub provision` fills in the device and token and writes them out.
 */
import type { AgentConfig } from '../../schemas/firmware.ts'

/** Where things live on an ov-box image (Raspberry Pi OS with ov-client installed as a service). */
export const OVBOX_PATHS = {
  agentConfig: '/etc/stagehub/agent.json',
  stateDir: '/var/lib/stagehub-agent',
  ovClientConfig: '/var/lib/stagehub-agent/ov-client.json',
  /** The agent bundle (`npm run bundle:ovbox`): one JavaScript file run by Node, no node_modules. */
  installDir: '/opt/stagehub',
  bundle: 'agent.mjs',
  unit: '/etc/systemd/system/stagehub-ovbox-agent.service',
}

export interface AgentProvisioning {
  hubUrl: string
  deviceId: string
  token: string
  /** CA certificate path on the box, for an mqtts:// hub with a private CA. */
  caPath?: string
}

export function renderAgentConfig(
  input: AgentProvisioning,
  overrides: Partial<AgentConfig> = {},
): AgentConfig {
  if (!/^mqtts?:\/\//.test(input.hubUrl)) {
    throw new Error(`the hub address must be mqtt://host:port or mqtts://host:port, not ${input.hubUrl}`)
  }
  return {
    hubUrl: input.hubUrl,
    deviceId: input.deviceId,
    token: input.token,
    ovClientConfigPath: OVBOX_PATHS.ovClientConfig,
    // ov-client rereads its configuration when it starts
    ovClientRestartCommand: ['systemctl', 'restart', 'ov-client.service'],
    firmwareInstallCommand: ['/usr/local/sbin/stagehub-install-firmware'],
    stateDir: OVBOX_PATHS.stateDir,
    soundCardsPath: '/proc/asound/cards',
    statusIntervalSeconds: 10,
    keepaliveSeconds: 30,
    ...(input.caPath ? { caPath: input.caPath } : {}),
    ...overrides,
  }
}

/**
 * The agent's systemd unit. It runs as root and without a read-only file system because it restarts
 * ov-client and runs the firmware installer, which writes the system. SIGTERM lets it publish
 * `offline` before it disconnects.
 */
export function renderAgentUnit(paths: Partial<typeof OVBOX_PATHS> = {}): string {
  const { agentConfig, stateDir, installDir, bundle } = { ...OVBOX_PATHS, ...paths }
  return `[Unit]
Description=stagehub ov-box agent (hub connection, presence and configuration for ov-client)
Documentation=https://github.com/digital-stage/stagehub/blob/main/devices/ovbox/README.md
Wants=network-online.target
After=network-online.target sound.target
Before=ov-client.service

[Service]
Type=simple
WorkingDirectory=${installDir}
ExecStart=/usr/bin/node ${installDir}/${bundle} --config ${agentConfig}
Environment=NODE_ENV=production
Restart=always
RestartSec=5
KillSignal=SIGTERM
TimeoutStopSec=10
StateDirectory=${stateDir.replace(/^\/var\/lib\//, '')}
PrivateTmp=true

[Install]
WantedBy=multi-user.target
`
}

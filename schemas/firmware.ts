/**
 * What an ov-box receives and runs on: the ov-client configuration the hub renders, the retained
 * `devices/{d}/config` document that carries it, firmware release manifests and rollout targets, and
 * the ov-box agent's own configuration file (written by `stagehub provision`).
 */
import { Type, type Static } from '@sinclair/typebox'
import { Id, Timestamp } from './common.ts'
import { DeviceKind, DeviceName, DeviceSettings, SoundCard, Track } from './actions/device.ts'

const Xyz = Type.Object(
  { x: Type.Number(), y: Type.Number(), z: Type.Number() },
  { additionalProperties: false },
)
const Zyx = Type.Object(
  { z: Type.Number(), y: Type.Number(), x: Type.Number() },
  { additionalProperties: false },
)

export const OvChannel = Type.Object(
  {
    name: Type.String(),
    sourceport: Type.String({ description: 'jack port the channel is captured from' }),
    gain: Type.Number(),
    position: Xyz,
    directivity: Type.Union([Type.Literal('omni'), Type.Literal('cardioid')]),
  },
  { additionalProperties: false },
)
export type OvChannel = Static<typeof OvChannel>

export const OvRoomDevice = Type.Object(
  {
    id: Type.Integer({ description: 'seat of the peer in the session' }),
    label: Type.String(),
    channels: Type.Array(OvChannel),
    position: Xyz,
    orientation: Zyx,
    gain: Type.Number(),
    mute: Type.Boolean(),
  },
  { additionalProperties: false },
)
export type OvRoomDevice = Static<typeof OvRoomDevice>

/** The configuration ov-client consumes (gisogrimm/ov-client: audiocfg, rendersettings, room, roomdev). */
export const OvClientConfig = Type.Object(
  {
    audiocfg: Type.Object(
      {
        driver: Type.String(),
        device: Type.String(),
        srate: Type.Integer(),
        periodsize: Type.Integer(),
        numperiods: Type.Integer(),
        priority: Type.Integer(),
      },
      { additionalProperties: false },
    ),
    rendersettings: Type.Object(
      {
        id: Type.Integer({ description: 'own seat; -1 when not seated' }),
        label: Type.String(),
        channels: Type.Array(OvChannel),
        position: Xyz,
        orientation: Zyx,
        jitter: Type.Object({ send: Type.Number(), receive: Type.Number() }, { additionalProperties: false }),
        renderreverb: Type.Boolean(),
        reverbgain: Type.Number(),
        renderism: Type.Boolean(),
        rawmode: Type.Boolean(),
        receive: Type.Boolean(),
        rectype: Type.Union([Type.Literal('ortf'), Type.Literal('hrtf')]),
        egogain: Type.Number(),
        peer2peer: Type.Boolean(),
        sendlocal: Type.Boolean({ description: 'false makes ov-client stop sending (sendAudio off)' }),
      },
      { additionalProperties: false },
    ),
    room: Type.Object(
      {
        host: Type.String({ description: 'ov relay address; empty while the stage has none' }),
        port: Type.Integer(),
        pin: Type.Integer(),
        size: Xyz,
        reverb: Type.Object(
          { absorption: Type.Number(), damping: Type.Number(), gain: Type.Number() },
          { additionalProperties: false },
        ),
        ambientsound: Type.Object(
          { render: Type.Boolean(), url: Type.String(), level: Type.Number() },
          { additionalProperties: false },
        ),
      },
      { additionalProperties: false },
    ),
    roomdev: Type.Array(OvRoomDevice),
  },
  { additionalProperties: false, $id: 'OvClientConfig' },
)
export type OvClientConfig = Static<typeof OvClientConfig>

const SemVer = Type.String({
  pattern: '^[0-9]+\\.[0-9]+\\.[0-9]+(-[0-9A-Za-z.-]+)?$',
  maxLength: 64,
  description: 'semantic version (major.minor.patch[-prerelease])',
})

const Artifact = Type.Object(
  {
    url: Type.String({ format: 'uri', maxLength: 2000 }),
    sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    size: Type.Integer({ minimum: 1 }),
  },
  { additionalProperties: false },
)

/** A firmware/config release: what a rollout targets and what an ov-box installs. */
export const FirmwareRelease = Type.Object(
  {
    version: SemVer,
    /** The ov-client release it contains, so the hub knows which configuration format the box reads. */
    ovClientVersion: Type.String({ minLength: 1, maxLength: 64 }),
    artifact: Artifact,
    notes: Type.Optional(Type.String({ maxLength: 2000 })),
  },
  { additionalProperties: false, $id: 'FirmwareRelease' },
)
export type FirmwareRelease = Static<typeof FirmwareRelease>

/** Which devices a release is rolled out to: named devices, and a stable share of all ov-boxes. */
export const Rollout = Type.Object(
  {
    percent: Type.Number({ minimum: 0, maximum: 100 }),
    deviceIds: Type.Array(Id, { maxItems: 1000, uniqueItems: true }),
  },
  { additionalProperties: false },
)
export type Rollout = Static<typeof Rollout>

export const ReleaseState = Type.Object(
  {
    ...FirmwareRelease.properties,
    publishedAt: Timestamp,
    rollout: Rollout,
  },
  { additionalProperties: false, $id: 'ReleaseState' },
)
export type ReleaseState = Static<typeof ReleaseState>

/** The firmware an ov-box should run: part of its configuration while a rollout targets it. */
export const FirmwareTarget = Type.Object(
  { version: SemVer, ovClientVersion: FirmwareRelease.properties.ovClientVersion, artifact: Artifact },
  { additionalProperties: false },
)
export type FirmwareTarget = Static<typeof FirmwareTarget>

/** Whether an ov-box has audio now, and if not, why (the first thing missing, in this order). */
export const OvAudio = Type.Object(
  {
    state: Type.Union(
      [
        Type.Literal('no-stage'),
        Type.Literal('stage-not-ov'),
        Type.Literal('not-seated'),
        Type.Literal('no-router'),
        Type.Literal('ready'),
      ],
      {
        description:
          "no-stage: the owner is in no stage; stage-not-ov: the stage's audioType is not ov; not-seated: the owner has no seat; no-router: no ov router serves the stage yet; ready: the relay is in room",
      },
    ),
    message: Type.String({ description: 'the same for a person, with what to do' }),
  },
  { additionalProperties: false, $id: 'OvAudio' },
)
export type OvAudio = Static<typeof OvAudio>

/**
 * `devices/{d}/config` (retained, published by the hub): everything the device should be. `revision`
 * is a digest of the rest, so a device can say exactly which configuration it applied.
 */
export const DeviceConfig = Type.Object(
  {
    deviceId: Id,
    kind: DeviceKind,
    name: DeviceName,
    desired: DeviceSettings,
    soundCards: Type.Array(SoundCard),
    tracks: Type.Array(Track),
    ov: Type.Optional(OvClientConfig),
    audio: Type.Optional(OvAudio),
    firmware: Type.Optional(FirmwareTarget),
    revision: Type.String({ pattern: '^[0-9a-f]{16}$', description: 'digest of this configuration' }),
  },
  { additionalProperties: false, $id: 'DeviceConfig' },
)
export type DeviceConfig = Static<typeof DeviceConfig>

/** The ov-box agent's configuration file (`/etc/stagehub/agent.json`), as `stagehub provision` writes it. */
export const AgentConfig = Type.Object(
  {
    hubUrl: Type.String({
      pattern: '^mqtts?://',
      description: 'the hub MQTT listener, e.g. mqtts://hub.example.org:8883',
    }),
    deviceId: Id,
    token: Type.String({ minLength: 1, description: 'device token (role device, sub = deviceId)' }),
    /** Where ov-client reads its configuration. */
    ovClientConfigPath: Type.String({ minLength: 1 }),
    /** Run (argv, no shell) after a new ov-client configuration is written; empty: do not restart. */
    ovClientRestartCommand: Type.Array(Type.String(), { maxItems: 64 }),
    /** Run with the downloaded artifact's path appended; its exit code decides UPDATED or FAILED. */
    firmwareInstallCommand: Type.Array(Type.String(), { maxItems: 64 }),
    /** Where the agent keeps its session counter, installed firmware version and downloads. */
    stateDir: Type.String({ minLength: 1 }),
    /** ALSA's list of sound cards. */
    soundCardsPath: Type.String({ minLength: 1 }),
    statusIntervalSeconds: Type.Number({ minimum: 1, maximum: 3600 }),
    keepaliveSeconds: Type.Integer({ minimum: 5, maximum: 600 }),
    /** CA certificate (PEM file) for mqtts:// hubs with a private CA. */
    caPath: Type.Optional(Type.String({ minLength: 1 })),
  },
  { additionalProperties: false, $id: 'AgentConfig' },
)
export type AgentConfig = Static<typeof AgentConfig>

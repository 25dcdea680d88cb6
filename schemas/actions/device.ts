import { Type, type Static } from '@sinclair/typebox'
import { defineAction } from '../action.ts'
import { Id, Timestamp, Version, optionalFields } from '../common.ts'
import { Name } from '../text.ts'

export const DeviceKind = Type.Union([Type.Literal('ovbox'), Type.Literal('browser'), Type.Literal('native')])
export type DeviceKind = Static<typeof DeviceKind>
export const DeviceName = Name()

const Jitter = Type.Number({ minimum: 0, maximum: 1000, description: 'milliseconds' })
const Gain = Type.Number({ minimum: 0, maximum: 10 })

/**
 * What the owner wants the device to do (the original's device switches and ov settings). Every
 * field is optional in a patch; `null` removes a setting so the device falls back to its default.
 */
export const deviceSettingsFields = {
  sendAudio: Type.Boolean(),
  sendVideo: Type.Boolean(),
  receiveAudio: Type.Boolean(),
  receiveVideo: Type.Boolean(),
  /** The active sound card, by its name on the device. */
  soundCardName: Type.String({ minLength: 1, maxLength: 100 }),
  inputAudioDeviceId: Type.String({ maxLength: 200 }),
  inputVideoDeviceId: Type.String({ maxLength: 200 }),
  outputAudioDeviceId: Type.String({ maxLength: 200 }),
  echoCancellation: Type.Boolean(),
  autoGainControl: Type.Boolean(),
  noiseSuppression: Type.Boolean(),
  receiverType: Type.Union([Type.Literal('ortf'), Type.Literal('hrtf')]),
  senderJitter: Jitter,
  receiverJitter: Jitter,
  p2p: Type.Boolean(),
  renderReverb: Type.Boolean(),
  reverbGain: Gain,
  renderISM: Type.Boolean(),
  rawMode: Type.Boolean(),
  egoGain: Gain,
}

export const DeviceSettings = Type.Object(optionalFields(deviceSettingsFields), {
  additionalProperties: false,
  $id: 'DeviceSettings',
})
export type DeviceSettings = Static<typeof DeviceSettings>

export const DeviceSettingsPatch = Type.Object(
  Object.fromEntries(
    Object.entries(deviceSettingsFields).map(([k, v]) => [k, Type.Optional(Type.Union([v, Type.Null()]))]),
  ),
  { additionalProperties: false, minProperties: 1 },
)

export const SoundCardName = Type.String({ minLength: 1, maxLength: 100 })

/** A sound card of a device (unique by name on the device). */
export const SoundCard = Type.Object(
  {
    name: SoundCardName,
    label: Type.Optional(Type.String({ maxLength: 200 })),
    isDefault: Type.Optional(Type.Boolean()),
    driver: Type.Union([
      Type.Literal('jack'),
      Type.Literal('alsa'),
      Type.Literal('asio'),
      Type.Literal('webrtc'),
    ]),
    sampleRate: Type.Integer({ minimum: 8000, maximum: 384000 }),
    sampleRates: Type.Optional(
      Type.Array(Type.Integer({ minimum: 8000, maximum: 384000 }), { maxItems: 32 }),
    ),
    periodSize: Type.Integer({ minimum: 8, maximum: 8192 }),
    numPeriods: Type.Integer({ minimum: 1, maximum: 16 }),
    softwareLatency: Type.Optional(Type.Number({ minimum: 0, maximum: 1000, description: 'milliseconds' })),
    numInputChannels: Type.Integer({ minimum: 0, maximum: 256 }),
    numOutputChannels: Type.Integer({ minimum: 0, maximum: 256 }),
  },
  { additionalProperties: false, $id: 'SoundCard' },
)
export type SoundCard = Static<typeof SoundCard>

const trackFields = {
  name: Name(),
  gain: Type.Number({ minimum: 0, maximum: 10 }),
  directivity: Type.Union([Type.Literal('omni'), Type.Literal('cardioid')]),
}

/** An input channel of a sound card that the device sends (an ov track); channel 0 is a channel. */
export const Track = Type.Object(
  {
    id: Id,
    soundCardName: SoundCardName,
    channel: Type.Integer({ minimum: 0, maximum: 255 }),
    name: Type.Optional(trackFields.name),
    gain: trackFields.gain,
    directivity: trackFields.directivity,
  },
  { additionalProperties: false, $id: 'Track' },
)
export type Track = Static<typeof Track>

/** `users/{u}/devices/{d}`: the device document its owner sees. */
export const DeviceState = Type.Object(
  {
    id: Id,
    owner: Id,
    kind: DeviceKind,
    name: DeviceName,
    online: Type.Boolean(),
    lastSeen: Type.Optional(Timestamp),
    /** Desired settings (the owner's), as in a device shadow. */
    desired: DeviceSettings,
    /** What the device last reported (validated against devices/{d}/reported). */
    reported: Type.Object({}, { additionalProperties: true }),
    soundCards: Type.Array(SoundCard),
    tracks: Type.Array(Track),
    version: Version,
  },
  { additionalProperties: false, $id: 'DeviceState' },
)
export type DeviceState = Static<typeof DeviceState>

const DeviceRef = { deviceId: Id }

export const deviceCreate = defineAction({
  name: 'device.create',
  changesState: true,
  targets: { deviceId: 'result.device.id' },
  description: 'Register a device of the caller; the device token is returned once and never again.',
  params: Type.Object({ name: DeviceName, kind: DeviceKind }, { additionalProperties: false }),
  result: Type.Object({ device: DeviceState, token: Type.String(), expiresAt: Timestamp }),
})

export const deviceToken = defineAction({
  name: 'device.token',
  changesState: true,
  targets: { deviceId: 'params.deviceId' },
  description:
    'Issue a new device token; every older token of the device is refused from now on and its connections are closed.',
  params: Type.Object(DeviceRef, { additionalProperties: false }),
  result: Type.Object({ token: Type.String(), expiresAt: Timestamp, generation: Type.Integer() }),
})

/** `ABCD-EFGH`: 8 characters of an alphabet without look-alikes (no 0/O, 1/I/L), dash optional. */
export const CLAIM_CODE_ALPHABET = 'ABCDEFGHJKMNPQRSTUVWXYZ23456789'

export const deviceClaimCode = defineAction({
  name: 'device.claimCode',
  changesState: true,
  targets: { deviceId: 'params.deviceId' },
  description:
    'A one-time claim code for a device of the caller: the box exchanges it at POST /devices/claim for its device token. A new code replaces the previous one.',
  params: Type.Object(DeviceRef, { additionalProperties: false }),
  result: Type.Object({
    code: Type.String({ pattern: `^[${CLAIM_CODE_ALPHABET}]{4}-[${CLAIM_CODE_ALPHABET}]{4}$` }),
    expiresAt: Timestamp,
  }),
})

export const deviceRemove = defineAction({
  name: 'device.remove',
  changesState: true,
  targets: { deviceId: 'params.deviceId' },
  description: 'Remove a device: its token stops working and its retained topics are cleared.',
  params: Type.Object(DeviceRef, { additionalProperties: false }),
  result: Type.Object({}, { additionalProperties: false }),
})

export const deviceUpdate = defineAction({
  name: 'device.update',
  changesState: true,
  targets: { deviceId: 'params.deviceId' },
  description:
    "Change a device's name or desired settings (remote control); the device receives its full configuration on devices/{d}/config.",
  params: Type.Object(
    {
      ...DeviceRef,
      name: Type.Optional(DeviceName),
      settings: Type.Optional(DeviceSettingsPatch),
      version: Type.Optional(Version),
    },
    { additionalProperties: false, minProperties: 2 },
  ),
  result: DeviceState,
})

/** `devices/{d}/presence` (retained, published by the device; its last will says `lost`). */
export const PresencePayload = Type.Object(
  {
    state: Type.Union([Type.Literal('online'), Type.Literal('offline'), Type.Literal('lost')]),
    /** Increases on every connect of the device; older sessions' messages are ignored. */
    session: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: true, $id: 'PresencePayload' },
)
export type PresencePayload = Static<typeof PresencePayload>

const FirmwareState = Type.Union(
  ['DOWNLOADING', 'DOWNLOADED', 'VERIFIED', 'UPDATING', 'UPDATED', 'FAILED'].map((s) => Type.Literal(s)),
)

/** An audio input or output or a camera of a browser, as navigator.mediaDevices.enumerateDevices() lists it. */
export const ReportedMediaDevice = Type.Object(
  {
    /** The browser's deviceId: what `inputAudioDeviceId` / `outputAudioDeviceId` / `inputVideoDeviceId` take. */
    id: Type.String({ maxLength: 200 }),
    /** Empty until the page was allowed to use the microphone. */
    label: Type.String({ maxLength: 200 }),
  },
  { additionalProperties: false },
)

/** At most this many inputs and outputs each are reported (the report stays under the hub's size limit). */
export const MAX_REPORTED_MEDIA_DEVICES = 12

/** `devices/{d}/reported` (not retained): what the device reports about itself; merged into `reported`. */
export const ReportedPayload = Type.Object(
  {
    status: Type.Optional(
      Type.Object(
        {
          cpuLoad: Type.Optional(Type.Number({ minimum: 0 })),
          temperature: Type.Optional(Type.Number()),
          memoryUsed: Type.Optional(Type.Number({ minimum: 0 })),
          memoryTotal: Type.Optional(Type.Number({ minimum: 0 })),
          xruns: Type.Optional(Type.Integer({ minimum: 0 })),
          localIp: Type.Optional(Type.String({ maxLength: 64 })),
          bandwidthTx: Type.Optional(Type.Number({ minimum: 0 })),
          bandwidthRx: Type.Optional(Type.Number({ minimum: 0 })),
          version: Type.Optional(Type.String({ maxLength: 64 })),
        },
        { additionalProperties: false },
      ),
    ),
    firmware: Type.Optional(
      Type.Object(
        {
          version: Type.String({ maxLength: 64 }),
          state: FirmwareState,
          error: Type.Optional(Type.String({ maxLength: 500 })),
        },
        { additionalProperties: false },
      ),
    ),
    /**
     * A browser's audio inputs and outputs and its cameras (replaced as a whole on every report), so
     * that another of its owner's devices can pick `inputAudioDeviceId`, `outputAudioDeviceId` and
     * `inputVideoDeviceId` remotely.
     */
    mediaDevices: Type.Optional(
      Type.Object(
        {
          audioInputs: Type.Array(ReportedMediaDevice, { maxItems: MAX_REPORTED_MEDIA_DEVICES }),
          audioOutputs: Type.Array(ReportedMediaDevice, { maxItems: MAX_REPORTED_MEDIA_DEVICES }),
          /** Its cameras, for `inputVideoDeviceId` (absent from browsers that report no cameras). */
          videoInputs: Type.Optional(
            Type.Array(ReportedMediaDevice, { maxItems: MAX_REPORTED_MEDIA_DEVICES }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    /** The `devices/{d}/config` revision the device runs now, and why the newest one failed if it did. */
    appliedConfig: Type.Optional(
      Type.Object(
        {
          revision: Type.String({ pattern: '^[0-9a-f]{16}$' }),
          appliedAt: Timestamp,
          error: Type.Optional(Type.String({ maxLength: 500 })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false, $id: 'ReportedPayload' },
)
export type ReportedPayload = Static<typeof ReportedPayload>

const OwnerOrDevice = 'the owner or the device itself'

export const soundCardSet = defineAction({
  name: 'soundcard.set',
  changesState: true,
  targets: { deviceId: 'params.deviceId' },
  description: `Add or replace (by name) a sound card of a device; ${OwnerOrDevice}.`,
  params: Type.Object(
    { ...DeviceRef, soundCard: SoundCard, version: Type.Optional(Version) },
    { additionalProperties: false },
  ),
  result: DeviceState,
})

export const soundCardRemove = defineAction({
  name: 'soundcard.remove',
  changesState: true,
  targets: { deviceId: 'params.deviceId' },
  description: `Remove a sound card and the tracks on it; ${OwnerOrDevice}.`,
  params: Type.Object(
    { ...DeviceRef, name: SoundCardName, version: Type.Optional(Version) },
    { additionalProperties: false },
  ),
  result: DeviceState,
})

export const trackAdd = defineAction({
  name: 'track.add',
  changesState: true,
  targets: { deviceId: 'params.deviceId', trackId: 'result.id' },
  description: `Send an input channel of a sound card as a track (one track per channel); ${OwnerOrDevice}.`,
  params: Type.Object(
    {
      ...DeviceRef,
      soundCardName: SoundCardName,
      channel: Track.properties.channel,
      name: Type.Optional(trackFields.name),
      gain: Type.Optional(trackFields.gain),
      directivity: Type.Optional(trackFields.directivity),
    },
    { additionalProperties: false },
  ),
  result: Track,
})

export const trackUpdate = defineAction({
  name: 'track.update',
  changesState: true,
  targets: { deviceId: 'params.deviceId', trackId: 'params.trackId' },
  description: `Change a track's name, gain or directivity; ${OwnerOrDevice}.`,
  params: Type.Object(
    {
      ...DeviceRef,
      trackId: Id,
      patch: Type.Object(
        {
          name: Type.Optional(trackFields.name),
          gain: Type.Optional(trackFields.gain),
          directivity: Type.Optional(trackFields.directivity),
        },
        { additionalProperties: false, minProperties: 1 },
      ),
    },
    { additionalProperties: false },
  ),
  result: Track,
})

export const trackRemove = defineAction({
  name: 'track.remove',
  changesState: true,
  targets: { deviceId: 'params.deviceId', trackId: 'params.trackId' },
  description: `Stop sending a track; ${OwnerOrDevice}.`,
  params: Type.Object({ ...DeviceRef, trackId: Id }, { additionalProperties: false }),
  result: Type.Object({}, { additionalProperties: false }),
})

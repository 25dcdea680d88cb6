/**
 * The configuration ov-client consumes (gisogrimm/ov-client: `audiocfg`, `rendersettings`, `room`,
 * `roomdev[]`), rendered from the hub's state as a pure function: same state in, same configuration
 * out, so it can be compared and only republished when it changes.
 */
import type { DeviceSettings, SoundCard, Track } from '../schemas/actions/device.ts'
import type { OvAudio, OvChannel, OvClientConfig } from '../schemas/firmware.ts'
import type { Position, StageState } from '../schemas/actions/stage.ts'
import { levelOf } from '../schemas/mix-rule.ts'

/** Everything the rendering needs, as plain data. */
export interface OvRenderInput {
  device: {
    id: string
    name: string
    desired: DeviceSettings
    soundCards: readonly SoundCard[]
    tracks: readonly Track[]
  }
  /** The stage the device's user is in now, with its ov relay, or undefined when not on a stage. */
  stage?: {
    id: string
    width: number
    length: number
    height: number
    absorption: number
    damping: number
    reverbGain: number
    ambientSound: { render: boolean; url?: string; level: number }
    ovServer?: { ipv4?: string; ipv6?: string; port?: number; pin?: number; serverJitter?: number }
  }
  /** The device user's own membership: seat and stage position. */
  self?: OvSeat
  /** Every other seated device of the session. */
  peers: readonly OvSeat[]
  /** The user's own overrides by member id (volume, muted, position). */
  memberMixes: ReadonlyMap<string, { volume?: number; muted?: boolean; position?: Position }>
}

export interface OvSeat {
  memberId: string
  seat: number
  label: string
  volume: number
  muted: boolean
  position: Position
  tracks: readonly Pick<Track, 'channel' | 'gain' | 'directivity' | 'name'>[]
}

/** ov-client's own defaults (ov-client's ovboxclient): jitter 5 ms sending, 10 ms receiving. */
export const OV_DEFAULTS = { senderJitter: 5, receiverJitter: 10, egoGain: 1, reverbGain: 0.4, priority: 40 }

/** Channels of one seat: inputs spaced 0.2 m apart around the seat's position, as ov-client lays them out. */
function channels(tracks: OvSeat['tracks'], origin: Position): OvChannel[] {
  return [...tracks]
    .sort((a, b) => a.channel - b.channel)
    .map((track, i, all) => ({
      name: track.name ?? `ch${track.channel + 1}`,
      sourceport: `system:capture_${track.channel + 1}`,
      gain: track.gain,
      position: { x: origin.x, y: origin.y + (i - (all.length - 1) / 2) * 0.2, z: origin.z },
      directivity: track.directivity,
    }))
}

const xyz = (p: Position) => ({ x: p.x, y: p.y, z: p.z })
const zyx = (p: Position) => ({ z: p.rZ, y: p.rY, x: p.rX })

/** The sound card a device uses: the selected one, else the default one, else the first. */
export function activeSoundCard(
  cards: readonly SoundCard[],
  settings: DeviceSettings,
): SoundCard | undefined {
  return cards.find((c) => c.name === settings.soundCardName) ?? cards.find((c) => c.isDefault) ?? cards[0]
}

/** The tracks a device sends: those on its active sound card. */
export function sentTracks(device: {
  desired: DeviceSettings
  soundCards?: readonly SoundCard[]
  tracks?: readonly Track[]
}): Track[] {
  const card = activeSoundCard(device.soundCards ?? [], device.desired)
  return card ? (device.tracks ?? []).filter((t) => t.soundCardName === card.name) : []
}

export function renderOvClientConfig(input: OvRenderInput): OvClientConfig {
  const { device, stage, self, peers, memberMixes } = input
  const settings = device.desired
  const card = activeSoundCard(device.soundCards, settings)
  const ownTracks = sentTracks(device)
  const origin = self?.position ?? { x: 0, y: 0, z: 0, rX: 0, rY: 0, rZ: 0 }
  const relay = stage?.ovServer

  return {
    audiocfg: {
      driver: card?.driver ?? 'jack',
      device: card?.name ?? 'hw:1',
      srate: card?.sampleRate ?? 48000,
      periodsize: card?.periodSize ?? 96,
      numperiods: card?.numPeriods ?? 2,
      priority: OV_DEFAULTS.priority,
    },
    rendersettings: {
      id: self?.seat ?? -1,
      label: self?.label ?? device.name,
      channels: channels(ownTracks, origin),
      position: xyz(origin),
      orientation: zyx(origin),
      jitter: {
        send: settings.senderJitter ?? OV_DEFAULTS.senderJitter,
        receive: settings.receiverJitter ?? OV_DEFAULTS.receiverJitter,
      },
      renderreverb: settings.renderReverb ?? true,
      reverbgain: settings.reverbGain ?? stage?.reverbGain ?? OV_DEFAULTS.reverbGain,
      renderism: settings.renderISM ?? false,
      rawmode: settings.rawMode ?? false,
      receive: settings.receiveAudio ?? true,
      rectype: settings.receiverType ?? 'ortf',
      egogain: settings.egoGain ?? OV_DEFAULTS.egoGain,
      peer2peer: settings.p2p ?? true,
      sendlocal: settings.sendAudio ?? true,
    },
    room: {
      host: relay?.ipv4 ?? relay?.ipv6 ?? '',
      port: relay?.port ?? 0,
      pin: relay?.pin ?? 0,
      size: { x: stage?.length ?? 0, y: stage?.width ?? 0, z: stage?.height ?? 0 },
      reverb: {
        absorption: stage?.absorption ?? 0.6,
        damping: stage?.damping ?? 0.7,
        gain: stage?.reverbGain ?? OV_DEFAULTS.reverbGain,
      },
      ambientsound: {
        render: stage?.ambientSound.render ?? false,
        url: stage?.ambientSound.url ?? '',
        level: stage?.ambientSound.level ?? 0,
      },
    },
    roomdev: [...peers]
      .sort((a, b) => a.seat - b.seat)
      .map((peer) => {
        const mix = memberMixes.get(peer.memberId)
        const position = mix?.position ?? peer.position
        return {
          id: peer.seat,
          label: peer.label,
          channels: channels(peer.tracks, position),
          position: xyz(position),
          orientation: zyx(position),
          gain: levelOf(mix, peer).volume,
          mute: levelOf(mix, peer).muted,
        }
      }),
  }
}

/** What decides whether an ov-box has audio. */
export interface OvAudioInput {
  /** The stage the box's owner is in now. */
  stage?: {
    name: string
    audioType: StageState['audioType']
    ovServer?: { ipv4?: string; ipv6?: string; port?: number } | undefined
  }
  /** Whether the owner has a seat in it. */
  seated: boolean
}

/**
 * Why an ov-box has no audio, or that it has: an empty `room.host` alone gives its owner no hint.
 * Checked in the order a person fixes them: be on a stage, an ov stage, seated, and served.
 */
export function ovAudio({ stage, seated }: OvAudioInput): OvAudio {
  if (!stage) {
    return { state: 'no-stage', message: "the box's owner is not on a stage: join one to hear it here" }
  }
  if (stage.audioType !== 'ov') {
    return {
      state: 'stage-not-ov',
      message: `stage "${stage.name}" has audioType "${stage.audioType}", which ov-boxes do not play: a stage admin can set it to "ov" (stage.update)`,
    }
  }
  if (!seated) {
    return {
      state: 'not-seated',
      message: `the box's owner has no seat in stage "${stage.name}": join it again (stage.join)`,
    }
  }
  const host = stage.ovServer?.ipv4 ?? stage.ovServer?.ipv6
  if (!host || !stage.ovServer?.port) {
    return {
      state: 'no-router',
      message: `no ov router serves stage "${stage.name}" yet: it gets one as soon as an ov router is online (operators register routers with router.create)`,
    }
  }
  return {
    state: 'ready',
    message: `stage "${stage.name}" through the ov relay ${host}:${stage.ovServer.port}`,
  }
}

import type { SoundCard, Track } from '../../../schemas/actions/device.ts'

/**
 * The bounds of schemas/actions/device.ts the device forms use, as plain values: importing the
 * schemas would bring TypeBox into the bundle (test/scripts/build-web.test.ts). The forms refuse what
 * the hub would; test/web/device-limits.test.ts checks these stay equal to the schema's.
 */
export const JITTER = { minimum: 0, maximum: 1000 }

export const SOUND_CARD = {
  name: { minLength: 1, maxLength: 100 },
  label: { maxLength: 200 },
  sampleRate: { minimum: 8000, maximum: 384000 },
  periodSize: { minimum: 8, maximum: 8192 },
  numPeriods: { minimum: 1, maximum: 16 },
  numInputChannels: { minimum: 0, maximum: 256 },
  numOutputChannels: { minimum: 0, maximum: 256 },
}

export const DRIVERS: readonly SoundCard['driver'][] = ['jack', 'alsa', 'asio', 'webrtc']

export const TRACK = {
  channel: { minimum: 0, maximum: 255 },
  gain: { minimum: 0, maximum: 10 },
}

export const DIRECTIVITIES: readonly Track['directivity'][] = ['omni', 'cardioid']

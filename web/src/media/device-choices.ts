import { computed, effect, signal } from '@preact/signals'
import { topics } from '../../../devices/hub-client/index.ts'
import type { DeviceSettings, ReportedPayload } from '../../../schemas/actions/device.ts'
import type { DeviceConfig } from '../../../schemas/firmware.ts'
import { browserDeviceLink } from '../browser-device.ts'
import reported from '../../../schemas/json/client/devices_d_reported.json' with { type: 'json' }

/**
 * The browser device's audio choices (issue 14 item 2) are device settings, like an ov-box's: this
 * browser follows its own retained `devices/{d}/config` (`desired`), so a change made here (through
 * `device.update`) and one made from another of the person's devices are the same thing. It also
 * reports its audio inputs and outputs on `devices/{d}/reported` (`mediaDevices`), so that other
 * device can offer them.
 */

export type MediaDeviceList = NonNullable<ReportedPayload['mediaDevices']>

/** The schema's limit per list, read from the JSON Schema generated from it (no TypeBox in the bundle). */
const MAX_REPORTED = reported.properties.mediaDevices.properties.audioInputs.maxItems

/** The settings this browser device should follow now (`desired` of its configuration). */
export const browserDeviceSettings = signal<DeviceSettings>({})

/** This browser's audio inputs and outputs and cameras (labels are empty until they were allowed). */
export const mediaDevices = signal<MediaDeviceList>({ audioInputs: [], audioOutputs: [], videoInputs: [] })

/** What the media code applies: processing off (made for speech, not music), every stream on. */
export interface AudioChoices {
  input: string
  output: string
  echoCancellation: boolean
  noiseSuppression: boolean
  autoGainControl: boolean
  sendAudio: boolean
  receiveAudio: boolean
  /** The camera ('' = the browser's default) and the video switches (a stage with mediasoup video). */
  videoInput: string
  sendVideo: boolean
  receiveVideo: boolean
}

export function choicesOf(settings: DeviceSettings): AudioChoices {
  return {
    input: settings.inputAudioDeviceId ?? '',
    output: settings.outputAudioDeviceId ?? '',
    echoCancellation: settings.echoCancellation ?? false,
    noiseSuppression: settings.noiseSuppression ?? false,
    autoGainControl: settings.autoGainControl ?? false,
    sendAudio: settings.sendAudio ?? true,
    receiveAudio: settings.receiveAudio ?? true,
    videoInput: settings.inputVideoDeviceId ?? '',
    sendVideo: settings.sendVideo ?? true,
    receiveVideo: settings.receiveVideo ?? true,
  }
}

export const audioChoices = computed(() => choicesOf(browserDeviceSettings.value))

/** The microphone's getUserMedia constraints for these choices ('' = the browser's default input). */
export function microphoneConstraints(choices: AudioChoices): MediaTrackConstraints {
  return {
    echoCancellation: choices.echoCancellation,
    noiseSuppression: choices.noiseSuppression,
    autoGainControl: choices.autoGainControl,
    ...(choices.input ? { deviceId: { exact: choices.input } } : {}),
  }
}

/** The camera's getUserMedia constraints ('' = the browser's default camera). */
export function cameraConstraints(choices: AudioChoices): MediaTrackConstraints {
  return {
    width: { ideal: 640 },
    height: { ideal: 360 },
    frameRate: { ideal: 24 },
    ...(choices.videoInput ? { deviceId: { exact: choices.videoInput } } : {}),
  }
}

/** Whether going from `a` to `b` needs a new microphone track. */
export function newMicrophoneNeeded(a: AudioChoices, b: AudioChoices): boolean {
  return (
    a.input !== b.input ||
    a.echoCancellation !== b.echoCancellation ||
    a.noiseSuppression !== b.noiseSuppression ||
    a.autoGainControl !== b.autoGainControl
  )
}

const listed = (devices: MediaDeviceInfo[], kind: MediaDeviceKind) =>
  devices
    .filter((d) => d.kind === kind && d.deviceId)
    .slice(0, MAX_REPORTED)
    .map((d) => ({ id: d.deviceId.slice(0, 200), label: d.label.slice(0, 200) }))

/** The hub refuses a report over 8 KiB: long lists lose their last entries (rare: 12 each at most). */
function fitted(list: MediaDeviceList): MediaDeviceList {
  const fit = {
    audioInputs: [...list.audioInputs],
    audioOutputs: [...list.audioOutputs],
    videoInputs: [...(list.videoInputs ?? [])],
  }
  while (JSON.stringify(fit).length > 7000) {
    const lists = [fit.audioInputs, fit.audioOutputs, fit.videoInputs]
    lists.reduce((a, b) => (b.length > a.length ? b : a)).pop()
  }
  return fit
}

/** Lists the inputs and outputs again (after a device change, or once the microphone was allowed). */
export async function refreshMediaDevices(): Promise<void> {
  if (!navigator.mediaDevices?.enumerateDevices) return
  const devices = await navigator.mediaDevices.enumerateDevices()
  const next = {
    audioInputs: listed(devices, 'audioinput'),
    audioOutputs: listed(devices, 'audiooutput'),
    videoInputs: listed(devices, 'videoinput'),
  }
  if (JSON.stringify(next) !== JSON.stringify(mediaDevices.peek())) mediaDevices.value = next
}

/**
 * Follows the configuration and reports the device list on every connection of this browser's
 * device, and lists the devices again when the system's change. Returns the stop.
 */
export function followDeviceChoices(): () => void {
  const onChange = () => void refreshMediaDevices().catch(() => undefined)
  navigator.mediaDevices?.addEventListener?.('devicechange', onChange)
  onChange()
  const stopConfig = effect(() => {
    const link = browserDeviceLink.value
    if (!link) return
    return link.client.watch<DeviceConfig>(topics.deviceConfig.build(link.deviceId), ({ value }) => {
      browserDeviceSettings.value = value?.desired ?? {}
    })
  })
  const stopReport = effect(() => {
    const link = browserDeviceLink.value
    const list = mediaDevices.value
    if (!link) return
    const report: ReportedPayload = { mediaDevices: fitted(list) }
    void link.client
      .publish(topics.deviceReported.build(link.deviceId), JSON.stringify(report))
      .catch(() => undefined)
  })
  return () => {
    navigator.mediaDevices?.removeEventListener?.('devicechange', onChange)
    stopConfig()
    stopReport()
  }
}

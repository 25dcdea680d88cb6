import { useSignal } from '@preact/signals'
import { useEffect, useId } from 'preact/hooks'
import type { DeviceSettings } from '../../../schemas/actions/device.ts'
import { browserDeviceId } from '../browser-device.ts'
import { connection, hub } from '../connection.ts'
import { type AudioChoices, audioChoices, mediaDevices } from '../media/device-choices.ts'
import { message } from '../ui.tsx'

const AUDIO_SWITCHES = [
  ['sendAudio', 'Send my audio'],
  ['receiveAudio', 'Receive the others’ audio'],
  ['echoCancellation', 'Echo cancellation'],
  ['noiseSuppression', 'Noise suppression'],
  ['autoGainControl', 'Automatic gain'],
] as const
const VIDEO_SWITCHES = [
  ['sendVideo', 'Send my video'],
  ['receiveVideo', 'Receive the others’ video'],
] as const

/** A device list's options, with the chosen one kept even when this browser does not list it (any more). */
function options(list: readonly { id: string; label: string }[], chosen: string, what: string) {
  const all = chosen && !list.some((d) => d.id === chosen) ? [...list, { id: chosen, label: '' }] : list
  return all.map((d, i) => (
    <option key={d.id} value={d.id}>
      {d.label || `${what} ${i + 1} (its name shows once the microphone is allowed)`}
    </option>
  ))
}

/**
 * This browser device's audio settings in the stage (issue 14 item 2): microphone, output, the
 * processing switches, send and receive. Each change is a `device.update` of this browser's device,
 * the same setting another of the person's devices changes remotely; what is shown is the device's
 * configuration, so a remote change shows here too.
 */
export function AudioChoicesForm({ audio = true, video = false }: { audio?: boolean; video?: boolean }) {
  const id = useId()
  const SWITCHES = [...(audio ? AUDIO_SWITCHES : []), ...(video ? VIDEO_SWITCHES : [])]
  const outcome = useSignal({ text: '', failed: false })
  const deviceId = browserDeviceId.value
  const applied = audioChoices.value
  // what was just chosen shows until the configuration comes back (or the change is refused)
  const pending = useSignal<Partial<AudioChoices>>({})
  useEffect(() => {
    pending.value = {}
  }, [applied])
  const choices = { ...applied, ...pending.value }
  const devices = mediaDevices.value
  const disabled = !deviceId || connection.value.state !== 'online'

  const change = (
    settings: Partial<Record<keyof DeviceSettings, string | boolean | null>>,
    shown: Partial<AudioChoices>,
  ) => {
    outcome.value = { text: 'Saving…', failed: false }
    pending.value = { ...pending.value, ...shown }
    hub
      .value!.request('device.update', { deviceId: deviceId!, settings })
      .then(() => (outcome.value = { text: 'Saved: this browser applies it now.', failed: false }))
      .catch((err: unknown) => {
        pending.value = {}
        outcome.value = { text: message(err), failed: true }
      })
  }
  const chooseDevice =
    (key: 'inputAudioDeviceId' | 'outputAudioDeviceId' | 'inputVideoDeviceId') => (event: Event) => {
      const value = (event.currentTarget as HTMLSelectElement).value
      const field = {
        inputAudioDeviceId: 'input',
        outputAudioDeviceId: 'output',
        inputVideoDeviceId: 'videoInput',
      }
      change({ [key]: value || null }, { [field[key]]: value })
    }

  return (
    <details class="audio-choices" data-testid="audio-choices">
      <summary id={`${id}-h`}>This browser’s {audio ? 'audio' : 'video'} settings</summary>
      {!deviceId && (
        <p>This browser is not connected as your device yet: the settings can be changed once it is.</p>
      )}
      {video && (
        <label>
          Camera
          <select
            value={choices.videoInput}
            disabled={disabled}
            onChange={chooseDevice('inputVideoDeviceId')}
          >
            <option value="">The browser’s default</option>
            {options(devices.videoInputs ?? [], choices.videoInput, 'Camera')}
          </select>
        </label>
      )}
      {audio && (
        <div class="pair">
          <label>
            Microphone
            <select value={choices.input} disabled={disabled} onChange={chooseDevice('inputAudioDeviceId')}>
              <option value="">The browser’s default</option>
              {options(devices.audioInputs, choices.input, 'Microphone')}
            </select>
          </label>
          <label>
            Output
            <select value={choices.output} disabled={disabled} onChange={chooseDevice('outputAudioDeviceId')}>
              <option value="">The browser’s default</option>
              {options(devices.audioOutputs, choices.output, 'Output')}
            </select>
          </label>
        </div>
      )}
      <fieldset class="switches">
        <legend>Streams and processing (processing is made for speech: off for music)</legend>
        {SWITCHES.map(([key, label]) => (
          <label key={key} class="check">
            <input
              type="checkbox"
              name={key}
              checked={choices[key]}
              disabled={disabled}
              onChange={(event) => {
                const on = (event.currentTarget as HTMLInputElement).checked
                change({ [key]: on }, { [key]: on })
              }}
            />
            {label}
          </label>
        ))}
      </fieldset>
      <p role={outcome.value.failed ? 'alert' : 'status'} class={outcome.value.failed ? 'error' : ''}>
        {outcome.value.text}
      </p>
    </details>
  )
}

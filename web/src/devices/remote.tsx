import { useSignal } from '@preact/signals'
import { useId } from 'preact/hooks'
import type { DeviceSettings, DeviceState, SoundCard, Track } from '../../../schemas/actions/device.ts'
import { connection, hub } from '../connection.ts'
import { fields, message, Outcome } from '../ui.tsx'
import { DIRECTIVITIES, DRIVERS, JITTER, SOUND_CARD, TRACK } from './schema-bounds.ts'

/** A form's outcome and a runner that fills it: the hub's message on failure. */
function useOutcome() {
  const outcome = useSignal({ text: '', failed: false })
  const run = async (work: () => Promise<string>) => {
    outcome.value = { text: '', failed: false }
    try {
      outcome.value = { text: await work(), failed: false }
    } catch (err) {
      outcome.value = { text: message(err), failed: true }
    }
  }
  return { outcome, run }
}

/** The bounds of a number in the schema, as input attributes: the form refuses what the hub would. */
const bounds = (schema: { minimum?: number; maximum?: number }) => ({
  min: schema.minimum,
  max: schema.maximum,
})

const number = (text: string): number | null => (text.trim() === '' ? null : Number(text))

const SWITCHES = [
  ['sendAudio', 'Send audio'],
  ['receiveAudio', 'Receive audio'],
  ['sendVideo', 'Send video'],
  ['receiveVideo', 'Receive video'],
] as const
/** What a device does without a setting: every stream on. */
const switchedOn = (desired: DeviceSettings, key: (typeof SWITCHES)[number][0]) => desired[key] ?? true

const PROCESSING = [
  ['echoCancellation', 'Echo cancellation'],
  ['noiseSuppression', 'Noise suppression'],
  ['autoGainControl', 'Automatic gain'],
] as const
/** A browser's audio processing is off without a setting: it is made for speech, not music. */
const processingOn = (desired: DeviceSettings, key: (typeof PROCESSING)[number][0]) => desired[key] ?? false

interface ListedDevice {
  id: string
  label: string
}

/** The inputs and outputs a browser device reported (`reported.mediaDevices`). */
function reportedDevices(device: DeviceState): {
  audioInputs: ListedDevice[]
  audioOutputs: ListedDevice[]
  videoInputs: ListedDevice[]
} {
  const listed = (device.reported as Record<string, unknown>).mediaDevices as
    { audioInputs?: ListedDevice[]; audioOutputs?: ListedDevice[]; videoInputs?: ListedDevice[] } | undefined
  return {
    audioInputs: listed?.audioInputs ?? [],
    audioOutputs: listed?.audioOutputs ?? [],
    videoInputs: listed?.videoInputs ?? [],
  }
}

/** A browser's microphone or output: its default or one it reported (the chosen one kept if no longer listed). */
function MediaDeviceSelect(props: {
  name: 'inputAudioDeviceId' | 'outputAudioDeviceId' | 'inputVideoDeviceId'
  label: string
  list: ListedDevice[]
  chosen: string | undefined
}) {
  const { name, label, list, chosen } = props
  const all = chosen && !list.some((d) => d.id === chosen) ? [...list, { id: chosen, label: '' }] : list
  return (
    <label>
      {label}
      <select name={name}>
        <option value="" selected={!chosen}>
          The browser's default
        </option>
        {all.map((d, i) => (
          <option key={d.id} value={d.id} selected={d.id === chosen}>
            {d.label || `${label} ${i + 1} (unnamed until the browser allows it)`}
          </option>
        ))}
      </select>
    </label>
  )
}

/** A browser device's audio choices: the devices it reported and the processing switches. */
function BrowserAudioFields({ device }: { device: DeviceState }) {
  const listed = reportedDevices(device)
  return (
    <fieldset class="switches">
      <legend>Browser audio</legend>
      <MediaDeviceSelect
        name="inputAudioDeviceId"
        label="Microphone"
        list={listed.audioInputs}
        chosen={device.desired.inputAudioDeviceId}
      />
      <MediaDeviceSelect
        name="outputAudioDeviceId"
        label="Output"
        list={listed.audioOutputs}
        chosen={device.desired.outputAudioDeviceId}
      />
      <MediaDeviceSelect
        name="inputVideoDeviceId"
        label="Camera"
        list={listed.videoInputs}
        chosen={device.desired.inputVideoDeviceId}
      />
      {listed.audioInputs.length === 0 && (
        <p>No microphones or outputs reported yet: a browser reports them while it is open and online.</p>
      )}
      {PROCESSING.map(([key, label]) => (
        <label key={key} class="check">
          <input type="checkbox" name={key} defaultChecked={processingOn(device.desired, key)} />
          {label}
        </label>
      ))}
    </fieldset>
  )
}

/** A browser device's audio fields in a settings patch: only what changed. */
function browserAudioPatch(
  device: DeviceState,
  form: HTMLFormElement,
  patch: Record<string, string | number | boolean | null>,
) {
  for (const [key] of PROCESSING) {
    const on = (form.elements.namedItem(key) as HTMLInputElement).checked
    if (on !== processingOn(device.desired, key)) patch[key] = on
  }
  for (const key of ['inputAudioDeviceId', 'outputAudioDeviceId', 'inputVideoDeviceId'] as const) {
    const value = (form.elements.namedItem(key) as HTMLSelectElement).value || null
    if (value !== (device.desired[key] ?? null)) patch[key] = value
  }
}

/** Name, the switches, jitter and the active sound card: `device.update` with only what changed. */
export function SettingsForm({ device }: { device: DeviceState }) {
  const { outcome, run } = useOutcome()
  const id = useId()
  const online = connection.value.state === 'online'
  const submit = (event: Event) => {
    const field = fields(event)
    const form = event.currentTarget as HTMLFormElement
    void run(async () => {
      const patch: Record<string, string | number | boolean | null> = {}
      for (const [key] of SWITCHES) {
        const on = (form.elements.namedItem(key) as HTMLInputElement).checked
        if (on !== switchedOn(device.desired, key)) patch[key] = on
      }
      for (const key of ['senderJitter', 'receiverJitter'] as const) {
        const value = number(field(key))
        if (value !== (device.desired[key] ?? null)) patch[key] = value
      }
      const card = field('soundCardName') || null
      if (card !== (device.desired.soundCardName ?? null)) patch.soundCardName = card
      if (device.kind === 'browser') browserAudioPatch(device, form, patch)
      const name = field('name').trim()
      const params = {
        deviceId: device.id,
        ...(name !== device.name ? { name } : {}),
        ...(Object.keys(patch).length ? { settings: patch } : {}),
      }
      if (Object.keys(params).length === 1) return 'Nothing to save: nothing changed'
      await hub.value!.request('device.update', params)
      return 'Saved: the device gets its new configuration'
    })
  }
  const jitter = bounds(JITTER)
  return (
    <form onSubmit={submit} aria-labelledby={`${id}-h`}>
      <h3 id={`${id}-h`}>Settings</h3>
      <label>
        Name
        <input name="name" required maxLength={100} defaultValue={device.name} />
      </label>
      <fieldset class="switches">
        <legend>Streams</legend>
        {SWITCHES.map(([key, label]) => (
          <label key={key} class="check">
            <input type="checkbox" name={key} defaultChecked={switchedOn(device.desired, key)} />
            {label}
          </label>
        ))}
      </fieldset>
      {device.kind === 'browser' && <BrowserAudioFields device={device} />}
      <div class="pair">
        <label>
          Sender jitter (ms)
          <input
            name="senderJitter"
            type="number"
            step="any"
            {...jitter}
            placeholder="default"
            defaultValue={device.desired.senderJitter ?? ''}
          />
        </label>
        <label>
          Receiver jitter (ms)
          <input
            name="receiverJitter"
            type="number"
            step="any"
            {...jitter}
            placeholder="default"
            defaultValue={device.desired.receiverJitter ?? ''}
          />
        </label>
      </div>
      <label>
        Active sound card
        <select name="soundCardName">
          <option value="" selected={!device.desired.soundCardName}>
            The device's default
          </option>
          {device.soundCards.map((card) => (
            <option key={card.name} value={card.name} selected={card.name === device.desired.soundCardName}>
              {card.label ? `${card.label} (${card.name})` : card.name}
            </option>
          ))}
        </select>
      </label>
      <Outcome {...outcome.value} />
      <button type="submit" disabled={!online}>
        Save settings
      </button>
    </form>
  )
}

const P = SOUND_CARD

/** Adds a sound card, or replaces one by its name (`soundcard.set`), within the schema's bounds. */
export function SoundCardForm({ device, card }: { device: DeviceState; card?: SoundCard }) {
  const { outcome, run } = useOutcome()
  const online = connection.value.state === 'online'
  const submit = (event: Event) => {
    const field = fields(event)
    const form = event.currentTarget as HTMLFormElement
    void run(async () => {
      const label = field('label').trim()
      const soundCard: SoundCard = {
        name: field('name').trim(),
        ...(label ? { label } : {}),
        driver: field('driver') as SoundCard['driver'],
        sampleRate: Number(field('sampleRate')),
        periodSize: Number(field('periodSize')),
        numPeriods: Number(field('numPeriods')),
        numInputChannels: Number(field('numInputChannels')),
        numOutputChannels: Number(field('numOutputChannels')),
        ...(card?.isDefault !== undefined ? { isDefault: card.isDefault } : {}),
        ...(card?.sampleRates ? { sampleRates: card.sampleRates } : {}),
        ...(card?.softwareLatency !== undefined ? { softwareLatency: card.softwareLatency } : {}),
      }
      await hub.value!.request('soundcard.set', { deviceId: device.id, soundCard })
      if (!card) form.reset()
      return card ? `Sound card ${soundCard.name} saved` : `Sound card ${soundCard.name} added`
    })
  }
  return (
    <form onSubmit={submit} class="soundcard-form">
      <div class="pair">
        <label>
          Name on the device
          <input
            name="name"
            required
            minLength={P.name.minLength}
            maxLength={P.name.maxLength}
            defaultValue={card?.name}
            readOnly={!!card}
            placeholder="hw:1"
          />
        </label>
        <label>
          Label
          <input name="label" maxLength={P.label.maxLength} defaultValue={card?.label ?? ''} />
        </label>
      </div>
      <div class="pair">
        <label>
          Driver
          <select name="driver">
            {DRIVERS.map((driver) => (
              <option key={driver} selected={driver === (card?.driver ?? 'jack')}>
                {driver}
              </option>
            ))}
          </select>
        </label>
        <label>
          Sample rate (Hz)
          <input
            name="sampleRate"
            type="number"
            required
            step={1}
            {...bounds(P.sampleRate)}
            defaultValue={card?.sampleRate ?? 48000}
          />
        </label>
      </div>
      <div class="pair">
        <label>
          Period size
          <input
            name="periodSize"
            type="number"
            required
            step={1}
            {...bounds(P.periodSize)}
            defaultValue={card?.periodSize ?? 96}
          />
        </label>
        <label>
          Periods
          <input
            name="numPeriods"
            type="number"
            required
            step={1}
            {...bounds(P.numPeriods)}
            defaultValue={card?.numPeriods ?? 2}
          />
        </label>
      </div>
      <div class="pair">
        <label>
          Input channels
          <input
            name="numInputChannels"
            type="number"
            required
            step={1}
            {...bounds(P.numInputChannels)}
            defaultValue={card?.numInputChannels ?? 2}
          />
        </label>
        <label>
          Output channels
          <input
            name="numOutputChannels"
            type="number"
            required
            step={1}
            {...bounds(P.numOutputChannels)}
            defaultValue={card?.numOutputChannels ?? 2}
          />
        </label>
      </div>
      <Outcome {...outcome.value} />
      <div class="actions">
        <button type="submit" disabled={!online}>
          {card ? 'Save sound card' : 'Add sound card'}
        </button>
        {card && <RemoveSoundCard device={device} name={card.name} />}
      </div>
    </form>
  )
}

function RemoveSoundCard({ device, name }: { device: DeviceState; name: string }) {
  const { outcome, run } = useOutcome()
  const tracks = device.tracks.filter((track) => track.soundCardName === name).length
  return (
    <>
      <button
        type="button"
        class="danger"
        disabled={connection.value.state !== 'online'}
        onClick={() =>
          void run(async () => {
            await hub.value!.request('soundcard.remove', { deviceId: device.id, name })
            return `Sound card ${name} removed`
          })
        }
      >
        Remove sound card{tracks ? ` and its ${tracks} track${tracks > 1 ? 's' : ''}` : ''}
      </button>
      <Outcome {...outcome.value} />
    </>
  )
}

const T = TRACK

/** An input channel sent as a track: name, gain and directivity (`track.update`), or stop it (`track.remove`). */
export function TrackForm({ device, track }: { device: DeviceState; track: Track }) {
  const { outcome, run } = useOutcome()
  const online = connection.value.state === 'online'
  const submit = (event: Event) => {
    const field = fields(event)
    void run(async () => {
      const name = field('name').trim()
      const patch = {
        ...(name && name !== track.name ? { name } : {}),
        ...(Number(field('gain')) !== track.gain ? { gain: Number(field('gain')) } : {}),
        ...(field('directivity') !== track.directivity
          ? { directivity: field('directivity') as Track['directivity'] }
          : {}),
      }
      if (!Object.keys(patch).length) return 'Nothing to save: nothing changed'
      await hub.value!.request('track.update', { deviceId: device.id, trackId: track.id, patch })
      return 'Track saved'
    })
  }
  const remove = () =>
    void run(async () => {
      await hub.value!.request('track.remove', { deviceId: device.id, trackId: track.id })
      return 'Track removed'
    })
  const title = `${track.soundCardName} channel ${track.channel + 1}`
  return (
    <form onSubmit={submit} class="track" aria-label={`Track ${track.name ?? title}`}>
      <p class="track-title">{title}</p>
      <div class="triple">
        <label>
          Track name
          <input name="name" maxLength={100} defaultValue={track.name ?? ''} />
        </label>
        <TrackGainDirectivity gain={track.gain} directivity={track.directivity} />
      </div>
      <Outcome {...outcome.value} />
      <div class="actions">
        <button type="submit" disabled={!online}>
          Save track
        </button>
        <button type="button" class="danger" disabled={!online} onClick={remove}>
          Stop sending
        </button>
      </div>
    </form>
  )
}

function TrackGainDirectivity({ gain, directivity }: { gain: number; directivity: string }) {
  return (
    <>
      <label>
        Gain
        <input name="gain" type="number" step={0.01} required {...bounds(T.gain)} defaultValue={gain} />
      </label>
      <label>
        Directivity
        <select name="directivity">
          {DIRECTIVITIES.map((d) => (
            <option key={d} selected={d === directivity}>
              {d}
            </option>
          ))}
        </select>
      </label>
    </>
  )
}

/** Sends one more input channel as a track (`track.add`); channels are counted from 1 on screen. */
export function AddTrackForm({ device }: { device: DeviceState }) {
  const { outcome, run } = useOutcome()
  const cardName = useSignal(device.soundCards[0]?.name ?? '')
  const online = connection.value.state === 'online'
  const card = device.soundCards.find((c) => c.name === cardName.value) ?? device.soundCards[0]
  if (!card) return <p>Add a sound card first: tracks are input channels of a sound card.</p>
  const channels = Math.min(card.numInputChannels, T.channel.maximum + 1)
  const free = Array.from({ length: channels }, (_, channel) => channel).filter(
    (channel) => !device.tracks.some((t) => t.soundCardName === card.name && t.channel === channel),
  )
  const submit = (event: Event) => {
    const field = fields(event)
    const form = event.currentTarget as HTMLFormElement
    void run(async () => {
      const name = field('name').trim()
      await hub.value!.request('track.add', {
        deviceId: device.id,
        soundCardName: card.name,
        channel: Number(field('channel')),
        ...(name ? { name } : {}),
        gain: Number(field('gain')),
        directivity: field('directivity') as Track['directivity'],
      })
      form.reset()
      return `Track ${name || `channel ${Number(field('channel')) + 1}`} added`
    })
  }
  return (
    <form onSubmit={submit} class="track" aria-label="Add a track">
      <p class="track-title">Send another input channel</p>
      <div class="pair">
        <label>
          Sound card
          <select
            name="soundCardName"
            value={card.name}
            onChange={(e) => (cardName.value = e.currentTarget.value)}
          >
            {device.soundCards.map((c) => (
              <option key={c.name} value={c.name}>
                {c.label ? `${c.label} (${c.name})` : c.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          Input channel
          <select name="channel" required>
            {free.map((channel) => (
              <option key={channel} value={channel}>
                {channel + 1}
              </option>
            ))}
          </select>
        </label>
      </div>
      <div class="triple">
        <label>
          Track name
          <input name="name" maxLength={100} placeholder={`e.g. Vocals`} />
        </label>
        <TrackGainDirectivity gain={1} directivity="omni" />
      </div>
      <Outcome {...outcome.value} />
      <button type="submit" disabled={!online || free.length === 0}>
        {free.length ? 'Add track' : 'Every input channel is sent'}
      </button>
    </form>
  )
}

import { signal, useSignal } from '@preact/signals'
import { useEffect, useId, useRef } from 'preact/hooks'
import { topics } from '../../../devices/hub-client/index.ts'
import type { DeviceKind, DeviceState } from '../../../schemas/actions/device.ts'
import { browserDeviceId, rekeyed, removed } from '../browser-device.ts'
import { connection, hub } from '../connection.ts'
import { AddTrackForm, SettingsForm, SoundCardForm, TrackForm } from '../devices/remote.tsx'
import { ClaimCode, TokenOnce } from '../devices/shown-once.tsx'
import { useLive } from '../live.ts'
import { hubOrigin, session } from '../session.ts'
import { fields, message, Outcome, usePageTitle } from '../ui.tsx'
import './devices.css'

const KINDS: Record<DeviceKind, string> = { ovbox: 'ov-box', browser: 'Browser', native: 'App' }

/** Ticks every 10 s: "last seen" reads it and moves on by itself. */
const now = signal(Date.now())
setInterval(() => (now.value = Date.now()), 10_000)

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' })

/** "just now", "3 minutes ago", "yesterday". */
export function ago(iso: string, at: number): string {
  const seconds = Math.round((Date.parse(iso) - at) / 1000)
  if (seconds > -45) return 'just now'
  for (const [unit, size] of [
    ['day', 86_400],
    ['hour', 3600],
    ['minute', 60],
  ] as const) {
    if (-seconds >= size) return relative.format(Math.round(seconds / size), unit)
  }
  return relative.format(seconds, 'second')
}

function Presence({ device }: { device: DeviceState }) {
  const seen = device.lastSeen ? ago(device.lastSeen, now.value) : undefined
  return (
    <p class={`presence ${device.online ? 'online' : 'offline'}`} data-testid="presence">
      <span class="dot" aria-hidden="true" />
      <span class="state">{device.online ? 'Online' : 'Offline'}</span>
      {!seen && !device.online && <span class="seen"> · never connected yet</span>}
      {seen && (
        <span class="seen">
          {' · '}
          <time dateTime={device.lastSeen} title={new Date(device.lastSeen!).toLocaleString()}>
            {device.online ? `connected ${seen}` : `last seen ${seen}`}
          </time>
        </span>
      )}
    </p>
  )
}

/** A device's sound cards and tracks at a glance. */
function Summary({ device }: { device: DeviceState }) {
  return (
    <dl class="summary">
      <dt>Sound cards</dt>
      <dd>
        {device.soundCards.length
          ? device.soundCards
              .map(
                (c) =>
                  `${c.label ?? c.name} (${c.driver}, ${c.sampleRate / 1000} kHz, ${c.numInputChannels} in / ${c.numOutputChannels} out)`,
              )
              .join('; ')
          : 'none yet'}
      </dd>
      <dt>Tracks</dt>
      <dd data-testid="tracks">
        {device.tracks.length
          ? device.tracks.map((t) => t.name ?? `${t.soundCardName} ${t.channel + 1}`).join(', ')
          : 'none'}
      </dd>
    </dl>
  )
}

/** Re-key (a new token shown once), a new claim code for a box, and removal with confirmation. */
function Keys({ device }: { device: DeviceState }) {
  const outcome = useSignal({ text: '', failed: false })
  const token = useSignal<{ token: string; expiresAt: string } | undefined>(undefined)
  const claim = useSignal<{ code: string; expiresAt: string } | undefined>(undefined)
  const confirming = useSignal(false)
  const removeButton = useRef<HTMLButtonElement>(null)
  const cancelButton = useRef<HTMLButtonElement>(null)
  // the question takes the focus (on Cancel, the safe answer); answering gives it back
  const asked = useRef(false)
  useEffect(() => {
    if (confirming.value) cancelButton.current?.focus()
    else if (asked.current) removeButton.current?.focus()
    asked.current = confirming.value
  }, [confirming.value])
  const online = connection.value.state === 'online'
  const userId = session.value?.userId ?? ''
  const attempt = async (work: () => Promise<void>) => {
    outcome.value = { text: '', failed: false }
    try {
      await work()
    } catch (err) {
      outcome.value = { text: message(err), failed: true }
    }
  }
  const rekey = () =>
    attempt(async () => {
      const reply = await hub.value!.request('device.token', { deviceId: device.id })
      // this browser's own device keeps its new token itself: nothing to copy
      if (rekeyed(userId, device.id, reply))
        outcome.value = { text: 'This browser has its new token', failed: false }
      else token.value = reply
    })
  const claimCode = () =>
    attempt(async () => {
      claim.value = await hub.value!.request('device.claimCode', { deviceId: device.id })
    })
  const remove = () =>
    attempt(async () => {
      await hub.value!.request('device.remove', { deviceId: device.id })
      removed(userId, device.id)
    })
  return (
    <div class="keys">
      <div class="actions">
        <button type="button" class="secondary" disabled={!online} onClick={() => void rekey()}>
          New token (re-key)
        </button>
        {device.kind === 'ovbox' && (
          <button type="button" class="secondary" disabled={!online} onClick={() => void claimCode()}>
            New claim code
          </button>
        )}
        <button
          type="button"
          class="danger"
          ref={removeButton}
          disabled={!online}
          aria-expanded={confirming.value}
          onClick={() => (confirming.value = true)}
        >
          Remove device…
        </button>
      </div>
      <p class="hint">A new token or claim code stops the device's current token from working.</p>
      {token.value && <TokenOnce deviceId={device.id} {...token.value} replaced />}
      {claim.value && <ClaimCode {...claim.value} hubUrl={hubOrigin()} />}
      {confirming.value && (
        <div class="confirm" role="alertdialog" aria-labelledby={`confirm-${device.id}`}>
          <p id={`confirm-${device.id}`}>
            Remove <strong>{device.name}</strong>? Its token stops working at once and it leaves your list.
          </p>
          <div class="actions">
            <button type="button" class="danger" onClick={() => void remove()}>
              Yes, remove {device.name}
            </button>
            <button
              type="button"
              class="secondary"
              ref={cancelButton}
              onClick={() => (confirming.value = false)}
            >
              Cancel
            </button>
          </div>
        </div>
      )}
      <Outcome {...outcome.value} />
    </div>
  )
}

function DeviceCard({ device }: { device: DeviceState }) {
  const id = useId()
  const isThisBrowser = browserDeviceId.value === device.id
  return (
    <li class="device" aria-labelledby={`${id}-name`} data-testid="device" data-device-id={device.id}>
      <div class="device-head">
        <h2 id={`${id}-name`}>{device.name}</h2>
        <span class="kind">{KINDS[device.kind]}</span>
        {isThisBrowser && <span class="this">This browser</span>}
      </div>
      <Presence device={device} />
      <Summary device={device} />
      <details>
        <summary>Remote control</summary>
        <SettingsForm device={device} />
        <section aria-labelledby={`${id}-cards`}>
          <h3 id={`${id}-cards`}>Sound cards</h3>
          {device.soundCards.map((card) => (
            <SoundCardForm key={card.name} device={device} card={card} />
          ))}
          <details class="nested">
            <summary>Add a sound card</summary>
            <SoundCardForm device={device} />
          </details>
        </section>
        <section aria-labelledby={`${id}-tracks`}>
          <h3 id={`${id}-tracks`}>Tracks (input channels sent)</h3>
          {device.tracks.map((track) => (
            <TrackForm key={track.id} device={device} track={track} />
          ))}
          <AddTrackForm device={device} />
        </section>
      </details>
      <details>
        <summary>Token and removal</summary>
        <Keys device={device} />
      </details>
    </li>
  )
}

/** Adds an ov-box by claim code (the box fetches its own token), or any device with a token shown once. */
function AddDevice({ devices }: { devices: ReadonlyMap<string, DeviceState> }) {
  const outcome = useSignal({ text: '', failed: false })
  const claim = useSignal<{ deviceId: string; code: string; expiresAt: string } | undefined>(undefined)
  const created = useSignal<{ deviceId: string; token: string; expiresAt: string } | undefined>(undefined)
  const online = connection.value.state === 'online'
  // the box of the code shown, once it has claimed it and connected
  const box = claim.value && devices.get(topics.userDevice.build(session.value!.userId, claim.value.deviceId))
  const claimed = box?.online ? box : undefined
  const attempt = async (work: () => Promise<void>) => {
    outcome.value = { text: '', failed: false }
    try {
      await work()
    } catch (err) {
      outcome.value = { text: message(err), failed: true }
    }
  }
  const addBox = (event: Event) => {
    const field = fields(event)
    void attempt(async () => {
      const { device } = await hub.value!.request('device.create', {
        name: field('name').trim(),
        kind: 'ovbox',
      })
      const code = await hub.value!.request('device.claimCode', { deviceId: device.id })
      claim.value = { deviceId: device.id, ...code }
      created.value = undefined
    })
  }
  const addWithToken = (event: Event) => {
    const field = fields(event)
    void attempt(async () => {
      const reply = await hub.value!.request('device.create', {
        name: field('name').trim(),
        kind: field('kind') as DeviceKind,
      })
      created.value = { deviceId: reply.device.id, token: reply.token, expiresAt: reply.expiresAt }
      claim.value = undefined
    })
  }
  return (
    <section aria-labelledby="add-heading" class="add">
      <h2 id="add-heading">Add an ov-box</h2>
      <form onSubmit={addBox}>
        <label>
          Name of the box
          <input name="name" required maxLength={100} defaultValue="ov-box" />
        </label>
        <button type="submit" disabled={!online}>
          Get a claim code
        </button>
      </form>
      {claimed ? (
        <p role="status" class="claimed">
          {claimed.name} has claimed its code and is online: find it in the list above.
        </p>
      ) : (
        claim.value && <ClaimCode {...claim.value} hubUrl={hubOrigin()} />
      )}
      <details class="nested">
        <summary>Add with a token (advanced)</summary>
        <form onSubmit={addWithToken}>
          <div class="pair">
            <label>
              Device name
              <input name="name" required maxLength={100} />
            </label>
            <label>
              Kind
              <select name="kind">
                {Object.entries(KINDS).map(([kind, label]) => (
                  <option key={kind} value={kind}>
                    {label}
                  </option>
                ))}
              </select>
            </label>
          </div>
          <button type="submit" disabled={!online}>
            Create and show the token
          </button>
        </form>
        {created.value && <TokenOnce {...created.value} replaced={false} />}
      </details>
      <Outcome {...outcome.value} />
    </section>
  )
}

/** Every device of the person, live from `users/{u}/devices/+`, with remote control of each. */
export function DevicesPage() {
  usePageTitle('Devices')
  const userId = session.value?.userId
  const devices = useLive<DeviceState>(userId ? topics.userDevice.filter({ u: userId }) : undefined)
  const list = [...devices.value.values()].sort(
    (a, b) =>
      Number(b.id === browserDeviceId.value) - Number(a.id === browserDeviceId.value) ||
      a.name.localeCompare(b.name),
  )
  return (
    <main class="card wide devices-page">
      <h1>Devices</h1>
      <p class="lead">
        Your ov-boxes and browsers, live. Open a device's remote control to change what it sends and receives.
      </p>
      {list.length ? (
        <ul class="device-list" aria-label="Your devices">
          {list.map((device) => (
            <DeviceCard key={device.id} device={device} />
          ))}
        </ul>
      ) : (
        <p role="status">No devices yet: add an ov-box below.</p>
      )}
      <AddDevice devices={devices.value} />
    </main>
  )
}

import { useSignal } from '@preact/signals'
import { useId } from 'preact/hooks'

/** A copy button for a text, saying whether it worked (a page without clipboard access asks to select it). */
export function CopyButton({ text, label }: { text: string; label: string }) {
  const state = useSignal('')
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text)
      state.value = 'Copied'
    } catch {
      state.value = 'Copying is not allowed here: select the text and copy it'
    }
  }
  return (
    <span class="copy">
      <button type="button" class="secondary" onClick={() => void copy()}>
        {label}
      </button>
      <span role="status">{state.value}</span>
    </span>
  )
}

const timeOf = (iso: string) => new Date(iso).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' })

/** A device token, shown this once: copy it now, it cannot be shown again. */
export function TokenOnce({
  deviceId,
  token,
  expiresAt,
  replaced,
}: {
  deviceId: string
  token: string
  expiresAt: string
  replaced: boolean
}) {
  const id = useId()
  return (
    <div class="once" role="status">
      <p class="warning-text">
        <strong>Shown once.</strong> Copy the token now: the hub keeps no copy it could show again.
        {replaced && ' The old token of this device has stopped working: the device needs this one.'}
      </p>
      <label for={`${id}-device`}>Device id</label>
      <input id={`${id}-device`} readOnly value={deviceId} class="mono" />
      <label for={`${id}-token`}>Device token (valid until {timeOf(expiresAt)})</label>
      <textarea id={`${id}-token`} readOnly rows={3} class="mono" data-testid="device-token">
        {token}
      </textarea>
      <CopyButton text={token} label="Copy the token" />
    </div>
  )
}

/** A claim code: big, copyable, with its expiry and the command to run on the box. */
export function ClaimCode({ code, expiresAt, hubUrl }: { code: string; expiresAt: string; hubUrl: string }) {
  const command = `stagehub-ovbox claim ${code} --hub ${hubUrl}`
  const minutes = Math.max(0, Math.round((Date.parse(expiresAt) - Date.now()) / 60_000))
  return (
    <div class="once" role="status">
      <p>Claim code for the box:</p>
      <p class="claim-code mono" data-testid="claim-code">
        {code}
      </p>
      <CopyButton text={code} label="Copy the code" />
      <p>
        Valid once, until {new Date(expiresAt).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}{' '}
        (in about {minutes} minutes). On the box, run:
      </p>
      <pre class="mono command">
        <code>{command}</code>
      </pre>
      <CopyButton text={command} label="Copy the command" />
      <p>The box shows up online in your list as soon as it has claimed the code and connected.</p>
    </div>
  )
}

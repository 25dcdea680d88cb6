import { useSignal, useSignalEffect } from '@preact/signals'
import type { ActionResult } from '../../../devices/hub-client/index.ts'
import { connection, hub } from '../connection.ts'
import { navigate } from '../route.ts'
import { BackLink, fields, message, Outcome, usePageTitle } from '../ui.tsx'
import './invite.css'
import './stage-fields.css'

type Preview = ActionResult<'invite.preview'>

/**
 * An invitation opened (`#/invite/<code>`; signed out, the app asks to sign in first and keeps the
 * address): what it joins from invite.preview, then the password if the stage has one and a group
 * if the invite leaves the choice, and invite.redeem joins; then the stage's page.
 */
export function InvitePage({ code }: { code: string }) {
  // another code (a second link opened in the same tab) starts afresh
  return <Invitation key={code} code={code} />
}

function Invitation({ code }: { code: string }) {
  const preview = useSignal<Preview | undefined>(undefined)
  const refusal = useSignal('')
  const outcome = useSignal({ text: '', failed: false })
  const busy = useSignal(false)
  const picked = useSignal('')
  const online = connection.value.state === 'online'
  usePageTitle(preview.value ? `Invitation to ${preview.value.name}` : 'Invitation')

  useSignalEffect(() => {
    const client = hub.value
    if (!client || connection.value.state !== 'online' || preview.peek() || refusal.peek()) return
    let current = true
    client.request('invite.preview', { code }).then(
      (p) =>
        current &&
        (preview.value = { ...p, groups: [...p.groups].sort((a, b) => a.name.localeCompare(b.name)) }),
      (err: unknown) => current && (refusal.value = message(err)),
    )
    return () => (current = false)
  })

  const join = async (event: Event) => {
    const field = fields(event)
    const p = preview.value!
    busy.value = true
    try {
      const groupId = field('groupId')
      const password = field('password')
      await hub.value!.request('invite.redeem', {
        code,
        ...(p.groupId === undefined && groupId ? { groupId } : {}),
        ...(p.hasPassword ? { password } : {}),
      })
      navigate('stages', p.stageId)
    } catch (err) {
      outcome.value = { text: message(err), failed: true }
    } finally {
      busy.value = false
    }
  }

  if (refusal.value)
    return (
      <main class="card stage-area">
        <BackLink />
        <h1>This invitation cannot be used</h1>
        <p class="error" role="alert">
          {refusal.value}
        </p>
      </main>
    )
  const p = preview.value
  if (!p)
    return (
      <main class="card stage-area">
        <h1>Invitation</h1>
        <p role="status">{online ? 'Looking at the invitation…' : 'Connecting to the hub…'}</p>
      </main>
    )
  const chosen = p.groupId === undefined ? undefined : p.groups[0]
  return (
    <main class="card invite stage-area">
      <p class="kicker">
        {p.invitedBy ? `${p.invitedBy} invites you to join the stage` : 'You are invited to join the stage'}
      </p>
      <h1>{p.name}</h1>
      <p class="hint">
        Valid until {new Date(p.expiresAt).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' })}
      </p>
      <form onSubmit={(e) => void join(e)} aria-label={`Join ${p.name}`}>
        {chosen && (
          <p>
            You join the group{' '}
            <strong>
              <span class="swatch" style={{ background: chosen.color }} aria-hidden="true" />
              {chosen.name}
            </strong>
            .
          </p>
        )}
        {p.groupId === undefined &&
          (p.groups.length > 0 ? (
            <fieldset>
              <legend>Your group</legend>
              {p.groups.map((g, i) => (
                <label key={g.id} class="check">
                  <input
                    type="radio"
                    name="groupId"
                    value={g.id}
                    required
                    checked={picked.value ? picked.value === g.id : i === 0}
                    onChange={() => (picked.value = g.id)}
                  />
                  <span class="swatch" style={{ background: g.color }} aria-hidden="true" />
                  {g.name}
                </label>
              ))}
            </fieldset>
          ) : (
            <p class="error" role="alert">
              This stage has no group to join yet: ask who invited you to add one, then open the link again.
            </p>
          ))}
        {p.hasPassword && (
          <label>
            The stage's password
            <input name="password" type="password" autoComplete="off" required maxLength={200} />
          </label>
        )}
        <Outcome {...outcome.value} />
        <button
          type="submit"
          disabled={busy.value || !online || (p.groupId === undefined && p.groups.length === 0)}
        >
          Join {p.name}
        </button>
      </form>
    </main>
  )
}

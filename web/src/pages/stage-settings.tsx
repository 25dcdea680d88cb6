import { useSignal, useSignalEffect } from '@preact/signals'
import { topics } from '../../../devices/hub-client/index.ts'
import type { InviteState } from '../../../schemas/actions/invite.ts'
import type { GroupState, StageState, StageSummary } from '../../../schemas/actions/stage.ts'
import { connection, hub } from '../connection.ts'
import { useLive, useLiveValue } from '../live.ts'
import { href, navigate } from '../route.ts'
import { session } from '../session.ts'
import { BackLink, fields, message, Outcome, usePageTitle } from '../ui.tsx'
import { readStageSettings, StageFields } from './stage-fields.tsx'
import './stage-settings.css'

const EXPIRIES = [
  [3600, '1 hour'],
  [86_400, '1 day'],
  [7 * 86_400, '7 days'],
  [30 * 86_400, '30 days'],
] as const

const when = (iso: string) => new Date(iso).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' })

/** The link that opens an invitation in this app. */
const inviteLink = (code: string) => `${location.origin}${location.pathname}${href('invite', code)}`

function EditStage({ stage }: { stage: StageState }) {
  const outcome = useSignal({ text: '', failed: false })
  const removePassword = useSignal(false)
  const save = async (event: Event) => {
    const form = event.currentTarget as HTMLFormElement
    const field = fields(event)
    const password = field('password')
    try {
      await hub.value!.request('stage.update', {
        stageId: stage.id,
        version: stage.version,
        patch: {
          ...readStageSettings(field),
          ...(removePassword.value ? { password: null } : password ? { password } : {}),
        },
      })
      ;(form.elements.namedItem('password') as HTMLInputElement).value = ''
      removePassword.value = false
      outcome.value = { text: 'Settings saved', failed: false }
    } catch (err) {
      outcome.value = { text: message(err), failed: true }
    }
  }
  return (
    <section aria-labelledby="edit-heading">
      <h2 id="edit-heading">Stage</h2>
      <form onSubmit={(e) => void save(e)}>
        <StageFields initial={stage} />
        <fieldset>
          <legend>Password</legend>
          <p class="hint">
            {stage.hasPassword
              ? 'Joining needs a password now. Type a new one to change it.'
              : 'Anyone with an invite can join now. Type one to require it.'}
          </p>
          <label>
            New password
            <input
              name="password"
              type="password"
              autoComplete="new-password"
              maxLength={200}
              disabled={removePassword.value}
            />
          </label>
          {stage.hasPassword && (
            <label class="check">
              <input
                type="checkbox"
                checked={removePassword.value}
                onChange={(e) => (removePassword.value = e.currentTarget.checked)}
              />
              Remove the password
            </label>
          )}
        </fieldset>
        <Outcome {...outcome.value} />
        <button type="submit" disabled={connection.value.state !== 'online'}>
          Save settings
        </button>
      </form>
    </section>
  )
}

function Invites({ stage, groups }: { stage: StageState; groups: readonly GroupState[] }) {
  const invites = useSignal<readonly InviteState[]>([])
  const created = useSignal('')
  const outcome = useSignal({ text: '', failed: false })
  const copied = useSignal('')
  const generation = useSignal(0)
  // invite.list is an answer, not a retained topic: asked again after each change made here
  useSignalEffect(() => {
    void generation.value
    const client = hub.value
    if (!client || connection.value.state !== 'online') return
    let current = true
    client.request('invite.list', { stageId: stage.id }).then(
      (r) => current && (invites.value = r.invites),
      (err: unknown) => current && (outcome.value = { text: message(err), failed: true }),
    )
    return () => (current = false)
  })
  const groupName = (id: string | undefined) =>
    id === undefined ? 'any group (they pick)' : (groups.find((g) => g.id === id)?.name ?? 'a removed group')

  const create = async (event: Event) => {
    const field = fields(event)
    copied.value = ''
    try {
      const groupId = field('groupId')
      const { code } = await hub.value!.request('invite.create', {
        stageId: stage.id,
        ...(groupId ? { groupId } : {}),
        expiresInSeconds: Number(field('expires')),
      })
      created.value = inviteLink(code)
      outcome.value = { text: 'Invite link made: copy it now, it is shown only once', failed: false }
      generation.value++
    } catch (err) {
      outcome.value = { text: message(err), failed: true }
    }
  }
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(created.value)
      copied.value = 'Copied'
    } catch {
      const box = document.getElementById('invite-link') as HTMLInputElement | null
      box?.select()
      copied.value = 'The browser did not allow copying: the link is selected, copy it with Ctrl+C'
    }
  }
  const revoke = async (invite: InviteState) => {
    try {
      await hub.value!.request('invite.revoke', { stageId: stage.id, inviteId: invite.id })
      outcome.value = { text: 'Invite revoked: its link no longer works', failed: false }
      generation.value++
    } catch (err) {
      outcome.value = { text: message(err), failed: true }
    }
  }
  return (
    <section aria-labelledby="invites-heading">
      <h2 id="invites-heading">Invitations</h2>
      <form onSubmit={(e) => void create(e)} aria-label="Make an invite link">
        <div class="pair">
          <label>
            Group
            <select name="groupId">
              <option value="">Any: the person picks</option>
              {groups.map((g) => (
                <option key={g.id} value={g.id}>
                  {g.name}
                </option>
              ))}
            </select>
          </label>
          <label>
            Valid for
            <select name="expires">
              {EXPIRIES.map(([seconds, label]) => (
                <option key={seconds} value={seconds} selected={seconds === 7 * 86_400}>
                  {label}
                </option>
              ))}
            </select>
          </label>
        </div>
        {groups.length === 0 && (
          <p class="hint">This stage has no group yet: whoever is invited cannot join until it has one.</p>
        )}
        <button type="submit" class="secondary" disabled={connection.value.state !== 'online'}>
          Make invite link
        </button>
      </form>
      <Outcome {...outcome.value} />
      {created.value && (
        <div class="invite-link">
          <label>
            Invite link
            <input
              id="invite-link"
              readOnly
              value={created.value}
              onFocus={(e) => e.currentTarget.select()}
            />
          </label>
          <button type="button" onClick={() => void copy()}>
            Copy
          </button>
          <p role="status" class="hint">
            {copied.value}
          </p>
        </div>
      )}
      <h3>Open invitations</h3>
      {invites.value.length === 0 ? (
        <p class="hint">None: links you make show here until they expire or you revoke them.</p>
      ) : (
        <ul class="invites">
          {[...invites.value]
            .sort((a, b) => b.createdAt.localeCompare(a.createdAt))
            .map((invite) => (
              <li key={invite.id}>
                <span>
                  For {groupName(invite.groupId)}, until {when(invite.expiresAt)}; used {invite.redeemed}{' '}
                  {invite.redeemed === 1 ? 'time' : 'times'}
                </span>
                <button type="button" class="secondary" onClick={() => void revoke(invite)}>
                  Revoke<span class="visually-hidden"> the invite until {when(invite.expiresAt)}</span>
                </button>
              </li>
            ))}
        </ul>
      )}
    </section>
  )
}

function DeleteStage({ stage }: { stage: StageState }) {
  const typed = useSignal('')
  const outcome = useSignal({ text: '', failed: false })
  const remove = async (event: Event) => {
    event.preventDefault()
    if (typed.value !== stage.name) return
    try {
      await hub.value!.request('stage.remove', { stageId: stage.id })
      navigate('stages')
    } catch (err) {
      outcome.value = { text: message(err), failed: true }
    }
  }
  return (
    <section aria-labelledby="delete-heading" class="danger-zone">
      <h2 id="delete-heading">Delete the stage</h2>
      <p>
        This removes the stage with its groups, members, tracks, mixes and invitations, for everyone. It
        cannot be undone.
      </p>
      <form onSubmit={(e) => void remove(e)}>
        <label>
          Type the stage's name, {stage.name}, to confirm
          <input
            name="confirm"
            autoComplete="off"
            value={typed.value}
            onInput={(e) => (typed.value = e.currentTarget.value)}
          />
        </label>
        <Outcome {...outcome.value} />
        <button
          type="submit"
          class="danger"
          disabled={typed.value !== stage.name || connection.value.state !== 'online'}
        >
          Delete stage
        </button>
      </form>
    </section>
  )
}

/** A stage's settings, invitations and deletion, for its admins. */
export function StageSettingsPage({ stageId }: { stageId: string }) {
  const userId = session.value?.userId
  const summary = useLiveValue<StageSummary>(userId && topics.stageSummary.build(userId, stageId))
  const stage = useLiveValue<StageState>(topics.stage.build(stageId))
  const groups = [...useLive<GroupState>(topics.group.build(stageId, '+')).value.values()].sort((a, b) =>
    a.name.localeCompare(b.name),
  )
  usePageTitle(`Settings · ${stage?.name ?? summary?.name ?? 'Stage'}`)
  const back = <BackLink to={['stages', stageId]} label={stage?.name ?? summary?.name ?? 'the stage'} />
  if (summary && !summary.isAdmin)
    return (
      <main class="card wide stage-area">
        {back}
        <h1>Settings of {summary.name}</h1>
        <p role="status">Only the stage's admins can change its settings: ask one of them.</p>
      </main>
    )
  if (!stage || !summary)
    return (
      <main class="card wide stage-area">
        {back}
        <h1>Stage settings</h1>
        <p role="status">
          {connection.value.state === 'online'
            ? 'Loading the stage… If it does not appear, it was deleted or you are not in it.'
            : 'Connecting…'}
        </p>
      </main>
    )
  return (
    <main class="card wide settings stage-area">
      {back}
      <h1>Settings of {stage.name}</h1>
      <EditStage key={stage.id} stage={stage} />
      <Invites key={stage.id} stage={stage} groups={groups} />
      <DeleteStage key={stage.id} stage={stage} />
    </main>
  )
}

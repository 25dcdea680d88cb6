import { useSignal } from '@preact/signals'
import { topics } from '../../../devices/hub-client/index.ts'
import type { MemberState, StageSummary } from '../../../schemas/actions/stage.ts'
import { connection, hub } from '../connection.ts'
import { useLive } from '../live.ts'
import { href, navigate } from '../route.ts'
import { session } from '../session.ts'
import { fields, message, Outcome, usePageTitle } from '../ui.tsx'
import { readStageSettings, StageFields } from './stage-fields.tsx'
import './stages.css'

/** Who is in one stage now, live from its retained members (the person sees them as a stage insider). */
function Presence({ stageId }: { stageId: string }) {
  const members = [...useLive<MemberState>(topics.member.build(stageId, '+')).value.values()]
  const online = members.filter((m) => m.online)
  const joined = members.filter((m) => m.joined)
  return (
    <p class="presence" data-testid="presence">
      <span class={online.length > 0 ? 'count live' : 'count'}>{online.length} online</span>
      {online.length > 0 && `: ${online.map((m) => m.name).join(', ')}`}
      <span class="muted">
        {' · '}
        {members.length === 0
          ? 'no members yet'
          : `${joined.length} of ${members.length} ${members.length === 1 ? 'member' : 'members'} in the stage`}
      </span>
    </p>
  )
}

function StageItem({ stage }: { stage: StageSummary }) {
  return (
    <li class="stage-item">
      <div class="stage-head">
        <h2>
          <a href={href('stages', stage.id)}>{stage.name}</a>
        </h2>
        <span class={`badge ${stage.isAdmin ? 'admin' : ''}`}>{stage.isAdmin ? 'Admin' : 'Member'}</span>
        {stage.joined && <span class="badge joined">You are in it</span>}
        {stage.hasPassword && <span class="badge">Password</span>}
      </div>
      <Presence stageId={stage.id} />
      {stage.groups.length > 0 && (
        <ul class="groups" aria-label={`Groups of ${stage.name}`}>
          {stage.groups.map((g) => (
            <li key={g.id}>
              <span class="swatch" style={{ background: g.color }} aria-hidden="true" />
              {g.name}
            </li>
          ))}
        </ul>
      )}
      {stage.isAdmin && (
        <p class="actions">
          <a href={href('stages', stage.id, 'settings')}>
            Settings and invitations<span class="visually-hidden"> of {stage.name}</span>
          </a>
        </p>
      )}
    </li>
  )
}

function CreateStage({ open }: { open: boolean }) {
  const outcome = useSignal({ text: '', failed: false })
  const busy = useSignal(false)
  const create = async (event: Event) => {
    const field = fields(event)
    const client = hub.value
    if (!client) return
    busy.value = true
    outcome.value = { text: '', failed: false }
    try {
      const password = field('password')
      const stage = await client.request('stage.create', {
        ...readStageSettings(field),
        ...(password ? { password } : {}),
      })
      const group = field('group').trim()
      if (group) await client.request('group.create', { stageId: stage.id, name: group })
      navigate('stages', stage.id)
    } catch (err) {
      outcome.value = { text: message(err), failed: true }
    } finally {
      busy.value = false
    }
  }
  return (
    <details class="create" open={open}>
      <summary>Create a stage</summary>
      <form onSubmit={(e) => void create(e)} aria-label="Create a stage">
        <StageFields />
        <label>
          Password (optional: who joins must know it)
          <input name="password" type="password" autoComplete="new-password" maxLength={200} />
        </label>
        <label>
          First group (the others join into it; more can be added later)
          <input name="group" maxLength={100} defaultValue="Band" />
        </label>
        <Outcome {...outcome.value} />
        <button type="submit" disabled={busy.value || connection.value.state !== 'online'}>
          Create stage
        </button>
      </form>
    </details>
  )
}

/** My stages, live from the retained `users/{u}/stages/+` summaries, and a form to create one. */
export function StagesPage() {
  usePageTitle('Your stages')
  const userId = session.value?.userId
  const summaries = useLive<StageSummary>(userId && topics.stageSummary.build(userId, '+')).value
  const stages = [...summaries.values()].sort((a, b) => a.name.localeCompare(b.name))
  const online = connection.value.state === 'online'
  return (
    <main class="card wide stages stage-area">
      <h1>Your stages</h1>
      {stages.length > 0 ? (
        <ul class="stage-list" aria-label="Your stages">
          {stages.map((stage) => (
            <StageItem key={stage.id} stage={stage} />
          ))}
        </ul>
      ) : (
        <p class="empty" role="status">
          {online
            ? 'You are in no stage yet. Create one below, or open an invite link someone sent you.'
            : 'Loading your stages…'}
        </p>
      )}
      <CreateStage open={online && stages.length === 0} />
    </main>
  )
}

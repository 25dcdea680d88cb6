import { useSignal, useSignalEffect } from '@preact/signals'
import { useEffect } from 'preact/hooks'
import { topics } from '../../../devices/hub-client/index.ts'
import type {
  GroupState,
  MemberState,
  StageState,
  StageSummary,
  StageTrackState,
} from '../../../schemas/actions/stage.ts'
import { connection, hub } from '../connection.ts'
import { useLive, useLiveValue } from '../live.ts'
import { href, navigate } from '../route.ts'
import { session } from '../session.ts'
import { AudioPanel } from '../stage/audio.tsx'
import { Chat } from '../stage/chat.tsx'
import { useFocusOn } from '../stage/focus.ts'
import { Presence } from '../stage/presence.tsx'
import { GroupCreateForm, Roster } from '../stage/roster.tsx'
import { BackLink, fields, message, Outcome, usePageTitle } from '../ui.tsx'
import './stage.css'

/** How long after getting online the page waits for the retained summary before saying there is none. */
const SUMMARY_GRACE_MS = 1500

/** One stage (`#/stages/<id>`): a fresh view per stage, so watches and chat follow the address. */
export function StagePage({ stageId }: { stageId: string }) {
  return <StageView key={stageId} stageId={stageId} />
}

function StageView({ stageId }: { stageId: string }) {
  const userId = session.value?.userId ?? ''
  const summary = useLiveValue<StageSummary>(userId ? topics.stageSummary.build(userId, stageId) : undefined)
  const stage = useLiveValue<StageState>(topics.stage.build(stageId))
  const groups = useLive<GroupState>(topics.group.filter({ s: stageId }))
  const members = useLive<MemberState>(topics.member.filter({ s: stageId }))
  // how many each member sends, and the audio this browser receives
  const tracks = useLive<StageTrackState>(topics.track.filter({ s: stageId }))
  usePageTitle(stage?.name ?? summary?.name ?? 'Stage')
  const seen = useSignal(false)
  const settled = useSignal(false)

  useEffect(() => {
    if (summary) seen.value = true
  }, [summary, seen])
  // retained values arrive right after subscribing: once online for a moment, no summary means none
  useSignalEffect(() => {
    if (connection.value.state !== 'online') return
    const timer = setTimeout(() => (settled.value = true), SUMMARY_GRACE_MS)
    return () => clearTimeout(timer)
  })

  if (!summary) {
    if (seen.value)
      return (
        <Notice heading="You were removed from this stage">
          An admin removed you (or the stage is gone): your place in it, your mix and its tracks went with it.
        </Notice>
      )
    if (!settled.value)
      return (
        <main class="card" aria-busy="true">
          <BackLink />
          <h1>Stage</h1>
          <p role="status">Loading the stage…</p>
        </main>
      )
    return (
      <Notice heading="You are not in this stage">
        Only its members and admins see a stage: ask an admin for an invitation link.
      </Notice>
    )
  }

  const isAdmin = summary.isAdmin
  const memberList = [...members.value.values()]
  const me = memberList.find((m) => m.userId === userId)
  const trackCounts = new Map<string, number>()
  for (const track of tracks.value.values())
    trackCounts.set(track.memberId, (trackCounts.get(track.memberId) ?? 0) + 1)
  const groupList = [...groups.value.values()].sort((a, b) => a.name.localeCompare(b.name))
  const online = memberList.filter((m) => m.online).length

  return (
    <main class="stage-page">
      <BackLink />
      <header class="stage-head">
        <div>
          <h1>{stage?.name ?? summary.name}</h1>
          <p class="stage-facts">
            {memberList.length} {memberList.length === 1 ? 'member' : 'members'}, {online} online
            {summary.hasPassword ? ' · password protected' : ''}
            {isAdmin ? ' · you are an admin' : ''}
          </p>
        </div>
        <nav aria-label="This stage" class="stage-links">
          <a href={href('stages', stageId, 'mixer')}>Mixer</a>
          {isAdmin && <a href={href('stages', stageId, 'settings')}>Settings</a>}
        </nav>
      </header>
      <div class="stage-grid">
        <div class="stage-main">
          <YourPlace stageId={stageId} summary={summary} me={me} groups={groupList} />
          {summary.joined && (stage?.audioType === 'mediasoup' || stage?.videoType === 'mediasoup') && (
            <AudioPanel
              stageId={stageId}
              userId={userId}
              audio={stage.audioType === 'mediasoup'}
              video={stage.videoType === 'mediasoup'}
              members={memberList}
              tracks={tracks.value}
            />
          )}
          <Roster
            stageId={stageId}
            userId={userId}
            isAdmin={isAdmin}
            admins={stage?.admins ?? []}
            groups={groupList}
            members={memberList}
            trackCounts={trackCounts}
          />
          {isAdmin && <GroupCreateForm stageId={stageId} groups={groupList} />}
        </div>
        <Chat stageId={stageId} joined={summary.joined} />
      </div>
    </main>
  )
}

function Notice({ heading, children }: { heading: string; children: string }) {
  return (
    <main class="card">
      <BackLink />
      <h1>{heading}</h1>
      <p role="status">{children}</p>
    </main>
  )
}

/** The person in this stage: join (group, password), leave, forget. */
function YourPlace({
  stageId,
  summary,
  me,
  groups,
}: {
  stageId: string
  summary: StageSummary
  me: MemberState | undefined
  groups: GroupState[]
}) {
  const outcome = useSignal({ text: '', failed: false })
  const confirming = useSignal(false)
  const cancelRef = useFocusOn(confirming.value)
  const triggerRef = useFocusOn(!confirming.value)
  const busy = useSignal(false)
  const online = connection.value.state === 'online'
  const choices = groups.length > 0 ? groups : summary.groups

  const run = async (work: () => Promise<unknown>, done: string) => {
    busy.value = true
    try {
      await work()
      outcome.value = { text: done, failed: false }
    } catch (err) {
      outcome.value = { text: message(err), failed: true }
    } finally {
      busy.value = false
    }
  }
  const join = (event: Event) => {
    const field = fields(event)
    const password = field('password')
    void run(
      () =>
        hub.value!.request('stage.join', {
          stageId,
          groupId: field('groupId'),
          ...(summary.hasPassword ? { password } : {}),
        }),
      'You joined the stage',
    )
  }
  const forget = async () => {
    busy.value = true
    try {
      await hub.value!.request('stage.forget', { stageId })
      navigate('stages')
    } catch (err) {
      outcome.value = { text: message(err), failed: true }
      busy.value = false
    }
  }

  return (
    <section aria-labelledby="place-heading" class="panel">
      <h2 id="place-heading">You</h2>
      {summary.joined ? (
        <div class="place-row">
          <p>
            {me && <Presence member={me} />} You are in this stage
            {me ? `, in ${groups.find((g) => g.id === me.groupId)?.name ?? 'a group'}` : ''}
            {me?.seat != null ? `, seat ${me.seat + 1}` : ''}.
          </p>
          <button
            type="button"
            disabled={!online || busy.value}
            onClick={() => void run(() => hub.value!.request('stage.leave', {}), 'You left the stage')}
          >
            Leave the stage
          </button>
        </div>
      ) : choices.length === 0 ? (
        <p>This stage has no group yet{summary.isAdmin ? ': create one below to join it' : ''}.</p>
      ) : (
        <form class="join-form" onSubmit={join}>
          <div class="field">
            <label htmlFor="join-group">Group</label>
            <select id="join-group" name="groupId" required>
              {choices.map((g) => (
                <option key={g.id} value={g.id} selected={g.id === me?.groupId}>
                  {g.name}
                </option>
              ))}
            </select>
          </div>
          {summary.hasPassword && (
            <label>
              Stage password
              <input name="password" type="password" autoComplete="off" required maxLength={200} />
            </label>
          )}
          <button type="submit" disabled={!online || busy.value}>
            Join the stage
          </button>
        </form>
      )}
      {summary.isMember &&
        (confirming.value ? (
          <div class="confirm" role="group" aria-labelledby="forget-question">
            <p id="forget-question">
              Forget this stage? Your membership, your mix and your tracks in it are deleted; you need a new
              invitation to come back.
            </p>
            <button
              type="button"
              class="danger"
              disabled={!online || busy.value}
              onClick={() => void forget()}
            >
              Yes, forget it
            </button>
            <button
              type="button"
              class="secondary"
              ref={cancelRef}
              onClick={() => (confirming.value = false)}
            >
              Cancel
            </button>
          </div>
        ) : (
          <button type="button" class="secondary" ref={triggerRef} onClick={() => (confirming.value = true)}>
            Forget this stage…
          </button>
        ))}
      <Outcome {...outcome.value} />
    </section>
  )
}

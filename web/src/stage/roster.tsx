import { useSignal } from '@preact/signals'
import type { GroupState, MemberState } from '../../../schemas/actions/stage.ts'
import { connection, hub } from '../connection.ts'
import { fields, message, Outcome } from '../ui.tsx'
import { useFocusOn } from './focus.ts'
import { Presence } from './presence.tsx'

interface RosterProps {
  stageId: string
  userId: string
  isAdmin: boolean
  admins: readonly string[]
  groups: GroupState[]
  members: MemberState[]
  trackCounts: ReadonlyMap<string, number>
}

/** A request from a button or form: busy while it runs, the hub's message when refused. */
function useAction() {
  const outcome = useSignal({ text: '', failed: false })
  const busy = useSignal(false)
  const run = async (work: () => Promise<unknown>, done: string): Promise<boolean> => {
    busy.value = true
    try {
      await work()
      outcome.value = { text: done, failed: false }
      return true
    } catch (err) {
      outcome.value = { text: message(err), failed: true }
      return false
    } finally {
      busy.value = false
    }
  }
  return { outcome, busy, run }
}

const bySeat = (a: MemberState, b: MemberState) =>
  (a.seat ?? 99) - (b.seat ?? 99) || a.name.localeCompare(b.name)

/** The stage's groups, each with its colour and its members, live. */
export function Roster(props: RosterProps) {
  const { groups, members } = props
  const known = new Set(groups.map((g) => g.id))
  const homeless = members.filter((m) => !known.has(m.groupId))
  return (
    <section aria-labelledby="groups-heading" class="panel">
      <h2 id="groups-heading">Groups and members</h2>
      {groups.length === 0 && <p>No groups yet.</p>}
      {groups.map((group) => (
        <GroupBlock
          {...props}
          key={group.id}
          group={group}
          members={members.filter((m) => m.groupId === group.id).sort(bySeat)}
        />
      ))}
      {homeless.length > 0 && (
        <div class="group">
          <h3 class="group-name">Without a group</h3>
          <MemberList {...props} members={homeless.sort(bySeat)} />
        </div>
      )}
    </section>
  )
}

function GroupBlock(props: RosterProps & { group: GroupState; members: MemberState[] }) {
  const { group, members, isAdmin } = props
  return (
    <div class="group" style={{ '--group-color': group.color }} data-testid={`group-${group.name}`}>
      <div class="group-head">
        <h3 class="group-name">
          <span class="swatch" aria-hidden="true" />
          {group.name}
          <span class="count">
            {' '}
            ({members.length} {members.length === 1 ? 'member' : 'members'})
          </span>
        </h3>
        {isAdmin && <GroupTools stageId={props.stageId} group={group} groups={props.groups} />}
      </div>
      {members.length > 0 ? <MemberList {...props} members={members} /> : <p class="empty">Nobody yet.</p>}
    </div>
  )
}

function MemberList(props: RosterProps & { members: MemberState[] }) {
  return (
    <ul class="members">
      {props.members.map((member) => (
        <MemberRow {...props} key={member.id} member={member} />
      ))}
    </ul>
  )
}

function MemberRow(props: RosterProps & { member: MemberState }) {
  const { member, userId, admins, isAdmin, trackCounts } = props
  const tracks = trackCounts.get(member.id) ?? 0
  return (
    <li class="member" data-testid={`member-${member.name}`}>
      <div class="member-line">
        <Presence member={member} />
        <span class="member-name">
          {member.name}
          {member.userId === userId && <span class="muted"> (you)</span>}
        </span>
        {member.seat !== null && <span class="muted">seat {member.seat + 1}</span>}
        {member.isDirector && <span class="badge director">Director</span>}
        {admins.includes(member.userId) && <span class="badge admin">Admin</span>}
        {tracks > 0 && (
          <span class="muted">
            {tracks} {tracks === 1 ? 'track' : 'tracks'}
          </span>
        )}
      </div>
      {isAdmin && <MemberTools {...props} />}
    </li>
  )
}

/** An admin's tools for one member: group, director, admin, removal (the hub checks again). */
function MemberTools({ stageId, member, groups, admins }: RosterProps & { member: MemberState }) {
  const { outcome, busy, run } = useAction()
  const confirming = useSignal(false)
  const cancelRef = useFocusOn(confirming.value)
  const triggerRef = useFocusOn(!confirming.value)
  const disabled = busy.value || connection.value.state !== 'online'
  const isMemberAdmin = admins.includes(member.userId)
  const update = (patch: { groupId?: string; isDirector?: boolean }, done: string) =>
    run(() => hub.value!.request('member.update', { stageId, userId: member.userId, patch }), done)
  const move = (event: Event) => {
    const groupId = fields(event)('groupId')
    const target = groups.find((g) => g.id === groupId)
    void update({ groupId }, `${member.name} moved to ${target?.name ?? 'the group'}`)
  }
  const others = groups.filter((g) => g.id !== member.groupId)
  return (
    <details class="tools">
      <summary>
        Manage<span class="sr-only"> {member.name}</span>
      </summary>
      <div class="tools-body">
        {others.length > 0 && (
          <form class="inline" onSubmit={move}>
            <div class="field">
              <label htmlFor={`move-${member.id}`}>Move {member.name} to</label>
              <select id={`move-${member.id}`} name="groupId">
                {others.map((g) => (
                  <option key={g.id} value={g.id}>
                    {g.name}
                  </option>
                ))}
              </select>
            </div>
            <button type="submit" disabled={disabled}>
              Move
            </button>
          </form>
        )}
        <div class="buttons">
          <button
            type="button"
            class="secondary"
            disabled={disabled}
            onClick={() =>
              void update(
                { isDirector: !member.isDirector },
                member.isDirector ? `${member.name} is no longer director` : `${member.name} is director`,
              )
            }
          >
            {member.isDirector ? 'Stop directing' : 'Make director'}
          </button>
          <button
            type="button"
            class="secondary"
            disabled={disabled}
            onClick={() =>
              void run(
                () =>
                  hub.value!.request(isMemberAdmin ? 'stage.removeAdmin' : 'stage.addAdmin', {
                    stageId,
                    userId: member.userId,
                  }),
                isMemberAdmin ? `${member.name} is no longer an admin` : `${member.name} is an admin`,
              )
            }
          >
            {isMemberAdmin ? 'Remove admin' : 'Make admin'}
          </button>
          {!confirming.value && (
            <button type="button" class="danger" ref={triggerRef} onClick={() => (confirming.value = true)}>
              Remove from stage…
            </button>
          )}
        </div>
        {confirming.value && (
          <div class="confirm" role="group" aria-label={`Remove ${member.name}`}>
            <p>Remove {member.name} from the stage, with their mix and tracks in it?</p>
            <button
              type="button"
              class="danger"
              disabled={disabled}
              onClick={() =>
                void run(
                  () => hub.value!.request('member.remove', { stageId, userId: member.userId }),
                  `${member.name} was removed`,
                ).then(() => (confirming.value = false))
              }
            >
              Yes, remove {member.name}
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
        )}
        <Outcome {...outcome.value} />
      </div>
    </details>
  )
}

/** An admin's tools for a group: rename, recolour, remove (its members moved or removed). */
function GroupTools({
  stageId,
  group,
  groups,
}: {
  stageId: string
  group: GroupState
  groups: GroupState[]
}) {
  const { outcome, busy, run } = useAction()
  const confirming = useSignal(false)
  const cancelRef = useFocusOn(confirming.value)
  const triggerRef = useFocusOn(!confirming.value)
  const disabled = busy.value || connection.value.state !== 'online'
  const others = groups.filter((g) => g.id !== group.id)
  const save = (event: Event) => {
    const field = fields(event)
    const patch: { name?: string; color?: string } = {}
    if (field('name') !== group.name) patch.name = field('name')
    if (field('color').toLowerCase() !== group.color.toLowerCase()) patch.color = field('color')
    if (Object.keys(patch).length === 0) {
      outcome.value = { text: 'Nothing changed', failed: false }
      return
    }
    void run(
      () => hub.value!.request('group.update', { stageId, groupId: group.id, patch, version: group.version }),
      'Group saved',
    )
  }
  const remove = (event: Event) => {
    const moveTo = fields(event)('moveTo')
    void run(
      () => hub.value!.request('group.remove', { stageId, groupId: group.id, ...(moveTo ? { moveTo } : {}) }),
      `Group ${group.name} removed`,
    )
  }
  return (
    <details class="tools">
      <summary>
        Edit<span class="sr-only"> group {group.name}</span>
      </summary>
      <div class="tools-body">
        <form class="inline" onSubmit={save}>
          <label>
            Name
            <input name="name" required maxLength={100} value={group.name} />
          </label>
          <label>
            Colour
            <input name="color" type="color" value={group.color} />
          </label>
          <button type="submit" disabled={disabled}>
            Save group
          </button>
        </form>
        {confirming.value ? (
          <form class="confirm" onSubmit={remove} aria-label={`Remove group ${group.name}`}>
            <div class="field">
              <label htmlFor={`move-to-${group.id}`}>Its members</label>
              <select id={`move-to-${group.id}`} name="moveTo">
                {others.map((g) => (
                  <option key={g.id} value={g.id}>
                    move to {g.name}
                  </option>
                ))}
                <option value="">are removed from the stage</option>
              </select>
            </div>
            <div class="buttons">
              <button type="submit" class="danger" disabled={disabled}>
                Yes, remove {group.name}
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
          </form>
        ) : (
          <button type="button" class="danger" ref={triggerRef} onClick={() => (confirming.value = true)}>
            Remove group…
          </button>
        )}
        <Outcome {...outcome.value} />
      </div>
    </details>
  )
}

/** Colours a new group may take: distinct, and each dark enough for a swatch on light and dark cards. */
const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#db2777', '#65a30d']

export function GroupCreateForm({ stageId, groups }: { stageId: string; groups: GroupState[] }) {
  const { outcome, busy, run } = useAction()
  const used = new Set(groups.map((g) => g.color.toLowerCase()))
  const free = PALETTE.find((c) => !used.has(c)) ?? '#475569'
  const create = (event: Event) => {
    const form = event.currentTarget as HTMLFormElement
    const field = fields(event)
    void run(
      () => hub.value!.request('group.create', { stageId, name: field('name'), color: field('color') }),
      `Group ${field('name')} created`,
    ).then((ok) => ok && form.reset())
  }
  return (
    <section aria-labelledby="new-group-heading" class="panel">
      <h2 id="new-group-heading">New group</h2>
      <form class="inline" onSubmit={create}>
        <label>
          Group name
          <input name="name" required maxLength={100} />
        </label>
        <label>
          Group colour
          <input name="color" type="color" value={free} key={free} />
        </label>
        <button type="submit" disabled={busy.value || connection.value.state !== 'online'}>
          Create group
        </button>
      </form>
      <Outcome {...outcome.value} />
    </section>
  )
}

import { useSignal } from '@preact/signals'
import { memo } from 'preact/compat'
import { useEffect, useMemo } from 'preact/hooks'
import { topics } from '../../../devices/hub-client/index.ts'
import type {
  GroupState,
  MemberState,
  MixKind,
  MixState,
  StageState,
  StageTrackState,
} from '../../../schemas/actions/stage.ts'
import { levelOf } from '../../../schemas/mix-rule.ts'
import { connection, hub } from '../connection.ts'
import { useLive, useLiveValue } from '../live.ts'
import {
  Coalescer,
  dbToVolume,
  formatDb,
  MAX_DB,
  OFF_DB,
  SEND_INTERVAL_MS,
  volumeToDb,
} from '../mixer/coalesce.ts'
import { session } from '../session.ts'
import { BackLink, message, Outcome, usePageTitle } from '../ui.tsx'
import './mixer.css'

/** Whose setting a row changes: the person's own mix, or (admins) the stage's for everyone. */
type Mode = 'mine' | 'stage'

/** One channel of the mixer as a row shows it. */
interface Channel {
  /** The coalescer's key: `mode:kind:id` (id is the member's user id for stage settings). */
  key: string
  kind: MixKind
  name: string
  volume: number
  muted: boolean
  /** The person has an override (own mix) to reset. */
  overridden: boolean
  /** What the stage sets, shown under an override. */
  stageVolume?: number
  editable: boolean
}

interface RowProps {
  channel: Channel
  /** The value being dragged or sent, shown instead of the retained one. */
  local: number | undefined
  disabled: boolean
  mixer: Mixer
}

/** One channel: dB slider, its value, mute and reset. Re-renders only when its own values change. */
const Row = memo(function Row({ channel, local, disabled, mixer }: RowProps) {
  const { key, name } = channel
  const volume = local ?? channel.volume
  const db = formatDb(volume)
  const off = disabled || !channel.editable
  return (
    <div class={`row ${channel.kind}${channel.muted ? ' is-muted' : ''}`} data-key={key}>
      <span class="name">
        {name}
        {channel.overridden && (
          <span class="badge" title={`the stage sets ${formatDb(channel.stageVolume ?? 1)}`}>
            yours
          </span>
        )}
      </span>
      <input
        type="range"
        class="fader"
        min={OFF_DB}
        max={MAX_DB}
        step={0.5}
        value={volumeToDb(volume)}
        aria-label={`Volume of ${name}`}
        aria-valuetext={db}
        disabled={off}
        onPointerDown={() => mixer.begin(channel, volume)}
        onKeyDown={(e) => e.key !== 'Tab' && mixer.begin(channel, volume)}
        onInput={(e) => mixer.set(channel, dbToVolume(Number((e.currentTarget as HTMLInputElement).value)))}
        onPointerUp={() => mixer.end(channel)}
        onKeyUp={() => mixer.end(channel)}
        onBlur={() => mixer.end(channel)}
        onChange={() => mixer.end(channel)}
      />
      <output class="db" aria-hidden="true">
        {db}
      </output>
      <button
        type="button"
        class="mute"
        aria-pressed={channel.muted}
        aria-label={`Mute ${name}`}
        disabled={off}
        onClick={() => void mixer.mute(channel, !channel.muted)}
      >
        M
      </button>
      <button
        type="button"
        class="reset"
        aria-label={`Reset ${name}`}
        title={channel.key.startsWith('mine') ? "back to the stage's setting" : 'back to 0 dB, not muted'}
        disabled={off || (channel.key.startsWith('mine') && !channel.overridden)}
        onClick={() => void mixer.reset(channel)}
      >
        Reset
      </button>
    </div>
  )
})

/** Sends a row's changes: volume through the coalescer, mute and reset at once. */
class Mixer {
  readonly coalescer: Coalescer<number>
  constructor(
    readonly stageId: string,
    readonly onChange: () => void,
    readonly onError: (text: string) => void,
  ) {
    this.coalescer = new Coalescer<number>({
      intervalMs: SEND_INTERVAL_MS,
      send: (key, volume) => this.#send(key, { volume }),
      onChange,
      onError: (_key, err) => onError(message(err)),
    })
  }

  begin(channel: Channel, volume: number) {
    this.coalescer.begin(channel.key, volume)
  }
  set(channel: Channel, volume: number) {
    this.coalescer.set(channel.key, volume)
  }
  end(channel: Channel) {
    this.coalescer.end(channel.key)
  }
  async mute(channel: Channel, muted: boolean) {
    await this.#run(() => this.#send(channel.key, { muted }))
  }
  async reset(channel: Channel) {
    const [mode, kind, id] = channel.key.split(':') as [Mode, MixKind, string]
    await this.#run(() =>
      mode === 'mine'
        ? hub.value!.request('mix.remove', { kind, id })
        : this.#send(channel.key, { volume: 1, muted: false }),
    )
  }

  async #run(action: () => Promise<unknown>) {
    try {
      await action()
    } catch (err) {
      this.onError(message(err))
    }
  }

  #send(key: string, fields: { volume?: number; muted?: boolean }): Promise<unknown> {
    const [mode, kind, id] = key.split(':') as [Mode, MixKind, string]
    const client = hub.value
    if (!client) return Promise.reject(new Error('not connected'))
    if (mode === 'mine') return client.request('mix.set', { kind, id, ...fields })
    if (kind === 'group')
      return client.request('group.update', { stageId: this.stageId, groupId: id, patch: fields })
    return client.request('member.update', { stageId: this.stageId, userId: id, patch: fields })
  }
}

const byName = (a: { name?: string }, b: { name?: string }) => (a.name ?? '').localeCompare(b.name ?? '')

/** A stage's mixer: group → member → track, the person's own mix or (admins) the stage's settings. */
export function MixerPage({ stageId }: { stageId: string }) {
  const userId = session.value?.userId
  const stage = useLiveValue<StageState>(topics.stage.build(stageId))
  usePageTitle(`Mixer · ${stage?.name ?? 'Stage'}`)
  const groups = useLive<GroupState>(topics.group.filter({ s: stageId }))
  const members = useLive<MemberState>(topics.member.filter({ s: stageId }))
  const tracks = useLive<StageTrackState>(topics.track.filter({ s: stageId }))
  const mixes = useLive<MixState>(userId ? topics.mix.filter({ u: userId }) : undefined)
  const mode = useSignal<Mode>('mine')
  const tick = useSignal(0)
  const outcome = useSignal({ text: '', failed: false })
  const mixer = useMemo(
    () =>
      new Mixer(
        stageId,
        () => tick.value++,
        (text) => (outcome.value = { text, failed: true }),
      ),
    [stageId],
  )
  useEffect(() => () => mixer.coalescer.stop(), [mixer])
  void tick.value // re-render when a local value changes

  const isAdmin = !!userId && !!stage?.admins.includes(userId)
  const editing: Mode = isAdmin ? mode.value : 'mine'
  const online = connection.value.state === 'online'
  const own = new Map<string, MixState>()
  for (const mix of mixes.value.values()) if (mix.stageId === stageId) own.set(`${mix.kind}:${mix.id}`, mix)

  const channel = (
    kind: MixKind,
    id: string,
    /** Whom the stage's setting belongs to: the group id, the member's user id. */
    target: string,
    name: string,
    stageSetting: { volume: number; muted: boolean } | undefined,
  ): Channel => {
    if (editing === 'stage')
      return {
        key: `stage:${kind}:${target}`,
        kind,
        name,
        volume: stageSetting?.volume ?? 1,
        muted: stageSetting?.muted ?? false,
        overridden: false,
        editable: stageSetting !== undefined,
      }
    const mix = own.get(`${kind}:${id}`)
    return {
      key: `mine:${kind}:${id}`,
      kind,
      name,
      ...levelOf(mix, stageSetting),
      overridden: mix !== undefined,
      stageVolume: stageSetting?.volume ?? 1,
      editable: true,
    }
  }
  // channels keep their identity between renders while unchanged, so memo skips unchanged rows
  const cache = useMemo(() => new Map<string, Channel>(), [])
  const same = (a: Channel, b: Channel) =>
    a.volume === b.volume &&
    a.muted === b.muted &&
    a.overridden === b.overridden &&
    a.name === b.name &&
    a.editable === b.editable &&
    a.stageVolume === b.stageVolume
  const stable = (c: Channel): Channel => {
    const was = cache.get(c.key)
    if (was && same(was, c)) return was
    cache.set(c.key, c)
    return c
  }
  const row = (c: Channel) => (
    <Row
      key={c.key}
      channel={stable(c)}
      local={mixer.coalescer.local(c.key)}
      disabled={!online}
      mixer={mixer}
    />
  )

  const groupList = useMemo(() => [...groups.value.values()].sort(byName), [groups.value])
  const membersByGroup = useMemo(() => {
    const by = new Map<string, MemberState[]>()
    for (const member of [...members.value.values()].sort(byName))
      by.set(member.groupId, [...(by.get(member.groupId) ?? []), member])
    return by
  }, [members.value])
  const tracksByMember = useMemo(() => {
    const by = new Map<string, StageTrackState[]>()
    for (const track of [...tracks.value.values()].sort(byName))
      by.set(track.memberId, [...(by.get(track.memberId) ?? []), track])
    return by
  }, [tracks.value])

  return (
    <main class="card mixer">
      <BackLink to={['stages', stageId]} label={stage?.name ?? 'the stage'} />
      <h1>Mixer{stage ? ` of ${stage.name}` : ''}</h1>
      {isAdmin && (
        <fieldset class="mode">
          <legend>What you change</legend>
          <label>
            <input
              type="radio"
              name="mode"
              checked={mode.value === 'mine'}
              onChange={() => (mode.value = 'mine')}
            />
            Your own mix
          </label>
          <label>
            <input
              type="radio"
              name="mode"
              checked={mode.value === 'stage'}
              onChange={() => (mode.value = 'stage')}
            />
            The stage's settings for everyone
          </label>
        </fieldset>
      )}
      <p class="hint">
        {editing === 'mine'
          ? "Your own mix: only you hear it. Reset goes back to the stage's setting."
          : 'The stage’s settings: everyone hears them unless they set their own. Tracks have no stage setting.'}
      </p>
      <Outcome {...outcome.value} />
      {groupList.length === 0 && (
        <p role="status">
          {stage
            ? "No groups in this stage yet: its admins add them on the stage's page."
            : 'Loading… (only members of the stage see its mixer)'}
        </p>
      )}
      {groupList.map((group) => {
        const inGroup = membersByGroup.get(group.id) ?? []
        return (
          <section class="group" key={group.id} aria-labelledby={`group-${group.id}`}>
            <h2 id={`group-${group.id}`}>
              <span class="swatch" style={{ background: group.color }} aria-hidden="true" />
              {group.name}
            </h2>
            {row(channel('group', group.id, group.id, group.name, group))}
            {inGroup.length === 0 && <p class="empty">Nobody yet.</p>}
            <ul class="members">
              {inGroup.map((member) => (
                <li key={member.id}>
                  {row(
                    channel(
                      'member',
                      member.id,
                      member.userId,
                      member.userId === userId ? `${member.name} (you)` : member.name,
                      member,
                    ),
                  )}
                  <ul class="tracks">
                    {(tracksByMember.get(member.id) ?? []).map((track) => (
                      <li key={track.id}>
                        {row(
                          channel(
                            'track',
                            track.id,
                            track.id,
                            `${member.name}: ${track.name ?? track.ov?.soundCardName ?? track.kind}${
                              track.ov ? ` ${track.ov.channel + 1}` : ''
                            }`,
                            undefined,
                          ),
                        )}
                      </li>
                    ))}
                  </ul>
                </li>
              ))}
            </ul>
          </section>
        )
      })}
    </main>
  )
}

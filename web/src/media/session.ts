import { computed, effect, type ReadonlySignal, type Signal, signal } from '@preact/signals'
import { topics } from '../../../devices/hub-client/index.ts'
import type {
  GroupState,
  MemberState,
  MixState,
  StageState,
  StageSummary,
  StageTrackState,
} from '../../../schemas/actions/stage.ts'
import { gainOf } from '../../../schemas/mix-rule.ts'
import type { UserProfile } from '../../../schemas/state.ts'
import { browserDeviceElsewhere, browserDeviceLink } from '../browser-device.ts'
import { hub } from '../connection.ts'
import { route } from '../route.ts'
import { signedInAs } from '../session.ts'
import { StageAudio } from './audio.ts'
import { audioChoices } from './device-choices.ts'
import { closeLeftovers } from './leftovers.ts'

/**
 * The tab's media session (issue 14): at most one per tab, for one stage, started by "Join audio" and
 * ended by "Leave audio", by leaving the stage (or being removed from it), by signing out and by
 * opening another stage. It lives at app level, not in the stage page: a musician who opens the
 * stage's mixer or settings, or any other page, keeps hearing and sending. It follows what the media
 * needs by itself (the stage's router and tracks, the person's mix, this browser's device connection
 * and settings), whatever page shows.
 */

/** A received track as the panel lists it: whose it is and the gain the mix gives it. */
export interface HeardTrack {
  track: StageTrackState
  name: string
  gain: number
}

export interface MediaSession {
  stageId: string
  userId: string
  audio: StageAudio
  /** The stage as the hub has it (name, router, media types), once it arrived. */
  stage: ReadonlySignal<StageState | undefined>
  /** Every other member's audio track with its gain, sorted by name. */
  heard: ReadonlySignal<HeardTrack[]>
  /** Stops the session's watches (the session is over). */
  stop(): void
}

/** The tab's media session, if audio is joined. */
export const mediaSession = signal<MediaSession | undefined>(undefined)

type Values<T> = Signal<ReadonlyMap<string, T>>

/** Follows a filter's retained values on the person's connection (a new one after a reconnect). */
function follow<T>(filter: string, into: Values<T>): () => void {
  return effect(() => {
    const client = hub.value
    if (!client) return
    return client.watch<T>(filter, ({ topic, value }) => {
      const next = new Map(into.peek())
      if (value === undefined) next.delete(topic)
      else next.set(topic, value)
      into.value = next
    })
  })
}

function startSession(stageId: string, userId: string): MediaSession {
  const audio = new StageAudio(userId)
  const stage = signal<StageState | undefined>(undefined)
  const summaries: Values<StageSummary> = signal(new Map())
  const stages: Values<StageState> = signal(new Map())
  const groups: Values<GroupState> = signal(new Map())
  const members: Values<MemberState> = signal(new Map())
  const tracks: Values<StageTrackState> = signal(new Map())
  const mixes: Values<MixState> = signal(new Map())
  const profiles: Values<UserProfile> = signal(new Map())
  const summaryTopic = topics.stageSummary.build(userId, stageId)
  const stops = [
    follow(summaryTopic, summaries),
    follow(topics.stage.build(stageId), stages),
    follow(topics.group.filter({ s: stageId }), groups),
    follow(topics.member.filter({ s: stageId }), members),
    follow(topics.track.filter({ s: stageId }), tracks),
    follow(topics.mix.filter({ u: userId }), mixes),
    follow(topics.user.build(userId), profiles),
  ]
  const heard = computed(() => {
    const own = new Map<string, MixState>()
    for (const mix of mixes.value.values()) if (mix.stageId === stageId) own.set(`${mix.kind}:${mix.id}`, mix)
    const memberList = [...members.value.values()]
    const groupList = [...groups.value.values()]
    return [...tracks.value.values()]
      .filter((t) => t.kind === 'audio' && t.userId !== userId)
      .map((track) => {
        const member = memberList.find((m) => m.id === track.memberId)
        const group = groupList.find((g) => g.id === member?.groupId)
        const gain = gainOf([
          { own: group && own.get(`group:${group.id}`), stage: group },
          { own: member && own.get(`member:${member.id}`), stage: member },
          { own: own.get(`track:${track.id}`) },
        ])
        return { track, name: member?.name ?? 'Someone', gain }
      })
      .sort((a, b) => a.name.localeCompare(b.name) || a.track.id.localeCompare(b.track.id))
  })
  let seen = false
  stops.push(
    effect(() => audio.setLink(browserDeviceLink.value)),
    effect(() => audio.setChoices(audioChoices.value)),
    effect(() => {
      const value = stages.value.get(topics.stage.build(stageId))
      stage.value = value
      // the media types first: a new router then starts the media they call for, once
      if (value) {
        audio.setAudio(value.audioType === 'mediasoup')
        audio.setVideo(value.videoType === 'mediasoup')
      }
      audio.setRouter(value?.mediaRouter?.router)
    }),
    effect(() => {
      const profile = profiles.value.get(topics.user.build(userId))
      audio.setPlace(
        !profile
          ? 'unknown'
          : profile.stageId === stageId
            ? 'here'
            : profile.stageId
              ? 'elsewhere'
              : 'nowhere',
      )
    }),
    effect(() => audio.setTracks([...tracks.value.values()])),
    effect(() => audio.setGains(new Map(heard.value.map((h) => [h.track.id, h.gain])))),
    // the person left the stage, or was removed from it: media ends with it
    effect(() => {
      const summary = summaries.value.get(summaryTopic)
      if (summary) seen = true
      if (seen && !summary?.joined) queueMicrotask(() => endSession(session))
    }),
  )
  const session: MediaSession = {
    stageId,
    userId,
    audio,
    stage,
    heard,
    stop: () => {
      for (const stop of stops) stop()
      audio.dispose()
    },
  }
  return session
}

/** Ends `session` if it is still the tab's: the transports on the router close, the microphone stops. */
export function endSession(session: MediaSession | undefined): void {
  if (!session || mediaSession.peek() !== session) return
  mediaSession.value = undefined
  session.stop()
}

/** "Leave audio". */
export function leaveAudio(): void {
  endSession(mediaSession.peek())
}

/** Says why audio cannot start in this tab, or undefined when it can. */
export function audioElsewhere(): string | undefined {
  return browserDeviceElsewhere.peek()
    ? 'Audio runs in another tab of this browser: the browser is one device of yours, and the tab that opened first carries it. Join audio in that tab, or close it and join here.'
    : undefined
}

/**
 * "Join audio" in `stageId` (call it from the click: browsers start audio output only after a
 * gesture): the tab's session moves to this stage (the one before ends). Returns why it cannot start
 * here (another tab carries this browser's device), if so.
 */
export function joinAudio(stageId: string): string | undefined {
  const userId = signedInAs.peek()
  if (!userId) return 'Sign in first.'
  const elsewhere = audioElsewhere()
  if (elsewhere) return elsewhere
  let session = mediaSession.peek()
  if (session?.stageId !== stageId || session.userId !== userId) {
    endSession(session)
    session = startSession(stageId, userId)
    mediaSession.value = session
  }
  session.audio.join()
  return undefined
}

/**
 * Ends the session on signing out (or as someone else) and on opening another stage's pages; the
 * stage's own pages (view, mixer, settings) and every other page keep it. Returns the stop.
 */
export function followMediaSession(): () => void {
  // a closing tab stops its microphone and camera and asks the router to close its transports (the
  // request rarely leaves a closing page: the next page's first connection closes what is left)
  addEventListener('pagehide', leaveAudio)
  // this page's first device connection closes what an earlier page of this browser left open
  let cleaned = false
  const stopCleaning = effect(() => {
    const link = browserDeviceLink.value
    if (!link || cleaned) return
    cleaned = true
    void closeLeftovers(link.client)
  })
  const stop = effect(() => {
    const session = mediaSession.value
    if (!session) return
    const userId = signedInAs.value
    const [first, stageId] = route.value
    if (userId !== session.userId || (first === 'stages' && stageId && stageId !== session.stageId))
      endSession(session)
  })
  return () => {
    removeEventListener('pagehide', leaveAudio)
    stopCleaning()
    stop()
  }
}

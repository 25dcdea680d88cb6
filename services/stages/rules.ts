import type {
  GroupState,
  MemberState,
  MixState,
  StageState,
  StageSummary,
} from '../../schemas/actions/stage.ts'
import { sentTracks } from '../../firmware-config/ov-client.ts'
import type { DeviceDoc } from '../collections.ts'
import { type AssignmentDoc, collections, type UserDoc } from '../collections.ts'
import type { Change, StoredDoc } from '../store/port.ts'
import { type GroupDoc, type MemberDoc, type MixDoc, type StageDoc, type StageTrackDoc } from './model.ts'

/** Seats are the ov renderer's device slots: 0-29 (ov-server serves at most 32 devices a session). */
export const SEATS_PER_STAGE = 30

/** The room defaults of the original system. */
export const stageDefaults = {
  width: 13,
  length: 25,
  height: 7.5,
  absorption: 0.6,
  damping: 0.7,
  reverbGain: 1,
  ambientSound: { render: false, level: 0 },
  audioType: 'mediasoup',
  videoType: 'mediasoup',
} as const satisfies Partial<StageDoc>

export const origin = { x: 0, y: 0, z: 0, rX: 0, rY: 0, rZ: 0 }

/** Well-separated colours (Trubetskoy's list) handed to groups created without one, in this order. */
export const GROUP_PALETTE = [
  '#e6194b',
  '#3cb44b',
  '#ffe119',
  '#4363d8',
  '#f58231',
  '#911eb4',
  '#42d4f4',
  '#f032e6',
  '#bfef45',
  '#fabed4',
  '#469990',
  '#dcbeff',
  '#9a6324',
  '#800000',
  '#aaffc3',
  '#808000',
  '#000075',
  '#a9a9a9',
] as const

/**
 * The colour for a group created without one: the first palette colour no group of the stage uses,
 * then colours stepping through all 2^24 with an odd stride (so every one is visited once and the
 * search ends whenever any colour is free).
 */
export function freeGroupColor(taken: Iterable<string>): string {
  const used = new Set([...taken].map((c) => c.toLowerCase()))
  const fromPalette = GROUP_PALETTE.find((c) => !used.has(c))
  if (fromPalette) return fromPalette
  const space = 0x1000000
  for (let k = 0, rgb = 0x2a7fd4; k < space; k++, rgb = (rgb + 0x9e3779) % space) {
    const color = `#${rgb.toString(16).padStart(6, '0')}`
    if (!used.has(color)) return color
  }
  throw new Error('every colour is taken')
}

export const isAdmin = (stage: Pick<StageDoc, 'admins'>, userId: string): boolean =>
  stage.admins.includes(userId)

/** The lowest seat no current member holds, or null when the stage is full. */
export function lowestFreeSeat(
  members: readonly Pick<MemberDoc, 'seat'>[],
  seats = SEATS_PER_STAGE,
): number | null {
  const taken = new Set(members.map((m) => m.seat))
  for (let seat = 0; seat < seats; seat++) if (!taken.has(seat)) return seat
  return null
}

/**
 * What members may see of a stage: everything but the password hash and bookkeeping, and how to reach
 * it as its router said (router.served), while that router is assigned to it.
 */
export function stageState(stage: StageDoc, assignment: AssignmentDoc | null = null): StageState {
  const {
    passwordHash,
    createdBy: _createdBy,
    createdAt: _createdAt,
    ...visible
  } = servedStage(stage, assignment)
  return { ...visible, hasPassword: passwordHash !== undefined }
}

type RouterEntries = Pick<StageState, 'ovServer' | 'mediaRouter'>

/**
 * The stage with what its router says now. Releases before the assignments kept these entries wrote
 * them into the stage document itself: such stored entries are ignored, never shown.
 */
export function servedStage(stage: StageDoc, assignment: AssignmentDoc | null): StageDoc & RouterEntries {
  const { ovServer: _ovServer, mediaRouter: _mediaRouter, ...own } = stage as StageDoc & RouterEntries
  return { ...own, ...servedBy(assignment) }
}

/** What a stage's router told its members, from its assignment. */
export function servedBy(assignment: AssignmentDoc | null): RouterEntries {
  if (!assignment) return {}
  const { routerId: router, ov, media } = assignment
  return {
    ...(ov ? { ovServer: { router, ...ov } } : {}),
    ...(media ? { mediaRouter: { router, url: media.url } } : {}),
  }
}

export function groupState(group: GroupDoc): GroupState {
  return { ...group }
}

export function memberState(member: MemberDoc): MemberState {
  return { ...member }
}

export function mixState(mix: MixDoc): MixState {
  const { userId: _userId, targetId, id: _id, ...rest } = mix
  return { ...rest, id: targetId }
}

export function stageSummary(
  stage: StageDoc,
  groups: readonly GroupDoc[],
  userId: string,
  member: MemberDoc | undefined,
): StageSummary {
  return {
    id: stage.id,
    name: stage.name,
    hasPassword: stage.passwordHash !== undefined,
    audioType: stage.audioType,
    videoType: stage.videoType,
    isAdmin: isAdmin(stage, userId),
    isMember: member !== undefined,
    joined: member?.joined === true,
    groups: [...groups]
      .sort((a, b) => a.id.localeCompare(b.id))
      .map((g) => ({ id: g.id, name: g.name, color: g.color })),
  }
}

/** Everyone who gets a `users/{u}/stages/{s}` summary: admins and members. */
export function summaryAudience(
  stage: Pick<StageDoc, 'admins'>,
  members: readonly Pick<MemberDoc, 'userId'>[],
): string[] {
  return [...new Set([...stage.admins, ...members.map((m) => m.userId)])]
}

/** `users/{u}/stages/{s}`: the summary u sees, or null when u is neither an admin nor a member. */
export function visibleSummary(
  stage: StageDoc,
  groups: readonly GroupDoc[],
  userId: string,
  member: MemberDoc | undefined,
): StageSummary | null {
  if (!member && !isAdmin(stage, userId)) return null
  return stageSummary(stage, groups, userId, member)
}

/** docs/protocol/README.md#presence: a member is online while any of its user's devices is. */
export const memberOnline = (devices: readonly Pick<DeviceDoc, 'online'>[]): boolean =>
  devices.some((device) => device.online)

/**
 * Who takes over a stage whose only admin deletes the account: a director first, then the member with
 * the lowest seat (in the stage now), then the first by id; undefined when nobody else is a member.
 */
export function successorAdmin(members: readonly MemberDoc[], leaving: string): string | undefined {
  const rank = (m: MemberDoc) => [m.isDirector ? 0 : 1, m.seat ?? Infinity] as const
  const [heir] = members
    .filter((m) => m.userId !== leaving)
    .sort((a, b) => {
      const [ra, rb] = [rank(a), rank(b)]
      return ra[0] - rb[0] || ra[1] - rb[1] || (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0)
    })
  return heir?.userId
}

/**
 * What hangs off one membership: the member's tracks, the member's own mixes in that stage, and
 * everybody's mixes that target the member or its tracks.
 */
export function membershipDependents(
  member: MemberDoc,
  tracks: readonly StageTrackDoc[],
  stageMixes: readonly MixDoc[],
): { tracks: StageTrackDoc[]; mixes: MixDoc[] } {
  const ownTracks = tracks.filter((t) => t.memberId === member.id)
  const trackIds = new Set(ownTracks.map((t) => t.id))
  const mixes = stageMixes.filter(
    (m) =>
      m.userId === member.userId ||
      (m.kind === 'member' && m.targetId === member.id) ||
      (m.kind === 'track' && trackIds.has(m.targetId)),
  )
  return { tracks: ownTracks, mixes }
}

/**
 * The tracks a joined member sends into the stage: the input channels of the active sound card of
 * each of the user's online ov-boxes (a device track keeps its id, so mixes on it stay attached).
 */
export function memberOvTracks(
  member: MemberDoc,
  devices: readonly Pick<DeviceDoc, 'id' | 'kind' | 'online' | 'desired' | 'soundCards' | 'tracks'>[],
): Omit<StageTrackDoc, 'version'>[] {
  if (!member.joined) return []
  return devices
    .filter((device) => device.kind === 'ovbox' && device.online)
    .flatMap((device) =>
      sentTracks(device).map((track) => ({
        id: track.id,
        stageId: member.stageId,
        userId: member.userId,
        memberId: member.id,
        deviceId: device.id,
        kind: 'ov' as const,
        ...(track.name !== undefined ? { name: track.name } : {}),
        ov: {
          soundCardName: track.soundCardName,
          channel: track.channel,
          gain: track.gain,
          directivity: track.directivity,
        },
      })),
    )
}

/**
 * The users whose membership a commit can change: owners of devices whose presence or sent tracks
 * changed, and users who entered or left a stage.
 */
export function usersToRefresh(changes: readonly Change[]): Set<string> {
  const users = new Set<string>()
  const sends = (doc: StoredDoc | null) => {
    if (!doc) return null
    const device = doc as DeviceDoc
    return JSON.stringify([device.online, device.kind === 'ovbox' ? sentTracks(device) : []])
  }
  for (const { collection, before, after } of changes) {
    if (collection === collections.devices.name && sends(before) !== sends(after))
      users.add(((after ?? before) as DeviceDoc).owner)
    if (
      collection === collections.users.name &&
      (before as UserDoc | null)?.stageId !== (after as UserDoc | null)?.stageId
    )
      users.add((after ?? before)!.id)
  }
  return users
}

/** Applies a patch whose keys the schema has whitelisted; `undefined` leaves a field as it is. */
export function applyPatch<T extends object>(doc: T, patch: Partial<T>): T {
  const next = { ...doc }
  for (const [key, value] of Object.entries(patch))
    if (value !== undefined) (next as Record<string, unknown>)[key] = value
  return next
}

import type {
  GroupState,
  MemberState,
  MixKind,
  MixState,
  StageState,
  StageTrackState,
} from '../../schemas/actions/stage.ts'
import { collections } from '../collections.ts'
import type { CollectionSpec, StoredDoc } from '../store/port.ts'

/**
 * Stored stage: the published state, without what its router says (kept in the router's assignment,
 * see stageState), plus what is never published.
 */
export interface StageDoc
  extends StoredDoc, Omit<StageState, 'id' | 'version' | 'hasPassword' | 'ovServer' | 'mediaRouter'> {
  passwordHash?: string
  createdBy: string
  createdAt: string
}

/** A stored group: exactly what `stages/{s}/groups/{g}` shows. */
export interface GroupDoc extends StoredDoc, Omit<GroupState, 'id' | 'version'> {}

/**
 * A stored membership: exactly what `stages/{s}/members/{u}` shows. Its `name` is the user's, kept
 * current by the user.update hook; `online` follows the user's devices (rules.ts, memberOnline).
 */
export interface MemberDoc extends StoredDoc, Omit<MemberState, 'id' | 'version'> {}

/** A member's audio/video/ov track published into a stage (created by the devices and routers services). */
export interface StageTrackDoc extends StoredDoc, Omit<StageTrackState, 'id' | 'version'> {}

/** A user's override as stored: the published MixState's `id` (the target) is `targetId` here. */
export interface MixDoc extends StoredDoc, Omit<MixState, 'id' | 'version'> {
  userId: string
  targetId: string
}

export const stageCollections = {
  // shared with the access index, which reads stage admins and members
  stages: collections.stages,
  members: collections.members,
  groups: { name: 'groups', unique: [['stageId', 'color']], indexes: [['stageId']] },
  stageTracks: { name: 'stage_tracks', indexes: [['stageId'], ['memberId'], ['userId']] },
  mixes: { name: 'mixes', indexes: [['stageId'], ['targetId'], ['userId', 'stageId']] },
} satisfies Record<string, CollectionSpec>

/** A mix's id: one override per user and target. */
export function mixKey(userId: string, kind: MixKind, targetId: string): string {
  return `${userId}/${kind}/${targetId}`
}

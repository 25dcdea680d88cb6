import type {
  GroupState,
  MemberState,
  MixKind,
  MixState,
  StageState,
  StageTrackState,
} from '../../schemas/actions/stage.ts'
import { topics } from '../../schemas/topics.ts'
import { collections } from '../collections.ts'
import type { CollectionSpec, StoredDoc } from '../store/port.ts'

/** Stored stage: the published state plus what is never published. */
export interface StageDoc extends StoredDoc, Omit<StageState, 'id' | 'version' | 'hasPassword'> {
  passwordHash?: string
  createdBy: string
  createdAt: string
}

export interface GroupDoc extends StoredDoc, Omit<GroupState, 'id' | 'version'> {}

/**
 * A stored member, as published. Its `name` is the user's, kept current by the user.update hook so
 * members can show each other; `online` follows the user's devices (docs/protocol/README.md#presence).
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

/** The stage topics' builders, named as the stage service calls them; the catalogue knows their shape. */
export const stageTopics = {
  stage: topics.stage.build,
  group: topics.group.build,
  member: topics.member.build,
  track: topics.track.build,
  chat: topics.chat.build,
  summary: topics.stageSummary.build,
  mix: topics.mix.build as (u: string, kind: MixKind, id: string) => string,
}

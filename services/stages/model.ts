import type { Position, StageState, StageTrackState } from '../../schemas/actions/stage.ts'
import type { MixKind } from '../../schemas/actions/stage.ts'
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

export interface GroupDoc extends StoredDoc {
  stageId: string
  name: string
  color: string
  volume: number
  muted: boolean
  position: Position
}

export interface MemberDoc extends StoredDoc {
  stageId: string
  userId: string
  /** The user's name, kept current by the user.update hook, so members can show each other. */
  name: string
  groupId: string
  seat: number | null
  /** In the stage now (joined and not left). */
  joined: boolean
  /** Joined, and at least one of the user's devices is online (docs/protocol/README.md#presence). */
  online: boolean
  isDirector: boolean
  volume: number
  muted: boolean
  position: Position
}

/** A member's audio/video/ov track published into a stage (created by the devices and routers services). */
export interface StageTrackDoc extends StoredDoc, Omit<StageTrackState, 'id' | 'version'> {}

export interface MixDoc extends StoredDoc {
  userId: string
  stageId: string
  kind: MixKind
  targetId: string
  volume?: number
  muted?: boolean
  position?: Position
  directivity?: 'omni' | 'cardioid'
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

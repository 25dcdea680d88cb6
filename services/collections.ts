import type { TokenClaims } from '../broker/tokens.ts'
import type { AuditEntry } from '../schemas/actions/audit.ts'
import type { DeviceState, SoundCard, Track } from '../schemas/actions/device.ts'
import type { UserProfile } from '../schemas/state.ts'
import type { AssignmentState, OvRelay } from '../schemas/actions/router.ts'
import type { CollectionSpec, StoredDoc } from './store/port.ts'

/**
 * The stored document shapes that more than one service reads, and their collection specs. Each
 * service owns the writes to its own collections; these are the shared read models.
 */

/**
 * A stored user: the published profile (UserProfile) plus what is never published. Its `stageId` is
 * the stage the user is in now (set by stage.join, cleared by stage.leave).
 */
export interface UserDoc extends StoredDoc, Omit<UserProfile, 'id' | 'version'> {
  /** Lower-cased; absent for users created without a login. */
  email?: string
  /** scrypt hash (see services/users/passwords.ts); never published. */
  passwordHash?: string
  /** Token generation: user tokens with a lower `ver` are revoked (absent: 0, as a token without `ver`). */
  tokenVersion?: number
  createdAt: string
}

/**
 * What is left of a deleted account: its id, so that its tokens stay refused until they expire
 * (nothing personal is kept).
 */
export interface DeletedUserDoc extends StoredDoc {
  deletedAt: string
}

export interface StageDoc extends StoredDoc {
  name: string
  admins: string[]
}

export interface MemberDoc extends StoredDoc {
  stageId: string
  userId: string
}

/**
 * A stored device (written by the devices service only): registration (owner, token generation)
 * plus its shadow (desired and reported), the state `users/{owner}/devices/{d}` shows and what it never shows.
 */
export interface DeviceDoc
  extends StoredDoc, Omit<DeviceState, 'id' | 'version' | 'reported' | 'soundCards' | 'tracks'> {
  /** Current token generation: tokens with a lower `ver` are revoked. */
  tokenVersion: number
  /** The newest presence session seen (docs/protocol/README.md#presence). */
  session?: number
  /** In a cluster, the process the device is online through (docs/cluster.md); internal, never projected. */
  hub?: string
  reported: Record<string, unknown>
  soundCards?: SoundCard[]
  tracks?: Track[]
  createdAt: string
}

/** What the access index reads of a device: its owner and token generation. */
export type DeviceRegistration = Pick<DeviceDoc, 'id' | 'version' | 'owner' | 'tokenVersion'>

export interface RouterDoc extends StoredDoc {
  /** Current token generation: tokens with a lower `ver` are revoked. */
  tokenVersion: number
  /** In a cluster, the process the router is online through (docs/cluster.md); internal, never projected. */
  hub?: string
}

/**
 * A stage assigned to a router, written by the routers service only; the document id is the stage id
 * (one router per stage). `stages/{s}` shows what the router said about how to reach the stage.
 */
export interface AssignmentDoc extends StoredDoc, AssignmentState {
  routerId: string
  /** The router's ov relay for this stage (router.served). */
  ov?: OvRelay
  /** The router's mediasoup URL for this stage (router.served). */
  media?: { url: string }
}

/** A request id already answered, so that a retry is answered again instead of applied twice. */
export interface RequestRecordDoc extends StoredDoc {
  clientId: string
  /** The action the id was used for: the same id with another action is not a retry. */
  action: string
  expiresAt: number
  /** The response as sent, except that a token it handed out is left empty (see `issued`). */
  response: string
  /**
   * What signs the response's `result.token` again for a retry: the record keeps no usable token,
   * and a retry gets one of the same generation, issue time and expiry.
   */
  issued?: IssuedToken
}

/** A token a request handed out, as what signs it again. */
export interface IssuedToken {
  claims: TokenClaims
  ttlSeconds: number
  /** Seconds since the epoch. */
  issuedAt: number
}

/** A retained message the hub must keep across restarts (client-published retained topics, state topics). */
export interface RetainedDoc extends StoredDoc {
  topic: string
  payload: string
  qos: 0 | 1 | 2
}

/** An audit trail entry as stored: its id sorts by time (services/audit/rules.ts). */
export interface AuditDoc extends StoredDoc, Omit<AuditEntry, 'id'> {
  /** `time` in milliseconds, for pruning. */
  at: number
  /** The values of `targets`, for the target-id filter. */
  targetIds: string[]
}

export const collections = {
  users: { name: 'users', unique: [['email']] },
  deletedUsers: { name: 'deleted_users' },
  stages: { name: 'stages', indexes: [['createdBy']] },
  members: {
    name: 'members',
    unique: [
      ['stageId', 'userId'],
      ['stageId', 'seat'],
    ],
    indexes: [['stageId'], ['userId'], ['groupId']],
  },
  devices: { name: 'devices', indexes: [['owner'], ['hub']] },
  routers: { name: 'routers', indexes: [['hub']] },
  assignments: { name: 'router_assignments', indexes: [['routerId']] },
  requests: { name: 'requests', indexes: [['expiresAt']] },
  retained: { name: 'retained' },
  audit: { name: 'audit', indexes: [['at'], ['identity'], ['action'], ['outcome']] },
} satisfies Record<string, CollectionSpec>

import { Type, type Static } from '@sinclair/typebox'
import { defineAction } from '../action.ts'
import { Id, Timestamp } from '../common.ts'
import { Color, MemberState, StagePassword } from './stage.ts'

/**
 * A stage invitation's code: 24 base64url characters (144 random bits). It is a bearer secret: it
 * travels only in the creator's `invite.create` response and in the redeemer's requests; the hub
 * keeps only its sha256.
 */
export const InviteCode = Type.String({ pattern: '^[A-Za-z0-9_-]{24}$', description: 'the invite code' })

/** An invitation as its stage's admins list it: never the code. */
export const InviteState = Type.Object(
  {
    id: Id,
    stageId: Id,
    groupId: Type.Optional(Id),
    createdBy: Id,
    createdAt: Timestamp,
    expiresAt: Timestamp,
    redeemed: Type.Integer({ minimum: 0, description: 'how many times it was used to join' }),
  },
  { additionalProperties: false, $id: 'InviteState' },
)
export type InviteState = Static<typeof InviteState>

export const inviteCreate = defineAction({
  name: 'invite.create',
  changesState: true,
  targets: { stageId: 'params.stageId', groupId: 'params.groupId' },
  description:
    "Admins create an invitation to the stage, optionally bound to one of its groups, expiring after `expiresInSeconds` (default 7 days, at most 30). The result's `code` is shown only here: the hub keeps its hash.",
  params: Type.Object(
    {
      stageId: Id,
      groupId: Type.Optional(Id),
      expiresInSeconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 30 * 24 * 3600 })),
    },
    { additionalProperties: false },
  ),
  result: Type.Object({ invite: InviteState, code: InviteCode }, { additionalProperties: false }),
})

export const inviteList = defineAction({
  name: 'invite.list',
  changesState: false,
  targets: { stageId: 'params.stageId' },
  description: "Admins list the stage's live invitations (not expired, not revoked), without their codes.",
  params: Type.Object({ stageId: Id }, { additionalProperties: false }),
  result: Type.Object({ invites: Type.Array(InviteState) }, { additionalProperties: false }),
})

export const inviteRevoke = defineAction({
  name: 'invite.revoke',
  changesState: true,
  targets: { stageId: 'params.stageId' },
  description: 'Admins revoke an invitation: its code no longer works.',
  params: Type.Object({ stageId: Id, inviteId: Id }, { additionalProperties: false }),
  result: Type.Object({}, { additionalProperties: false }),
})

export const InvitePreview = Type.Object(
  {
    stageId: Id,
    name: Type.String(),
    invitedBy: Type.Optional(
      Type.String({
        description: 'the name of the admin who made the invite (absent once their account is gone)',
      }),
    ),
    hasPassword: Type.Boolean({ description: 'invite.redeem needs the stage password' }),
    groupId: Type.Optional(Id),
    groups: Type.Array(
      Type.Object({ id: Id, name: Type.String(), color: Color }, { additionalProperties: false }),
      { description: 'the group the invite is bound to, or every group to pick one from' },
    ),
    expiresAt: Timestamp,
  },
  { additionalProperties: false },
)

export const invitePreview = defineAction({
  name: 'invite.preview',
  changesState: false,
  description:
    'Anyone signed in sees what an invite code joins (stage name, who invites, groups, whether a password is needed) before joining. Rate-limited per account with invite.redeem.',
  params: Type.Object({ code: InviteCode }, { additionalProperties: false }),
  result: InvitePreview,
})

export const inviteRedeem = defineAction({
  name: 'invite.redeem',
  changesState: true,
  targets: { stageId: 'result.stageId', groupId: 'result.groupId', memberId: 'result.id' },
  description:
    "Join the invite's stage as stage.join does: in the invite's group, or in `groupId` when the invite has none; with `password` when the stage has one (the invite does not replace it). Rate-limited per account.",
  params: Type.Object(
    { code: InviteCode, groupId: Type.Optional(Id), password: Type.Optional(StagePassword) },
    { additionalProperties: false },
  ),
  result: MemberState,
})

export const inviteActions = [inviteCreate, inviteList, inviteRevoke, invitePreview, inviteRedeem] as const

import { Type } from '@sinclair/typebox'
import { Id, Password, Timestamp, Version } from '../common.ts'
import { UserProfile } from '../state.ts'
import { defineAction } from '../action.ts'
import { Name } from '../text.ts'

export const UserName = Name()
export const AvatarUrl = Type.String({ maxLength: 2048, format: 'uri', pattern: '^https?://' })

export const userUpdate = defineAction({
  name: 'user.update',
  changesState: true,
  description: "Change the caller's own profile.",
  params: Type.Object(
    {
      name: Type.Optional(UserName),
      avatarUrl: Type.Optional(Type.Union([AvatarUrl, Type.Null()], { description: 'null removes it' })),
      version: Type.Optional(Version),
    },
    { additionalProperties: false, minProperties: 1 },
  ),
  result: UserProfile,
})

/** What sign-out and a password change hand back: a token of the new generation, for the caller. */
const FreshToken = Type.Object({
  token: Type.String(),
  expiresAt: Timestamp,
  generation: Type.Integer({ description: "the account's token generation: older tokens are refused" }),
})

export const userSignOut = defineAction({
  name: 'user.signOut',
  changesState: true,
  description:
    "Sign out everywhere: every token of the caller's account issued before is refused from now on and its other connections are closed. The calling connection stays and gets a fresh token.",
  params: Type.Object({}, { additionalProperties: false }),
  result: FreshToken,
})

export const userChangePassword = defineAction({
  name: 'user.changePassword',
  changesState: true,
  description:
    "Change the caller's password; signs out every other session (as user.signOut) and returns a fresh token for the caller.",
  params: Type.Object(
    {
      currentPassword: Type.Optional(
        Type.String({
          minLength: 1,
          maxLength: 200,
          description: 'required when the account has a password',
        }),
      ),
      newPassword: Password,
    },
    { additionalProperties: false },
  ),
  result: FreshToken,
})

export const userDelete = defineAction({
  name: 'user.delete',
  changesState: true,
  description:
    "Delete the caller's account: memberships, mixes and devices go (device tokens die, their connections close), every retained topic of the account is cleared, and every token of the account is refused. Stages where the caller is the only admin are handed over to another member or removed, as soleAdminStages says.",
  params: Type.Object(
    {
      password: Type.Optional(
        Type.String({
          minLength: 1,
          maxLength: 200,
          description: 'required when the account has a password',
        }),
      ),
      soleAdminStages: Type.Optional(
        Type.Union([Type.Literal('handOver'), Type.Literal('remove')], {
          description:
            'required when the caller is the only admin of a stage: handOver makes another member its admin (a director first, else the member with the lowest seat, else the first by id; a stage without another member is removed), remove removes it',
        }),
      ),
    },
    { additionalProperties: false },
  ),
  result: Type.Object({
    stagesHandedOver: Type.Array(Type.Object({ stageId: Id, adminId: Id })),
    stagesRemoved: Type.Array(Id),
    devicesRemoved: Type.Array(Id),
  }),
})

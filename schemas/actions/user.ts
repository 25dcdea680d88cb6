import { Type } from '@sinclair/typebox'
import { Version } from '../common.ts'
import { UserProfile } from '../state.ts'
import { defineAction } from '../action.ts'
import { Name } from '../text.ts'

export const UserName = Name()
export const AvatarUrl = Type.String({ maxLength: 2048, format: 'uri', pattern: '^https?://' })

export const userUpdate = defineAction({
  name: 'user.update',
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

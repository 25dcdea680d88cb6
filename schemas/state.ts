import { Type, type Static } from '@sinclair/typebox'
import { Id, Timestamp, Version } from './common.ts'

/** `hub/status`: the hub's own presence (its last will says offline). */
export const HubStatus = Type.Object(
  {
    state: Type.Union([Type.Literal('online'), Type.Literal('offline')]),
    version: Type.String({ description: 'stagehub release' }),
    since: Timestamp,
  },
  { additionalProperties: false, $id: 'HubStatus' },
)
export type HubStatus = Static<typeof HubStatus>

/** `users/{u}`: the public profile of a user, visible to that user only. */
export const UserProfile = Type.Object(
  {
    id: Id,
    name: Type.String(),
    avatarUrl: Type.Optional(Type.String()),
    version: Version,
  },
  { additionalProperties: false, $id: 'UserProfile' },
)
export type UserProfile = Static<typeof UserProfile>

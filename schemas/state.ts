import { Type, type Static } from '@sinclair/typebox'
import { Id, Timestamp, Version } from './common.ts'

/** `hub/status`: the hub's own presence (its last will says offline). */
export const HubStatus = Type.Object(
  {
    state: Type.Union([Type.Literal('online'), Type.Literal('offline')]),
    version: Type.String({ description: 'stagehub release' }),
    since: Timestamp,
    processes: Type.Optional(
      Type.Integer({
        minimum: 1,
        description: 'live hub processes serving the deployment; only when there are several (REDIS_URL)',
      }),
    ),
  },
  { additionalProperties: false, $id: 'HubStatus' },
)
export type HubStatus = Static<typeof HubStatus>

/** `users/{u}`: the profile of a user, visible to that user only; `stageId` is the stage the user is in now. */
export const UserProfile = Type.Object(
  {
    id: Id,
    name: Type.String(),
    avatarUrl: Type.Optional(Type.String()),
    stageId: Type.Optional(Id),
    version: Version,
  },
  { additionalProperties: false, $id: 'UserProfile' },
)
export type UserProfile = Static<typeof UserProfile>

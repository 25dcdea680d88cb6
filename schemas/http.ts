import { Type, type Static } from '@sinclair/typebox'
import { UserName } from './actions/user.ts'
import { Id, Password } from './common.ts'
import { DeviceKind } from './actions/device.ts'

export const Email = Type.String({ format: 'email', maxLength: 254 })

export const SignupBody = Type.Object(
  { email: Email, password: Password, name: UserName },
  { additionalProperties: false, $id: 'SignupBody' },
)
export type SignupBody = Static<typeof SignupBody>

export const LoginBody = Type.Object(
  { email: Email, password: Type.String({ minLength: 1, maxLength: 200 }) },
  { additionalProperties: false, $id: 'LoginBody' },
)
export type LoginBody = Static<typeof LoginBody>

export const TokenReply = Type.Object(
  { userId: Type.String(), token: Type.String(), expiresAt: Type.String() },
  { $id: 'TokenReply' },
)
export type TokenReply = Static<typeof TokenReply>

/** `POST /devices/claim`: a claim code from `device.claimCode`, typed as the owner read it. */
export const ClaimBody = Type.Object(
  {
    code: Type.String({ minLength: 1, maxLength: 32 }),
    /** The kind of device asking: a code of another kind is refused without being used. */
    kind: Type.Optional(DeviceKind),
  },
  { additionalProperties: false, $id: 'ClaimBody' },
)
export type ClaimBody = Static<typeof ClaimBody>

/** What a box needs to connect: its id, a device token of a new generation, and the hub's MQTT address. */
export const ClaimReply = Type.Object(
  {
    deviceId: Id,
    kind: DeviceKind,
    token: Type.String(),
    expiresAt: Type.String(),
    generation: Type.Integer(),
    mqttUrl: Type.String({ pattern: '^mqtts?://' }),
  },
  { $id: 'ClaimReply' },
)
export type ClaimReply = Static<typeof ClaimReply>

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

/** `POST /auth/renew`: nothing but `{}`; the token to renew goes in `Authorization: Bearer …`. */
export const RenewBody = Type.Object({}, { additionalProperties: false, $id: 'RenewBody' })
export type RenewBody = Static<typeof RenewBody>

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

/** POST /auth/explain: the token goes in `Authorization: Bearer …`, never in the body or the URL. */
export const ExplainBody = Type.Object(
  {
    clientId: Type.String({
      maxLength: 256,
      description: 'the MQTT client id the token would connect with ("" for an empty one)',
    }),
  },
  { additionalProperties: false, $id: 'ExplainBody' },
)
export type ExplainBody = Static<typeof ExplainBody>

export const ExplainReply = Type.Object(
  {
    accepted: Type.Boolean({
      description: 'whether a CONNECT with this token and client id is accepted now',
    }),
    returnCode: Type.Union([Type.Literal(0), Type.Literal(4), Type.Literal(5)], {
      description: 'the CONNACK return code that CONNECT gets',
    }),
    check: Type.Optional(
      Type.Union(
        [
          Type.Literal('token'),
          Type.Literal('expiry'),
          Type.Literal('claims'),
          Type.Literal('client-id'),
          Type.Literal('registration'),
        ],
        { description: 'the check that refuses it' },
      ),
    ),
    reason: Type.Optional(Type.String({ description: 'why, as the hub logs the refusal' })),
    token: Type.Optional(
      Type.Object(
        {
          role: Type.String(),
          sub: Type.String(),
          owner: Type.Optional(Type.String()),
          ver: Type.Optional(Type.Integer()),
          expiresAt: Type.String(),
          expired: Type.Boolean(),
        },
        { description: 'the claims, only for a token whose signature the hub verifies' },
      ),
    ),
  },
  { $id: 'ExplainReply' },
)
export type ExplainReply = Static<typeof ExplainReply>

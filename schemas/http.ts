import { Type, type Static } from '@sinclair/typebox'
import { UserName } from './actions/user.ts'
import { Password } from './common.ts'

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

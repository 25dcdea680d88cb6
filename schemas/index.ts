import type { TSchema } from '@sinclair/typebox'
import type { ActionSchema } from './action.ts'
import { userUpdate } from './actions/user.ts'
import { LoginBody, SignupBody, TokenReply } from './http.ts'
import { RequestEnvelope, ResponseEnvelope } from './protocol.ts'
import { HubStatus, UserProfile } from './state.ts'

/** Every action the hub serves, for docs and the JSON Schema export. */
export const actions: readonly ActionSchema[] = [userUpdate]

/** Retained state topics and the schema of their payload. */
export const stateTopics: ReadonlyArray<{ topic: string; schema: TSchema }> = [
  { topic: 'hub/status', schema: HubStatus },
  { topic: 'users/{u}', schema: UserProfile },
]

export const envelopes = { RequestEnvelope, ResponseEnvelope }
export const http = { SignupBody, LoginBody, TokenReply }

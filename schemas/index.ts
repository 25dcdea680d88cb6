import type { TSchema } from '@sinclair/typebox'
import type { ActionSchema } from './action.ts'
import { auditQuery } from './actions/audit.ts'
import * as device from './actions/device.ts'
import * as media from './actions/media.ts'
import * as release from './actions/release.ts'
import * as router from './actions/router.ts'
import * as stage from './actions/stage.ts'
import { AgentConfig, DeviceConfig, FirmwareRelease } from './firmware.ts'
import { userChangePassword, userDelete, userSignOut, userUpdate } from './actions/user.ts'
import {
  ClaimBody,
  ClaimReply,
  ExplainBody,
  ExplainReply,
  LoginBody,
  SignupBody,
  TokenReply,
} from './http.ts'
import { RequestEnvelope, ResponseEnvelope } from './protocol.ts'
import { HubStatus, UserProfile } from './state.ts'

/** Every action the hub serves, for docs and the JSON Schema export. */
export const actions: readonly ActionSchema[] = [
  userUpdate,
  userSignOut,
  userChangePassword,
  userDelete,
  stage.stageCreate,
  stage.stageUpdate,
  stage.stageRemove,
  stage.stageAddAdmin,
  stage.stageRemoveAdmin,
  stage.stageJoin,
  stage.stageLeave,
  stage.stageForget,
  stage.groupCreate,
  stage.groupUpdate,
  stage.groupRemove,
  stage.memberUpdate,
  stage.memberRemove,
  stage.mixSet,
  stage.mixRemove,
  stage.chatSend,
  device.deviceCreate,
  device.deviceToken,
  device.deviceClaimCode,
  device.deviceRemove,
  device.deviceUpdate,
  device.soundCardSet,
  device.soundCardRemove,
  device.trackAdd,
  device.trackUpdate,
  device.trackRemove,
  release.releasePublish,
  release.releaseRollout,
  release.releaseStatus,
  router.routerCreate,
  router.routerToken,
  router.routerRemove,
  router.routerServed,
  router.routerUnserved,
  ...media.mediaActions,
  auditQuery,
]

/** Retained state topics and the schema of their payload. */
export const stateTopics: ReadonlyArray<{ topic: string; schema: TSchema }> = [
  { topic: 'hub/status', schema: HubStatus },
  { topic: 'users/{u}', schema: UserProfile },
  { topic: 'users/{u}/stages/{s}', schema: stage.StageSummary },
  { topic: 'users/{u}/mix/{kind}/{id}', schema: stage.MixState },
  { topic: 'stages/{s}', schema: stage.StageState },
  { topic: 'stages/{s}/groups/{g}', schema: stage.GroupState },
  { topic: 'stages/{s}/members/{u}', schema: stage.MemberState },
  { topic: 'stages/{s}/tracks/{t}', schema: stage.StageTrackState },
  { topic: 'stages/{s}/chat', schema: stage.ChatMessage },
  { topic: 'users/{u}/devices/{d}', schema: device.DeviceState },
  { topic: 'devices/{d}/config', schema: DeviceConfig },
  { topic: 'routers/{r}', schema: router.RouterState },
  { topic: 'routers/{r}/assignments/{s}', schema: router.AssignmentState },
  // not retained: media signals for router r, published by the hub only
  { topic: 'routers/{r}/signal', schema: media.SignalRequest },
]

/** Topics clients publish on (besides requests) and the schema the hub validates them against. */
export const clientTopics: ReadonlyArray<{ topic: string; schema: TSchema }> = [
  { topic: 'devices/{d}/presence', schema: device.PresencePayload },
  { topic: 'devices/{d}/reported', schema: device.ReportedPayload },
  { topic: 'routers/{r}/presence', schema: router.RouterPresencePayload },
  { topic: 'routers/{r}/load', schema: router.RouterLoad },
  { topic: 'routers/{r}/signal/answers', schema: media.SignalAnswer },
]

/** Files outside MQTT: a release manifest, and the ov-box agent's configuration. */
export const fileFormats = { FirmwareRelease, AgentConfig, RouterAgentConfig: media.RouterAgentConfig }

export const envelopes = { RequestEnvelope, ResponseEnvelope }
export const http = { SignupBody, LoginBody, TokenReply, ClaimBody, ClaimReply, ExplainBody, ExplainReply }

/** `schemas/json/` as file name → content: what `npm run schemas` writes. */
export function jsonSchemaFiles(): Map<string, string> {
  const files = new Map<string, string>()
  const add = (file: string, schema: unknown) => files.set(file, JSON.stringify(schema, null, 2) + '\n')
  for (const action of actions) {
    add(`actions/${action.name}.params.json`, {
      title: `${action.name} params`,
      description: action.description,
      ...action.params,
    })
    add(`actions/${action.name}.result.json`, { title: `${action.name} result`, ...action.result })
  }
  for (const { topic, schema } of stateTopics)
    add(`state/${topic.replaceAll('/', '_').replace(/[{}]/g, '')}.json`, { title: topic, ...schema })
  for (const { topic, schema } of clientTopics)
    add(`client/${topic.replaceAll('/', '_').replace(/[{}]/g, '')}.json`, { title: topic, ...schema })
  for (const [name, schema] of Object.entries({ ...envelopes, ...http, ...fileFormats }))
    add(`${name}.json`, schema)
  return files
}

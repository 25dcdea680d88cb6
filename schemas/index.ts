import type { ActionSchema } from './action.ts'
import { auditQuery } from './actions/audit.ts'
import * as device from './actions/device.ts'
import { hubStatus } from './actions/hub.ts'
import { inviteActions } from './actions/invite.ts'
import * as media from './actions/media.ts'
import * as release from './actions/release.ts'
import * as router from './actions/router.ts'
import * as stage from './actions/stage.ts'
import { AgentConfig, FirmwareRelease } from './firmware.ts'
import { userChangePassword, userDelete, userSignOut, userUpdate } from './actions/user.ts'
import {
  ClaimBody,
  ClaimReply,
  ExplainBody,
  ExplainReply,
  LoginBody,
  RenewBody,
  SignupBody,
  TokenReply,
} from './http.ts'
import { RequestEnvelope, ResponseEnvelope } from './protocol.ts'
import { type Topic, topicCatalogue } from './topics.ts'

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
  ...inviteActions,
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
  release.releaseList,
  router.routerCreate,
  router.routerToken,
  router.routerRemove,
  router.routerServed,
  router.routerUnserved,
  ...media.mediaActions,
  auditQuery,
  hubStatus,
]

/**
 * The JSON Schema file (under `schemas/json/`) of a topic's payload: `state/` for what the hub
 * publishes, `client/` for what clients publish; the envelopes and the broker's topics have none.
 */
export function topicSchemaFile(topic: Topic): string {
  const name = topic.pattern.replaceAll('/', '_').replace(/[{}]/g, '')
  return `${topic.kind === 'client' ? 'client' : 'state'}/${name}.json`
}

/** The topics whose payload `schemas/json/` and the docs describe: the envelopes and the broker's own have none. */
export const payloadTopics: readonly Topic[] = topicCatalogue.filter(
  (topic) => topic.kind === 'state' || topic.kind === 'notice' || topic.kind === 'client',
)

/** Files outside MQTT: a release manifest, and the ov-box agent's configuration. */
export const fileFormats = { FirmwareRelease, AgentConfig, RouterAgentConfig: media.RouterAgentConfig }

export const envelopes = { RequestEnvelope, ResponseEnvelope }
export const http = {
  SignupBody,
  LoginBody,
  RenewBody,
  TokenReply,
  ClaimBody,
  ClaimReply,
  ExplainBody,
  ExplainReply,
}

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
  for (const topic of payloadTopics) add(topicSchemaFile(topic), { title: topic.pattern, ...topic.payload })
  for (const [name, schema] of Object.entries({ ...envelopes, ...http, ...fileFormats }))
    add(`${name}.json`, schema)
  return files
}

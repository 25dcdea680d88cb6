import { Type, type TSchema } from '@sinclair/typebox'
import * as device from './actions/device.ts'
import * as media from './actions/media.ts'
import * as router from './actions/router.ts'
import * as stage from './actions/stage.ts'
import { DeviceConfig } from './firmware.ts'
import { RequestEnvelope, ResponseEnvelope } from './protocol.ts'
import { HubStatus, UserProfile } from './state.ts'
import { type TopicName, type TopicShape, topicShapes } from './topic-shapes.ts'

export { type Level, type TopicParams, type TopicShape, matchesFilter } from './topic-shapes.ts'

/**
 * The topic catalogue: every MQTT topic the hub, its clients, devices and routers use, once. The ACL
 * (broker/acl.ts), the hub's inbound routing (services/hub.ts), every topic built or parsed in code,
 * the JSON Schema export and the generated docs (bin/docs.ts) all come from here;
 * test/schemas/topics.test.ts fails when any of them disagrees or spells a topic by hand.
 */

/**
 * Who publishes or may subscribe. The ACL turns each party but the hub (which publishes outside it)
 * into a predicate over the topic's variable the party names: `u`, `s`, `d`, `r` or `c`.
 */
export type Party =
  'the hub' | 'everyone' | 'user u' | 'stage insiders' | 'device d' | 'device owner' | 'router r' | 'client c'

/** The topic variable each party is checked against; a pattern naming a party must have it. */
export const PARTY_VARIABLE: Readonly<Record<Exclude<Party, 'the hub' | 'everyone'>, string>> = {
  'user u': 'u',
  'stage insiders': 's',
  'device d': 'd',
  'device owner': 'd',
  'router r': 'r',
  'client c': 'c',
}

/**
 * What a topic carries: `state` retained documents the hub publishes, `notice` hub messages that are
 * not kept, `client` messages clients publish, `request`/`response` the envelopes of actions,
 * `broker` the broker's own topics (not part of the API).
 */
export type TopicKind = 'state' | 'notice' | 'client' | 'request' | 'response' | 'broker'

/** The part of the hub that consumes messages clients publish on a topic. */
export type Consumer = 'requests' | 'presence' | 'routers' | 'media'

interface TopicSpec {
  payload: TSchema
  kind: TopicKind
  retained: boolean
  publishers: readonly Party[]
  subscribers: readonly Party[]
  consumer?: Consumer
  /**
   * Who receives its messages whatever anyone subscribed to, admins included: `client c` alone (its
   * responses carry tokens) or nobody (a consumed message). Unset: the subscribers above, and admins.
   */
  receivers?: 'client c' | 'nobody'
  /** Anything a reader needs beyond the fields above. */
  note?: string
}

/** A catalogue entry: the topic's shape (schemas/topic-shapes.ts) and what it carries, and who may use it. */
export interface Topic<P extends string = string> extends TopicShape<P>, Readonly<TopicSpec> {}

function defineTopic<P extends string>(shape: TopicShape<P>, spec: TopicSpec): Topic<P> {
  for (const party of [...spec.publishers, ...spec.subscribers]) {
    const variable = party === 'the hub' || party === 'everyone' ? undefined : PARTY_VARIABLE[party]
    if (variable !== undefined && !shape.variables.includes(variable))
      throw new Error(`topic ${shape.pattern} names party "${party}" but has no {${variable}}`)
  }
  return { ...shape, ...spec }
}

const hub = (payload: TSchema, kind: 'state' | 'notice', subscribers: readonly Party[]): TopicSpec => ({
  payload,
  kind,
  retained: kind === 'state',
  publishers: ['the hub'],
  subscribers,
})

/** What each topic carries, and who may use it. */
const specs: { readonly [N in TopicName]: TopicSpec } = {
  hubStatus: hub(HubStatus, 'state', ['everyone']),
  user: hub(UserProfile, 'state', ['user u']),
  userDevice: hub(device.DeviceState, 'state', ['user u']),
  stageSummary: hub(stage.StageSummary, 'state', ['user u']),
  mix: hub(stage.MixState, 'state', ['user u']),
  stage: hub(stage.StageState, 'state', ['stage insiders']),
  group: hub(stage.GroupState, 'state', ['stage insiders']),
  member: hub(stage.MemberState, 'state', ['stage insiders']),
  track: hub(stage.StageTrackState, 'state', ['stage insiders']),
  chat: hub(stage.ChatMessage, 'notice', ['stage insiders']),
  deviceConfig: hub(DeviceConfig, 'state', ['device d', 'device owner']),
  devicePresence: {
    payload: device.PresencePayload,
    kind: 'client',
    retained: true,
    publishers: ['device d'],
    subscribers: ['device d', 'device owner'],
    consumer: 'presence',
    note: 'also its last will',
  },
  deviceReported: {
    payload: device.ReportedPayload,
    kind: 'client',
    retained: false,
    publishers: ['device d'],
    subscribers: [],
    consumer: 'presence',
  },
  router: hub(router.RouterState, 'state', []),
  assignment: hub(router.AssignmentState, 'state', ['router r']),
  routerPresence: {
    payload: router.RouterPresencePayload,
    kind: 'client',
    retained: true,
    publishers: ['router r'],
    subscribers: ['router r'],
    consumer: 'routers',
    note: 'also its last will',
  },
  routerLoad: {
    payload: router.RouterLoad,
    kind: 'client',
    retained: false,
    publishers: ['router r'],
    subscribers: [],
    consumer: 'routers',
  },
  signal: hub(media.SignalRequest, 'notice', ['router r']),
  signalAnswers: {
    payload: media.SignalAnswer,
    kind: 'client',
    retained: false,
    publishers: ['router r'],
    subscribers: [],
    consumer: 'media',
  },
  request: {
    payload: RequestEnvelope,
    kind: 'request',
    retained: false,
    publishers: ['client c'],
    subscribers: [],
    consumer: 'requests',
    receivers: 'nobody',
  },
  response: {
    payload: ResponseEnvelope,
    kind: 'response',
    retained: false,
    publishers: ['the hub'],
    subscribers: ['client c'],
    receivers: 'client c',
  },
  brokerStatistics: {
    payload: Type.String({ description: 'one statistic of the broker, as text' }),
    kind: 'broker',
    retained: false,
    publishers: ['the hub'],
    subscribers: [],
    note: "the broker's statistics",
  },
  consumed: {
    payload: Type.String({ maxLength: 0, description: 'empty' }),
    kind: 'broker',
    retained: false,
    publishers: ['the hub'],
    subscribers: [],
    receivers: 'nobody',
    note: 'requests and refused client messages end here, emptied, once acknowledged',
  },
}

type Catalogue = { readonly [N in TopicName]: Topic<(typeof topicShapes)[N]['pattern']> }

/** Every topic, in the order the ACL checks them and the docs list them (that of topicShapes). */
export const topics = Object.fromEntries(
  (Object.keys(topicShapes) as TopicName[]).map((name) => [
    name,
    defineTopic(topicShapes[name], specs[name]),
  ]),
) as unknown as Catalogue

/** The catalogue as a list, in its order. */
export const topicCatalogue: readonly Topic[] = Object.values(topics)

/** The catalogue entry a concrete topic belongs to, with its variables; null for a topic it lacks. */
export function findTopic(topic: string): { entry: Topic; params: Readonly<Record<string, string>> } | null {
  const levels = topic.split('/')
  for (const entry of topicCatalogue) {
    const params = entry.match(levels)
    if (params) return { entry, params }
  }
  return null
}

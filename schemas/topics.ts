import { Type, type TSchema } from '@sinclair/typebox'
import * as device from './actions/device.ts'
import * as media from './actions/media.ts'
import * as router from './actions/router.ts'
import * as stage from './actions/stage.ts'
import { DeviceConfig } from './firmware.ts'
import { RequestEnvelope, ResponseEnvelope } from './protocol.ts'
import { HubStatus, UserProfile } from './state.ts'

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

/** One level of a pattern: a fixed word, a variable `{name}`, or `#` (this level and all below). */
export type Level = { literal: string } | { variable: string } | { rest: true }

/** The variables of a pattern, in order: `'stages/{s}/members/{u}'` → `['s', 'u']`. */
type VariablesOf<P extends string> = P extends `${infer Head}/${infer Tail}`
  ? [...VariablesOf<Head>, ...VariablesOf<Tail>]
  : P extends `{${infer Name}}`
    ? [Name]
    : []

/** One string per variable, in pattern order: what a builder takes. */
type ValuesFor<Names extends readonly string[]> = { [I in keyof Names]: string }

/** The values a concrete topic binds, by variable name. */
export type TopicParams<P extends string> = { [Name in VariablesOf<P>[number]]: string }

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

export interface Topic<P extends string = string> extends Readonly<TopicSpec> {
  readonly pattern: P
  readonly levels: readonly Level[]
  /** The concrete topic for these variable values, in pattern order. */
  build(...values: ValuesFor<VariablesOf<P>>): string
  /** A subscription filter: given variables bound, the others `+`. */
  filter(values: Partial<TopicParams<P>>): string
  /** The variables of a concrete topic, or null when the topic is not one of this pattern. */
  parse(topic: string): TopicParams<P> | null
  /** `parse` for a topic already split at `/`. */
  match(levels: readonly string[]): TopicParams<P> | null
}

function levelsOf(pattern: string): Level[] {
  return pattern.split('/').map((level): Level => {
    if (level === '#') return { rest: true }
    if (level.startsWith('{') && level.endsWith('}')) return { variable: level.slice(1, -1) }
    return { literal: level }
  })
}

function defineTopic<P extends string>(pattern: P, spec: TopicSpec): Topic<P> {
  const levels = levelsOf(pattern)
  const variables = new Set(levels.flatMap((l) => ('variable' in l ? [l.variable] : [])))
  if (variables.size !== levels.filter((l) => 'variable' in l).length)
    throw new Error(`topic ${pattern} names a variable twice`)
  for (const party of [...spec.publishers, ...spec.subscribers]) {
    const variable = party === 'the hub' || party === 'everyone' ? undefined : PARTY_VARIABLE[party]
    if (variable !== undefined && !variables.has(variable))
      throw new Error(`topic ${pattern} names party "${party}" but has no {${variable}}`)
  }
  const match = (topic: readonly string[]): TopicParams<P> | null => {
    const params: Record<string, string> = {}
    for (let i = 0; i < levels.length; i++) {
      const level = levels[i]!
      // MQTT: `#` matches its parent level too
      if ('rest' in level) return params as TopicParams<P>
      const value = topic[i]
      if (value === undefined) return null
      if ('literal' in level) {
        if (level.literal !== value) return null
      } else {
        if (value === '') return null
        params[level.variable] = value
      }
    }
    return topic.length === levels.length ? (params as TopicParams<P>) : null
  }
  // the text around the variables, so that building a topic is a few concatenations (state fan-out builds many)
  const pieces = pattern.split(/\{\w+\}/)
  const names = [...variables]
  const fill = (values: readonly string[]): string => {
    let topic = pieces[0]!
    for (let i = 0; i < names.length; i++) topic += values[i]! + pieces[i + 1]!
    return topic
  }
  return {
    pattern,
    levels,
    ...spec,
    build: (...values) => fill(values as readonly string[]),
    filter: (values) =>
      fill(names.map((name) => (values as Record<string, string | undefined>)[name] ?? '+')),
    parse: (topic) => match(topic.split('/')),
    match,
  }
}

const hub = (payload: TSchema, kind: 'state' | 'notice', subscribers: readonly Party[]): TopicSpec => ({
  payload,
  kind,
  retained: kind === 'state',
  publishers: ['the hub'],
  subscribers,
})

/** Every topic, in the order the ACL checks them and the docs list them. */
export const topics = {
  hubStatus: defineTopic('hub/status', hub(HubStatus, 'state', ['everyone'])),
  user: defineTopic('users/{u}', hub(UserProfile, 'state', ['user u'])),
  userDevice: defineTopic('users/{u}/devices/{d}', hub(device.DeviceState, 'state', ['user u'])),
  stageSummary: defineTopic('users/{u}/stages/{s}', hub(stage.StageSummary, 'state', ['user u'])),
  mix: defineTopic('users/{u}/mix/{kind}/{id}', hub(stage.MixState, 'state', ['user u'])),
  stage: defineTopic('stages/{s}', hub(stage.StageState, 'state', ['stage insiders'])),
  group: defineTopic('stages/{s}/groups/{g}', hub(stage.GroupState, 'state', ['stage insiders'])),
  member: defineTopic('stages/{s}/members/{u}', hub(stage.MemberState, 'state', ['stage insiders'])),
  track: defineTopic('stages/{s}/tracks/{t}', hub(stage.StageTrackState, 'state', ['stage insiders'])),
  chat: defineTopic('stages/{s}/chat', hub(stage.ChatMessage, 'notice', ['stage insiders'])),
  deviceConfig: defineTopic('devices/{d}/config', hub(DeviceConfig, 'state', ['device d', 'device owner'])),
  devicePresence: defineTopic('devices/{d}/presence', {
    payload: device.PresencePayload,
    kind: 'client',
    retained: true,
    publishers: ['device d'],
    subscribers: ['device d', 'device owner'],
    consumer: 'presence',
    note: 'also its last will',
  }),
  deviceReported: defineTopic('devices/{d}/reported', {
    payload: device.ReportedPayload,
    kind: 'client',
    retained: false,
    publishers: ['device d'],
    subscribers: [],
    consumer: 'presence',
  }),
  router: defineTopic('routers/{r}', hub(router.RouterState, 'state', [])),
  assignment: defineTopic('routers/{r}/assignments/{s}', hub(router.AssignmentState, 'state', ['router r'])),
  routerPresence: defineTopic('routers/{r}/presence', {
    payload: router.RouterPresencePayload,
    kind: 'client',
    retained: true,
    publishers: ['router r'],
    subscribers: ['router r'],
    consumer: 'routers',
    note: 'also its last will',
  }),
  routerLoad: defineTopic('routers/{r}/load', {
    payload: router.RouterLoad,
    kind: 'client',
    retained: false,
    publishers: ['router r'],
    subscribers: [],
    consumer: 'routers',
  }),
  signal: defineTopic('routers/{r}/signal', hub(media.SignalRequest, 'notice', ['router r'])),
  signalAnswers: defineTopic('routers/{r}/signal/answers', {
    payload: media.SignalAnswer,
    kind: 'client',
    retained: false,
    publishers: ['router r'],
    subscribers: [],
    consumer: 'media',
  }),
  request: defineTopic('clients/{c}/req/{action}', {
    payload: RequestEnvelope,
    kind: 'request',
    retained: false,
    publishers: ['client c'],
    subscribers: [],
    consumer: 'requests',
    receivers: 'nobody',
  }),
  response: defineTopic('clients/{c}/res', {
    payload: ResponseEnvelope,
    kind: 'response',
    retained: false,
    publishers: ['the hub'],
    subscribers: ['client c'],
    receivers: 'client c',
  }),
  brokerStatistics: defineTopic('$SYS/#', {
    payload: Type.String({ description: 'one statistic of the broker, as text' }),
    kind: 'broker',
    retained: false,
    publishers: ['the hub'],
    subscribers: [],
    note: "the broker's statistics",
  }),
  consumed: defineTopic('$stagehub/consumed', {
    payload: Type.String({ maxLength: 0, description: 'empty' }),
    kind: 'broker',
    retained: false,
    publishers: ['the hub'],
    subscribers: [],
    receivers: 'nobody',
    note: 'requests and refused client messages end here, emptied, once acknowledged',
  }),
} as const

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

/** Whether `topic` matches the MQTT subscription `filter` (`+` one level, `#` the rest). */
export function matchesFilter(filter: string, topic: string): boolean {
  const f = filter.split('/')
  const t = topic.split('/')
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return !(i === 0 && topic.startsWith('$'))
    if (i >= t.length) return false
    if (f[i] === '+') {
      if (i === 0 && topic.startsWith('$')) return false
      continue
    }
    if (f[i] !== t[i]) return false
  }
  return f.length === t.length
}

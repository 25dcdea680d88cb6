import type { Identity } from './tokens.ts'

/**
 * What the ACL needs to know from stored state. Implemented by the services' access index, which is
 * updated synchronously on every commit, so answers are never stale and cost a map lookup.
 */
export interface AccessState {
  /** Admin or member (online or not) of the stage. */
  canSeeStage(stageId: string, userId: string): boolean
  /** The owner of a registered device, or undefined. */
  deviceOwner(deviceId: string): string | undefined
}

/** Topic variables bound by a concrete topic; a variable covered by a wildcard is undefined. */
type Params = Readonly<Record<string, string | undefined>>
type Predicate = (who: Identity, params: Params, state: AccessState) => boolean

interface AclRule {
  pattern: string
  subscribe?: Predicate
  publish?: Predicate
  /** Client publishes may be retained here (presence); anywhere else the retain flag is dropped. */
  retain?: boolean
  /** The subscribe predicate reads stored state, so it is re-checked for every delivered message. */
  stateful?: boolean
}

// Predicates: small, named, composable.
const anyone: Predicate = () => true
const userSelf =
  (v: string): Predicate =>
  (who, p) =>
    who.role === 'user' && p[v] !== undefined && p[v] === who.id
const stageInsider =
  (v: string): Predicate =>
  (who, p, state) =>
    who.role === 'user' && p[v] !== undefined && state.canSeeStage(p[v], who.id)
const deviceSelf =
  (v: string): Predicate =>
  (who, p) =>
    who.role === 'device' && p[v] !== undefined && p[v] === who.id
const deviceOwner =
  (v: string): Predicate =>
  (who, p, state) =>
    who.role === 'user' && p[v] !== undefined && state.deviceOwner(p[v]) === who.id
const routerSelf =
  (v: string): Predicate =>
  (who, p) =>
    who.role === 'router' && p[v] !== undefined && p[v] === who.id
const ownClient =
  (v: string): Predicate =>
  (who, p) =>
    p[v] !== undefined && p[v] === who.clientId
const either =
  (...predicates: Predicate[]): Predicate =>
  (who, p, state) =>
    predicates.some((pred) => pred(who, p, state))

/** The topic ACL as one table (docs/protocol/topics.md is generated from it). Admins may additionally subscribe to everything, `$SYS` included. Default deny. */
export const aclRules: readonly AclRule[] = [
  { pattern: 'hub/status', subscribe: anyone },
  { pattern: 'users/{u}', subscribe: userSelf('u') },
  { pattern: 'users/{u}/devices/{d}', subscribe: userSelf('u') },
  { pattern: 'users/{u}/stages/{s}', subscribe: userSelf('u') },
  { pattern: 'users/{u}/mix/{kind}/{id}', subscribe: userSelf('u') },
  { pattern: 'stages/{s}', subscribe: stageInsider('s'), stateful: true },
  { pattern: 'stages/{s}/groups/{g}', subscribe: stageInsider('s'), stateful: true },
  { pattern: 'stages/{s}/members/{u}', subscribe: stageInsider('s'), stateful: true },
  { pattern: 'stages/{s}/tracks/{t}', subscribe: stageInsider('s'), stateful: true },
  { pattern: 'stages/{s}/chat', subscribe: stageInsider('s'), stateful: true },
  { pattern: 'devices/{d}/config', subscribe: either(deviceSelf('d'), deviceOwner('d')), stateful: true },
  {
    pattern: 'devices/{d}/presence',
    subscribe: either(deviceSelf('d'), deviceOwner('d')),
    publish: deviceSelf('d'),
    retain: true,
    stateful: true,
  },
  { pattern: 'devices/{d}/reported', publish: deviceSelf('d') },
  { pattern: 'routers/{r}' },
  { pattern: 'routers/{r}/assignments/{s}', subscribe: routerSelf('r') },
  { pattern: 'routers/{r}/presence', subscribe: routerSelf('r'), publish: routerSelf('r'), retain: true },
  { pattern: 'routers/{r}/load', publish: routerSelf('r') },
  // media signalling: only the hub publishes signals (broker.publish, outside the ACL); only r answers
  { pattern: 'routers/{r}/signal', subscribe: routerSelf('r') },
  { pattern: 'routers/{r}/signal/answers', publish: routerSelf('r') },
  { pattern: 'clients/{c}/req/{action}', publish: ownClient('c') },
  { pattern: 'clients/{c}/res', subscribe: ownClient('c') },
  { pattern: '$SYS/#' },
]

type Level = { literal: string } | { variable: string } | { rest: true }

interface CompiledRule extends AclRule {
  levels: Level[]
}

const compiled: CompiledRule[] = aclRules.map((rule) => ({
  ...rule,
  levels: rule.pattern.split('/').map((level): Level => {
    if (level === '#') return { rest: true }
    const variable = /^\{(\w+)\}$/.exec(level)?.[1]
    return variable ? { variable } : { literal: level }
  }),
}))

/** Binds a concrete topic's levels to a rule, or null when the rule does not describe this topic. */
function bindTopic(rule: CompiledRule, levels: readonly string[]): Params | null {
  const params: Record<string, string> = {}
  for (let i = 0; i < rule.levels.length; i++) {
    const level = rule.levels[i]!
    if ('rest' in level) return params
    const value = levels[i]
    if (value === undefined) return null
    if ('literal' in level) {
      if (level.literal !== value) return null
    } else {
      if (value === '') return null
      params[level.variable] = value
    }
  }
  return levels.length === rule.levels.length ? params : null
}

/**
 * Binds a subscription filter to a rule when some topic could match both. Variables under `+` or
 * `#` stay unbound, so identity predicates refuse them: that is what stops wildcards widening access.
 */
function bindFilter(rule: CompiledRule, filter: readonly string[]): Params | null {
  if (rule.levels[0] && 'literal' in rule.levels[0] && rule.levels[0].literal.startsWith('$')) {
    // MQTT: wildcards at the first level never match $-topics
    if (filter[0] !== rule.levels[0].literal) return null
  }
  const params: Record<string, string | undefined> = {}
  for (let i = 0; ; i++) {
    const f = filter[i]
    const level = rule.levels[i]
    if (f === '#') {
      // matches the parent level too, so a rule with exactly i levels intersects
      for (const rest of rule.levels.slice(i)) if ('variable' in rest) params[rest.variable] = undefined
      return params
    }
    if (level && 'rest' in level) return params
    if (f === undefined || level === undefined) return f === undefined && level === undefined ? params : null
    if (f === '+') {
      if ('variable' in level) params[level.variable] = undefined
      continue
    }
    if ('literal' in level) {
      if (level.literal !== f) return null
    } else {
      if (f === '') return null
      params[level.variable] = f
    }
  }
}

export interface PublishDecision {
  allowed: boolean
  /** Whether the client's retain flag may stand. */
  retain: boolean
}

/**
 * Where the broker puts a client publish it consumed (a request) or refused: `soleRecipient` gives
 * it to nobody, so Aedes acknowledges the message and routes it nowhere.
 */
export const CONSUMED_TOPIC = '$stagehub/consumed'

/**
 * The only client id a topic's messages may reach, whatever anyone subscribed to (admins included):
 * `clients/{c}/…` is c's own (its responses carry tokens), CONSUMED_TOPIC is nobody's (null).
 * Undefined for every other topic: the ACL decides.
 */
export function soleRecipient(topic: string): string | null | undefined {
  if (topic.startsWith('clients/')) {
    const end = topic.indexOf('/', 8)
    return topic.slice(8, end === -1 ? undefined : end)
  }
  return topic === CONSUMED_TOPIC ? null : undefined
}

/** Topics whose stateful rule binding canReceive keeps (cleared when full: recent topics are hot). */
const RECEIVE_BINDINGS = 10_000

/** The stateful rule that describes a concrete topic, with its variables; null when none does. */
function bindStateful(topic: string): { rule: CompiledRule; params: Params } | null {
  const levels = topic.split('/')
  for (const rule of compiled) {
    if (!rule.stateful) continue
    const params = bindTopic(rule, levels)
    if (params) return { rule, params }
  }
  return null
}

export class Acl {
  readonly #state: AccessState
  readonly #receiveBindings = new Map<string, { rule: CompiledRule; params: Params } | null>()

  constructor(state: AccessState) {
    this.#state = state
  }

  /** SUBSCRIBE: allowed only when every rule the filter could reach allows it (no widening). */
  canSubscribe(who: Identity, filter: string): boolean {
    if (who.role === 'admin') return true
    const levels = filter.split('/')
    let reachable = false
    for (const rule of compiled) {
      const params = bindFilter(rule, levels)
      if (!params) continue
      reachable = true
      if (!rule.subscribe || !rule.subscribe(who, params, this.#state)) return false
    }
    return reachable
  }

  /**
   * Delivery of one message on a concrete topic to a subscriber. A client's own topics reach that
   * client alone; state-dependent rules are re-checked so that access revoked in the store ends at
   * once, including subscriptions already held.
   */
  canReceive(who: Identity, topic: string): boolean {
    const sole = soleRecipient(topic)
    if (sole !== undefined) return sole === who.clientId
    if (who.role === 'admin') return true
    const slash = topic.indexOf('/')
    const first = slash === -1 ? topic : topic.slice(0, slash)
    if (first !== 'stages' && first !== 'devices') return true
    // one message goes to every subscriber: bind its topic once, not once per delivery
    let binding = this.#receiveBindings.get(topic)
    if (binding === undefined) {
      binding = bindStateful(topic)
      if (this.#receiveBindings.size >= RECEIVE_BINDINGS) this.#receiveBindings.clear()
      this.#receiveBindings.set(topic, binding)
    }
    return binding === null || binding.rule.subscribe!(who, binding.params, this.#state)
  }

  /** PUBLISH: the one rule that describes the topic must allow it; anything else is refused. */
  canPublish(who: Identity, topic: string): PublishDecision {
    const levels = topic.split('/')
    for (const rule of compiled) {
      const params = bindTopic(rule, levels)
      if (!params) continue
      const allowed = rule.publish ? rule.publish(who, params, this.#state) : false
      return { allowed, retain: allowed && rule.retain === true }
    }
    return { allowed: false, retain: false }
  }
}

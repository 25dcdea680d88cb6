import { PARTY_VARIABLE, type Party, type Topic, findTopic, topicCatalogue } from '../schemas/topics.ts'
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
  /** The catalogue entry this rule enforces. */
  topic: Topic
  subscribe?: Predicate
  publish?: Predicate
  /** Client publishes may be retained here (presence); anywhere else the retain flag is dropped. */
  retain: boolean
  /** The subscribe predicate reads stored state, so it is re-checked for every delivered message. */
  stateful: boolean
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

/** Each catalogue party as a check against a client's identity and stored state. */
const PARTIES: Readonly<Record<Exclude<Party, 'the hub'>, { predicate: Predicate; readsState: boolean }>> = {
  everyone: { predicate: anyone, readsState: false },
  'user u': { predicate: userSelf(PARTY_VARIABLE['user u']), readsState: false },
  'stage insiders': { predicate: stageInsider(PARTY_VARIABLE['stage insiders']), readsState: true },
  'device d': { predicate: deviceSelf(PARTY_VARIABLE['device d']), readsState: false },
  'device owner': { predicate: deviceOwner(PARTY_VARIABLE['device owner']), readsState: true },
  'router r': { predicate: routerSelf(PARTY_VARIABLE['router r']), readsState: false },
  'client c': { predicate: ownClient(PARTY_VARIABLE['client c']), readsState: false },
}

/** The parties of a list as one predicate; the hub publishes outside the ACL, so it adds none. */
function allowing(parties: readonly Party[]): Predicate | undefined {
  const predicates = parties.flatMap((party) => (party === 'the hub' ? [] : [PARTIES[party].predicate]))
  return predicates.length <= 1 ? predicates[0] : either(...predicates)
}

/**
 * The topic ACL as one table, one rule per entry of the topic catalogue (schemas/topics.ts) in its
 * order. Admins may additionally subscribe to everything, `$SYS` included. Default deny.
 */
export const aclRules: readonly AclRule[] = topicCatalogue.map((topic) => {
  const publish = allowing(topic.publishers)
  return {
    topic,
    subscribe: allowing(topic.subscribers),
    publish,
    retain: publish !== undefined && topic.retained,
    stateful: topic.subscribers.some((party) => party !== 'the hub' && PARTIES[party].readsState),
  }
})

/** First topic levels under which some rule reads stored state: deliveries elsewhere need no re-check. */
const STATEFUL_ROOTS = new Set(
  aclRules.flatMap((rule) => {
    const first = rule.topic.levels[0]
    return rule.stateful && first && 'literal' in first ? [first.literal] : []
  }),
)

/**
 * Binds a subscription filter to a rule when some topic could match both. Variables under `+` or
 * `#` stay unbound, so identity predicates refuse them: that is what stops wildcards widening access.
 */
function bindFilter(rule: AclRule, filter: readonly string[]): Params | null {
  const levels = rule.topic.levels
  if (levels[0] && 'literal' in levels[0] && levels[0].literal.startsWith('$')) {
    // MQTT: wildcards at the first level never match $-topics
    if (filter[0] !== levels[0].literal) return null
  }
  const params: Record<string, string | undefined> = {}
  for (let i = 0; ; i++) {
    const f = filter[i]
    const level = levels[i]
    if (f === '#') {
      // matches the parent level too, so a rule with exactly i levels intersects
      for (const rest of levels.slice(i)) if ('variable' in rest) params[rest.variable] = undefined
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

/** The first levels of the catalogue topics whose messages have fixed receivers (checked per delivery). */
const FIXED_RECEIVER_ROOTS = new Set(
  topicCatalogue.filter((t) => t.receivers !== undefined).map((t) => t.pattern.split('/')[0]!),
)

/**
 * The only client id a topic's messages may reach, whatever anyone subscribed to (admins included),
 * from the catalogue's `receivers`: c for `clients/{c}/res`, null (nobody) for a consumed message.
 * Undefined for every other topic: the ACL decides.
 */
export function soleRecipient(topic: string): string | null | undefined {
  const slash = topic.indexOf('/')
  if (!FIXED_RECEIVER_ROOTS.has(slash === -1 ? topic : topic.slice(0, slash))) return undefined
  const found = findTopic(topic)
  if (found?.entry.receivers === undefined) return undefined
  return found.entry.receivers === 'nobody' ? null : found.params[PARTY_VARIABLE['client c']]!
}

/** Topics whose stateful rule binding canReceive keeps (cleared when full: recent topics are hot). */
const RECEIVE_BINDINGS = 10_000

/** The stateful rule that describes a concrete topic, with its variables; null when none does. */
function bindStateful(topic: string): { rule: AclRule; params: Params } | null {
  const levels = topic.split('/')
  for (const rule of aclRules) {
    if (!rule.stateful) continue
    const params = rule.topic.match(levels)
    if (params) return { rule, params }
  }
  return null
}

export class Acl {
  readonly #state: AccessState
  readonly #receiveBindings = new Map<string, { rule: AclRule; params: Params } | null>()

  constructor(state: AccessState) {
    this.#state = state
  }

  /** SUBSCRIBE: allowed only when every rule the filter could reach allows it (no widening). */
  canSubscribe(who: Identity, filter: string): boolean {
    if (who.role === 'admin') return true
    const levels = filter.split('/')
    let reachable = false
    for (const rule of aclRules) {
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
    // every delivery passes here: find the first level once for both checks
    const slash = topic.indexOf('/')
    const first = slash === -1 ? topic : topic.slice(0, slash)
    if (FIXED_RECEIVER_ROOTS.has(first)) {
      const sole = soleRecipient(topic)
      if (sole !== undefined) return sole === who.clientId
    }
    if (who.role === 'admin') return true
    if (!STATEFUL_ROOTS.has(first)) return true
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
    for (const rule of aclRules) {
      const params = rule.topic.match(levels)
      if (!params) continue
      const allowed = rule.publish ? rule.publish(who, params, this.#state) : false
      return { allowed, retain: allowed && rule.retain }
    }
    return { allowed: false, retain: false }
  }
}

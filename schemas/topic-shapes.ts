/**
 * The shapes of the catalogue's topics: each pattern with its builder, filter and parser, and no
 * payload schema. Everything that only builds or matches topics (the hub client, and so the browser
 * bundle) imports this module, which needs no schema library; the catalogue (schemas/topics.ts) adds
 * to every shape here what it carries and who may use it, and the ACL, the hub and the docs read that.
 * The patterns are spelled here and nowhere else (test/schemas/topics.test.ts).
 */

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

export interface TopicShape<P extends string = string> {
  readonly pattern: P
  readonly levels: readonly Level[]
  /** The variable names, in pattern order. */
  readonly variables: readonly string[]
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

function shape<P extends string>(pattern: P): TopicShape<P> {
  const levels = levelsOf(pattern)
  const variables = levels.flatMap((l) => ('variable' in l ? [l.variable] : []))
  if (new Set(variables).size !== variables.length) throw new Error(`topic ${pattern} names a variable twice`)
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
  const fill = (values: readonly string[]): string => {
    let topic = pieces[0]!
    for (let i = 0; i < variables.length; i++) topic += values[i]! + pieces[i + 1]!
    return topic
  }
  return {
    pattern,
    levels,
    variables,
    build: (...values) => fill(values as readonly string[]),
    filter: (values) =>
      fill(variables.map((name) => (values as Record<string, string | undefined>)[name] ?? '+')),
    parse: (topic) => match(topic.split('/')),
    match,
  }
}

/** Every topic's shape, in the order the ACL checks them and the docs list them. */
export const topicShapes = {
  hubStatus: shape('hub/status'),
  user: shape('users/{u}'),
  userDevice: shape('users/{u}/devices/{d}'),
  stageSummary: shape('users/{u}/stages/{s}'),
  mix: shape('users/{u}/mix/{kind}/{id}'),
  stage: shape('stages/{s}'),
  group: shape('stages/{s}/groups/{g}'),
  member: shape('stages/{s}/members/{u}'),
  track: shape('stages/{s}/tracks/{t}'),
  chat: shape('stages/{s}/chat'),
  deviceConfig: shape('devices/{d}/config'),
  devicePresence: shape('devices/{d}/presence'),
  deviceReported: shape('devices/{d}/reported'),
  router: shape('routers/{r}'),
  assignment: shape('routers/{r}/assignments/{s}'),
  routerPresence: shape('routers/{r}/presence'),
  routerLoad: shape('routers/{r}/load'),
  signal: shape('routers/{r}/signal'),
  signalAnswers: shape('routers/{r}/signal/answers'),
  request: shape('clients/{c}/req/{action}'),
  response: shape('clients/{c}/res'),
  brokerStatistics: shape('$SYS/#'),
  consumed: shape('$stagehub/consumed'),
} as const

/** The names of the catalogue's topics. */
export type TopicName = keyof typeof topicShapes

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

import type { Static, TSchema } from '@sinclair/typebox'

/** The kinds of record a request can be about, as the audit trail names its target ids. */
export type AuditTargetKind =
  | 'userId'
  | 'stageId'
  | 'groupId'
  | 'memberId'
  | 'trackId'
  | 'deviceId'
  | 'routerId'
  | 'release'
  /** mix.set/mix.remove: the group, member or track the override is for (its kind is in the params). */
  | 'mixTarget'
  | 'producerId'
  | 'consumerId'
  | 'transportId'

/**
 * Where a request's target ids are: a dotted path into its params (`params.stageId`) or, for ids a
 * successful request creates, into its result (`result.device.id`). Only ids are ever read this way:
 * nothing else of a request (passwords, tokens, text) reaches the audit trail.
 */
export type AuditTargets = Partial<Record<AuditTargetKind, `params.${string}` | `result.${string}`>>

/** One request action: its topic name and the schemas that are its contract. */
export interface ActionSchema<
  P extends TSchema = TSchema,
  R extends TSchema = TSchema,
  N extends string = string,
> {
  name: N
  description: string
  params: P
  result: R
  /**
   * Whether the action changes stored state. Every request of such an action is recorded in the audit
   * trail whatever its outcome; requests of other actions only when they are refused permission.
   */
  changesState: boolean
  /** The target ids recorded with the request in the audit trail. */
  targets?: AuditTargets
}

export type ActionParams<A extends ActionSchema> = Static<A['params']>
export type ActionResult<A extends ActionSchema> = Static<A['result']>

// the name stays a literal type, so clients can map an action name to its params and result types
export function defineAction<N extends string, P extends TSchema, R extends TSchema>(
  action: ActionSchema<P, R, N>,
): ActionSchema<P, R, N> {
  if (!/^[a-z]+\.[a-zA-Z]+$/.test(action.name)) throw new Error(`bad action name ${action.name}`)
  return action
}

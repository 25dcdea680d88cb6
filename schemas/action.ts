import type { Static, TSchema } from '@sinclair/typebox'

/** One request action: its topic name and the schemas that are its contract. */
export interface ActionSchema<P extends TSchema = TSchema, R extends TSchema = TSchema> {
  name: string
  description: string
  params: P
  result: R
}

export type ActionParams<A extends ActionSchema> = Static<A['params']>
export type ActionResult<A extends ActionSchema> = Static<A['result']>

export function defineAction<P extends TSchema, R extends TSchema>(
  action: ActionSchema<P, R>,
): ActionSchema<P, R> {
  if (!/^[a-z]+\.[a-zA-Z]+$/.test(action.name)) throw new Error(`bad action name ${action.name}`)
  return action
}

import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv'
import addFormatsModule from 'ajv-formats'
import type { Static, TSchema } from '@sinclair/typebox'

// ajv-formats is CommonJS; under NodeNext its default export is the module object
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv

/** One ajv for the whole hub: the schemas in this folder are the only definition of valid input. */
export const ajv = addFormats(
  new Ajv({ allErrors: false, strict: false, useDefaults: false, coerceTypes: false }),
)

export interface Validator<T> {
  (value: unknown): value is T
  /** A sentence naming the first problem, e.g. `params/name must NOT have more than 100 characters`. */
  describe(): string
}

export function validator<S extends TSchema>(schema: S): Validator<Static<S>> {
  const check: ValidateFunction = ajv.compile(schema)
  const validate = ((value: unknown) => check(value)) as Validator<Static<S>>
  validate.describe = () => describe(check.errors)
  return validate
}

function describe(errors: ErrorObject[] | null | undefined): string {
  const first = errors?.[0]
  if (!first) return 'invalid'
  const where = first.instancePath ? first.instancePath.slice(1) : 'value'
  if (first.keyword === 'additionalProperties') {
    return `${where} has an unknown field "${(first.params as { additionalProperty: string }).additionalProperty}"`
  }
  return `${where} ${first.message ?? 'is invalid'}`
}

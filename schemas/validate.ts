import { Ajv, type ErrorObject, type SchemaValidateFunction, type ValidateFunction } from 'ajv'
import addFormatsModule from 'ajv-formats'
import type { Static, TSchema } from '@sinclair/typebox'
import { TEXT_RULE, type TextRule, normaliseText, textProblem } from './text.ts'

// ajv-formats is CommonJS; under NodeNext its default export is the module object
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv

/** One ajv for the whole hub: the schemas in this folder are the only definition of valid input. */
export const ajv = addFormats(
  new Ajv({ allErrors: false, strict: false, useDefaults: false, coerceTypes: false }),
)

const checkText: SchemaValidateFunction = (rule: TextRule, data: string, _parentSchema, where) => {
  const text = normaliseText(rule, data)
  // replaced in place, so the length limits and the handler see the normal form
  if (where?.parentData && text !== data)
    (where.parentData as Record<string | number, unknown>)[where.parentDataProperty] = text
  const problem = textProblem(rule, text)
  checkText.errors = problem ? [{ keyword: TEXT_RULE, message: problem, params: { rule } }] : []
  return !problem
}

ajv.addKeyword({
  keyword: TEXT_RULE,
  type: 'string',
  schemaType: 'string',
  modifying: true,
  // first of the string keywords: minLength and maxLength then count the normalised text
  before: 'maxLength',
  validate: checkText,
})

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

import { type Static, type TOptional, type TSchema, Type } from '@sinclair/typebox'

/** `{x}` in a topic pattern (docs/protocol/topics.md): every id that appears in a topic level. */
export const Id = Type.String({
  pattern: '^[A-Za-z0-9_-]{1,64}$',
  description: 'id usable as one topic level',
})
export type Id = Static<typeof Id>

export const Version = Type.Integer({
  minimum: 1,
  description: 'document version for compare-and-set writes',
})

export const Timestamp = Type.String({ format: 'date-time' })

/** A password a person chooses (accounts; sign-up, password change and the operator CLI). */
export const Password = Type.String({ minLength: 8, maxLength: 200 })

/** The same fields, each optional: the shape of a patch. */
export function optionalFields<T extends Record<string, TSchema>>(
  fields: T,
): { [K in keyof T]: TOptional<T[K]> } {
  return Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, Type.Optional(v)])) as {
    [K in keyof T]: TOptional<T[K]>
  }
}

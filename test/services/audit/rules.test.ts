import t from 'tap'
import type { TSchema } from '@sinclair/typebox'
import { actions } from '../../../schemas/index.ts'
import { targetIds } from '../../../services/audit/rules.ts'

/** The schema at a dotted path of object properties (any member of a union), or undefined. */
function schemaAt(schema: TSchema | undefined, steps: string[]): TSchema | undefined {
  if (!schema || steps.length === 0) return schema
  const options = (schema.anyOf as TSchema[] | undefined) ?? [schema]
  for (const option of options) {
    const properties = option.properties as Record<string, TSchema> | undefined
    const found = schemaAt(properties?.[steps[0]!], steps.slice(1))
    if (found) return found
  }
  return undefined
}

t.test('every declared audit target is a string field of its action params or result', async (t) => {
  for (const action of actions) {
    for (const [kind, path] of Object.entries(action.targets ?? {})) {
      const [root, ...steps] = path.split('.')
      const schema = schemaAt(root === 'params' ? action.params : action.result, steps)
      t.equal(schema?.type, 'string', `${action.name}: ${kind} at ${path}`)
    }
  }
})

t.test('target ids are read only where declared, and only when they look like ids', async (t) => {
  const rule = { stageId: 'params.stageId', deviceId: 'result.device.id' } as const
  t.same(targetIds(rule, { stageId: 's1', password: 'secret' }, { device: { id: 'd1' }, token: 'x' }), {
    stageId: 's1',
    deviceId: 'd1',
  })
  t.same(targetIds(rule, { stageId: 'not an id: has spaces' }, undefined), {}, 'no free text')
  t.same(targetIds(rule, { stageId: 'x'.repeat(65) }, undefined), {}, 'nothing longer than an id (a token)')
  t.same(targetIds(rule, { stageId: { nested: 'object' } }, null), {}, 'only strings')
  t.same(targetIds(undefined, { stageId: 's1' }, undefined), {}, 'no rule, no targets')
})

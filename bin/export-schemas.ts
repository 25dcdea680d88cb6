/* eslint-disable no-console -- a build script */
// Writes schemas/json/: the TypeBox schemas as plain JSON Schema files, for clients in any language.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { actions, envelopes, http, stateTopics } from '../schemas/index.ts'

const out = new URL('../schemas/json/', import.meta.url).pathname
rmSync(out, { recursive: true, force: true })
const write = (file: string, schema: unknown) => {
  mkdirSync(join(out, file, '..'), { recursive: true })
  writeFileSync(join(out, file), JSON.stringify(schema, null, 2) + '\n')
}
for (const action of actions) {
  write(`actions/${action.name}.params.json`, {
    title: `${action.name} params`,
    description: action.description,
    ...action.params,
  })
  write(`actions/${action.name}.result.json`, { title: `${action.name} result`, ...action.result })
}
for (const { topic, schema } of stateTopics)
  write(`state/${topic.replaceAll('/', '_').replace(/[{}]/g, '')}.json`, { title: topic, ...schema })
for (const [name, schema] of Object.entries({ ...envelopes, ...http })) write(`${name}.json`, schema)
console.log(`wrote ${out}`)

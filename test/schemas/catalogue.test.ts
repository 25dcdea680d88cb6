import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import t from 'tap'
import { JSON_SCHEMA_DIR } from '../../bin/export-schemas.ts'
import { actions, jsonSchemaFiles } from '../../schemas/index.ts'
import { startTestHub } from '../helpers/hub.ts'

t.test(
  'every action the hub serves is in the schema catalogue (and so in schemas/json), and nothing else is',
  async (t) => {
    const th = await startTestHub(t)
    const served = th.hub.pipeline.actions.map((a) => a.name).sort()
    t.same(served, actions.map((a) => a.name).sort())
    for (const action of actions)
      t.match(action.name, /^[a-z]+\.[a-zA-Z]+$/, `${action.name} is a valid topic level`)
  },
)

t.test(
  'schemas/json is in sync with the TypeBox schemas (run `npm run schemas` after changing them)',
  async (t) => {
    const onDisk = new Map<string, string>()
    const walk = (dir: string) => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name)
        if (entry.isDirectory()) walk(path)
        else onDisk.set(relative(JSON_SCHEMA_DIR, path), readFileSync(path, 'utf8'))
      }
    }
    walk(JSON_SCHEMA_DIR)
    const expected = jsonSchemaFiles()
    t.same([...onDisk.keys()].sort(), [...expected.keys()].sort(), 'the same files')
    for (const [file, content] of expected) t.equal(onDisk.get(file), content, file)
  },
)

/* eslint-disable no-console -- a build script */
// Writes schemas/json/: the TypeBox schemas as plain JSON Schema files, for clients in any language.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { jsonSchemaFiles } from '../schemas/index.ts'

export const JSON_SCHEMA_DIR = fileURLToPath(new URL('../schemas/json/', import.meta.url))

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  rmSync(JSON_SCHEMA_DIR, { recursive: true, force: true })
  for (const [file, content] of jsonSchemaFiles()) {
    mkdirSync(dirname(join(JSON_SCHEMA_DIR, file)), { recursive: true })
    writeFileSync(join(JSON_SCHEMA_DIR, file), content)
  }
  console.log(`wrote ${JSON_SCHEMA_DIR}`)
}

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildWeb } from '../../scripts/build-web.ts'
import type { Teardown } from './hub.ts'

/** The web app built (as `npm run build:web` does) into a temp directory, removed with the test. */
export async function builtWebApp(t: Teardown): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'stagehub-web-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  await buildWeb({ outdir: dir })
  return dir
}

/* eslint-disable no-console -- a build script */
/**
 * `npm run bundle:ovbox`: the ov-box agent as one JavaScript file plus its systemd unit, in
 * dist/ovbox/. The box needs Node and these two files: no node_modules, no tsx, no build tools.
 */
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import { OVBOX_PATHS, renderAgentUnit } from '../devices/ovbox/provisioning.ts'

const root = fileURLToPath(new URL('..', import.meta.url))
export const OVBOX_BUNDLE_DIR = join(root, 'dist', 'ovbox')

export async function bundleOvbox(outDir = OVBOX_BUNDLE_DIR): Promise<string> {
  mkdirSync(outDir, { recursive: true })
  const outfile = join(outDir, OVBOX_PATHS.bundle)
  await build({
    entryPoints: [join(root, 'devices', 'ovbox', 'main.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node22',
    minify: true,
    legalComments: 'eof',
    logLevel: 'warning',
    // the CommonJS dependencies (mqtt, pino, ajv) call require(), which ES modules lack
    banner: {
      js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);",
    },
    // optional native speed-ups of ws, loaded only if installed
    external: ['bufferutil', 'utf-8-validate'],
  })
  // esbuild keeps the entry's `#!… --import=tsx` line; the bundle needs plain Node, so that linked
  // into the PATH it is the `stagehub-ovbox` command
  const code = readFileSync(outfile, 'utf8').replace(/^#!.*\n/, '')
  writeFileSync(outfile, `#!/usr/bin/env node\n${code}`)
  chmodSync(outfile, 0o755)
  writeFileSync(join(outDir, basename(OVBOX_PATHS.unit)), renderAgentUnit())
  return outfile
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const outfile = await bundleOvbox()
  console.log(`wrote ${outfile} and ${join(OVBOX_BUNDLE_DIR, basename(OVBOX_PATHS.unit))}`)
}

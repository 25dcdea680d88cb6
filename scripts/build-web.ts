/**
 * Builds the web app (web/) into static files the hub serves at `/`: `index.html` naming the hashed
 * `assets/main-<hash>.js` and `.css` (what loads on demand in chunks of their own, e.g.
 * `engine-<hash>.js` with mediasoup-client), each beside its brotli and gzip forms (`.br`, `.gz`) for the hub
 * to send as they are. `npm run build:web` (and `npm ci`, through `prepare`).
 * `--out <dir>` builds elsewhere (tests); `--inputs` lists the source files that weigh most in the script
 * (esbuild's metafile).
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { basename, extname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { brotliCompress, constants as zlib, gzip } from 'node:zlib'
import type { BuildOptions, Metafile } from 'esbuild'
import { build } from 'esbuild'

export const WEB_ROOT = fileURLToPath(new URL('../web/', import.meta.url))
export const DEFAULT_OUT = join(WEB_ROOT, 'dist')

export interface WebBuildSettings {
  outdir?: string
  /** Where the app finds the hub (HTTP and MQTT over WebSocket); default: the page's own origin. */
  hubOrigin?: string
  /** Adds esbuild's live-reload listener (`npm run dev`). */
  liveReload?: boolean
  minify?: boolean
}

/** esbuild's options for the app, shared by the build and `npm run dev`'s watch. */
export function webBuildOptions(settings: WebBuildSettings = {}): BuildOptions {
  const outdir = settings.outdir ?? DEFAULT_OUT
  return {
    entryPoints: [join(WEB_ROOT, 'src/main.tsx')],
    outdir: join(outdir, 'assets'),
    entryNames: '[name]-[hash]',
    // what loads only when needed (mediasoup-client, when a person joins audio) goes in a chunk of its own
    splitting: true,
    chunkNames: '[name]-[hash]',
    assetNames: '[name]-[hash]',
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['chrome110', 'firefox115', 'safari16'],
    jsx: 'automatic',
    jsxImportSource: 'preact',
    minify: settings.minify ?? true,
    sourcemap: 'linked',
    metafile: true,
    logLevel: 'warning',
    define: {
      HUB_ORIGIN: JSON.stringify(settings.hubOrigin ?? ''),
      LIVE_RELOAD: JSON.stringify(settings.liveReload ?? false),
    },
  }
}

/** Writes `index.html` naming the entry's hashed script and stylesheet from esbuild's metafile. */
export async function writeIndex(outdir: string, metafile: Metafile): Promise<void> {
  const outputs = Object.entries(metafile.outputs).find(([, o]) => o.entryPoint?.endsWith('main.tsx'))
  if (!outputs) throw new Error('the build has no output for web/src/main.tsx')
  const [js, { cssBundle }] = outputs
  const asset = (file: string) => `/assets/${relative(join(outdir, 'assets'), resolve(file))}`
  const template = await readFile(join(WEB_ROOT, 'index.html'), 'utf8')
  const html = template
    .replace('<!-- styles -->', cssBundle ? `<link rel="stylesheet" href="${asset(cssBundle)}" />` : '')
    .replace('<!-- scripts -->', `<script type="module" src="${asset(js)}"></script>`)
  await writeFile(join(outdir, 'index.html'), html)
}

/** The outputs a browser loads and that shrink when compressed (source maps only open in dev tools). */
export const COMPRESSED_TYPES = ['.js', '.css', '.svg']

const brotli = promisify(brotliCompress)
const gzipped = promisify(gzip)

/**
 * Writes `<file>.br` (brotli, best quality) and `<file>.gz` (gzip level 9) beside each compressible
 * output, once at build time, so that serving one costs a file read. A form that would not be smaller
 * is left out (the hub then sends the file as it is).
 */
export async function compressOutputs(metafile: Metafile): Promise<void> {
  const files = Object.keys(metafile.outputs).filter((file) => COMPRESSED_TYPES.includes(extname(file)))
  await Promise.all(
    files.map(async (file) => {
      const body = await readFile(file)
      const forms = await Promise.all([
        brotli(body, {
          params: {
            [zlib.BROTLI_PARAM_QUALITY]: zlib.BROTLI_MAX_QUALITY,
            [zlib.BROTLI_PARAM_MODE]: zlib.BROTLI_MODE_TEXT,
            [zlib.BROTLI_PARAM_SIZE_HINT]: body.length,
          },
        }),
        gzipped(body, { level: 9 }),
      ])
      for (const [i, suffix] of (['.br', '.gz'] as const).entries())
        if (forms[i]!.length < body.length) await writeFile(file + suffix, forms[i]!)
    }),
  )
}

/** A clean build into `outdir` (old hashed files removed), compressed forms included. */
export async function buildWeb(settings: WebBuildSettings = {}): Promise<Metafile> {
  const outdir = settings.outdir ?? DEFAULT_OUT
  await rm(outdir, { recursive: true, force: true })
  await mkdir(outdir, { recursive: true })
  const result = await build(webBuildOptions({ ...settings, outdir }))
  await writeIndex(outdir, result.metafile!)
  await compressOutputs(result.metafile!)
  return result.metafile!
}

/** The first-load transfer budget for script and style together, gzip as served (issue 13). */
export const FIRST_LOAD_BUDGET_BYTES = 200 * 1024

export interface BundleReport {
  /** What a first visit downloads: the entry's script and stylesheet and the chunks it imports statically. */
  firstLoad: { files: string[]; bytes: number; gzip: number; brotli: number }
  /** What loads later, by dynamic import (mediasoup-client on joining audio), gzip as served. */
  lazy: { files: string[]; gzip: number }
  /** The source files in the scripts (first load and lazy), largest first (bytes they leave in the minified output). */
  inputs: { path: string; bytes: number }[]
}

/** Measures a build from its metafile and the compressed forms beside its outputs. */
export async function bundleReport(metafile: Metafile): Promise<BundleReport> {
  const all = Object.keys(metafile.outputs).filter((file) => /\.(js|css)$/.test(file))
  // the entry, its stylesheet and what it imports statically, transitively
  const first = new Set<string>()
  const visit = (file: string) => {
    if (first.has(file)) return
    first.add(file)
    const output = metafile.outputs[file]!
    if (output.cssBundle) first.add(output.cssBundle)
    for (const i of output.imports)
      if (i.kind === 'import-statement' && metafile.outputs[i.path]) visit(i.path)
  }
  for (const [file, output] of Object.entries(metafile.outputs))
    if (output.entryPoint?.endsWith('main.tsx') && file.endsWith('.js')) visit(file)
  const files = all.filter((file) => first.has(file))
  const lazyFiles = all.filter((file) => !first.has(file))
  // a form the build left out (not smaller) is served as the file itself
  const size = async (file: string, suffix: string) =>
    (await readFile(file + suffix).catch(() => readFile(file))).length
  let bytes = 0
  let gzipBytes = 0
  let brotliBytes = 0
  for (const file of files) {
    bytes += metafile.outputs[file]!.bytes
    gzipBytes += await size(file, '.gz')
    brotliBytes += await size(file, '.br')
  }
  let lazyGzip = 0
  for (const file of lazyFiles) lazyGzip += await size(file, '.gz')
  const inputs = new Map<string, number>()
  for (const file of all)
    for (const [path, input] of Object.entries(metafile.outputs[file]!.inputs))
      inputs.set(path, (inputs.get(path) ?? 0) + input.bytesInOutput)
  return {
    firstLoad: { files: files.map((f) => basename(f)), bytes, gzip: gzipBytes, brotli: brotliBytes },
    lazy: { files: lazyFiles.map((f) => basename(f)), gzip: lazyGzip },
    inputs: [...inputs]
      .map(([path, bytes]) => ({ path: shortPath(path), bytes }))
      .sort((a, b) => b.bytes - a.bytes),
  }
}

/** A metafile input as a reader knows it: `node_modules/<package>/...`, or relative to the checkout. */
function shortPath(path: string): string {
  const at = path.lastIndexOf('node_modules/')
  return at >= 0 ? path.slice(at) : path.replace(/^(\.\.\/)+/, '')
}

const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const at = process.argv.indexOf('--out')
  const outdir = at > 0 ? resolve(process.argv[at + 1]!) : DEFAULT_OUT
  const report = await bundleReport(await buildWeb({ outdir }))
  const { firstLoad } = report
  process.stdout.write(
    `web app built into ${relative(process.cwd(), outdir) || '.'}: first load ${kb(firstLoad.gzip)} gzip, ` +
      `${kb(firstLoad.brotli)} brotli (${kb(firstLoad.bytes)} as they are; budget ${kb(FIRST_LOAD_BUDGET_BYTES)} gzip); ` +
      `${kb(report.lazy.gzip)} gzip loaded later (${report.lazy.files.length} chunk(s))\n`,
  )
  if (process.argv.includes('--inputs'))
    for (const input of report.inputs.slice(0, 20))
      process.stdout.write(`${kb(input.bytes).padStart(10)}  ${input.path}\n`)
}

import { readFileSync, readdirSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

/**
 * The layer rules of README "Architecture", read from the import graph of the source files: a rule
 * broken by a new import fails here with the file and the import that breaks it.
 */

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const SOURCE_FOLDERS = [
  'bin',
  'broker',
  'services',
  'devices',
  'schemas',
  'firmware-config',
  'bench',
  'scripts',
  'web/src',
]

function sourceFiles(folder: string): string[] {
  return readdirSync(join(root, folder), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && /\.(ts|tsx|js)$/.test(e.name))
    .map((e) => relative(root, join(e.parentPath, e.name)))
}

// static imports and re-exports (`import … from`, `export … from`, `import '…'`) and dynamic import('…')
const IMPORT = /(?:\bfrom\s*|\bimport\s*\(?\s*)['"](\.{1,2}\/[^'"]+)['"]/g

/** Each source file with the project files it imports (paths relative to the repository). */
const graph = new Map<string, string[]>(
  SOURCE_FOLDERS.flatMap(sourceFiles).map((file) => {
    const text = readFileSync(join(root, file), 'utf8')
    const imports = [...text.matchAll(IMPORT)].map((m) => relative(root, resolve(root, dirname(file), m[1]!)))
    return [file, imports]
  }),
)

const under = (folder: string) => (path: string) => path.startsWith(`${folder}/`)

/** Every import from a file under `from` of a project file for which `forbidden` holds. */
function violations(from: string, forbidden: (target: string) => boolean): string[] {
  return [...graph]
    .filter(([file]) => under(from)(file))
    .flatMap(([file, imports]) => imports.filter(forbidden).map((target) => `${file} imports ${target}`))
}

t.test('the import graph is read (the rules below would otherwise pass on nothing)', async (t) => {
  t.ok(graph.size > 100, `${graph.size} source files`)
  t.ok(graph.get('services/hub.ts')?.includes('broker/broker.ts'), 'services/hub.ts imports broker/broker.ts')
})

t.test('broker/ imports neither services/ nor devices/', async (t) => {
  t.same(
    violations('broker', (target) => under('services')(target) || under('devices')(target)),
    [],
  )
})

t.test('devices/ imports only schemas/ and devices/', async (t) => {
  t.same(
    violations('devices', (target) => !under('schemas')(target) && !under('devices')(target)),
    [],
  )
})

t.test('web/ (the browser app) imports only schemas/, devices/hub-client/ and web/', async (t) => {
  t.ok(graph.get('web/src/connection.ts')?.includes('devices/hub-client/index.ts'), 'the app is read')
  t.same(
    violations(
      'web',
      (target) => !under('schemas')(target) && !under('devices/hub-client')(target) && !under('web')(target),
    ),
    [],
  )
})

t.test('schemas/ imports nothing of the project outside schemas/', async (t) => {
  t.same(
    violations('schemas', (target) => !under('schemas')(target)),
    [],
  )
})

/** The service folder (services/<name>) a file belongs to; files directly in services/ belong to none. */
const serviceFolder = (path: string): string | undefined => /^services\/([^/]+)\//.exec(path)?.[1]

t.test('no import cycle between service folders', async (t) => {
  const edges = new Map<string, Set<string>>()
  for (const [file, imports] of graph) {
    const from = serviceFolder(file)
    if (from === undefined) continue
    for (const target of imports) {
      const to = serviceFolder(target)
      if (to !== undefined && to !== from) edges.set(from, (edges.get(from) ?? new Set()).add(to))
    }
  }
  t.ok(edges.size > 0, 'service folders import each other')
  // depth-first search: a folder reached again while still on the path closes a cycle
  const cycles: string[] = []
  const done = new Set<string>()
  const visit = (folder: string, path: string[]): void => {
    if (path.includes(folder)) {
      cycles.push([...path.slice(path.indexOf(folder)), folder].join(' → '))
      return
    }
    if (done.has(folder)) return
    for (const next of edges.get(folder) ?? []) visit(next, [...path, folder])
    done.add(folder)
  }
  for (const folder of edges.keys()) visit(folder, [])
  t.same(cycles, [], 'every cycle as services/<a> → services/<b> → … → services/<a>')
})

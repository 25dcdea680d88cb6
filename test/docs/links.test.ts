import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import t from 'tap'

const ROOT = new URL('../../', import.meta.url).pathname

/** README.md, docs/ and the device READMEs: the documents a reader of the repository follows links in. */
const documents = [
  'README.md',
  'devices/ovbox/README.md',
  'devices/router/README.md',
  ...readdirSync(join(ROOT, 'docs'), { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.md'))
    .map((file) => `docs/${file}`),
]

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
const slug = (heading: string): string =>
  heading
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-')

function anchors(markdown: string): Set<string> {
  const found = new Set<string>()
  for (const m of markdown.matchAll(/^#+ (.+)$/gm)) found.add(slug(m[1]!))
  for (const m of markdown.matchAll(/<a id="([^"]+)"><\/a>/g)) found.add(m[1]!)
  return found
}

t.test(
  'every relative link in README.md and docs/ leads to a file in the repository and an anchor in it',
  async (t) => {
    for (const document of documents) {
      const markdown = readFileSync(join(ROOT, document), 'utf8').replace(/^```[\s\S]*?^```$/gm, '')
      for (const [, target] of markdown.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target!)) continue
        const [path, anchor] = target!.split('#') as [string, string | undefined]
        const file = path === '' ? join(ROOT, document) : join(ROOT, dirname(document), path)
        t.ok(
          existsSync(file) && relative(ROOT, file).split('/')[0] !== '..',
          `${document}: ${target} is a file of the repository`,
        )
        if (anchor && file.endsWith('.md') && existsSync(file))
          t.ok(
            anchors(readFileSync(file, 'utf8')).has(anchor),
            `${document}: #${anchor} is a heading of ${path || document}`,
          )
      }
    }
  },
)

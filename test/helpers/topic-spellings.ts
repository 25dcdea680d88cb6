import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import ts from 'typescript'
import { topicCatalogue } from '../../schemas/topics.ts'

/** A place in the source that spells a topic itself instead of asking the catalogue. */
export interface TopicSpelling {
  /** Relative to the scanned root, with `/`. */
  file: string
  line: number
  text: string
}

/** The first level of every catalogue topic: a literal that starts with one of them and a `/` spells a topic. */
const ROOTS = [
  ...new Set(
    topicCatalogue.flatMap((topic) => {
      const first = topic.levels[0]
      return first && 'literal' in first ? [first.literal] : []
    }),
  ),
]
const escaped = ROOTS.map((root) => root.replace(/[$]/g, '\\$')).join('|')
const STRING_SPELLING = new RegExp(`^(${escaped})/`)
/** In a regular expression a topic's `/` is escaped, and its first level may sit in a group. */
const REGEX_SPELLING = new RegExp(`(${escaped})\\)?\\\\/`)

/**
 * Every string literal, template literal head and regular expression under `dirs` (relative to
 * `root`) that spells a topic: the places that know a topic's shape besides the catalogue.
 */
export function findTopicSpellings(root: string, dirs: readonly string[]): TopicSpelling[] {
  const found: TopicSpelling[] = []
  const visit = (path: string): void => {
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      const full = join(path, entry.name)
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules') visit(full)
      } else if (entry.name.endsWith('.ts')) {
        found.push(...scanFile(root, full))
      }
    }
  }
  for (const dir of dirs) visit(join(root, dir))
  return found
}

function scanFile(root: string, path: string): TopicSpelling[] {
  const source = ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.Latest, true)
  const found: TopicSpelling[] = []
  const note = (node: ts.Node, text: string): void => {
    found.push({
      file: relative(root, path).split('\\').join('/'),
      line: source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1,
      text,
    })
  }
  const walk = (node: ts.Node): void => {
    if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node) || ts.isTemplateHead(node)) {
      if (STRING_SPELLING.test(node.text)) note(node, node.text)
    } else if (ts.isRegularExpressionLiteral(node)) {
      if (REGEX_SPELLING.test(node.text)) note(node, node.text)
    }
    ts.forEachChild(node, walk)
  }
  walk(source)
  return found
}

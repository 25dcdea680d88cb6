// The installed commands run their TypeScript entry in this one process with tsx's loader registered:
// they need only Node (no tsx on the PATH, no child process that a signal would miss), and tsx is
// resolved from this package whatever the working directory is.
import { register } from 'tsx/esm/api'

/** Imports `entry`, a path relative to this folder.
 * @param {string} entry
 */
export function runTypeScript(entry) {
  // engines says >=22, but npm only warns; on Node 20 the native store (better-sqlite3 13) would
  // crash with a segmentation fault instead of saying what is wrong
  const major = Number(process.versions.node.split('.')[0])
  if (major < 22) {
    // eslint-disable-next-line no-console -- the one line a person needs, before any logger exists
    console.error(
      `stagehub needs Node.js 22 or newer (24 LTS recommended); this is Node.js ${process.versions.node}. ` +
        'README.md says how to get Node 24 from the npm registry alone.',
    )
    process.exit(1)
  }
  register()
  return import(new URL(entry, import.meta.url).href)
}

// The installed commands run their TypeScript entry in this one process with tsx's loader registered:
// they need only Node (no tsx on the PATH, no child process that a signal would miss), and tsx is
// resolved from this package whatever the working directory is.
import { register } from 'tsx/esm/api'

/** Imports `entry`, a path relative to this folder.
 * @param {string} entry
 */
export function runTypeScript(entry) {
  register()
  return import(new URL(entry, import.meta.url).href)
}

import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { promisify } from 'node:util'
import t from 'tap'

// The machines this is developed on keep Node 20 at /usr/bin/node beside the Node 24 the tests run on
const OLD_NODE = '/usr/bin/node'
const STAGEHUB = new URL('../../bin/stagehub.js', import.meta.url).pathname

async function oldNodeVersion(): Promise<string | undefined> {
  if (!existsSync(OLD_NODE)) return undefined
  const { stdout } = await promisify(execFile)(OLD_NODE, ['--version'])
  const version = stdout.trim().replace(/^v/, '')
  return Number(version.split('.')[0]) < 22 ? version : undefined
}

const version = await oldNodeVersion()

t.test(
  'on a Node.js older than 22 the commands say which Node they need and exit 1',
  { skip: version ? false : `no Node.js older than 22 at ${OLD_NODE}` },
  async (t) => {
    const result = await promisify(execFile)(OLD_NODE, [STAGEHUB, '--help']).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => err,
    )
    t.equal(result.code, 1, 'exit code 1 (before: a segmentation fault in the store, or a stack trace)')
    t.match(result.stderr, `needs Node.js 22 or newer (24 LTS recommended); this is Node.js ${version}`)
  },
)

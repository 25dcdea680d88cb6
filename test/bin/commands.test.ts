import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t from 'tap'
import { createTokenService } from '../../broker/tokens.ts'
import { TEST_SECRET } from '../helpers/hub.ts'

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('../../', import.meta.url))

interface Outcome {
  code: number
  stdout: string
  stderr: string
}

t.test(
  "package.json's commands, linked onto a PATH that holds only node (as npm install -g / npm link do), run from an unrelated directory",
  async (t) => {
    const home = mkdtempSync(join(tmpdir(), 'stagehub-commands-'))
    t.teardown(() => rmSync(home, { recursive: true, force: true }))
    const binDir = join(home, 'bin')
    const nodeDir = join(home, 'node-only')
    const elsewhere = join(home, 'elsewhere')
    for (const dir of [binDir, nodeDir, elsewhere]) mkdirSync(dir)
    symlinkSync(process.execPath, join(nodeDir, 'node'))
    const { bin } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      bin: Record<string, string>
    }
    t.same(Object.keys(bin).sort(), ['stagehub', 'stagehub-ovbox', 'stagehub-router', 'stagehub-sim'])
    for (const [name, target] of Object.entries(bin)) symlinkSync(join(ROOT, target), join(binDir, name))

    const command = (name: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Outcome> =>
      run(join(binDir, name), args, {
        cwd: elsewhere,
        env: { PATH: `${binDir}:${nodeDir}`, HOME: home, ...env },
      }).then(
        ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
        (err: Outcome) => err,
      )

    const token = await command('stagehub', ['token', '--role', 'admin', '--sub', 'ops'], {
      JWT_SECRET: TEST_SECRET,
    })
    t.equal(token.code, 0, token.stderr)
    t.match(createTokenService({ algorithm: 'HS256', secret: TEST_SECRET }).verify(token.stdout.trim()), {
      role: 'admin',
      id: 'ops',
    })

    const ovbox = await command('stagehub-ovbox', ['--config', 'missing.json'])
    t.equal(ovbox.code, 2)
    t.match(ovbox.stderr, /stagehub-ovbox: cannot read the configuration missing\.json/)

    const router = await command('stagehub-router', ['--help'])
    t.equal(router.code, 0, router.stderr)
    t.match(router.stdout, /usage: router-agent/)

    const sim = await command('stagehub-sim', [])
    t.equal(sim.code, 2)
    t.match(sim.stderr, /usage: simulator --hub/)
  },
)

import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { promisify } from 'node:util'
import t from 'tap'
import { TEST_SECRET } from '../helpers/hub.ts'

const run = promisify(execFile)
const ROOT = new URL('../../', import.meta.url).pathname
const TOUR = join(ROOT, 'docs/tour.md')

/** The tour's shell blocks in order, each with the output block that follows it (if any). */
function tourSteps(markdown: string): Array<{ script: string; expected: string | undefined }> {
  const blocks = [...markdown.matchAll(/^```(\w*)\n([\s\S]*?)^```\n(?:\s*\n)?/gm)].map((m) => ({
    lang: m[1]!,
    body: m[2]!,
    end: m.index + m[0].length,
    start: m.index,
  }))
  const steps: Array<{ script: string; expected: string | undefined }> = []
  blocks.forEach((block, i) => {
    if (block.lang !== 'sh') return
    const next = blocks[i + 1]
    const output = next && next.lang === 'text' && next.start === block.end ? next.body : undefined
    steps.push({ script: block.body, expected: output })
  })
  return steps
}

/** What differs between two runs of the tour: ids, tokens and times. */
const masked = (text: string): string =>
  text
    .replace(/eyJ[\w-]+\.[\w-]+\.[\w-]+/g, '<token>')
    .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/g, '<time>')
    .replace(/(?<=["/])[A-Za-z0-9_-]{16}(?=["/ ]|$)/gm, '<id>')

const available = await Promise.all(
  ['mosquitto_rr', 'jq'].map((tool) =>
    run('sh', ['-c', `command -v ${tool}`]).then(
      () => true,
      () => false,
    ),
  ),
).then((found) => found.every(Boolean))

t.test(
  "every command of docs/tour.md and of README.md's tour runs against `npm start` and prints the answers shown",
  { skip: available ? false : 'needs mosquitto-clients and jq (apt-get install mosquitto-clients jq)' },
  async (t) => {
    const steps = tourSteps(readFileSync(TOUR, 'utf8'))
    const [start, ...rest] = steps
    t.equal(start?.script.trim(), 'npm start', 'the tour starts the hub with npm start')

    const dataDir = mkdtempSync(join(tmpdir(), 'stagehub-tour-'))
    const env = {
      ...process.env,
      JWT_SECRET: TEST_SECRET,
      DATA_DIR: dataDir,
      MQTT_PORT: '0',
      HTTP_PORT: '0',
      HOST: '127.0.0.1',
      PASSWORD_HASH_COST: '10',
      LOG_LEVEL: 'info',
    }
    // its own process group, so that the teardown ends npm and the hub it started together
    const hub = spawn('sh', ['-c', start!.script], {
      cwd: ROOT,
      env,
      detached: true,
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    t.teardown(() => {
      if (hub.exitCode === null) process.kill(-hub.pid!, 'SIGTERM')
      rmSync(dataDir, { recursive: true, force: true })
    })
    const port = await new Promise<number>((resolve, reject) => {
      createInterface({ input: hub.stdout }).on('line', (line) => {
        if (!line.startsWith('{')) return
        const entry = JSON.parse(line) as { msg: string; ports?: { mqtt: number } }
        if (entry.msg === 'stagehub is listening' && entry.ports) resolve(entry.ports.mqtt)
      })
      hub.once('exit', () => reject(new Error('npm start exited before listening')))
    })

    // the tour's commands as written; only the hub's address is added to the mosquitto tools
    const address = ['mosquitto_rr', 'mosquitto_sub', 'mosquitto_pub']
      .map((tool) => `${tool}() { command ${tool} -h 127.0.0.1 -p ${port} "$@"; }`)
      .join('\n')
    const marker = (i: number) => `@@step ${i}@@`
    const script = [
      'set -eo pipefail',
      address,
      ...rest.map((step, i) => `echo '${marker(i)}'\n${step.script}`),
      `echo '${marker(rest.length)}'`,
    ].join('\n')
    const { stdout } = await run('bash', ['-c', script], { cwd: ROOT, env, timeout: 90_000 }).catch(
      (err: { stdout: string; stderr: string; message: string }) => {
        throw new Error(`the tour failed: ${err.message}\n${err.stdout}\n${err.stderr}`)
      },
    )
    rest.forEach((step, i) => {
      const printed = stdout.split(marker(i) + '\n')[1]!.split(marker(i + 1))[0]!
      const first = step.script.split('\n')[0]
      if (step.expected === undefined) t.equal(printed, '', `${first} prints nothing`)
      else t.equal(masked(printed), masked(step.expected), `${first} prints what the tour shows`)
    })

    // README's short version of the tour, with the same hub
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
    const short = /^## Five-minute tour\n[\s\S]*?^```sh\n([\s\S]*?)^```/m.exec(readme)?.[1]
    t.ok(short, "README's tour section has a shell block")
    const answer = await run('bash', ['-c', ['set -eo pipefail', address, short].join('\n')], {
      cwd: ROOT,
      env,
    })
    t.match(
      JSON.parse(answer.stdout),
      { id: '1', ok: true, result: { name: 'Anna' } },
      "README's tour block prints the response to its user.update",
    )
  },
)

import { builtinModules } from 'node:module'
import { build, type Plugin } from 'esbuild'
import { launchChromium, withoutChromium } from '../../helpers/chromium.ts'
import t from 'tap'
import { startTestHub } from '../../helpers/hub.ts'

const ENTRY = new URL('../../../devices/hub-client/index.ts', import.meta.url).pathname

/** Fails the build on any Node built-in, whether imported as `node:x` or `x`. */
const noNodeBuiltins: Plugin = {
  name: 'no-node-builtins',
  setup(b) {
    const names = new Set(builtinModules)
    b.onResolve({ filter: /.*/ }, (args) =>
      args.path.startsWith('node:') || names.has(args.path.split('/')[0]!)
        ? { errors: [{ text: `Node built-in ${args.path} imported by ${args.importer}` }] }
        : undefined,
    )
  },
}

async function bundle(entry = ENTRY) {
  return build({
    entryPoints: [entry],
    bundle: true,
    platform: 'browser',
    format: 'iife',
    globalName: 'StagehubHubClient',
    write: false,
    metafile: true,
    logLevel: 'silent',
    plugins: [noNodeBuiltins],
  })
}

t.test('the hub client bundles for the browser without Node built-ins or hub internals', async (t) => {
  const result = await bundle()
  const inputs = Object.keys(result.metafile.inputs)
  t.ok(
    inputs.some((file) => file.includes('node_modules/mqtt/dist/')),
    "MQTT.js's browser build",
  )
  t.same(
    inputs.filter((file) => /^(broker|services|bin)\//.test(file)),
    [],
    'nothing of the broker or the services',
  )
  t.same(
    inputs.filter(
      (file) => !/^(devices\/hub-client|schemas)\//.test(file) && !file.includes('node_modules/'),
    ),
    [],
    'only the hub client, schemas and packages',
  )
  const nodeOnly = new URL('../../../devices/router/sessions.ts', import.meta.url).pathname
  await t.rejects(bundle(nodeOnly), /Node built-in node:fs/, 'the check does catch a Node built-in')
})

t.test(
  'in Chromium over MQTT-over-WebSocket: a user connects, creates a stage and the cache gets its state',
  { skip: withoutChromium },
  async (t) => {
    const th = await startTestHub(t)
    const user = await th.hub.users.createUser({ name: 'Ann' })
    const code = (await bundle()).outputFiles[0]!.text
    const browser = await launchChromium(t)
    const page = await browser.newPage()
    const errors: string[] = []
    page.on('pageerror', (err) => errors.push(err.message))
    await page.addScriptTag({ content: code })
    const seen = await page.evaluate(
      async ({ url, clientId, token, userId }) => {
        type Change = { topic: string; value: unknown }
        interface BrowserHubClient {
          start(): void
          untilOnline(): Promise<void>
          watch(filter: string, listener: (change: Change) => void): () => void
          request(action: string, params: unknown): Promise<{ id: string; name: string }>
          stop(): Promise<void>
          state: { get(topic: string): unknown }
        }
        const lib = (
          globalThis as unknown as { StagehubHubClient: { HubClient: new (o: object) => BrowserHubClient } }
        ).StagehubHubClient
        const hub = new lib.HubClient({ url, clientId, token })
        hub.start()
        await hub.untilOnline()
        const changes: Change[] = []
        hub.watch(`users/${userId}/stages/+`, (change) => changes.push(change))
        const stage = await hub.request('stage.create', { name: 'Browser stage' })
        const topic = `users/${userId}/stages/${stage.id}`
        const deadline = Date.now() + 5000
        while (hub.state.get(topic) === undefined && Date.now() < deadline)
          await new Promise((resolve) => setTimeout(resolve, 20))
        await hub.stop()
        return {
          stage,
          topic,
          cached: hub.state.get(topic),
          changes,
          agent: (globalThis as unknown as { navigator: { userAgent: string } }).navigator.userAgent,
        }
      },
      {
        url: th.wsUrl,
        clientId: `${user.id}-browser`,
        token: th.token({ sub: user.id, name: 'Ann' }),
        userId: user.id,
      },
    )
    t.match(seen.agent, /Chrome/, 'ran in Chromium')
    t.equal(seen.stage.name, 'Browser stage', 'stage.create answered')
    t.match(
      seen.cached,
      { id: seen.stage.id, name: 'Browser stage', isAdmin: true },
      'the retained summary is in the cache',
    )
    t.match(
      seen.changes,
      [{ topic: seen.topic, value: { name: 'Browser stage' } }],
      'and came as a change event',
    )
    t.same(errors, [], 'no page errors')
  },
)

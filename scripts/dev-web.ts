/**
 * `npm run dev`: the hub (configured from the environment like `npm start`) and the web app rebuilt on
 * every change, served by esbuild on DEV_PORT (default 8000) with live reload (its `/esbuild` change
 * events). The page calls the hub at its own HTTP port, allowed through CORS_ORIGINS.
 */
import { context, type Plugin } from 'esbuild'
import { configFromEnv, ensureJwtSecretFile } from '../services/config.ts'
import { startHub } from '../services/hub.ts'
import { DEFAULT_OUT, webBuildOptions, writeIndex } from './build-web.ts'

const devPort = Number(process.env.DEV_PORT ?? 8000)
const devOrigin = `http://localhost:${devPort}`
ensureJwtSecretFile()
const config = configFromEnv({
  ...process.env,
  CORS_ORIGINS: [process.env.CORS_ORIGINS, devOrigin].filter(Boolean).join(','),
})
const hub = await startHub(config)
const hubOrigin = `http://localhost:${hub.ports.http}`

const index: Plugin = {
  name: 'index-html',
  setup(b) {
    b.onEnd(async (result) => {
      if (result.metafile) await writeIndex(DEFAULT_OUT, result.metafile)
    })
  },
}
const ctx = await context({
  ...webBuildOptions({ hubOrigin, liveReload: true, minify: false }),
  plugins: [index],
})
await ctx.watch()
await ctx.serve({ servedir: DEFAULT_OUT, port: devPort })
hub.log.info(`web app with live reload at ${devOrigin} (hub at ${hubOrigin})`)

const stop = async () => {
  await ctx.dispose()
  await hub.close()
  process.exit(0)
}
process.once('SIGINT', () => void stop())
process.once('SIGTERM', () => void stop())

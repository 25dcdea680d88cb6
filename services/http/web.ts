import { readFile } from 'node:fs/promises'
import { extname, join } from 'node:path'
import type { FastifyInstance, FastifyReply } from 'fastify'
import { HubError } from '../errors.ts'

/**
 * The page may load its own scripts, styles and images and talk to this hub (HTTP and MQTT over
 * WebSocket, which `'self'` covers); nothing inline, no plugins, no framing by other sites. Workers only
 * from `blob:`: MQTT.js runs its keepalive timers in a worker it makes from a blob, since browsers slow
 * a background tab's own timers down to once a minute, which would miss the keepalive; a blob can only
 * be made by script the policy already let run.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: https:",
  "connect-src 'self'",
  'worker-src blob:',
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ')

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
}

/** Names esbuild gives hashed assets (`main-ABCD1234.js`, `.js.map`): no path separators, no `..`. */
const ASSET = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9]+)+$/

function secured(reply: FastifyReply): FastifyReply {
  return reply
    .header('content-security-policy', CONTENT_SECURITY_POLICY)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
}

/**
 * The web app built by `npm run build:web` into `dir`: `index.html` at `/`, never cached without
 * asking again (it names the current assets), and `/assets/<name>-<hash>.<ext>`, immutable for a year
 * (a new build has new names). Files are read per request, so a rebuild is served at once.
 */
export function webApp(http: FastifyInstance, deps: { dir: string }): void {
  http.get('/', async (_request, reply) => {
    let html: Buffer
    try {
      html = await readFile(join(deps.dir, 'index.html'))
    } catch {
      throw new HubError(
        'not_found',
        `the web app is not built (no ${join(deps.dir, 'index.html')}): run npm run build:web`,
      )
    }
    return secured(reply).header('cache-control', 'no-cache').type('text/html; charset=utf-8').send(html)
  })
  http.get<{ Params: { name: string } }>('/assets/:name', async (request, reply) => {
    const { name } = request.params
    const type = TYPES[extname(name)]
    let body: Buffer | undefined
    if (ASSET.test(name) && type) body = await readFile(join(deps.dir, 'assets', name)).catch(() => undefined)
    if (!body) throw new HubError('not_found', `no asset ${name}: reload the page for the current ones`)
    return secured(reply)
      .header('cache-control', 'public, max-age=31536000, immutable')
      .type(type!)
      .send(body)
  })
}

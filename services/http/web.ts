import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { extname, join } from 'node:path'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
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

/** The types worth compressing: the build writes `.br`/`.gz` forms of these (scripts/build-web.ts). */
const COMPRESSIBLE = new Set([TYPES['.js'], TYPES['.css'], TYPES['.svg']])

/** Names esbuild gives hashed assets (`main-ABCD1234.js`, `.js.map`): no path separators, no `..`. */
const ASSET = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9]+)+$/

function secured(reply: FastifyReply): FastifyReply {
  return reply
    .header('content-security-policy', CONTENT_SECURITY_POLICY)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
}

/** The compressed forms `npm run build:web` writes beside an asset, in the order the hub prefers them. */
const ENCODINGS = [
  { name: 'br', suffix: '.br' },
  { name: 'gzip', suffix: '.gz' },
] as const
type Encoding = (typeof ENCODINGS)[number]

/**
 * The encodings `Accept-Encoding` allows, best first: those named with a q above 0, or covered by `*`
 * (`identity` is always acceptable here: every asset also exists as it is).
 */
export function acceptedEncodings(header: string | undefined): Encoding[] {
  const q = new Map<string, number>()
  for (const part of (header ?? '').split(',')) {
    const [name, ...params] = part.trim().toLowerCase().split(';')
    if (!name) continue
    const weight = params.map((p) => /^\s*q=([0-9.]+)\s*$/.exec(p)).find(Boolean)
    q.set(name, weight ? Number(weight[1]) : 1)
  }
  const wildcard = q.get('*') ?? 0
  return ENCODINGS.filter((e) => (q.get(e.name) ?? wildcard) > 0)
}

/** Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 asks for GET) or is `*`. */
export function notModified(ifNoneMatch: string | undefined, etag: string): boolean {
  if (!ifNoneMatch) return false
  if (ifNoneMatch.trim() === '*') return true
  const strip = (tag: string) => tag.trim().replace(/^W\//, '')
  return ifNoneMatch.split(',').some((tag) => strip(tag) === strip(etag))
}

/**
 * Answers with `body` (or 304 when the browser already has this version), its ETag naming both the
 * version and the encoding (a compressed form is another representation of the same file).
 */
function sendVersion(
  request: FastifyRequest,
  reply: FastifyReply,
  file: { body: Buffer; version: string; encoding?: Encoding; type: string; cacheControl: string },
): FastifyReply {
  const etag = `"${file.version}${file.encoding ? `-${file.encoding.name}` : ''}"`
  secured(reply).header('cache-control', file.cacheControl).header('etag', etag)
  if (COMPRESSIBLE.has(file.type)) reply.header('vary', 'Accept-Encoding')
  if (notModified(request.headers['if-none-match'], etag)) return reply.code(304).send()
  if (file.encoding) reply.header('content-encoding', file.encoding.name)
  return reply.type(file.type).send(file.body)
}

/**
 * The web app built by `npm run build:web` into `dir`: `index.html` at `/`, never used from a cache
 * without asking again (it names the current assets; the ETag makes asking cheap: 304), and
 * `/assets/<name>-<hash>.<ext>`, immutable for a year (a new build has new names), sent as the brotli
 * or gzip form the build wrote beside it when the browser accepts one (`Vary: Accept-Encoding`), else
 * as it is. Files are read per request, so a rebuild is served at once.
 */
export function webApp(http: FastifyInstance, deps: { dir: string }): void {
  http.get('/', async (request, reply) => {
    let html: Buffer
    try {
      html = await readFile(join(deps.dir, 'index.html'))
    } catch {
      throw new HubError(
        'not_found',
        `the web app is not built (no ${join(deps.dir, 'index.html')}): run npm run build:web`,
      )
    }
    return sendVersion(request, reply, {
      body: html,
      version: createHash('sha256').update(html).digest('base64url').slice(0, 22),
      type: 'text/html; charset=utf-8',
      cacheControl: 'no-cache',
    })
  })
  http.get<{ Params: { name: string } }>('/assets/:name', async (request, reply) => {
    const { name } = request.params
    const type = TYPES[extname(name)]
    if (!ASSET.test(name) || !type) throw missing(name)
    const path = join(deps.dir, 'assets', name)
    const accepted = COMPRESSIBLE.has(type) ? acceptedEncodings(request.headers['accept-encoding']) : []
    for (const encoding of [...accepted, undefined]) {
      const body = await readFile(path + (encoding?.suffix ?? '')).catch(() => undefined)
      if (body)
        return sendVersion(request, reply, {
          body,
          // the name carries the hash of the content
          version: name,
          encoding,
          type,
          cacheControl: 'public, max-age=31536000, immutable',
        })
    }
    throw missing(name)
  })
}

function missing(name: string): HubError {
  return new HubError('not_found', `no asset ${name}: reload the page for the current ones`)
}

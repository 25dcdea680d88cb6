import type { FastifyInstance } from 'fastify'

const ALLOWED_METHODS = 'GET, POST'
const ALLOWED_HEADERS = 'authorization, content-type'
/** How long a browser may reuse a preflight answer (seconds). */
const PREFLIGHT_MAX_AGE = '600'

/**
 * CORS for the origins in CORS_ORIGINS, exact matches only: a page from one of them may call the
 * HTTP API (sign-up, log-in, token explanations); any other origin gets no CORS headers, so browsers
 * keep its pages from reading the answers, and its preflights are refused with a reason. No
 * credentials mode: the API takes bearer tokens, never cookies.
 */
export function corsHeaders(http: FastifyInstance, origins: readonly string[]): void {
  const allowed = new Set(origins)
  http.addHook('onRequest', async (request, reply) => {
    const origin = request.headers.origin
    if (origin === undefined) return
    reply.header('vary', 'Origin')
    const preflight =
      request.method === 'OPTIONS' && request.headers['access-control-request-method'] !== undefined
    if (!allowed.has(origin)) {
      if (!preflight) return
      return reply.code(403).send({
        error: {
          code: 'forbidden',
          message: `origin ${origin} may not call this API from a browser: the operator lists allowed origins in CORS_ORIGINS`,
        },
      })
    }
    reply.header('access-control-allow-origin', origin)
    if (!preflight) return
    return reply
      .code(204)
      .header('access-control-allow-methods', ALLOWED_METHODS)
      .header('access-control-allow-headers', ALLOWED_HEADERS)
      .header('access-control-max-age', PREFLIGHT_MAX_AGE)
      .send()
  })
}

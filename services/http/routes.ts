import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyError, FastifyInstance } from 'fastify'
import type { HubMetrics } from '../../broker/metrics.ts'
import { ExplainBody, ExplainReply } from '../../schemas/http.ts'
import { ajv } from '../../schemas/validate.ts'
import { HubError } from '../errors.ts'

const HTTP_STATUS: Record<string, number> = {
  invalid_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  too_large: 413,
  rate_limited: 429,
  unavailable: 503,
  internal: 500,
}

/**
 * HTTP bodies are validated by the hub's one ajv (schemas/validate.ts), as MQTT requests are: the
 * same keywords (the text rule normalises names in place), no coercion, unknown fields refused.
 */
export function schemaValidation(http: FastifyInstance): void {
  http.setValidatorCompiler(({ schema }) => ajv.compile(schema))
}

/**
 * Errors over HTTP use the same codes as MQTT responses: `{"error":{"code","message"}}`, counted in
 * `/metrics` by route and code.
 */
export function errorReplies(http: FastifyInstance, metrics: HubMetrics): void {
  http.setErrorHandler((err: FastifyError | HubError, request, reply) => {
    const send = (status: number, code: string, message: string) => {
      metrics.httpRefusals.inc({ route: request.routeOptions.url ?? 'none', code })
      return reply.code(status).send({ error: { code, message } })
    }
    if (err instanceof HubError) {
      if (err.retryAfterSeconds !== undefined) reply.header('retry-after', String(err.retryAfterSeconds))
      return send(HTTP_STATUS[err.code] ?? 500, err.code, err.message)
    }
    if (err.validation) return send(400, 'invalid_request', err.message)
    if (err.statusCode === 413) return send(413, 'too_large', err.message)
    if (err.statusCode && err.statusCode < 500) return send(err.statusCode, 'invalid_request', err.message)
    request.log.error({ err }, 'request failed')
    return send(500, 'internal', 'the hub could not process this request')
  })
  http.setNotFoundHandler((request, reply) =>
    reply
      .code(404)
      .send({ error: { code: 'not_found', message: `no route ${request.method} ${request.url}` } }),
  )
}

/** Liveness and readiness (store reachable, broker listening): docs/protocol/README.md#http. */
export function healthRoutes(http: FastifyInstance, deps: { ready: () => Promise<void> }): void {
  http.get('/healthz', async () => ({ status: 'ok' }))
  http.get('/readyz', async (_request, reply) => {
    try {
      await deps.ready()
      return { status: 'ready' }
    } catch (err) {
      return reply.code(503).send({ status: 'not ready', reason: (err as Error).message })
    }
  })
}

/**
 * Prometheus metrics (SPEC §9), on the public HTTP port or on METRICS_PORT; with METRICS_TOKEN set,
 * only for `Authorization: Bearer <token>`.
 */
export function metricsRoute(
  http: FastifyInstance,
  deps: { metrics: HubMetrics; metricsToken?: string | undefined },
): void {
  const expected = deps.metricsToken === undefined ? undefined : digest(deps.metricsToken)
  http.get('/metrics', async (request, reply) => {
    if (expected && !bearerMatches(request.headers.authorization, expected)) {
      reply.header('www-authenticate', 'Bearer realm="metrics"')
      throw new HubError('unauthorized', 'metrics need the header Authorization: Bearer <METRICS_TOKEN>')
    }
    reply.header('content-type', deps.metrics.registry.contentType)
    return deps.metrics.registry.metrics()
  })
}

const digest = (text: string): Buffer => createHash('sha256').update(text).digest()

/** Compares digests, which have one length, in constant time: the answer's timing tells nothing of the token. */
function bearerMatches(header: string | undefined, expected: Buffer): boolean {
  const match = /^Bearer (.+)$/i.exec(header ?? '')
  return match !== null && timingSafeEqual(digest(match[1]!), expected)
}

/**
 * POST /auth/explain: why a CONNECT with the bearer token and `clientId` would be refused (CONNACK only
 * says "not authorized"). The token comes in the Authorization header, never in a URL, where proxies
 * and logs would keep it.
 */
export function explainRoute(
  http: FastifyInstance,
  explain: (token: string, clientId: string) => ExplainReply,
): void {
  http.post<{ Body: ExplainBody }>(
    '/auth/explain',
    { schema: { body: ExplainBody, response: { 200: ExplainReply } } },
    async (request) => {
      const match = /^Bearer (\S+)$/i.exec(request.headers.authorization ?? '')
      if (!match) {
        throw new HubError(
          'unauthorized',
          'send the token to explain in the header Authorization: Bearer <token>, and {"clientId": "..."} as the body',
        )
      }
      return explain(match[1]!, request.body.clientId)
    },
  )
}

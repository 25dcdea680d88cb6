import t from 'tap'
import { startTestHub } from '../../helpers/hub.ts'

const METRICS_TOKEN = 'scrape-token-0123456789abcdef'

t.test('with METRICS_TOKEN set, /metrics answers only the bearer of that token', async (t) => {
  const th = await startTestHub(t, { METRICS_TOKEN })
  const url = `${th.httpUrl}/metrics`
  for (const authorization of [undefined, 'Bearer wrong-token', `Bearer ${METRICS_TOKEN}x`, METRICS_TOKEN]) {
    const response = await fetch(url, { headers: authorization ? { authorization } : {} })
    t.equal(response.status, 401, String(authorization))
    t.match(response.headers.get('www-authenticate'), /^Bearer/)
    const body = (await response.json()) as { error: { code: string; message: string } }
    t.equal(body.error.code, 'unauthorized')
    t.match(body.error.message, /METRICS_TOKEN/)
    t.notMatch(body.error.message, new RegExp(METRICS_TOKEN), 'the token is never echoed')
  }
  const response = await fetch(url, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })
  t.equal(response.status, 200)
  t.match(await response.text(), /stagehub_connection_refusals_total|# HELP/)
  t.equal((await fetch(`${th.httpUrl}/readyz`)).status, 200, 'health checks need no token')
})

t.test('without METRICS_TOKEN, /metrics stays open (a scraper inside the network)', async (t) => {
  const th = await startTestHub(t)
  t.equal((await fetch(`${th.httpUrl}/metrics`)).status, 200)
})

t.test(
  'with METRICS_PORT set, /metrics is served only there (127.0.0.1 by default), not on the public port',
  async (t) => {
    const th = await startTestHub(t, { METRICS_PORT: '0', METRICS_TOKEN })
    const port = th.hub.ports.metrics
    t.ok(port !== undefined && port > 0 && port !== th.hub.ports.http, `its own port ${port}`)
    t.equal((await fetch(`${th.httpUrl}/metrics`)).status, 404, 'not on the public port')
    const url = `http://127.0.0.1:${port}/metrics`
    t.equal((await fetch(url)).status, 401, 'METRICS_TOKEN applies there too')
    const response = await fetch(url, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })
    t.equal(response.status, 200)
    t.match(await response.text(), /# HELP/)
    t.equal((await fetch(`${th.httpUrl}/readyz`)).status, 200, 'health checks stay on the public port')
  },
)

import t from 'tap'
import { startTestHub } from '../../helpers/hub.ts'

const APP = 'https://app.example.org'

t.test(
  'a configured origin may sign up from a browser: the preflight and the answer carry CORS headers',
  async (t) => {
    const th = await startTestHub(t, { CORS_ORIGINS: `${APP}, http://localhost:5173` })
    const preflight = await fetch(`${th.httpUrl}/auth/signup`, {
      method: 'OPTIONS',
      headers: {
        origin: APP,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type',
      },
    })
    t.equal(preflight.status, 204)
    t.equal(preflight.headers.get('access-control-allow-origin'), APP)
    t.match(preflight.headers.get('access-control-allow-methods'), /POST/)
    t.match(preflight.headers.get('access-control-allow-headers'), /content-type/)
    t.match(preflight.headers.get('access-control-allow-headers'), /authorization/)
    t.equal(preflight.headers.get('access-control-allow-credentials'), null, 'bearer tokens, no cookies')

    const signup = await fetch(`${th.httpUrl}/auth/signup`, {
      method: 'POST',
      headers: { origin: APP, 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'web@example.org', password: 'correct horse battery', name: 'Web' }),
    })
    t.equal(signup.status, 201)
    t.equal(signup.headers.get('access-control-allow-origin'), APP)
    t.match(signup.headers.get('vary'), /Origin/)
  },
)

t.test(
  'another origin gets no CORS headers, and its preflight is refused with the variable to set',
  async (t) => {
    const th = await startTestHub(t, { CORS_ORIGINS: APP })
    for (const origin of [
      'https://evil.example.org',
      'https://app.example.org.evil.net',
      'http://app.example.org',
    ]) {
      const preflight = await fetch(`${th.httpUrl}/auth/login`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST' },
      })
      t.equal(preflight.status, 403, origin)
      t.equal(preflight.headers.get('access-control-allow-origin'), null, origin)
      const body = (await preflight.json()) as { error: { code: string; message: string } }
      t.equal(body.error.code, 'forbidden')
      t.match(body.error.message, /CORS_ORIGINS/)

      const ready = await fetch(`${th.httpUrl}/readyz`, { headers: { origin } })
      t.equal(ready.status, 200, 'the request itself is served: only browsers enforce CORS')
      t.equal(ready.headers.get('access-control-allow-origin'), null, origin)
    }
  },
)

t.test('by default no origin is allowed', async (t) => {
  const th = await startTestHub(t)
  const preflight = await fetch(`${th.httpUrl}/auth/login`, {
    method: 'OPTIONS',
    headers: { origin: APP, 'access-control-request-method': 'POST' },
  })
  t.equal(preflight.status, 403)
  t.equal(preflight.headers.get('access-control-allow-origin'), null)
})

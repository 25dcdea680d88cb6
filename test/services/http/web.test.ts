import { mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { startTestHub } from '../../helpers/hub.ts'
import { builtWebApp } from '../../helpers/web.ts'

t.test(
  'the hub serves the built app: index.html revalidated, hashed assets immutable, a strict CSP',
  async (t) => {
    const dir = await builtWebApp(t)
    const th = await startTestHub(t, { WEB_DIR: dir })

    const page = await fetch(`${th.httpUrl}/`)
    t.equal(page.status, 200)
    t.match(page.headers.get('content-type'), /^text\/html/)
    t.equal(page.headers.get('cache-control'), 'no-cache', 'index.html is asked for again every time')
    const csp = page.headers.get('content-security-policy') ?? ''
    t.match(csp, /default-src 'self'/)
    t.match(csp, /script-src 'self'(;|$)/, 'scripts only from the hub: no inline, no eval')
    t.match(csp, /connect-src 'self'/)
    t.match(csp, /frame-ancestors 'none'/)
    t.match(csp, /worker-src blob:(;|$)/, "MQTT.js's timer worker, and no other")
    t.notMatch(csp, /unsafe-inline|unsafe-eval/)
    t.equal(page.headers.get('x-content-type-options'), 'nosniff')
    const html = await page.text()
    t.equal(html, readFileSync(join(dir, 'index.html'), 'utf8'))
    t.notMatch(html, /<script>|<script type="module">[^<]/, 'no inline script')

    const names = [...html.matchAll(/(?:src|href)="\/assets\/([^"]+)"/g)].map((m) => m[1]!)
    t.same(
      names.map((n) => n.replace(/-[A-Z0-9]{8}\./, '-HASH.')).sort(),
      ['main-HASH.css', 'main-HASH.js'],
      'the page names the hashed script and stylesheet',
    )
    for (const name of names) {
      const asset = await fetch(`${th.httpUrl}/assets/${name}`)
      t.equal(asset.status, 200, name)
      t.equal(
        asset.headers.get('cache-control'),
        'public, max-age=31536000, immutable',
        `${name} is immutable`,
      )
      t.match(asset.headers.get('content-type'), name.endsWith('.js') ? /^text\/javascript/ : /^text\/css/)
      t.equal(await asset.text(), readFileSync(join(dir, 'assets', name), 'utf8'))
    }
    t.ok(
      readdirSync(join(dir, 'assets')).some((n) => n.endsWith('.js.map')),
      'with source maps',
    )

    const missing = await fetch(`${th.httpUrl}/assets/main-00000000.js`)
    t.equal(missing.status, 404, 'an asset of an older build')
    t.match(await missing.json(), { error: { code: 'not_found', message: /reload the page/ } })
    for (const path of ['/assets/..%2Findex.html', '/assets/%2e%2e%2f%2e%2e%2fpackage.json']) {
      t.equal((await fetch(`${th.httpUrl}${path}`)).status, 404, `nothing outside assets/: ${path}`)
    }
    t.equal((await fetch(`${th.httpUrl}/healthz`)).status, 200, 'the API is still there')
  },
)

t.test('without a built app, / answers 404 saying to run npm run build:web', async (t) => {
  const th = await startTestHub(t, { WEB_DIR: mkdtempSync(join(tmpdir(), 'stagehub-noweb-')) })
  const reply = await fetch(`${th.httpUrl}/`)
  t.equal(reply.status, 404)
  t.match(await reply.json(), { error: { code: 'not_found', message: /npm run build:web/ } })
})

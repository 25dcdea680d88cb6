import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { brotliDecompressSync, gunzipSync } from 'node:zlib'
import t from 'tap'
import { acceptedEncodings, notModified } from '../../../services/http/web.ts'
import { launchChromium, withoutChromium } from '../../helpers/chromium.ts'
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

/** A GET over a real socket, with exactly these headers (fetch would add and undo Accept-Encoding). */
function get(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () =>
        resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }),
      )
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('index.html carries an ETag and answers 304 to a browser that has it', async (t) => {
  const dir = await builtWebApp(t)
  const th = await startTestHub(t, { WEB_DIR: dir })

  const first = await get(`${th.httpUrl}/`)
  t.equal(first.status, 200)
  const etag = first.headers.etag!
  t.match(etag, /^"[A-Za-z0-9_-]+"$/, 'a strong ETag')
  t.equal(first.headers['cache-control'], 'no-cache')

  const again = await get(`${th.httpUrl}/`, { 'if-none-match': etag })
  t.equal(again.status, 304, 'the same page: not sent again')
  t.equal(again.body.length, 0)
  t.equal(again.headers.etag, etag)
  t.equal(again.headers['cache-control'], 'no-cache')
  t.equal(
    (await get(`${th.httpUrl}/`, { 'if-none-match': `"other", W/${etag}` })).status,
    304,
    'weak match in a list',
  )

  writeFileSync(
    join(dir, 'index.html'),
    readFileSync(join(dir, 'index.html'), 'utf8') + '\n<!-- rebuilt -->\n',
  )
  const rebuilt = await get(`${th.httpUrl}/`, { 'if-none-match': etag })
  t.equal(rebuilt.status, 200, 'a rebuilt page is sent whatever the browser had')
  t.not(rebuilt.headers.etag, etag, 'with a new ETag')
  t.match(rebuilt.body.toString(), /rebuilt/)
})

t.test(
  'hashed assets are sent as the brotli or gzip form written at build time, by Accept-Encoding',
  async (t) => {
    const dir = await builtWebApp(t)
    const th = await startTestHub(t, { WEB_DIR: dir })
    const names = readdirSync(join(dir, 'assets')).filter((n) => /\.(js|css)$/.test(n))
    t.ok(
      names.some((n) => /^main-.*\.js$/.test(n)) && names.some((n) => /^main-.*\.css$/.test(n)),
      'the entry script and stylesheet (and the chunks loaded on demand)',
    )
    for (const name of names) {
      const url = `${th.httpUrl}/assets/${name}`
      const plain = readFileSync(join(dir, 'assets', name))
      t.ok(readFileSync(join(dir, 'assets', `${name}.br`)).length < plain.length, `${name}.br is smaller`)

      const br = await get(url, { 'accept-encoding': 'gzip, deflate, br, zstd' })
      t.equal(br.headers['content-encoding'], 'br', `${name}: brotli preferred when offered`)
      t.equal(br.headers.vary, 'Accept-Encoding')
      t.equal(br.headers['cache-control'], 'public, max-age=31536000, immutable')
      t.match(br.headers['content-security-policy'], /script-src 'self'/, 'the CSP on every answer')
      t.same(brotliDecompressSync(br.body), plain, 'the same bytes once decoded')
      t.ok(br.body.length < plain.length)

      const gz = await get(url, { 'accept-encoding': 'gzip;q=1.0, br;q=0' })
      t.equal(gz.headers['content-encoding'], 'gzip', `${name}: gzip when brotli is refused (q=0)`)
      t.same(gunzipSync(gz.body), plain)
      t.equal(gz.headers.vary, 'Accept-Encoding')

      for (const accept of [undefined, 'identity', 'deflate']) {
        const raw = await get(url, accept ? { 'accept-encoding': accept } : {})
        t.equal(raw.headers['content-encoding'], undefined, `${name}, Accept-Encoding ${accept}: as it is`)
        t.equal(raw.headers.vary, 'Accept-Encoding', 'caches keep the forms apart')
        t.same(raw.body, plain)
      }

      t.not(br.headers.etag, gz.headers.etag, 'each form has its own ETag')
      const cached = await get(url, { 'accept-encoding': 'br', 'if-none-match': br.headers.etag! })
      t.equal(cached.status, 304, `${name}: 304 for the form the browser has`)
      t.equal(cached.body.length, 0)
    }

    // a build whose compressed forms are gone (or never smaller) still serves the file itself
    const js = names.find((n) => n.endsWith('.js'))!
    rmSync(join(dir, 'assets', `${js}.br`))
    const fallback = await get(`${th.httpUrl}/assets/${js}`, { 'accept-encoding': 'br' })
    t.equal(fallback.status, 200)
    t.equal(fallback.headers['content-encoding'], undefined, 'no .br: the file as it is')
    t.same(fallback.body, readFileSync(join(dir, 'assets', js)))
    const map = await get(`${th.httpUrl}/assets/${js}.map`, { 'accept-encoding': 'br, gzip' })
    t.equal(map.status, 200, 'source maps are served')
    t.equal(map.headers['content-encoding'], undefined, 'as they are: only dev tools load them')
  },
)

t.test('Accept-Encoding: q-values, wildcard and refusals decide the forms allowed, best first', async (t) => {
  const names = (h: string | undefined) => acceptedEncodings(h).map((e) => e.name)
  t.same(names(undefined), [], 'no header: as it is')
  t.same(names(''), [])
  t.same(names('gzip, deflate, br'), ['br', 'gzip'])
  t.same(names('GZIP'), ['gzip'], 'case-insensitive')
  t.same(names('br;q=0, gzip;q=0.5'), ['gzip'])
  t.same(names('*'), ['br', 'gzip'])
  t.same(names('*;q=0, gzip'), ['gzip'])
  t.same(names('br; q=0.001'), ['br'])
  t.same(names('identity'), [])
  t.ok(notModified('*', '"x"'))
  t.ok(notModified('W/"x"', '"x"'))
  t.notOk(notModified('"y"', '"x"'))
  t.notOk(notModified(undefined, '"x"'))
})

t.test('without a built app, / answers 404 saying to run npm run build:web', async (t) => {
  const th = await startTestHub(t, { WEB_DIR: mkdtempSync(join(tmpdir(), 'stagehub-noweb-')) })
  const reply = await fetch(`${th.httpUrl}/`)
  t.equal(reply.status, 404)
  t.match(await reply.json(), { error: { code: 'not_found', message: /npm run build:web/ } })
})

t.test(
  'Chromium loads the app as brotli and revalidates the page with its ETag on a reload',
  { skip: withoutChromium },
  async (t) => {
    const dir = await builtWebApp(t)
    const th = await startTestHub(t, { WEB_DIR: dir })
    const browser = await launchChromium(t)
    const page = await browser.newPage()
    const assets: { url: string; encoding: string | undefined; vary: string | undefined }[] = []
    page.on('response', (response) => {
      const url = response.url()
      const headers = response.headers()
      if (url.includes('/assets/'))
        assets.push({ url, encoding: headers['content-encoding'], vary: headers.vary })
    })
    await page.goto(`${th.httpUrl}/`)
    await page.getByRole('heading', { level: 1 }).first().waitFor()
    t.same(
      assets.map((a) => a.url.replace(/.*\//, '').replace(/-[A-Z0-9]+\./, '-*.')).sort(),
      ['chunk-*.js', 'main-*.css', 'main-*.js'],
      'the first load: the entry script, its shared chunk and the stylesheet (the media engine waits for "Join audio")',
    )
    for (const asset of assets) {
      t.equal(asset.encoding, 'br', `${asset.url.replace(/.*\//, '')} arrives as brotli`)
      t.equal(asset.vary, 'Accept-Encoding')
    }
    const wire = await page.evaluate(() =>
      performance
        .getEntriesByType('resource')
        .map((e) => e as unknown as { name: string; encodedBodySize: number; decodedBodySize: number })
        .filter((e) => e.name.endsWith('.js'))
        .map((e) => ({ encoded: e.encodedBodySize, decoded: e.decodedBodySize })),
    )
    t.ok(wire[0]!.encoded < wire[0]!.decoded / 3, 'the script crosses the wire compressed to under a third')

    // what went over the wire (the network stack adds the conditional header below what Playwright sees)
    const cdp = await page.context().newCDPSession(page)
    await cdp.send('Network.enable')
    const sent: Record<string, string>[] = []
    const answered: { statusCode: number; headers: Record<string, string> }[] = []
    cdp.on('Network.requestWillBeSentExtraInfo', (e) => sent.push(e.headers as Record<string, string>))
    cdp.on('Network.responseReceivedExtraInfo', (e) => answered.push(e))
    await page.reload()
    await page.getByRole('heading', { level: 1 }).first().waitFor()
    const etag = (await get(`${th.httpUrl}/`)).headers.etag
    t.ok(
      sent.some((h) => h['If-None-Match'] === etag || h['if-none-match'] === etag),
      'the reload asks for the page with its ETag',
    )
    t.ok(
      answered.some((r) => r.statusCode === 304 && (r.headers.etag ?? r.headers.ETag) === etag),
      'and the hub answers 304: the page is not sent again',
    )
    await page.getByRole('heading', { level: 1 }).first().waitFor()
  },
)

import { request as httpRequest } from 'node:http'
import { join } from 'node:path'
import type { Browser } from 'playwright-core'
import { HubClient } from '../../devices/hub-client/index.ts'
import type { TokenReply } from '../../schemas/http.ts'
import { FIRST_LOAD_BUDGET_BYTES, buildWeb } from '../../scripts/build-web.ts'
import { chromiumMissing, launchHeadlessChromium } from '../../scripts/chromium.ts'
import { type Context, onHub, sleep } from '../lib/context.ts'
import { round, summarize } from '../lib/results.ts'
import type { HubTarget } from '../lib/targets.ts'

/**
 * `web_load`: what a first visit to the web app costs.
 *
 * - `web_first_load_gzip` / `_brotli`: the bytes of the page's script and stylesheet as the hub sends
 *   them to a browser offering gzip (or brotli), against the 200 KB budget (ratio below 1: within it).
 * - `web_first_state`: in Debian's Chromium, a signed-in person with a stage opens the app with an
 *   empty cache; the time from navigation start to the first retained state painted (FIRST_STATE),
 *   against the static HTML's DOMContentLoaded in the same page load (the module script has run by
 *   then: what is left is connecting over WebSocket and receiving the retained topics). Medians of
 *   `profile.webLoad.runs` page loads, each in a fresh browser context.
 */

/**
 * What counts as the first stage state on screen: the text, inside the element, that only retained
 * state can put there: the stage's name in the person's stage list (`users/{u}/stages/{s}`).
 */
export const FIRST_STATE = {
  hash: '#/stages',
  selector: '.stage-item h2',
  text: (names: { user: string; stage: string }) => names.stage,
}

/** Where the app keeps its session (web/src/session.ts); the benchmark signs in by writing it. */
const SESSION_KEY = 'stagehub.session'

export async function webLoad(ctx: Context): Promise<void> {
  const webDir = join(ctx.dir, 'web')
  await buildWeb({ outdir: webDir })
  await onHub(ctx, (hub) => measure(ctx, hub as HubTarget), { env: { WEB_DIR: webDir }, label: 'hub-web' })
}

async function measure(ctx: Context, hub: HubTarget): Promise<void> {
  const origin = `http://${hub.host}:${hub.httpPort}`
  const transfer = await firstLoadTransfer(origin)
  const budgetKb = FIRST_LOAD_BUDGET_BYTES / 1024
  for (const encoding of ['gzip', 'br'] as const) {
    ctx.results.compare(
      `web_first_load_${encoding === 'br' ? 'brotli' : 'gzip'}`,
      'KB',
      'lower',
      {
        value: transfer[encoding] / 1024,
        detail: { files: transfer.files, identity_kb: round(transfer.identity / 1024) },
      },
      { budget: { value: budgetKb } },
    )
  }
  ctx.log(
    `web first load: ${round(transfer.gzip / 1024, 1)} KB gzip, ${round(transfer.br / 1024, 1)} KB brotli (budget ${budgetKb} KB)`,
  )

  if (chromiumMissing) {
    ctx.log(`web_first_state skipped: ${chromiumMissing}`)
    return
  }
  const names = { user: 'Bench Person', stage: 'Bench Stage' }
  const session = await signUpWithStage(hub, origin, names)
  const browser = await launchHeadlessChromium()
  try {
    const firstState: number[] = []
    const domContentLoaded: number[] = []
    for (let run = 0; run < ctx.profile.webLoad.runs; run++) {
      const times = await pageLoad(browser, `${origin}/${FIRST_STATE.hash}`, session, FIRST_STATE.text(names))
      firstState.push(times.firstState)
      domContentLoaded.push(times.domContentLoaded)
    }
    const state = summarize(firstState)
    const dcl = summarize(domContentLoaded)
    ctx.results.compare(
      'web_first_state',
      'ms',
      'lower',
      {
        value: state.p50,
        detail: {
          runs: firstState.map((v) => round(v, 1)),
          page: FIRST_STATE.hash,
          selector: FIRST_STATE.selector,
        },
      },
      {
        static_html_dom_content_loaded: {
          value: dcl.p50,
          detail: { runs: domContentLoaded.map((v) => round(v, 1)) },
        },
      },
    )
    ctx.log(`web first state: median ${round(state.p50, 1)} ms, DOMContentLoaded ${round(dcl.p50, 1)} ms`)
  } finally {
    await browser.close()
  }
}

/** The bytes of the page's script and stylesheet as sent for each Accept-Encoding. */
async function firstLoadTransfer(
  origin: string,
): Promise<{ files: string[]; gzip: number; br: number; identity: number }> {
  const html = (await get(`${origin}/`, 'identity')).body.toString('utf8')
  const files = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+\.(?:js|css))"/g)].map((m) => m[1]!)
  if (files.length === 0) throw new Error('index.html names no script or stylesheet')
  const total = async (encoding: string) => {
    let bytes = 0
    for (const file of files) {
      const reply = await get(`${origin}${file}`, encoding)
      const sent = reply.encoding ?? 'identity'
      if (sent !== encoding) throw new Error(`${file}: asked for ${encoding}, got ${sent}`)
      bytes += reply.body.length
    }
    return bytes
  }
  return { files, gzip: await total('gzip'), br: await total('br'), identity: await total('identity') }
}

function get(url: string, encoding: string): Promise<{ body: Buffer; encoding: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers: { 'accept-encoding': encoding } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`${url} answered ${res.statusCode}`))
        else resolve({ body: Buffer.concat(chunks), encoding: res.headers['content-encoding'] })
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

/** A person signed up over HTTP, with a stage made over MQTT (as the app would). */
async function signUpWithStage(
  hub: HubTarget,
  origin: string,
  names: { user: string; stage: string },
): Promise<TokenReply> {
  const response = await fetch(`${origin}/auth/signup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      email: `bench-${Date.now()}@example.com`,
      password: 'bench-password-1',
      name: names.user,
    }),
  })
  if (!response.ok) throw new Error(`sign-up answered ${response.status}: ${await response.text()}`)
  const session = (await response.json()) as TokenReply
  const client = new HubClient({
    url: `mqtt://${hub.host}:${hub.port}`,
    clientId: `${session.userId}-bench`,
    token: session.token,
  })
  client.start()
  try {
    await client.untilOnline()
    await client.request('stage.create', { name: names.stage })
  } finally {
    await client.stop()
  }
  return session
}

/**
 * One first visit in a fresh context (empty cache), signed in: milliseconds from navigation start to
 * the frame after `text` appeared in FIRST_STATE.selector, and to DOMContentLoaded.
 */
async function pageLoad(
  browser: Browser,
  url: string,
  session: TokenReply,
  text: string,
): Promise<{ firstState: number; domContentLoaded: number }> {
  const context = await browser.newContext()
  try {
    // runs before the page's own script; through the DevTools protocol, so the app's CSP allows it
    await context.addInitScript({
      content: `(() => {
        localStorage.setItem(${JSON.stringify(SESSION_KEY)}, ${JSON.stringify(JSON.stringify(session))})
        const shown = () => [...document.querySelectorAll(${JSON.stringify(FIRST_STATE.selector)})]
          .some((e) => e.textContent.includes(${JSON.stringify(text)}))
        const observer = new MutationObserver(() => {
          if (!shown()) return
          observer.disconnect()
          requestAnimationFrame(() => { window.__stagehubFirstState = performance.now() })
        })
        observer.observe(document, { childList: true, subtree: true, characterData: true })
      })()`,
    })
    const page = await context.newPage()
    await page.goto(url, { waitUntil: 'domcontentloaded' })
    // polled from here (waitForFunction would eval in the page, which the CSP refuses); the time is taken in the page
    const deadline = Date.now() + 30_000
    while ((await page.evaluate('window.__stagehubFirstState')) === undefined) {
      if (Date.now() > deadline) throw new Error(`${url}: "${text}" not on screen within 30 s`)
      await sleep(20)
    }
    return (await page.evaluate(`({
      firstState: window.__stagehubFirstState,
      domContentLoaded: performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd,
    })`)) as { firstState: number; domContentLoaded: number }
  } finally {
    await context.close()
  }
}

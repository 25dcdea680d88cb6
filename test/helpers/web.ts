import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildWeb } from '../../scripts/build-web.ts'
import type { Browser, Page } from 'playwright-core'
import type { Test } from 'tap'
import type { Teardown } from './hub.ts'

/** The web app built (as `npm run build:web` does) into a temp directory, removed with the test. */
export async function builtWebApp(t: Teardown): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'stagehub-web-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  await buildWeb({ outdir: dir })
  return dir
}

/** Screenshots for people to look at (git-ignored): README "Web app". */
export const SCREENSHOTS = new URL('../../test-output/screenshots/', import.meta.url).pathname
export const DESKTOP = { width: 1280, height: 800 }
export const PHONE = { width: 390, height: 844 }

/** axe-core, evaluated through the DevTools protocol: the app's CSP rightly refuses injected scripts. */
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8')

interface AxeViolation {
  id: string
  impact: string | null
  help: string
  nodes: unknown[]
}

/** The serious and critical accessibility violations axe-core finds on the page as it is now. */
async function accessibilityProblems(page: Page): Promise<string[]> {
  await page.evaluate(AXE_SOURCE)
  const violations = await page.evaluate(async () => {
    // runs in the page: its window (globalThis) carries axe and the document
    const page = globalThis as unknown as {
      axe: { run(context: unknown): Promise<{ violations: AxeViolation[] }> }
      document: unknown
    }
    const result = await page.axe.run(page.document)
    return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length }))
  })
  return violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help}, ${v.nodes} element(s)`)
}

/** Screenshots at desktop and phone width, each checked by axe-core. */
export async function shoot(t: Test, page: Page, name: string): Promise<void> {
  for (const [size, viewport] of [
    ['desktop', DESKTOP],
    ['phone', PHONE],
  ] as const) {
    await page.setViewportSize(viewport)
    mkdirSync(SCREENSHOTS, { recursive: true })
    await page.screenshot({ path: join(SCREENSHOTS, `${name}-${size}.png`), fullPage: true })
    t.same(
      await accessibilityProblems(page),
      [],
      `${name} at ${size} width: no serious or critical axe-core finding`,
    )
  }
  await page.setViewportSize(DESKTOP)
}

/** Collects a page's errors and Content-Security-Policy reports: a test ends with `t.same(problems, [])`. */
export function watchProblems(page: Page): string[] {
  const problems: string[] = []
  page.on('pageerror', (err) => problems.push(err.message))
  page.on('console', (m) => /Content Security Policy/i.test(m.text()) && problems.push(m.text()))
  return problems
}

/** Where the app keeps the signed-in session (web/src/session.ts). */
export const SESSION_KEY = 'stagehub.session'

/**
 * Opens `url` signed in as `session` (what `/auth/login` answers), as after an earlier sign-in: the
 * page is loaded again so the app reads it (a change of the hash alone would not).
 */
export async function openSignedIn(page: Page, url: string, session: unknown): Promise<void> {
  await page.goto(url)
  await page.evaluate(([key, value]) => localStorage.setItem(key, JSON.stringify(value)), [
    SESSION_KEY,
    session,
  ] as const)
  await page.reload()
}

/**
 * A person's browser context of its own (its own localStorage) signed in as `session` on `path`
 * (`#/stages/…`), online when it returns; `init` is a script run in every page before the app.
 */
export async function signedInContext(
  t: { teardown(fn: () => unknown): void },
  origin: string,
  browser: Browser,
  session: unknown,
  path: string,
  init?: string,
): Promise<{ page: Page; problems: string[] }> {
  const context = await browser.newContext({ viewport: DESKTOP })
  t.teardown(() => context.close())
  if (init) await context.addInitScript(init)
  const page = await context.newPage()
  const problems = watchProblems(page)
  await openSignedIn(page, `${origin}/${path}`, session)
  await page.getByTestId('connection').getByText('Online').waitFor()
  return { page, problems }
}

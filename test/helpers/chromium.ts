import { existsSync } from 'node:fs'
import { type Browser, chromium } from 'playwright-core'

/** Debian's chromium package; playwright-core drives it and downloads no browser of its own. */
const CHROMIUM = '/usr/bin/chromium'

/** A test's `skip` option: false where Chromium is installed, else the reason. */
export const withoutChromium: string | false = existsSync(CHROMIUM)
  ? false
  : `no ${CHROMIUM} (Debian's chromium package)`

/**
 * Headless Chromium, closed when the test ends. The background-networking switches keep it from
 * calling Google's hosts, which machines without internet refuse by the dozen. `args` adds switches
 * (the media tests' fake microphone: `MEDIA_ARGS`).
 */
export async function launchChromium(
  t: { teardown(fn: () => unknown): void },
  options: { args?: readonly string[] } = {},
): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      ...(options.args ?? []),
    ],
  })
  t.teardown(() => browser.close())
  return browser
}

/** A fake microphone (a beeping tone) that needs no permission prompt: for the browser media tests. */
export const MEDIA_ARGS = ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'] as const

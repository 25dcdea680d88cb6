import type { Browser } from 'playwright-core'
import { chromiumMissing, launchHeadlessChromium } from '../../scripts/chromium.ts'

/** A test's `skip` option: false where Chromium is installed, else the reason. */
export const withoutChromium: string | false = chromiumMissing

/** Headless Chromium (scripts/chromium.ts), closed when the test ends. `args` adds switches (the media tests' fake microphone: `MEDIA_ARGS`). */
export async function launchChromium(
  t: { teardown(fn: () => unknown): void },
  options: { args?: readonly string[] } = {},
): Promise<Browser> {
  const browser = await launchHeadlessChromium(options.args)
  t.teardown(() => browser.close())
  return browser
}

export { MEDIA_ARGS } from '../../scripts/chromium.ts'

/**
 * Debian's Chromium, headless, as the browser tests and the web benchmarks drive it (playwright-core,
 * which downloads no browser of its own).
 */
import { existsSync } from 'node:fs'
import { type Browser, chromium } from 'playwright-core'

export const CHROMIUM = '/usr/bin/chromium'

/** Why Chromium cannot run here, or false where it is installed. */
export const chromiumMissing: string | false = existsSync(CHROMIUM)
  ? false
  : `no ${CHROMIUM} (Debian's chromium package)`

/** Headless Chromium. The background-networking switches keep it from calling Google's hosts, which machines without internet refuse by the dozen; `args` adds switches. */
export function launchHeadlessChromium(args: readonly string[] = []): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      ...args,
    ],
  })
}

/** A fake microphone and camera (a beeping tone, a test pattern) that need no permission prompt. */
export const MEDIA_ARGS = ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'] as const

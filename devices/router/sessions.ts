import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import type { SessionSource } from '../hub-client/hub-client.ts'

/**
 * Presence sessions (docs/protocol/README.md#presence): every connection attempt gets a larger number than any before, also
 * across restarts. The wall clock in milliseconds provides that without a file; with one (`stateFile`),
 * a clock set back does not matter either.
 */
export class SessionCounter implements SessionSource {
  readonly #file: string | undefined
  #last = 0

  constructor(file?: string) {
    this.#file = file
    if (file) {
      try {
        const saved = JSON.parse(readFileSync(file, 'utf8')) as { session?: unknown }
        if (typeof saved.session === 'number') this.#last = saved.session
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      }
    }
  }

  next(): number {
    this.#last = Math.max(this.#last + 1, Date.now())
    if (this.#file) {
      writeFileSync(`${this.#file}.tmp`, JSON.stringify({ session: this.#last }) + '\n', { mode: 0o600 })
      renameSync(`${this.#file}.tmp`, this.#file)
    }
    return this.#last
  }
}

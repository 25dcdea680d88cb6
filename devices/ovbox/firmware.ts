import { createHash } from 'node:crypto'
import { mkdir, open, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import type { ReadableStream as WebReadableStream } from 'node:stream/web'
import type { Logger } from 'pino'
import type { ReportedPayload } from '../../schemas/actions/device.ts'
import type { FirmwareTarget } from '../../schemas/firmware.ts'
import { commandFailure, runCommand, truncate } from './command.ts'
import type { StateStore } from './state.ts'

export type FirmwareReport = NonNullable<ReportedPayload['firmware']>

export interface FirmwareUpdaterOptions {
  /** Downloads go to `{downloadDir}` (created when needed) and are removed after the install. */
  downloadDir: string
  /** argv; the downloaded file's path is appended. Exit code 0 = installed. */
  installCommand: readonly string[]
  state: StateStore
  report(firmware: FirmwareReport): Promise<void>
  log: Logger
  fetch?: typeof fetch
  downloadTimeoutMs?: number
  installTimeoutMs?: number
}

/**
 * Firmware updates (ThingsBoard's OTA states): when the configuration names a release other than the
 * installed one, DOWNLOADING → download (streamed to disk, hashed on the way, cut off when larger than
 * announced) → DOWNLOADED → size and sha256 checked → VERIFIED → UPDATING → install command with the
 * file → UPDATED (and the version is remembered) or FAILED with the reason. A (version, sha256) that
 * failed is not tried again, also not after a restart; a new release (or a corrected one) is.
 * One update at a time; a target that changes meanwhile is handled after the current one.
 */
export class FirmwareUpdater {
  readonly #options: FirmwareUpdaterOptions
  #wanted: FirmwareTarget | undefined
  #busy = false
  /** Tried in this process (also when persisting the failure failed): never twice. */
  readonly #tried = new Set<string>()
  #announcedInstalled: string | undefined

  constructor(options: FirmwareUpdaterOptions) {
    this.#options = options
  }

  get busy(): boolean {
    return this.#busy
  }

  /** The configuration's firmware target (undefined: no rollout targets the box). */
  consider(target: FirmwareTarget | undefined): void {
    this.#wanted = target
    // #drain reports a failed update as FAILED and logs it: it never rejects
    if (!this.#busy) void this.#drain()
  }

  #needs(target: FirmwareTarget): boolean {
    const { firmwareVersion, failedFirmware } = this.#options.state.read()
    if (target.version === firmwareVersion) return false
    if (failedFirmware?.version === target.version && failedFirmware.sha256 === target.artifact.sha256)
      return false
    return !this.#tried.has(key(target))
  }

  async #drain(): Promise<void> {
    this.#busy = true
    try {
      for (;;) {
        const target = this.#wanted
        if (!target) break
        if (!this.#needs(target)) {
          // the hub may not know yet that this box runs the target (a box installed before it was targeted)
          if (target.version === this.#options.state.read().firmwareVersion) {
            if (this.#announcedInstalled !== target.version) {
              this.#announcedInstalled = target.version
              await this.#options.report({ version: target.version, state: 'UPDATED' })
            }
          }
          break
        }
        this.#tried.add(key(target))
        await this.#update(target)
      }
    } catch (err) {
      this.#options.log.error({ err }, 'firmware update failed unexpectedly')
    } finally {
      this.#busy = false
    }
  }

  async #update(target: FirmwareTarget): Promise<void> {
    const { state, report, log } = this.#options
    const { version } = target
    log.info({ version, url: target.artifact.url }, 'firmware update')
    const fail = async (error: string) => {
      log.error({ version, error }, 'firmware update failed')
      await state
        .update({ failedFirmware: { version, sha256: target.artifact.sha256 } })
        .catch((err: unknown) => log.error({ err }, 'cannot remember the failed firmware'))
      await report({ version, state: 'FAILED', error: truncate(error, 500) })
    }

    await report({ version, state: 'DOWNLOADING' })
    let download: { file: string; bytes: number; sha256: string }
    try {
      download = await this.#download(target)
    } catch (err) {
      return fail(`download failed: ${(err as Error).message}`)
    }
    // the file is gone before the outcome is reported
    const failure = await this.#verifyAndInstall(target, download).finally(() =>
      rm(download.file, { force: true }).catch(() => undefined),
    )
    if (failure) return fail(failure)
    await state.update({ firmwareVersion: version, failedFirmware: undefined })
    this.#announcedInstalled = version
    log.info({ version }, 'firmware installed')
    await report({ version, state: 'UPDATED' })
  }

  /** DOWNLOADED → VERIFIED → UPDATING → install; returns why it failed, if it did. */
  async #verifyAndInstall(
    target: FirmwareTarget,
    download: { file: string; bytes: number; sha256: string },
  ): Promise<string | undefined> {
    const { report, installCommand } = this.#options
    const { version, artifact } = target
    await report({ version, state: 'DOWNLOADED' })
    if (download.bytes !== artifact.size) {
      return `size mismatch: got ${download.bytes} bytes, expected ${artifact.size}`
    }
    if (download.sha256 !== artifact.sha256) {
      return `sha256 mismatch: got ${download.sha256}, expected ${artifact.sha256}`
    }
    await report({ version, state: 'VERIFIED' })
    if (installCommand.length === 0) return 'no firmwareInstallCommand configured'
    await report({ version, state: 'UPDATING' })
    const timeoutMs = this.#options.installTimeoutMs ?? 10 * 60_000
    const result = await runCommand([...installCommand, download.file], { timeoutMs })
    return commandFailure('install command', result, timeoutMs)
  }

  /** Streams the artifact to a file, hashing it on the way; stops once it is larger than announced. */
  async #download(target: FirmwareTarget): Promise<{ file: string; bytes: number; sha256: string }> {
    const { downloadDir, downloadTimeoutMs = 10 * 60_000 } = this.#options
    const fetchImpl = this.#options.fetch ?? fetch
    await mkdir(downloadDir, { recursive: true })
    const file = join(downloadDir, `firmware-${target.version}.bin`)
    const partial = `${file}.part`
    const response = await fetchImpl(target.artifact.url, { signal: AbortSignal.timeout(downloadTimeoutMs) })
    if (!response.ok || !response.body) throw new Error(`HTTP ${response.status} from ${target.artifact.url}`)
    const hash = createHash('sha256')
    let bytes = 0
    const out = await open(partial, 'w', 0o600)
    try {
      for await (const chunk of Readable.fromWeb(response.body as WebReadableStream<Uint8Array>)) {
        const data = chunk as Buffer
        bytes += data.length
        if (bytes > target.artifact.size) {
          throw new Error(`the artifact is larger than the ${target.artifact.size} bytes announced`)
        }
        hash.update(data)
        await out.write(data)
      }
      await out.sync()
    } catch (err) {
      await out.close()
      await rm(partial, { force: true })
      throw err
    }
    await out.close()
    await rename(partial, file)
    return { file, bytes, sha256: hash.digest('hex') }
  }
}

const key = (target: FirmwareTarget) => `${target.version}\0${target.artifact.sha256}`

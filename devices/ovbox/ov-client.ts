import { createHash } from 'node:crypto'
import { mkdir } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { Logger } from 'pino'
import type { DeviceConfig } from '../../schemas/firmware.ts'
import { commandFailure, runCommand } from './command.ts'
import { type StateStore, writeFileAtomic } from './state.ts'

/**
 * Applies a device configuration to whatever runs the audio. Rejects with the reason when it could
 * not; the agent reports that as `appliedConfig.error`.
 */
export interface ConfigSink {
  apply(config: DeviceConfig): Promise<void>
}

export interface OvClientSinkOptions {
  /** Where ov-client reads its configuration. */
  configPath: string
  /** argv run after a new configuration was written (no shell); empty: ov-client is not restarted. */
  restartCommand: readonly string[]
  restartTimeoutMs?: number
  state: StateStore
  log: Logger
}

/**
 * The ov-client side of a configuration: `config.ov` written as JSON to ov-client's configuration
 * file (atomically: temp file + rename, so ov-client never reads half a file), then ov-client restarted
 * with the configured command. When the ov-client part is exactly what was written and restarted
 * successfully last (a change of the device's name, of video settings, …), nothing is written or
 * restarted: ov-client already runs it.
 */
export class OvClientSink implements ConfigSink {
  readonly #options: OvClientSinkOptions

  constructor(options: OvClientSinkOptions) {
    this.#options = options
  }

  async apply(config: DeviceConfig): Promise<void> {
    const { configPath, restartCommand, state, log } = this.#options
    if (!config.ov) return // not an ov-box configuration: nothing for ov-client
    const text = JSON.stringify(config.ov, null, 2) + '\n'
    const digest = createHash('sha256').update(text).digest('hex')
    if (state.read().ovDigest === digest) {
      log.debug({ revision: config.revision }, 'the ov-client configuration is unchanged')
      return
    }
    // until the restart succeeds, ov-client does not run what the file says
    if (state.read().ovDigest !== undefined) await state.update({ ovDigest: undefined })
    try {
      await mkdir(dirname(configPath), { recursive: true })
      await writeFileAtomic(configPath, text, 0o644)
    } catch (err) {
      throw new Error(`cannot write ${configPath}: ${(err as Error).message}`)
    }
    if (restartCommand.length > 0) {
      const timeoutMs = this.#options.restartTimeoutMs ?? 30_000
      const failure = commandFailure(
        'ov-client restart',
        await runCommand(restartCommand, { timeoutMs }),
        timeoutMs,
      )
      if (failure) throw new Error(failure)
    }
    await state.update({ ovDigest: digest })
    log.info({ revision: config.revision, path: configPath }, 'ov-client configuration written and restarted')
  }
}

import type { Logger } from 'pino'

/**
 * SIGTERM/SIGINT stop a device program or the hub cleanly (offline presence or hub/status goes out
 * before the connections close); a shutdown that hangs ends the process after 8 s, within systemd's
 * TimeoutStopSec of 10 s.
 */
export function stopOnSignals(agent: { stop(): Promise<void> }, log: Logger): void {
  let stopping = false
  const stop = (signal: string) => {
    if (stopping) return
    stopping = true
    log.info({ signal }, 'stopping')
    setTimeout(() => process.exit(1), 8_000).unref()
    agent.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed')
        process.exit(1)
      },
    )
  }
  // `on`, not `once`: a second signal during the shutdown (Ctrl-C reaches npm and the hub, and npm
  // passes it on; an impatient second Ctrl-C) must not kill the process before it has stopped cleanly
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
}

import type { Logger } from 'pino'
import type { Lease } from './lease.ts'

/**
 * Who does the work that must happen once per deployment (docs/cluster.md#leases-and-liveness):
 * router distribution, the purges, healing lost processes. One process alone always does it; in a
 * cluster only the holder of the coordinator lease does, and stops the moment it is not sure it
 * still holds it.
 */
export interface Coordination {
  /** Whether this process does the once-per-deployment work now. */
  isCoordinator(): boolean
  /** Calls `listener` each time this process becomes the coordinator (never for one process alone). */
  onGained(listener: () => void): () => void
  /**
   * Runs `task` every `intervalMs` while this process is the coordinator, and at once when it
   * becomes it; one run at a time; a failed run is logged and retried on the next interval.
   */
  every(name: string, intervalMs: number, task: () => Promise<unknown>): void
  /** Stops the periodic tasks (before the hub closes what they use). */
  stop(): void
}

/** The coordination of a process that is the whole deployment: it does everything. */
export function singleProcess(log: Logger): Coordination {
  return periodic(
    log,
    () => true,
    () => () => undefined,
  )
}

/** The coordination of a cluster member: the coordinator is the holder of `lease`. */
export function leaseCoordination(lease: Lease, log: Logger): Coordination {
  return periodic(
    log,
    () => lease.held,
    (listener) => lease.onChange((held) => (held ? listener() : undefined)),
  )
}

function periodic(
  log: Logger,
  isCoordinator: () => boolean,
  onGained: (listener: () => void) => () => void,
): Coordination {
  const timers = new Set<NodeJS.Timeout>()
  const stops = new Set<() => void>()
  let stopped = false
  return {
    isCoordinator: () => !stopped && isCoordinator(),
    onGained(listener) {
      const stop = onGained(() => (stopped ? undefined : listener()))
      stops.add(stop)
      return stop
    },
    every(name, intervalMs, task) {
      let running = false
      const run = () => {
        if (running || stopped || !isCoordinator()) return
        running = true
        task()
          .catch((err: unknown) =>
            log.warn({ err, task: name }, `${name} failed; retried in ${intervalMs} ms`),
          )
          .finally(() => (running = false))
      }
      const timer = setInterval(run, intervalMs)
      timer.unref()
      timers.add(timer)
      stops.add(onGained(run))
    },
    stop() {
      stopped = true
      for (const timer of timers) clearInterval(timer)
      for (const stop of stops) stop()
    },
  }
}

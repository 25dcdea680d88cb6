import { existsSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { createWorker, workerBin } from 'mediasoup'
import type { types } from 'mediasoup'

export type Worker = types.Worker
/** mediasoup's worker settings: `logLevel`, `logTags`, `rtcMinPort`/`rtcMaxPort` (the RTC port range). */
export type WorkerSettings = types.WorkerSettings

/**
 * Starts `count` mediasoup workers (one per core by default: a worker is a single-threaded process).
 * If one fails to start, the ones already started are closed before the error is rethrown.
 */
export async function createWorkers(
  count = availableParallelism(),
  settings: WorkerSettings = {},
): Promise<Worker[]> {
  // Without a worker binary mediasoup fails with a bare spawn ENOENT; say how to get one instead.
  if (!existsSync(workerBin)) {
    throw new Error(
      `mediasoup-worker not found at ${workerBin}: offline machines build it with ` +
        'scripts/build-mediasoup-worker.sh --install (see README, "mediasoup worker on offline machines")',
    )
  }
  const workers: Worker[] = []
  try {
    for (let i = 0; i < count; i++) workers.push(await createWorker(settings))
  } catch (err) {
    for (const worker of workers) worker.close()
    throw err
  }
  return workers
}

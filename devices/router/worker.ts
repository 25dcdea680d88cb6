import { existsSync } from 'node:fs'
import { availableParallelism } from 'node:os'
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
  const { createWorker, workerBin } = await loadMediasoup()
  // Without a worker binary mediasoup fails with a bare spawn ENOENT; say how to get one instead.
  if (!existsSync(workerBin)) {
    throw new Error(
      `mediasoup-worker not found at ${workerBin}: offline machines build it with ` +
        'scripts/build-mediasoup-worker.sh --install (see README, "mediasoup worker on router hosts")',
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

/**
 * mediasoup is an optional dependency (the hub installs without it), loaded only when a router starts
 * workers, so that a missing package is explained rather than a bare ERR_MODULE_NOT_FOUND.
 */
async function loadMediasoup(): Promise<typeof import('mediasoup')> {
  try {
    return await import('mediasoup')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err
    throw new Error(
      'mediasoup is not installed: it is an optional dependency, left out when its install script fails ' +
        '(it cannot download its worker offline); on a router host build the worker and reinstall: ' +
        'MEDIASOUP_WORKER_BIN=$(scripts/build-mediasoup-worker.sh) npm ci (see README, "mediasoup worker on router hosts")',
      { cause: err },
    )
  }
}

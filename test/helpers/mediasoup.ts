import type { Test } from 'tap'

/**
 * Why the tests that start mediasoup workers cannot run on this machine, or false when they can.
 * mediasoup is an optional dependency, left out where its worker could not be installed (README,
 * "mediasoup worker on router hosts"); those tests are skipped there, as the interop test is without
 * mosquitto-clients. An installed package whose worker is missing is not skipped: it fails loudly.
 */
export const mediasoupMissing: string | false = await import('mediasoup').then(
  () => false,
  (err: NodeJS.ErrnoException) => {
    if (err.code !== 'ERR_MODULE_NOT_FOUND') throw err
    return 'mediasoup is not installed (an optional dependency: see README, "mediasoup worker on router hosts")'
  },
)

/** `t.test` for tests that start mediasoup workers: skipped, with the reason, where it is not installed. */
export function mediasoupTest(t: Test) {
  return (name: string, fn: (t: Test) => Promise<void>) => t.test(name, { skip: mediasoupMissing }, fn)
}

/**
 * Which firmware release an ov-box should run, as pure functions over the published releases: a
 * release targets the devices named in its rollout plus a stable share of all others, chosen by a hash
 * of (version, device id) so that raising the percentage only adds devices and every release samples
 * a different share. A device runs the newest release that targets it; withdrawing a release (0 % and
 * no devices) rolls its devices back to the newest older release that still targets them.
 */
import { createHash } from 'node:crypto'
import type { FirmwareTarget, ReleaseState } from '../schemas/firmware.ts'

/** The device's position in [0, 100) for this release. */
export function rolloutBucket(version: string, deviceId: string): number {
  const digest = createHash('sha256').update(`${version}\0${deviceId}`).digest()
  return (digest.readUInt32BE(0) / 2 ** 32) * 100
}

export function isTargeted(release: Pick<ReleaseState, 'version' | 'rollout'>, deviceId: string): boolean {
  const { percent, deviceIds } = release.rollout
  return deviceIds.includes(deviceId) || rolloutBucket(release.version, deviceId) < percent
}

/** Semantic-version order: numeric major.minor.patch, and a pre-release sorts before its release. */
export function compareVersions(a: string, b: string): number {
  const [coreA = '', preA] = splitVersion(a)
  const [coreB = '', preB] = splitVersion(b)
  const numbersA = coreA.split('.').map(Number)
  const numbersB = coreB.split('.').map(Number)
  for (let i = 0; i < 3; i++) {
    const d = (numbersA[i] ?? 0) - (numbersB[i] ?? 0)
    if (d !== 0) return Math.sign(d)
  }
  if (preA === preB) return 0
  if (preA === undefined) return 1
  if (preB === undefined) return -1
  return comparePrerelease(preA, preB)
}

function splitVersion(version: string): [string, string | undefined] {
  const dash = version.indexOf('-')
  return dash < 0 ? [version, undefined] : [version.slice(0, dash), version.slice(dash + 1)]
}

function comparePrerelease(a: string, b: string): number {
  const partsA = a.split('.')
  const partsB = b.split('.')
  for (let i = 0; i < Math.max(partsA.length, partsB.length); i++) {
    const x = partsA[i]
    const y = partsB[i]
    if (x === undefined) return -1
    if (y === undefined) return 1
    const numeric = /^[0-9]+$/
    if (numeric.test(x) && numeric.test(y)) {
      if (Number(x) !== Number(y)) return Math.sign(Number(x) - Number(y))
    } else if (numeric.test(x) !== numeric.test(y)) {
      return numeric.test(x) ? -1 : 1
    } else if (x !== y) {
      return x < y ? -1 : 1
    }
  }
  return 0
}

/** The release a device should run now, or undefined when no rollout targets it. */
export function targetRelease(
  releases: readonly ReleaseState[],
  deviceId: string,
): FirmwareTarget | undefined {
  let newest: ReleaseState | undefined
  for (const release of releases) {
    if (!isTargeted(release, deviceId)) continue
    if (!newest || compareVersions(release.version, newest.version) > 0) newest = release
  }
  if (!newest) return undefined
  return { version: newest.version, ovClientVersion: newest.ovClientVersion, artifact: newest.artifact }
}

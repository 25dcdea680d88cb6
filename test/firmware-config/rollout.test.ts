import t from 'tap'
import { compareVersions, isTargeted, rolloutBucket, targetRelease } from '../../firmware-config/rollout.ts'
import type { ReleaseState } from '../../schemas/firmware.ts'

const release = (version: string, percent: number, deviceIds: string[] = []): ReleaseState => ({
  version,
  ovClientVersion: '0.20.1',
  artifact: { url: `https://releases.example.org/ovbox-${version}.img`, sha256: 'a'.repeat(64), size: 1024 },
  publishedAt: '2026-11-01T00:00:00.000Z',
  rollout: { percent, deviceIds },
})

const devices = Array.from({ length: 2000 }, (_, i) => `box-${i}`)

t.test('semantic versions order numerically, and a pre-release before its release', async (t) => {
  const sorted = [
    '1.10.0',
    '1.2.0',
    '1.2.0-rc.1',
    '1.2.0-beta',
    '1.2.0-rc.10',
    '1.2.0-rc.2',
    '0.9.9',
    '2.0.0',
  ]
  sorted.sort(compareVersions)
  t.same(sorted, [
    '0.9.9',
    '1.2.0-beta',
    '1.2.0-rc.1',
    '1.2.0-rc.2',
    '1.2.0-rc.10',
    '1.2.0',
    '1.10.0',
    '2.0.0',
  ])
  t.equal(compareVersions('1.2.3', '1.2.3'), 0, 'equal versions compare equal')
})

t.test('a rollout percentage takes a stable, growing share of the devices', async (t) => {
  const share = (percent: number) => devices.filter((d) => isTargeted(release('1.0.0', percent), d))
  const ten = share(10)
  const fifty = share(50)
  t.ok(ten.length > 140 && ten.length < 260, `about 10 % of 2000 devices (${ten.length})`)
  t.ok(fifty.length > 900 && fifty.length < 1100, `about 50 % (${fifty.length})`)
  t.ok(
    ten.every((d) => fifty.includes(d)),
    'raising the percentage only adds devices',
  )
  t.same(share(0), [], '0 % targets nobody')
  t.equal(share(100).length, devices.length, '100 % targets everybody')
  t.same(share(10), ten, 'the same devices every time')
  const otherRelease = devices.filter((d) => isTargeted(release('1.1.0', 10), d))
  t.not(otherRelease.join(), ten.join(), 'another release samples another share')
  t.ok(
    devices.every((d) => rolloutBucket('1.0.0', d) >= 0 && rolloutBucket('1.0.0', d) < 100),
    'buckets lie in [0, 100)',
  )
})

t.test('a device runs the newest release that targets it; named devices are always targeted', async (t) => {
  const stable = release('1.0.0', 100)
  const canary = release('1.1.0-rc.1', 0, ['box-7'])
  t.equal(
    targetRelease([stable, canary], 'box-7')?.version,
    '1.1.0-rc.1',
    'the named canary gets the release candidate',
  )
  t.equal(
    targetRelease([stable, canary], 'box-8')?.version,
    '1.0.0',
    'everyone else stays on the stable release',
  )
  t.equal(
    targetRelease([canary], 'box-8'),
    undefined,
    'no rollout targets it: no firmware in its configuration',
  )
  const withdrawn = release('1.1.0-rc.1', 0)
  t.equal(
    targetRelease([stable, withdrawn], 'box-7')?.version,
    '1.0.0',
    'withdrawing a release rolls its devices back',
  )
  t.same(
    targetRelease([stable], 'box-1'),
    { version: '1.0.0', ovClientVersion: '0.20.1', artifact: stable.artifact },
    'the target is what the box needs to install: version, ov-client version and artifact',
  )
})

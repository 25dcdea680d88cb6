import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { join } from 'node:path'
import t from 'tap'
import type { FirmwareRelease } from '../../../schemas/firmware.ts'
import { actor, ok, roomy } from '../../helpers/actors.ts'
import { Requester, startTestHub, waitUntil } from '../../helpers/hub.ts'
import { registerBox, startAgent, watchDevice } from './fixture.ts'

/**
 * Firmware rollout end to end: an operator publishes a release whose artifact a local HTTP server
 * serves and rolls it out to one box; the agent downloads, verifies and installs it (the install
 * command copies the file, or fails for one version) and reports each step, which release.status counts.
 */
t.test('a rolled-out release is downloaded, verified, installed and reported; bad ones fail', async (t) => {
  const artifact = randomBytes(64 * 1024 + 17)
  const downloads = new Map<string, number>()
  const server = createServer((req, res) => {
    downloads.set(req.url!, (downloads.get(req.url!) ?? 0) + 1)
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    res.end(artifact)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  const sha256 = createHash('sha256').update(artifact).digest('hex')
  const release = (version: string, hash = sha256): FirmwareRelease => ({
    version,
    ovClientVersion: '0.20.1',
    artifact: { url: `${base}/ovbox-${version}.img`, sha256: hash, size: artifact.length },
  })

  const th = await startTestHub(t, roomy)
  const opsClient = await th.connect({ clientId: 'ops-1', token: th.token({ sub: 'ops', role: 'admin' }) })
  const ops = new Requester(opsClient)
  const admin = async <T = Record<string, unknown>>(action: string, params: unknown): Promise<T> => {
    const response = await ops.request(action, params)
    if (!response.ok) throw new Error(`${action} refused: ${JSON.stringify(response.error)}`)
    return response.result as T
  }
  const owner = await actor(th, 'Owner')
  const box = await registerBox(t, th, owner, {
    // installs by copying; version 1.3.0's image is "unbootable"
    installCommand: (dir) => [
      'sh',
      '-c',
      'case "$1" in *1.3.0*) echo "flash: image does not boot on this board" >&2; exit 1;; esac; cp "$1" "$0"',
      join(dir, 'installed.img'),
    ],
  })
  const view = await watchDevice(owner, box.deviceId)
  const agent = startAgent(t, box)
  await view.until((d) => d.online, 'the box is online')

  // 1.1.0: the good release
  await admin('release.publish', { release: release('1.1.0') })
  await admin('release.rollout', { version: '1.1.0', percent: 0, deviceIds: [box.deviceId] })
  const updated = await view.until(
    (d) => d.reported.firmware?.version === '1.1.0' && d.reported.firmware.state === 'UPDATED',
    'the box reports 1.1.0 UPDATED',
  )
  t.notOk(updated.reported.firmware!.error)
  const states = view.docs
    .map((d) => d.reported.firmware)
    .filter((f) => f?.version === '1.1.0')
    .map((f) => f!.state)
    .filter((s, i, all) => s !== all[i - 1])
  t.same(states, ['DOWNLOADING', 'DOWNLOADED', 'VERIFIED', 'UPDATING', 'UPDATED'], 'every step, in order')
  t.ok(readFileSync(join(box.dir, 'installed.img')).equals(artifact), 'the install command got the artifact')
  t.match(JSON.parse(readFileSync(join(box.config.stateDir, 'state.json'), 'utf8')), {
    firmwareVersion: '1.1.0',
  })
  t.notOk(
    existsSync(join(box.config.stateDir, 'downloads', 'firmware-1.1.0.bin')),
    'the download was removed',
  )
  t.match(await admin('release.status', { version: '1.1.0' }), {
    targeted: 1,
    updated: 1,
    failed: 0,
    pending: 0,
  })

  // 1.2.0: the manifest's sha256 is not the artifact's
  await admin('release.publish', { release: release('1.2.0', 'f'.repeat(64)) })
  await admin('release.rollout', { version: '1.2.0', percent: 0, deviceIds: [box.deviceId] })
  const mismatch = await view.until(
    (d) => d.reported.firmware?.version === '1.2.0' && d.reported.firmware.state === 'FAILED',
    'the box reports 1.2.0 FAILED',
  )
  t.match(mismatch.reported.firmware!.error, /sha256 mismatch/)
  t.notOk(
    view.docs.some(
      (d) => d.reported.firmware?.version === '1.2.0' && d.reported.firmware.state === 'UPDATING',
    ),
    'never installed',
  )
  t.match(await admin('release.status', { version: '1.2.0' }), { targeted: 1, failed: 1, updated: 0 })

  // it is not tried again: not with the next configuration that still names it, not while reporting
  const reports = agent.stats.statusReports
  await ok(owner, 'device.update', { deviceId: box.deviceId, name: 'Renamed box' })
  await waitUntil(
    () =>
      agent.stats.lastConfig?.name === 'Renamed box' &&
      agent.stats.lastConfig.firmware?.version === '1.2.0' &&
      agent.stats.statusReports >= reports + 2,
    'a new configuration naming 1.2.0 again, and two more status reports',
  )
  t.equal(downloads.get('/ovbox-1.2.0.img'), 1, 'the failed release was downloaded once')

  // 1.3.0: the install command fails, with its error output in the report
  await admin('release.publish', { release: release('1.3.0') })
  await admin('release.rollout', { version: '1.3.0', percent: 0, deviceIds: [box.deviceId] })
  const broken = await view.until(
    (d) => d.reported.firmware?.version === '1.3.0' && d.reported.firmware.state === 'FAILED',
    'the box reports 1.3.0 FAILED',
  )
  t.match(broken.reported.firmware!.error, /install command exited with code 1: flash: image does not boot/)
  t.match(JSON.parse(readFileSync(join(box.config.stateDir, 'state.json'), 'utf8')), {
    firmwareVersion: '1.1.0',
    failedFirmware: { version: '1.3.0', sha256 },
  })
})

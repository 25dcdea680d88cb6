import t from 'tap'
import type { DeviceConfig, FirmwareRelease } from '../../../schemas/firmware.ts'
import { recordMessages, startTestHub, waitUntil } from '../../helpers/hub.ts'
import { type Actor, actor, connectDevice, ok, parse, refused, roomy } from '../../helpers/actors.ts'
import { Requester } from '../../helpers/hub.ts'

/** Firmware/config releases: admins publish a manifest and roll it out; targeted ov-boxes get it in their configuration. */

const manifest = (version: string): FirmwareRelease => ({
  version,
  ovClientVersion: '0.20.1',
  artifact: { url: `https://releases.example.org/ovbox-${version}.img`, sha256: 'b'.repeat(64), size: 4096 },
  notes: 'jitter buffer fixes',
})

t.test(
  'a release reaches exactly the ov-boxes its rollout targets, and its progress is counted',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const opsClient = await th.connect({ clientId: 'ops-1', token: th.token({ sub: 'ops', role: 'admin' }) })
    const ops = { id: 'ops', name: 'operator', client: opsClient, req: new Requester(opsClient) }
    const alice = await actor(th, 'Alice')

    const boxes: { id: string; box: Actor; latest: () => DeviceConfig | undefined }[] = []
    for (let i = 0; i < 3; i++) {
      const { device, token } = await ok<{ device: { id: string }; token: string }>(alice, 'device.create', {
        name: `Box ${i}`,
        kind: 'ovbox',
      })
      const box = await connectDevice(th, device.id, token)
      const configs = recordMessages(box.client)
      await box.client.subscribeAsync(`devices/${device.id}/config`, { qos: 1 })
      const latest = () =>
        configs.messages
          .filter((m) => m.topic === `devices/${device.id}/config`)
          .map((m) => parse(m.payload) as DeviceConfig)
          .at(-1)
      boxes.push({ id: device.id, box, latest })
    }
    const browser = await ok<{ device: { id: string } }>(alice, 'device.create', {
      name: 'Tab',
      kind: 'browser',
    })
    await waitUntil(() => boxes.every((b) => b.latest() !== undefined), 'every box has its configuration')
    const before = boxes.map((b) => b.latest()!.revision)

    const denied = await refused(alice, 'release.publish', { release: manifest('1.1.0') })
    t.equal(denied.code, 'forbidden', 'a user cannot publish releases')
    const published = await ok<{ rollout: unknown }>(ops, 'release.publish', { release: manifest('1.1.0') })
    t.same(published.rollout, { percent: 0, deviceIds: [] }, 'a new release targets nobody')
    t.same(
      await ok(ops, 'release.publish', { release: manifest('1.1.0') }),
      published,
      'publishing the same manifest again changes nothing',
    )
    const clash = await refused(ops, 'release.publish', { release: { ...manifest('1.1.0'), notes: 'other' } })
    t.equal(clash.code, 'conflict', 'the same version with another manifest is a conflict')
    const bad = await refused(ops, 'release.publish', {
      release: { ...manifest('1.2'), artifact: { ...manifest('1.2.0').artifact, sha256: 'xyz' } },
    })
    t.equal(bad.code, 'invalid_request', 'a malformed manifest is refused')
    t.equal(
      (await refused(ops, 'release.rollout', { version: '9.9.9', percent: 5, deviceIds: [] })).code,
      'not_found',
    )

    const [first, second, third] = boxes as [(typeof boxes)[0], (typeof boxes)[0], (typeof boxes)[0]]
    await ok(ops, 'release.rollout', {
      version: '1.1.0',
      percent: 0,
      deviceIds: [first.id, browser.device.id],
    })
    await waitUntil(() => first.latest()?.firmware?.version === '1.1.0', 'the named box gets the release')
    t.same(first.latest()!.firmware, {
      version: '1.1.0',
      ovClientVersion: '0.20.1',
      artifact: manifest('1.1.0').artifact,
    })
    t.not(first.latest()!.revision, before[0], 'its configuration has a new revision')
    t.equal(second.latest()!.firmware, undefined, 'boxes not named get nothing')
    t.equal(second.latest()!.revision, before[1], 'and keep their revision')

    let status = await ok<Record<string, number>>(ops, 'release.status', { version: '1.1.0' })
    t.match(
      status,
      { targeted: 1, updated: 0, failed: 0, pending: 1 },
      'only ov-boxes count: the browser is not targeted',
    )

    await first.box.client.publishAsync(
      `devices/${first.id}/reported`,
      JSON.stringify({ firmware: { version: '1.1.0', state: 'UPDATED' } }),
      { qos: 1 },
    )
    await waitUntil(async () => {
      status = await ok<Record<string, number>>(ops, 'release.status', { version: '1.1.0' })
      return status.updated === 1
    }, 'the box reports the update')
    t.match(status, { targeted: 1, updated: 1, pending: 0 })

    await ok(ops, 'release.rollout', { version: '1.1.0', percent: 100, deviceIds: [] })
    await waitUntil(
      () => boxes.every((b) => b.latest()?.firmware?.version === '1.1.0'),
      'a full rollout reaches every box',
    )
    t.match(await ok(ops, 'release.status', { version: '1.1.0' }), { targeted: 3, updated: 1, pending: 2 })

    await ok(ops, 'release.publish', { release: manifest('1.2.0') })
    await ok(ops, 'release.rollout', { version: '1.2.0', percent: 0, deviceIds: [third.id] })
    await waitUntil(
      () => third.latest()?.firmware?.version === '1.2.0',
      'a newer release wins where it is rolled out',
    )
    t.match(
      await ok(ops, 'release.status', { version: '1.1.0' }),
      { targeted: 2 },
      'the newer release takes its box',
    )
    const list = await ok<{
      releases: { release: { version: string }; targeted: number; updated: number }[]
    }>(ops, 'release.list')
    t.same(
      list.releases.map((r) => [r.release.version, r.targeted, r.updated]),
      [
        ['1.2.0', 1, 0],
        ['1.1.0', 2, 1],
      ],
      'release.list: every release, newest first, with its progress counted as release.status counts it',
    )
    t.equal((await refused(alice, 'release.list')).code, 'forbidden', 'users cannot list releases')
    await ok(ops, 'release.rollout', { version: '1.2.0', percent: 0, deviceIds: [] })
    await waitUntil(() => third.latest()?.firmware?.version === '1.1.0', 'withdrawing it rolls the box back')
  },
)

t.test('a rollout survives a restart: targeted boxes find the release in their configuration', async (t) => {
  const th = await startTestHub(t, roomy)
  const alice = await actor(th, 'Alice')
  const { device } = await ok<{ device: { id: string } }>(alice, 'device.create', {
    name: 'Box',
    kind: 'ovbox',
  })
  const opsClient = await th.connect({ clientId: 'ops-2', token: th.token({ sub: 'ops', role: 'admin' }) })
  const ops = { id: 'ops', name: 'operator', client: opsClient, req: new Requester(opsClient) }
  await ok(ops, 'release.publish', { release: manifest('2.0.0') })
  await ok(ops, 'release.rollout', { version: '2.0.0', percent: 100, deviceIds: [] })
  await th.restart()
  const stored = await th.hub.store.get<{ id: string; version: number; tokenVersion: number; owner: string }>(
    'devices',
    device.id,
  )
  const box = await connectDevice(
    th,
    device.id,
    th.token({ sub: device.id, role: 'device', owner: stored!.owner, ver: stored!.tokenVersion }),
  )
  const configs = recordMessages(box.client)
  await box.client.subscribeAsync(`devices/${device.id}/config`, { qos: 1 })
  await waitUntil(() => configs.messages.length > 0, 'the retained configuration')
  t.equal((parse(configs.messages[0]!.payload) as DeviceConfig).firmware?.version, '2.0.0')
})

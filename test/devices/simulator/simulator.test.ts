import { pino } from 'pino'
import t from 'tap'
import { startSimulator } from '../../../devices/simulator/simulator.ts'
import { type Actor, actor, ok, roomy } from '../../helpers/actors.ts'
import { startTestHub, waitUntil } from '../../helpers/hub.ts'

/**
 * The simulator against a real hub: 30 musicians, each with one simulated ov-box, all online; when
 * they all join one ov stage, every box's configuration seats it and lists the 29 others, and every
 * box reports that it applied it.
 */
t.test('30 simulated ov-boxes go online and follow a stage change', async (t) => {
  const th = await startTestHub(t, roomy)
  const owners: Actor[] = []
  const boxes: { deviceId: string; token: string }[] = []
  for (let i = 0; i < 30; i++) {
    const owner = await actor(th, `Musician ${i}`)
    const created = await ok<{ device: { id: string }; token: string }>(owner, 'device.create', {
      name: `Box ${i}`,
      kind: 'ovbox',
    })
    owners.push(owner)
    boxes.push({ deviceId: created.device.id, token: created.token })
  }

  const sim = await startSimulator({
    hubUrl: th.mqttUrl,
    boxes,
    // reports are not what this test is about; each one makes the hub re-render the whole session
    statusIntervalSeconds: 30,
    backoff: { initialMs: 100, maxMs: 1000 },
    log: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
  })
  t.teardown(() => sim.stop())
  await waitUntil(() => sim.stats().online === 30, 'all 30 boxes online', 20_000)
  await waitUntil(
    () => sim.boxes().every((b) => b.lastConfig?.soundCards.length === 1),
    'every box has its simulated sound card in its configuration',
    20_000,
  )
  t.match(sim.stats(), { boxes: 30, connected: 30, online: 30 })
  const seated = () => sim.boxes().filter((b) => (b.lastConfig?.ov?.rendersettings.id ?? -1) >= 0)
  t.equal(seated().length, 0, 'nobody is on a stage yet')

  const [admin] = owners
  const stage = await ok<{ id: string }>(admin!, 'stage.create', { name: 'Big band', audioType: 'ov' })
  const group = await ok<{ id: string }>(admin!, 'group.create', {
    stageId: stage.id,
    name: 'Band',
    color: '#3366ff',
  })
  // one after the other: each join re-renders every seated box before it is answered
  for (const owner of owners) {
    const response = await owner.req.send(
      'stage.join',
      JSON.stringify({ id: 'join', params: { stageId: stage.id, groupId: group.id } }),
      'join',
      20_000,
    )
    t.ok(response.ok, `${owner.name} joins`)
  }

  await waitUntil(
    () =>
      sim
        .boxes()
        .every(
          (b) => (b.lastConfig?.ov?.rendersettings.id ?? -1) >= 0 && b.lastConfig?.ov?.roomdev.length === 29,
        ),
    'every box is seated with the 29 others in its configuration',
    30_000,
  )
  const seats = new Set(sim.boxes().map((b) => b.lastConfig!.ov!.rendersettings.id))
  t.equal(seats.size, 30, 'thirty different seats')
  t.ok(
    sim.boxes().every((b) => b.lastConfig!.ov!.room.size.x > 0),
    "every box has the stage's room",
  )
  await waitUntil(() => sim.stats().upToDate === 30, 'every box applied its newest configuration', 20_000)

  await ok(owners[7]!, 'device.update', { deviceId: boxes[7]!.deviceId, name: 'Renamed box' })
  await waitUntil(
    () => sim.box(boxes[7]!.deviceId).lastConfig?.name === 'Renamed box',
    "the owner's change reaches the box",
  )

  await sim.stop()
  t.match(sim.stats(), { connected: 0, online: 0 }, 'all stopped')
})

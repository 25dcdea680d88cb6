import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import type { RouterLoad } from '../../../schemas/actions/router.ts'
import type { StageState } from '../../../schemas/actions/stage.ts'
import type { AssignmentDoc } from '../../../services/collections.ts'
import { servedBy } from '../../../services/stages/rules.ts'
import { ok, operatorSees, parse, refused } from '../../helpers/actors.ts'
import { recordMessages, waitUntil } from '../../helpers/hub.ts'
import { berlin, createRouter, mediaStage, watchTracks } from './fixture.ts'
import { mediasoupTest } from '../../helpers/mediasoup.ts'

/** These tests start mediasoup workers: skipped where mediasoup is not installed. */
const msTest = mediasoupTest(t)

/** Routers coming and going under a stage: unassignment, loss, failover to a router run from the command line. */

const CLI = fileURLToPath(new URL('../../../devices/router/main.ts', import.meta.url))

const rtpParameters = (ssrc: number) => ({
  mid: '0',
  codecs: [{ mimeType: 'audio/opus', payloadType: 111, clockRate: 48000, channels: 2 }],
  encodings: [{ ssrc }],
})

msTest(
  'unassignment closes the stage on the router; a lost router leaves media unavailable until another serves',
  async (t) => {
    const { th, ops, agent, alice, bob, stage, watch } = await mediaStage(t)
    const bobSees = await watchTracks(bob, stage.id)

    const produce = async (ssrc: number) => {
      const send = await ok<{ transportId: string }>(alice, 'media.createTransport', { direction: 'send' })
      const { producerId } = await ok<{ producerId: string }>(alice, 'media.produce', {
        transportId: send.transportId,
        kind: 'audio',
        rtpParameters: rtpParameters(ssrc),
      })
      await waitUntil(() => bobSees.current().has(producerId), 'the producer is a stage track')
      return producerId
    }

    // unassignment: the stage stops needing mediasoup
    const first = await produce(1111)
    const room = agent.room(stage.id)!
    t.notOk(room.closed, 'the router has a mediasoup Router for the stage')
    await ok(alice, 'stage.update', { stageId: stage.id, patch: { audioType: 'none' } })
    await waitUntil(() => room.closed, "the stage's mediasoup Router is closed")
    t.equal(agent.room(stage.id), undefined, 'and forgotten')
    await waitUntil(() => !bobSees.current().has(first), 'its producers are no stage tracks any more')
    await waitUntil(
      async () =>
        servedBy(await th.hub.store.get<AssignmentDoc>('router_assignments', stage.id)).mediaRouter ===
        undefined,
      'the stage names no media router',
    )
    // stage.update publishes its copy of the stage after the distribution run its commit triggered
    // published a newer one: the older copy must not overwrite it
    const [retained] = await operatorSees(th, [`stages/${stage.id}`])
    t.equal(
      (parse(retained!.payload) as StageState).mediaRouter,
      undefined,
      'the retained stage names no media router either',
    )
    t.equal(
      (await refused(alice, 'media.capabilities')).code,
      'unavailable',
      'no mediasoup media: unavailable',
    )

    await ok(alice, 'stage.update', { stageId: stage.id, patch: { audioType: 'mediasoup' } })
    await waitUntil(
      () => watch.latest()?.mediaRouter?.router === agent.config.routerId,
      'assigned and served again',
    )
    t.not(agent.room(stage.id), room, 'with a new mediasoup Router')
    const second = await produce(2222)

    // loss: the router's connection dies without a word
    agent.crash()
    await waitUntil(
      () => !bobSees.current().has(second),
      "the lost router's producers are no stage tracks",
      10_000,
    )
    await waitUntil(() => watch.latest()?.mediaRouter === undefined, 'the stage names no media router')
    for (const action of ['media.capabilities', 'media.createTransport'] as const) {
      const params = action === 'media.createTransport' ? { direction: 'send' } : {}
      t.equal(
        (await refused(alice, action, params)).code,
        'unavailable',
        `${action}: unavailable without a router`,
      )
    }

    // another router, started from the command line (environment only), takes the stage over
    const backup = await createRouter(ops, 'eu-backup')
    const loads = recordMessages(ops.client)
    await ops.client.subscribeAsync(`routers/${backup.id}/load`, { qos: 0 })
    const child = spawn(process.execPath, ['--import=tsx', CLI], {
      env: {
        ...process.env,
        ROUTER_HUB_URL: th.mqttUrl,
        ROUTER_ID: backup.id,
        ROUTER_TOKEN: backup.token,
        ROUTER_POSITION: `${berlin.lat},${berlin.lng}`,
        ROUTER_CAPACITY: '3',
        ROUTER_LISTEN_IP: '127.0.0.1',
        ROUTER_RTC_PORTS: '42000-42999',
        ROUTER_WORKERS: '1',
        ROUTER_LOAD_INTERVAL_SECONDS: '0.2',
        LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    })
    t.teardown(() => stopChild(child))
    const lastLoad = () => {
      const m = loads.messages.filter((x) => x.topic === `routers/${backup.id}/load`).at(-1)
      return m ? (parse(m.payload) as RouterLoad) : undefined
    }
    await waitUntil(
      () => watch.latest()?.mediaRouter?.router === backup.id,
      'the backup router serves the stage',
      20_000,
    )
    const send = await ok<{ transportId: string }>(alice, 'media.createTransport', { direction: 'send' })
    t.ok(send.transportId, 'media works again, on the backup router')
    await waitUntil(
      () => lastLoad()?.stages === 1 && lastLoad()?.transports === 1,
      'its load shows the stage and the transport',
    )

    await ok(alice, 'stage.update', { stageId: stage.id, patch: { audioType: 'none' } })
    await waitUntil(
      () => lastLoad()?.stages === 0 && lastLoad()?.transports === 0,
      'unassigned: the backup closed the stage',
    )

    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    child.kill('SIGTERM')
    t.equal(await exited, 0, 'the agent stops cleanly on SIGTERM')
  },
)

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGKILL')
  await exited
}

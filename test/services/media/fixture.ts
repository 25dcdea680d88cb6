import { pino } from 'pino'
import type { RouterState } from '../../../schemas/actions/router.ts'
import type { StageState } from '../../../schemas/actions/stage.ts'
import { RouterAgent } from '../../../devices/router/agent.ts'
import { type Actor, actor, ok, parse, roomy } from '../../helpers/actors.ts'
import {
  Requester,
  type Teardown,
  type TestHub,
  recordMessages,
  startTestHub,
  waitUntil,
} from '../../helpers/hub.ts'

export const berlin = { lat: 52.52, lng: 13.405 }

export async function operator(th: TestHub): Promise<Actor> {
  const client = await th.connect({
    clientId: `ops-${Math.random().toString(36).slice(2)}`,
    token: th.token({ sub: 'ops', role: 'admin' }),
  })
  return { id: 'ops', name: 'operator', client, req: new Requester(client) }
}

export async function createRouter(ops: Actor, name: string): Promise<{ id: string; token: string }> {
  const { router, token } = await ok<{ router: RouterState; token: string }>(ops, 'router.create', { name })
  return { id: router.id, token }
}

/** The router agent in this process, with one real mediasoup worker, stopped at teardown. */
export async function startAgent(
  t: Teardown,
  th: TestHub,
  router: { id: string; token: string },
  options: { loadIntervalSeconds?: number } = {},
): Promise<RouterAgent> {
  const agent = new RouterAgent(
    {
      hubUrl: th.mqttUrl,
      routerId: router.id,
      token: router.token,
      position: berlin,
      capacity: { mediasoup: 5 },
      listenIp: '127.0.0.1',
      workers: 1,
      loadIntervalSeconds: options.loadIntervalSeconds ?? 10,
      keepaliveSeconds: 10,
    },
    {
      log: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
      onFatal: (err) => {
        throw err
      },
    },
  )
  await agent.start()
  t.teardown(() => agent.stop())
  return agent
}

/** Watches `stages/{s}` for a member; `latest()` is the newest stage document seen. */
export async function watchStage(member: Actor, stageId: string) {
  const seen = recordMessages(member.client)
  await member.client.subscribeAsync(`stages/${stageId}`, { qos: 1 })
  return {
    latest: () =>
      seen.messages
        .filter((m) => m.topic === `stages/${stageId}`)
        .map((m) => parse(m.payload) as StageState)
        .at(-1),
  }
}

/** Watches `stages/{s}/tracks/+`: `current()` maps track ids to the retained documents (cleared ones gone). */
export async function watchTracks(member: Actor, stageId: string) {
  const seen = recordMessages(member.client)
  await member.client.subscribeAsync(`stages/${stageId}/tracks/+`, { qos: 1 })
  return {
    current: () => {
      const tracks = new Map<string, Record<string, unknown>>()
      for (const m of seen.messages) {
        if (!m.topic.startsWith(`stages/${stageId}/tracks/`)) continue
        const id = m.topic.split('/')[3]!
        if (m.payload.length === 0) tracks.delete(id)
        else tracks.set(id, parse(m.payload) as Record<string, unknown>)
      }
      return tracks
    },
  }
}

/**
 * A hub, an operator, a registered router served by a real agent, and a stage (mediasoup audio)
 * that Alice (its admin) and Bob have joined, with the router serving it.
 */
export async function mediaStage(t: Teardown, options: { loadIntervalSeconds?: number } = {}) {
  const th = await startTestHub(t, roomy)
  const ops = await operator(th)
  const router = await createRouter(ops, 'eu-media')
  const agent = await startAgent(t, th, router, options)
  const alice = await actor(th, 'Alice')
  const bob = await actor(th, 'Bob')
  const stage = await ok<StageState>(alice, 'stage.create', {
    name: 'Jam',
    preferredPosition: berlin,
    audioType: 'mediasoup',
    videoType: 'none',
  })
  const group = await ok<{ id: string }>(alice, 'group.create', {
    stageId: stage.id,
    name: 'Band',
    color: '#336699',
  })
  await ok(alice, 'stage.join', { stageId: stage.id, groupId: group.id })
  await ok(bob, 'stage.join', { stageId: stage.id, groupId: group.id })
  const watch = await watchStage(alice, stage.id)
  await waitUntil(
    () => watch.latest()?.mediaRouter?.router === router.id,
    'the router serves the stage',
    10_000,
  )
  return { th, ops, router, agent, alice, bob, stage, group, watch }
}

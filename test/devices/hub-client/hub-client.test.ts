import { createServer, type Socket, connect as tcpConnect } from 'node:net'
import t from 'tap'
import type { PresencePayload } from '../../../schemas/actions/device.ts'
import type { ChatMessage } from '../../../schemas/actions/stage.ts'
import { topics } from '../../../schemas/topics.ts'
import {
  HubClient,
  type HubClientEvents,
  type HubClientOptions,
} from '../../../devices/hub-client/hub-client.ts'
import { RequestError } from '../../../devices/hub-client/requests.ts'
import { collections } from '../../../services/collections.ts'
import { type TestHub, type Teardown, startTestHub, waitUntil } from '../../helpers/hub.ts'
import { startProxy } from '../../helpers/proxy.ts'

/** A started hub client, stopped at teardown. */
function startClient(t: Teardown, options: HubClientOptions, events: HubClientEvents = {}): HubClient {
  const client = new HubClient({ backoff: { initialMs: 50, maxMs: 200 }, ...options }, events)
  client.start()
  t.teardown(() => client.stop())
  return client
}

/** A user of the hub and a client of theirs, online. */
async function userClient(t: Teardown, th: TestHub, url = th.mqttUrl, extra: Partial<HubClientOptions> = {}) {
  const user = await th.hub.users.createUser({ name: 'Ann' })
  const client = startClient(t, {
    url,
    clientId: `${user.id}-app`,
    token: th.token({ sub: user.id, name: 'Ann' }),
    ...extra,
  })
  await client.untilOnline()
  return { user, client }
}

/** Resolves with the first watched value on `filter` that satisfies `test`. */
function until<T>(
  client: HubClient,
  filter: string,
  test: (value: T | undefined) => boolean,
): Promise<T | undefined> {
  return new Promise((resolve) => {
    const stop = client.watch<T>(filter, ({ value }) => {
      if (!test(value)) return
      queueMicrotask(() => stop())
      resolve(value)
    })
  })
}

t.test(
  'a retried request keeps its id: the hub answers the retry and applies the request once',
  async (t) => {
    const th = await startTestHub(t)
    // forwards everything, except that the first connection to carry stage.create loses its response:
    // it is cut once the request is through, as a network drop would
    const sentIds: string[] = []
    const sockets = new Set<Socket>()
    let dropped = false
    const proxy = createServer((client) => {
      const upstream = tcpConnect(Number(new URL(th.mqttUrl).port), '127.0.0.1')
      let silenced = false
      sockets.add(client).add(upstream)
      client.on('data', (chunk: Buffer) => {
        const request = /req\/stage\.create[^{]{0,2}\{"id":"([0-9a-f]+)"/.exec(chunk.toString('latin1'))
        if (request) sentIds.push(request[1]!)
        upstream.write(chunk)
        if (request && !dropped) {
          dropped = silenced = true
          setTimeout(() => {
            client.destroy()
            upstream.destroy()
          }, 300)
        }
      })
      upstream.on('data', (chunk: Buffer) => {
        if (!silenced) client.write(chunk)
      })
      for (const s of [client, upstream]) {
        s.on('error', () => undefined)
        s.on('close', () => (s === client ? upstream : client).destroy())
      }
    })
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
    t.teardown(() => {
      for (const s of sockets) s.destroy()
      proxy.close()
    })
    const { user, client } = await userClient(
      t,
      th,
      `mqtt://127.0.0.1:${(proxy.address() as { port: number }).port}`,
      {
        requestTimeoutMs: 1500,
      },
    )

    const summaries = `users/${user.id}/stages/+`
    client.watch(summaries, () => undefined)
    const stage = await client.request('stage.create', { name: 'Retried' })
    t.equal(stage.name, 'Retried', 'the retry got the result')
    t.equal(client.connects, 2, 'the retry went over the new connection')
    t.equal(sentIds.length, 2, 'sent twice')
    t.equal(sentIds[0], sentIds[1], 'with the same id')
    const stored = await th.hub.store.find(collections.stages.name, { createdBy: user.id })
    t.equal(stored.length, 1, 'the hub created one stage')
    await waitUntil(() => client.state.entries(summaries).size > 0, 'the stage summary is cached')
    t.same([...client.state.entries(summaries).keys()], [`users/${user.id}/stages/${stage.id}`], 'one stage')
  },
)

t.test('a request without any response ends in a typed timeout error after its retry', async (t) => {
  const th = await startTestHub(t)
  const proxy = await startProxy(t, () => ({ host: '127.0.0.1', port: Number(new URL(th.mqttUrl).port) }))
  const { client } = await userClient(t, th, proxy.url, { requestTimeoutMs: 200 })
  proxy.silence()
  const started = Date.now()
  const err = await client.request('user.update', { name: 'Nobody hears' }).catch((e: unknown) => e)
  t.ok(err instanceof RequestError, 'a RequestError')
  t.match(err, {
    code: 'timeout',
    action: 'user.update',
    message: /no response to user.update within 200 ms \(sent twice\)/,
    reason: 'the hub did not answer in time: try again',
  })
  t.ok(Date.now() - started >= 400, 'it waited for the retry too')
})

t.test('after a hub restart the client reconnects with a renewed token and its watches', async (t) => {
  const th = await startTestHub(t)
  const proxy = await startProxy(t, () => ({ host: '127.0.0.1', port: Number(new URL(th.mqttUrl).port) }))
  const user = await th.hub.users.createUser({ name: 'Ann' })
  let tokens = 0
  const client = startClient(t, {
    url: proxy.url,
    clientId: `${user.id}-app`,
    token: () => {
      tokens++
      return th.token({ sub: user.id, name: 'Ann' })
    },
  })
  await client.untilOnline()
  await until(client, `users/${user.id}`, (profile) => profile !== undefined)

  await th.restart()
  await waitUntil(() => client.online && client.connects === 2, 'the client is back online', 10_000)
  t.equal(tokens, client.attempts, 'a token asked for every attempt')
  const renamed = until<{ name: string }>(client, `users/${user.id}`, (p) => p?.name === 'Anna')
  await client.request('user.update', { name: 'Anna' })
  t.match(await renamed, { name: 'Anna' }, 'requests and state flow again')
})

t.test(
  'presence: online of each session, offline at stop, the last will lost after a crash; messages only once online',
  async (t) => {
    const th = await startTestHub(t)
    const { client: owner } = await userClient(t, th)
    const created = await owner.request('device.create', { name: 'Box', kind: 'ovbox' })
    const deviceId = created.device.id
    const presences: (PresencePayload | undefined)[] = []
    owner.watch<PresencePayload>(`devices/${deviceId}/presence`, ({ value }) => presences.push(value))
    let session = 100
    /** Whether the device client was online at each message it handed over (its retained configuration). */
    const onlineAtMessage: boolean[] = []
    const device = (): HubClient => {
      const client: HubClient = startClient(
        t,
        {
          url: th.mqttUrl,
          clientId: deviceId,
          username: 'device',
          token: created.token,
          presence: { topic: `devices/${deviceId}/presence`, sessions: { next: () => ++session } },
          subscriptions: [`devices/${deviceId}/config`],
        },
        { message: () => onlineAtMessage.push(client.online) },
      )
      return client
    }

    const first = device()
    await first.untilOnline()
    await waitUntil(() => presences.at(-1)?.state === 'online', 'the owner sees the device online')
    t.same(presences.at(-1), { state: 'online', session: 101 })
    await waitUntil(() => onlineAtMessage.length > 0, 'the retained configuration arrived')
    t.same(onlineAtMessage, [true], 'the configuration was handed over once online, not before')
    await first.stop()
    await waitUntil(() => presences.at(-1)?.state === 'offline', 'the owner sees it offline')
    t.same(presences.at(-1), { state: 'offline', session: 101 })

    const second = device()
    await second.untilOnline()
    await waitUntil(() => presences.at(-1)?.session === 102, 'the next session online')
    second.abandon()
    await waitUntil(() => presences.at(-1)?.state === 'lost', 'the owner sees the last will')
    t.same(presences.at(-1), { state: 'lost', session: 102 }, 'the will of that session')
  },
)

t.test(
  'the state cache: current values at once, then changes, and a cleared topic removed with an event',
  async (t) => {
    const th = await startTestHub(t)
    const { user, client } = await userClient(t, th)
    const first = await client.request('stage.create', { name: 'First' })
    const filter = `users/${user.id}/stages/+`
    const topic = (stageId: string) => `users/${user.id}/stages/${stageId}`
    const early: { topic: string; value: unknown }[] = []
    client.watch(filter, (change) => early.push(change))
    await waitUntil(() => client.state.get(topic(first.id)) !== undefined, 'the retained summary arrived')

    const late: { topic: string; value: unknown }[] = []
    client.watch(filter, (change) => late.push(change))
    t.match(
      late,
      [{ topic: topic(first.id), value: { name: 'First' } }],
      'a new watcher gets the current value at once',
    )

    const second = await client.request('stage.create', { name: 'Second' })
    await waitUntil(() => late.some((c) => c.topic === topic(second.id)), 'the new stage as a change')
    t.match(
      late.find((c) => c.topic === topic(second.id)),
      { value: { name: 'Second' } },
    )

    await client.request('stage.remove', { stageId: first.id })
    await waitUntil(() => late.at(-1)?.value === undefined, 'the removal as a change')
    t.same(late.at(-1), { topic: topic(first.id), value: undefined }, 'cleared: the value is undefined')
    t.equal(client.state.get(topic(first.id)), undefined, 'and the topic left the cache')
    t.same([...client.state.entries(filter).keys()], [topic(second.id)])
    t.same(early, late, 'both watchers saw the same')
  },
)

t.test(
  "the web app's invitation flow through the typed hub client over WebSocket: create, preview, redeem, the admin sees the member arrive",
  async (t) => {
    const th = await startTestHub(t)
    const { client: admin } = await userClient(t, th, th.wsUrl)
    const { user: guest, client: invitee } = await userClient(t, th, th.wsUrl)
    const stage = await admin.request('stage.create', { name: 'Linked', password: 'stage secret' })
    const group = await admin.request('group.create', { stageId: stage.id, name: 'Band' })
    const { code, invite } = await admin.request('invite.create', { stageId: stage.id, groupId: group.id })
    const arrived = until<{ joined: boolean }>(
      admin,
      `stages/${stage.id}/members/${guest.id}`,
      (member) => member?.joined === true,
    )

    const preview = await invitee.request('invite.preview', { code })
    t.match(preview, { stageId: stage.id, name: 'Linked', hasPassword: true, groupId: group.id })
    t.equal(preview.expiresAt, invite.expiresAt)
    const refusal = await invitee.request('invite.redeem', { code }).catch((e: unknown) => e)
    t.ok(refusal instanceof RequestError, 'without the password the hub refuses')
    t.match((refusal as RequestError).message, /needs a password/, "with the hub's message")
    const member = await invitee.request('invite.redeem', { code, password: 'stage secret' })
    t.equal(member.groupId, group.id)
    t.match(await arrived, { joined: true }, "the admin's retained view shows the member joined")

    const { invites } = await admin.request('invite.list', { stageId: stage.id })
    t.equal(invites[0]?.redeemed, 1)
  },
)

t.test(
  "listen follows a topic the hub does not retain (a stage's chat): each message as it comes, nothing kept, until stopped",
  async (t) => {
    const th = await startTestHub(t)
    const { user, client } = await userClient(t, th)
    const stage = await client.request('stage.create', { name: 'Chat room' })
    const group = await client.request('group.create', { stageId: stage.id, name: 'Band' })
    await client.request('stage.join', { stageId: stage.id, groupId: group.id })

    const chat = topics.chat.build(stage.id)
    const heard: { topic: string; value: ChatMessage }[] = []
    const stop = client.listen<ChatMessage>(chat, (topic, value) => heard.push({ topic, value }))
    await new Promise((resolve) => setTimeout(resolve, 100)) // the subscription is granted
    const sent = await client.request('chat.send', { text: 'hello band' })
    await waitUntil(() => heard.length === 1, 'the chat message arrived')
    t.same(heard[0], { topic: chat, value: sent }, 'the message as the hub sent it, with sender and time')
    t.equal(heard[0]!.value.userId, user.id, "the sender's id")
    t.equal(client.state.get(chat), undefined, 'a notice is not kept in the state cache')

    stop()
    stop() // a second stop changes nothing
    await new Promise((resolve) => setTimeout(resolve, 100))
    await client.request('chat.send', { text: 'anyone?' })
    await new Promise((resolve) => setTimeout(resolve, 300))
    t.equal(heard.length, 1, 'after stopping: nothing more')
  },
)

t.test(
  'a watched filter the hub refuses (a stage the person is not in) stays silent and does not keep the client from going online',
  async (t) => {
    const th = await startTestHub(t)
    const owner = await userClient(t, th)
    const stage = await owner.client.request('stage.create', { name: 'Private' })
    const user = await th.hub.users.createUser({ name: 'Bo' })
    const client = new HubClient({
      url: th.mqttUrl,
      clientId: `${user.id}-app`,
      token: th.token({ sub: user.id, name: 'Bo' }),
      backoff: { initialMs: 50, maxMs: 200 },
    })
    const seen: unknown[] = []
    client.watch(topics.stage.build(stage.id), ({ value }) => seen.push(value))
    client.watch(topics.user.build(user.id), ({ value }) => seen.push(value))
    client.start()
    t.teardown(() => client.stop())
    await client.untilOnline()
    await waitUntil(() => seen.length === 1, 'the own profile arrived')
    t.match(seen, [{ id: user.id }], 'the allowed watch works; the refused one receives nothing')
    t.equal(client.connects, 1, 'online at the first attempt, not dropped for the refusal')
    t.ok(await client.request('stage.create', { name: 'Mine' }), 'requests are answered')
  },
)

t.test(
  'a watch stopped and started again in one task (a page replaced by one watching the same filter) keeps the values and gets every later change; stopped for good, the filter is unsubscribed',
  async (t) => {
    const th = await startTestHub(t)
    const { user, client } = await userClient(t, th)
    const first = await client.request('stage.create', { name: 'First' })
    const filter = `users/${user.id}/stages/+`
    const topic = (stageId: string) => `users/${user.id}/stages/${stageId}`
    let stop = client.watch(filter, () => undefined)
    await waitUntil(() => client.state.get(topic(first.id)) !== undefined, 'the retained summary arrived')

    for (let round = 1; round <= 3; round++) {
      const seen: { topic: string; value: unknown }[] = []
      // the old page's cleanup, then the new page's watch, in the same task
      stop()
      stop = client.watch(filter, (change) => seen.push(change))
      t.match(
        seen,
        [{ topic: topic(first.id), value: { name: 'First' } }],
        `round ${round}: the value at once`,
      )
      const next = await client.request('stage.create', { name: `Stage ${round}` })
      await waitUntil(() => seen.some((c) => c.topic === topic(next.id)), `round ${round}: a later change`)
      t.pass(`round ${round}: a later change arrives`)
    }
    stop()

    await new Promise((resolve) => setTimeout(resolve, 50))
    const after = await client.request('stage.create', { name: 'Unwatched' })
    await new Promise((resolve) => setTimeout(resolve, 200))
    t.equal(client.state.get(topic(after.id)), undefined, 'stopped for good: nothing arrives any more')
    t.same([...client.state.entries(filter).keys()], [], 'and the cache dropped the values')
  },
)

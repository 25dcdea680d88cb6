import t from 'tap'
import {
  type ReceivedMessage,
  type TestHub,
  recordMessages,
  sleep,
  startTestHub,
  waitForMessage,
} from '../helpers/hub.ts'
import { type Actor, connectDevice, ok, roomy } from '../helpers/actors.ts'
import { Requester } from '../helpers/hub.ts'

/**
 * Requests stay between a client and the hub (issue 12, item 3): an operator token may subscribe to
 * everything, yet it reads only state, never a request, someone else's response or a secret.
 */

const JWT = /eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/
const SCRYPT = /scrypt\$\d+\$/
const BCRYPT = /\$2[aby]?\$\d\d\$/

interface TokenReply {
  userId: string
  token: string
}

async function post<T>(th: TestHub, path: string, body: unknown): Promise<T> {
  const response = await fetch(`${th.httpUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  if (!response.ok) throw new Error(`${path} answered ${response.status}: ${await response.text()}`)
  return (await response.json()) as T
}

async function connectAs(th: TestHub, clientId: string, token: string): Promise<Actor> {
  const client = await th.connect({ clientId, token })
  return { id: clientId, name: clientId, client, req: new Requester(client) }
}

/** Sends a request with a fixed id, then its retry with the same id; both must succeed. */
async function twice<T>(a: Actor, action: string, params: unknown, id: string): Promise<T[]> {
  const answers = [await a.req.request(action, params, id), await a.req.request(action, params, id)]
  for (const answer of answers)
    if (!answer.ok) throw new Error(`${action} ${id} was refused: ${JSON.stringify(answer.error)}`)
  return answers.map((answer) => answer.result as T)
}

/** The secrets among everything an eavesdropper received: which secret or pattern, on which topic. */
function leaks(messages: readonly ReceivedMessage[], secrets: readonly string[]): string[] {
  const found: string[] = []
  for (const { topic, payload } of messages) {
    const text = `${topic} ${payload.toString('utf8')}`
    for (const secret of secrets) if (text.includes(secret)) found.push(`${topic}: the secret ${secret}`)
    for (const [name, shape] of [
      ['a JWT', JWT],
      ['an scrypt hash', SCRYPT],
      ['a bcrypt hash', BCRYPT],
    ] as const)
      if (shape.test(text)) found.push(`${topic}: ${name}`)
  }
  return found
}

t.test(
  'an operator holding # and $SYS/# through sign-up, log-in, stage passwords, devices, claims, token rotation, password changes and retried requests receives state but no password, hash or token',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const eavesdropper = await th.connect({
      clientId: 'ops-eavesdropper',
      token: th.token({ sub: 'ops', role: 'admin' }),
    })
    const heard = recordMessages(eavesdropper)
    t.same(
      (await eavesdropper.subscribeAsync(['#', '$SYS/#'], { qos: 1 })).map((g) => g.qos),
      [1, 1],
      'an operator may subscribe to everything',
    )

    const annPassword = 'ann first long passphrase'
    const annNewPassword = 'ann second long passphrase'
    const bobPassword = 'bob own long passphrase'
    const stagePassword = 'the stage passphrase'
    const issued: string[] = []
    const keep = <T extends { token: string }>(reply: T): T => {
      issued.push(reply.token)
      return reply
    }

    // accounts over HTTP
    const annSignup = keep(
      await post<TokenReply>(th, '/auth/signup', {
        email: 'ann@example.org',
        password: annPassword,
        name: 'Ann',
      }),
    )
    const annLogin = keep(
      await post<TokenReply>(th, '/auth/login', { email: 'ann@example.org', password: annPassword }),
    )
    const bobSignup = keep(
      await post<TokenReply>(th, '/auth/signup', {
        email: 'bob@example.org',
        password: bobPassword,
        name: 'Bob',
      }),
    )
    const ann = await connectAs(th, 'ann-app', annLogin.token)
    const bob = await connectAs(th, 'bob-app', bobSignup.token)

    // a stage with a password, joined by another user (and the join retried)
    const [stage] = await twice<{ id: string }>(
      ann,
      'stage.create',
      { name: 'Night', password: stagePassword },
      'create-stage',
    )
    const group = await ok<{ id: string }>(ann, 'group.create', {
      stageId: stage!.id,
      name: 'Band',
      color: '#112233',
    })
    await twice(bob, 'stage.join', { stageId: stage!.id, groupId: group.id, password: stagePassword }, 'join')
    await ok(ann, 'stage.update', { stageId: stage!.id, patch: { password: `${stagePassword} 2` } })

    // a device: created (and the create retried), claimed with a code, its token rotated (and retried)
    const created = await twice<{ device: { id: string }; token: string }>(
      ann,
      'device.create',
      { name: 'Box', kind: 'ovbox' },
      'create-box',
    )
    created.forEach(keep)
    const deviceId = created[0]!.device.id
    const { code } = await ok<{ code: string }>(ann, 'device.claimCode', { deviceId })
    const claimed = keep(await post<{ token: string }>(th, '/devices/claim', { code }))
    const rotated = await twice<{ token: string }>(ann, 'device.token', { deviceId }, 'rotate-box')
    rotated.forEach(keep)
    await connectDevice(th, deviceId, rotated[1]!.token)

    // routers, registered by another operator
    const operator = await connectAs(th, 'ops-registrar', th.token({ sub: 'ops2', role: 'admin' }))
    const router = await twice<{ router: { id: string }; token: string }>(
      operator,
      'router.create',
      { name: 'R1' },
      'create-router',
    )
    router.forEach(keep)
    ;(
      await twice<{ token: string }>(operator, 'router.token', { routerId: router[0]!.router.id }, 'rotate')
    ).forEach(keep)

    // the account secured: password changed (and the change retried), signed out everywhere
    const changed = await twice<{ token: string }>(
      ann,
      'user.changePassword',
      { currentPassword: annPassword, newPassword: annNewPassword },
      'change-password',
    )
    changed.forEach(keep)
    keep(await ok<{ token: string }>(ann, 'user.signOut'))
    await sleep(300)
    heard.stop()

    const secrets = [annPassword, annNewPassword, bobPassword, stagePassword, code, ...issued]
    t.equal(
      issued.length,
      15,
      'fifteen tokens were handed out: 3 by sign-up and log-in, 1 by the claim, 11 over MQTT',
    )
    t.same(leaks(heard.messages, secrets), [], 'nothing received carries a password, hash or token')
    t.same(
      heard.messages.filter((m) => m.topic.startsWith('clients/')).map((m) => m.topic),
      [],
      'nor any request or response: those stay between a client and the hub',
    )

    // it was listening: state reached it, and so did $SYS
    const topics = new Set(heard.messages.map((m) => m.topic))
    for (const topic of [
      `users/${annSignup.userId}`,
      `stages/${stage!.id}`,
      `stages/${stage!.id}/members/${bobSignup.userId}`,
      `users/${annSignup.userId}/devices/${deviceId}`,
      `devices/${deviceId}/config`,
      `routers/${router[0]!.router.id}`,
    ])
      t.ok(topics.has(topic), `the operator received ${topic}`)
    t.ok(
      heard.messages.some((m) => m.topic.startsWith('$SYS/')),
      'and the broker’s own $SYS topics',
    )
    t.not(claimed.token, created[0]!.token, 'the claim handed out a token of its own')
  },
)

t.test(
  'a response goes only to the client id that asked: another client subscribed to clients/{that id}/res, to clients/# or to #, connected or in a persistent session, gets nothing',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const user = await th.hub.users.createUser({ name: 'Ann' })
    const asker = await connectAs(th, 'ann-app', th.token({ sub: user.id, name: 'Ann' }))
    const ownRes = 'clients/ann-app/res'
    const adminToken = th.token({ sub: 'ops', role: 'admin' })

    // an operator in a persistent session, offline while the requests are answered
    const offline = await th.connect({ clientId: 'ops-offline', clean: false, token: adminToken })
    await offline.subscribeAsync(['clients/#', '#'], { qos: 1 })
    await offline.endAsync()

    const listener = await th.connect({ clientId: 'ops-listener', token: adminToken })
    t.same(
      (await listener.subscribeAsync([ownRes, 'clients/ann-app/req/+', 'clients/#', '#'], { qos: 1 })).map(
        (g) => g.qos,
      ),
      [1, 1, 1, 1],
      'the ACL lets an operator subscribe to another client’s responses',
    )
    const heardLive = recordMessages(listener)
    const askerGot = waitForMessage(asker.client, ownRes)

    const created = await ok<{ device: { id: string }; token: string }>(asker, 'device.create', {
      name: 'Box',
      kind: 'ovbox',
    })
    const response = JSON.parse((await askerGot).payload.toString()) as { result: { token: string } }
    t.equal(response.result.token, created.token, 'the asker got it')
    await ok(asker, 'user.update', { name: 'Anna' })
    await sleep(200)
    heardLive.stop()

    t.same(
      heardLive.messages.filter((m) => m.topic.startsWith('clients/')).map((m) => m.topic),
      [],
      'the connected operator received no request and no response',
    )
    t.ok(
      heardLive.messages.some((m) => m.topic === `users/${user.id}`),
      'though it received the state those requests changed',
    )

    const resumed = await th.connect({ clientId: 'ops-offline', clean: false, token: adminToken })
    const heardLater = recordMessages(resumed)
    await sleep(300)
    heardLater.stop()
    t.same(
      heardLater.messages.filter((m) => m.topic.startsWith('clients/')).map((m) => m.topic),
      [],
      'and the persistent session had none of them queued',
    )
    t.ok(
      heardLater.messages.some((m) => m.topic === `users/${user.id}`),
      'while the state changes it missed were queued for it',
    )
  },
)

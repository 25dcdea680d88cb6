import t from 'tap'
import type { RequestRecordDoc } from '../../../services/collections.ts'
import { type Actor, connectAs, roomy } from '../../helpers/actors.ts'
import { Requester, connackCode, startTestHub } from '../../helpers/hub.ts'

t.test(
  'a request id reused for another action within 10 minutes is refused with conflict and not applied',
  async (t) => {
    const th = await startTestHub(t)
    const user = await th.hub.users.createUser({ name: 'Ida' })
    const client = await th.connect({ clientId: 'ida-app', token: th.token({ sub: user.id }) })
    const requests = new Requester(client)

    const first = await requests.request('user.update', { name: 'Ida B' }, 'same-id')
    t.equal(first.ok, true)
    const reused = await requests.request('stage.create', { name: 'Never created' }, 'same-id')
    t.equal(reused.error?.code, 'conflict')
    t.match(reused.error?.message, /already used for user\.update/)
    t.same(await th.hub.store.find('stages', { createdBy: user.id }), [], 'the second action was not applied')

    const retry = await requests.request('user.update', { name: 'Ida B' }, 'same-id')
    t.same(retry, first, 'a real retry still gets the original response')
  },
)

t.test(
  'the retry record keeps no usable token: a retried device.create, device.token, router.create, router.token, user.changePassword or user.signOut gets its token signed again, the same one, which connects, also after a restart',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const user = await th.hub.users.createUser({
      name: 'Ida',
      email: 'ida@example.org',
      password: 'ida long passphrase',
    })
    const ida = await connectAs(th, user.id, 'Ida')
    const opsClient = await th.connect({
      clientId: 'ops-app',
      token: th.token({ sub: 'ops', role: 'admin' }),
    })
    const ops: Actor = { id: 'ops', name: 'ops', client: opsClient, req: new Requester(opsClient) }
    const issued: string[] = []
    /** The request and its retry with the same id: the same answer, whose token is kept for the checks. */
    const twice = async (who: Actor, action: string, params: unknown, id: string) => {
      const first = await who.req.request(action, params, id)
      const retry = await who.req.request(action, params, id)
      t.ok(first.ok, `${action} succeeds`)
      t.same(retry, first, `${action}: the retry gets the same answer, token included`)
      const result = first.result as { token: string; expiresAt: string }
      issued.push(result.token)
      return result
    }
    const connects = async (token: string, clientId: string, what: string) =>
      t.equal(await connackCode(th.mqttUrl, { clientId, username: 'token', password: token }), 0, what)

    const box = await twice(ida, 'device.create', { name: 'Box', kind: 'ovbox' }, 'create')
    const boxId = (box as unknown as { device: { id: string } }).device.id
    await connects(box.token, boxId, 'the device token of the create connects')
    const rotatedBox = await twice(ida, 'device.token', { deviceId: boxId }, 'rotate')
    await connects(rotatedBox.token, boxId, 'the rotated device token connects')
    const router = await twice(ops, 'router.create', { name: 'R1' }, 'create')
    const routerId = (router as unknown as { router: { id: string } }).router.id
    await connects(router.token, routerId, 'the router token connects')
    const rotatedRouter = await twice(ops, 'router.token', { routerId }, 'rotate')
    await connects(rotatedRouter.token, routerId, 'the rotated router token connects')
    const changed = await twice(
      ida,
      'user.changePassword',
      { currentPassword: 'ida long passphrase', newPassword: 'ida new long passphrase' },
      'change',
    )
    await connects(changed.token, 'ida-probe-1', 'the user token of the password change connects')
    const signedOut = await twice(ida, 'user.signOut', {}, 'sign-out')
    await connects(signedOut.token, 'ida-probe-2', 'the user token of the sign-out connects')

    const records = await th.hub.store.find<RequestRecordDoc>('requests')
    t.equal(records.filter((r) => r.issued).length, 6, 'six records hold what signs a token again')
    const stored = JSON.stringify(records)
    t.same(
      issued.filter((token) => stored.includes(token)),
      [],
      'and none holds a token it handed out',
    )
    t.notMatch(stored, /eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/, 'nor anything shaped like one')

    // the record is what answers: a retry after a restart gets the same token again
    const clientId = ida.client.options.clientId!
    await th.restart()
    const again = await th.connect({ clientId, token: signedOut.token })
    const retry = await new Requester(again).request('user.signOut', {}, 'sign-out')
    t.equal((retry.result as { token: string }).token, signedOut.token, 'after a restart too')
  },
)

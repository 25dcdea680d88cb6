import t from 'tap'
import { Requester, startTestHub } from '../../helpers/hub.ts'

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

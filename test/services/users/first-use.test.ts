import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import t from 'tap'
import type { StageState } from '../../../schemas/actions/stage.ts'
import type { UserProfile } from '../../../schemas/state.ts'
import type { UserDoc } from '../../../services/collections.ts'
import { TEST_SECRET, type TestHub, connackCode, startTestHub, rs256Env } from '../../helpers/hub.ts'
import { type Actor, ok, operatorSees, retainedOn } from '../../helpers/actors.ts'
import { Requester } from '../../helpers/hub.ts'

/**
 * A user token for an account the store does not know (minted by the operator's CLI, or by an
 * external identity provider holding the RS256/ES256 private key) gets a profile from its claims on
 * its first CONNECT; a deleted account's token recreates nothing.
 */

const run = promisify(execFile)
const CLI = new URL('../../../bin/stagehub.ts', import.meta.url).pathname

let seq = 0
async function connectWith(th: TestHub, userId: string, token: string): Promise<Actor> {
  const client = await th.connect({ clientId: `first-${++seq}`, token })
  return { id: userId, name: userId, client, req: new Requester(client) }
}

const storedUsers = (th: TestHub, id: string) => th.hub.store.find<UserDoc>('users', { id })

t.test(
  'a CLI-minted user token for an unknown user gets a profile on users/{u} from its claims and can stage.create',
  async (t) => {
    const th = await startTestHub(t)
    const { stdout } = await run(
      'node',
      ['--import=tsx', CLI, 'token', '--role', 'user', '--sub', 'newcomer', '--name', 'New Comer'],
      { env: { ...process.env, JWT_SECRET: TEST_SECRET } },
    )
    t.same(await storedUsers(th, 'newcomer'), [], 'the store does not know the user before')

    const newcomer = await connectWith(th, 'newcomer', stdout.trim())
    t.match(
      await retainedOn(newcomer.client, 'users/newcomer'),
      { id: 'newcomer', name: 'New Comer', version: 1 },
      'the profile is retained on users/{u} with the token’s name',
    )
    t.match(
      await ok<StageState>(newcomer, 'stage.create', { name: 'First stage' }),
      { name: 'First stage', admins: ['newcomer'] },
      'the new user can create a stage',
    )
    t.match(
      await ok<UserProfile>(newcomer, 'user.update', { name: 'Renamed' }),
      { id: 'newcomer', name: 'Renamed' },
      'and update the profile',
    )

    const again = await connectWith(th, 'newcomer', th.token({ sub: 'newcomer', name: 'Other Name' }))
    t.match(
      await retainedOn(again.client, 'users/newcomer'),
      { name: 'Renamed' },
      'a later connection with another name claim changes nothing: the profile is the user’s',
    )
    t.equal((await storedUsers(th, 'newcomer')).length, 1, 'one user document')
  },
)

t.test(
  'an RS256 token of an external identity provider: profile on first use, eight connections at once create it once, a name the rules refuse falls back to the id',
  async (t) => {
    const th = await startTestHub(t, rs256Env())
    t.equal(th.config.jwt.algorithm, 'RS256', 'the hub verifies RS256 tokens')

    const token = th.token({ sub: 'idp-user-1', name: '  Ida P. ' })
    const all = await Promise.all(Array.from({ length: 8 }, () => connectWith(th, 'idp-user-1', token)))
    t.ok(
      all.every((a) => a.client.connected),
      'all eight concurrent first connections are accepted',
    )
    const docs = await storedUsers(th, 'idp-user-1')
    t.equal(docs.length, 1, 'exactly one user document')
    t.match(docs[0], { name: 'Ida P.', version: 1 }, 'named from the claim, trimmed, written once')
    t.match(
      await ok<StageState>(all[3]!, 'stage.create', { name: 'IdP stage' }),
      { admins: ['idp-user-1'] },
      'any of them can create a stage',
    )

    const unnamed = await connectWith(
      th,
      'idp-user-2',
      th.token({ sub: 'idp-user-2', name: 'bad\u0007name' }),
    )
    t.match(
      await retainedOn(unnamed.client, 'users/idp-user-2'),
      { id: 'idp-user-2', name: 'idp-user-2' },
      'a name with control characters is not taken: the id names the profile until user.update',
    )
  },
)

t.test('a deleted user’s token is refused with CONNACK 5 and recreates no profile', async (t) => {
  const th = await startTestHub(t)
  const token = th.token({ sub: 'leaver', name: 'Leaver' })
  const leaver = await connectWith(th, 'leaver', token)
  t.equal((await storedUsers(th, 'leaver')).length, 1, 'created on first use')
  await ok(leaver, 'user.delete', {})
  await new Promise((resolve) => setTimeout(resolve, 100))

  for (const again of [token, th.token({ sub: 'leaver', name: 'Back again' })]) {
    t.equal(
      await connackCode(th.mqttUrl, { clientId: `probe-${++seq}`, username: 'token', password: again }),
      5,
      'the account’s tokens, old and new, are refused',
    )
  }
  t.same(await storedUsers(th, 'leaver'), [], 'no user document was recreated')
  t.same(
    (await operatorSees(th, ['users/leaver'])).map((m) => m.payload.toString()),
    [],
    'nothing is retained on users/{u}',
  )
})

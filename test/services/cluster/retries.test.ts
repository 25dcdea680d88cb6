import { MongoClient } from 'mongodb'
import t from 'tap'
import type { StageState } from '../../../schemas/actions/stage.ts'
import { Requester, startTestHub } from '../../helpers/hub.ts'
import { freshMongoUrl, mongoMissing } from '../../helpers/mongo.ts'
import { redisMissing, startRedis } from '../../helpers/redis.ts'

/**
 * Work done once (issue 15 item 3): a request id is recorded in the store in the request's own
 * transaction, so a client that reconnects through another process and repeats the id is answered
 * the first answer again, and the action applies once: sequentially and when both copies race.
 */
t.test(
  'a request retried through another process (same client id, same request id) applies once and gets the same answer',
  { skip: redisMissing || mongoMissing },
  async (t) => {
    const redis = await startRedis(t)
    const mongoUrl = freshMongoUrl(t)
    const env = { MONGO_URL: mongoUrl, REDIS_URL: redis.url }
    const p1 = await startTestHub(t, { ...env, HUB_ID: 'p1' })
    const p2 = await startTestHub(t, { ...env, HUB_ID: 'p2' })
    const token = p1.token({ sub: 'alice', name: 'Alice' })
    const mongo = new MongoClient(mongoUrl)
    t.teardown(() => mongo.close())
    const stages = () => mongo.db().collection('stages').countDocuments({ name: /^Once/ })

    // sequential: the answer is lost with the connection to p1; the client repeats through p2
    const first = await p1.connect({ clientId: 'alice-app', token })
    const created = await new Requester(first).request('stage.create', { name: 'Once' }, 'create-1')
    t.ok(created.ok, 'created through p1')
    await first.endAsync()
    const again = await p2.connect({ clientId: 'alice-app', token })
    const retried = await new Requester(again).request('stage.create', { name: 'Once' }, 'create-1')
    t.same(retried, created, 'p2 answers the retry with the first answer')
    t.equal(await stages(), 1, 'one stage')

    // racing: the same id through both processes at once (a client that reconnected before its first
    // copy was answered); one transaction records the id, the other is answered from it
    const [a, b] = await Promise.all([
      p1.connect({ clientId: 'bob-app', token: p1.token({ sub: 'bob', name: 'Bob' }) }),
      p2.connect({ clientId: 'bob-app', token: p2.token({ sub: 'bob', name: 'Bob' }) }),
    ])
    const [ra, rb] = await Promise.all([
      new Requester(a).request('stage.create', { name: 'Once raced' }, 'create-2'),
      new Requester(b).request('stage.create', { name: 'Once raced' }, 'create-2'),
    ])
    t.ok(ra.ok && rb.ok, 'both copies answered ok')
    t.equal((ra.result as StageState).id, (rb.result as StageState).id, 'with the same stage')
    t.equal(await stages(), 2, 'one more stage, not two')
  },
)

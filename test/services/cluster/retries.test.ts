import { MongoClient } from 'mongodb'
import t from 'tap'
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

    // racing: the client reconnects through p2 while its first copy is still being handled on p1
    // (the same client id on two processes is a takeover: p1's connection closes, its answer is lost)
    const bobToken = p1.token({ sub: 'bob', name: 'Bob' })
    const a = await p1.connect({ clientId: 'bob-app', token: bobToken })
    // a round trip first: p1's announcement of this connection has crossed Redis before p2's (two
    // connections of one client id at the same instant: the one Redis orders last wins, on both)
    await new Requester(a).request('user.update', { name: 'Bob' }, 'warm-up')
    const firstCopy = new Requester(a)
      .request('stage.create', { name: 'Once raced' }, 'create-2')
      .catch(() => undefined)
    const b = await p2.connect({ clientId: 'bob-app', token: bobToken })
    const rb = await new Requester(b).request('stage.create', { name: 'Once raced' }, 'create-2')
    const ra = await firstCopy
    t.ok(rb.ok, 'the copy through p2 is answered ok')
    if (ra) t.same(ra, rb, 'and p1, had its answer arrived, said the same')
    t.equal(await stages(), 2, 'one more stage, not two')
  },
)

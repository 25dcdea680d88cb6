import t from 'tap'
import { type TestHub, startTestHub, waitUntil } from '../../helpers/hub.ts'
import { freshMongoUrl, mongoMissing } from '../../helpers/mongo.ts'
import { redisMissing, startRedis } from '../../helpers/redis.ts'

/** Counts the purges a hub's store runs, per collection. */
function countPurges(th: TestHub): Map<string, number> {
  const counts = new Map<string, number>()
  const backend = th.hub.store.backend
  const purge = backend.purgeExpired.bind(backend)
  backend.purgeExpired = (collection, field, limit) => {
    counts.set(collection, (counts.get(collection) ?? 0) + 1)
    return purge(collection, field, limit)
  }
  return counts
}

t.test(
  'the deployment’s purges run on the coordinator only, and on another process once it stops',
  { skip: redisMissing || mongoMissing },
  async (t) => {
    const redis = await startRedis(t)
    // an audit retention of about a second prunes every 100 ms
    const env = { MONGO_URL: freshMongoUrl(t), REDIS_URL: redis.url, AUDIT_RETENTION_DAYS: '0.00001' }
    const p1 = await startTestHub(t, { ...env, HUB_ID: 'p1' })
    const p2 = await startTestHub(t, { ...env, HUB_ID: 'p2' })
    const [first, second] = [countPurges(p1), countPurges(p2)]
    await waitUntil(() => (first.get('audit') ?? 0) >= 5, 'the coordinator prunes the audit trail')
    t.equal(second.get('audit') ?? 0, 0, 'the other process never does')

    // a clean stop releases the lease: p2 takes it on its next try and prunes from then on
    await p1.hub.close()
    await waitUntil(() => (second.get('audit') ?? 0) >= 5, 'p2 prunes once it coordinates', 5000)
    t.pass('the work moved with the lease')
  },
)

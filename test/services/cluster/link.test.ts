import t from 'tap'
import { pino } from 'pino'
import { ClusterLink } from '../../../services/cluster/link.ts'
import { redisMissing, startRedis } from '../../helpers/redis.ts'

const log = pino({ level: 'silent' })

t.test(
  'a cluster link connects its command and subscriber connections to Redis',
  { skip: redisMissing },
  async (t) => {
    const redis = await startRedis(t)
    const link = await ClusterLink.open({ redisUrl: redis.url, processId: 'hub-a' }, log)
    t.teardown(() => link.close())
    t.equal(link.processId, 'hub-a')
    t.equal(link.key('leases/x'), 'stagehub:leases/x')
    const heard = new Promise<string>((resolve) =>
      link.subscriber.on('message', (_channel, message) => resolve(message)),
    )
    await link.subscriber.subscribe(link.key('hello'))
    await link.commands.publish(link.key('hello'), 'from hub-a')
    t.equal(await heard, 'from hub-a')
  },
)

t.test(
  'a cluster link to an unreachable Redis is refused with the reason, and leaves nothing open',
  { skip: redisMissing },
  async (t) => {
    const redis = await startRedis(t)
    redis.process.kill('SIGKILL')
    await new Promise((resolve) => redis.process.once('exit', resolve))
    await t.rejects(
      ClusterLink.open({ redisUrl: redis.url, processId: 'hub-a' }, log),
      /cannot reach Redis at REDIS_URL/,
    )
  },
)

import t from 'tap'
import { RateLimiter } from '../../../services/requests/rate-limit.ts'

t.test('a bucket allows a burst, then refills at the configured rate', async (t) => {
  const limiter = new RateLimiter({ perSecond: 10, burst: 3 })
  t.same(
    [0, 0, 0, 0].map(() => limiter.take('c', 1000)),
    [true, true, true, false],
  )
  t.equal(limiter.take('c', 1050), false, 'half a token after 50 ms is not enough')
  t.equal(limiter.take('c', 1100), true, 'one token after 100 ms')
  t.equal(limiter.take('other', 1100), true, 'keys are independent')
})

t.test('sweep forgets only buckets that have refilled completely', async (t) => {
  const limiter = new RateLimiter({ perSecond: 1, burst: 2 })
  limiter.take('busy', 0)
  limiter.take('busy', 0)
  limiter.take('idle', 0)
  limiter.sweep(1000)
  t.equal(
    limiter.size,
    1,
    'after 1 s the idle bucket is full again and dropped; the busy one (1 of 2) is kept',
  )
  limiter.sweep(2000)
  t.equal(limiter.size, 0)
})

import t from 'tap'
import { RateLimiter, RequestLimits } from '../../../services/requests/rate-limit.ts'

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

t.test('retryAfterSeconds says when the next token arrives; refund gives one back', async (t) => {
  const limiter = new RateLimiter({ perSecond: 0.5, burst: 1 })
  t.equal(limiter.retryAfterSeconds('k', 0), 0, 'a token is there now')
  limiter.take('k', 0)
  t.equal(limiter.retryAfterSeconds('k', 0), 2, 'two seconds at half a token per second')
  t.equal(limiter.retryAfterSeconds('k', 1500), 1, 'rounded up to whole seconds')
  limiter.refund('k', 1500)
  t.equal(limiter.take('k', 1500), true, 'the refunded token is there at once')
  limiter.refund('k', 1500)
  limiter.refund('k', 1500)
  t.same([limiter.take('k', 1500), limiter.take('k', 1500)], [true, false], 'refunds never exceed the burst')
})

t.test('RequestLimits charges a request to its client id and to its account', async (t) => {
  const limits = new RequestLimits({
    perClient: { perSecond: 1, burst: 3 },
    perAccount: { perSecond: 1, burst: 5 },
  })
  const client = (clientId: string) => ({ role: 'user', id: 'u1', clientId })
  const outcomes = ['a', 'a', 'a', 'a', 'b', 'b', 'c'].map((c) => limits.take(client(c), 0))
  t.same(
    outcomes.map((o) => (o.ok ? 'ok' : o.limit)),
    ['ok', 'ok', 'ok', 'client', 'ok', 'ok', 'account'],
    'the fourth request of client a is over its own limit and not charged to the account; the sixth of the account is over',
  )
  t.same(outcomes.at(-1), { ok: false, limit: 'account', retryAfterSeconds: 1 })
  t.ok(limits.take({ role: 'user', id: 'u2', clientId: 'a' }, 0).ok, 'another account is not affected')
  t.ok(limits.take({ role: 'device', id: 'u1', clientId: 'u1' }, 0).ok, 'accounts are per role and id')
  t.ok(limits.take(client('c'), 1000).ok, 'the account refills')
})

import t from 'tap'
import {
  GuessThrottle,
  LoginThrottle,
  type LoginThrottleOptions,
  SignupLimit,
  addressKey,
} from '../../../services/users/auth-limits.ts'

t.test('addressKey: IPv4 as is, IPv4-mapped IPv6 as IPv4, other IPv6 by its /64 prefix', async (t) => {
  t.equal(addressKey('192.0.2.7'), '192.0.2.7')
  t.equal(addressKey('::ffff:192.0.2.7'), '192.0.2.7')
  t.equal(addressKey('::FFFF:192.0.2.7'), '192.0.2.7')
  t.equal(addressKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64')
  t.equal(addressKey('2001:0db8:0001:0002:ffff:ffff:ffff:ffff'), '2001:db8:1:2::/64', 'leading zeros')
  t.equal(addressKey('2001:DB8:1:2::'), '2001:db8:1:2::/64', 'upper case')
  t.equal(addressKey('2001:db8::1'), '2001:db8:0:0::/64', 'the :: gap is filled')
  t.equal(addressKey('fe80::1%eth0'), 'fe80:0:0:0::/64', 'the zone is dropped')
  t.equal(addressKey('::1'), '0:0:0:0::/64')
  t.equal(addressKey('64:ff9b::192.0.2.7'), '64:ff9b:0:0::/64', 'an embedded IPv4 counts as two groups')
  t.equal(addressKey(undefined), 'unknown', 'a socket closed before the handler ran')
})

t.test(
  'SignupLimit: a burst per address, then refusals with a retry time; other addresses go on',
  async (t) => {
    const limit = new SignupLimit({
      perAddress: { burst: 2, perSecond: 1 / 60 },
      global: { burst: 3, perSecond: 1 },
    })
    t.same([limit.take('10.0.0.1', 0), limit.take('10.0.0.1', 0)], [{ ok: true }, { ok: true }])
    t.same(limit.take('10.0.0.1', 0), { ok: false, limit: 'address', retryAfterSeconds: 60 })
    t.same(
      limit.take('::ffff:10.0.0.1', 0),
      { ok: false, limit: 'address', retryAfterSeconds: 60 },
      'the same address over IPv6',
    )
    t.same(limit.take('10.0.0.2', 0), { ok: true }, 'another address')
    t.same(
      limit.take('10.0.0.3', 0),
      { ok: false, limit: 'hub', retryAfterSeconds: 1 },
      'the hub-wide burst of 3 is used up',
    )
    t.same(limit.take('10.0.0.3', 1000), { ok: true }, 'the hub refills at 1 per second')
    t.same(limit.take('10.0.0.1', 60_000), { ok: true }, 'the address refills at 1 per minute')
  },
)

t.test('SignupLimit: an address refused does not use up the hub-wide budget', async (t) => {
  const limit = new SignupLimit({
    perAddress: { burst: 1, perSecond: 0.001 },
    global: { burst: 2, perSecond: 0.001 },
  })
  limit.take('10.0.0.1', 0)
  for (let i = 0; i < 10; i++) limit.take('10.0.0.1', 0)
  t.same(limit.take('10.0.0.2', 0), { ok: true })
})

const options: LoginThrottleOptions = {
  perAddress: 6,
  perAddressAndEmail: 3,
  perEmail: 4,
  forgiveSeconds: 10,
  slowdownMs: 1500,
}

t.test(
  'LoginThrottle: a guessing address is refused for the e-mail it guesses, the owner is not',
  async (t) => {
    const throttle = new LoginThrottle(options)
    for (let i = 0; i < 3; i++) {
      const attempt = throttle.admit('10.0.0.66', 'owner@example.org', 0)
      t.match(attempt, { refused: false, delayMs: 0 }, `guess ${i + 1} is checked`)
    }
    t.same(throttle.admit('10.0.0.66', 'owner@example.org', 0), { refused: true, retryAfterSeconds: 10 })
    const owner = throttle.admit('10.0.0.1', 'owner@example.org', 0)
    t.match(owner, { refused: false, delayMs: 0 }, 'the owner, from their own address, is checked at once')
    t.match(
      throttle.admit('10.0.0.66', 'other@example.org', 0),
      { refused: false },
      'the guessing address may still log in to another account (a shared address)',
    )
    t.same(
      throttle.admit('10.0.0.66', 'owner@example.org', 10_000).refused,
      false,
      'one failure is forgiven after 10 s',
    )
  },
)

t.test('LoginThrottle: an address with too many failures over any e-mails is refused', async (t) => {
  const throttle = new LoginThrottle(options)
  for (let i = 0; i < 6; i++) throttle.admit('10.0.0.66', `user${i}@example.org`, 0)
  t.same(throttle.admit('10.0.0.66', 'fresh@example.org', 0), { refused: true, retryAfterSeconds: 10 })
  t.same(
    throttle.admit('2001:db8:1:2::66', 'a@example.org', 0).refused,
    false,
    'an IPv6 address is another address',
  )
})

t.test('LoginThrottle: successes do not count, so many people behind one address can log in', async (t) => {
  const throttle = new LoginThrottle(options)
  const refusals: boolean[] = []
  for (let i = 0; i < 20; i++) {
    const attempt = throttle.admit('10.0.0.1', 'owner@example.org', 0)
    refusals.push(attempt.refused)
    if (!attempt.refused) attempt.forgive(0)
  }
  t.same(refusals, Array<boolean>(20).fill(false), '20 successful log-ins in a row')
})

t.test(
  'LoginThrottle: guessing one e-mail from many addresses slows attempts on it, never refuses',
  async (t) => {
    const throttle = new LoginThrottle(options)
    for (let i = 0; i < 4; i++) {
      t.match(throttle.admit(`10.0.1.${i}`, 'owner@example.org', 0), { refused: false, delayMs: 0 })
    }
    const slowed = throttle.admit('10.0.0.1', 'owner@example.org', 0)
    t.match(slowed, { refused: false, delayMs: 1500 }, 'the owner is slowed, not locked out')
    t.match(
      throttle.admit('10.0.0.2', 'other@example.org', 0),
      { delayMs: 0 },
      'other e-mails are not slowed',
    )
    if (!slowed.refused) slowed.forgive(0)
    t.match(
      throttle.admit('10.0.1.9', 'owner@example.org', 0),
      { delayMs: 1500 },
      'a success while slowed does not give the guessers an unslowed attempt',
    )
    t.match(throttle.admit('10.0.1.10', 'owner@example.org', 10_000), { delayMs: 0 }, 'forgiven after 10 s')
  },
)

t.test('wrong-password counts that refilled are swept, so the throttle does not grow for ever', async (t) => {
  const throttle = new GuessThrottle({ refuse: [2], slow: 3, forgiveSeconds: 30, slowdownMs: 0 })
  throttle.admit(['user|client-1'], 'user', 0)
  throttle.admit(['user|client-2'], 'user', 1)
  t.equal(throttle.size, 3, 'two clients and their account are tracked')
  throttle.admit(['other|client'], 'other', 61_000)
  t.equal(throttle.size, 2, 'a minute later only the newest attempt is left')
})

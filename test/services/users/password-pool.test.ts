import t from 'tap'
import { HubError } from '../../../services/errors.ts'
import { PasswordPool } from '../../../services/users/password-pool.ts'

t.test('hash and verify round-trip through the pool', async (t) => {
  const pool = new PasswordPool({ cost: 10, concurrency: 2, queueLimit: 4 })
  const stored = await pool.hash('a long passphrase')
  t.match(stored, /^scrypt\$10\$/)
  t.equal(await pool.verify('a long passphrase', stored), true)
  t.equal(await pool.verify('another passphrase', stored), false)
  t.same(pool.load, { running: 0, checks: 0, signedInChecks: 0, hashes: 0 }, 'nothing left behind')
})

t.test('checks that arrive while new hashes wait are computed before them', async (t) => {
  const pool = new PasswordPool({ cost: 12, concurrency: 1, queueLimit: 10 })
  const stored = await pool.hash('the owner passphrase')
  const order: string[] = []
  const hashes = Array.from({ length: 4 }, (_, i) =>
    pool.hash(`bot ${i}`).then(() => order.push(`hash ${i}`)),
  )
  const check = pool.verify('the owner passphrase', stored).then((ok) => order.push(`check ${ok}`))
  t.same(pool.load, { running: 1, checks: 1, signedInChecks: 0, hashes: 3 })
  await Promise.all([...hashes, check])
  t.same(order, ['hash 0', 'check true', 'hash 1', 'hash 2', 'hash 3'], 'only the running hash went first')
})

t.test('new hashes beyond the queue limit are refused with unavailable and a retry time', async (t) => {
  const pool = new PasswordPool({ cost: 12, concurrency: 1, queueLimit: 2 })
  const accepted = [pool.hash('one 12345'), pool.hash('two 12345'), pool.hash('three 12345')]
  const refused = await pool.hash('four 12345').then(
    () => undefined,
    (err: unknown) => err,
  )
  t.ok(refused instanceof HubError, 'a HubError')
  t.match(refused, { code: 'unavailable', message: /busy hashing passwords: retry in \d+ s/ })
  t.ok((refused as HubError).retryAfterSeconds! >= 1, 'with a retry time of at least a second')
  const stored = await accepted[0]!
  t.equal(await pool.verify('one 12345', stored), true, 'checks still get in while the hash lane is full')
  await Promise.all(accepted)
})

t.test('log-in checks go before waiting checks of signed-in users (stage passwords)', async (t) => {
  const pool = new PasswordPool({ cost: 12, concurrency: 1, queueLimit: 3 })
  const stored = await pool.hash('the owner passphrase')
  const order: string[] = []
  const guesses = Array.from({ length: 4 }, (_, i) =>
    pool.verify(`guess ${i}`, stored, 'signedIn').then(() => order.push(`guess ${i}`)),
  )
  const login = pool.verify('the owner passphrase', stored).then((ok) => order.push(`login ${ok}`))
  t.same(pool.load, { running: 1, checks: 1, signedInChecks: 3, hashes: 0 })
  await Promise.all([...guesses, login])
  t.same(
    order,
    ['guess 0', 'login true', 'guess 1', 'guess 2', 'guess 3'],
    'only the running guess went first',
  )
})

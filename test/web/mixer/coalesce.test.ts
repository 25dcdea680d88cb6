import t from 'tap'
import {
  Coalescer,
  dbToVolume,
  formatDb,
  MAX_DB,
  MIN_DB,
  OFF_DB,
  volumeToDb,
} from '../../../web/src/mixer/coalesce.ts'
import { sleep } from '../../helpers/hub.ts'

/** A send that records its values and answers when told (or at once). */
function recorder(answerAfterMs = 0) {
  const sent: { key: string; value: number; at: number }[] = []
  const started = performance.now()
  const send = async (key: string, value: number) => {
    sent.push({ key, value, at: performance.now() - started })
    await sleep(answerAfterMs)
  }
  return { sent, send }
}

t.test(
  'a fast drag of one key sends the first value at once, then at most one per interval, and the last value in the end',
  async (t) => {
    const { sent, send } = recorder(5)
    const changes: string[] = []
    const c = new Coalescer<number>({ send, intervalMs: 50, graceMs: 30, onChange: (k) => changes.push(k) })
    c.begin('a', 0)
    for (let i = 1; i <= 100; i++) {
      c.set('a', i)
      if (c.local('a') !== i) t.fail(`value ${i} is not shown at once`)
      await sleep(2)
    }
    t.pass('each value showed locally at once')
    c.end('a')
    t.equal(c.local('a'), 100, 'after the drag, still the last value while it is being sent')
    await sleep(150)
    t.ok(sent.length >= 3 && sent.length <= 10, `100 values → ${sent.length} sends`)
    t.equal(sent[0]!.value, 1, 'the first value goes out at once')
    t.equal(sent.at(-1)!.value, 100, 'the last value is sent last')
    for (let i = 1; i < sent.length; i++)
      t.ok(sent[i]!.at - sent[i - 1]!.at >= 45, `send ${i} waited for the interval`)
    t.equal(c.local('a'), undefined, 'idle after the grace: the retained value takes over')
    t.notOk(c.busy)
    t.ok(changes.length >= 101, 'every change was announced, and the release')
  },
)

t.test(
  'at most one request in flight per key: a slow answer holds back the next value, which is then the newest',
  async (t) => {
    const answers: (() => void)[] = []
    const sent: number[] = []
    const c = new Coalescer<number>({
      send: (_key, value) => {
        sent.push(value)
        return new Promise<void>((resolve) => answers.push(resolve))
      },
      intervalMs: 0,
      graceMs: 0,
    })
    c.set('a', 1)
    c.set('a', 2)
    c.set('a', 3)
    t.same(sent, [1], 'one in flight')
    answers.shift()!()
    await sleep(5)
    t.same(sent, [1, 3], 'then only the newest value')
    t.equal(c.local('a'), 3, 'shown locally while in flight')
    answers.shift()!()
    await sleep(5)
    t.equal(c.local('a'), undefined, 'released once answered and idle')
  },
)

t.test('keys are independent; a drag holds its key local until it ends', async (t) => {
  const { sent, send } = recorder()
  const c = new Coalescer<number>({ send, intervalMs: 1000, graceMs: 0 })
  c.begin('a', 0)
  c.set('a', 1)
  c.set('b', 5)
  t.same(
    sent.map((s) => [s.key, s.value]),
    [
      ['a', 1],
      ['b', 5],
    ],
    'each key sends its first value at once',
  )
  await sleep(20)
  t.equal(c.local('a'), 1, 'the dragged key stays local after its answer')
  t.equal(c.local('b'), undefined, 'the other, answered and not dragged, is released')
  c.end('a')
  await sleep(5)
  t.equal(c.local('a'), undefined, 'released after the drag ends')
  c.stop()
})

t.test(
  'a failed send reports the error and releases the key (the retained value is the truth)',
  async (t) => {
    const errors: unknown[] = []
    const c = new Coalescer<number>({
      send: () => Promise.reject(new Error('rate_limited')),
      intervalMs: 0,
      onError: (_k, err) => errors.push(err),
    })
    c.set('a', 2)
    await sleep(5)
    t.equal(errors.length, 1)
    t.equal(c.local('a'), undefined)
  },
)

t.test('dB mapping: a log slider over the linear volume 0..4', async (t) => {
  t.equal(dbToVolume(0), 1, '0 dB is unchanged')
  t.ok(Math.abs(dbToVolume(-6) - 0.501) < 0.001, '-6 dB is about half')
  t.ok(dbToVolume(MAX_DB) <= 4, '+12 dB stays within the schema')
  t.equal(dbToVolume(OFF_DB), 0, 'the bottom notch is silence')
  t.ok(dbToVolume(MIN_DB) > 0, '-60 dB is quiet but not silent')
  t.equal(volumeToDb(0), OFF_DB)
  t.equal(volumeToDb(4), MAX_DB, 'the loudest volume sits at the top')
  t.equal(volumeToDb(dbToVolume(-6)), -6, 'round trip')
  t.equal(formatDb(dbToVolume(-6)), '-6 dB')
  t.equal(formatDb(1), '0 dB')
  t.equal(formatDb(2), '+6 dB')
  t.equal(formatDb(0), '-∞ dB')
  t.equal(formatDb(dbToVolume(-12.5)), '-12.5 dB')
})

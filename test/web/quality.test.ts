import t from 'tap'
import { POOR_JITTER_MS, POOR_LOSS, qualityOf } from '../../web/src/media/quality.ts'

/** A member's connection is poor from the RTCP counters of what this browser receives from them. */

const reading = (entries: Record<string, { packets: number; lost?: number; jitter?: number }>) =>
  new Map(Object.entries(entries))

t.test('a clean second (all packets, low jitter) is not poor and says nothing', async (t) => {
  const q = qualityOf(
    reading({ a: { packets: 100, lost: 0, jitter: 2 }, v: { packets: 500, lost: 1 } }),
    reading({ a: { packets: 150, lost: 0, jitter: 3 }, v: { packets: 560, lost: 1 } }),
    ['a', 'v'],
  )
  t.match(q, { poor: false, loss: 0, jitterMs: 3, text: '' })
})

t.test('loss counts over the last interval only, summed over the member’s tracks', async (t) => {
  const lossy = qualityOf(
    reading({ a: { packets: 1000, lost: 500 }, v: { packets: 1000, lost: 0 } }),
    reading({ a: { packets: 1045, lost: 505 }, v: { packets: 1045, lost: 5 } }),
    ['a', 'v'],
  )
  t.equal(lossy.poor, true, `10 of 100 packets lost (≥ ${POOR_LOSS * 100} %) is poor`)
  t.equal(lossy.text, 'Poor connection: 10 % of packets lost')
  const healed = qualityOf(
    reading({ a: { packets: 1000, lost: 500 } }),
    reading({ a: { packets: 1050, lost: 500 } }),
    ['a'],
  )
  t.equal(healed.poor, false, 'losses of the past are forgotten once packets arrive whole')
})

t.test('high jitter is poor, and so is a second in which nothing arrived', async (t) => {
  const jittery = qualityOf(
    reading({ a: { packets: 10, jitter: 10 } }),
    reading({ a: { packets: 60, jitter: 80 } }),
    ['a'],
  )
  t.match(jittery, { poor: true, text: 'Poor connection: 80 ms jitter' }, `≥ ${POOR_JITTER_MS} ms`)
  const stalled = qualityOf(reading({ a: { packets: 60 } }), reading({ a: { packets: 60 } }), ['a'])
  t.match(stalled, { poor: true, text: 'Poor connection: nothing arrived for a moment' })
})

t.test('no earlier reading, or tracks not received, say nothing yet', async (t) => {
  t.match(qualityOf(undefined, reading({ a: { packets: 5 } }), ['a']), { poor: false, text: '' })
  t.match(qualityOf(reading({}), reading({ a: { packets: 5 } }), ['a']), { poor: false, text: '' })
  t.match(qualityOf(reading({ a: { packets: 5 } }), reading({ a: { packets: 9 } }), ['b']), {
    poor: false,
  })
})

import t from 'tap'
import { type Actor, actor, connectAs, roomy } from '../helpers/actors.ts'
import { type Teardown, type TestHub, sleep, startTestHub } from '../helpers/hub.ts'
import { RawClient } from '../helpers/raw-client.ts'
import { metricValue } from '../helpers/metrics.ts'

// Issue 10, item 1: the probe that froze every client and then killed the hub. A subscriber that never
// reads its socket, to its own users/{u}, while ten clients of the same user send user.update with a
// 2 KB avatarUrl; another user's request round trips are measured. The control run is a second hub
// with the same writers but no stuck reader, measured at the same time in the same process: on a
// shared machine, load from elsewhere then slows both alike instead of skewing one of them.

const PROBE_SECONDS = 95
const WRITERS = 10
/** Each writer's pace: the default per-client request rate (20/s). */
const WRITE_INTERVAL_MS = 50
const MEASURE_INTERVAL_MS = 100
const REQUEST_TIMEOUT_MS = 5000

t.setTimeout((PROBE_SECONDS + 90) * 1000)

const p99 = (samples: number[]): number => {
  const sorted = [...samples].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))]!
}

interface Side {
  th: TestHub
  ann: Actor
  /** Round trips (ms) of the other user's requests; a timeout counts as Infinity. */
  samples: number[]
  /** When the other user last got an answer (ms since the probe started). */
  lastAnswerMs: number
  /** Ann's updates applied. */
  updates: number
  running: Promise<unknown>[]
}

/** A hub where ten clients of Ann write and Bea measures, until `stop()` says so. */
async function side(t: Teardown, started: () => number, stop: () => boolean): Promise<Side> {
  const th = await startTestHub(t, roomy)
  const ann = await actor(th, 'Ann')
  const writers = [
    ann,
    ...(await Promise.all(Array.from({ length: WRITERS - 1 }, () => connectAs(th, ann.id, 'Ann')))),
  ]
  const bea = await actor(th, 'Bea')
  const s: Side = { th, ann, samples: [], lastAnswerMs: 0, updates: 0, running: [] }
  const avatar = (n: number) => `https://example.org/${'a'.repeat(1990)}/${n}`
  s.running = writers.map(async (w, k) => {
    for (let n = 0; !stop(); n++) {
      const next = performance.now() + WRITE_INTERVAL_MS
      const id = `w${k}-${n}`
      const payload = JSON.stringify({ id, params: { avatarUrl: avatar(n) } })
      const response = await w.req.send('user.update', payload, id, REQUEST_TIMEOUT_MS).catch(() => undefined)
      if (response?.ok) s.updates++
      await sleep(Math.max(0, next - performance.now()))
    }
  })
  s.running.push(
    (async () => {
      for (let n = 0; !stop(); n++) {
        const sent = performance.now()
        const payload = JSON.stringify({ id: `m${n}`, params: { name: `Bea ${n}` } })
        const answered = await bea.req.send('user.update', payload, `m${n}`, REQUEST_TIMEOUT_MS).then(
          () => true,
          () => false,
        )
        s.samples.push(answered ? performance.now() - sent : Infinity)
        if (answered) s.lastAnswerMs = started()
        await sleep(MEASURE_INTERVAL_MS)
      }
    })(),
  )
  return s
}

t.test(
  'a subscriber that never reads is disconnected and counted while another user stays as fast as on a hub without it, for over 90 s',
  async (t) => {
    const startedAt = performance.now()
    const started = () => performance.now() - startedAt
    let done = false
    const [probe, control] = await Promise.all([side(t, started, () => done), side(t, started, () => done)])
    const slowDisconnects = () => metricValue(probe.th.httpUrl, 'stagehub_slow_consumer_disconnects_total')

    // stuck readers, one after another: a new one as soon as the hub has dropped the last
    const lifetimes: string[] = []
    while (started() < PROBE_SECONDS * 1000) {
      const before = await slowDisconnects()
      const token = probe.th.token({ sub: probe.ann.id })
      const stuck = await RawClient.connect(probe.th.hub.ports.mqtt, `stuck-${lifetimes.length + 1}`, token)
      await stuck.subscribe(`users/${probe.ann.id}`, 1)
      stuck.stopReading()
      const since = started()
      while (started() < PROBE_SECONDS * 1000 && (await slowDisconnects()) === before) await sleep(250)
      lifetimes.push(`${((started() - since) / 1000).toFixed(1)} s`)
      stuck.destroy()
    }
    done = true
    await Promise.all([...probe.running, ...control.running])

    const disconnected = await slowDisconnects()
    t.comment(
      `other user's p99: ${p99(probe.samples).toFixed(1)} ms with stuck readers (${probe.samples.length} ` +
        `requests, ${probe.updates} updates by Ann), ${p99(control.samples).toFixed(1)} ms on the control hub ` +
        `(${control.samples.length}, ${control.updates} updates); ` +
        `stuck readers lived ${lifetimes.join(', ')}; ${disconnected} disconnected as slow consumers`,
    )
    t.equal(
      probe.samples.filter((ms) => ms === Infinity).length,
      0,
      'every request of the other user was answered',
    )
    t.ok(
      probe.lastAnswerMs > 90_000,
      `the hub still answered after ${(probe.lastAnswerMs / 1000).toFixed(1)} s`,
    )
    t.ok(
      p99(probe.samples) <= 2 * p99(control.samples),
      'p99 with stuck readers within 2× of the control hub',
    )
    t.ok(probe.updates >= control.updates / 2, "Ann's other clients are not held up by her stuck one")
    t.ok(disconnected >= 1, 'the stuck connection was disconnected and counted')
    t.ok(disconnected >= lifetimes.length - 1, 'every stuck reader but the last was disconnected')
  },
)

import t from 'tap'
import { type PresenceEvent, type PresenceRecord, nextPresence } from '../../../services/devices/presence.ts'

/**
 * Unit tests of the presence rule (docs/protocol/README.md#presence, Sparkplug's bdSeq): sessions order presence events, an
 * older session never overrides a newer one, and an event that changes nothing is reported as null.
 */

const ev = (state: PresenceEvent['state'], session: number): PresenceEvent => ({ state, session })
const rec = (online: boolean, session: number): PresenceRecord => ({ online, session })

/** Folds events the way DevicePresence does: null leaves the record as it is. */
function fold(start: PresenceRecord, events: readonly PresenceEvent[]): PresenceRecord {
  return events.reduce((current, event) => nextPresence(current, event) ?? current, start)
}

/** A device never seen online: DevicePresence starts from session -1. */
const unseen = rec(false, -1)

t.test('an event of an older session than the newest seen is ignored, whatever it says', async (t) => {
  const current = rec(true, 3)
  for (const state of ['online', 'offline', 'lost'] as const) {
    t.equal(nextPresence(current, ev(state, 2)), null, `${state} of session 2 after session 3 is ignored`)
    t.equal(nextPresence(current, ev(state, 0)), null, `${state} of session 0 after session 3 is ignored`)
  }
  t.equal(
    nextPresence(rec(false, 5), ev('online', 4)),
    null,
    'an older online does not bring an offline device back either',
  )
})

t.test('the same session going from online to lost or offline marks the device offline', async (t) => {
  t.same(nextPresence(rec(true, 1), ev('lost', 1)), rec(false, 1), 'online → lost (the will)')
  t.same(nextPresence(rec(true, 1), ev('offline', 1)), rec(false, 1), 'online → offline (clean shutdown)')
  t.same(nextPresence(rec(true, 0), ev('lost', 0)), rec(false, 0), 'session 0 is a session like any other')
})

t.test('a newer session online marks the device online and records the session', async (t) => {
  t.same(nextPresence(unseen, ev('online', 0)), rec(true, 0), 'first online ever, session 0')
  t.same(nextPresence(unseen, ev('online', 1)), rec(true, 1), 'first online ever, session 1')
  t.same(nextPresence(rec(false, 1), ev('online', 2)), rec(true, 2), 'offline device comes back as session 2')
  t.same(
    nextPresence(rec(true, 1), ev('online', 2)),
    rec(true, 2),
    'a takeover (online → online of a newer session) is a change: the newer session is recorded',
  )
  t.same(
    nextPresence(rec(true, 2), ev('lost', 3)),
    rec(false, 3),
    'a newer session that dies before saying online counts too',
  )
})

t.test('a duplicate event (same session, same state) is ignored', async (t) => {
  t.equal(nextPresence(rec(true, 1), ev('online', 1)), null, 'online/1 twice')
  t.equal(nextPresence(rec(false, 1), ev('lost', 1)), null, 'lost/1 after offline/1')
  t.equal(nextPresence(rec(false, 1), ev('offline', 1)), null, 'offline/1 after lost/1')
  t.equal(nextPresence(unseen, ev('offline', -1)), null, 'nothing to change for a device never seen')
})

t.test('offline of one session then online of a newer session leaves the device online', async (t) => {
  t.same(
    fold(unseen, [ev('online', 1), ev('offline', 1), ev('online', 2)]),
    rec(true, 2),
    'clean restart of the device',
  )
  t.same(
    fold(unseen, [ev('online', 1), ev('online', 2), ev('lost', 1)]),
    rec(true, 2),
    "a takeover's late will (lost/1 after online/2) does not mark the device offline",
  )
  t.same(
    fold(unseen, [ev('online', 1), ev('online', 2), ev('offline', 1), ev('lost', 1), ev('lost', 2)]),
    rec(false, 2),
    'only the current session can take the device offline',
  )
})

t.test(
  'for every order of events, the result is the last word of the newest session, and null means no change',
  async (t) => {
    const events: PresenceEvent[] = []
    for (const session of [1, 2, 3])
      for (const state of ['online', 'offline', 'lost'] as const) events.push(ev(state, session))
    let sequences = 0
    let mismatches = 0
    let emptyChanges = 0
    const visit = (prefix: PresenceEvent[]) => {
      if (prefix.length > 0) {
        sequences++
        // expected: newest session seen, and the state of that session's last event
        const newest = Math.max(...prefix.map((e) => e.session))
        const last = prefix.filter((e) => e.session === newest).at(-1)!
        let current = unseen
        for (const event of prefix) {
          const next = nextPresence(current, event)
          if (next === null) continue
          if (next.online === current.online && next.session === current.session) emptyChanges++
          current = next
        }
        if (current.session !== newest || current.online !== (last.state === 'online')) mismatches++
      }
      if (prefix.length < 4) for (const event of events) visit([...prefix, event])
    }
    visit([])
    t.equal(sequences, 9 + 9 ** 2 + 9 ** 3 + 9 ** 4, 'every sequence of up to 4 events over 3 sessions')
    t.equal(mismatches, 0, 'the newest session always decides, in any arrival order')
    t.equal(emptyChanges, 0, 'a non-null answer always changes something')
  },
)

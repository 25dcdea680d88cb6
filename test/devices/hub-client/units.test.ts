import t from 'tap'
import { Backoff } from '../../../devices/hub-client/backoff.ts'
import { RequestClient, RequestError } from '../../../devices/hub-client/requests.ts'
import { matchesFilter } from '../../../schemas/topics.ts'
import { SOUND_CARD_DEFAULTS } from '../../../devices/ovbox/sound-cards.ts'

/** The hub client's pure parts: backoff, request retry, topic filters. */

const CARD_PARAMS = { deviceId: 'box1', soundCard: { name: 'hw:1', label: 'USB', ...SOUND_CARD_DEFAULTS } }

t.test(
  'backoff: 1 s doubling to 60 s, jittered into the upper half, reset after a stable connection',
  async (t) => {
    const low = new Backoff({ random: () => 0 })
    const high = new Backoff({ random: () => 0.999999 })
    const lows = Array.from({ length: 9 }, () => low.next())
    const highs = Array.from({ length: 9 }, () => high.next())
    t.same(lows, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000])
    t.same(highs, [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000])
    low.reset()
    t.equal(low.next(), 500)
  },
)

t.test('a request without a response in time is sent once more with the same id', async (t) => {
  const sent: { topic: string; id: string }[] = []
  const requests: RequestClient = new RequestClient({
    clientId: 'box1',
    timeoutMs: 50,
    publish: async (topic, payload) => {
      const { id } = JSON.parse(payload) as { id: string }
      sent.push({ topic, id })
      // the first response is lost; the retry is answered
      if (sent.length === 2) {
        setImmediate(() =>
          requests.handle(
            'clients/box1/res',
            Buffer.from(JSON.stringify({ id, ok: true, result: { n: 1 } })),
          ),
        )
      }
    },
  })
  t.same(await requests.request('soundcard.set', CARD_PARAMS), { n: 1 })
  t.equal(sent.length, 2)
  t.equal(sent[0]!.id, sent[1]!.id, 'the same id: the hub answers a repeat instead of applying it twice')
  t.equal(sent[0]!.topic, 'clients/box1/req/soundcard.set')

  const refusing = new RequestClient({
    clientId: 'box1',
    publish: async (_topic, payload) => {
      const { id } = JSON.parse(payload) as { id: string }
      const error = { code: 'forbidden', message: "only the stage's owner may change its sound card" }
      setImmediate(() =>
        refusing.handle('clients/box1/res', Buffer.from(JSON.stringify({ id, ok: false, error }))),
      )
    },
  })
  const err = await refusing.request('soundcard.set', CARD_PARAMS).catch((e: unknown) => e)
  t.ok(err instanceof RequestError && err.code === 'forbidden', 'a refusal is not retried')
  t.match(
    err,
    {
      message: "soundcard.set refused (forbidden): only the stage's owner may change its sound card",
      reason: "only the stage's owner may change its sound card",
    },
    "the message names the action and code for logs; the reason is the hub's message alone, for people",
  )
})

t.test('subscription filters match as the broker matches them', async (t) => {
  t.ok(matchesFilter('stages/+/members/+', 'stages/s1/members/u1'))
  t.notOk(matchesFilter('stages/+/members/+', 'stages/s1/members'), '+ needs a level')
  t.notOk(matchesFilter('stages/+', 'stages/s1/groups/g1'), '+ is one level')
  t.ok(matchesFilter('users/u1/#', 'users/u1/stages/s1'))
  t.ok(matchesFilter('users/u1/#', 'users/u1'), '# includes the parent level')
  t.notOk(matchesFilter('#', '$SYS/broker/uptime'), 'wildcards do not reach $ topics')
  t.notOk(matchesFilter('+/status', '$SYS/status'))
})

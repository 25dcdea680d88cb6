import t from 'tap'
import { gainOf, levelOf } from '../../schemas/mix-rule.ts'

t.test(
  'a level is the person’s own override field by field, else the stage’s setting, else 0 dB unmuted',
  async (t) => {
    t.same(levelOf(undefined, undefined), { volume: 1, muted: false }, 'nothing set: 0 dB, not muted')
    t.same(
      levelOf(undefined, { volume: 0.5, muted: true }),
      { volume: 0.5, muted: true },
      'the stage’s setting',
    )
    t.same(
      levelOf({ volume: 2 }, { volume: 0.5, muted: true }),
      { volume: 2, muted: true },
      'own volume, stage’s mute',
    )
    t.same(
      levelOf({ muted: false }, { volume: 0.5, muted: true }),
      { volume: 0.5, muted: false },
      'own unmute wins',
    )
  },
)

t.test('a track’s gain is group × member × track, and 0 when any level is muted', async (t) => {
  t.equal(gainOf([]), 1)
  t.equal(
    gainOf([
      { stage: { volume: 0.5, muted: false } },
      { own: { volume: 2 }, stage: { volume: 0.25, muted: false } },
      {},
    ]),
    1,
    'group 0.5 × member 2 (own) × track 1',
  )
  t.equal(
    gainOf([{ stage: { volume: 2, muted: false } }, { own: { muted: true } }, { own: { volume: 4 } }]),
    0,
    'muted member',
  )
  t.equal(gainOf([{ stage: { volume: 1, muted: true } }, {}, {}]), 0, 'muted group for everyone')
  t.equal(
    gainOf([{ own: { muted: false }, stage: { volume: 1, muted: true } }, {}, {}]),
    1,
    'unmuted in own mix',
  )
})

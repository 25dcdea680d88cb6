import t from 'tap'
import {
  type RouterOffer,
  type StageNeed,
  chooseRouter,
  greatCircleKm,
  planDistribution,
  stageNeeds,
  usage,
} from '../../../services/routers/distribution.ts'

const berlin = { lat: 52.52, lng: 13.405 }
const paris = { lat: 48.8566, lng: 2.3522 }
const newYork = { lat: 40.7128, lng: -74.006 }

const router = (id: string, overrides: Partial<RouterOffer> = {}): RouterOffer => ({
  id,
  online: true,
  capabilities: ['mediasoup', 'ov'],
  capacity: { mediasoup: 2, ov: 2 },
  ...overrides,
})
const stage = (id: string, overrides: Partial<StageNeed> = {}): StageNeed => ({
  id,
  audioType: 'mediasoup',
  videoType: 'mediasoup',
  ...overrides,
})

t.test('great-circle distance', async (t) => {
  t.ok(
    Math.abs(greatCircleKm(berlin, paris) - 878) < 5,
    `Berlin-Paris ≈ 878 km (${greatCircleKm(berlin, paris)})`,
  )
  t.ok(Math.abs(greatCircleKm(berlin, newYork) - 6385) < 10, 'Berlin-New York ≈ 6385 km')
  t.equal(greatCircleKm(paris, paris), 0)
  t.ok(greatCircleKm({ lat: 0, lng: 179.9 }, { lat: 0, lng: -179.9 }) < 25, 'across the date line is short')
})

t.test('what a stage needs', async (t) => {
  t.same(stageNeeds({ audioType: 'ov', videoType: 'none' }), ['ov'])
  t.same(stageNeeds({ audioType: 'ov', videoType: 'mediasoup' }), ['mediasoup', 'ov'])
  t.same(stageNeeds({ audioType: 'mediasoup', videoType: 'none' }), ['mediasoup'])
  t.same(stageNeeds({ audioType: 'none', videoType: 'none' }), [], 'a stage without media needs no router')
})

t.test('the nearest router that can serve the stage is chosen', async (t) => {
  const routers = [router('ny', { position: newYork }), router('paris', { position: paris })]
  t.equal(chooseRouter(stage('s', { preferredPosition: berlin }), routers, new Map())?.id, 'paris')
  t.equal(chooseRouter(stage('s', { preferredPosition: newYork }), routers, new Map())?.id, 'ny')
})

t.test('type filtering: a router must support every kind the stage needs', async (t) => {
  const routers = [
    router('near-ov-only', { position: berlin, capabilities: ['ov'] }),
    router('far-both', { position: newYork }),
  ]
  const ovStage = stage('s', { audioType: 'ov', videoType: 'none', preferredPosition: berlin })
  t.equal(chooseRouter(ovStage, routers, new Map())?.id, 'near-ov-only')
  const both = stage('t', { audioType: 'ov', videoType: 'mediasoup', preferredPosition: berlin })
  t.equal(chooseRouter(both, routers, new Map())?.id, 'far-both', 'ov + video needs a router with both')
})

t.test('capacity comes from assignments, per kind', async (t) => {
  const routers = [
    router('near', { position: berlin, capacity: { mediasoup: 1, ov: 5 } }),
    router('far', { position: newYork }),
  ]
  const used = usage([{ stageId: 'a', routerId: 'near', kinds: ['mediasoup'] }])
  t.equal(
    chooseRouter(stage('s', { preferredPosition: berlin }), routers, used)?.id,
    'far',
    'a full router is skipped',
  )
  t.equal(
    chooseRouter(stage('s', { audioType: 'ov', videoType: 'none', preferredPosition: berlin }), routers, used)
      ?.id,
    'near',
    'its ov capacity is still free',
  )
  t.equal(
    chooseRouter(stage('s'), [router('off', { online: false })], new Map()),
    undefined,
    'an offline router serves nothing',
  )
  t.equal(
    chooseRouter(stage('s'), [router('zero', { capacity: {} })], new Map()),
    undefined,
    'no capacity anywhere',
  )
})

t.test('ties: equal distance goes to the most free capacity, then the smaller id', async (t) => {
  const used = usage([{ stageId: 'x', routerId: 'a', kinds: ['mediasoup'] }])
  t.equal(chooseRouter(stage('s'), [router('a'), router('b')], used)?.id, 'b', 'more free capacity wins')
  t.equal(chooseRouter(stage('s'), [router('b'), router('a')], new Map())?.id, 'a', 'then the id')
  t.equal(
    chooseRouter(
      stage('s', { preferredPosition: berlin }),
      [router('b', { position: paris }), router('a')],
      new Map(),
    )?.id,
    'b',
    'a router that gave no position comes after those that did',
  )
})

t.test('a plan keeps healthy assignments, releases lost ones and assigns waiting stages', async (t) => {
  const routers = [
    router('r1', { position: berlin, capacity: { mediasoup: 1 }, capabilities: ['mediasoup'] }),
    router('r2', { position: newYork, capacity: { mediasoup: 1 }, capabilities: ['mediasoup'] }),
  ]
  const stages = [
    stage('s1', { preferredPosition: berlin }),
    stage('s2', { preferredPosition: berlin }),
    stage('s3', { preferredPosition: berlin }),
  ]
  const first = planDistribution(stages, routers, [])
  t.same(
    first.assign.map((a) => [a.stageId, a.routerId]),
    [
      ['s1', 'r1'],
      ['s2', 'r2'],
    ],
    'oldest first, nearest with room',
  )
  t.same(first.waiting, ['s3'], 'no capacity left: s3 waits')
  t.same(first.release, [])

  const lost = planDistribution(stages, [{ ...routers[0]!, online: false }, routers[1]!], first.assign)
  t.same(
    lost.release.map((a) => a.stageId),
    ['s1'],
    "a lost router's stage is released",
  )
  t.same(lost.assign, [], 'and waits, since the other router is full')
  t.same(lost.waiting, ['s1', 's3'])

  const bigger = [routers[0]!, { ...routers[1]!, capacity: { mediasoup: 3 } }]
  const grown = planDistribution(stages, bigger, first.assign)
  t.same(
    grown.assign.map((a) => [a.stageId, a.routerId]),
    [['s3', 'r2']],
    'waiting stages get new capacity at once',
  )

  const removed = planDistribution(stages.slice(1), routers, first.assign)
  t.same(
    removed.release.map((a) => a.stageId),
    ['s1'],
    "a removed stage's assignment is released",
  )
  t.same(
    removed.assign.map((a) => [a.stageId, a.routerId]),
    [['s3', 'r1']],
    'and its capacity goes to a waiting stage',
  )

  const changed = planDistribution([{ ...stages[0]!, audioType: 'none', videoType: 'none' }], routers, [
    first.assign[0]!,
  ])
  t.same(
    changed.release.map((a) => a.stageId),
    ['s1'],
    'a stage that no longer needs media lets go of its router',
  )
  t.same(changed.assign, [])

  const nearer = [router('r0', { position: berlin }), ...routers]
  t.same(
    planDistribution(stages.slice(0, 1), nearer, [first.assign[0]!]).assign,
    [],
    'a served stage is never moved for a nearer router',
  )
})

t.test(
  'a returning router (offline since a hub restart) keeps its stages but takes no new ones',
  async (t) => {
    const away = router('r1', { online: false, position: berlin })
    const other = router('r2', { position: paris })
    const stages = [stage('s1', { preferredPosition: berlin }), stage('s2', { preferredPosition: berlin })]
    const assignments = [{ stageId: 's1', routerId: 'r1', kinds: ['mediasoup'] as const }]

    const held = planDistribution(stages, [away, other], assignments, new Set(['r1']))
    t.same(held.release, [], 'its stage stays assigned to it')
    t.same(
      held.assign.map((a) => [a.stageId, a.routerId]),
      [['s2', 'r2']],
      'a new stage goes to an online router, not to the returning one',
    )

    const gone = planDistribution(stages, [away, other], assignments)
    t.same(
      gone.release.map((a) => a.stageId),
      ['s1'],
      'once it is no longer returning, an offline router loses its stage',
    )
  },
)

import t from 'tap'
import type { GroupDoc, MemberDoc, MixDoc, StageDoc, StageTrackDoc } from '../../../services/stages/model.ts'
import {
  GROUP_PALETTE,
  SEATS_PER_STAGE,
  applyPatch,
  freeGroupColor,
  lowestFreeSeat,
  memberOnline,
  memberOvTracks,
  membershipDependents,
  origin,
  stageDefaults,
  stageState,
  stageSummary,
  successorAdmin,
  summaryAudience,
  usersToRefresh,
  visibleSummary,
} from '../../../services/stages/rules.ts'
import type { Change } from '../../../services/store/port.ts'

// ── plain data builders ─────────────────────────────────────────────────────────────────────

function stage(overrides: Partial<StageDoc> = {}): StageDoc {
  return {
    id: 's1',
    version: 3,
    name: 'Rehearsal',
    ...stageDefaults,
    admins: ['alice'],
    createdBy: 'alice',
    createdAt: '2024-01-02T03:04:05.000Z',
    ...overrides,
  }
}

function group(id: string, overrides: Partial<GroupDoc> = {}): GroupDoc {
  return {
    id,
    version: 1,
    stageId: 's1',
    name: `Group ${id}`,
    color: '#000000',
    volume: 1,
    muted: false,
    position: origin,
    ...overrides,
  }
}

function member(userId: string, overrides: Partial<MemberDoc> = {}): MemberDoc {
  return {
    id: `m-${userId}`,
    version: 1,
    stageId: 's1',
    userId,
    name: userId,
    groupId: 'g1',
    seat: null,
    joined: false,
    online: false,
    isDirector: false,
    volume: 1,
    muted: false,
    position: origin,
    ...overrides,
  }
}

function track(id: string, m: MemberDoc): StageTrackDoc {
  return { id, version: 1, stageId: m.stageId, userId: m.userId, memberId: m.id, deviceId: 'd1', kind: 'ov' }
}

function mix(
  userId: string,
  kind: MixDoc['kind'],
  targetId: string,
  overrides: Partial<MixDoc> = {},
): MixDoc {
  return {
    id: `${userId}/${kind}/${targetId}`,
    version: 1,
    userId,
    stageId: 's1',
    kind,
    targetId,
    volume: 0.5,
    ...overrides,
  }
}

const seats = (...taken: (number | null)[]) => taken.map((seat) => ({ seat }))

// ── seats ───────────────────────────────────────────────────────────────────────────────────

t.test('lowestFreeSeat', async (t) => {
  t.equal(SEATS_PER_STAGE, 30, 'the ov renderer has 30 seats a stage')
  t.equal(lowestFreeSeat([]), 0, 'an empty stage gives seat 0')
  t.equal(lowestFreeSeat(seats(0, 1, 2)), 3, 'the next seat after a contiguous block')
  t.equal(lowestFreeSeat(seats(0, 2, 3)), 1, 'the lowest gap is filled first')
  t.equal(lowestFreeSeat(seats(5, 3, 1, 0, 2)), 4, 'order of members does not matter')
  t.equal(lowestFreeSeat(seats(null, null, 0)), 1, 'offline members (seat null) hold no seat')
  const full = seats(...Array.from({ length: SEATS_PER_STAGE }, (_, i) => i))
  t.equal(lowestFreeSeat(full), null, 'all 30 seats taken: null')
  t.equal(lowestFreeSeat(full.slice(1)), 0, 'seat 0 freed in an otherwise full stage')
  t.equal(lowestFreeSeat(full.filter((s) => s.seat !== 29)), 29, 'the last seat when only it is free')
  t.equal(lowestFreeSeat(seats(0, 1), 2), null, 'a custom seat count of 2 is full with seats 0 and 1')
  t.equal(lowestFreeSeat(seats(1), 2), 0, 'custom seat count: the free seat 0')
  t.equal(lowestFreeSeat(seats(0, 1, 2), 3), null, 'custom seat count of 3, full')
  t.equal(lowestFreeSeat(seats(0, 1, 2), 5), 3, 'custom seat count of 5, seat 3 free')
  t.equal(lowestFreeSeat([], 0), null, 'a stage without seats is always full')
})

// ── the stage document members see ──────────────────────────────────────────────────────────

t.test('stageState hides the password hash and bookkeeping', async (t) => {
  const withPassword = stage({ passwordHash: 'scrypt$16384$8$1$c2FsdA$aGFzaA' })
  const state = stageState(withPassword)
  for (const hidden of ['passwordHash', 'createdBy', 'createdAt', 'password']) {
    t.notOk(Object.hasOwn(state, hidden), `no ${hidden}`)
  }
  t.notMatch(
    JSON.stringify(state),
    /scrypt|c2FsdA|aGFzaA/,
    'the serialized state carries no part of the hash',
  )
  t.equal(state.hasPassword, true, 'hasPassword says a password is needed')
  t.equal(state.id, 's1')
  t.equal(state.version, 3)
  t.equal(state.name, 'Rehearsal')
  t.same(state.admins, ['alice'])
  t.equal(state.width, stageDefaults.width, 'room fields are passed through')
  t.equal(state.audioType, stageDefaults.audioType)

  const open = stageState(stage())
  t.equal(open.hasPassword, false, 'no hash: hasPassword false')
  for (const hidden of ['passwordHash', 'createdBy', 'createdAt']) t.notOk(Object.hasOwn(open, hidden))

  const source = stage({ passwordHash: 'h' })
  stageState(source)
  t.equal(source.passwordHash, 'h', 'the stored document is not mutated')
  t.equal(source.createdBy, 'alice')
})

// ── summaries ───────────────────────────────────────────────────────────────────────────────

t.test("a stage shows its router's entries from the assignment only", async (t) => {
  const assignment = {
    id: 's1',
    version: 2,
    stageId: 's1',
    routerId: 'r2',
    kinds: ['ov' as const],
    assignedAt: '2024-01-02T03:04:05.000Z',
    ov: { ipv4: '192.0.2.2', port: 5000, pin: 7 },
  }
  // an older release wrote the router's entries into the stage document itself
  const stored = { ...stage(), ovServer: { router: 'r1', ipv4: '192.0.2.1', port: 4000 } }
  t.same(stageState(stored).ovServer, undefined, 'no assignment: no relay, whatever the document says')
  t.same(
    stageState(stored, assignment).ovServer,
    { router: 'r2', ipv4: '192.0.2.2', port: 5000, pin: 7 },
    "the assigned router's relay",
  )
  t.same(stageState(stored, assignment).mediaRouter, undefined, 'no media URL was given')
  t.same(stageState(stage(), { ...assignment, media: { url: 'wss://r2.example/' } }).mediaRouter, {
    router: 'r2',
    url: 'wss://r2.example/',
  })
})

t.test('stageSummary', async (t) => {
  const s = stage({ admins: ['alice', 'bob'], passwordHash: 'h', audioType: 'ov', videoType: 'none' })
  const groups = [
    group('gz', { name: 'Zeta', color: '#ffffff' }),
    group('ga', { name: 'Alpha', color: '#111111', volume: 2 }),
    group('gm', { name: 'Mu', color: '#222222' }),
  ]

  const admin = stageSummary(s, groups, 'alice', undefined)
  t.same(admin, {
    id: 's1',
    name: 'Rehearsal',
    hasPassword: true,
    audioType: 'ov',
    videoType: 'none',
    isAdmin: true,
    isMember: false,
    joined: false,
    groups: [
      { id: 'ga', name: 'Alpha', color: '#111111' },
      { id: 'gm', name: 'Mu', color: '#222222' },
      { id: 'gz', name: 'Zeta', color: '#ffffff' },
    ],
  })
  t.strictSame(
    Object.keys(admin.groups[0]!).sort(),
    ['color', 'id', 'name'],
    'groups carry only id, name and colour',
  )
  t.same(
    groups.map((g) => g.id),
    ['gz', 'ga', 'gm'],
    'sorting the groups does not reorder the caller’s array',
  )

  const offline = stageSummary(s, groups, 'carol', member('carol'))
  t.equal(offline.isAdmin, false, 'a member who is not an admin')
  t.equal(offline.isMember, true)
  t.equal(offline.joined, false, 'an offline member has not joined')

  const online = stageSummary(s, groups, 'carol', member('carol', { joined: true, seat: 0 }))
  t.equal(online.joined, true, 'a joined member is in the stage')
  t.equal(online.isMember, true)

  const adminMember = stageSummary(s, [], 'bob', member('bob', { joined: true, seat: 1 }))
  t.same([adminMember.isAdmin, adminMember.isMember, adminMember.joined], [true, true, true])
  t.same(adminMember.groups, [], 'no groups')

  const outsider = stageSummary(stage(), groups, 'dave', undefined)
  t.same(
    [outsider.isAdmin, outsider.isMember, outsider.joined, outsider.hasPassword],
    [false, false, false, false],
  )
  t.notMatch(JSON.stringify(stageSummary(s, groups, 'alice', undefined)), /"h"|passwordHash/)
})

t.test('summaryAudience is admins and members without duplicates', async (t) => {
  const s = stage({ admins: ['alice', 'bob'] })
  t.same(summaryAudience(s, []).sort(), ['alice', 'bob'], 'admins only')
  t.same(
    summaryAudience(s, [member('carol'), member('dave')]).sort(),
    ['alice', 'bob', 'carol', 'dave'],
    'admins and members',
  )
  const both = summaryAudience(s, [member('bob'), member('carol'), member('bob')])
  t.same([...both].sort(), ['alice', 'bob', 'carol'], 'an admin who is also a member appears once')
  t.equal(new Set(both).size, both.length, 'no duplicates')
  t.same(summaryAudience({ admins: [] }, []), [], 'nobody')
})

t.test('a summary is visible to admins and members only', async (t) => {
  const s = stage({ admins: ['alice'] })
  t.match(visibleSummary(s, [], 'alice', undefined), { isAdmin: true, isMember: false }, 'an admin')
  t.match(visibleSummary(s, [], 'bob', member('bob')), { isAdmin: false, isMember: true }, 'a member')
  t.equal(visibleSummary(s, [], 'carol', undefined), null, 'anyone else: cleared')
})

t.test('a member is online while any of its devices is', async (t) => {
  t.equal(memberOnline([]), false, 'no devices')
  t.equal(memberOnline([{ online: false }, { online: false }]), false, 'all offline')
  t.equal(memberOnline([{ online: false }, { online: true }]), true, 'one online')
})

t.test('membershipDependents', async (t) => {
  const bob = member('bob')
  const carol = member('carol')
  const dave = member('dave')
  const tracks = [track('tb1', bob), track('tb2', bob), track('tc1', carol)]
  const mixes = {
    bobOwnGroup: mix('bob', 'group', 'g1'),
    bobSelf: mix('bob', 'member', bob.id, { muted: true }),
    bobOnCarol: mix('bob', 'member', carol.id),
    bobOnCarolTrack: mix('bob', 'track', 'tc1'),
    carolOnBob: mix('carol', 'member', bob.id),
    daveOnBobTrack: mix('dave', 'track', 'tb2'),
    carolOnGroup: mix('carol', 'group', 'g1'),
    carolOnDave: mix('carol', 'member', dave.id),
    daveOnCarolTrack: mix('dave', 'track', 'tc1'),
    daveSelf: mix('dave', 'member', dave.id, { muted: true }),
    // a group whose id happens to equal bob's member id is not bob
    groupNamedLikeBob: mix('carol', 'group', bob.id),
  }
  const all = Object.values(mixes)

  const forBob = membershipDependents(bob, tracks, all)
  t.same(forBob.tracks.map((x) => x.id).sort(), ['tb1', 'tb2'], "bob's tracks only")
  t.same(
    forBob.mixes.map((m) => m.id).sort(),
    [
      mixes.bobOwnGroup,
      mixes.bobSelf,
      mixes.bobOnCarol,
      mixes.bobOnCarolTrack,
      mixes.carolOnBob,
      mixes.daveOnBobTrack,
    ]
      .map((m) => m.id)
      .sort(),
    "bob's own mixes and others' mixes targeting bob or bob's tracks",
  )
  for (const unrelated of [
    mixes.carolOnGroup,
    mixes.carolOnDave,
    mixes.daveOnCarolTrack,
    mixes.daveSelf,
    mixes.groupNamedLikeBob,
  ]) {
    t.notOk(forBob.mixes.includes(unrelated), `not ${unrelated.id}`)
  }

  const forDave = membershipDependents(dave, tracks, all)
  t.same(forDave.tracks, [], 'dave has no tracks')
  t.same(
    forDave.mixes.map((m) => m.id).sort(),
    [mixes.daveOnBobTrack, mixes.daveOnCarolTrack, mixes.daveSelf, mixes.carolOnDave].map((m) => m.id).sort(),
  )

  t.same(membershipDependents(bob, [], []), { tracks: [], mixes: [] }, 'nothing hangs off: nothing')
})

t.test('applyPatch', async (t) => {
  const doc = member('bob', { volume: 0.8, muted: false, isDirector: false })
  const patched = applyPatch(doc, { volume: 2, muted: undefined, isDirector: true })
  t.equal(patched.volume, 2, 'a given field is set')
  t.equal(patched.isDirector, true)
  t.equal(patched.muted, false, 'undefined leaves the field as it is')
  t.ok(Object.hasOwn(patched, 'muted'))
  t.equal(patched.name, 'bob', 'fields not in the patch stay')
  t.same(patched.position, origin)
  t.equal(doc.volume, 0.8, 'the original is not mutated')
  t.equal(doc.isDirector, false)
  t.not(patched, doc, 'a new object')

  t.same(applyPatch(doc, {}), doc, 'an empty patch changes nothing')
  t.same(applyPatch(doc, { volume: undefined, groupId: undefined }), doc, 'all undefined changes nothing')
  t.equal(applyPatch(doc, { muted: false }).muted, false, 'false is a value, not "unset"')
  t.equal(applyPatch(member('x', { volume: 1 }), { volume: 0 }).volume, 0, '0 is a value, not "unset"')
  const pos = { x: 1, y: 2, z: 3, rX: 0, rY: 90, rZ: 0 }
  t.same(applyPatch(doc, { position: pos }).position, pos, 'objects are replaced')
})

t.test("a joined member's ov tracks are the active card's channels of its online ov-boxes", async (t) => {
  const card = (name: string) => ({
    name,
    driver: 'jack' as const,
    sampleRate: 48000,
    periodSize: 96,
    numPeriods: 2,
    numInputChannels: 2,
    numOutputChannels: 2,
  })
  const box = {
    id: 'box',
    kind: 'ovbox' as const,
    online: true,
    desired: { soundCardName: 'usb' },
    soundCards: [card('hw:1'), card('usb')],
    tracks: [
      { id: 't1', soundCardName: 'hw:1', channel: 0, gain: 1, directivity: 'omni' as const },
      {
        id: 't2',
        soundCardName: 'usb',
        channel: 0,
        gain: 0.5,
        directivity: 'cardioid' as const,
        name: 'mic',
      },
    ],
  }
  const joined = member('u1', { joined: true, seat: 0 })
  t.same(memberOvTracks(joined, [box]), [
    {
      id: 't2',
      stageId: 's1',
      userId: 'u1',
      memberId: 'm-u1',
      deviceId: 'box',
      kind: 'ov',
      name: 'mic',
      ov: { soundCardName: 'usb', channel: 0, gain: 0.5, directivity: 'cardioid' },
    },
  ])
  t.same(memberOvTracks(member('u1'), [box]), [], 'a member not in the stage sends nothing')
  t.same(memberOvTracks(joined, [{ ...box, online: false }]), [], 'an offline box sends nothing')
  t.same(
    memberOvTracks(joined, [{ ...box, kind: 'browser' as const }]),
    [],
    'browsers send media tracks, not ov',
  )
})

t.test('a commit refreshes the members of users whose presence, sent tracks or stage changed', async (t) => {
  const device = (online: boolean, gain = 1) => ({
    id: 'd1',
    version: 1,
    owner: 'u1',
    kind: 'ovbox',
    online,
    desired: {},
    soundCards: [{ name: 'hw:1', numInputChannels: 2 }],
    tracks: [{ id: 't', soundCardName: 'hw:1', channel: 0, gain, directivity: 'omni' }],
  })
  const change = (collection: string, before: unknown, after: unknown) =>
    ({ collection, before, after }) as Change
  t.same([...usersToRefresh([change('devices', device(false), device(true))])], ['u1'], 'presence')
  t.same([...usersToRefresh([change('devices', device(true), device(true, 2))])], ['u1'], 'a track edit')
  t.same(
    [...usersToRefresh([change('devices', device(true), { ...device(true), lastSeen: 'now', version: 2 })])],
    [],
    'a report or last-seen update changes no member',
  )
  t.same([...usersToRefresh([change('devices', device(true), null)])], ['u1'], 'a removed device')
  const user = (stageId?: string) => ({ id: 'u2', version: 1, name: 'U', ...(stageId ? { stageId } : {}) })
  t.same([...usersToRefresh([change('users', user(), user('s1'))])], ['u2'], 'joining a stage')
  t.same([...usersToRefresh([change('users', user('s1'), { ...user('s1'), name: 'V' })])], [], 'a rename')
})

t.test(
  'successorAdmin: a director first, then the lowest seat, then the first user id; never the leaving user',
  async (t) => {
    const members = [
      member('leaving', { isDirector: true, seat: 0 }),
      member('zed', { seat: 4 }),
      member('amy'),
      member('bea', { seat: 2 }),
    ]
    t.equal(successorAdmin(members, 'leaving'), 'bea', 'the lowest seat when there is no other director')
    t.equal(successorAdmin([...members, member('dir', { isDirector: true })], 'leaving'), 'dir')
    t.equal(successorAdmin([member('amy'), member('abe')], 'leaving'), 'abe', 'by id among equals')
    t.equal(successorAdmin([member('leaving')], 'leaving'), undefined, 'nobody else: no heir')
  },
)

t.test('freeGroupColor: the first unused palette colour, then distinct generated ones', async (t) => {
  t.equal(freeGroupColor([]), GROUP_PALETTE[0], 'an empty stage gets the first palette colour')
  t.equal(
    freeGroupColor([GROUP_PALETTE[0].toUpperCase(), GROUP_PALETTE[2]]),
    GROUP_PALETTE[1],
    'taken colours are skipped, ignoring case',
  )
  t.equal(new Set(GROUP_PALETTE).size, GROUP_PALETTE.length, 'the palette has no duplicates')

  const taken: string[] = [...GROUP_PALETTE]
  for (let i = 0; i < 500; i++) taken.push(freeGroupColor(taken))
  t.equal(new Set(taken).size, taken.length, 'beyond the palette every generated colour is new')
  t.ok(
    taken.every((c) => /^#[0-9a-f]{6}$/.test(c)),
    'every colour is a lower-case #rrggbb',
  )
})

import t from 'tap'
import { startTestHub, recordMessages, sleep } from '../../helpers/hub.ts'
import { actor, ok, refused, roomy } from '../../helpers/actors.ts'
import type { InviteDoc } from '../../../services/stages/invites.ts'

interface Created {
  code: string
  invite: { id: string; stageId: string; groupId?: string; expiresAt: string; redeemed: number }
}

t.test('stage invitations', async (t) => {
  const th = await startTestHub(t, roomy)
  const admin = await actor(th, 'Alice')
  const stage = await ok<{ id: string }>(admin, 'stage.create', {
    name: 'Rehearsal',
    password: 'the passphrase',
  })
  const band = await ok<{ id: string }>(admin, 'group.create', {
    stageId: stage.id,
    name: 'Band',
    color: '#112233',
  })
  const choir = await ok<{ id: string }>(admin, 'group.create', {
    stageId: stage.id,
    name: 'Choir',
    color: '#445566',
  })

  // an operator's view of every retained topic, to check that no code is ever published
  const ops = await th.connect({ clientId: 'ops-all', token: th.token({ sub: 'ops', role: 'admin' }) })
  const everything = recordMessages(ops)
  await ops.subscribeAsync('#', { qos: 1 })

  t.test(
    'an admin creates an invite with a 7-day default expiry; its code is shown once and listed never',
    async (t) => {
      const before = Date.now()
      const created = await ok<Created>(admin, 'invite.create', { stageId: stage.id })
      t.match(created.code, /^[A-Za-z0-9_-]{24}$/, 'a 24-character code')
      const days = (Date.parse(created.invite.expiresAt) - before) / 86_400_000
      t.ok(days > 6.99 && days < 7.01, `expires in 7 days (${days.toFixed(3)})`)
      t.notOk('groupId' in created.invite, 'bound to no group')
      const listed = await ok<{ invites: Created['invite'][] }>(admin, 'invite.list', { stageId: stage.id })
      t.ok(
        listed.invites.some((i) => i.id === created.invite.id),
        'listed',
      )
      t.notOk(JSON.stringify(listed).includes(created.code), 'the list does not carry the code')
      const [stored] = await th.hub.store.find('stage_invites', { stageId: stage.id })
      t.notOk(JSON.stringify(stored).includes(created.code), 'the store keeps only a hash of the code')
    },
  )

  t.test('a non-admin can neither create, list nor revoke invites', async (t) => {
    const mallory = await actor(th, 'Mallory')
    const created = await ok<Created>(admin, 'invite.create', { stageId: stage.id })
    for (const [action, params] of [
      ['invite.create', { stageId: stage.id }],
      ['invite.list', { stageId: stage.id }],
      ['invite.revoke', { stageId: stage.id, inviteId: created.invite.id }],
    ] as const) {
      const error = await refused(mallory, action, params)
      t.equal(error.code, 'forbidden', `${action} is refused`)
      t.match(error.message, /only admins of stage/)
    }
  })

  t.test(
    'an invited person previews the stage, then joins with the password and a group they pick',
    async (t) => {
      const { code } = await ok<Created>(admin, 'invite.create', { stageId: stage.id })
      const bob = await actor(th, 'Bob')
      const preview = await ok<{
        stageId: string
        name: string
        invitedBy?: string
        hasPassword: boolean
        groups: { id: string }[]
      }>(bob, 'invite.preview', { code })
      t.equal(preview.stageId, stage.id)
      t.equal(preview.name, 'Rehearsal')
      t.equal(preview.invitedBy, 'Alice', 'says who invites')
      t.equal(preview.hasPassword, true, 'says a password is needed')
      t.same(
        preview.groups.map((g) => g.id).sort(),
        [band.id, choir.id].sort(),
        'lists every group to pick from',
      )

      const noPassword = await refused(bob, 'invite.redeem', { code, groupId: choir.id })
      t.equal(noPassword.code, 'forbidden', 'the invite does not replace the password')
      t.match(noPassword.message, /needs a password/)
      const wrong = await refused(bob, 'invite.redeem', { code, groupId: choir.id, password: 'not it' })
      t.match(wrong.message, /wrong password/)
      const noGroup = await refused(bob, 'invite.redeem', { code, password: 'the passphrase' })
      t.equal(noGroup.code, 'invalid_request', 'an unbound invite needs a group picked')

      const member = await ok<{ userId: string; groupId: string; joined: boolean }>(bob, 'invite.redeem', {
        code,
        groupId: choir.id,
        password: 'the passphrase',
      })
      t.equal(member.userId, bob.id)
      t.equal(member.groupId, choir.id, 'in the group picked')
      t.equal(member.joined, true)
    },
  )

  t.test(
    'an invite bound to a group joins that group; on a stage without a password none is asked',
    async (t) => {
      const open = await ok<{ id: string }>(admin, 'stage.create', { name: 'Open' })
      const strings = await ok<{ id: string }>(admin, 'group.create', { stageId: open.id, name: 'Strings' })
      await ok(admin, 'group.create', { stageId: open.id, name: 'Winds' })
      const created = await ok<Created>(admin, 'invite.create', { stageId: open.id, groupId: strings.id })
      t.equal(created.invite.groupId, strings.id)
      const carol = await actor(th, 'Carol')
      const preview = await ok<{ hasPassword: boolean; groupId: string; groups: { id: string }[] }>(
        carol,
        'invite.preview',
        { code: created.code },
      )
      t.equal(preview.hasPassword, false)
      t.equal(preview.groupId, strings.id)
      t.same(
        preview.groups.map((g) => g.id),
        [strings.id],
        'shows only the bound group',
      )
      const member = await ok<{ groupId: string }>(carol, 'invite.redeem', { code: created.code })
      t.equal(member.groupId, strings.id, 'joined the bound group')
      const listed = await ok<{ invites: Created['invite'][] }>(admin, 'invite.list', { stageId: open.id })
      t.equal(listed.invites[0]?.redeemed, 1, 'the list counts the use')
    },
  )

  t.test('revoked, expired and unknown codes are refused with a clear error', async (t) => {
    const dave = await actor(th, 'Dave')
    const revoked = await ok<Created>(admin, 'invite.create', { stageId: stage.id })
    await ok(admin, 'invite.revoke', { stageId: stage.id, inviteId: revoked.invite.id })
    const listed = await ok<{ invites: Created['invite'][] }>(admin, 'invite.list', { stageId: stage.id })
    t.notOk(
      listed.invites.some((i) => i.id === revoked.invite.id),
      'a revoked invite is no longer listed',
    )
    const r = await refused(dave, 'invite.preview', { code: revoked.code })
    t.equal(r.code, 'forbidden')
    t.match(r.message, /revoked/)

    const expiring = await ok<Created>(admin, 'invite.create', { stageId: stage.id, expiresInSeconds: 60 })
    await th.hub.store.transaction(async (tx) => {
      const doc = await tx.get<InviteDoc>('stage_invites', expiring.invite.id)
      tx.replace('stage_invites', { ...doc!, expiresAt: new Date(Date.now() - 1000).toISOString() })
    })
    const e = await refused(dave, 'invite.redeem', {
      code: expiring.code,
      groupId: band.id,
      password: 'the passphrase',
    })
    t.equal(e.code, 'forbidden')
    t.match(e.message, /expired at/)

    const u = await refused(dave, 'invite.preview', { code: 'A'.repeat(24) })
    t.equal(u.code, 'not_found')
    t.match(u.message, /ask the stage admin/)
    const bad = await refused(dave, 'invite.preview', { code: 'short' })
    t.equal(bad.code, 'invalid_request', 'a malformed code is refused by the schema')
  })

  t.test('trying invite codes is rate-limited per account', async (t) => {
    const eve = await actor(th, 'Eve')
    const answers: string[] = []
    for (let i = 0; i < 12; i++) {
      const error = await refused(eve, 'invite.preview', {
        code: `${String(i).padStart(2, '0')}${'B'.repeat(22)}`,
      })
      answers.push(error.code)
    }
    t.same(answers.slice(0, 10), Array(10).fill('not_found'), 'ten codes are tried')
    t.same(answers.slice(10), ['rate_limited', 'rate_limited'], 'then the account must wait')
    const { code } = await ok<Created>(admin, 'invite.create', { stageId: stage.id })
    const limited = await refused(eve, 'invite.redeem', {
      code,
      groupId: band.id,
      password: 'the passphrase',
    })
    t.equal(limited.code, 'rate_limited', 'even a right code waits')
    t.match(limited.message, /retry in \d+ s/)
    const frank = await actor(th, 'Frank')
    await ok(frank, 'invite.preview', { code })
    t.pass('another account is not affected')
  })

  t.test('removing the stage removes its invites', async (t) => {
    const gone = await ok<{ id: string }>(admin, 'stage.create', { name: 'Short-lived' })
    const { code } = await ok<Created>(admin, 'invite.create', { stageId: gone.id })
    await ok(admin, 'stage.remove', { stageId: gone.id })
    t.same(await th.hub.store.find('stage_invites', { stageId: gone.id }), [])
    const error = await refused(admin, 'invite.preview', { code })
    t.equal(error.code, 'not_found')
  })

  t.test('no code ever appears on any topic', async (t) => {
    const { code } = await ok<Created>(admin, 'invite.create', { stageId: stage.id })
    await sleep(300)
    const published = everything.messages.map((m) => `${m.topic} ${m.payload.toString()}`).join('\n')
    t.ok(everything.messages.length > 0, `the operator saw ${everything.messages.length} messages`)
    t.notOk(published.includes(code), 'the code is in no message the operator can read')
    t.notOk(/codeHash/.test(published), 'nor its hash')
  })
})

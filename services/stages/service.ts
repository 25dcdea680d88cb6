import { randomBytes } from 'node:crypto'
import { isDeepStrictEqual } from 'node:util'
import type { Logger } from 'pino'
import type { Quotas } from '../config.ts'
import type { Identity } from '../../broker/tokens.ts'
import {
  type MemberState,
  type StageState,
  chatSend,
  groupCreate,
  groupRemove,
  groupUpdate,
  memberRemove,
  memberUpdate,
  mixRemove,
  mixSet,
  stageAddAdmin,
  stageCreate,
  stageForget,
  stageJoin,
  stageLeave,
  stageRemove,
  stageRemoveAdmin,
  stageUpdate,
} from '../../schemas/actions/stage.ts'
import {
  inviteCreate,
  inviteList,
  invitePreview,
  inviteRedeem,
  inviteRevoke,
} from '../../schemas/actions/invite.ts'
import { type AssignmentDoc, collections, type UserDoc } from '../collections.ts'
import type { DeviceDoc } from '../collections.ts'
import { HubError, checkVersion, conflict, forbidden, notFound } from '../errors.ts'
import type { RequestContext, RequestPipeline } from '../requests/pipeline.ts'
import { RateLimiter } from '../requests/rate-limit.ts'
import type { StatePublisher } from '../state-publisher.ts'
import type { Store, Transaction } from '../store/store.ts'
import { GuessThrottle, throttledCheck } from '../users/auth-limits.ts'
import type { PasswordPool } from '../users/password-pool.ts'
import type { AccountRemoval, AccountRemovalChoice, UsersService } from '../users/service.ts'
import {
  type GroupDoc,
  type MemberDoc,
  type MixDoc,
  type StageDoc,
  type StageTrackDoc,
  mixKey,
  stageCollections as c,
} from './model.ts'
import { stageProjection, stageTopics as topics } from './projection.ts'
import {
  SEATS_PER_STAGE,
  applyPatch,
  freeGroupColor,
  groupState,
  isAdmin,
  lowestFreeSeat,
  memberOnline,
  memberState,
  memberOvTracks,
  membershipDependents,
  usersToRefresh,
  mixState,
  origin,
  stageDefaults,
  stageState,
  successorAdmin,
} from './rules.ts'
import { deleteTracks, insertTrack } from './tracks.ts'
import {
  DEFAULT_INVITE_SECONDS,
  INVITES_PER_STAGE,
  INVITE_TRIES,
  type InviteDoc,
  hashInviteCode,
  inviteCollection,
  inviteState,
  isLive,
  newInviteCode,
  usableInvite,
} from './invites.ts'

export interface StagesServiceOptions {
  store: Store
  pipeline: RequestPipeline
  publisher: StatePublisher
  users: UsersService
  quotas: Quotas
  passwords: PasswordPool
  /** Wrong stage passwords: per (user, stage) and per user refused, per stage from anyone slowed. */
  passwordChecks: {
    perUserAndStage: number
    perUser: number
    perStage: number
    forgiveSeconds: number
    slowdownMs: number
  }
  log: Logger
}

const newId = () => randomBytes(12).toString('base64url')

function requireUser(who: Identity): string {
  if (who.role !== 'user') throw forbidden('stages are managed with a user token')
  return who.id
}

/**
 * Stages, groups, members, seats, mixes and chat (docs/protocol/actions.md). Every handler checks permissions
 * against the stored stage and changes the store in the request's transaction; the retained topics
 * follow the commit (./projection.ts). Chat messages, which nothing stores, go out as notifications.
 */
export class StagesService {
  readonly #options: StagesServiceOptions
  readonly #chatLimiter: RateLimiter
  readonly #wrongPasswords: GuessThrottle
  readonly #inviteTries = new RateLimiter(INVITE_TRIES)

  constructor(options: StagesServiceOptions) {
    this.#options = options
    const { perUserAndStage, perUser, perStage, ...pace } = options.passwordChecks
    this.#wrongPasswords = new GuessThrottle({ refuse: [perUserAndStage, perUser], slow: perStage, ...pace })
    this.#chatLimiter = new RateLimiter({
      perSecond: options.quotas.chatPerSecond,
      burst: options.quotas.chatBurst,
    })
  }

  async start(): Promise<void> {
    const { store, pipeline, publisher, users } = this.#options
    for (const spec of Object.values(c)) await store.ensureCollection(spec)
    await store.ensureCollection(inviteCollection)
    publisher.project(stageProjection(store))
    users.onProfileChange((ctx, user) => this.#renameMembers(ctx, user))
    users.onAccountRemoval((ctx, user, choice, removal) => this.#removeAccount(ctx, user, choice, removal))
    // awaited by the store, so a request's membership effects are published before its answer
    // in a cluster every process runs it for every commit (the change feed): the transaction only
    // writes what differs from the store, so the others read, find nothing to do and commit nothing;
    // and the derived state follows even when the committing process died right after its commit
    store.onChange((changes) =>
      Promise.all(
        [...usersToRefresh(changes)].map((userId) =>
          this.refreshMember(userId).catch((err: unknown) =>
            this.#options.log.error({ err, userId }, 'could not bring a membership up to date'),
          ),
        ),
      ).then(() => undefined),
    )

    pipeline.register(stageCreate, (ctx, p) => this.#createStage(ctx, p))
    pipeline.register(stageUpdate, (ctx, p) => this.#updateStage(ctx, p))
    pipeline.register(stageRemove, (ctx, p) => this.#removeStage(ctx, p.stageId))
    pipeline.register(stageAddAdmin, (ctx, p) => this.#addAdmin(ctx, p.stageId, p.userId))
    pipeline.register(stageRemoveAdmin, (ctx, p) => this.#removeAdmin(ctx, p.stageId, p.userId))
    pipeline.register(stageJoin, (ctx, p) => this.#join(ctx, p))
    pipeline.register(stageLeave, async (ctx) => {
      const user = await this.#user(ctx.tx, requireUser(ctx.who))
      await this.#leaveCurrent(ctx, user)
      return {}
    })
    pipeline.register(stageForget, async (ctx, p) => {
      const userId = requireUser(ctx.who)
      await this.#removeMembership(ctx, p.stageId, userId)
      return {}
    })
    pipeline.register(groupCreate, (ctx, p) => this.#createGroup(ctx, p))
    pipeline.register(groupUpdate, (ctx, p) => this.#updateGroup(ctx, p))
    pipeline.register(groupRemove, (ctx, p) => this.#removeGroup(ctx, p))
    pipeline.register(memberUpdate, (ctx, p) => this.#updateMember(ctx, p))
    pipeline.register(memberRemove, async (ctx, p) => {
      await this.#adminStage(ctx, p.stageId)
      await this.#removeMembership(ctx, p.stageId, p.userId)
      return {}
    })
    pipeline.register(mixSet, (ctx, p) => this.#setMix(ctx, p))
    pipeline.register(mixRemove, async (ctx, p) => {
      const userId = requireUser(ctx.who)
      const mix = await ctx.tx.get<MixDoc>(c.mixes.name, mixKey(userId, p.kind, p.id))
      if (!mix) throw notFound(`your ${p.kind} override for ${p.id}`)
      ctx.tx.delete(c.mixes.name, mix)
      return {}
    })
    pipeline.register(chatSend, (ctx, p) => this.#chat(ctx, p.text))
    pipeline.register(inviteCreate, (ctx, p) => this.#createInvite(ctx, p))
    pipeline.register(inviteList, async (ctx, p) => {
      await this.#adminStage(ctx, p.stageId)
      const now = Date.now()
      const invites = await ctx.tx.find<InviteDoc>(inviteCollection.name, { stageId: p.stageId })
      return { invites: invites.filter((i) => isLive(i, now)).map(inviteState) }
    })
    pipeline.register(inviteRevoke, async (ctx, p) => {
      await this.#adminStage(ctx, p.stageId)
      const invite = await ctx.tx.get<InviteDoc>(inviteCollection.name, p.inviteId)
      if (!invite || invite.stageId !== p.stageId)
        throw notFound(`invite ${p.inviteId} of stage ${p.stageId}`)
      if (invite.revokedAt === undefined)
        ctx.tx.replace(inviteCollection.name, { ...invite, revokedAt: new Date().toISOString() })
      return {}
    })
    pipeline.register(invitePreview, async (ctx, p) => {
      const invite = await this.#redeemable(ctx, p.code)
      const stage = await this.#stage(ctx.tx, invite.stageId)
      const groups = await ctx.tx.find<GroupDoc>(c.groups.name, { stageId: stage.id })
      const shown = invite.groupId === undefined ? groups : groups.filter((g) => g.id === invite.groupId)
      const creator = await ctx.tx.get<UserDoc>(collections.users.name, invite.createdBy)
      return {
        stageId: stage.id,
        name: stage.name,
        ...(creator ? { invitedBy: creator.name } : {}),
        hasPassword: stage.passwordHash !== undefined,
        ...(invite.groupId === undefined ? {} : { groupId: invite.groupId }),
        groups: shown.map((g) => ({ id: g.id, name: g.name, color: g.color })),
        expiresAt: invite.expiresAt,
      }
    })
    pipeline.register(inviteRedeem, async (ctx, p) => {
      const invite = await this.#redeemable(ctx, p.code)
      if (invite.groupId !== undefined && p.groupId !== undefined && p.groupId !== invite.groupId)
        throw forbidden('this invite is for one group: omit groupId to join it')
      const groupId = invite.groupId ?? p.groupId
      if (groupId === undefined)
        throw new HubError(
          'invalid_request',
          'this invite lets you pick a group: give groupId (see invite.preview)',
        )
      const member = await this.#join(ctx, {
        stageId: invite.stageId,
        groupId,
        ...(p.password === undefined ? {} : { password: p.password }),
      })
      ctx.tx.replace(inviteCollection.name, { ...invite, redeemed: invite.redeemed + 1 })
      return member
    })
  }

  /**
   * Brings a user's membership up to date with their devices, after a device or the user's current
   * stage changed: the member is online while any device is (docs/protocol/README.md#presence), and the ov tracks the user's
   * online ov-boxes send are the member's `ov` tracks in the stage (a track that goes away takes the
   * mixes on it along). Media tracks (routers) are left alone.
   */
  async refreshMember(userId: string): Promise<void> {
    await this.#options.store.transaction(async (tx) => {
      const user = await tx.get<UserDoc>(collections.users.name, userId)
      const member = user?.stageId ? await this.#membership(tx, user.stageId, userId) : null
      const devices = await tx.find<DeviceDoc>(collections.devices.name, { owner: userId })
      if (member?.joined) {
        const online = memberOnline(devices)
        if (member.online !== online) tx.replace(c.members.name, { ...member, online })
      }
      const wanted = new Map(member ? memberOvTracks(member, devices).map((t) => [t.id, t]) : [])
      const existing = await tx.find<StageTrackDoc>(c.stageTracks.name, { userId, kind: 'ov' })
      const gone: StageTrackDoc[] = []
      for (const track of existing) {
        const next = wanted.get(track.id)
        wanted.delete(track.id)
        if (next && next.stageId === track.stageId) {
          const { version: _version, ...current } = track
          if (!isDeepStrictEqual(current, next)) tx.replace(c.stageTracks.name, { ...track, ...next })
          continue
        }
        gone.push(track)
        if (next) wanted.set(next.id, next) // moved to another stage: inserted below
      }
      await deleteTracks(tx, gone)
      for (const track of wanted.values()) insertTrack(tx, track)
    })
  }

  // ── stages ────────────────────────────────────────────────────────────────────────────────

  async #createStage(ctx: RequestContext, params: typeof stageCreate.params.static) {
    const userId = requireUser(ctx.who)
    const { quotas, passwords } = this.#options
    const created = await ctx.tx.find<StageDoc>(c.stages.name, { createdBy: userId })
    if (created.length >= quotas.stagesPerUser) {
      throw forbidden(`you have ${created.length} stages, the most one user may create: remove one first`)
    }
    const { password, ...settings } = params
    const stage = ctx.tx.insert<StageDoc>(c.stages.name, {
      id: newId(),
      ...stageDefaults,
      ...settings,
      admins: [userId],
      ...(password ? { passwordHash: await ctx.once('hash', () => passwords.hash(password)) } : {}),
      createdBy: userId,
      createdAt: new Date().toISOString(),
    })
    return stageState(stage)
  }

  async #updateStage(ctx: RequestContext, params: typeof stageUpdate.params.static) {
    const stage = await this.#adminStage(ctx, params.stageId)
    checkVersion(`stage ${stage.id}`, stage, params.version)
    const { password, ...settings } = params.patch
    const next = applyPatch<StageDoc>(stage, settings)
    if (password === null) delete next.passwordHash
    else if (password !== undefined) {
      next.passwordHash = await ctx.once('hash', () => this.#options.passwords.hash(password))
    }
    return this.#visible(ctx.tx, ctx.tx.replace(c.stages.name, next))
  }

  async #removeStage(ctx: RequestContext, stageId: string) {
    await this.#deleteStage(ctx, await this.#adminStage(ctx, stageId))
    return {}
  }

  /** Deletes a stage with everything hanging off it (stage.remove, user.delete). */
  async #deleteStage(ctx: RequestContext, stage: StageDoc): Promise<void> {
    const { tx } = ctx
    const stageId = stage.id
    const [groups, members, tracks, mixes] = await Promise.all([
      tx.find<GroupDoc>(c.groups.name, { stageId }),
      tx.find<MemberDoc>(c.members.name, { stageId }),
      tx.find<StageTrackDoc>(c.stageTracks.name, { stageId }),
      tx.find<MixDoc>(c.mixes.name, { stageId }),
    ])
    for (const member of members.filter((m) => m.joined)) {
      const user = await tx.get<UserDoc>(collections.users.name, member.userId)
      if (user?.stageId === stageId) this.#setCurrentStage(ctx, user, undefined)
    }
    tx.delete(c.stages.name, stage)
    for (const invite of await tx.find<InviteDoc>(inviteCollection.name, { stageId }))
      tx.delete(inviteCollection.name, invite)
    for (const [name, docs] of [
      [c.groups.name, groups],
      [c.members.name, members],
      [c.stageTracks.name, tracks],
      [c.mixes.name, mixes],
    ] as const) {
      for (const doc of docs) tx.delete(name, doc)
    }
  }

  async #addAdmin(ctx: RequestContext, stageId: string, userId: string) {
    const stage = await this.#adminStage(ctx, stageId)
    if (!(await ctx.tx.get<UserDoc>(collections.users.name, userId))) throw notFound(`user ${userId}`)
    if (isAdmin(stage, userId)) return this.#visible(ctx.tx, stage)
    return this.#visible(
      ctx.tx,
      ctx.tx.replace(c.stages.name, { ...stage, admins: [...stage.admins, userId] }),
    )
  }

  async #removeAdmin(ctx: RequestContext, stageId: string, userId: string) {
    const stage = await this.#adminStage(ctx, stageId)
    if (!isAdmin(stage, userId)) throw notFound(`admin ${userId} of stage ${stageId}`)
    if (stage.admins.length === 1)
      throw conflict('a stage needs an admin: add another admin before removing the last one')
    const saved = ctx.tx.replace(c.stages.name, {
      ...stage,
      admins: stage.admins.filter((a) => a !== userId),
    })
    return this.#visible(ctx.tx, saved)
  }

  /**
   * user.delete: the user's memberships (with their mixes and tracks) go; stages the user administers
   * with others lose the user as admin; stages where the user is the only admin are handed over to
   * another member or removed, as the user chose.
   */
  async #removeAccount(
    ctx: RequestContext,
    user: UserDoc,
    choice: AccountRemovalChoice,
    removal: AccountRemoval,
  ): Promise<void> {
    const { tx } = ctx
    const userId = user.id
    const memberships = await tx.find<MemberDoc>(c.members.name, { userId })
    const administered = await this.#administeredStages(ctx, userId)
    const sole = administered.filter((stage) => stage.admins.length === 1)
    if (sole.length > 0 && choice.soleAdminStages === undefined) {
      throw new HubError(
        'invalid_request',
        `you are the only admin of ${sole.map((s) => `"${s.name}" (${s.id})`).join(', ')}: ` +
          'set soleAdminStages to "handOver" (another member becomes its admin) or "remove"',
      )
    }
    const touched = new Set<string>([...memberships.map((m) => m.stageId), ...administered.map((s) => s.id)])
    const newAdmins = new Map<string, string[]>()
    for (const stage of administered) {
      const others = stage.admins.filter((a) => a !== userId)
      if (others.length > 0) {
        newAdmins.set(stage.id, others)
        continue
      }
      const heir =
        choice.soleAdminStages === 'handOver'
          ? successorAdmin(await tx.find<MemberDoc>(c.members.name, { stageId: stage.id }), userId)
          : undefined
      if (heir) {
        newAdmins.set(stage.id, [heir])
        removal.stagesHandedOver.push({ stageId: stage.id, adminId: heir })
      } else {
        await this.#deleteStage(ctx, stage)
        removal.stagesRemoved.push(stage.id)
        touched.delete(stage.id)
      }
    }
    for (const member of memberships) {
      if (!touched.has(member.stageId)) continue
      await this.#deleteMember(ctx, await this.#stage(tx, member.stageId), member)
    }
    for (const [stageId, admins] of newAdmins) {
      const stage = await this.#stage(tx, stageId)
      tx.replace(c.stages.name, { ...stage, admins })
    }
  }

  /**
   * Stages the user administers. Admins are a list in the stage document, which the store cannot
   * query: candidates come from a scan outside the transaction (once per request), and each is read
   * in it. A stage the user creates meanwhile conflicts with this transaction (it reads the stages by
   * creator); one the user is made admin of in the same instant keeps the id among its other admins,
   * who can remove it with stage.removeAdmin.
   */
  async #administeredStages(ctx: RequestContext, userId: string): Promise<StageDoc[]> {
    const { store } = this.#options
    const candidates = await ctx.once('administered', async () => {
      const ids: string[] = []
      for await (const stage of store.scan<StageDoc>(c.stages.name))
        if (isAdmin(stage, userId)) ids.push(stage.id)
      return ids
    })
    const created = await ctx.tx.find<StageDoc>(c.stages.name, { createdBy: userId })
    const ids = new Set([...candidates, ...created.map((s) => s.id)])
    const stages: StageDoc[] = []
    for (const id of ids) {
      const stage = await ctx.tx.get<StageDoc>(c.stages.name, id)
      if (stage && isAdmin(stage, userId)) stages.push(stage)
    }
    return stages
  }

  // ── invitations ───────────────────────────────────────────────────────────────────────────

  async #createInvite(ctx: RequestContext, params: typeof inviteCreate.params.static) {
    const stage = await this.#adminStage(ctx, params.stageId)
    if (params.groupId !== undefined) await this.#group(ctx.tx, stage.id, params.groupId)
    const now = Date.now()
    const existing = await ctx.tx.find<InviteDoc>(inviteCollection.name, { stageId: stage.id })
    // expired and revoked invitations make room
    for (const old of existing.filter((i) => !isLive(i, now))) ctx.tx.delete(inviteCollection.name, old)
    if (existing.filter((i) => isLive(i, now)).length >= INVITES_PER_STAGE)
      throw forbidden(
        `this stage has ${INVITES_PER_STAGE} live invites, the most it may have: revoke one first`,
      )
    const code = await ctx.once('invite-code', () => Promise.resolve(newInviteCode()))
    const invite = ctx.tx.insert<InviteDoc>(inviteCollection.name, {
      id: newId(),
      stageId: stage.id,
      ...(params.groupId === undefined ? {} : { groupId: params.groupId }),
      codeHash: hashInviteCode(code),
      createdBy: requireUser(ctx.who),
      createdAt: new Date(now).toISOString(),
      expiresAt: new Date(now + (params.expiresInSeconds ?? DEFAULT_INVITE_SECONDS) * 1000).toISOString(),
      redeemed: 0,
    })
    return { invite: inviteState(invite), code }
  }

  /** The invitation a code names, if it can be used; every try counts against the account's limit. */
  async #redeemable(ctx: RequestContext, code: string): Promise<InviteDoc> {
    const userId = requireUser(ctx.who)
    const admitted = await ctx.once('invite-try', () => Promise.resolve(this.#inviteTries.take(userId)))
    if (!admitted) {
      throw new HubError(
        'rate_limited',
        `too many invite codes tried: retry in ${this.#inviteTries.retryAfterSeconds(userId)} s`,
        this.#inviteTries.retryAfterSeconds(userId),
      )
    }
    const [invite] = await ctx.tx.find<InviteDoc>(inviteCollection.name, { codeHash: hashInviteCode(code) })
    return usableInvite(invite, Date.now())
  }

  // ── joining and leaving ───────────────────────────────────────────────────────────────────

  #checkPassword(userId: string, stageId: string, password: string, hash: string): Promise<boolean> {
    return throttledCheck(
      this.#wrongPasswords.admit([`${userId}|${stageId}`, userId], stageId),
      'too many wrong stage passwords',
      () => this.#options.passwords.verify(password, hash, 'signedIn'),
    )
  }

  async #join(ctx: RequestContext, params: typeof stageJoin.params.static): Promise<MemberState> {
    const userId = requireUser(ctx.who)
    const { tx } = ctx
    const stage = await this.#stage(tx, params.stageId)
    if (stage.passwordHash && !isAdmin(stage, userId)) {
      if (params.password === undefined) throw forbidden('this stage needs a password to join')
      const { password } = params
      const hash = stage.passwordHash
      // checked (and counted) once per request, not on every re-run of a transaction that lost a seat race
      const right = await ctx.once(`verify:${hash}`, () =>
        this.#checkPassword(userId, stage.id, password, hash),
      )
      if (!right) throw forbidden('wrong password for this stage')
    }
    const group = await tx.get<GroupDoc>(c.groups.name, params.groupId)
    if (!group || group.stageId !== stage.id) throw notFound(`group ${params.groupId} in stage ${stage.id}`)

    const user = await this.#user(tx, userId)
    const existing = await this.#membership(tx, stage.id, userId)
    if (user.stageId === stage.id && existing?.joined) {
      if (existing.groupId === group.id) return memberState(existing)
      return memberState(tx.replace(c.members.name, { ...existing, groupId: group.id }))
    }
    await this.#leaveCurrent(ctx, user)

    const online = await hasOnlineDevice(tx, userId)
    const members = await tx.find<MemberDoc>(c.members.name, { stageId: stage.id })
    const seat = lowestFreeSeat(members.filter((m) => m.seat !== null))
    if (seat === null)
      throw conflict(`all ${SEATS_PER_STAGE} seats of this stage are taken: try again when someone leaves`)
    let member: MemberDoc
    if (existing) {
      member = tx.replace(c.members.name, { ...existing, groupId: group.id, seat, joined: true, online })
    } else {
      if (members.length >= this.#options.quotas.membersPerStage) {
        throw forbidden(`this stage has ${members.length} members, the most a stage may have`)
      }
      member = tx.insert<MemberDoc>(c.members.name, {
        id: newId(),
        stageId: stage.id,
        userId,
        name: user.name,
        groupId: group.id,
        seat,
        joined: true,
        online,
        isDirector: false,
        volume: 1,
        muted: false,
        position: origin,
      })
      // one hears oneself through the local monitor, not through the stage: muted for oneself by default
      tx.insert<MixDoc>(c.mixes.name, {
        id: mixKey(userId, 'member', member.id),
        userId,
        stageId: stage.id,
        kind: 'member',
        targetId: member.id,
        muted: true,
      })
    }
    this.#setCurrentStage(ctx, await this.#user(tx, userId), stage.id)
    return memberState(member)
  }

  /** Leaves the stage the user is in (member offline, seat released); membership stays. */
  async #leaveCurrent(ctx: RequestContext, user: UserDoc): Promise<void> {
    if (!user.stageId) return
    const stageId = user.stageId
    const member = await this.#membership(ctx.tx, stageId, user.id)
    this.#setCurrentStage(ctx, user, undefined)
    if (member) ctx.tx.replace(c.members.name, { ...member, joined: false, online: false, seat: null })
  }

  /** Deletes a membership and what hangs off it (stage.forget, member.remove, group.remove). */
  async #removeMembership(ctx: RequestContext, stageId: string, userId: string): Promise<void> {
    const { tx } = ctx
    const stage = await this.#stage(tx, stageId)
    const member = await this.#membership(tx, stageId, userId)
    if (!member) throw notFound(`member ${userId} of stage ${stageId}`)
    await this.#deleteMember(ctx, stage, member)
  }

  async #deleteMember(ctx: RequestContext, stage: StageDoc, member: MemberDoc): Promise<void> {
    const { tx } = ctx
    const [tracks, mixes] = await Promise.all([
      tx.find<StageTrackDoc>(c.stageTracks.name, { stageId: stage.id }),
      tx.find<MixDoc>(c.mixes.name, { stageId: stage.id }),
    ])
    const dependents = membershipDependents(member, tracks, mixes)
    for (const track of dependents.tracks) tx.delete(c.stageTracks.name, track)
    for (const mix of dependents.mixes) tx.delete(c.mixes.name, mix)
    tx.delete(c.members.name, member)
    const user = await tx.get<UserDoc>(collections.users.name, member.userId)
    if (user?.stageId === stage.id) this.#setCurrentStage(ctx, user, undefined)
  }

  // ── groups and members ────────────────────────────────────────────────────────────────────

  async #createGroup(ctx: RequestContext, params: typeof groupCreate.params.static) {
    const stage = await this.#adminStage(ctx, params.stageId)
    const groups = await ctx.tx.find<GroupDoc>(c.groups.name, { stageId: stage.id })
    if (groups.length >= this.#options.quotas.groupsPerStage) {
      throw forbidden(`this stage has ${groups.length} groups, the most a stage may have`)
    }
    if (params.color !== undefined) assertColorFree(groups, params.color)
    const group = ctx.tx.insert<GroupDoc>(c.groups.name, {
      id: newId(),
      stageId: stage.id,
      name: params.name,
      color: params.color?.toLowerCase() ?? freeGroupColor(groups.map((g) => g.color)),
      volume: params.volume ?? 1,
      muted: params.muted ?? false,
      position: params.position ?? origin,
    })
    return groupState(group)
  }

  async #updateGroup(ctx: RequestContext, params: typeof groupUpdate.params.static) {
    const stage = await this.#adminStage(ctx, params.stageId)
    const group = await this.#group(ctx.tx, stage.id, params.groupId)
    checkVersion(`group ${group.id}`, group, params.version)
    const patch = {
      ...params.patch,
      ...(params.patch.color ? { color: params.patch.color.toLowerCase() } : {}),
    }
    if (patch.color && patch.color !== group.color) {
      assertColorFree(await ctx.tx.find<GroupDoc>(c.groups.name, { stageId: stage.id }), patch.color)
    }
    return groupState(ctx.tx.replace(c.groups.name, applyPatch(group, patch)))
  }

  async #removeGroup(ctx: RequestContext, params: typeof groupRemove.params.static) {
    const stage = await this.#adminStage(ctx, params.stageId)
    const { tx } = ctx
    const group = await this.#group(tx, stage.id, params.groupId)
    const target = params.moveTo === undefined ? undefined : await this.#group(tx, stage.id, params.moveTo)
    if (target?.id === group.id)
      throw new HubError('invalid_request', 'moveTo must be another group than the one removed')
    const members = await tx.find<MemberDoc>(c.members.name, { stageId: stage.id, groupId: group.id })
    for (const member of members) {
      if (target) tx.replace(c.members.name, { ...member, groupId: target.id })
      else await this.#deleteMember(ctx, stage, member)
    }
    for (const mix of await tx.find<MixDoc>(c.mixes.name, { targetId: group.id }))
      tx.delete(c.mixes.name, mix)
    tx.delete(c.groups.name, group)
    return {}
  }

  async #updateMember(ctx: RequestContext, params: typeof memberUpdate.params.static) {
    const stage = await this.#adminStage(ctx, params.stageId)
    const member = await this.#membership(ctx.tx, stage.id, params.userId)
    if (!member) throw notFound(`member ${params.userId} of stage ${stage.id}`)
    checkVersion(`member ${params.userId}`, member, params.version)
    if (params.patch.groupId !== undefined) await this.#group(ctx.tx, stage.id, params.patch.groupId)
    return memberState(ctx.tx.replace(c.members.name, applyPatch(member, params.patch)))
  }

  // ── mixes and chat ────────────────────────────────────────────────────────────────────────

  async #setMix(ctx: RequestContext, params: typeof mixSet.params.static) {
    const userId = requireUser(ctx.who)
    const { tx } = ctx
    const collection = { group: c.groups.name, member: c.members.name, track: c.stageTracks.name }[
      params.kind
    ]
    const target = await tx.get<GroupDoc | MemberDoc | StageTrackDoc>(collection, params.id)
    if (!target) throw notFound(`${params.kind} ${params.id}`)
    if (!(await this.#membership(tx, target.stageId, userId))) {
      throw forbidden('only members of the stage can set their own mix in it: join it first')
    }
    const id = mixKey(userId, params.kind, params.id)
    const existing = await tx.get<MixDoc>(c.mixes.name, id)
    const { version, kind, id: targetId, ...fields } = params
    let mix: MixDoc
    if (existing) {
      checkVersion(`your ${kind} override for ${targetId}`, existing, version)
      mix = tx.replace(c.mixes.name, applyPatch(existing, fields))
    } else {
      if (version !== undefined)
        throw conflict(`you have no ${kind} override for ${targetId} yet: omit version`)
      mix = tx.insert<MixDoc>(c.mixes.name, {
        id,
        userId,
        stageId: target.stageId,
        kind,
        targetId,
        ...fields,
      })
    }
    return mixState(mix)
  }

  async #chat(ctx: RequestContext, text: string) {
    const userId = requireUser(ctx.who)
    const user = await this.#user(ctx.tx, userId)
    const member = user.stageId ? await this.#membership(ctx.tx, user.stageId, userId) : undefined
    if (!user.stageId || !member?.joined) throw forbidden('join a stage to chat in it')
    if (!this.#chatLimiter.take(userId))
      throw new HubError('rate_limited', 'you are sending chat messages too fast: wait a moment')
    const message = {
      id: newId(),
      stageId: user.stageId,
      userId,
      name: user.name,
      text,
      time: new Date().toISOString(),
    }
    ctx.notify(topics.chat(user.stageId), message)
    return message
  }

  // ── shared steps ──────────────────────────────────────────────────────────────────────────

  async #stage(tx: Transaction, stageId: string): Promise<StageDoc> {
    const stage = await tx.get<StageDoc>(c.stages.name, stageId)
    if (!stage) throw notFound(`stage ${stageId}`)
    return stage
  }

  async #adminStage(ctx: RequestContext, stageId: string): Promise<StageDoc> {
    const userId = requireUser(ctx.who)
    const stage = await this.#stage(ctx.tx, stageId)
    if (!isAdmin(stage, userId)) throw forbidden(`only admins of stage ${stageId} may do this`)
    return stage
  }

  async #group(tx: Transaction, stageId: string, groupId: string): Promise<GroupDoc> {
    const group = await tx.get<GroupDoc>(c.groups.name, groupId)
    if (!group || group.stageId !== stageId) throw notFound(`group ${groupId} in stage ${stageId}`)
    return group
  }

  /** The stage as `stages/{s}` shows it, with what its router said. */
  async #visible(tx: Transaction, stage: StageDoc): Promise<StageState> {
    return stageState(stage, await tx.get<AssignmentDoc>(collections.assignments.name, stage.id))
  }

  async #user(tx: Transaction, userId: string): Promise<UserDoc> {
    const user = await tx.get<UserDoc>(collections.users.name, userId)
    if (!user) throw notFound(`user ${userId}: sign up first`)
    return user
  }

  async #membership(tx: Transaction, stageId: string, userId: string): Promise<MemberDoc | undefined> {
    const [member] = await tx.find<MemberDoc>(c.members.name, { stageId, userId })
    return member
  }

  #setCurrentStage(ctx: RequestContext, user: UserDoc, stageId: string | undefined): void {
    const next: UserDoc = { ...user }
    if (stageId) next.stageId = stageId
    else delete next.stageId
    ctx.tx.replace(collections.users.name, next)
  }

  async #renameMembers(ctx: RequestContext, user: UserDoc): Promise<void> {
    for (const member of await ctx.tx.find<MemberDoc>(c.members.name, { userId: user.id })) {
      if (member.name !== user.name) ctx.tx.replace(c.members.name, { ...member, name: user.name })
    }
  }
}

/** Whether the user's member is online now (reading only the devices that are, to conflict with fewer commits). */
async function hasOnlineDevice(tx: Transaction, userId: string): Promise<boolean> {
  return memberOnline(await tx.find<DeviceDoc>(collections.devices.name, { owner: userId, online: true }))
}

function assertColorFree(groups: readonly GroupDoc[], color: string): void {
  const taken = groups.find((g) => g.color === color.toLowerCase())
  if (taken) throw conflict(`the colour ${color} is already used by group "${taken.name}": pick another`)
}

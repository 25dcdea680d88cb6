import type { MixKind } from '../../schemas/actions/stage.ts'
import { topics } from '../../schemas/topics.ts'
import { type AssignmentDoc, collections } from '../collections.ts'
import type { Projection, ProjectedTopic } from '../state-publisher.ts'
import type { Change } from '../store/port.ts'
import type { Store } from '../store/store.ts'
import {
  type GroupDoc,
  type MemberDoc,
  type MixDoc,
  type StageDoc,
  type StageTrackDoc,
  mixKey,
  stageCollections as c,
} from './model.ts'
import { groupState, memberState, mixState, stageState, summaryAudience, visibleSummary } from './rules.ts'

/** The stage family's topics, named as this family uses them (shapes: the catalogue). */
export const stageTopics = {
  stage: topics.stage.build,
  group: topics.group.build,
  member: topics.member.build,
  track: topics.track.build,
  chat: topics.chat.build,
  summary: topics.stageSummary.build,
  mix: topics.mix.build as (u: string, kind: MixKind, id: string) => string,
}

/** One topic of the stage family, by what it shows. */
export type StageTopic =
  | { kind: 'stage'; stageId: string }
  | { kind: 'group'; stageId: string; groupId: string }
  | { kind: 'member'; stageId: string; userId: string }
  | { kind: 'track'; stageId: string; trackId: string }
  | { kind: 'mix'; userId: string; mixKind: MixKind; targetId: string }
  | { kind: 'summary'; userId: string; stageId: string }

export function topicOf(t: StageTopic): string {
  switch (t.kind) {
    case 'stage':
      return stageTopics.stage(t.stageId)
    case 'group':
      return stageTopics.group(t.stageId, t.groupId)
    case 'member':
      return stageTopics.member(t.stageId, t.userId)
    case 'track':
      return stageTopics.track(t.stageId, t.trackId)
    case 'mix':
      return stageTopics.mix(t.userId, t.mixKind, t.targetId)
    case 'summary':
      return stageTopics.summary(t.userId, t.stageId)
  }
}

/** What of a stage its summaries show. */
const summaryInputs = (stage: StageDoc | null) =>
  stage &&
  JSON.stringify([
    stage.name,
    stage.passwordHash !== undefined,
    stage.audioType,
    stage.videoType,
    stage.admins,
  ])
const groupInputs = (group: GroupDoc | null) => group && JSON.stringify([group.name, group.color])
/** What of a membership its user's summary shows (stageSummary): that it exists, and `joined`. */
const memberSummaryInputs = (member: MemberDoc | null) => member && String(member.joined === true)

/**
 * The stage topics a commit can have changed, from the changes alone, and the stages whose every
 * summary (admins' and members') may have changed, which takes a read of their members. A removal
 * needs nothing more: what goes with a stage or a membership is deleted in the same commit, and each
 * deleted document names its own topic.
 */
export function changedStageTopics(changes: readonly Change[]): {
  topics: Map<string, StageTopic>
  audiences: Set<string>
} {
  const topics = new Map<string, StageTopic>()
  const add = (...changed: StageTopic[]) => changed.forEach((t) => topics.set(topicOf(t), t))
  const audiences = new Set<string>()
  for (const { collection, before, after } of changes) {
    switch (collection) {
      case c.stages.name: {
        const [was, is] = [before as StageDoc | null, after as StageDoc | null]
        const stageId = (is ?? was)!.id
        add({ kind: 'stage', stageId })
        if (summaryInputs(was) === summaryInputs(is)) break
        for (const userId of new Set([...(was?.admins ?? []), ...(is?.admins ?? [])]))
          add({ kind: 'summary', userId, stageId })
        if (is) audiences.add(stageId)
        break
      }
      case c.groups.name: {
        const [was, is] = [before as GroupDoc | null, after as GroupDoc | null]
        const group = (is ?? was)!
        add({ kind: 'group', stageId: group.stageId, groupId: group.id })
        if (groupInputs(was) !== groupInputs(is)) audiences.add(group.stageId)
        break
      }
      case c.members.name: {
        const [was, is] = [before as MemberDoc | null, after as MemberDoc | null]
        const { stageId, userId } = (is ?? was)!
        add({ kind: 'member', stageId, userId })
        // a seat, volume or position change leaves the summary as it was: no read, no render
        if (memberSummaryInputs(was) !== memberSummaryInputs(is)) add({ kind: 'summary', userId, stageId })
        break
      }
      case c.stageTracks.name:
        for (const track of new Set([before, after])) {
          if (track) add({ kind: 'track', stageId: (track as StageTrackDoc).stageId, trackId: track.id })
        }
        break
      case collections.assignments.name:
        // what the router said about reaching the stage is part of it
        add({ kind: 'stage', stageId: ((after ?? before) as AssignmentDoc).stageId })
        break
      case c.mixes.name: {
        const { userId, kind, targetId } = (after ?? before) as MixDoc
        add({ kind: 'mix', userId, mixKind: kind, targetId })
        break
      }
    }
  }
  return { topics, audiences }
}

/**
 * Stages with their groups, members, tracks and summaries, and everyone's mixes, projected from the
 * stages service's collections.
 */
export function stageProjection(store: Store): Projection {
  const memberOf = async (stageId: string, userId: string) =>
    (await store.find<MemberDoc>(c.members.name, { stageId, userId }))[0]

  const render = async (t: StageTopic): Promise<unknown> => {
    switch (t.kind) {
      case 'stage': {
        const [stage, assignment] = await Promise.all([
          store.get<StageDoc>(c.stages.name, t.stageId),
          store.get<AssignmentDoc>(collections.assignments.name, t.stageId),
        ])
        return stage && stageState(stage, assignment)
      }
      case 'group': {
        const group = await store.get<GroupDoc>(c.groups.name, t.groupId)
        return group?.stageId === t.stageId ? groupState(group) : null
      }
      case 'member': {
        const member = await memberOf(t.stageId, t.userId)
        return member ? memberState(member) : null
      }
      case 'track': {
        const track = await store.get<StageTrackDoc>(c.stageTracks.name, t.trackId)
        return track?.stageId === t.stageId ? track : null
      }
      case 'mix': {
        const mix = await store.get<MixDoc>(c.mixes.name, mixKey(t.userId, t.mixKind, t.targetId))
        return mix && mixState(mix)
      }
      case 'summary': {
        const stage = await store.get<StageDoc>(c.stages.name, t.stageId)
        if (!stage) return null
        const [groups, member] = await Promise.all([
          store.find<GroupDoc>(c.groups.name, { stageId: stage.id }),
          memberOf(stage.id, t.userId),
        ])
        return visibleSummary(stage, groups, t.userId, member)
      }
    }
  }

  return {
    name: 'stages',
    async changed(changes) {
      const { topics, audiences } = changedStageTopics(changes)
      for (const stageId of audiences) {
        const stage = await store.get<StageDoc>(c.stages.name, stageId)
        if (!stage) continue
        const members = await store.find<MemberDoc>(c.members.name, { stageId })
        for (const userId of summaryAudience(stage, members))
          topics.set(stageTopics.summary(userId, stageId), { kind: 'summary', userId, stageId })
      }
      return [...topics].map(([topic, t]): ProjectedTopic => ({ topic, render: () => render(t) }))
    },
    async *topics() {
      const assignments = await store.find<AssignmentDoc>(collections.assignments.name)
      const assignmentOf = new Map(assignments.map((a) => [a.stageId, a]))
      for await (const stage of store.scan<StageDoc>(c.stages.name)) {
        const [groups, members, tracks] = await Promise.all([
          store.find<GroupDoc>(c.groups.name, { stageId: stage.id }),
          store.find<MemberDoc>(c.members.name, { stageId: stage.id }),
          store.find<StageTrackDoc>(c.stageTracks.name, { stageId: stage.id }),
        ])
        const value = stageState(stage, assignmentOf.get(stage.id) ?? null)
        yield { topic: stageTopics.stage(stage.id), value }
        for (const g of groups) yield { topic: stageTopics.group(stage.id, g.id), value: groupState(g) }
        for (const m of members)
          yield { topic: stageTopics.member(stage.id, m.userId), value: memberState(m) }
        for (const track of tracks) yield { topic: stageTopics.track(stage.id, track.id), value: track }
        const byUser = new Map(members.map((m) => [m.userId, m]))
        for (const userId of summaryAudience(stage, members)) {
          const value = visibleSummary(stage, groups, userId, byUser.get(userId))
          yield { topic: stageTopics.summary(userId, stage.id), value }
        }
      }
      for await (const mix of store.scan<MixDoc>(c.mixes.name)) {
        yield { topic: stageTopics.mix(mix.userId, mix.kind, mix.targetId), value: mixState(mix) }
      }
    },
  }
}

import { createHash } from 'node:crypto'
import { collections, type UserDoc } from '../../services/collections.ts'
import {
  type GroupDoc,
  type MemberDoc,
  type MixDoc,
  type StageDoc,
  stageCollections,
} from '../../services/stages/model.ts'
import { origin, stageDefaults } from '../../services/stages/rules.ts'
import { EmbeddedBackend } from '../../services/store/embedded.ts'
import type { Store } from '../../services/store/index.ts'
import type { StoredDoc, Write } from '../../services/store/port.ts'
import { PasswordPool } from '../../services/users/password-pool.ts'
import { createUser } from '../../services/users/service.ts'

/**
 * A realistic stored state written straight into the embedded store before a hub starts: users, and
 * stages with groups, members (not in the stage right now) and each member's default self-mix, the
 * shapes the services write. On start the hub republishes every state topic from it, which is what
 * `cold_start` measures and how `retained_subscribe` gets its retained set.
 *
 * Per stage: 1 stage + 3 groups + 24 memberships (+ 24 self-mixes) = 52 documents and
 * 1 + 3 + 24 member topics + 24 summaries + 24 mixes = 76 topics; every user belongs to 4 stages
 * (6 users per stage), each with a profile topic. So 58 documents and 82 topics per stage.
 */
export const GROUPS_PER_STAGE = 3
export const MEMBERS_PER_STAGE = 24
export const STAGES_PER_USER = 4
const USERS_PER_STAGE = MEMBERS_PER_STAGE / STAGES_PER_USER
export const DOCS_PER_STAGE = 1 + GROUPS_PER_STAGE + 2 * MEMBERS_PER_STAGE + USERS_PER_STAGE
export const TOPICS_PER_STAGE = 1 + GROUPS_PER_STAGE + 3 * MEMBERS_PER_STAGE + USERS_PER_STAGE

export interface SeedPlan {
  stages: number
  users: number
  documents: number
  /** Retained state topics the hub will publish from it (plus hub/status). */
  topics: number
  /** One member and its stage, for subscriptions that match (`stages/{s}/#`) and ones that do not. */
  sample: { userId: string; stageId: string; userName: string }
}

/** Deterministic 16-character ids of the alphabet the hub's own ids use. */
export const seedId = (kind: string, i: number): string =>
  createHash('sha1').update(`${kind}:${i}`).digest('base64url').slice(0, 16)

export function planFor(by: 'documents' | 'topics', count: number): Omit<SeedPlan, 'sample'> {
  // at least STAGES_PER_USER stages, so no user is a member of one stage twice
  const stages = Math.max(
    STAGES_PER_USER,
    Math.round(count / (by === 'documents' ? DOCS_PER_STAGE : TOPICS_PER_STAGE)),
  )
  const users = stages * USERS_PER_STAGE
  return { stages, users, documents: stages * DOCS_PER_STAGE, topics: stages * TOPICS_PER_STAGE }
}

function insert<T extends StoredDoc>(collection: string, doc: Omit<T, 'version'>): Write {
  return { op: 'insert', collection, doc: { ...doc, version: 1 } as StoredDoc }
}

/** Writes the plan's documents into the embedded store under `dataDir` (which no hub may have open). */
export async function seedStore(
  dataDir: string,
  by: 'documents' | 'topics',
  count: number,
): Promise<SeedPlan> {
  const plan = planFor(by, count)
  const backend = EmbeddedBackend.open(dataDir)
  const specs = [collections.users, ...Object.values(stageCollections)]
  for (const spec of specs) await backend.ensureCollection(spec)
  const createdAt = new Date().toISOString()
  let batch: Write[] = []
  const flush = async () => {
    if (batch.length === 0) return
    const writes = batch
    batch = []
    await backend.commit([], [], writes)
  }
  const push = async (write: Write) => {
    batch.push(write)
    if (batch.length >= 5000) await flush()
  }
  const userId = (i: number) => seedId('user', i % plan.users)
  for (let u = 0; u < plan.users; u++) {
    await push(insert<UserDoc>(collections.users.name, { id: userId(u), name: `User ${u}`, createdAt }))
  }
  for (let s = 0; s < plan.stages; s++) {
    const stageId = seedId('stage', s)
    // members: a window of consecutive users, so every user is in STAGES_PER_USER stages
    const members = Array.from({ length: MEMBERS_PER_STAGE }, (_, m) => userId(s * USERS_PER_STAGE + m))
    await push(
      insert<StageDoc>(stageCollections.stages.name, {
        id: stageId,
        ...stageDefaults,
        name: `Stage ${s}`,
        admins: [members[0]!],
        createdBy: members[0]!,
        createdAt,
      }),
    )
    const groups = Array.from({ length: GROUPS_PER_STAGE }, (_, g) => seedId(`group:${s}`, g))
    for (const [g, id] of groups.entries()) {
      await push(
        insert<GroupDoc>(stageCollections.groups.name, {
          id,
          stageId,
          name: `Group ${g}`,
          color: `#${(0x102030 * (g + 1)).toString(16).padStart(6, '0').slice(-6)}`,
          volume: 1,
          muted: false,
          position: origin,
        }),
      )
    }
    for (const [m, member] of members.entries()) {
      const memberId = seedId(`member:${s}`, m)
      await push(
        insert<MemberDoc>(stageCollections.members.name, {
          id: memberId,
          stageId,
          userId: member,
          name: `User ${(s * USERS_PER_STAGE + m) % plan.users}`,
          groupId: groups[m % GROUPS_PER_STAGE]!,
          seat: null,
          joined: false,
          online: false,
          isDirector: false,
          volume: 1,
          muted: false,
          position: origin,
        }),
      )
      await push(
        insert<MixDoc>(stageCollections.mixes.name, {
          id: `${member}/member/${memberId}`,
          userId: member,
          stageId,
          kind: 'member',
          targetId: memberId,
          muted: true,
        }),
      )
    }
  }
  await flush()
  await backend.close()
  return {
    ...plan,
    sample: { userId: userId(1), stageId: seedId('stage', 0), userName: 'User 1' },
  }
}

/**
 * Users created through the users service (as sign-up does, without a password: nothing is hashed),
 * so tokens of theirs connect without the first CONNECT creating a profile. Returns their ids.
 */
export async function createUsers(store: Store, names: readonly string[]): Promise<string[]> {
  const passwords = new PasswordPool({ cost: 10, concurrency: 1, queueLimit: 1 })
  const ids: string[] = []
  for (const name of names) ids.push((await createUser(store, { name }, passwords)).id)
  return ids
}

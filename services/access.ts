import type { AccessState } from '../broker/acl.ts'
import {
  type DeviceRegistration,
  type MemberDoc,
  type RouterDoc,
  type StageDoc,
  type UserDoc,
  collections,
} from './collections.ts'
import type { Change } from './store/port.ts'
import type { Store } from './store/store.ts'

/**
 * Who may see what, derived from stored state and kept in memory for the broker's hot paths
 * (authorizeSubscribe, authorizeForward, CONNECT). It is loaded once at start and then updated from the
 * store's commit events, synchronously, before the committing request is answered: it is never stale.
 */
export class AccessIndex implements AccessState {
  readonly #stageAdmins = new Map<string, ReadonlySet<string>>()
  readonly #stageMembers = new Map<string, Set<string>>()
  readonly #deviceOwners = new Map<string, string>()
  readonly #tokenVersions = { device: new Map<string, number>(), router: new Map<string, number>() }
  /** Every user the store has a profile of. */
  readonly #users = new Set<string>()
  /** Users whose generation is above 0 (most never sign out), and deleted accounts as Infinity. */
  readonly #userGenerations = new Map<string, number>()

  static async load(store: Store): Promise<AccessIndex> {
    const index = new AccessIndex()
    for (const spec of [
      collections.stages,
      collections.members,
      collections.devices,
      collections.routers,
      collections.users,
      collections.deletedUsers,
    ]) {
      await store.ensureCollection(spec)
      for await (const doc of store.scan(spec.name))
        index.#apply({ collection: spec.name, id: doc.id, before: null, after: doc })
    }
    store.onChange((changes) => changes.forEach((change) => index.#apply(change)))
    return index
  }

  /**
   * Reads every user's token generation again, for commits made by another process (the operator's
   * `user reset-password`), which send no change events. Returns the users whose generation rose.
   */
  async reloadUserGenerations(store: Store): Promise<string[]> {
    const raised: string[] = []
    // generations only rise: a value read before a commit of this process never lowers the index
    const raise = (id: string, generation: number) => {
      if (generation <= this.tokenGeneration('user', id)!) return
      this.#userGenerations.set(id, generation)
      raised.push(id)
    }
    for await (const user of store.scan<UserDoc>(collections.users.name))
      raise(user.id, user.tokenVersion ?? 0)
    for await (const deleted of store.scan(collections.deletedUsers.name)) raise(deleted.id, Infinity)
    return raised
  }

  canSeeStage(stageId: string, userId: string): boolean {
    return (
      this.#stageAdmins.get(stageId)?.has(userId) === true ||
      this.#stageMembers.get(stageId)?.has(userId) === true
    )
  }

  hasUser(userId: string): boolean {
    return this.#users.has(userId)
  }

  deviceOwner(deviceId: string): string | undefined {
    return this.#deviceOwners.get(deviceId)
  }

  /**
   * Devices and routers: undefined when not registered. Users: 0 unless they signed out or changed
   * their password (a token for a user not in the store counts as generation 0, as before accounts had
   * generations); Infinity once the account is deleted.
   */
  tokenGeneration(role: 'user' | 'device' | 'router', id: string): number | undefined {
    if (role === 'user') return this.#userGenerations.get(id) ?? 0
    return this.#tokenVersions[role].get(id)
  }

  #apply(change: Change): void {
    switch (change.collection) {
      case collections.stages.name: {
        const after = change.after as StageDoc | null
        if (after) this.#stageAdmins.set(change.id, new Set(after.admins))
        else this.#stageAdmins.delete(change.id)
        break
      }
      case collections.members.name: {
        const before = change.before as MemberDoc | null
        const after = change.after as MemberDoc | null
        if (before) this.#stageMembers.get(before.stageId)?.delete(before.userId)
        if (after) {
          let members = this.#stageMembers.get(after.stageId)
          if (!members) this.#stageMembers.set(after.stageId, (members = new Set()))
          members.add(after.userId)
        }
        break
      }
      case collections.devices.name: {
        const after = change.after as DeviceRegistration | null
        if (after) {
          this.#deviceOwners.set(change.id, after.owner)
          this.#tokenVersions.device.set(change.id, after.tokenVersion)
        } else {
          this.#deviceOwners.delete(change.id)
          this.#tokenVersions.device.delete(change.id)
        }
        break
      }
      case collections.users.name: {
        const generation = (change.after as UserDoc | null)?.tokenVersion ?? 0
        if (change.after) this.#users.add(change.id)
        else this.#users.delete(change.id)
        // a deleted account's generation is the tombstone's (same commit, see below)
        if (change.after && generation > 0) this.#userGenerations.set(change.id, generation)
        else if (change.after) this.#userGenerations.delete(change.id)
        break
      }
      case collections.deletedUsers.name:
        if (change.after) this.#userGenerations.set(change.id, Infinity)
        else this.#userGenerations.delete(change.id)
        break
      case collections.routers.name: {
        const after = change.after as RouterDoc | null
        if (after) this.#tokenVersions.router.set(change.id, after.tokenVersion)
        else this.#tokenVersions.router.delete(change.id)
        break
      }
    }
  }
}

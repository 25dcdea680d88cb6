import type { UserProfile } from '../../schemas/state.ts'
import { topics } from '../../schemas/topics.ts'
import { collections, type UserDoc } from '../collections.ts'
import type { Projection } from '../state-publisher.ts'
import type { Store } from '../store/store.ts'

/** The profile family's topic (shape: the catalogue). */
export const userTopic = topics.user.build

/** What anyone may see of an account: never its e-mail, password hash or token generation. */
export function userProfile(user: UserDoc): UserProfile {
  return {
    id: user.id,
    name: user.name,
    ...(user.avatarUrl ? { avatarUrl: user.avatarUrl } : {}),
    ...(user.stageId ? { stageId: user.stageId } : {}),
    version: user.version,
  }
}

/** `users/{u}`, projected from the users collection (a deleted account's profile is cleared). */
export function profileProjection(store: Store): Projection {
  return {
    name: 'users',
    changed: (changes) =>
      changes
        .filter((change) => change.collection === collections.users.name)
        .map(({ id }) => ({
          topic: userTopic(id),
          render: async () => {
            const user = await store.get<UserDoc>(collections.users.name, id)
            return user && userProfile(user)
          },
        })),
    async *topics() {
      for await (const user of store.scan<UserDoc>(collections.users.name)) {
        yield { topic: userTopic(user.id), value: userProfile(user) }
      }
    },
  }
}

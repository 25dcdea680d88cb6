import { signal } from '@preact/signals'
import { HubClient, topics } from '../../devices/hub-client/index.ts'
import type { UserProfile } from '../../schemas/state.ts'
import { explain, hubOrigin, keepRenewed, type Session, session } from './session.ts'

export type ConnectionState =
  | { state: 'connecting' }
  | { state: 'online' }
  | { state: 'reconnecting' }
  /** The hub will not take this token: `message` is its reason (e.g. the token expired). */
  | { state: 'refused'; message: string; expired: boolean }

export const connection = signal<ConnectionState>({ state: 'connecting' })
/** The connection of the signed-in person, for requests (undefined while signed out). */
export const hub = signal<HubClient | undefined>(undefined)
/** The person's profile, live from the retained `users/{u}`. */
export const profile = signal<UserProfile | undefined>(undefined)

/**
 * Connects over MQTT-over-WebSocket with the shared hub client and follows the profile. An attempt
 * that did not get online (or an expired token) is explained by the hub's `/auth/explain`: a refusal
 * stops the retries and shows the hub's reason. The token is renewed in the background while connected
 * (session.ts `keepRenewed`), and every attempt uses the newest. Returns the disconnect.
 */
export function connect(current: Session): () => void {
  const clientId = `${current.userId}-web-${crypto.randomUUID().slice(0, 8)}`
  const url = `${hubOrigin().replace(/^http/, 'ws')}/mqtt`
  let attempts = 0
  let onlineSinceAttempt = false
  connection.value = { state: 'connecting' }
  profile.value = undefined
  const client: HubClient = new HubClient(
    {
      url,
      clientId,
      // asked before every attempt: the newest token, renewed in the background (session.ts)
      token: async () => {
        const newest = session.peek()?.userId === current.userId ? session.peek()! : current
        const suspicious =
          (attempts++ > 0 && !onlineSinceAttempt) || Date.parse(newest.expiresAt) <= Date.now()
        onlineSinceAttempt = false
        if (suspicious) {
          const why = await explain(newest.token, clientId).catch(() => undefined)
          if (why && !why.accepted) {
            connection.value = {
              state: 'refused',
              message: why.reason ?? 'the hub refused the connection',
              expired: why.check === 'expiry',
            }
            void client.stop()
          }
        }
        return newest.token
      },
    },
    {
      connected: () => {
        onlineSinceAttempt = true
        connection.value = { state: 'online' }
      },
      disconnected: () => {
        if (connection.value.state !== 'refused') connection.value = { state: 'reconnecting' }
      },
    },
  )
  const topic = topics.user.build(current.userId)
  client.watch<UserProfile>(topic, ({ value }) => (profile.value = value))
  client.start()
  hub.value = client
  const stopRenewing = keepRenewed()
  return () => {
    stopRenewing()
    hub.value = undefined
    void client.stop()
  }
}

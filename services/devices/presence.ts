import type { Logger } from 'pino'
import type { Identity } from '../../broker/tokens.ts'
import { PresencePayload, ReportedPayload } from '../../schemas/actions/device.ts'
import { validator } from '../../schemas/validate.ts'
import { topics } from '../../schemas/topics.ts'
import { collections } from '../collections.ts'
import { KeyedQueue } from '../keyed-queue.ts'
import { parseClientMessage } from '../client-message.ts'
import type { StatePublisher } from '../state-publisher.ts'
import type { Store } from '../store/store.ts'
import { deviceTopics } from './projection.ts'
import type { DeviceDoc } from '../collections.ts'

/** The presence part of a device document. */
export interface PresenceRecord {
  online: boolean
  /** The newest session seen; messages of older sessions are ignored. */
  session: number
}

export type PresenceEvent = { state: 'online' | 'offline' | 'lost'; session: number }

/**
 * Presence rule (docs/protocol/README.md#presence, Sparkplug's bdSeq): an event of an older session than the newest seen is
 * ignored, so a takeover's late will never marks a fresh connection offline. Returns null to ignore.
 */
export function nextPresence(current: PresenceRecord, event: PresenceEvent): PresenceRecord | null {
  if (event.session < current.session) return null
  const online = event.state === 'online'
  if (event.session === current.session && online === current.online) return null
  return { online, session: event.session }
}

const MAX_REPORT_BYTES = 8 * 1024
const validPresence = validator(PresencePayload)
const validReport = validator(ReportedPayload)
/** Devices a healing coordinator marks lost per store transaction. */
const LOST_BATCH = 100

export interface DevicePresenceOptions {
  store: Store
  publisher: StatePublisher
  log: Logger
  /** Whether this identity is the newest connection of its client id (not superseded by a takeover). */
  isCurrent(who: Identity): boolean
  /** Whether the device is registered now, as of the last commit (the access index, updated in it). */
  isRegistered(deviceId: string): boolean
  /** Answers a device on its response topic when its message was refused. */
  tellDevice(clientId: string, code: 'invalid_request' | 'too_large', message: string): void
  /**
   * In a cluster, this process's id: a device online through it carries it (`hub`), so the
   * coordinator can mark it lost when this process dies (markLostOf). Unset: one process.
   */
  processId?: string | undefined
}

/**
 * Device presence and reported state: validates what devices publish on `devices/{d}/presence` and
 * `devices/{d}/reported`, applies it to the stored device in order, and republishes the owner's
 * device document. The broker's own view of the connection counts too: a closed connection with no
 * successor marks the device offline.
 */
export class DevicePresence {
  readonly #options: DevicePresenceOptions
  /** Presence changes are applied one at a time per device, in arrival order. */
  readonly #queue: KeyedQueue
  /**
   * The newest presence session accepted per device (seeded from the store at start), so a message
   * of an older session is dropped before the broker retains it, not only ignored by nextPresence.
   */
  readonly #sessions = new Map<string, number>()
  /** The session each connection said it is (its accepted presence). */
  readonly #connectionSessions = new WeakMap<Identity, number>()

  constructor(options: DevicePresenceOptions) {
    this.#options = options
    this.#queue = new KeyedQueue((err, deviceId) =>
      options.log.error({ err, deviceId }, 'could not apply device presence'),
    )
  }

  /**
   * At start no device is connected here: whatever the store says, every device is offline now,
   * except, in a cluster, those online through another live process (`isLive`). Also learns each
   * device's newest session, so an older session's message is refused after a restart.
   */
  async markAllOffline(isLive: (processId: string) => boolean = () => false): Promise<void> {
    for await (const device of this.#options.store.scan<DeviceDoc>(collections.devices.name)) {
      if (device.session !== undefined) this.#noteSession(device.id, device.session)
      const stale = (d: DeviceDoc) => d.online && !(d.hub !== undefined && isLive(d.hub))
      // checked again in the transaction: it may have come online through a live process meanwhile
      if (stale(device)) await this.#update(device.id, (d) => (stale(d) ? offline(d) : null))
    }
  }

  /**
   * The coordinator's part when process `processId` died (docs/cluster.md#leases-and-liveness): each
   * device still online through it is offline in the store and its retained presence says `lost`,
   * as its will would have. Returns how many.
   */
  async markLostOf(processId: string): Promise<number> {
    const { store, publisher } = this.#options
    const online = await store.find<DeviceDoc>(collections.devices.name, { hub: processId })
    let marked = 0
    // a transaction per batch, not per device: healing time grows with round trips, not devices
    for (let i = 0; i < online.length; i += LOST_BATCH) {
      const ids = online.slice(i, i + LOST_BATCH).map((d) => d.id)
      const { value: lost } = await store.transaction(async (tx) => {
        const ended: DeviceDoc[] = []
        for (const id of ids) {
          const d = await tx.get<DeviceDoc>(collections.devices.name, id)
          // gone meanwhile, or back online through a live process: not this process's any more
          if (!d?.online || d.hub !== processId) continue
          ended.push(tx.replace<DeviceDoc>(collections.devices.name, { ...offline(d), lastSeen: now() }))
        }
        return ended
      })
      marked += lost.length
      await Promise.all(
        lost
          .filter((device) => this.#options.isRegistered(device.id))
          .map((device) =>
            publisher.publish(deviceTopics.presence(device.id), {
              state: 'lost',
              session: device.session ?? 0,
            }),
          ),
      )
    }
    return marked
  }

  /** The broker's hook for client publishes; returns a reason to refuse the message. */
  inspect(who: Identity, topic: string, payload: Buffer): string | undefined {
    const presence = topics.devicePresence.parse(topic)
    if (presence) {
      const event = parseClientMessage(payload)
      if (!validPresence(event)) {
        return this.#refuse(who, 'invalid_request', `presence: ${validPresence.describe()}`)
      }
      // a taken-over connection's will arrives while its successor registers: it speaks for nobody now
      if (event.state !== 'online' && !this.#options.isCurrent(who))
        return 'presence of a superseded connection'
      // retained, an older session's message would contradict the device's current presence
      const newest = this.#sessions.get(presence.d)
      if (newest !== undefined && event.session < newest)
        return `presence of session ${event.session}, older than session ${newest}`
      this.#noteSession(presence.d, event.session)
      this.#connectionSessions.set(who, event.session)
      this.#queue.run(presence.d, () => this.#applyPresence(presence.d, event))
      return undefined
    }
    const reported = topics.deviceReported.parse(topic)
    if (reported) {
      if (payload.length > MAX_REPORT_BYTES) {
        return this.#refuse(
          who,
          'too_large',
          `reported state of ${payload.length} bytes exceeds ${MAX_REPORT_BYTES}`,
        )
      }
      const report = parseClientMessage(payload)
      if (!validReport(report))
        return this.#refuse(who, 'invalid_request', `reported: ${validReport.describe()}`)
      this.#queue.run(reported.d, () =>
        this.#update(reported.d, (d) => ({
          ...d,
          reported: { ...d.reported, ...report },
          lastSeen: now(),
        })),
      )
    }
    return undefined
  }

  /** The broker closed a device's connection (socket loss, keepalive, takeover, DISCONNECT). */
  disconnected(who: Identity, reason: 'clean' | 'lost', superseded: boolean): void {
    // after a takeover the new connection is the device: the old one's end says nothing about it
    if (who.role !== 'device' || superseded) return
    // a newer session in the store came from a newer connection (through another process of a
    // cluster, before this one's close was known there): this connection's end says nothing about it
    const own = this.#connectionSessions.get(who)
    this.#queue.run(who.id, async () => {
      const ended = await this.#update(who.id, (d) =>
        d.online &&
        (own === undefined || (d.session ?? -1) <= own) &&
        !heldElsewhere(d, this.#options.processId)
          ? { ...offline(d), lastSeen: now() }
          : null,
      )
      // still online here means nothing said otherwise: a DISCONNECT without a prior `offline` fires no
      // will, and a lost connection may have had none, or had it refused (revoked credentials). Say it
      // for the device, so the retained presence does not claim online forever. (A will that did go
      // out was applied first: it was queued when the connection closed, before this.)
      // unless the device said a newer session meanwhile (it reconnected, maybe through another process
      // of a cluster): saying this one ended now would overwrite the newer presence
      const newest = ended ? (this.#sessions.get(ended.id) ?? -1) : -1
      if (ended && this.#options.isRegistered(ended.id) && newest <= (ended.session ?? 0)) {
        await this.#options.publisher.publish(deviceTopics.presence(ended.id), {
          state: reason === 'clean' ? 'offline' : 'lost',
          session: ended.session ?? 0,
        })
        // in a cluster a newer session may have been committed through another process meanwhile,
        // whose own presence went out before this end did: the store is the truth, say it again
        if (this.#options.processId) await this.#sayNewerSession(ended)
      }
    })
  }

  /** Publishes the device's stored presence when it is online in a newer session than `said`. */
  async #sayNewerSession(said: DeviceDoc): Promise<void> {
    const stored = await this.#options.store.get<DeviceDoc>(collections.devices.name, said.id)
    if (stored?.online && (stored.session ?? -1) > (said.session ?? -1))
      await this.#options.publisher.publish(deviceTopics.presence(said.id), {
        state: 'online',
        session: stored.session ?? 0,
      })
  }

  async #applyPresence(deviceId: string, event: PresenceEvent): Promise<void> {
    let newer: DeviceDoc | undefined
    let endedBefore: DeviceDoc | undefined
    const applied = await this.#update(deviceId, (device) => {
      // the store knows sessions said through other processes of a cluster too
      if (device.session !== undefined) this.#noteSession(deviceId, device.session)
      // a new session after an older one another process held or ended: see below
      endedBefore =
        !device.online || (device.hub !== undefined && device.hub !== this.#options.processId)
          ? device
          : undefined
      newer = event.session < (device.session ?? -1) && device.online ? device : undefined
      const { processId } = this.#options
      if (heldElsewhere(device, processId, event)) return null
      const next = nextPresence({ online: device.online, session: device.session ?? -1 }, event)
      // the same session online again through this process: it reconnected here, this process holds it now
      if (!next && event.state === 'online' && processId && device.online && device.hub !== processId)
        return { ...device, hub: processId, lastSeen: now() }
      if (!next) return null
      if (next.online)
        return { ...device, ...next, lastSeen: now(), ...(processId ? { hub: processId } : {}) }
      return { ...offline(device), ...next, lastSeen: now() }
    })
    // an older session's end was retained before this process knew of the newer session (said
    // through another process of a cluster): the retained presence says the newer one again
    if (newer && event.state !== 'online' && this.#options.isRegistered(deviceId)) {
      await this.#options.publisher.publish(deviceTopics.presence(deviceId), {
        state: 'online',
        session: newer.session ?? 0,
      })
    }
    // a new session after one another process held or ended: that process's retained word on the
    // older session ("offline", or its will) may reach the broker after this device's own "online"
    // (commit order is not publish order across processes). The store is the truth: once committed,
    // the newest session is said again, unless a newer one was committed meanwhile (its process says it)
    if (
      this.#options.processId &&
      applied?.online &&
      endedBefore &&
      (endedBefore.session ?? -1) < event.session &&
      this.#options.isRegistered(deviceId)
    ) {
      const stored = await this.#options.store.get<DeviceDoc>(collections.devices.name, deviceId)
      if (stored?.online && stored.session === event.session)
        await this.#options.publisher.publish(deviceTopics.presence(deviceId), {
          state: 'online',
          session: event.session,
        })
    }
  }

  /** Changes a stored device; `change` returns null for no change. */
  async #update(
    deviceId: string,
    change: (device: DeviceDoc) => DeviceDoc | null,
  ): Promise<DeviceDoc | null> {
    const { value } = await this.#options.store.transaction(async (tx) => {
      const device = await tx.get<DeviceDoc>(collections.devices.name, deviceId)
      const next = device ? change(device) : null
      return next ? tx.replace(collections.devices.name, next) : null
    })
    return value
  }

  #noteSession(deviceId: string, session: number): void {
    if (session > (this.#sessions.get(deviceId) ?? -1)) this.#sessions.set(deviceId, session)
  }

  #refuse(who: Identity, code: 'invalid_request' | 'too_large', message: string): string {
    this.#options.tellDevice(who.clientId, code, message)
    return message
  }
}

const now = () => new Date().toISOString()

/**
 * In a cluster: whether a device (or router) is online through another process than this one, so that an end
 * of its connection here (its will, the connection closing) says nothing about it: it moved on. A
 * newer session speaks for itself.
 */
export function heldElsewhere(
  device: { online: boolean; hub?: string; session?: number },
  processId: string | undefined,
  event?: PresenceEvent,
): boolean {
  if (!processId || !device.online || device.hub === undefined || device.hub === processId) return false
  return !event || (event.state !== 'online' && event.session <= (device.session ?? -1))
}

/** A device offline: online through no process. */
function offline(device: DeviceDoc): DeviceDoc {
  const { hub: _hub, ...rest } = device
  return { ...rest, online: false }
}

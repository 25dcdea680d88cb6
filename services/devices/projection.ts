import { createHash } from 'node:crypto'
import { targetRelease } from '../../firmware-config/rollout.ts'
import type { DeviceConfig, ReleaseState } from '../../schemas/firmware.ts'
import { topics } from '../../schemas/topics.ts'
import { type ReleaseDoc, releaseCollection, releaseState } from '../firmware/service.ts'
import { type OvSeat, ovAudio, renderOvClientConfig, sentTracks } from '../../firmware-config/ov-client.ts'
import { type AssignmentDoc, collections, type DeviceDoc, type UserDoc } from '../collections.ts'
import type { Projection, ProjectedTopic } from '../state-publisher.ts'
import type { Change } from '../store/port.ts'
import type { Store } from '../store/store.ts'
import { type MemberDoc, type MixDoc, type StageDoc, stageCollections } from '../stages/model.ts'
import { servedStage } from '../stages/rules.ts'
import { deviceConfig, deviceState } from './service.ts'

/** The device family's topics, named as this family uses them (shapes: the catalogue). */
export const deviceTopics = {
  document: topics.userDevice.build,
  config: topics.deviceConfig.build,
  presence: topics.devicePresence.build,
}

/**
 * Device documents (`users/{owner}/devices/{d}`) and configurations (`devices/{d}/config`), projected
 * from the store. A configuration is the device's desired configuration and, for ov-boxes, the
 * ov-client configuration rendered from its user's stage, seat, the other seated ov-boxes and the
 * user's own mix, so stage, seat and mix commits change it too. A device's presence is its own to
 * publish; a removed device's is cleared.
 */
export class DeviceProjection implements Projection {
  readonly name = 'devices'
  readonly #store: Store
  #releaseCache: Promise<ReleaseState[]> | undefined

  constructor(store: Store) {
    this.#store = store
  }

  async changed(changes: readonly Change[]): Promise<ProjectedTopic[]> {
    const topics: ProjectedTopic[] = []
    for (const { collection, id, before, after } of changes) {
      if (collection !== collections.devices.name) continue
      const { owner } = (after ?? before) as DeviceDoc
      topics.push({
        topic: deviceTopics.document(owner, id),
        render: async () => {
          const device = await this.#device(id)
          return device?.owner === owner ? deviceState(device) : null
        },
      })
      if (!after)
        topics.push({
          topic: deviceTopics.presence(id),
          render: async () => ((await this.#device(id)) ? undefined : null),
        })
    }
    for (const deviceId of await this.#affectedDevices(changes)) {
      topics.push({
        topic: deviceTopics.config(deviceId),
        render: async () => {
          const device = await this.#device(deviceId)
          return device && this.configOf(device)
        },
      })
    }
    return topics
  }

  async *topics(): AsyncIterable<{ topic: string; value: unknown }> {
    for await (const device of this.#store.scan<DeviceDoc>(collections.devices.name)) {
      yield { topic: deviceTopics.document(device.owner, device.id), value: deviceState(device) }
      yield { topic: deviceTopics.config(device.id), value: await this.configOf(device) }
    }
  }

  #device(deviceId: string): Promise<DeviceDoc | null> {
    return this.#store.get<DeviceDoc>(collections.devices.name, deviceId)
  }

  /** The configuration of one device as it should be now. */
  async configOf(device: DeviceDoc): Promise<DeviceConfig> {
    const base = deviceConfig(device)
    if (device.kind !== 'ovbox') return withRevision(base)
    const firmware = targetRelease(await this.#releases(), device.id)
    const { ov, audio } = await this.#renderOv(device)
    return withRevision({ ...base, ov, audio, ...(firmware ? { firmware } : {}) })
  }

  /** The published releases, read once and again after a commit that changes one. */
  #releases(): Promise<ReleaseState[]> {
    this.#releaseCache ??= this.#store
      .find<ReleaseDoc>(releaseCollection.name)
      .then((docs) => docs.map(releaseState))
      .catch((err: unknown) => {
        this.#releaseCache = undefined
        throw err
      })
    return this.#releaseCache
  }

  /** Which devices' configurations a commit can have changed. */
  async #affectedDevices(changes: readonly Change[]): Promise<Set<string>> {
    const devices = new Set<string>()
    const stages = new Set<string>()
    const users = new Set<string>()
    const deviceOwners = new Set<string>()
    if (changes.some((change) => change.collection === releaseCollection.name)) {
      this.#releaseCache = undefined
      for (const box of await this.#store.find<DeviceDoc>(collections.devices.name, { kind: 'ovbox' }))
        devices.add(box.id)
    }
    for (const { collection, before, after } of changes) {
      const doc = (after ?? before) as unknown as Record<string, unknown>
      switch (collection) {
        case collections.devices.name:
          // reports, last-seen and session updates are most device commits and shape no configuration
          if (configInputs(before) === configInputs(after)) break
          devices.add(doc.id as string)
          users.add(doc.owner as string)
          deviceOwners.add(doc.owner as string)
          break
        case collections.users.name: {
          const was = (before as UserDoc | null)?.stageId
          const is = (after as UserDoc | null)?.stageId
          if (was !== is) {
            users.add(doc.id as string)
            if (was) stages.add(was)
            if (is) stages.add(is)
          }
          break
        }
        case stageCollections.stages.name:
        case stageCollections.members.name:
          stages.add((collection === stageCollections.stages.name ? doc.id : doc.stageId) as string)
          if (collection === stageCollections.members.name) users.add(doc.userId as string)
          break
        case collections.assignments.name:
          // the stage's ov relay
          stages.add(doc.stageId as string)
          break
        case stageCollections.mixes.name:
          users.add(doc.userId as string)
          break
      }
    }
    // a device's tracks and presence shape the session of everyone seated with its owner
    for (const userId of deviceOwners) {
      const owner = await this.#store.get<UserDoc>(collections.users.name, userId)
      if (owner?.stageId) stages.add(owner.stageId)
    }
    for (const stageId of stages) {
      const members = await this.#store.find<MemberDoc>(stageCollections.members.name, {
        stageId,
        joined: true,
      })
      for (const member of members) users.add(member.userId)
    }
    for (const userId of users) {
      for (const device of await this.#store.find<DeviceDoc>(collections.devices.name, { owner: userId })) {
        devices.add(device.id)
      }
    }
    return devices
  }

  async #renderOv(device: DeviceDoc) {
    const store = this.#store
    const user = await store.get<UserDoc>(collections.users.name, device.owner)
    const stored = user?.stageId
      ? await store.get<StageDoc>(stageCollections.stages.name, user.stageId)
      : null
    const stage =
      stored && servedStage(stored, await store.get<AssignmentDoc>(collections.assignments.name, stored.id))
    const members = stage
      ? await store.find<MemberDoc>(stageCollections.members.name, { stageId: stage.id, joined: true })
      : []
    const self = members.find((m) => m.userId === device.owner)
    const peers: OvSeat[] = []
    for (const member of members) {
      if (member === self || member.seat === null) continue
      const boxes = await store.find<DeviceDoc>(collections.devices.name, {
        owner: member.userId,
        kind: 'ovbox',
        online: true,
      })
      if (boxes.length === 0) continue // only ov-boxes take part in the ov session
      peers.push({ ...seat(member), tracks: boxes.flatMap(sentTracks) })
    }
    const mixes = stage
      ? await store.find<MixDoc>(stageCollections.mixes.name, {
          userId: device.owner,
          stageId: stage.id,
          kind: 'member',
        })
      : []
    const seated = self !== undefined && self.seat !== null
    const ov = renderOvClientConfig({
      device: { ...device, soundCards: device.soundCards ?? [], tracks: device.tracks ?? [] },
      ...(stage ? { stage } : {}),
      ...(seated ? { self: { ...seat(self), tracks: [] } } : {}),
      peers,
      memberMixes: new Map(mixes.map((m) => [m.targetId, m])),
    })
    return { ov, audio: ovAudio({ ...(stage ? { stage } : {}), seated }) }
  }
}

/** What of a device its own and its peers' configurations are rendered from: settings, cards, tracks, presence. */
function configInputs(doc: unknown): string | null {
  const device = doc as DeviceDoc | null
  return device ? JSON.stringify([deviceConfig(device), device.online]) : null
}

/** The configuration with its digest: the same configuration always has the same revision. */
function withRevision(config: Omit<DeviceConfig, 'revision'>): DeviceConfig {
  const revision = createHash('sha256').update(JSON.stringify(config)).digest('hex').slice(0, 16)
  return { ...config, revision }
}

function seat(member: MemberDoc): Omit<OvSeat, 'tracks'> {
  return {
    memberId: member.id,
    seat: member.seat ?? -1,
    label: member.name,
    volume: member.volume,
    muted: member.muted,
    position: member.position,
  }
}

import { randomBytes } from 'node:crypto'
import type { Quotas } from '../config.ts'
import type { Identity, TokenService } from '../../broker/tokens.ts'
import {
  type DeviceSettings,
  type DeviceState,
  type Track,
  deviceCreate,
  deviceRemove,
  deviceToken,
  deviceUpdate,
  soundCardRemove,
  soundCardSet,
  trackAdd,
  trackRemove,
  trackUpdate,
} from '../../schemas/actions/device.ts'
import { collections, type DeviceDoc } from '../collections.ts'
import { HubError, checkVersion, conflict, forbidden, notFound } from '../errors.ts'
import type { RequestContext, RequestPipeline } from '../requests/pipeline.ts'
import type { Store, Transaction } from '../store/store.ts'
import type { UsersService } from '../users/service.ts'

export function deviceState(device: DeviceDoc): DeviceState {
  const {
    tokenVersion: _tokenVersion,
    createdAt: _createdAt,
    session: _session,
    hub: _hub,
    ...visible
  } = device
  return { ...visible, soundCards: device.soundCards ?? [], tracks: device.tracks ?? [] }
}

/**
 * What the device itself receives, retained, on `devices/{d}/config`: its full desired configuration.
 * Not the document's version: that moves with every report, and the configuration must not.
 */
export function deviceConfig(device: DeviceDoc) {
  return {
    deviceId: device.id,
    kind: device.kind,
    name: device.name,
    desired: device.desired,
    // the owner may edit these remotely, so the device reads them back from its configuration
    soundCards: device.soundCards ?? [],
    tracks: device.tracks ?? [],
  }
}

/** Applies a settings patch: `null` removes a setting, `undefined` leaves it. */
export function patchSettings(current: DeviceSettings, patch: Record<string, unknown>): DeviceSettings {
  const next: Record<string, unknown> = { ...current }
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete next[key]
    else if (value !== undefined) next[key] = value
  }
  return next as DeviceSettings
}

export interface DevicesServiceOptions {
  store: Store
  pipeline: RequestPipeline
  users: UsersService
  quotas: Quotas
  deviceTokenTtlSeconds: number
}

/**
 * The device registry and remote control (docs/protocol/actions.md): devices and revocable device
 * tokens by generation. Their documents and configurations follow the commits (./projection.ts).
 */
export class DevicesService {
  readonly #options: DevicesServiceOptions

  constructor(options: DevicesServiceOptions) {
    this.#options = options
  }

  async start(): Promise<void> {
    const { store, pipeline, users } = this.#options
    await store.ensureCollection(collections.devices)

    pipeline.register(deviceCreate, async (ctx, params) => {
      const owner = requireUser(ctx.who)
      const existing = await ctx.tx.find<DeviceDoc>(collections.devices.name, { owner })
      if (existing.length >= this.#options.quotas.devicesPerUser) {
        throw forbidden(
          `you have ${existing.length} devices, the most one user may register: remove one first`,
        )
      }
      const device = ctx.tx.insert<DeviceDoc>(collections.devices.name, {
        id: randomBytes(12).toString('base64url'),
        owner,
        tokenVersion: 1,
        kind: params.kind,
        name: params.name,
        online: false,
        desired: {},
        reported: {},
        createdAt: new Date().toISOString(),
      })
      return { device: deviceState(device), ...this.#token(ctx, device) }
    })

    pipeline.register(deviceToken, async (ctx, params) => {
      const device = await this.#owned(ctx, params.deviceId)
      // the hub closes connections of older generations when this commits (see hub.ts)
      const rotated = ctx.tx.replace(collections.devices.name, {
        ...device,
        tokenVersion: device.tokenVersion + 1,
      })
      return { ...this.#token(ctx, rotated), generation: rotated.tokenVersion }
    })

    pipeline.register(deviceRemove, async (ctx, params) => {
      removeDevice(ctx, await this.#owned(ctx, params.deviceId))
      return {}
    })
    users.onAccountRemoval(async (ctx, user, _choice, removal) => {
      for (const device of await ctx.tx.find<DeviceDoc>(collections.devices.name, { owner: user.id })) {
        removeDevice(ctx, device)
        removal.devicesRemoved.push(device.id)
      }
    })

    pipeline.register(deviceUpdate, async (ctx, params) => {
      const device = await this.#owned(ctx, params.deviceId)
      checkVersion(`device ${device.id}`, device, params.version)
      const next: DeviceDoc = {
        ...device,
        ...(params.name !== undefined ? { name: params.name } : {}),
        desired: params.settings ? patchSettings(device.desired, params.settings) : device.desired,
      }
      return deviceState(this.#save(ctx, next))
    })

    this.#registerSoundCardsAndTracks()
  }

  /** Sound cards and tracks: the owner may edit them remotely, and the device reports its own. */
  #registerSoundCardsAndTracks(): void {
    const { pipeline } = this.#options
    pipeline.register(soundCardSet, async (ctx, params) => {
      const device = await this.#ownedOrSelf(ctx, params.deviceId, params.version)
      const card = params.soundCard
      const others = (device.soundCards ?? []).filter((c) => c.name !== card.name)
      // a card with fewer inputs than before loses the tracks on channels it no longer has
      const tracks = (device.tracks ?? []).filter(
        (t) => t.soundCardName !== card.name || t.channel < card.numInputChannels,
      )
      const saved = this.#save(ctx, { ...device, soundCards: [...others, card], tracks })
      return deviceState(saved)
    })
    pipeline.register(soundCardRemove, async (ctx, params) => {
      const device = await this.#ownedOrSelf(ctx, params.deviceId, params.version)
      if (!(device.soundCards ?? []).some((card) => card.name === params.name)) {
        throw notFound(`sound card "${params.name}" on device ${device.id}`)
      }
      const saved = this.#save(ctx, {
        ...device,
        soundCards: (device.soundCards ?? []).filter((card) => card.name !== params.name),
        tracks: (device.tracks ?? []).filter((track) => track.soundCardName !== params.name),
      })
      return deviceState(saved)
    })
    pipeline.register(trackAdd, async (ctx, params) => {
      const device = await this.#ownedOrSelf(ctx, params.deviceId)
      const card = (device.soundCards ?? []).find((c) => c.name === params.soundCardName)
      if (!card) throw notFound(`sound card "${params.soundCardName}" on device ${device.id}: set it first`)
      if (params.channel >= card.numInputChannels) {
        const range =
          card.numInputChannels === 0 ? 'no input channels' : `input channels 0-${card.numInputChannels - 1}`
        throw new HubError('invalid_request', `sound card "${card.name}" has ${range}, not ${params.channel}`)
      }
      const tracks = device.tracks ?? []
      if (tracks.some((t) => t.soundCardName === card.name && t.channel === params.channel)) {
        throw conflict(`channel ${params.channel} of "${card.name}" is sent already`)
      }
      const track: Track = {
        id: randomBytes(12).toString('base64url'),
        soundCardName: card.name,
        channel: params.channel,
        ...(params.name !== undefined ? { name: params.name } : {}),
        gain: params.gain ?? 1,
        directivity: params.directivity ?? 'omni',
      }
      this.#save(ctx, { ...device, tracks: [...tracks, track] })
      return track
    })
    pipeline.register(trackUpdate, async (ctx, params) => {
      const device = await this.#ownedOrSelf(ctx, params.deviceId)
      const track = (device.tracks ?? []).find((t) => t.id === params.trackId)
      if (!track) throw notFound(`track ${params.trackId} on device ${device.id}`)
      const updated: Track = { ...track }
      for (const [key, value] of Object.entries(params.patch))
        if (value !== undefined) Object.assign(updated, { [key]: value })
      this.#save(ctx, {
        ...device,
        tracks: (device.tracks ?? []).map((t) => (t.id === track.id ? updated : t)),
      })
      return updated
    })
    pipeline.register(trackRemove, async (ctx, params) => {
      const device = await this.#ownedOrSelf(ctx, params.deviceId)
      if (!(device.tracks ?? []).some((t) => t.id === params.trackId)) {
        throw notFound(`track ${params.trackId} on device ${device.id}`)
      }
      this.#save(ctx, { ...device, tracks: (device.tracks ?? []).filter((t) => t.id !== params.trackId) })
      return {}
    })
  }

  /** The device, for its owner or for the device itself (version-checked when one is given). */
  async #ownedOrSelf(ctx: RequestContext, deviceId: string, version?: number): Promise<DeviceDoc> {
    const { who } = ctx
    const device = await getDevice(ctx.tx, deviceId)
    const allowed =
      device !== null &&
      ((who.role === 'user' && device.owner === who.id) || (who.role === 'device' && who.id === device.id))
    if (!device || !allowed) throw notFound(`device ${deviceId} of yours`)
    checkVersion(`device ${device.id}`, device, version)
    return device
  }

  #save(ctx: RequestContext, device: DeviceDoc): DeviceDoc {
    return ctx.tx.replace(collections.devices.name, device)
  }

  /** The device, if the caller owns it; anyone else learns nothing about it. */
  async #owned(ctx: RequestContext, deviceId: string): Promise<DeviceDoc> {
    const owner = requireUser(ctx.who)
    const device = await getDevice(ctx.tx, deviceId)
    if (!device || device.owner !== owner) throw notFound(`device ${deviceId} of yours`)
    return device
  }

  #token(ctx: RequestContext, device: DeviceDoc): { token: string; expiresAt: string } {
    return signDeviceToken(ctx, device, this.#options.deviceTokenTtlSeconds)
  }
}

/** A token of the device's current generation (older generations are refused at CONNECT). */
export function signDeviceToken(
  tokens: Pick<TokenService, 'sign'>,
  device: Pick<DeviceDoc, 'id' | 'owner' | 'tokenVersion'>,
  ttlSeconds: number,
): { token: string; expiresAt: string } {
  const { token, exp } = tokens.sign(
    { sub: device.id, role: 'device', owner: device.owner, ver: device.tokenVersion },
    ttlSeconds,
  )
  return { token, expiresAt: new Date(exp * 1000).toISOString() }
}

/** Its token dies and its connections close when this commits (see hub.ts). */
function removeDevice(ctx: RequestContext, device: DeviceDoc): void {
  ctx.tx.delete(collections.devices.name, device)
}

export function requireUser(who: Identity): string {
  if (who.role !== 'user') throw forbidden('devices are managed by their owner with a user token')
  return who.id
}

export function getDevice(tx: Transaction, deviceId: string): Promise<DeviceDoc | null> {
  return tx.get<DeviceDoc>(collections.devices.name, deviceId)
}

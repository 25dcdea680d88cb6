import { isDeepStrictEqual } from 'node:util'
import { releaseList, releasePublish, releaseRollout, releaseStatus } from '../../schemas/actions/release.ts'
import type { FirmwareRelease, ReleaseState, Rollout } from '../../schemas/firmware.ts'
import { isTargeted, targetRelease } from '../../firmware-config/rollout.ts'
import type { StoredDoc } from '../store/port.ts'
import type { Identity } from '../../broker/tokens.ts'
import type { ActionResult } from '../../schemas/action.ts'
import { collections } from '../collections.ts'
import type { DeviceDoc } from '../collections.ts'
import { conflict, forbidden, notFound } from '../errors.ts'
import type { RequestContext, RequestPipeline } from '../requests/pipeline.ts'
import type { Store } from '../store/store.ts'

/** A published release, stored under its version (the document's own `version` is the store's). */
export interface ReleaseDoc extends StoredDoc {
  manifest: FirmwareRelease
  publishedAt: string
  rollout: Rollout
}

export const releaseCollection = { name: 'releases' }

export function releaseState(doc: ReleaseDoc): ReleaseState {
  return { ...doc.manifest, publishedAt: doc.publishedAt, rollout: doc.rollout }
}

/**
 * Firmware/config releases (admins only): a manifest is published once per version, then rolled out
 * to named ov-boxes and a stable share of all of them. What a box should run is decided by
 * firmware-config/rollout.ts and delivered in its `devices/{d}/config`; the box reports progress in
 * `reported.firmware`, which `release.status` counts.
 */
export class FirmwareService {
  readonly #store: Store
  readonly #pipeline: RequestPipeline

  constructor(store: Store, pipeline: RequestPipeline) {
    this.#store = store
    this.#pipeline = pipeline
  }

  async start(): Promise<void> {
    await this.#store.ensureCollection(releaseCollection)
    const pipeline = this.#pipeline

    pipeline.register(releasePublish, async (ctx, { release }) => {
      requireAdmin(ctx.who)
      const existing = await ctx.tx.get<ReleaseDoc>(releaseCollection.name, release.version)
      if (existing) {
        if (!isDeepStrictEqual(existing.manifest, release)) {
          throw conflict(`release ${release.version} exists with another manifest: publish a new version`)
        }
        return releaseState(existing)
      }
      const doc = ctx.tx.insert<ReleaseDoc>(releaseCollection.name, {
        id: release.version,
        manifest: release,
        publishedAt: new Date().toISOString(),
        rollout: { percent: 0, deviceIds: [] },
      })
      return releaseState(doc)
    })

    pipeline.register(releaseRollout, async (ctx, { version, percent, deviceIds }) => {
      const release = await this.#release(ctx, version)
      const saved = ctx.tx.replace<ReleaseDoc>(releaseCollection.name, {
        ...release,
        rollout: { percent, deviceIds },
      })
      return releaseState(saved)
    })

    pipeline.register(releaseStatus, async (ctx, { version }) => {
      const release = releaseState(await this.#release(ctx, version))
      const releases = (await ctx.tx.find<ReleaseDoc>(releaseCollection.name)).map(releaseState)
      const boxes = await ctx.tx.find<DeviceDoc>(collections.devices.name, { kind: 'ovbox' })
      return progress(release, releases, boxes)
    })

    pipeline.register(releaseList, async (ctx) => {
      requireAdmin(ctx.who)
      const releases = (await ctx.tx.find<ReleaseDoc>(releaseCollection.name)).map(releaseState)
      const boxes = await ctx.tx.find<DeviceDoc>(collections.devices.name, { kind: 'ovbox' })
      const newestFirst = releases.toSorted(
        (a, b) => b.publishedAt.localeCompare(a.publishedAt) || b.version.localeCompare(a.version),
      )
      return { releases: newestFirst.map((release) => progress(release, releases, boxes)) }
    })
  }

  async #release(ctx: RequestContext, version: string): Promise<ReleaseDoc> {
    requireAdmin(ctx.who)
    const release = await ctx.tx.get<ReleaseDoc>(releaseCollection.name, version)
    if (!release) throw notFound(`release ${version}`)
    return release
  }
}

/** How far a release's rollout got over these ov-boxes (`releases`: all, to find each box's target). */
function progress(
  release: ReleaseState,
  releases: ReleaseState[],
  boxes: DeviceDoc[],
): ActionResult<typeof releaseStatus> {
  const counts = { targeted: 0, updated: 0, failed: 0, pending: 0 }
  for (const device of boxes) {
    // a device that a newer release also targets is that release's, not this one's
    if (!isTargeted(release, device.id) || targetRelease(releases, device.id)?.version !== release.version)
      continue
    counts.targeted++
    const reported = device.reported.firmware as { version?: string; state?: string } | undefined
    if (reported?.version === release.version && reported.state === 'UPDATED') counts.updated++
    else if (reported?.version === release.version && reported.state === 'FAILED') counts.failed++
    else counts.pending++
  }
  return { release, ...counts }
}

function requireAdmin(who: Identity): void {
  if (who.role !== 'admin') throw forbidden('releases are managed by hub operators (admin tokens)')
}

import { Type } from '@sinclair/typebox'
import { defineAction } from '../action.ts'
import { FirmwareRelease, ReleaseState, Rollout } from '../firmware.ts'

const ReleaseRef = { version: FirmwareRelease.properties.version }

export const releasePublish = defineAction({
  name: 'release.publish',
  changesState: true,
  targets: { release: 'params.release.version' },
  description:
    'Publish a firmware/config release manifest (admins). It targets no device until it is rolled out; publishing the same version again with another manifest is a conflict.',
  params: Type.Object({ release: FirmwareRelease }, { additionalProperties: false }),
  result: ReleaseState,
})

export const releaseRollout = defineAction({
  name: 'release.rollout',
  changesState: true,
  targets: { release: 'params.version' },
  description:
    'Set which ov-boxes a release targets (admins): the named devices plus a stable percentage of all ov-boxes. Targeted boxes receive the release in their devices/{d}/config; 0 % and no devices withdraws it.',
  params: Type.Object({ ...ReleaseRef, ...Rollout.properties }, { additionalProperties: false }),
  result: ReleaseState,
})

/** A release and how far its rollout got: the ov-boxes it is the target of, by the firmware state they report. */
export const ReleaseProgress = Type.Object(
  {
    release: ReleaseState,
    targeted: Type.Integer({ minimum: 0 }),
    updated: Type.Integer({ minimum: 0, description: 'report this version as UPDATED' }),
    failed: Type.Integer({ minimum: 0, description: 'report FAILED for this version' }),
    pending: Type.Integer({ minimum: 0, description: 'targeted, not yet updated or failed' }),
  },
  { additionalProperties: false },
)

export const releaseStatus = defineAction({
  name: 'release.status',
  changesState: false,
  targets: { release: 'params.version' },
  description:
    "How far a release's rollout got (admins): the ov-boxes it is the target of, by the firmware state they report.",
  params: Type.Object(ReleaseRef, { additionalProperties: false }),
  result: ReleaseProgress,
})

export const releaseList = defineAction({
  name: 'release.list',
  changesState: false,
  description:
    'Every published release with its rollout progress, as release.status counts it (admins), newest first.',
  params: Type.Object({}, { additionalProperties: false }),
  result: Type.Object({ releases: Type.Array(ReleaseProgress) }, { additionalProperties: false }),
})

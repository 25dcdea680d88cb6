/**
 * How loud a person hears a track: the rule the ov-box configuration (firmware-config/ov-client.ts),
 * the mixer page and the browser's audio share. Plain code with no schema library, so the browser
 * bundle may import it (test/scripts/build-web.test.ts).
 *
 * Each level (the track's group, its member, the track itself) is the person's own override where
 * they set one (`users/{u}/mix/{kind}/{id}`), else the stage's setting for everyone (the group's or
 * member's `volume`/`muted`; tracks have none), else 0 dB and not muted. The gain is the product of
 * the levels' volumes, and 0 when any level is muted.
 */

/** A volume (linear, 1 = 0 dB) and mute of one level, as far as it is set. */
export interface MixLevel {
  volume?: number | undefined
  muted?: boolean | undefined
}

/** One level as it applies: the person's own override field by field, else the stage's setting. */
export function levelOf(
  own: MixLevel | undefined,
  stage: MixLevel | undefined,
): { volume: number; muted: boolean } {
  return {
    volume: own?.volume ?? stage?.volume ?? 1,
    muted: own?.muted ?? stage?.muted ?? false,
  }
}

/** The linear gain of a track from its levels (group, member, track): 0 when any is muted. */
export function gainOf(
  levels: readonly { own?: MixLevel | undefined; stage?: MixLevel | undefined }[],
): number {
  let gain = 1
  for (const { own, stage } of levels) {
    const level = levelOf(own, stage)
    if (level.muted) return 0
    gain *= level.volume
  }
  return gain
}

import type { StageTrackDoc } from '../stages/model.ts'

/** Audio and video tracks are mediasoup producers (ov tracks belong to ov-boxes). */
export const isMediaTrack = (track: Pick<StageTrackDoc, 'kind'>): boolean =>
  track.kind === 'audio' || track.kind === 'video'

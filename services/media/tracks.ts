import type { Publication } from '../state-publisher.ts'
import type { Transaction } from '../store/store.ts'
import { type MixDoc, type StageTrackDoc, stageCollections as c, stageTopics } from '../stages/model.ts'

/** Audio and video tracks are mediasoup producers (ov tracks belong to ov-boxes). */
export const isMediaTrack = (track: Pick<StageTrackDoc, 'kind'>): boolean =>
  track.kind === 'audio' || track.kind === 'video'

/** Deletes tracks with the mixes that target them; returns the topics to clear. */
export async function deleteTracks(
  tx: Transaction,
  tracks: readonly StageTrackDoc[],
): Promise<Publication[]> {
  const out: Publication[] = []
  for (const track of tracks) {
    tx.delete(c.stageTracks.name, track)
    out.push({ topic: stageTopics.track(track.stageId, track.id), value: null })
    for (const mix of await tx.find<MixDoc>(c.mixes.name, { targetId: track.id, kind: 'track' })) {
      tx.delete(c.mixes.name, mix)
      out.push({ topic: stageTopics.mix(mix.userId, mix.kind, mix.targetId), value: null })
    }
  }
  return out
}

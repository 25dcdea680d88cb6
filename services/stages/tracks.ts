import type { Transaction } from '../store/store.ts'
import { type MixDoc, type StageTrackDoc, stageCollections as c } from './model.ts'

/**
 * The stages service's own writes of tracks, for the services that create them (media for its
 * producers, presence for ov-boxes): tracks and the mixes on them are stage documents.
 */
export function insertTrack(tx: Transaction, track: Omit<StageTrackDoc, 'version'>): StageTrackDoc {
  return tx.insert<StageTrackDoc>(c.stageTracks.name, track)
}

/** Deletes tracks with the mixes that target them. */
export async function deleteTracks(tx: Transaction, tracks: readonly StageTrackDoc[]): Promise<void> {
  for (const track of tracks) {
    tx.delete(c.stageTracks.name, track)
    for (const mix of await tx.find<MixDoc>(c.mixes.name, { targetId: track.id, kind: 'track' }))
      tx.delete(c.mixes.name, mix)
  }
}

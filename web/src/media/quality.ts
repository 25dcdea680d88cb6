/**
 * Whether a member's connection to this browser is poor (issue 14 item 4), from the RTCP counters of
 * the tracks received from them (the protocol carries no consumer score): over the last interval
 * between two readings of the figures, the share of packets lost, the worst interarrival jitter, and
 * whether anything arrived at all.
 */

/** A share of lost packets from which speech breaks up audibly and video freezes. */
export const POOR_LOSS = 0.05
/** Jitter (ms) beyond which the receiver's buffer has to grow noticeably. */
export const POOR_JITTER_MS = 50

export interface Quality {
  poor: boolean
  /** Lost packets over the interval, 0…1 (NaN when nothing was expected). */
  loss: number
  jitterMs: number
  /** What people read when it is poor ("" otherwise). */
  text: string
}

/** What a reading has of a received track (MediaFigures of web/src/media/engine.ts). */
export interface Counters {
  packets: number
  lost?: number
  /** ms */
  jitter?: number
}

/** The quality of one member's tracks between two readings (`before` and `now`, by producer id). */
export function qualityOf(
  before: ReadonlyMap<string, Counters> | undefined,
  now: ReadonlyMap<string, Counters>,
  producerIds: readonly string[],
): Quality {
  let packets = 0
  let lost = 0
  let jitterMs = 0
  let compared = 0
  for (const id of producerIds) {
    const b = before?.get(id)
    const n = now.get(id)
    if (!b || !n) continue
    compared++
    packets += Math.max(0, n.packets - b.packets)
    lost += Math.max(0, (n.lost ?? 0) - (b.lost ?? 0))
    jitterMs = Math.max(jitterMs, n.jitter ?? 0)
  }
  if (compared === 0) return { poor: false, loss: NaN, jitterMs: 0, text: '' }
  const loss = packets + lost > 0 ? lost / (packets + lost) : NaN
  if (packets + lost === 0)
    return { poor: true, loss, jitterMs, text: 'Poor connection: nothing arrived for a moment' }
  if (loss >= POOR_LOSS)
    return {
      poor: true,
      loss,
      jitterMs,
      text: `Poor connection: ${Math.round(loss * 100)} % of packets lost`,
    }
  if (jitterMs >= POOR_JITTER_MS)
    return { poor: true, loss, jitterMs, text: `Poor connection: ${Math.round(jitterMs)} ms jitter` }
  return { poor: false, loss, jitterMs, text: '' }
}

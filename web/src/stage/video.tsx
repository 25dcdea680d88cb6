import { useEffect, useRef } from 'preact/hooks'
import type { MemberState, StageTrackState } from '../../../schemas/actions/stage.ts'
import type { StageAudio } from '../media/audio.ts'
import type { MediaFigures } from '../media/engine.ts'
import { qualityOf } from '../media/quality.ts'
import { Presence, presenceOf } from './presence.tsx'

/** Plays a MediaStream, without sound (the audio goes through Web Audio: web/src/media/engine.ts). */
function StreamVideo({ stream, label }: { stream: MediaStream; label: string }) {
  const ref = useRef<HTMLVideoElement>(null)
  useEffect(() => {
    const video = ref.current
    if (!video) return
    video.srcObject = stream
    void video.play().catch(() => undefined)
    return () => {
      video.srcObject = null
    }
  }, [stream])
  return <video ref={ref} muted autoPlay playsInline aria-label={label} />
}

/** Two letters for an avatar: "Ann Lee" → "AL", "Bo" → "BO". */
function initials(name: string): string {
  const words = name.trim().split(/\s+/).filter(Boolean)
  const letters = words.length > 1 ? words[0]![0]! + words.at(-1)![0]! : (words[0] ?? '?').slice(0, 2)
  return letters.toUpperCase()
}

/**
 * The stage's video (issue 14 item 4), while media is on in a stage whose video is mediasoup: a tile
 * per member in the stage, playing their camera when it is received, their initials, name and
 * presence otherwise, and a warning when the connection from them is poor (packet loss or jitter of
 * what this browser receives from them, read every second).
 */
export function VideoTiles({
  userId,
  audio,
  members,
  tracks,
}: {
  userId: string
  audio: StageAudio
  members: readonly MemberState[]
  tracks: readonly StageTrackState[]
}) {
  const figures = audio.figures.value.received
  const videos = audio.videos.value
  const own = audio.ownVideo.value
  const camera = audio.figures.value.camera
  // the figures one reading ago: the warning is about the last second, not the whole call
  const previous = useRef<{
    now: ReadonlyMap<string, MediaFigures>
    before?: ReadonlyMap<string, MediaFigures>
  }>({
    now: figures,
  })
  if (previous.current.now !== figures) previous.current = { now: figures, before: previous.current.now }
  const before = previous.current.before

  const shown = members.filter((m) => m.joined)
  return (
    <section aria-labelledby="video-heading" class="video-panel" data-testid="video">
      <h3 id="video-heading">Cameras</h3>
      <ul class="tiles">
        {shown.map((member) => {
          const mine = member.userId === userId
          const theirs = tracks.filter((t) => t.memberId === member.id && t.userId !== userId)
          const video = theirs.find((t) => t.kind === 'video' && videos.has(t.id))
          const stream = mine ? own : video && videos.get(video.id)
          const quality = mine
            ? undefined
            : qualityOf(
                before,
                figures,
                // what this browser paused ("receive" off) or its sender paused (sending off) is silent on purpose
                theirs.filter((t) => !t.paused && !figures.get(t.id)?.paused).map((t) => t.id),
              )
          const name = mine ? `${member.name} (you)` : member.name
          return (
            <li
              key={member.id}
              class={`tile${quality?.poor ? ' poor' : ''}`}
              data-testid={`tile-${member.name}`}
              data-video={stream ? 'yes' : 'no'}
              data-packets={mine ? undefined : ((video && figures.get(video.id)?.packets) ?? 0)}
              data-sending={mine ? (camera?.sending ? 'yes' : 'no') : undefined}
              data-camera={mine ? (camera?.settings.deviceId ?? '') : undefined}
              data-producer={mine ? (camera?.producerId ?? '') : theirs.find((t) => t.kind === 'video')?.id}
            >
              {stream ? (
                <StreamVideo stream={stream} label={`${name}: camera`} />
              ) : (
                <span class="tile-avatar" aria-hidden="true">
                  {initials(member.name)}
                </span>
              )}
              <span class="tile-name">
                <Presence member={member} /> {name}
                {!stream && <small> · {presenceOf(member).text}, no video</small>}
              </span>
              <span role="status" class="tile-warning">
                {quality?.poor ? quality.text : ''}
              </span>
            </li>
          )
        })}
      </ul>
    </section>
  )
}

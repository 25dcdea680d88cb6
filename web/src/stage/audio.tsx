import { useSignal } from '@preact/signals'
import type { MemberState, StageTrackState } from '../../../schemas/actions/stage.ts'
import type { AudioStatus, StageAudio } from '../media/audio.ts'
import { browserDeviceElsewhere } from '../browser-device.ts'
import { joinAudio, leaveAudio, mediaSession } from '../media/session.ts'
import { AudioChoicesForm } from './audio-choices.tsx'
import { VideoTiles } from './video.tsx'

/** A gain as people read it: "−6.0 dB", "muted". */
function describeGain(gain: number): string {
  if (gain === 0) return 'muted in your mix'
  const db = 20 * Math.log10(gain)
  return `${db > 0 ? '+' : db < 0 ? '−' : ''}${Math.abs(db).toFixed(1)} dB`
}

/**
 * The stage's audio in this browser (issue 14): "Join audio" / "Leave audio", what is happening,
 * and every received track with the gain the mix gives it and a level meter. Shown to a person in a
 * stage whose audio is mediasoup.
 */
export function AudioPanel({
  stageId,
  userId,
  audio: hasAudio,
  video,
  members,
  tracks: trackMap,
}: {
  stageId: string
  userId: string
  /** The stage's audio is mediasoup (else only its video goes through the router). */
  audio: boolean
  /** The stage's video is mediasoup. */
  video: boolean
  members: readonly MemberState[]
  tracks: ReadonlyMap<string, StageTrackState>
}) {
  // the tab's media session (web/src/media/session.ts) if it is this stage's: it outlives this page
  const current = mediaSession.value
  const session = current?.stageId === stageId ? current : undefined
  const audio = session?.audio
  const notice = useSignal('')
  const tracks = [...trackMap.values()]
  const heard = session?.heard.value ?? []
  const status: AudioStatus = audio?.status.value ?? { phase: 'off', text: '' }
  const figures: StageAudio['figures']['value'] = audio?.figures.value ?? { received: new Map() }
  const joined = status.phase !== 'off'

  return (
    <section
      aria-labelledby="audio-heading"
      class="panel audio-panel"
      data-testid="audio"
      data-output={audio?.sinkId.value ?? ''}
    >
      <h2 id="audio-heading">{hasAudio ? 'Audio' : 'Video'}</h2>
      <div class="place-row">
        <p role="status" data-phase={status.phase}>
          {!joined
            ? hasAudio
              ? 'Audio is off: join to hear the others and be heard.'
              : 'Video is off: join to see the others and be seen.'
            : status.phase === 'failed'
              ? `${hasAudio ? 'Audio' : 'Video'} is off.`
              : status.text}
        </p>
        {joined ? (
          <button type="button" class="secondary" onClick={leaveAudio}>
            {hasAudio ? 'Leave audio' : 'Leave video'}
          </button>
        ) : (
          <button type="button" onClick={() => (notice.value = joinAudio(stageId) ?? '')}>
            {hasAudio ? 'Join audio' : 'Join video'}
          </button>
        )}
      </div>
      {/* said after a click on Join audio, while another tab carries this browser's device */}
      {!joined && notice.value && browserDeviceElsewhere.value && (
        <p role="status" data-testid="audio-notice">
          {notice.value}
        </p>
      )}
      {status.phase === 'failed' && (
        <p class="error" role="alert">
          {status.text}
        </p>
      )}
      {audio?.output.value && (
        <p class="error" role="alert">
          {audio.output.value}
        </p>
      )}
      {status.microphone && (
        <p class="error" role="alert">
          {status.microphone}
        </p>
      )}
      {status.camera && (
        <p class="error" role="alert">
          {status.camera}
        </p>
      )}
      {status.phase === 'on' && video && audio && (
        <VideoTiles userId={userId} audio={audio} members={members} tracks={tracks} />
      )}
      {status.phase === 'on' && hasAudio && (
        <>
          {figures.sent && (
            <p class="level-row">
              <span>Your microphone</span>
              <meter
                min={0}
                max={1}
                value={figures.sent.level}
                aria-label="Your microphone's level"
                data-testid="level-own"
                data-bytes={figures.sent.bytes}
                data-packets={figures.sent.packets}
                data-level={figures.sent.level}
                data-sending={figures.microphone?.sending ? 'yes' : 'no'}
                data-echo-cancellation={String(figures.microphone?.settings.echoCancellation)}
                data-noise-suppression={String(figures.microphone?.settings.noiseSuppression)}
                data-auto-gain-control={String(figures.microphone?.settings.autoGainControl)}
                data-input={figures.microphone?.settings.deviceId ?? ''}
              />
            </p>
          )}
          <h3 id="heard-heading">You hear</h3>
          {heard.length === 0 ? (
            <p>No one else sends audio yet.</p>
          ) : (
            <ul class="heard" aria-labelledby="heard-heading">
              {heard.map(({ track, name, gain }) => {
                const f = figures.received.get(track.id)
                return (
                  <li key={track.id} class="level-row" data-testid={`heard-${name}`}>
                    <span>
                      {name} <small>({describeGain(gain)})</small>
                    </span>
                    <meter
                      min={0}
                      max={1}
                      value={f ? (f.played ?? 0) * (f.gain ?? 1) : 0}
                      aria-label={`${name}'s level`}
                      data-producer={track.id}
                      data-receiving={f ? 'yes' : 'no'}
                      data-bytes={f?.bytes ?? 0}
                      data-packets={f?.packets ?? 0}
                      data-level={f?.level ?? 0}
                      data-concealed={f?.concealed ?? 0}
                      data-played={f?.played ?? 0}
                      data-gain={f?.gain ?? ''}
                    />
                  </li>
                )
              })}
            </ul>
          )}
        </>
      )}
      <AudioChoicesForm audio={hasAudio} video={video} />
    </section>
  )
}

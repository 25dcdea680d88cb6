import { useSignalEffect } from '@preact/signals'
import { useEffect, useMemo } from 'preact/hooks'
import { topics } from '../../../devices/hub-client/index.ts'
import type {
  GroupState,
  MemberState,
  MixState,
  StageState,
  StageTrackState,
} from '../../../schemas/actions/stage.ts'
import { gainOf } from '../../../schemas/mix-rule.ts'
import { browserDeviceLink } from '../browser-device.ts'
import { useLive } from '../live.ts'
import { StageAudio } from '../media/audio.ts'
import { audioChoices } from '../media/device-choices.ts'
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
  stage,
  groups,
  members,
  tracks: trackMap,
}: {
  stageId: string
  userId: string
  stage: StageState
  groups: readonly GroupState[]
  members: readonly MemberState[]
  tracks: ReadonlyMap<string, StageTrackState>
}) {
  const tracks = useMemo(() => [...trackMap.values()], [trackMap])
  const audio = useMemo(() => new StageAudio(userId), [userId])
  useEffect(() => () => audio.dispose(), [audio])
  useSignalEffect(() => audio.setLink(browserDeviceLink.value))
  useSignalEffect(() => audio.setChoices(audioChoices.value))
  const routerId = stage.mediaRouter?.router
  useEffect(() => audio.setRouter(routerId), [audio, routerId])
  useEffect(() => audio.setTracks(tracks), [audio, tracks])
  const video = stage.videoType === 'mediasoup'
  useEffect(() => audio.setVideo(video), [audio, video])

  const mixes = useLive<MixState>(topics.mix.filter({ u: userId }))
  const own = new Map<string, MixState>()
  for (const mix of mixes.value.values()) if (mix.stageId === stageId) own.set(`${mix.kind}:${mix.id}`, mix)
  const heard = tracks
    .filter((t) => t.kind === 'audio' && t.userId !== userId)
    .map((track) => {
      const member = members.find((m) => m.id === track.memberId)
      const group = groups.find((g) => g.id === member?.groupId)
      const gain = gainOf([
        { own: group && own.get(`group:${group.id}`), stage: group },
        { own: member && own.get(`member:${member.id}`), stage: member },
        { own: own.get(`track:${track.id}`) },
      ])
      return { track, name: member?.name ?? 'Someone', gain }
    })
    .sort((a, b) => a.name.localeCompare(b.name) || a.track.id.localeCompare(b.track.id))
  const gainKey = heard.map((h) => `${h.track.id}=${h.gain}`).join(',')
  useEffect(() => audio.setGains(new Map(heard.map((h) => [h.track.id, h.gain]))), [audio, gainKey])

  const status = audio.status.value
  const figures = audio.figures.value
  const joined = status.phase !== 'off'

  return (
    <section
      aria-labelledby="audio-heading"
      class="panel audio-panel"
      data-testid="audio"
      data-output={audio.sinkId.value}
    >
      <h2 id="audio-heading">Audio</h2>
      <div class="place-row">
        <p role="status" data-phase={status.phase}>
          {!joined
            ? 'Audio is off: join to hear the others and be heard.'
            : status.phase === 'failed'
              ? 'Audio is off.'
              : status.text}
        </p>
        {joined ? (
          <button type="button" class="secondary" onClick={() => audio.leave()}>
            Leave audio
          </button>
        ) : (
          <button type="button" onClick={() => audio.join()}>
            Join audio
          </button>
        )}
      </div>
      {status.phase === 'failed' && (
        <p class="error" role="alert">
          {status.text}
        </p>
      )}
      {audio.output.value && (
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
      {status.phase === 'on' && video && (
        <VideoTiles userId={userId} audio={audio} members={members} tracks={tracks} />
      )}
      {status.phase === 'on' && (
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
      <AudioChoicesForm />
    </section>
  )
}

import { signal } from '@preact/signals'
import { type HubClient, RequestError } from '../../../devices/hub-client/index.ts'
import { type AudioChoices, choicesOf, refreshMediaDevices } from './device-choices.ts'
import type { AudioEngine, MediaFigures, TrackInfo } from './engine.ts'

/**
 * A person's audio in one stage (issue 14): joined or not, and what it is doing. The engine (with
 * mediasoup-client) loads only when the person joins audio; it starts over by itself when the
 * stage's media router changes (failover) or this browser's device connection comes back, and waits
 * honestly while the stage has no router or the device is offline.
 */

export type AudioPhase = 'off' | 'waiting' | 'starting' | 'on' | 'failed'

export interface AudioStatus {
  phase: AudioPhase
  /** What is happening, or what went wrong and what to do. */
  text: string
  /** Set while the person hears the others but sends nothing (microphone refused or missing). */
  microphone?: string
  /** Set when the stage has video but the camera could not be sent: what happened and what to do. */
  camera?: string
  /** The hub refused media (`forbidden`): the person is not in the stage. */
  refused?: boolean
}

/**
 * Where the person is, from their profile (`users/{u}`, `stageId`): in this stage, in none, in
 * another one, or not known yet. A media request names no stage: the hub serves the caller's current
 * stage, so media is asked for only here, or in none (where the hub's refusal says why).
 */
export type StagePlace = 'here' | 'nowhere' | 'elsewhere' | 'unknown'

export interface DeviceLink {
  client: HubClient
  deviceId: string
  connection: number
}

const FIGURES_INTERVAL_MS = 1000

export class StageAudio {
  readonly status = signal<AudioStatus>({ phase: 'off', text: '' })
  /** Counters by producer id of the received tracks, and the microphone's, refreshed every second. */
  readonly figures = signal<{
    received: ReadonlyMap<string, MediaFigures>
    sent?: MediaFigures
    /** The microphone's applied settings (echo cancellation…) and whether it sends now. */
    microphone?: { settings: MediaTrackSettings; sending: boolean }
    /** The camera's producer, its applied settings (which camera) and whether it sends now. */
    camera?: { producerId: string; settings: MediaTrackSettings; sending: boolean }
  }>({
    received: new Map(),
  })
  /** Set when the output device of the settings could not be used (what happened, what to do). */
  readonly output = signal<string | undefined>(undefined)
  /** The output device the stage plays through now ('' = the default). */
  readonly sinkId = signal('')
  /** Other members' video (the stage's video is mediasoup), by producer id, and the own camera. */
  readonly videos = signal<ReadonlyMap<string, MediaStream>>(new Map())
  readonly ownVideo = signal<MediaStream | undefined>(undefined)
  readonly #userId: string
  #video = false
  /** Whether the stage's audio is mediasoup (else only video goes through the router). */
  #audioOn = true
  #wanted = false
  #audio?: AudioContext
  #engine?: AudioEngine
  #routerId?: string
  #place: StagePlace = 'unknown'
  #link?: DeviceLink
  #tracks: readonly TrackInfo[] = []
  #gains: ReadonlyMap<string, number> = new Map()
  /** Each start counts up: a start overtaken by a newer one closes what it made. */
  #generation = 0
  #timer?: ReturnType<typeof setInterval>
  #choices: AudioChoices = choicesOf({})
  /** Applies setting changes one after another. */
  #applying: Promise<unknown> = Promise.resolve()

  constructor(userId: string) {
    this.#userId = userId
  }

  get joined(): boolean {
    return this.#wanted
  }

  /** "Join audio" (call it from the click: browsers start audio output only after a gesture). */
  join(): void {
    if (!this.#audio) {
      this.#audio = new AudioContext()
      void this.#setOutput(this.#choices.output)
    }
    void this.#audio.resume()
    this.#wanted = true
    this.#restart()
  }

  /** "Leave audio": the transports on the router are closed, the microphone's track goes from the stage. */
  leave(): void {
    this.#wanted = false
    this.#generation++
    this.#stopEngine(false)
    this.status.value = { phase: 'off', text: '' }
  }

  /** The stage's router (`mediaRouter.router` of `stages/{s}`), undefined while none serves it. */
  setRouter(routerId: string | undefined): void {
    if (routerId === this.#routerId) return
    const had = this.#routerId !== undefined
    this.#routerId = routerId
    if (this.#wanted) this.#restart(had)
  }

  /** Where the person is now (their profile's current stage). */
  setPlace(place: StagePlace): void {
    const was = this.#place
    if (place === was) return
    this.#place = place
    // learning that the person is here changes nothing for media already on its way
    const same = (p: StagePlace) => p === 'here' || p === 'unknown'
    if (this.#wanted && !(same(was) && same(place))) this.#restart()
  }

  /** This browser's device connection, a new value on every connection. */
  setLink(link: DeviceLink | undefined): void {
    if (link === this.#link) return
    this.#link = link
    if (this.#wanted) this.#restart()
  }

  /** Whether the stage's video is mediasoup: the camera is sent and others' video received from the next start. */
  setVideo(enabled: boolean): void {
    if (enabled === this.#video) return
    this.#video = enabled
    if (this.#wanted) this.#restart()
  }

  /** Whether the stage's audio is mediasoup: the microphone is sent and others' audio received from the next start. */
  setAudio(enabled: boolean): void {
    if (enabled === this.#audioOn) return
    this.#audioOn = enabled
    if (this.#wanted) this.#restart()
  }

  /** What the status says while media is on. */
  #onText(sending: boolean): string {
    if (!this.#audioOn) return 'Video is on: you see the others (the stage’s audio goes another way).'
    return sending
      ? 'Audio is on: you hear the stage and it hears you.'
      : 'You hear the stage; you send nothing.'
  }

  /** The stage's retained tracks: other members' audio is consumed, gone tracks' consumers closed. */
  setTracks(tracks: readonly TrackInfo[]): void {
    this.#tracks = tracks
    void this.#engine?.sync(tracks)
  }

  /** The gain of each track by id, from the mix (schemas/mix-rule.ts). */
  setGains(gains: ReadonlyMap<string, number>): void {
    this.#gains = gains
    for (const [id, gain] of gains) this.#engine?.setGain(id, gain)
  }

  /** The browser device's audio settings (web/src/media/device-choices.ts), applied live. */
  setChoices(choices: AudioChoices): void {
    const was = this.#choices
    this.#choices = choices
    if (was.output !== choices.output) void this.#setOutput(choices.output)
    const engine = this.#engine
    if (engine && this.status.peek().phase === 'on') this.#apply(engine, this.#generation)
  }

  /** Every received track plays through the AudioContext: its sink is the output device ('' = default). */
  async #setOutput(deviceId: string): Promise<void> {
    const context = this.#audio as (AudioContext & { setSinkId?: (id: string) => Promise<void> }) | undefined
    if (!context) return
    if (!context.setSinkId) {
      this.output.value = deviceId
        ? 'This browser cannot choose an audio output: the system default plays the stage.'
        : undefined
      return
    }
    try {
      await context.setSinkId(deviceId)
      this.output.value = undefined
      this.sinkId.value = deviceId
    } catch (err) {
      this.output.value = `The chosen audio output could not be used (${err instanceof Error ? err.message : String(err)}): choose another one; the default plays meanwhile.`
      await context.setSinkId('').catch(() => undefined)
      this.sinkId.value = ''
    }
  }

  /** Hands the latest choices to the engine, after what is being applied, and says a microphone problem. */
  #apply(engine: AudioEngine, generation: number): void {
    this.#applying = this.#applying.then(async () => {
      if (generation !== this.#generation) return
      const applied = await engine
        .apply(this.#choices)
        .catch((err: unknown) => ({ microphone: String(err), camera: undefined }))
      if (generation !== this.#generation) return
      const status = this.status.peek()
      if (status.phase !== 'on') return
      const camera = applied.camera
      if (camera) this.ownVideo.value = camera.stream
      this.status.value = {
        phase: 'on',
        text: this.#onText(engine.microphone()?.sending ?? false),
        ...(applied.microphone ? { microphone: applied.microphone } : {}),
        ...(camera?.problem ? { camera: camera.problem } : {}),
      }
      void refreshMediaDevices().catch(() => undefined)
    })
  }

  /** Leaves audio and closes the AudioContext: the stage view is gone. */
  dispose(): void {
    this.leave()
    void this.#audio?.close()
    this.#audio = undefined
  }

  #stopEngine(routerGone: boolean): void {
    clearInterval(this.#timer)
    this.#timer = undefined
    this.#engine?.close(routerGone)
    this.#engine = undefined
    this.figures.value = { received: new Map() }
    this.videos.value = new Map()
    this.ownVideo.value = undefined
  }

  #restart(routerGone = false): void {
    const generation = ++this.#generation
    this.#stopEngine(routerGone)
    if (this.#place === 'elsewhere') {
      this.status.value = {
        phase: 'failed',
        text: 'You are in another stage now, and audio is for the stage you are in: open that stage to join its audio, or join this stage first.',
      }
      return
    }
    // in no stage: the hub is asked all the same and says why not (the retained state may lag)
    if (!this.#routerId && this.#place !== 'nowhere') {
      this.status.value = {
        phase: 'waiting',
        text: 'No media router serves this stage yet: audio starts by itself as soon as one does.',
      }
      return
    }
    if (!this.#link) {
      this.status.value = {
        phase: 'waiting',
        text: 'Waiting for this browser to connect as your device: audio starts once it is online. (With several tabs open, one of them is the device: join audio there, or close the others.)',
      }
      return
    }
    this.status.value = { phase: 'starting', text: 'Connecting audio…' }
    void this.#start(generation, this.#link)
  }

  /** Receives the others' video and sends the camera; returns a camera problem. */
  async #startVideo(engine: AudioEngine, generation: number): Promise<string | undefined> {
    engine.receiveVideo({
      changed: (videos) => {
        if (generation === this.#generation) this.videos.value = videos
      },
    })
    // "send video" off: no camera at all (it starts once the setting is on)
    const camera = await engine.applyCamera(undefined)
    if (generation !== this.#generation) return undefined
    this.ownVideo.value = camera.stream
    return camera.problem
  }

  async #start(generation: number, link: DeviceLink): Promise<void> {
    let engine: AudioEngine | undefined
    try {
      const { AudioEngine } = await import('./engine.ts')
      if (generation !== this.#generation) return
      engine = new AudioEngine(link.client, this.#audio!, this.#userId, (why) => {
        if (generation !== this.#generation) return
        this.status.value = { phase: 'starting', text: `Reconnecting audio: ${why}…` }
        this.#restart()
      })
      this.#engine = engine
      const asked = this.#choices
      const microphone = await engine.start(asked, this.#audioOn)
      if (generation !== this.#generation) return
      const camera = this.#video ? await this.#startVideo(engine, generation) : undefined
      if (generation !== this.#generation) return
      for (const [id, gain] of this.#gains) engine.setGain(id, gain)
      void engine.sync(this.#tracks)
      this.status.value = {
        ...(camera ? { camera } : {}),
        phase: 'on',
        text: this.#onText(!microphone && this.#choices.sendAudio),
        ...(microphone ? { microphone } : {}),
      }
      // the labels of the inputs and outputs are there once the microphone is allowed
      void refreshMediaDevices().catch(() => undefined)
      // settings changed while it started
      if (this.#choices !== asked) this.#apply(engine, generation)
      this.#timer = setInterval(() => {
        if (generation !== this.#generation) return
        engine!
          .figures()
          .then((figures) => {
            const microphone = engine!.microphone()
            const camera = engine!.camera()
            if (generation === this.#generation)
              this.figures.value = {
                ...figures,
                ...(microphone ? { microphone } : {}),
                ...(camera ? { camera } : {}),
              }
          })
          .catch(() => undefined)
      }, FIGURES_INTERVAL_MS)
    } catch (err) {
      if (generation !== this.#generation) return
      engine?.close()
      if (this.#engine === engine) this.#engine = undefined
      if (err instanceof RequestError && err.code === 'forbidden') {
        // not a member (any more), or not in the stage now: trying again changes nothing
        this.status.value = {
          phase: 'failed',
          refused: true,
          text: `The hub refused this browser media: ${err.reason}. Only the members who are in the stage hear and send its audio: join the stage (an admin's invitation link if you are not a member), then join audio.`,
        }
        return
      }
      const why = err instanceof RequestError ? err.reason : err instanceof Error ? err.message : String(err)
      this.status.value = {
        phase: 'failed',
        text: `Audio could not start: ${why}. Leave audio and join again; the rest of the stage keeps working.`,
      }
    }
  }
}

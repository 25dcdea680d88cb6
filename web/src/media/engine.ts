import { Device } from 'mediasoup-client'
import type {
  Consumer,
  DtlsParameters,
  IceCandidate,
  IceParameters,
  Producer,
  RtpCapabilities,
  RtpParameters,
  Transport,
  TransportOptions,
} from 'mediasoup-client/types'
import type { HubClient } from '../../../devices/hub-client/index.ts'
import {
  type AudioChoices,
  cameraConstraints,
  choicesOf,
  microphoneConstraints,
  newMicrophoneNeeded,
} from './device-choices.ts'
import { forgetTransport, rememberTransport } from './leftovers.ts'

/**
 * The browser's media on one router, for one connection of this browser's device (loaded lazily with
 * mediasoup-client when the person joins audio): the router's capabilities, a recv transport, the
 * microphone on a send transport, a consumer per other member's audio track, each played through
 * Web Audio with a GainNode. Every request is a hub `media.*` request over the device's connection.
 * A new router or connection means a new engine (web/src/media/audio.ts): this one is closed.
 */

/** What `sync` receives: the retained stage tracks (`stages/{s}/tracks/+`). */
export interface TrackInfo {
  id: string
  kind: string
  userId: string
}

/** Counters of one received track, or of the microphone, from its RTCPeerConnection's getStats(). */
export interface MediaFigures {
  bytes: number
  packets: number
  /** 0…1, the audio level Chromium measures (received: of the decoded audio; sent: of the source). */
  level: number
  /** The gain applied now (received tracks), read from the GainNode. */
  gain?: number
  /** Samples the receiver had to make up (lost or undecodable packets). */
  concealed?: number
  /** The peak level reaching Web Audio over the last ⅔ s (received tracks, before the gain), 0…1. */
  played?: number
  /** Packets the receiver counted as lost (received tracks: RTCP `packetsLost`). */
  lost?: number
  /** Interarrival jitter in ms (received tracks). */
  jitter?: number
  /** Paused here ("receive" off): nothing is expected from it, so it says nothing of the connection. */
  paused?: boolean
}

/** A consumed video track, shown in a `<video>` of its member's tile (web/src/stage/video.tsx). */
interface Watched {
  consumer: Consumer
  stream: MediaStream
}

/** What the video of an engine does: the videos received (by producer id) and the own camera's stream. */
export interface VideoSink {
  changed(videos: ReadonlyMap<string, MediaStream>): void
}

interface Received {
  consumer: Consumer
  element: HTMLAudioElement
  source: MediaStreamAudioSourceNode
  /** Takes the element's own output, so that only the graph is heard. */
  sink: MediaElementAudioSourceNode
  gain: GainNode
  /** Measures what reaches Web Audio (before the gain): the level meter of the track. */
  analyser: AnalyserNode
}

/** The peak of the analyser's latest block, 0…1. */
function peakOf(analyser: AnalyserNode): number {
  const block = new Float32Array(analyser.fftSize)
  analyser.getFloatTimeDomainData(block)
  let peak = 0
  for (const v of block) peak = Math.max(peak, Math.abs(v))
  return peak
}

/** Why the microphone could not be used, with what to do (the person still hears the others). */
export function microphoneProblem(err: unknown): string {
  const name = err instanceof DOMException ? err.name : ''
  if (name === 'NotAllowedError' || name === 'SecurityError')
    return 'The browser was not allowed to use your microphone: allow it for this site (the icon in the address bar), then leave and join audio again. You hear the others meanwhile.'
  if (name === 'NotFoundError' || name === 'OverconstrainedError')
    return 'No microphone was found: connect one, then leave and join audio again. You hear the others meanwhile.'
  if (name === 'NotReadableError')
    return 'Your microphone is in use by another program or failed: close that program, then leave and join audio again.'
  return `Your microphone could not be started (${err instanceof Error ? err.message : String(err)}). You hear the others meanwhile.`
}

/** Why the camera could not be used, with what to do (audio goes on; the others see your name). */
export function cameraProblem(err: unknown): string {
  const name = err instanceof DOMException ? err.name : ''
  if (name === 'NotAllowedError' || name === 'SecurityError')
    return 'The browser was not allowed to use your camera: allow it for this site (the icon in the address bar), then leave and join again. The others see your name meanwhile.'
  if (name === 'NotFoundError' || name === 'OverconstrainedError')
    return 'No camera was found: connect one, then leave and join again. The others see your name meanwhile.'
  if (name === 'NotReadableError')
    return 'Your camera is in use by another program or failed: close that program, then leave and join again.'
  return `Your camera could not be started (${err instanceof Error ? err.message : String(err)}). The others see your name meanwhile.`
}

export class AudioEngine {
  readonly #client: HubClient
  readonly #audio: AudioContext
  readonly #userId: string
  /** Called once when a transport fails for good (ICE/DTLS): the controller starts over. */
  readonly #failed: (why: string) => void
  #device?: Device
  #send?: Transport
  #recv?: Transport
  #mic?: Producer
  #stream?: MediaStream
  readonly #received = new Map<string, Received>()
  readonly #watched = new Map<string, Watched>()
  #video?: VideoSink
  #camera?: Producer
  #cameraStream?: MediaStream
  readonly #gains = new Map<string, number>()
  #closed = false
  /** Whether the stage's audio is mediasoup: without, no microphone and no audio consumers (video only). */
  #audioOn = true
  /** The device settings applied now (web/src/media/device-choices.ts). */
  #choices: AudioChoices = choicesOf({})
  /** Consumes and closes one after another: a burst of track changes never races itself. */
  #queue: Promise<void> = Promise.resolve()

  constructor(client: HubClient, audio: AudioContext, userId: string, failed: (why: string) => void) {
    this.#client = client
    this.#audio = audio
    this.#userId = userId
    this.#failed = failed
  }

  /** Loads the router's capabilities, creates the transports, produces the microphone; returns a microphone problem. */
  async start(choices: AudioChoices = choicesOf({}), audio = true): Promise<string | undefined> {
    this.#choices = choices
    this.#audioOn = audio
    const { rtpCapabilities } = await this.#client.request('media.capabilities', {})
    const device = await Device.factory()
    await device.load({ routerRtpCapabilities: rtpCapabilities as unknown as RtpCapabilities })
    this.#device = device
    this.#recv = await this.#transport('recv')
    return audio && choices.sendAudio ? this.#startMicrophone() : undefined
  }

  /** Opens the microphone with the device settings and produces it; returns a microphone problem. */
  async #startMicrophone(): Promise<string | undefined> {
    let stream: MediaStream
    try {
      // processing is off by default: it is made for speech (noise suppression eats sustained notes,
      // automatic gain pumps); headphones keep the stage from echoing
      stream = await navigator.mediaDevices.getUserMedia({ audio: microphoneConstraints(this.#choices) })
    } catch (err) {
      return microphoneProblem(err)
    }
    if (this.#closed) {
      for (const track of stream.getTracks()) track.stop()
      return undefined
    }
    this.#stream = stream
    const track = stream.getAudioTracks()[0]
    if (!track) return microphoneProblem(new DOMException('no audio track', 'NotFoundError'))
    this.#send ??= await this.#transport('send')
    // paused, it sends no RTP at all (not even silence): "send audio" off stops the packets
    this.#mic = await this.#send.produce({ track, stopTracks: false, zeroRtpOnPause: true })
    return undefined
  }

  /**
   * Applies new device settings live: a new input or processing switch replaces the microphone's
   * track, "send audio" pauses or resumes (or first starts) the producer, "receive audio" pauses or
   * resumes every consumer. Returns a microphone problem, if a new microphone could not be opened.
   */
  async apply(
    choices: AudioChoices,
  ): Promise<{ microphone?: string; camera?: { problem?: string; stream?: MediaStream } }> {
    // before start() is through, the controller applies the latest choices once it is
    if (this.#closed || !this.#recv) return {}
    const was = this.#choices
    this.#choices = choices
    const microphone = this.#audioOn ? await this.#applyAudio(was, choices) : undefined
    if (!this.#video) return microphone ? { microphone } : {}
    if (was.receiveVideo !== choices.receiveVideo) {
      for (const { consumer } of this.#watched.values()) await this.#receive(consumer, choices.receiveVideo)
      this.#showVideos()
    }
    const camera = await this.applyCamera(was)
    return microphone ? { microphone, camera } : { camera }
  }

  async #applyAudio(was: AudioChoices, choices: AudioChoices): Promise<string | undefined> {
    if (was.receiveAudio !== choices.receiveAudio)
      for (const { consumer } of this.#received.values()) await this.#receive(consumer, choices.receiveAudio)
    if (!choices.sendAudio) {
      if (this.#mic && !this.#mic.paused) await this.#sending(this.#mic, false)
      return undefined
    }
    if (!this.#mic) return this.#startMicrophone()
    if (newMicrophoneNeeded(was, choices)) {
      let stream: MediaStream
      try {
        stream = await navigator.mediaDevices.getUserMedia({ audio: microphoneConstraints(choices) })
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err)
        return `The chosen microphone or processing could not be used (${why}): the one before keeps sending. Choose another microphone, or the browser's default.`
      }
      const track = stream.getAudioTracks()[0]
      if (this.#closed || !track) {
        for (const t of stream.getTracks()) t.stop()
        return undefined
      }
      await this.#mic.replaceTrack({ track })
      for (const old of this.#stream?.getTracks() ?? []) old.stop()
      this.#stream = stream
    }
    if (this.#mic.paused) await this.#sending(this.#mic, true)
    return undefined
  }

  /**
   * Pauses or resumes a producer here (paused, it sends no RTP at all) and on the router (paused
   * there, the others' consumers of it get nothing and learn that it is paused).
   */
  async #sending(producer: Producer, on: boolean): Promise<void> {
    if (on) producer.resume()
    else producer.pause()
    await this.#client
      .request(on ? 'media.resume' : 'media.pause', { producerId: producer.id })
      .catch(() => undefined)
  }

  /** The microphone's applied settings (what the browser made of the constraints), and whether it sends. */
  microphone(): { settings: MediaTrackSettings; sending: boolean } | undefined {
    const track = this.#mic?.track ?? this.#stream?.getAudioTracks()[0]
    return track && this.#mic ? { settings: track.getSettings(), sending: !this.#mic.paused } : undefined
  }

  /** Pauses or resumes a consumer here and on the router (paused, the router sends it nothing). */
  async #receive(consumer: Consumer, on: boolean): Promise<void> {
    if (on) consumer.resume()
    else consumer.pause()
    await this.#client
      .request(on ? 'media.resume' : 'media.pause', { consumerId: consumer.id })
      .catch(() => undefined)
  }

  /** Receives other members' video from now on (the stage's video is mediasoup): `sink` hears of every change. */
  receiveVideo(sink: VideoSink): void {
    this.#video = sink
  }

  /** Produces the camera (after `start`); returns a camera problem, or the camera's own stream. */
  async startCamera(): Promise<{ problem: string } | { stream: MediaStream }> {
    let stream: MediaStream
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: cameraConstraints(this.#choices) })
    } catch (err) {
      return { problem: cameraProblem(err) }
    }
    const track = stream.getVideoTracks()[0]
    if (this.#closed || !track) {
      for (const t of stream.getTracks()) t.stop()
      return { problem: cameraProblem(new DOMException('no video track', 'NotFoundError')) }
    }
    this.#cameraStream = stream
    this.#send ??= await this.#transport('send')
    this.#camera = await this.#send.produce({ track, stopTracks: false })
    return { stream }
  }

  /**
   * Applies the video settings live: "send video" pauses or resumes the camera's producer here and
   * on the router (or first starts it), a new camera replaces its track (`replaceTrack`, the same
   * producer). Returns the own camera's stream now (undefined: none sent) or a camera problem.
   */
  async applyCamera(was: AudioChoices | undefined): Promise<{ problem?: string; stream?: MediaStream }> {
    const choices = this.#choices
    if (this.#closed) return {}
    if (!choices.sendVideo) {
      if (this.#camera && !this.#camera.paused) await this.#sending(this.#camera, false)
      return {}
    }
    if (!this.#camera) {
      const started = await this.startCamera()
      return 'problem' in started ? { problem: started.problem } : { stream: started.stream }
    }
    if (was && was.videoInput !== choices.videoInput) {
      let stream: MediaStream
      try {
        stream = await navigator.mediaDevices.getUserMedia({ video: cameraConstraints(choices) })
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err)
        return {
          problem: `The chosen camera could not be used (${why}): the one before keeps sending. Choose another camera, or the browser's default.`,
          ...(this.#cameraStream ? { stream: this.#cameraStream } : {}),
        }
      }
      const track = stream.getVideoTracks()[0]
      if (this.#closed || !track) {
        for (const t of stream.getTracks()) t.stop()
        return {}
      }
      await this.#camera.replaceTrack({ track })
      for (const old of this.#cameraStream?.getTracks() ?? []) old.stop()
      this.#cameraStream = stream
    }
    if (this.#camera.paused) await this.#sending(this.#camera, true)
    return this.#cameraStream ? { stream: this.#cameraStream } : {}
  }

  /** The camera producer's id and its track's settings (the tests read which camera sends). */
  camera(): { producerId: string; settings: MediaTrackSettings; sending: boolean } | undefined {
    const track = this.#camera?.track
    return this.#camera && track
      ? { producerId: this.#camera.id, settings: track.getSettings(), sending: !this.#camera.paused }
      : undefined
  }

  async #transport(direction: 'send' | 'recv'): Promise<Transport> {
    const info = await this.#client.request('media.createTransport', { direction })
    rememberTransport(info.transportId)
    if (this.#closed) {
      void this.#close({ transportId: info.transportId })
      throw new Error('audio was left')
    }
    const options: TransportOptions = {
      id: info.transportId,
      iceParameters: info.iceParameters as unknown as IceParameters,
      iceCandidates: info.iceCandidates as unknown as IceCandidate[],
      dtlsParameters: info.dtlsParameters as unknown as DtlsParameters,
    }
    const transport =
      direction === 'send'
        ? this.#device!.createSendTransport(options)
        : this.#device!.createRecvTransport(options)
    transport.on('connect', ({ dtlsParameters }, done, fail) => {
      this.#client
        .request('media.connectTransport', {
          transportId: transport.id,
          dtlsParameters: dtlsParameters as never,
        })
        .then(() => done(), fail)
    })
    if (direction === 'send')
      transport.on('produce', ({ kind, rtpParameters }, done, fail) => {
        this.#client
          .request('media.produce', {
            transportId: transport.id,
            kind,
            rtpParameters: rtpParameters as never,
          })
          .then(({ producerId }) => done({ id: producerId }), fail)
      })
    transport.on('connectionstatechange', (state) => {
      if (state === 'failed' && !this.#closed)
        this.#failed(`the ${direction} connection to the media router failed`)
    })
    return transport
  }

  /** Consumes every other member's audio track not consumed yet and closes the consumers of tracks gone. */
  sync(tracks: readonly TrackInfo[]): Promise<void> {
    const wanted = new Set(
      this.#audioOn
        ? tracks.filter((t) => t.kind === 'audio' && t.userId !== this.#userId).map((t) => t.id)
        : [],
    )
    const videos = this.#video
      ? new Set(tracks.filter((t) => t.kind === 'video' && t.userId !== this.#userId).map((t) => t.id))
      : new Set<string>()
    this.#queue = this.#queue.then(async () => {
      for (const producerId of [...this.#received.keys()])
        if (!wanted.has(producerId)) this.#drop(producerId, true)
      for (const producerId of wanted) {
        if (this.#closed) return
        if (this.#received.has(producerId)) continue
        // a track of the previous router, not cleared yet, is refused: the next change tries again
        await this.#consume(producerId).catch(() => undefined)
      }
      await this.#syncVideos(videos)
    })
    return this.#queue
  }

  async #consume(producerId: string): Promise<void> {
    const answer = await this.#client.request('media.consume', {
      producerId,
      rtpCapabilities: this.#device!.recvRtpCapabilities as never,
    })
    if (this.#closed) return
    const consumer = await this.#recv!.consume({
      id: answer.consumerId,
      producerId,
      kind: answer.kind,
      rtpParameters: answer.rtpParameters as unknown as RtpParameters,
    })
    const stream = new MediaStream([consumer.track])
    // Chromium decodes a remote track only while a media element plays it, and a muted (or silent)
    // element silences the track for every sink, Web Audio and stats included. So the element plays,
    // unmuted, into a media element source that goes nowhere (which takes its output: it is not heard
    // twice), and the track itself feeds the graph that is heard
    const element = new Audio()
    element.srcObject = stream
    const sink = this.#audio.createMediaElementSource(element)
    void element.play().catch(() => undefined)
    const source = this.#audio.createMediaStreamSource(stream)
    const gain = this.#audio.createGain()
    gain.gain.value = this.#gains.get(producerId) ?? 1
    const analyser = this.#audio.createAnalyser()
    analyser.fftSize = 32768
    source.connect(analyser)
    source.connect(gain).connect(this.#audio.destination)
    this.#received.set(producerId, { consumer, element, sink, source, gain, analyser })
    // it starts paused on the router: resumed unless "receive audio" is off
    if (this.#choices.receiveAudio) await this.#receive(consumer, true)
    else consumer.pause()
  }

  async #syncVideos(wanted: ReadonlySet<string>): Promise<void> {
    let changed = false
    for (const [producerId, watched] of [...this.#watched]) {
      if (wanted.has(producerId)) continue
      this.#watched.delete(producerId)
      watched.consumer.close()
      void this.#close({ consumerId: watched.consumer.id })
      changed = true
    }
    for (const producerId of wanted) {
      if (this.#closed) return
      if (this.#watched.has(producerId)) continue
      const consumer = await this.#consumeTrack(producerId).catch(() => undefined)
      if (!consumer) continue
      this.#watched.set(producerId, { consumer, stream: new MediaStream([consumer.track]) })
      changed = true
    }
    if (changed && !this.#closed) this.#showVideos()
  }

  /** The received videos to show: none while "receive video" is off (the tiles show initials). */
  #showVideos(): void {
    const shown = this.#choices.receiveVideo ? [...this.#watched] : []
    this.#video?.changed(new Map(shown.map(([id, w]) => [id, w.stream])))
  }

  /** `media.consume`, the consumer here, then `media.resume`: the track is live. */
  async #consumeTrack(producerId: string): Promise<Consumer | undefined> {
    const answer = await this.#client.request('media.consume', {
      producerId,
      rtpCapabilities: this.#device!.recvRtpCapabilities as never,
    })
    if (this.#closed) return undefined
    const consumer = await this.#recv!.consume({
      id: answer.consumerId,
      producerId,
      kind: answer.kind,
      rtpParameters: answer.rtpParameters as unknown as RtpParameters,
    })
    // it starts paused on the router: resumed unless "receive video" is off
    if (this.#choices.receiveVideo) await this.#client.request('media.resume', { consumerId: consumer.id })
    else consumer.pause()
    return consumer
  }

  #drop(producerId: string, tell: boolean): void {
    const received = this.#received.get(producerId)
    if (!received) return
    this.#received.delete(producerId)
    received.source.disconnect()
    received.sink.disconnect()
    received.gain.disconnect()
    received.analyser.disconnect()
    received.element.pause()
    received.element.srcObject = null
    received.consumer.close()
    // the router closed it with its producer already, as a rule: a not_found is expected
    if (tell) void this.#close({ consumerId: received.consumer.id })
  }

  /** `media.close` of one of ours; failures are dropped (the router may have closed it already). */
  async #close(target: { consumerId: string } | { transportId: string }): Promise<void> {
    await this.#client.request('media.close', target).catch(() => undefined)
  }

  /** The gain of a received track (linear; 0 = silent), applied at once and to a consumer made later. */
  setGain(producerId: string, gain: number): void {
    this.#gains.set(producerId, gain)
    const node = this.#received.get(producerId)?.gain
    if (node) node.gain.value = gain
  }

  /** The counters of each received track (by producer id) and of the microphone (`sent`). */
  async figures(): Promise<{ received: Map<string, MediaFigures>; sent?: MediaFigures }> {
    const received = new Map<string, MediaFigures>()
    for (const [producerId, r] of this.#received) {
      const stats = await r.consumer.getStats()
      for (const s of stats.values() as Iterable<Record<string, unknown>>)
        if (s.type === 'inbound-rtp' && s.kind === 'audio')
          received.set(producerId, {
            bytes: Number(s.bytesReceived ?? 0),
            packets: Number(s.packetsReceived ?? 0),
            level: Number(s.audioLevel ?? 0),
            gain: r.gain.gain.value,
            concealed: Number(s.concealedSamples ?? 0),
            played: peakOf(r.analyser),
            lost: Number(s.packetsLost ?? 0),
            jitter: Number(s.jitter ?? 0) * 1000,
            paused: r.consumer.paused,
          })
    }
    for (const [producerId, w] of this.#watched) {
      for (const s of (await w.consumer.getStats()).values() as Iterable<Record<string, unknown>>)
        if (s.type === 'inbound-rtp' && s.kind === 'video')
          received.set(producerId, {
            bytes: Number(s.bytesReceived ?? 0),
            packets: Number(s.packetsReceived ?? 0),
            level: 0,
            lost: Number(s.packetsLost ?? 0),
            jitter: Number(s.jitter ?? 0) * 1000,
            paused: w.consumer.paused,
          })
    }
    let sent: MediaFigures | undefined
    if (this.#mic) {
      sent = { bytes: 0, packets: 0, level: 0 }
      for (const s of (await this.#mic.getStats()).values() as Iterable<Record<string, unknown>>) {
        if (s.type === 'outbound-rtp') {
          sent.bytes += Number(s.bytesSent ?? 0)
          sent.packets += Number(s.packetsSent ?? 0)
        }
        if (s.type === 'media-source') sent.level = Number(s.audioLevel ?? 0)
      }
    }
    return sent ? { received, sent } : { received }
  }

  /** Closes everything here and, unless the router is gone (`routerGone`), the transports on the router. */
  close(routerGone = false): void {
    if (this.#closed) return
    this.#closed = true
    for (const producerId of [...this.#received.keys()]) this.#drop(producerId, false)
    for (const watched of this.#watched.values()) watched.consumer.close()
    this.#watched.clear()
    for (const track of this.#stream?.getTracks() ?? []) track.stop()
    this.#camera?.close()
    for (const track of this.#cameraStream?.getTracks() ?? []) track.stop()
    for (const transport of [this.#send, this.#recv]) {
      if (!transport) continue
      transport.close()
      // closing the send transport on the router removes the microphone's stage track at once
      // forgotten once the hub answered: a page that closes meanwhile leaves it to the next page
      if (routerGone) forgetTransport(transport.id)
      else void this.#close({ transportId: transport.id }).then(() => forgetTransport(transport.id))
    }
  }
}

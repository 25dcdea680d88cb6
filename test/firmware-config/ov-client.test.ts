import t from 'tap'
import {
  OV_DEFAULTS,
  ovAudio,
  renderOvClientConfig,
  type OvRenderInput,
} from '../../firmware-config/ov-client.ts'

const at = (x: number, y = 0, z = 0, rZ = 0) => ({ x, y, z, rX: 0, rY: 0, rZ })
const card = (name: string, inputs: number, isDefault = false) => ({
  name,
  driver: 'jack' as const,
  sampleRate: 48000,
  periodSize: 64,
  numPeriods: 2,
  numInputChannels: inputs,
  numOutputChannels: 2,
  isDefault,
})

function input(overrides: Partial<OvRenderInput> = {}): OvRenderInput {
  return {
    device: {
      id: 'd1',
      name: 'Box',
      desired: { soundCardName: 'hw:2', receiverJitter: 12, sendAudio: true },
      soundCards: [card('hw:1', 2, true), card('hw:2', 4)],
      tracks: [
        { id: 't1', soundCardName: 'hw:2', channel: 1, gain: 0.5, directivity: 'cardioid' },
        { id: 't0', soundCardName: 'hw:2', channel: 0, gain: 1, directivity: 'omni', name: 'Vocals' },
        { id: 'tx', soundCardName: 'hw:1', channel: 0, gain: 1, directivity: 'omni' },
      ],
    },
    stage: {
      id: 's1',
      width: 13,
      length: 25,
      height: 7.5,
      absorption: 0.6,
      damping: 0.7,
      reverbGain: 0.8,
      ambientSound: { render: true, url: 'https://example.org/room.wav', level: -20 },
      ovServer: { ipv4: '198.51.100.7', port: 5000, pin: 4242 },
    },
    self: {
      memberId: 'm1',
      seat: 3,
      label: 'Ann',
      volume: 1,
      muted: false,
      position: at(1, 2, 0, 90),
      tracks: [],
    },
    peers: [
      {
        memberId: 'm3',
        seat: 7,
        label: 'Cid',
        volume: 0.8,
        muted: false,
        position: at(-2),
        tracks: [{ channel: 0, gain: 1, directivity: 'omni' }],
      },
      { memberId: 'm2', seat: 1, label: 'Bob', volume: 1, muted: false, position: at(3), tracks: [] },
    ],
    memberMixes: new Map([['m3', { volume: 0.25, muted: true, position: at(5, 5) }]]),
    ...overrides,
  }
}

t.test(
  'audio uses the selected sound card; only its tracks become channels, ordered by channel, channel 0 included',
  async (t) => {
    const config = renderOvClientConfig(input())
    t.same(config.audiocfg, {
      driver: 'jack',
      device: 'hw:2',
      srate: 48000,
      periodsize: 64,
      numperiods: 2,
      priority: OV_DEFAULTS.priority,
    })
    t.same(
      config.rendersettings.channels.map((c) => [c.name, c.sourceport, c.gain, c.directivity]),
      [
        ['Vocals', 'system:capture_1', 1, 'omni'],
        ['ch2', 'system:capture_2', 0.5, 'cardioid'],
      ],
    )
  },
)

t.test('without a selected card the default card is used, else the first', async (t) => {
  const base = input()
  const noSelection = renderOvClientConfig({ ...base, device: { ...base.device, desired: {} } })
  t.equal(noSelection.audiocfg.device, 'hw:1')
  const noDefault = renderOvClientConfig({
    ...base,
    device: { ...base.device, desired: {}, soundCards: [card('usb', 1), card('pci', 1)] },
  })
  t.equal(noDefault.audiocfg.device, 'usb')
})

t.test(
  'render settings follow the seat, position and device settings, with ov defaults for what is unset',
  async (t) => {
    const { rendersettings } = renderOvClientConfig(input())
    t.equal(rendersettings.id, 3)
    t.equal(rendersettings.label, 'Ann')
    t.same(rendersettings.position, { x: 1, y: 2, z: 0 })
    t.same(rendersettings.orientation, { z: 90, y: 0, x: 0 })
    t.same(rendersettings.jitter, { send: OV_DEFAULTS.senderJitter, receive: 12 })
    t.equal(rendersettings.rectype, 'ortf')
    t.equal(rendersettings.sendlocal, true)
    t.equal(rendersettings.reverbgain, 0.8, 'the stage reverb gain when the device sets none')
    const off = renderOvClientConfig(
      input({ device: { ...input().device, desired: { sendAudio: false, receiverType: 'hrtf' } } }),
    )
    t.equal(off.rendersettings.sendlocal, false, 'sendAudio off stops sending')
    t.equal(off.rendersettings.rectype, 'hrtf')
  },
)

t.test('the room carries the relay, size, reverb and ambient sound of the stage', async (t) => {
  const { room } = renderOvClientConfig(input())
  t.same(room, {
    host: '198.51.100.7',
    port: 5000,
    pin: 4242,
    size: { x: 25, y: 13, z: 7.5 },
    reverb: { absorption: 0.6, damping: 0.7, gain: 0.8 },
    ambientsound: { render: true, url: 'https://example.org/room.wav', level: -20 },
  })
})

t.test(
  "other seated devices become roomdev entries by seat, with the user's own mix overrides applied",
  async (t) => {
    const { roomdev } = renderOvClientConfig(input())
    t.same(
      roomdev.map((d) => [d.id, d.label, d.gain, d.mute, d.position]),
      [
        [1, 'Bob', 1, false, { x: 3, y: 0, z: 0 }],
        [7, 'Cid', 0.25, true, { x: 5, y: 5, z: 0 }],
      ],
    )
    t.equal(roomdev[1]!.channels.length, 1)
  },
)

t.test('a device not on a stage gets no relay and no peers', async (t) => {
  const config = renderOvClientConfig(input({ stage: undefined, self: undefined, peers: [] }))
  t.equal(config.room.host, '')
  t.equal(config.rendersettings.id, -1)
  t.same(config.roomdev, [])
})

t.test('rendering is deterministic: the same state gives the same configuration', async (t) => {
  t.same(JSON.stringify(renderOvClientConfig(input())), JSON.stringify(renderOvClientConfig(input())))
})

t.test(
  'ovAudio says why a box has no audio, in the order a person fixes it, or where it comes from',
  async (t) => {
    const relay = { ipv4: '198.51.100.7', port: 5000, pin: 4242 }
    const ovStage = { name: 'Choir', audioType: 'ov' as const, ovServer: relay }
    t.match(ovAudio({ seated: false }), { state: 'no-stage', message: /not on a stage/ })
    t.match(ovAudio({ stage: { ...ovStage, audioType: 'mediasoup' }, seated: true }), {
      state: 'stage-not-ov',
      message: /stage "Choir" has audioType "mediasoup".*set it to "ov" \(stage.update\)/,
    })
    t.match(ovAudio({ stage: { name: 'Quiet', audioType: 'none' }, seated: false }), {
      state: 'stage-not-ov',
      message: /"none"/,
    })
    t.match(ovAudio({ stage: ovStage, seated: false }), {
      state: 'not-seated',
      message: /no seat in stage "Choir"/,
    })
    t.match(ovAudio({ stage: { name: 'Choir', audioType: 'ov' }, seated: true }), {
      state: 'no-router',
      message: /no ov router serves stage "Choir"/,
    })
    t.match(ovAudio({ stage: { ...ovStage, ovServer: { ipv4: '198.51.100.7' } }, seated: true }), {
      state: 'no-router',
    })
    t.same(ovAudio({ stage: ovStage, seated: true }), {
      state: 'ready',
      message: 'stage "Choir" through the ov relay 198.51.100.7:5000',
    })
    t.match(ovAudio({ stage: { ...ovStage, ovServer: { ipv6: '2001:db8::7', port: 5000 } }, seated: true }), {
      state: 'ready',
      message: /2001:db8::7/,
    })
    t.notMatch(
      JSON.stringify(ovAudio({ stage: ovStage, seated: true })),
      /4242/,
      'the relay PIN stays in room.pin',
    )
  },
)

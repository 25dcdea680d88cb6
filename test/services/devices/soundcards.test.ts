import t, { type Test } from 'tap'
import type { DeviceSettings, DeviceState, SoundCard, Track } from '../../../schemas/actions/device.ts'
import type { DeviceDoc } from '../../../services/collections.ts'
import {
  type ReceivedMessage,
  Requester,
  type TestHub,
  recordMessages,
  sleep,
  startTestHub,
  waitForMessage,
  waitUntil,
} from '../../helpers/hub.ts'
import {
  roomy,
  type Actor,
  actor,
  connectAs,
  connectDevice,
  ok,
  refused,
  parse,
  retainedOn,
} from '../../helpers/actors.ts'

/**
 * End-to-end tests of sound cards and tracks on a device (`soundcard.*`, `track.*` in docs/protocol/actions.md): real
 * MQTT.js clients over real sockets against a real hub. The owner (user token) and the device itself
 * (device token) may edit them; every change reaches both the owner's `users/{owner}/devices/{d}`
 * document and the device's `devices/{d}/config`. Channel 0 is a channel (the original ignored it
 * as falsy).
 */

interface CreatedDevice {
  device: DeviceState
  token: string
}

/** What a device reads, retained, on devices/{d}/config. */
interface DeviceConfig {
  deviceId: string
  kind: string
  name: string
  desired: DeviceSettings
  soundCards: SoundCard[]
  tracks: Track[]
  revision: string
}

const createDevice = (a: Actor, name = 'Living room box') =>
  ok<CreatedDevice>(a, 'device.create', { name, kind: 'ovbox' })

const docTopic = (owner: string, d: string) => `users/${owner}/devices/${d}`
const configTopic = (d: string) => `devices/${d}/config`

const stored = (th: TestHub, id: string) => th.hub.store.get<DeviceDoc>('devices', id)

/** A valid sound card; `over` changes any field. */
function card(name: string, over: Partial<SoundCard> = {}): SoundCard {
  return {
    name,
    driver: 'jack',
    sampleRate: 48000,
    periodSize: 96,
    numPeriods: 2,
    numInputChannels: 2,
    numOutputChannels: 2,
    ...over,
  }
}

/** Sound cards in name order, so comparisons do not depend on where a replaced card ends up. */
const byName = (cards: readonly SoundCard[] | undefined) =>
  [...(cards ?? [])].sort((a, b) => a.name.localeCompare(b.name))
/** Tracks in (card, channel) order. */
const byChannel = (tracks: readonly Track[] | undefined) =>
  [...(tracks ?? [])].sort((a, b) => a.soundCardName.localeCompare(b.soundCardName) || a.channel - b.channel)

/** Subscribes a device to its config and returns the retained configuration it gets. */
async function subscribeConfig(device: Actor): Promise<DeviceConfig> {
  const arrival = waitForMessage(device.client, (m) => m.topic === configTopic(device.id) && m.retain)
  await device.client.subscribeAsync(configTopic(device.id), { qos: 1 })
  return parse((await arrival).payload) as DeviceConfig
}

/** Subscribes the owner to the device document and returns the retained document. */
async function subscribeDocument(owner: Actor, d: string): Promise<DeviceState> {
  const arrival = waitForMessage(owner.client, (m) => m.topic === docTopic(owner.id, d) && m.retain)
  await owner.client.subscribeAsync(docTopic(owner.id, d), { qos: 1 })
  return parse((await arrival).payload) as DeviceState
}

/** The first recorded message on `topic` whose payload passes `check`, waiting for it to arrive. */
async function publishedWhere<T>(
  messages: readonly ReceivedMessage[],
  topic: string,
  what: string,
  check: (value: T) => boolean,
): Promise<T> {
  const find = () =>
    messages
      .filter((m) => m.topic === topic)
      .map((m) => parse(m.payload) as T)
      .find(check)
  await waitUntil(() => find() !== undefined, `${topic} ${what} arrives`)
  return find()!
}

/**
 * The owner watches the device document and the device watches its config; `after()` waits for both
 * at the stored version and returns them with the stored device.
 */
async function watch(t: Test, th: TestHub, owner: Actor, device: Actor) {
  const d = device.id
  await subscribeDocument(owner, d)
  await subscribeConfig(device)
  const ownerSees = recordMessages(owner.client)
  const deviceSees = recordMessages(device.client)
  t.teardown(() => {
    ownerSees.stop()
    deviceSees.stop()
  })
  return {
    async after() {
      const doc = (await stored(th, d))!
      const [ownerDoc, config] = await Promise.all([
        publishedWhere<DeviceState>(
          ownerSees.messages,
          docTopic(owner.id, d),
          `at version ${doc.version}`,
          (v) => v.version === doc.version,
        ),
        // the configuration has no version: it is current when it carries the stored cards and tracks
        publishedWhere<DeviceConfig>(
          deviceSees.messages,
          configTopic(d),
          'with the stored cards and tracks',
          (v) =>
            JSON.stringify([v.soundCards, v.tracks]) ===
            JSON.stringify([doc.soundCards ?? [], doc.tracks ?? []]),
        ),
      ])
      return { doc, ownerDoc, config }
    },
  }
}

type Seen = Awaited<ReturnType<Awaited<ReturnType<typeof watch>>['after']>>

/** Asserts that the store, the owner's document and the device's config all hold these cards and tracks. */
function holdsEverywhere(
  t: Test,
  seen: Seen,
  cards: readonly SoundCard[],
  tracks: readonly Track[],
  what: string,
): void {
  t.same(byName(seen.doc.soundCards), byName(cards), `${what}: the store holds the sound cards`)
  t.same(byChannel(seen.doc.tracks), byChannel(tracks), `${what}: the store holds the tracks`)
  t.same(byName(seen.ownerDoc.soundCards), byName(cards), `${what}: the owner’s document carries the cards`)
  t.same(
    byChannel(seen.ownerDoc.tracks),
    byChannel(tracks),
    `${what}: the owner’s document carries the tracks`,
  )
  t.same(byName(seen.config.soundCards), byName(cards), `${what}: the device’s config carries the cards`)
  t.same(byChannel(seen.config.tracks), byChannel(tracks), `${what}: the device’s config carries the tracks`)
}

/** Alice, her connected box (device token), and their watches. */
async function setup(t: Test) {
  const th = await startTestHub(t, roomy)
  const alice = await actor(th, 'Alice')
  const { device, token } = await createDevice(alice)
  const box = await connectDevice(th, device.id, token)
  return { th, alice, box, token, d: device.id }
}

t.test(
  'the device itself and its owner can set sound cards; setting an existing name replaces that card; the owner’s document and the device’s config carry soundCards and tracks after every change',
  async (t) => {
    const { th, alice, box, d } = await setup(t)
    const seen = await watch(t, th, alice, box)

    const fromDevice = card('hw:1', { label: 'USB Audio CODEC', isDefault: true, softwareLatency: 4 })
    const first = await ok<DeviceState>(box, 'soundcard.set', { deviceId: d, soundCard: fromDevice })
    t.same(first.soundCards, [fromDevice], 'the device set its own sound card; the result carries it')
    t.same(first.tracks, [], 'with no tracks yet')
    holdsEverywhere(t, await seen.after(), [fromDevice], [], 'after the device’s set')

    const fromOwner = card('Focusrite', { driver: 'alsa', sampleRates: [44100, 48000], numInputChannels: 8 })
    const second = await ok<DeviceState>(alice, 'soundcard.set', { deviceId: d, soundCard: fromOwner })
    t.same(byName(second.soundCards), byName([fromDevice, fromOwner]), 'the owner added a second card')
    t.ok(second.version > first.version, 'the version went up')
    holdsEverywhere(t, await seen.after(), [fromDevice, fromOwner], [], 'after the owner’s set')

    const track = await ok<Track>(box, 'track.add', { deviceId: d, soundCardName: 'hw:1', channel: 1 })
    holdsEverywhere(t, await seen.after(), [fromDevice, fromOwner], [track], 'after a track.add')

    const replacement = card('hw:1', { sampleRate: 44100, periodSize: 128, numInputChannels: 4 })
    const replaced = await ok<DeviceState>(alice, 'soundcard.set', { deviceId: d, soundCard: replacement })
    t.equal(replaced.soundCards.length, 2, 'a set with an existing name adds no card')
    t.same(
      replaced.soundCards.filter((c) => c.name === 'hw:1'),
      [replacement],
      'the card of that name is replaced as a whole (label, isDefault and softwareLatency are gone)',
    )
    t.same(replaced.tracks, [track], 'replacing a card keeps its tracks')
    holdsEverywhere(t, await seen.after(), [replacement, fromOwner], [track], 'after the replacement')

    const again = await ok<DeviceState>(box, 'soundcard.set', { deviceId: d, soundCard: fromDevice })
    t.same(
      again.soundCards.filter((c) => c.name === 'hw:1'),
      [fromDevice],
      'the device replaces the card its owner replaced',
    )
    holdsEverywhere(t, await seen.after(), [fromDevice, fromOwner], [track], 'after the device’s replacement')

    const removed = await ok<DeviceState>(alice, 'soundcard.remove', { deviceId: d, name: 'Focusrite' })
    t.same(removed.soundCards, [fromDevice], 'the owner removed a card')
    holdsEverywhere(t, await seen.after(), [fromDevice], [track], 'after soundcard.remove')
    t.equal((await stored(th, d))?.version, removed.version, 'the returned document has the stored version')
  },
)

t.test(
  'track.add: channel 0 and channel numInputChannels-1 are valid; channel numInputChannels and beyond → invalid_request naming the range; the same card and channel twice → conflict; an unknown sound card → not_found; defaults gain 1 and directivity omni',
  async (t) => {
    const { th, alice, box, d } = await setup(t)
    const seen = await watch(t, th, alice, box)
    const stereo = card('hw:1', { numInputChannels: 2 })
    const other = card('hw:2', { numInputChannels: 1 })
    const mute = card('outputs-only', { numInputChannels: 0 })
    for (const soundCard of [stereo, other, mute])
      await ok(alice, 'soundcard.set', { deviceId: d, soundCard })

    const zero = await ok<Track>(alice, 'track.add', { deviceId: d, soundCardName: 'hw:1', channel: 0 })
    t.equal(zero.channel, 0, 'the owner added channel 0, and the track says channel 0')
    t.equal(zero.soundCardName, 'hw:1', 'on the named card')
    t.equal(zero.gain, 1, 'default gain 1')
    t.equal(zero.directivity, 'omni', 'default directivity omni')
    t.notOk('name' in zero, 'no name unless one is given')
    t.match(zero.id, /^[A-Za-z0-9_-]+$/, 'the track has an id')
    let after = await seen.after()
    holdsEverywhere(t, after, [stereo, other, mute], [zero], 'after adding channel 0')
    t.equal(after.config.tracks[0]?.channel, 0, 'the device reads channel 0 (not a missing channel)')

    const last = await ok<Track>(box, 'track.add', {
      deviceId: d,
      soundCardName: 'hw:1',
      channel: 1,
      name: 'Vocals',
      gain: 0.5,
      directivity: 'cardioid',
    })
    t.match(
      last,
      { soundCardName: 'hw:1', channel: 1, name: 'Vocals', gain: 0.5, directivity: 'cardioid' },
      'the device added channel numInputChannels-1 with its name, gain and directivity',
    )
    t.not(last.id, zero.id, 'every track has its own id')

    const otherZero = await ok<Track>(box, 'track.add', {
      deviceId: d,
      soundCardName: 'hw:2',
      channel: 0,
      gain: 0,
    })
    t.equal(otherZero.channel, 0, 'channel 0 of another card is another track')
    t.equal(otherZero.gain, 0, 'gain 0 is kept, not replaced by the default')
    after = await seen.after()
    holdsEverywhere(t, after, [stereo, other, mute], [zero, last, otherZero], 'after three adds')
    const versionBefore = after.doc.version

    for (const channel of [2, 3, 255]) {
      const error = await refused(alice, 'track.add', { deviceId: d, soundCardName: 'hw:1', channel })
      t.equal(error.code, 'invalid_request', `channel ${channel} of a 2-input card: invalid_request`)
      t.match(error.message, /0-1\b/, `the message names the range 0-1 (${error.message})`)
      t.match(error.message, new RegExp(`\\b${channel}\\b`), 'and the refused channel')
    }
    const none = await refused(box, 'track.add', { deviceId: d, soundCardName: 'outputs-only', channel: 0 })
    t.equal(none.code, 'invalid_request', 'channel 0 of a card without inputs: invalid_request')
    t.match(none.message, /no input channels/, `the message says it has none (${none.message})`)

    const twice = await refused(box, 'track.add', { deviceId: d, soundCardName: 'hw:1', channel: 0 })
    t.equal(twice.code, 'conflict', 'channel 0 of hw:1 a second time: conflict')
    t.equal(
      (await refused(alice, 'track.add', { deviceId: d, soundCardName: 'hw:1', channel: 1, name: 'Again' }))
        .code,
      'conflict',
      'the last channel a second time, even with another name: conflict',
    )
    const unknown = await refused(alice, 'track.add', { deviceId: d, soundCardName: 'hw:9', channel: 0 })
    t.equal(unknown.code, 'not_found', 'an unknown sound card: not_found')
    t.match(unknown.message, /hw:9/, 'the message names the card')

    const now = await stored(th, d)
    t.equal(now?.version, versionBefore, 'none of the refusals changed the device')
    t.same(byChannel(now?.tracks), byChannel([zero, last, otherZero]), 'the tracks are as before')
  },
)

t.test(
  'track.update patches name, gain and directivity and nothing else (unknown fields → invalid_request); track.remove removes the track (unknown → not_found)',
  async (t) => {
    const { th, alice, box, d } = await setup(t)
    const seen = await watch(t, th, alice, box)
    const hw1 = card('hw:1')
    await ok(box, 'soundcard.set', { deviceId: d, soundCard: hw1 })
    const zero = await ok<Track>(box, 'track.add', { deviceId: d, soundCardName: 'hw:1', channel: 0 })
    const one = await ok<Track>(box, 'track.add', { deviceId: d, soundCardName: 'hw:1', channel: 1 })

    const renamed = await ok<Track>(alice, 'track.update', {
      deviceId: d,
      trackId: zero.id,
      patch: { name: 'Guitar' },
    })
    t.same(renamed, { ...zero, name: 'Guitar' }, 'the owner renamed channel 0; nothing else changed')
    holdsEverywhere(t, await seen.after(), [hw1], [renamed, one], 'after a rename')

    const turned = await ok<Track>(box, 'track.update', {
      deviceId: d,
      trackId: zero.id,
      patch: { gain: 0, directivity: 'cardioid' },
    })
    t.same(
      turned,
      { ...zero, name: 'Guitar', gain: 0, directivity: 'cardioid' },
      'the device set gain 0 (kept, not treated as missing) and cardioid; the name stays',
    )
    t.equal(turned.channel, 0, 'the track stays on channel 0')
    holdsEverywhere(t, await seen.after(), [hw1], [turned, one], 'after a gain and directivity change')

    const max = await ok<Track>(alice, 'track.update', {
      deviceId: d,
      trackId: one.id,
      patch: { name: 'Bass', gain: 10, directivity: 'omni' },
    })
    t.same(max, { ...one, name: 'Bass', gain: 10, directivity: 'omni' }, 'all three at once, gain 10')
    const after = await seen.after()
    holdsEverywhere(t, after, [hw1], [turned, max], 'after patching all three')

    const versionBefore = after.doc.version
    const invalid: [string, Record<string, unknown>][] = [
      ['an empty patch', { trackId: one.id, patch: {} }],
      ['a channel in the patch', { trackId: one.id, patch: { channel: 0 } }],
      ['a sound card in the patch', { trackId: one.id, patch: { soundCardName: 'hw:2' } }],
      ['an id in the patch', { trackId: one.id, patch: { id: 'other' } }],
      ['an unknown field beside a valid one', { trackId: one.id, patch: { gain: 1, volume: 3 } }],
      ['gain above 10', { trackId: one.id, patch: { gain: 10.5 } }],
      ['negative gain', { trackId: one.id, patch: { gain: -1 } }],
      ['an unknown directivity', { trackId: one.id, patch: { directivity: 'figure8' } }],
      ['an empty name', { trackId: one.id, patch: { name: '' } }],
      ['no patch', { trackId: one.id }],
      ['an unknown top-level field', { trackId: one.id, patch: { gain: 1 }, channel: 0 }],
    ]
    for (const [what, params] of invalid) {
      t.equal(
        (await refused(alice, 'track.update', { deviceId: d, ...params })).code,
        'invalid_request',
        `${what}: invalid_request`,
      )
    }
    t.equal((await stored(th, d))?.version, versionBefore, 'the refused patches changed nothing')

    const missing = await refused(alice, 'track.update', {
      deviceId: d,
      trackId: 'no-such-track',
      patch: { gain: 2 },
    })
    t.equal(missing.code, 'not_found', 'track.update of an unknown track: not_found')

    t.same(await ok(alice, 'track.remove', { deviceId: d, trackId: zero.id }), {}, 'track.remove answers {}')
    holdsEverywhere(t, await seen.after(), [hw1], [max], 'after removing channel 0')
    t.equal(
      (await refused(box, 'track.remove', { deviceId: d, trackId: zero.id })).code,
      'not_found',
      'removing it again: not_found',
    )
    t.equal(
      (await refused(box, 'track.update', { deviceId: d, trackId: zero.id, patch: { gain: 1 } })).code,
      'not_found',
      'updating the removed track: not_found',
    )
    t.equal(
      (await refused(box, 'track.remove', { deviceId: d, trackId: 'never-existed' })).code,
      'not_found',
      'removing an unknown track: not_found',
    )
    const readded = await ok<Track>(box, 'track.add', { deviceId: d, soundCardName: 'hw:1', channel: 0 })
    t.not(readded.id, zero.id, 'the freed channel 0 can be added again, as a new track')
    t.same(await ok(box, 'track.remove', { deviceId: d, trackId: max.id }), {}, 'the device removes a track')
    holdsEverywhere(t, await seen.after(), [hw1], [readded], 'after the device’s remove')
  },
)

t.test(
  'soundcard.remove removes the card and every track on it, leaving other cards and their tracks; an unknown name → not_found; a stale version → conflict for soundcard.set and soundcard.remove',
  async (t) => {
    const { th, alice, box, d } = await setup(t)
    const seen = await watch(t, th, alice, box)
    const hw1 = card('hw:1', { numInputChannels: 4 })
    const hw2 = card('hw:2', { numInputChannels: 2 })
    await ok(alice, 'soundcard.set', { deviceId: d, soundCard: hw1 })
    await ok(box, 'soundcard.set', { deviceId: d, soundCard: hw2 })
    const onHw1: Track[] = []
    for (const channel of [0, 1, 3]) {
      onHw1.push(await ok<Track>(box, 'track.add', { deviceId: d, soundCardName: 'hw:1', channel }))
    }
    const onHw2 = [
      await ok<Track>(alice, 'track.add', { deviceId: d, soundCardName: 'hw:2', channel: 0 }),
      await ok<Track>(alice, 'track.add', { deviceId: d, soundCardName: 'hw:2', channel: 1 }),
    ]
    const before = await seen.after()
    holdsEverywhere(t, before, [hw1, hw2], [...onHw1, ...onHw2], 'before the removal')

    const unknown = await refused(alice, 'soundcard.remove', { deviceId: d, name: 'hw:9' })
    t.equal(unknown.code, 'not_found', 'an unknown card name: not_found')
    t.match(unknown.message, /hw:9/, 'the message names the card')
    t.equal(
      (await refused(box, 'soundcard.remove', { deviceId: d, name: 'HW:1' })).code,
      'not_found',
      'names are exact (HW:1 is not hw:1): not_found',
    )

    const stale = before.doc.version - 1
    const staleSet = await refused(alice, 'soundcard.set', {
      deviceId: d,
      soundCard: card('hw:3'),
      version: stale,
    })
    t.equal(staleSet.code, 'conflict', 'soundcard.set with a stale version: conflict')
    t.equal(
      (await refused(box, 'soundcard.set', { deviceId: d, soundCard: card('hw:3'), version: stale + 2 }))
        .code,
      'conflict',
      'with a future version: conflict',
    )
    t.equal(
      (await refused(alice, 'soundcard.remove', { deviceId: d, name: 'hw:1', version: stale })).code,
      'conflict',
      'soundcard.remove with a stale version: conflict',
    )
    t.equal(
      (await refused(box, 'soundcard.remove', { deviceId: d, name: 'hw:1', version: stale })).code,
      'conflict',
      'also for the device itself',
    )
    const unchanged = await stored(th, d)
    t.equal(unchanged?.version, before.doc.version, 'the refusals changed nothing')
    t.same(byName(unchanged?.soundCards), byName([hw1, hw2]), 'both cards are still there')

    const removed = await ok<DeviceState>(alice, 'soundcard.remove', {
      deviceId: d,
      name: 'hw:1',
      version: before.doc.version,
    })
    t.same(removed.soundCards, [hw2], 'with the current version the card is removed')
    t.same(byChannel(removed.tracks), byChannel(onHw2), 'with all three of its tracks; hw:2’s tracks stay')
    holdsEverywhere(t, await seen.after(), [hw2], onHw2, 'after removing hw:1')
    t.equal(
      (await refused(alice, 'track.update', { deviceId: d, trackId: onHw1[0]!.id, patch: { gain: 2 } })).code,
      'not_found',
      'a track of the removed card is gone',
    )
    t.equal(
      (await refused(alice, 'track.add', { deviceId: d, soundCardName: 'hw:1', channel: 0 })).code,
      'not_found',
      'and the removed card takes no new tracks',
    )

    const set = await ok<DeviceState>(box, 'soundcard.set', {
      deviceId: d,
      soundCard: hw1,
      version: removed.version,
    })
    t.same(byName(set.soundCards), byName([hw1, hw2]), 'soundcard.set with the current version succeeds')
    t.same(byChannel(set.tracks), byChannel(onHw2), 'a card set again does not bring its old tracks back')
    holdsEverywhere(t, await seen.after(), [hw1, hw2], onHw2, 'after setting hw:1 again')

    await ok(box, 'soundcard.remove', { deviceId: d, name: 'hw:2' })
    holdsEverywhere(t, await seen.after(), [hw1], [], 'the device removed hw:2 and its tracks')
  },
)

t.test(
  'another user and another device of the same owner cannot set or remove sound cards or add, update or remove tracks on this device (not_found); nothing changes in the store or the retained documents',
  async (t) => {
    const { th, alice, box, d } = await setup(t)
    const bob = await actor(th, 'Bob')
    const bobsBox = await createDevice(bob, 'Bob’s box')
    const bobsDevice = await connectDevice(th, bobsBox.device.id, bobsBox.token)
    const spare = await createDevice(alice, 'Spare box')
    const spareBox = await connectDevice(th, spare.device.id, spare.token)

    const hw1 = card('hw:1')
    await ok(box, 'soundcard.set', { deviceId: d, soundCard: hw1 })
    const track = await ok<Track>(alice, 'track.add', { deviceId: d, soundCardName: 'hw:1', channel: 0 })
    await subscribeConfig(box)
    const before = (await stored(th, d))!
    const spareBefore = (await stored(th, spare.device.id))!
    const boxSees = recordMessages(box.client)

    const attempts: [string, Record<string, unknown>][] = [
      ['soundcard.set', { deviceId: d, soundCard: card('hw:1', { numInputChannels: 16 }) }],
      ['soundcard.set', { deviceId: d, soundCard: card('intruder') }],
      ['soundcard.remove', { deviceId: d, name: 'hw:1' }],
      ['track.add', { deviceId: d, soundCardName: 'hw:1', channel: 1 }],
      ['track.update', { deviceId: d, trackId: track.id, patch: { gain: 5 } }],
      ['track.remove', { deviceId: d, trackId: track.id }],
    ]
    const outsiders: [string, Actor][] = [
      ['another user', bob],
      ['another user’s device', bobsDevice],
      ['another device of the same owner, with its own device token', spareBox],
    ]
    for (const [who, outsider] of outsiders) {
      for (const [action, params] of attempts) {
        const error = await refused(outsider, action, params)
        t.equal(error.code, 'not_found', `${who}: ${action} → not_found`)
        t.notOk(error.message.includes('hw:1'), 'and the message tells nothing about the device’s cards')
      }
    }
    const withVersion = await refused(bob, 'soundcard.set', {
      deviceId: d,
      soundCard: card('x'),
      version: before.version,
    })
    t.equal(withVersion.code, 'not_found', 'even with the right version the outsider learns nothing')

    await sleep(200)
    boxSees.stop()
    const after = await stored(th, d)
    t.same(after, before, 'the device is stored exactly as before, version included')
    t.same(await stored(th, spare.device.id), spareBefore, 'the other device did not change either')
    t.same(
      boxSees.messages.filter((m) => m.topic === configTopic(d)),
      [],
      'the device received no new configuration',
    )
    const retained = (await retainedOn(alice.client, docTopic(alice.id, d))) as DeviceState
    t.same(retained.soundCards, [hw1], 'the retained document has the card unchanged')
    t.same(retained.tracks, [track], 'and the track unchanged')
    t.equal(retained.version, before.version, 'at the stored version')
    const config = (await retainedOn(alice.client, configTopic(d))) as DeviceConfig
    t.same(
      { soundCards: config.soundCards, tracks: config.tracks },
      { soundCards: [hw1], tracks: [track] },
      'the retained config is unchanged',
    )
  },
)

t.test(
  'schema violations (driver pulse, sampleRate 100, negative channel, extra fields, missing fields) → invalid_request and change nothing',
  async (t) => {
    const { th, alice, box, d } = await setup(t)
    const hw1 = card('hw:1')
    await ok(box, 'soundcard.set', { deviceId: d, soundCard: hw1 })
    const track = await ok<Track>(box, 'track.add', { deviceId: d, soundCardName: 'hw:1', channel: 0 })
    const before = (await stored(th, d))!
    const { driver: _driver, ...withoutDriver } = hw1

    const invalid: [string, string, Record<string, unknown>][] = [
      ['soundcard.set', 'driver pulse', { soundCard: { ...hw1, driver: 'pulse' } }],
      ['soundcard.set', 'sampleRate 100', { soundCard: { ...hw1, sampleRate: 100 } }],
      ['soundcard.set', 'sampleRate 48000.5', { soundCard: { ...hw1, sampleRate: 48000.5 } }],
      ['soundcard.set', 'sampleRates with 100', { soundCard: { ...hw1, sampleRates: [48000, 100] } }],
      ['soundcard.set', 'periodSize 0', { soundCard: { ...hw1, periodSize: 0 } }],
      ['soundcard.set', 'numPeriods 0', { soundCard: { ...hw1, numPeriods: 0 } }],
      ['soundcard.set', 'numInputChannels -1', { soundCard: { ...hw1, numInputChannels: -1 } }],
      ['soundcard.set', 'numInputChannels 257', { soundCard: { ...hw1, numInputChannels: 257 } }],
      ['soundcard.set', 'negative softwareLatency', { soundCard: { ...hw1, softwareLatency: -1 } }],
      ['soundcard.set', 'an extra card field', { soundCard: { ...hw1, latency: 5 } }],
      ['soundcard.set', 'a deviceId inside the card', { soundCard: { ...hw1, deviceId: d } }],
      ['soundcard.set', 'an extra top-level field', { soundCard: hw1, owner: 'someone' }],
      ['soundcard.set', 'no driver', { soundCard: withoutDriver }],
      ['soundcard.set', 'an empty name', { soundCard: { ...hw1, name: '' } }],
      ['soundcard.set', 'a 101-character name', { soundCard: { ...hw1, name: 'x'.repeat(101) } }],
      ['soundcard.set', 'no sound card', {}],
      ['soundcard.set', 'a string version', { soundCard: hw1, version: String(before.version) }],
      ['soundcard.remove', 'an extra field', { name: 'hw:1', tracks: true }],
      ['soundcard.remove', 'no name', {}],
      ['track.add', 'channel -1', { soundCardName: 'hw:1', channel: -1 }],
      ['track.add', 'channel 1.5', { soundCardName: 'hw:1', channel: 1.5 }],
      ['track.add', 'channel "1"', { soundCardName: 'hw:1', channel: '1' }],
      ['track.add', 'channel null', { soundCardName: 'hw:1', channel: null }],
      ['track.add', 'channel 256', { soundCardName: 'hw:1', channel: 256 }],
      ['track.add', 'no channel', { soundCardName: 'hw:1' }],
      ['track.add', 'no sound card', { channel: 1 }],
      ['track.add', 'gain above 10', { soundCardName: 'hw:1', channel: 1, gain: 11 }],
      ['track.add', 'an unknown directivity', { soundCardName: 'hw:1', channel: 1, directivity: 'figure8' }],
      ['track.add', 'an extra field', { soundCardName: 'hw:1', channel: 1, volume: 1 }],
      ['track.add', 'an id of its own', { soundCardName: 'hw:1', channel: 1, id: 'mine' }],
      ['track.update', 'an extra field', { trackId: track.id, patch: { gain: 2 }, extra: 1 }],
      ['track.remove', 'an extra field', { trackId: track.id, soundCardName: 'hw:1' }],
      ['track.remove', 'no track id', {}],
    ]
    for (const [action, what, params] of invalid) {
      for (const [who, a] of [
        ['owner', alice],
        ['device', box],
      ] as const) {
        t.equal(
          (await refused(a, action, { deviceId: d, ...params })).code,
          'invalid_request',
          `${action}, ${what} (${who}): invalid_request`,
        )
      }
    }
    t.equal(
      (await refused(alice, 'track.add', { soundCardName: 'hw:1', channel: 1 })).code,
      'invalid_request',
      'track.add without deviceId: invalid_request',
    )
    t.same(await stored(th, d), before, 'the device is stored exactly as before')
  },
)

t.test(
  'a device that was offline while its owner changed its tracks gets the full current configuration, with the tracks, retained when it reconnects',
  async (t) => {
    const { th, alice, box, token, d } = await setup(t)
    const hw1 = card('hw:1', { numInputChannels: 4 })
    await ok(box, 'soundcard.set', { deviceId: d, soundCard: hw1 })
    const mine = await ok<Track>(box, 'track.add', { deviceId: d, soundCardName: 'hw:1', channel: 3 })
    await subscribeConfig(box)
    await box.client.endAsync()

    const zero = await ok<Track>(alice, 'track.add', {
      deviceId: d,
      soundCardName: 'hw:1',
      channel: 0,
      name: 'Vocals',
    })
    const hw2 = card('hw:2', { driver: 'alsa' })
    await ok(alice, 'soundcard.set', { deviceId: d, soundCard: hw2 })
    const updated = await ok<Track>(alice, 'track.update', {
      deviceId: d,
      trackId: zero.id,
      patch: { gain: 2.5, directivity: 'cardioid' },
    })
    await ok(alice, 'track.remove', { deviceId: d, trackId: mine.id })
    const now = (await stored(th, d))!

    const again = await connectDevice(th, d, token)
    const seen = recordMessages(again.client)
    const config = await subscribeConfig(again)
    t.same(byName(config.soundCards), byName([hw1, hw2]), 'the retained config has both sound cards')
    t.same(
      config.tracks,
      [updated],
      'and exactly the current tracks: channel 0 as updated, channel 3 removed',
    )
    t.match(config.tracks[0], { channel: 0, name: 'Vocals', gain: 2.5, directivity: 'cardioid' }, 'channel 0')
    t.same(
      { soundCards: byName(config.soundCards), tracks: byChannel(config.tracks) },
      { soundCards: byName(now.soundCards), tracks: byChannel(now.tracks) },
      'it is what the store holds',
    )
    await sleep(200)
    seen.stop()
    t.equal(
      seen.messages.filter((m) => m.topic === configTopic(d) && m.retain).length,
      1,
      'one retained message: the current configuration, not a replay of changes',
    )

    const gets = waitForMessage(again.client, configTopic(d))
    await ok(alice, 'track.update', { deviceId: d, trackId: zero.id, patch: { gain: 1 } })
    const live = parse((await gets).payload) as DeviceConfig
    t.equal(live.tracks[0]?.gain, 1, 'the reconnected device receives the next change live')
  },
)

t.test(
  'sound cards and tracks survive a restart: stored, retained for the owner and the device, and still enforced (channel 0 is still taken)',
  async (t) => {
    const { th, alice, box, token, d } = await setup(t)
    const hw1 = card('hw:1', { label: 'USB', numInputChannels: 2 })
    const hw2 = card('hw:2', { driver: 'asio', sampleRate: 96000, numInputChannels: 1 })
    await ok(box, 'soundcard.set', { deviceId: d, soundCard: hw1 })
    await ok(alice, 'soundcard.set', { deviceId: d, soundCard: hw2 })
    const zero = await ok<Track>(alice, 'track.add', {
      deviceId: d,
      soundCardName: 'hw:1',
      channel: 0,
      gain: 0.75,
    })
    const one = await ok<Track>(box, 'track.add', {
      deviceId: d,
      soundCardName: 'hw:1',
      channel: 1,
      directivity: 'cardioid',
    })
    const other = await ok<Track>(box, 'track.add', { deviceId: d, soundCardName: 'hw:2', channel: 0 })
    const before = (await stored(th, d))!

    await th.restart()

    const after = (await stored(th, d))!
    t.same(byName(after.soundCards), byName([hw1, hw2]), 'the store still has both cards')
    t.same(byChannel(after.tracks), byChannel([zero, one, other]), 'and all three tracks')
    t.equal(after.version, before.version, 'at the same version')

    const aliceAgain = await connectAs(th, alice.id, 'Alice')
    const doc = (await retainedOn(aliceAgain.client, docTopic(alice.id, d))) as DeviceState
    t.same(byName(doc.soundCards), byName([hw1, hw2]), 'the owner reads the cards retained after the restart')
    t.same(byChannel(doc.tracks), byChannel([zero, one, other]), 'and the tracks')

    const boxAgain = await connectDevice(th, d, token)
    const config = await subscribeConfig(boxAgain)
    t.same(byName(config.soundCards), byName([hw1, hw2]), 'the device reads its cards retained')
    t.same(byChannel(config.tracks), byChannel([zero, one, other]), 'and its tracks, channel 0 included')

    // a fresh request id: the hub remembers the device's earlier request ids (retries: docs/protocol/README.md#requests-and-responses)
    const taken = await boxAgain.req.request(
      'track.add',
      { deviceId: d, soundCardName: 'hw:1', channel: 0 },
      'after-restart-1',
    )
    t.equal(taken.error?.code, 'conflict', 'channel 0 of hw:1 is still taken after the restart')
    const gets = waitForMessage(boxAgain.client, configTopic(d))
    const patched = await ok<Track>(aliceAgain, 'track.update', {
      deviceId: d,
      trackId: zero.id,
      patch: { name: 'Kick' },
    })
    t.same(patched, { ...zero, name: 'Kick' }, 'a track from before the restart can be updated by id')
    const live = parse((await gets).payload) as DeviceConfig
    t.same(
      byChannel(live.tracks),
      byChannel([patched, one, other]),
      'and the device receives the change after the restart',
    )
    t.ok((await stored(th, d))!.version > before.version, 'versions continue after the restart')
  },
)

t.test(
  'concurrent track.add from the owner and the device on different channels loses none; on the same channel exactly one wins',
  async (t) => {
    const { th, alice, box, d } = await setup(t)
    await ok(alice, 'soundcard.set', { deviceId: d, soundCard: card('hw:1', { numInputChannels: 8 }) })

    const adds = await Promise.all(
      [0, 1, 2, 3, 4, 5, 6, 7].map((channel) =>
        (channel % 2 === 0 ? alice : box).req.request('track.add', {
          deviceId: d,
          soundCardName: 'hw:1',
          channel,
        }),
      ),
    )
    t.same(
      adds.map((r) => r.ok),
      [true, true, true, true, true, true, true, true],
      'all eight concurrent adds on different channels succeed',
    )
    const channels = ((await stored(th, d))?.tracks ?? []).map((tr) => tr.channel).sort((a, b) => a - b)
    t.same(channels, [0, 1, 2, 3, 4, 5, 6, 7], 'the store holds all eight, none lost to a race')

    await ok(alice, 'soundcard.set', { deviceId: d, soundCard: card('hw:2') })
    const same = await Promise.all(
      [alice, box, alice, box].map((a) =>
        a.req.request('track.add', { deviceId: d, soundCardName: 'hw:2', channel: 0 }),
      ),
    )
    t.equal(same.filter((r) => r.ok).length, 1, 'four concurrent adds of one channel: exactly one succeeds')
    t.same(
      [...new Set(same.filter((r) => !r.ok).map((r) => r.error!.code))],
      ['conflict'],
      'the others get conflict',
    )
    t.equal(
      ((await stored(th, d))?.tracks ?? []).filter((tr) => tr.soundCardName === 'hw:2').length,
      1,
      'one track on hw:2 is stored',
    )
  },
)

t.test(
  'replacing a sound card with one of fewer inputs removes the tracks on channels it no longer has',
  async (t) => {
    const th = await startTestHub(t)
    const user = await th.hub.users.createUser({ name: 'Shrink' })
    const owner = new Requester(
      await th.connect({ clientId: 'shrink-app', token: th.token({ sub: user.id }) }),
    )
    const { device } = (await owner.request('device.create', { name: 'Box', kind: 'ovbox' })).result as {
      device: { id: string }
    }
    const card = {
      name: 'hw:1',
      driver: 'alsa',
      sampleRate: 48000,
      periodSize: 96,
      numPeriods: 2,
      numOutputChannels: 2,
    }
    await owner.request('soundcard.set', { deviceId: device.id, soundCard: { ...card, numInputChannels: 4 } })
    for (const channel of [0, 1, 3])
      await owner.request('track.add', { deviceId: device.id, soundCardName: 'hw:1', channel })
    const shrunk = await owner.request('soundcard.set', {
      deviceId: device.id,
      soundCard: { ...card, numInputChannels: 2 },
    })
    t.same(
      (shrunk.result as { tracks: { channel: number }[] }).tracks.map((track) => track.channel).sort(),
      [0, 1],
    )
  },
)

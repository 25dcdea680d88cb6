import t from 'tap'
import type { DeviceConfig } from '../../../schemas/firmware.ts'
import type { DeviceState } from '../../../schemas/actions/device.ts'
import type { DeviceDoc } from '../../../services/collections.ts'
import {
  type ReceivedMessage,
  type TestHub,
  connackCode,
  connectionClosed,
  recordMessages,
  sleep,
  startTestHub,
  subackCodes,
  waitForMessage,
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
  operatorSees,
} from '../../helpers/actors.ts'

/**
 * End-to-end tests of the device registry (docs/protocol/README.md#authentication, docs/protocol/topics.md): device.create, device.token,
 * device.remove and device.update, through real MQTT.js clients against a real hub. Presence
 * (online, lastSeen, devices/{d}/presence handling) is tested elsewhere: these tests only compare the
 * fields the registry owns, so they hold whatever presence does to `online` and `lastSeen`.
 */

interface CreatedDevice {
  device: DeviceState
  token: string
  expiresAt: string
}

interface RotatedToken {
  token: string
  expiresAt: string
  generation: number
}

/** What a device reads, retained, on devices/{d}/config. */

/** The CONNACK code for a connection attempt with this client id and token (0 = accepted). */
const connack = (th: TestHub, clientId: string, token: string) =>
  connackCode(th.mqttUrl, { clientId, username: 'token', password: token })

const createDevice = (a: Actor, name = 'Living room box', kind = 'ovbox') =>
  ok<CreatedDevice>(a, 'device.create', { name, kind })

const docTopic = (owner: string, d: string) => `users/${owner}/devices/${d}`
const configTopic = (d: string) => `devices/${d}/config`
const presenceTopic = (d: string) => `devices/${d}/presence`

const stored = (th: TestHub, id: string) => th.hub.store.get<DeviceDoc>('devices', id)

/** The fields of a device the registry owns (presence owns online and lastSeen, and bumps version). */
function registration(doc: DeviceState | DeviceDoc | null | undefined) {
  if (!doc) return doc
  const { id, owner, kind, name, desired, reported } = doc
  return { id, owner, kind, name, desired, reported }
}

/** Subscribes a device to its config and returns the retained configuration it gets. */
async function subscribeConfig(device: Actor): Promise<DeviceConfig> {
  const arrival = waitForMessage(device.client, (m) => m.topic === configTopic(device.id) && m.retain)
  await device.client.subscribeAsync(configTopic(device.id), { qos: 1 })
  return parse((await arrival).payload) as DeviceConfig
}

t.test(
  'device.create returns the device document and a device token once; the device connects as itself and reads its retained config; the owner reads the retained document',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    const before = Date.now()

    const created = await createDevice(alice, 'Living room box', 'ovbox')
    const { device, token } = created
    t.match(device.id, /^[A-Za-z0-9_-]{1,64}$/, 'the device id is a valid client id')
    t.match(
      device,
      { owner: alice.id, kind: 'ovbox', name: 'Living room box', online: false },
      'the document names the owner, kind and name; a new device is offline',
    )
    t.same(device.desired, {}, 'no desired settings yet')
    t.same(device.reported, {}, 'nothing reported yet')
    t.type(device.version, 'number', 'the document is versioned')
    t.notOk('tokenVersion' in device || 'createdAt' in device, 'no bookkeeping in the document')

    const claims = th.hub.tokens.verify(token)
    t.match(
      claims,
      { role: 'device', id: device.id, owner: alice.id, ver: 1 },
      'the token is a first-generation device token for this device and owner',
    )
    t.equal(claims.exp * 1000, Date.parse(created.expiresAt), 'expiresAt is the token expiry')
    t.ok(Date.parse(created.expiresAt) > before, 'the token is not expired')

    const doc = await stored(th, device.id)
    t.same(registration(doc), registration(device), 'the store holds the device as returned')
    t.equal(doc?.tokenVersion, 1, 'stored token generation 1')
    t.notOk(JSON.stringify(doc).includes(token), 'the store does not keep the token in the device')

    const retainedDoc = await retainedOn(alice.client, docTopic(alice.id, device.id))
    t.same(retainedDoc, device, 'the owner reads users/{owner}/devices/{d} retained, as returned')
    t.notOk(JSON.stringify(retainedDoc).includes(token), 'the document does not carry the token')

    const box = await connectDevice(th, device.id, token)
    t.ok(box.client.connected, 'the device connects with client id = device id and its token')
    const config = await subscribeConfig(box)
    t.match(
      config,
      { deviceId: device.id, kind: 'ovbox', name: 'Living room box' },
      'devices/{d}/config is retained with the device id, kind and name',
    )
    t.same(config.desired, {}, 'and the (empty) desired settings')
    t.match(config.revision, /^[0-9a-f]{16}$/, 'and a revision')
    t.notOk(JSON.stringify(config).includes(token), 'the config does not carry the token')
    t.match(
      await retainedOn(alice.client, configTopic(device.id)),
      { deviceId: device.id, kind: 'ovbox', desired: {} },
      'the owner may read the config too',
    )
    t.same(
      await subackCodes(box.client, docTopic(alice.id, device.id)),
      [128],
      'the device itself may not subscribe to its owner’s document topic',
    )

    const second = await createDevice(alice, 'Browser tab', 'browser')
    t.not(second.device.id, device.id, 'every device gets its own id')
    t.not(second.token, token, 'and its own token')
    t.equal(
      await connack(th, second.device.id, token),
      5,
      'the first device’s token does not open the second device',
    )
  },
)

t.test(
  'a device token used with any client id other than the device id is refused with CONNACK 5',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    const { device, token } = await createDevice(alice)
    const other = await createDevice(alice, 'Spare box')

    t.equal(await connack(th, other.device.id, token), 5, 'as another registered device of the owner')
    t.equal(await connack(th, alice.client.options.clientId!, token), 5, 'as the owner’s client id')
    t.equal(await connack(th, alice.id, token), 5, 'as the owner’s user id')
    t.equal(await connack(th, `${device.id}x`, token), 5, 'as a longer id with the device id as prefix')
    t.equal(await connack(th, 'anything', token), 5, 'as an arbitrary client id')
    t.equal(await connack(th, device.id, token), 0, 'as the device id it is accepted')
    t.equal(await connack(th, device.id, other.token), 5, 'another device’s token as this device id')
    t.ok(alice.client.connected, 'none of this disturbed the owner')
  },
)

t.test(
  'another user cannot subscribe to a device’s document or config, directly or through any wildcard, and receives nothing of it',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    const bob = await actor(th, 'Bob')
    const { device, token } = await createDevice(alice)
    const box = await connectDevice(th, device.id, token)
    await subscribeConfig(box)
    const bobsBox = await createDevice(bob, 'Bob’s box')
    const bobsDevice = await connectDevice(th, bobsBox.device.id, bobsBox.token)

    const seenByBob = recordMessages(bob.client)
    const seenByBobsDevice = recordMessages(bobsDevice.client)
    t.same(
      await subackCodes(bob.client, docTopic(alice.id, device.id)),
      [128],
      'users/{owner}/devices/{d}: SUBACK 128',
    )
    t.same(await subackCodes(bob.client, configTopic(device.id)), [128], 'devices/{d}/config: SUBACK 128')
    t.same(
      await subackCodes(bobsDevice.client, configTopic(device.id)),
      [128],
      'another user’s device may not read the config either',
    )
    const wildcards = [
      `users/${alice.id}/devices/+`,
      `users/${alice.id}/devices/#`,
      `users/${alice.id}/#`,
      'users/+/devices/+',
      `users/+/devices/${device.id}`,
      'users/#',
      'users/+/#',
      `devices/${device.id}/+`,
      `devices/${device.id}/#`,
      'devices/+/config',
      'devices/#',
      `+/${device.id}/config`,
      `+/${device.id}/#`,
      '+/+/config',
      '+/+/+',
      '+/+/+/+',
      '+/#',
      '#',
    ]
    for (const filter of wildcards) {
      t.same(await subackCodes(bob.client, filter), [128], `${filter}: SUBACK 128`)
    }
    t.ok(bob.client.connected, 'refused subscriptions keep the connection')

    // the same wildcard is fine for the owner, so the refusals above are about who asks
    const ownerSees = waitForMessage(alice.client, (m) => m.topic === docTopic(alice.id, device.id))
    t.same(
      await subackCodes(alice.client, `users/${alice.id}/devices/+`),
      [1],
      'the owner may use a wildcard',
    )
    t.same(
      registration(parse((await ownerSees).payload) as DeviceState),
      registration(device),
      'and reads the document through it',
    )

    // a live change is not delivered to the outsider either
    const configArrived = waitForMessage(box.client, configTopic(device.id))
    await ok(alice, 'device.update', { deviceId: device.id, settings: { sendAudio: true } })
    await configArrived
    await sleep(200)
    seenByBob.stop()
    seenByBobsDevice.stop()
    const leaked = [...seenByBob.messages, ...seenByBobsDevice.messages].filter(
      (m) => m.topic.includes(device.id) || m.topic.includes(alice.id),
    )
    t.same(
      leaked.map((m) => m.topic),
      [],
      'the other user and their device received nothing about the device',
    )
  },
)

t.test(
  'device.create accepts the kinds ovbox, browser and native and refuses any other with invalid_request',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    for (const kind of ['ovbox', 'browser', 'native']) {
      const { device } = await createDevice(alice, `A ${kind}`, kind)
      t.equal(device.kind, kind, `${kind} is accepted`)
      t.equal((await stored(th, device.id))?.kind, kind, `and stored as ${kind}`)
    }
    for (const params of [
      { name: 'Phone', kind: 'phone' },
      { name: 'Box', kind: 'OVBOX' },
      { name: 'Box', kind: '' },
      { name: 'Box', kind: null },
      { name: 'Box' },
      { kind: 'ovbox' },
      { name: '', kind: 'ovbox' },
      { name: 'x'.repeat(101), kind: 'ovbox' },
      { name: 'Box', kind: 'ovbox', owner: 'someone-else' },
    ]) {
      t.equal(
        (await refused(alice, 'device.create', params)).code,
        'invalid_request',
        `${JSON.stringify(params).slice(0, 60)} → invalid_request`,
      )
    }
    const devices = await th.hub.store.find<DeviceDoc>('devices', { owner: alice.id })
    t.same(
      devices.map((d) => d.kind).sort(),
      ['browser', 'native', 'ovbox'],
      'only the three valid devices were registered',
    )
  },
)

t.test(
  'the device quota (QUOTA_DEVICES_PER_USER) refuses the next device with forbidden, per user; a retried create does not count twice',
  async (t) => {
    const th = await startTestHub(t, { ...roomy, QUOTA_DEVICES_PER_USER: '2' })
    const alice = await actor(th, 'Alice')
    const bob = await actor(th, 'Bob')

    const first = await alice.req.request('device.create', { name: 'One', kind: 'ovbox' }, 'create-one')
    const retry = await alice.req.request('device.create', { name: 'One', kind: 'ovbox' }, 'create-one')
    t.ok(first.ok && retry.ok, 'the create and its retry both succeed')
    const firstId = (first.result as CreatedDevice).device.id
    t.equal((retry.result as CreatedDevice).device.id, firstId, 'the retry is answered with the same device')
    await createDevice(alice, 'Two', 'browser')

    const third = await refused(alice, 'device.create', { name: 'Three', kind: 'native' })
    t.equal(third.code, 'forbidden', 'the third device is refused with forbidden')
    t.match(third.message, /2/, 'the message names the limit')
    const alicesDevices = await th.hub.store.find<DeviceDoc>('devices', { owner: alice.id })
    t.same(alicesDevices.map((d) => d.name).sort(), ['One', 'Two'], 'nothing was stored for the third')
    const retained = await operatorSees(th, [`users/${alice.id}/devices/+`, 'devices/+/config'])
    t.equal(
      retained.filter((m) => m.topic.startsWith(`users/${alice.id}/devices/`)).length,
      2,
      'and only two device documents are retained',
    )
    t.equal(retained.filter((m) => m.topic.endsWith('/config')).length, 2, 'and only two configs')

    await createDevice(bob, 'Bob one')
    await createDevice(bob, 'Bob two')
    t.equal(
      (await refused(bob, 'device.create', { name: 'Bob three', kind: 'ovbox' })).code,
      'forbidden',
      'the quota is per user: another user gets their own two',
    )

    await ok(alice, 'device.remove', { deviceId: firstId })
    const replacement = await createDevice(alice, 'Three', 'native')
    t.equal(replacement.device.name, 'Three', 'after removing one, the user may register another')
  },
)

t.test(
  'device.token rotates: the hub closes the connection with the old token at once, the old token is refused, the new one connects; only the newest of several works',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    const created = await createDevice(alice)
    const d = created.device.id
    const spare = await createDevice(alice, 'Spare box')
    const spareBox = await connectDevice(th, spare.device.id, spare.token)

    const first = await connectDevice(th, d, created.token)
    const firstClosed = connectionClosed(first.client, 1000)
    const rotated = await ok<RotatedToken>(alice, 'device.token', { deviceId: d })
    t.equal(rotated.generation, 2, 'the new token is generation 2')
    t.not(rotated.token, created.token, 'a different token')
    t.match(
      th.hub.tokens.verify(rotated.token),
      { role: 'device', id: d, owner: alice.id, ver: 2 },
      'a generation-2 device token for the same device and owner',
    )
    t.equal(
      th.hub.tokens.verify(rotated.token).exp * 1000,
      Date.parse(rotated.expiresAt),
      'expiresAt is the new token’s expiry',
    )
    await firstClosed
    t.pass('the open connection with the old token was closed within a second')
    t.equal((await stored(th, d))?.tokenVersion, 2, 'the store holds generation 2')
    t.same(
      registration(await stored(th, d)),
      registration(created.device),
      'rotating the token changed nothing else',
    )
    t.ok(alice.client.connected, 'the owner’s connection stays open')
    t.ok(spareBox.client.connected, 'the owner’s other device stays connected')

    t.equal(await connack(th, d, created.token), 5, 'the old token is refused with CONNACK 5')
    const second = await connectDevice(th, d, rotated.token)
    t.equal((await subscribeConfig(second)).deviceId, d, 'the new token connects and reads the config')
    await sleep(200)
    t.ok(second.client.connected, 'and its connection stays open')

    const secondClosed = connectionClosed(second.client, 1000)
    const newest = await ok<RotatedToken>(alice, 'device.token', { deviceId: d })
    t.equal(newest.generation, 3, 'rotating again gives generation 3')
    await secondClosed
    t.pass('the connection with the generation-2 token was closed')
    t.equal(await connack(th, d, created.token), 5, 'generation 1 is refused')
    t.equal(await connack(th, d, rotated.token), 5, 'generation 2 is refused')
    const third = await connectDevice(th, d, newest.token)
    await sleep(200)
    t.ok(third.client.connected, 'only the newest token connects')
    t.ok(spareBox.client.connected, 'the other device was never disturbed')
    t.equal(await connack(th, spare.device.id, newest.token), 5, 'the new token does not open another device')
  },
)

t.test(
  'device.token by the device itself, another user or another user’s device is refused and changes nothing',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    const bob = await actor(th, 'Bob')
    const { device, token } = await createDevice(alice)
    const box = await connectDevice(th, device.id, token)
    const bobs = await createDevice(bob, 'Bob’s box')
    const bobsBox = await connectDevice(th, bobs.device.id, bobs.token)

    t.equal(
      (await refused(box, 'device.token', { deviceId: device.id })).code,
      'forbidden',
      'the device may not issue itself a token',
    )
    t.equal(
      (await refused(bob, 'device.token', { deviceId: device.id })).code,
      'not_found',
      'another user learns nothing about the device: not_found',
    )
    t.equal(
      (await refused(bobsBox, 'device.token', { deviceId: device.id })).code,
      'forbidden',
      'another user’s device: forbidden',
    )
    t.equal(
      (await refused(alice, 'device.token', { deviceId: 'no-such-device' })).code,
      'not_found',
      'an unknown device: not_found',
    )
    t.equal(
      (await refused(alice, 'device.token', {})).code,
      'invalid_request',
      'no device id: invalid_request',
    )

    await sleep(200)
    t.ok(box.client.connected, 'the device stays connected')
    t.equal((await stored(th, device.id))?.tokenVersion, 1, 'the token generation is still 1')
    t.same(registration(await stored(th, device.id)), registration(device), 'the device is unchanged')
    await box.client.endAsync()
    t.equal(await connack(th, device.id, token), 0, 'the original token still works')
  },
)

t.test(
  'device.remove closes the device’s connection, refuses its token, clears its document, config and presence topics and deletes it from the store',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    const bob = await actor(th, 'Bob')
    const { device, token } = await createDevice(alice)
    const d = device.id
    const keep = await createDevice(alice, 'Kept box', 'native')
    const box = await connectDevice(th, d, token)
    const keptBox = await connectDevice(th, keep.device.id, keep.token)
    await box.client.publishAsync(presenceTopic(d), JSON.stringify({ state: 'online', session: 1 }), {
      qos: 1,
      retain: true,
    })
    const filters = [`users/${alice.id}/devices/+`, `devices/${d}/#`, `devices/${keep.device.id}/#`]
    const before = (await operatorSees(th, filters)).map((m) => m.topic)
    for (const topic of [docTopic(alice.id, d), configTopic(d), presenceTopic(d)]) {
      t.ok(before.includes(topic), `${topic} is retained before the removal`)
    }

    t.equal(
      (await refused(bob, 'device.remove', { deviceId: d })).code,
      'not_found',
      'another user may not remove it',
    )
    t.equal(
      (await refused(box, 'device.remove', { deviceId: d })).code,
      'forbidden',
      'the device may not remove itself',
    )
    t.ok(await stored(th, d), 'the refused removals left the device in the store')
    t.ok(box.client.connected, 'and connected')

    t.same(
      registration((await retainedOn(alice.client, docTopic(alice.id, d))) as DeviceState),
      registration(device),
      'the owner reads the document',
    )
    await alice.client.subscribeAsync(docTopic(alice.id, d), { qos: 1 })
    await sleep(100)
    const deletionSeen = waitForMessage(
      alice.client,
      (m) => m.topic === docTopic(alice.id, d) && m.payload.length === 0,
    )
    const boxClosed = connectionClosed(box.client, 1000)
    t.same(await ok(alice, 'device.remove', { deviceId: d }), {}, 'the owner removes the device')
    await boxClosed
    t.pass('the device’s open connection was closed within a second')
    await deletionSeen
    t.pass('the owner’s live subscription saw the document deleted (zero-length retained)')

    t.equal(await connack(th, d, token), 5, 'its token is refused with CONNACK 5')
    t.equal(await stored(th, d), null, 'the store document is gone')
    const after = (await operatorSees(th, filters)).map((m) => m.topic)
    t.same(
      after.filter((topic) => topic.includes(d)),
      [],
      'no retained topic of the device remains (document, config, presence)',
    )
    t.ok(after.includes(docTopic(alice.id, keep.device.id)), 'the other device’s document remains')
    t.ok(after.includes(configTopic(keep.device.id)), 'and its config')
    t.ok(keptBox.client.connected, 'and it stays connected')
    t.ok(await stored(th, keep.device.id), 'and stored')

    t.same(
      await subackCodes(alice.client, configTopic(d)),
      [128],
      'the former owner may no longer subscribe to the removed device’s config',
    )
    for (const action of ['device.remove', 'device.token']) {
      t.equal(
        (await refused(alice, action, { deviceId: d })).code,
        'not_found',
        `${action} on the removed device: not_found`,
      )
    }
    t.equal(
      (await refused(alice, 'device.update', { deviceId: d, name: 'Back' })).code,
      'not_found',
      'device.update on the removed device: not_found',
    )
  },
)

t.test(
  'a device removed while connected with a retained last will (as docs/protocol/README.md#presence asks of devices) does not get its presence topic back from that will',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    const { device, token } = await createDevice(alice)
    const d = device.id
    const box = await connectDevice(th, d, token, {
      topic: presenceTopic(d),
      payload: Buffer.from(JSON.stringify({ state: 'lost', session: 1 })),
      qos: 1,
      retain: true,
    })
    await box.client.publishAsync(presenceTopic(d), JSON.stringify({ state: 'online', session: 1 }), {
      qos: 1,
      retain: true,
    })
    t.ok(
      (await operatorSees(th, [presenceTopic(d)])).some((m) => m.topic === presenceTopic(d)),
      'the presence topic is retained before the removal',
    )
    // like every ov-box: it listens to its config (with a subscription, Aedes publishes the will of a
    // closed connection only after unsubscribing it, i.e. after the hub's clear of the presence topic)
    await subscribeConfig(box)

    const boxClosed = connectionClosed(box.client, 1000)
    await ok(alice, 'device.remove', { deviceId: d })
    await boxClosed
    await sleep(200)
    t.same(
      (await operatorSees(th, [`devices/${d}/#`, `users/${alice.id}/devices/+`])).map(
        (m) => `${m.topic} ${m.payload.toString()}`,
      ),
      [],
      'nothing retained of the removed device, not even its last will',
    )
  },
)

t.test(
  'device.update by the owner patches the desired settings; the connected device receives its full configuration; null removes a setting',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    const { device, token } = await createDevice(alice)
    const d = device.id
    const box = await connectDevice(th, d, token)
    await subscribeConfig(box)
    await alice.client.subscribeAsync(docTopic(alice.id, d), { qos: 1 })
    await sleep(100)

    const settings = {
      sendAudio: true,
      receiverType: 'hrtf',
      receiverJitter: 5,
      soundCardName: 'USB Audio CODEC',
    }
    let boxGets = waitForMessage(box.client, configTopic(d))
    const ownerGets = waitForMessage(alice.client, docTopic(alice.id, d))
    const first = await ok<DeviceState>(alice, 'device.update', { deviceId: d, settings })
    t.same(first.desired, settings, 'the result has the desired settings')
    t.ok(first.version > device.version, 'the version went up')
    let config = parse((await boxGets).payload) as DeviceConfig
    t.same(config.desired, settings, 'the device receives the desired settings')
    t.match(config, { deviceId: d, kind: 'ovbox', name: 'Living room box' }, 'in its full configuration')
    const doc = parse((await ownerGets).payload) as DeviceState
    t.same(doc.desired, settings, 'the owner’s document shows the desired settings')
    t.same((await stored(th, d))?.desired, settings, 'and they are stored')

    boxGets = waitForMessage(box.client, configTopic(d))
    const second = await ok<DeviceState>(alice, 'device.update', {
      deviceId: d,
      settings: { receiverJitter: null, sendAudio: false, egoGain: 1.5 },
    })
    const expected = {
      sendAudio: false,
      receiverType: 'hrtf',
      soundCardName: 'USB Audio CODEC',
      egoGain: 1.5,
    }
    t.same(second.desired, expected, 'null removed receiverJitter; the rest was merged')
    config = parse((await boxGets).payload) as DeviceConfig
    t.same(config.desired, expected, 'the device receives the whole configuration, not the patch')
    t.notOk('receiverJitter' in config.desired, 'the removed setting is gone from the config')
    t.ok(second.version > first.version, 'the version went up again')

    boxGets = waitForMessage(box.client, configTopic(d))
    const renamed = await ok<DeviceState>(alice, 'device.update', {
      deviceId: d,
      name: 'Stage left',
      version: second.version,
    })
    t.equal(renamed.name, 'Stage left', 'a rename with the current version succeeds')
    config = parse((await boxGets).payload) as DeviceConfig
    t.equal(config.name, 'Stage left', 'the device receives its new name')
    t.same(config.desired, expected, 'with its desired settings unchanged')

    const all = await ok<DeviceState>(alice, 'device.update', {
      deviceId: d,
      settings: {
        sendVideo: true,
        receiveAudio: true,
        receiveVideo: false,
        inputAudioDeviceId: 'default',
        echoCancellation: false,
        autoGainControl: true,
        noiseSuppression: false,
        senderJitter: 0,
        receiverJitter: 1000,
        p2p: true,
        renderReverb: false,
        reverbGain: 10,
        renderISM: true,
        rawMode: false,
      },
    })
    t.match(
      all.desired,
      { ...expected, senderJitter: 0, receiverJitter: 1000, reverbGain: 10, p2p: true },
      'boundary values (jitter 0 and 1000 ms, gain 10) are accepted',
    )
    t.same((await stored(th, d))?.desired, all.desired, 'the store agrees')
  },
)

t.test(
  'a device that was offline during updates gets its full current configuration retained when it reconnects',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    const { device, token } = await createDevice(alice)
    const d = device.id
    const box = await connectDevice(th, d, token)
    await subscribeConfig(box)
    await box.client.endAsync()

    await ok(alice, 'device.update', {
      deviceId: d,
      settings: { sendAudio: true, receiverType: 'hrtf', receiverJitter: 8 },
    })
    const last = await ok<DeviceState>(alice, 'device.update', {
      deviceId: d,
      name: 'Renamed while away',
      settings: { receiverJitter: null, soundCardName: 'hw:1' },
    })

    const again = await connectDevice(th, d, token)
    const seen = recordMessages(again.client)
    const config = await subscribeConfig(again)
    t.same(
      config.desired,
      { sendAudio: true, receiverType: 'hrtf', soundCardName: 'hw:1' },
      'the retained config has every setting of both updates, with the removal applied',
    )
    t.equal(config.name, 'Renamed while away', 'and the new name')
    t.same(config.desired, last.desired, 'it is what the last update returned')
    await sleep(200)
    seen.stop()
    t.equal(
      seen.messages.filter((m) => m.topic === configTopic(d) && m.retain).length,
      1,
      'one retained message: the current configuration, not a replay of patches',
    )
  },
)

t.test(
  'device.update by anyone but the owner, with a stale version, an unknown setting or an out-of-range value is refused and changes nothing',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    const bob = await actor(th, 'Bob')
    const { device, token } = await createDevice(alice)
    const d = device.id
    const box = await connectDevice(th, d, token)
    await subscribeConfig(box)
    const old = await ok<DeviceState>(alice, 'device.update', { deviceId: d, settings: { sendAudio: true } })
    const current = await ok<DeviceState>(alice, 'device.update', {
      deviceId: d,
      settings: { receiverJitter: 10 },
    })
    await sleep(200)
    const storedBefore = await stored(th, d)
    const boxSees = recordMessages(box.client)

    const change = { deviceId: d, settings: { sendAudio: false } }
    t.equal((await refused(bob, 'device.update', change)).code, 'not_found', 'another user: not_found')
    t.equal((await refused(box, 'device.update', change)).code, 'forbidden', 'the device itself: forbidden')
    t.equal(
      (await refused(alice, 'device.update', { ...change, version: old.version })).code,
      'conflict',
      'a stale version: conflict',
    )
    t.equal(
      (await refused(alice, 'device.update', { ...change, version: current.version + 1 })).code,
      'conflict',
      'a future version: conflict',
    )
    const invalid: [string, Record<string, unknown>][] = [
      ['an unknown settings field', { settings: { volume: 3 } }],
      ['an unknown field beside a valid one', { settings: { sendAudio: false, bogus: true } }],
      ['receiverJitter -1', { settings: { receiverJitter: -1 } }],
      ['receiverJitter above 1000', { settings: { receiverJitter: 1001 } }],
      ['senderJitter as a string', { settings: { senderJitter: '5' } }],
      ['reverbGain above 10', { settings: { reverbGain: 10.5 } }],
      ['an unknown receiverType', { settings: { receiverType: 'binaural' } }],
      ['sendAudio not a boolean', { settings: { sendAudio: 'yes' } }],
      ['an empty soundCardName', { settings: { soundCardName: '' } }],
      ['an empty settings patch', { settings: {} }],
      ['nothing to change', {}],
      ['an empty name', { name: '' }],
      ['an unknown top-level field', { settings: { sendAudio: false }, kind: 'browser' }],
    ]
    for (const [what, params] of invalid) {
      t.equal(
        (await refused(alice, 'device.update', { deviceId: d, ...params })).code,
        'invalid_request',
        `${what}: invalid_request`,
      )
    }

    await sleep(200)
    boxSees.stop()
    const storedAfter = await stored(th, d)
    t.same(
      storedAfter?.desired,
      { sendAudio: true, receiverJitter: 10 },
      'the desired settings are unchanged',
    )
    t.same(registration(storedAfter), registration(storedBefore), 'the device is unchanged')
    t.equal(storedAfter?.version, storedBefore?.version, 'and its version too')
    t.same(
      boxSees.messages.filter((m) => m.topic === configTopic(d)).map((m) => parse(m.payload)),
      [],
      'the device received no new configuration',
    )
    t.same(
      registration((await retainedOn(alice.client, docTopic(alice.id, d))) as DeviceState),
      registration(current),
      'the retained document is the last accepted one',
    )
  },
)

t.test(
  'devices, their documents, configs and current tokens survive a restart; revoked tokens and removed devices stay gone',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    const box = await createDevice(alice, 'Box', 'ovbox')
    const configured = await ok<DeviceState>(alice, 'device.update', {
      deviceId: box.device.id,
      settings: { sendAudio: true, receiverType: 'hrtf', receiverJitter: 12, soundCardName: 'hw:2' },
    })
    const tab = await createDevice(alice, 'Tab', 'browser')
    const rotated = await ok<RotatedToken>(alice, 'device.token', { deviceId: tab.device.id })
    const gone = await createDevice(alice, 'Gone', 'native')
    await ok(alice, 'device.remove', { deviceId: gone.device.id })
    const boxClient = await connectDevice(th, box.device.id, box.token)
    await subscribeConfig(boxClient)

    await th.restart()

    t.same(
      registration(await stored(th, box.device.id)),
      registration(configured),
      'the configured device is stored as it was',
    )
    t.equal((await stored(th, tab.device.id))?.tokenVersion, 2, 'the rotated device keeps generation 2')
    t.equal(await stored(th, gone.device.id), null, 'the removed device stays removed')

    const aliceAgain = await connectAs(th, alice.id, 'Alice')
    t.same(
      registration((await retainedOn(aliceAgain.client, docTopic(alice.id, box.device.id))) as DeviceState),
      registration(configured),
      'the owner reads the device document retained after the restart',
    )
    t.same(
      registration((await retainedOn(aliceAgain.client, docTopic(alice.id, tab.device.id))) as DeviceState),
      registration(tab.device),
      'and the other device’s document',
    )

    const boxAgain = await connectDevice(th, box.device.id, box.token)
    const config = await subscribeConfig(boxAgain)
    t.match(
      config,
      { deviceId: box.device.id, kind: 'ovbox', name: 'Box' },
      'the device reconnects with its token',
    )
    t.same(config.desired, configured.desired, 'and reads its desired configuration retained')

    t.equal(await connack(th, tab.device.id, tab.token), 5, 'the revoked token is still refused')
    const tabAgain = await connectDevice(th, tab.device.id, rotated.token)
    t.match(
      await subscribeConfig(tabAgain),
      { deviceId: tab.device.id, kind: 'browser', desired: {} },
      'the current token connects and reads the config after the restart',
    )
    t.equal(await connack(th, gone.device.id, gone.token), 5, 'the removed device’s token is still refused')
    t.same(
      (await operatorSees(th, ['#'])).map((m) => m.topic).filter((topic) => topic.includes(gone.device.id)),
      [],
      'nothing retained of the removed device came back',
    )

    const boxGets = waitForMessage(boxAgain.client, configTopic(box.device.id))
    const updated = await ok<DeviceState>(aliceAgain, 'device.update', {
      deviceId: box.device.id,
      settings: { receiverJitter: null },
    })
    t.ok(updated.version > configured.version, 'versions continue after the restart')
    t.same(
      (parse((await boxGets).payload) as DeviceConfig).desired,
      { sendAudio: true, receiverType: 'hrtf', soundCardName: 'hw:2' },
      'remote control works after the restart',
    )
  },
)

t.test(
  'a response carrying a device token is delivered only to the requesting client, never to the same user’s other clients, and is never retained',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    const phone = await connectAs(th, alice.id, 'Alice phone')
    const bob = await actor(th, 'Bob')
    const phoneRes = `clients/${phone.client.options.clientId}/res`
    const laptopRes = `clients/${alice.client.options.clientId}/res`

    t.same(
      await subackCodes(phone.client, laptopRes),
      [128],
      'the phone may not subscribe to the laptop’s responses',
    )
    t.same(await subackCodes(phone.client, 'clients/+/res'), [128], 'nor through a wildcard')
    t.same(await subackCodes(phone.client, 'clients/#'), [128], 'nor through clients/#')
    await phone.client.subscribeAsync(phoneRes, { qos: 1 })
    await bob.client.subscribeAsync(`clients/${bob.client.options.clientId}/res`, { qos: 1 })
    const seenByPhone = recordMessages(phone.client)
    const seenByBob = recordMessages(bob.client)

    const created = await alice.req.request('device.create', { name: 'Box', kind: 'ovbox' }, 'shared-id')
    t.ok(created.ok, 'the laptop creates a device')
    const { device, token } = created.result as CreatedDevice
    const rotated = await ok<RotatedToken>(alice, 'device.token', { deviceId: device.id })
    await sleep(200)
    const tokens = [token, rotated.token]
    const carriesToken = (m: ReceivedMessage) => tokens.some((tk) => m.payload.toString().includes(tk))

    t.same(seenByPhone.messages, [], 'the phone, subscribed to its own responses, received nothing')
    t.same(seenByBob.messages.filter(carriesToken), [], 'nor did another user')

    // the same request id from the other client is a new request, not a replay of the laptop's answer
    const phoneCreate = await phone.req.request('device.create', { name: 'Box', kind: 'ovbox' }, 'shared-id')
    t.ok(phoneCreate.ok, 'the phone’s request with the same id is answered')
    const phones = phoneCreate.result as CreatedDevice
    t.not(phones.device.id, device.id, 'with a new device, not the laptop’s')
    t.not(phones.token, token, 'and its own token')
    await sleep(200)
    seenByPhone.stop()
    seenByBob.stop()
    t.same(
      seenByPhone.messages.map((m) => m.topic),
      [phoneRes],
      'the phone got exactly one message: its own response',
    )
    t.same(seenByPhone.messages.filter(carriesToken), [], 'which does not contain the laptop’s tokens')
    t.same(
      (await operatorSees(th, ['#'])).filter(carriesToken).map((m) => m.topic),
      [],
      'no retained topic contains a device token',
    )
  },
)

t.test(
  'races: concurrent device.create from several clients of one user never exceed the quota; concurrent device.token leaves exactly one working token',
  async (t) => {
    const th = await startTestHub(t, { ...roomy, QUOTA_DEVICES_PER_USER: '2' })
    const alice = await actor(th, 'Alice')
    const others = await Promise.all([1, 2, 3].map((n) => connectAs(th, alice.id, `Alice app ${n}`)))
    const apps = [alice, ...others]

    const attempts = await Promise.all(
      apps.flatMap((app, i) =>
        [0, 1].map((j) => app.req.request('device.create', { name: `Box ${i}-${j}`, kind: 'ovbox' })),
      ),
    )
    const accepted = attempts.filter((r) => r.ok)
    t.equal(accepted.length, 2, 'exactly two of eight concurrent creates succeed')
    t.same(
      [...new Set(attempts.filter((r) => !r.ok).map((r) => r.error!.code))],
      ['forbidden'],
      'the others are refused by the quota',
    )
    const devices = await th.hub.store.find<DeviceDoc>('devices', { owner: alice.id })
    t.same(
      devices.map((d) => d.id).sort(),
      accepted.map((r) => (r.result as CreatedDevice).device.id).sort(),
      'the store holds exactly the accepted devices',
    )

    const { device } = accepted[0]!.result as CreatedDevice
    const rotations = await Promise.all(
      apps.map((app) => app.req.request('device.token', { deviceId: device.id })),
    )
    t.ok(
      rotations.every((r) => r.ok),
      'every concurrent rotation is applied (each one revokes the ones before)',
    )
    const issued = rotations.map((r) => r.result as RotatedToken)
    t.same(
      issued.map((r) => r.generation).sort(),
      [2, 3, 4, 5],
      'each rotation got its own generation, none was lost',
    )
    t.equal((await stored(th, device.id))?.tokenVersion, 5, 'the store holds the newest generation')
    for (const r of issued) {
      t.equal(
        await connack(th, device.id, r.token),
        r.generation === 5 ? 0 : 5,
        `generation ${r.generation}: ${r.generation === 5 ? 'accepted' : 'refused with CONNACK 5'}`,
      )
    }
  },
)

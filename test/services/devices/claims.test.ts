import { createHash } from 'node:crypto'
import t from 'tap'
import { claimCollection, type ClaimDoc } from '../../../services/devices/claims.ts'
import { actor, connectDevice, ok, refused, roomy } from '../../helpers/actors.ts'
import { type TestHub, connackCode, sleep, startTestHub, waitForMessage } from '../../helpers/hub.ts'

const CODE = /^[A-HJKMNP-Z2-9]{4}-[A-HJKMNP-Z2-9]{4}$/

async function claim(th: TestHub, body: unknown) {
  const response = await fetch(`${th.httpUrl}/devices/claim`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  return {
    status: response.status,
    retryAfter: response.headers.get('retry-after'),
    body: (await response.json()) as Record<string, unknown> & { error?: { code: string; message: string } },
  }
}

t.test(
  'an owner gets a claim code over MQTT; the box exchanges it once for a token of a new generation',
  async (t) => {
    const th = await startTestHub(t, roomy)
    const alice = await actor(th, 'Alice')
    const created = await ok<{ device: { id: string }; token: string }>(alice, 'device.create', {
      name: 'Box',
      kind: 'ovbox',
    })
    const deviceId = created.device.id
    const { code, expiresAt } = await ok<{ code: string; expiresAt: string }>(alice, 'device.claimCode', {
      deviceId,
    })
    t.match(code, CODE, 'eight characters without look-alikes, grouped ABCD-EFGH')
    const ttl = Date.parse(expiresAt) - Date.now()
    t.ok(ttl > 590_000 && ttl <= 600_000, `valid for the default 10 minutes (${ttl} ms)`)

    const stored = await th.hub.store.get<ClaimDoc>(claimCollection.name, deviceId)
    t.equal(
      stored?.codeHash,
      createHash('sha256').update(code.replace('-', '')).digest('hex'),
      'the store has the sha256 of the code',
    )
    t.notMatch(JSON.stringify(stored), code.replace('-', ''), 'and not the code')

    // typed by a person: lower case, a space instead of the dash
    const typed = code.toLowerCase().replace('-', ' ')
    const first = await claim(th, { code: typed, kind: 'ovbox' })
    t.equal(first.status, 200, JSON.stringify(first.body))
    t.match(first.body, { deviceId, kind: 'ovbox', generation: 2, mqttUrl: th.mqttUrl })
    t.equal(
      await connackCode(th.mqttUrl, {
        clientId: deviceId,
        username: 't',
        password: String(first.body.token),
      }),
      0,
      'the new token connects',
    )
    t.equal(
      await connackCode(th.mqttUrl, { clientId: deviceId, username: 't', password: created.token }),
      5,
      'the token from device.create is revoked, as by device.token',
    )

    const topic = `users/${alice.id}/devices/${deviceId}`
    const retained = waitForMessage(alice.client, topic)
    await alice.client.subscribeAsync(topic, { qos: 1 })
    const document = await retained
    t.notMatch(document.payload.toString(), code.replace('-', ''), 'the retained device document has no code')
    t.notMatch(document.payload.toString(), /claim|codeHash/)

    const again = await claim(th, { code })
    t.equal(again.status, 409)
    t.match(again.body.error, { code: 'conflict', message: /was used at .*each code works once/ })
  },
)

t.test('wrong, malformed and expired codes are refused with what to do, and change nothing', async (t) => {
  const th = await startTestHub(t, { ...roomy, CLAIM_CODE_TTL_SECONDS: '1' })
  const alice = await actor(th, 'Alice')
  const created = await ok<{ device: { id: string }; token: string }>(alice, 'device.create', {
    name: 'Box',
    kind: 'ovbox',
  })
  const { code } = await ok<{ code: string }>(alice, 'device.claimCode', { deviceId: created.device.id })

  const wrong = await claim(th, { code: code === 'AAAA-AAAA' ? 'BBBB-BBBB' : 'AAAA-AAAA' })
  t.equal(wrong.status, 404)
  t.match(wrong.body.error, { code: 'not_found', message: /no such claim code: check what you typed/ })
  const malformed = await claim(th, { code: 'O0I1-L' })
  t.equal(malformed.status, 400)
  t.match(malformed.body.error, { code: 'invalid_request', message: /8 letters and digits like ABCD-EFGH/ })
  const notJson = await claim(th, { token: 'x' })
  t.equal(notJson.status, 400, 'a body without a code is refused')

  await sleep(1100)
  const expired = await claim(th, { code })
  t.equal(expired.status, 409)
  t.match(expired.body.error, { code: 'conflict', message: /expired at .*ask the owner for a new one/ })
  t.equal(
    await connackCode(th.mqttUrl, { clientId: created.device.id, username: 't', password: created.token }),
    0,
    'the device keeps its token',
  )
})

t.test('a new code replaces the device’s previous one', async (t) => {
  const th = await startTestHub(t, roomy)
  const alice = await actor(th, 'Alice')
  const { device } = await ok<{ device: { id: string } }>(alice, 'device.create', {
    name: 'Box',
    kind: 'ovbox',
  })
  const old = await ok<{ code: string }>(alice, 'device.claimCode', { deviceId: device.id })
  const current = await ok<{ code: string }>(alice, 'device.claimCode', { deviceId: device.id })
  t.equal((await claim(th, { code: old.code })).status, 404, 'the older code no longer exists')
  t.equal((await claim(th, { code: current.code })).status, 200)
})

t.test('nobody gets a code for a device that is not theirs', async (t) => {
  const th = await startTestHub(t, roomy)
  const alice = await actor(th, 'Alice')
  const mallory = await actor(th, 'Mallory')
  const created = await ok<{ device: { id: string }; token: string }>(alice, 'device.create', {
    name: 'Box',
    kind: 'ovbox',
  })
  t.match(await refused(mallory, 'device.claimCode', { deviceId: created.device.id }), {
    code: 'not_found',
    message: `device ${created.device.id} of yours does not exist`,
  })
  const box = await connectDevice(th, created.device.id, created.token)
  t.match(await refused(box, 'device.claimCode', { deviceId: created.device.id }), {
    code: 'forbidden',
    message: /managed by their owner/,
  })
  t.equal((await th.hub.store.find(claimCollection.name)).length, 0, 'no code was stored')
})

t.test('a code for another kind of device is refused without using it up', async (t) => {
  const th = await startTestHub(t, roomy)
  const alice = await actor(th, 'Alice')
  const { device } = await ok<{ device: { id: string } }>(alice, 'device.create', {
    name: 'Tab',
    kind: 'browser',
  })
  const { code } = await ok<{ code: string }>(alice, 'device.claimCode', { deviceId: device.id })
  const asBox = await claim(th, { code, kind: 'ovbox' })
  t.equal(asBox.status, 409)
  t.match(asBox.body.error?.message, /for a device of kind browser, not ovbox: it stays valid/)
  t.equal((await claim(th, { code, kind: 'browser' })).status, 200)
})

t.test('guessing: an address with too many wrong codes is refused, even with a right one', async (t) => {
  const th = await startTestHub(t, { ...roomy, CLAIM_FAILURES_PER_ADDRESS: '3' })
  const alice = await actor(th, 'Alice')
  const { device } = await ok<{ device: { id: string } }>(alice, 'device.create', {
    name: 'Box',
    kind: 'ovbox',
  })
  // successes do not count: the owner's own claims never use up the address
  for (let i = 0; i < 4; i++) {
    const { code } = await ok<{ code: string }>(alice, 'device.claimCode', { deviceId: device.id })
    t.equal((await claim(th, { code })).status, 200, `claim ${i + 1} succeeds`)
  }
  const { code } = await ok<{ code: string }>(alice, 'device.claimCode', { deviceId: device.id })
  for (const guess of ['ZZZZ-ZZZA', 'ZZZZ-ZZZB', 'ZZZZ-ZZZC'])
    t.equal((await claim(th, { code: guess })).status, 404, `${guess} is wrong`)
  const limited = await claim(th, { code })
  t.equal(limited.status, 429)
  t.match(limited.body.error, {
    code: 'rate_limited',
    message: /too many wrong claim codes .*retry in \d+ s/,
  })
  t.ok(Number(limited.retryAfter) > 0, `Retry-After ${limited.retryAfter}`)
})

t.test('an owner may create only so many codes an hour', async (t) => {
  const th = await startTestHub(t, { ...roomy, CLAIM_CODES_PER_USER_PER_HOUR: '2' })
  const alice = await actor(th, 'Alice')
  const { device } = await ok<{ device: { id: string } }>(alice, 'device.create', {
    name: 'Box',
    kind: 'ovbox',
  })
  await ok(alice, 'device.claimCode', { deviceId: device.id })
  await ok(alice, 'device.claimCode', { deviceId: device.id })
  t.match(await refused(alice, 'device.claimCode', { deviceId: device.id }), {
    code: 'rate_limited',
    message: /many claim codes: retry in \d+ s/,
  })
})

t.test('a removed device’s code is refused', async (t) => {
  const th = await startTestHub(t, roomy)
  const alice = await actor(th, 'Alice')
  const { device } = await ok<{ device: { id: string } }>(alice, 'device.create', {
    name: 'Box',
    kind: 'ovbox',
  })
  const { code } = await ok<{ code: string }>(alice, 'device.claimCode', { deviceId: device.id })
  await ok(alice, 'device.remove', { deviceId: device.id })
  const gone = await claim(th, { code })
  t.equal(gone.status, 404)
  t.match(gone.body.error?.message, /device of this claim code was removed/)
})

t.test('behind a proxy or NAT, PUBLIC_MQTT_URL is the address a claimed box is given', async (t) => {
  const th = await startTestHub(t, { ...roomy, PUBLIC_MQTT_URL: 'mqtts://hub.example.org:8883' })
  const alice = await actor(th, 'Alice')
  const { device } = await ok<{ device: { id: string } }>(alice, 'device.create', {
    name: 'Box',
    kind: 'ovbox',
  })
  const { code } = await ok<{ code: string }>(alice, 'device.claimCode', { deviceId: device.id })
  t.match((await claim(th, { code })).body, { mqttUrl: 'mqtts://hub.example.org:8883' })
})

t.test('used and expired codes are kept a day to say why they fail, then purged', async (t) => {
  const th = await startTestHub(t, roomy)
  const alice = await actor(th, 'Alice')
  const { device } = await ok<{ device: { id: string } }>(alice, 'device.create', {
    name: 'Box',
    kind: 'ovbox',
  })
  const { code, expiresAt } = await ok<{ code: string; expiresAt: string }>(alice, 'device.claimCode', {
    deviceId: device.id,
  })
  t.equal((await claim(th, { code })).status, 200)
  const expiry = Date.parse(expiresAt)
  t.equal(await th.hub.claims.purge(expiry + 23 * 3600_000), 0, 'within a day of its expiry: kept')
  t.match((await claim(th, { code })).body.error?.message, /was used at/)
  t.equal(await th.hub.claims.purge(expiry + 25 * 3600_000), 1, 'a day after: purged')
  t.equal((await claim(th, { code })).status, 404)
  t.equal((await th.hub.store.find(claimCollection.name)).length, 0)
})

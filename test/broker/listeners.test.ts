import { readFileSync } from 'node:fs'
import mqtt from 'mqtt'
import t from 'tap'
import { nextMessage, selfSignedCert, startTestHub } from '../helpers/hub.ts'

t.test('MQTT over TLS: a client that trusts the certificate connects and reads hub/status', async (t) => {
  const { cert, key } = await selfSignedCert(t)
  const th = await startTestHub(t, { TLS_CERT: cert, TLS_KEY: key, MQTTS_PORT: '0' })
  t.ok(th.hub.ports.mqtts, 'the TLS port is reported')
  const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${th.hub.ports.mqtts}`, {
    clientId: 'tls-user',
    username: 't',
    password: th.token({ sub: 'u-tls' }),
    ca: readFileSync(cert),
    reconnectPeriod: 0,
  })
  t.teardown(() => client.endAsync(true))
  const status = await nextMessage(client, 'hub/status')
  t.match(JSON.parse(status.payload.toString()), { state: 'online' })
})

t.test('two hubs on port 0 get distinct free ports and do not share state', async (t) => {
  const a = await startTestHub(t)
  const b = await startTestHub(t)
  t.not(a.hub.ports.mqtt, b.hub.ports.mqtt)
  t.not(a.hub.ports.http, b.hub.ports.http)
  const user = await a.hub.users.createUser({ name: 'Only on A' })
  t.ok(await a.hub.store.get('users', user.id))
  t.equal(await b.hub.store.get('users', user.id), null)
})

t.test('MQTT over WebSocket at /mqtt uses the same authentication as TCP', async (t) => {
  const th = await startTestHub(t)
  const refused = await mqtt
    .connectAsync(th.wsUrl, {
      clientId: 'ws-bad',
      username: 't',
      password: 'not-a-token',
      reconnectPeriod: 0,
    })
    .then(
      (c) => {
        c.end(true)
        return 0
      },
      (err: { code?: number }) => err.code,
    )
  t.equal(refused, 4)
  const client = await th.connect({ ws: true, clientId: 'ws-ok', token: th.token({ sub: 'u-ws' }) })
  const status = await nextMessage(client, 'hub/status')
  t.equal(status.retain, true)
})

import type { IClientOptions, MqttClient } from 'mqtt'
import {
  type ReceivedMessage,
  Requester,
  type TestHub,
  recordMessages,
  sleep,
  testTimeScale,
  waitForMessage,
} from './hub.ts'

/** For suites that send many requests from one account; the request rate limits are tested elsewhere. */
export const roomy = {
  RATE_LIMIT_BURST: '10000',
  RATE_LIMIT_PER_SECOND: '10000',
  RATE_LIMIT_ACCOUNT_BURST: '10000',
  RATE_LIMIT_ACCOUNT_PER_SECOND: '10000',
}

/** A connection that can send requests: a user's client, or a device connected with its device token. */
export interface Actor {
  id: string
  name: string
  client: MqttClient
  req: Requester
}

let clientSeq = 0

/** A new user in the store, connected with a user token. */
export async function actor(th: TestHub, name: string): Promise<Actor> {
  const user = await th.hub.users.createUser({ name })
  return connectAs(th, user.id, name)
}

/** A new connection (new client id) for an existing user, e.g. a second app or after a restart. */
export async function connectAs(th: TestHub, userId: string, name: string): Promise<Actor> {
  const clientId = `${name.replace(/[^A-Za-z0-9]/g, '').toLowerCase()}-${++clientSeq}`
  const client = await th.connect({ clientId, token: th.token({ sub: userId, name }) })
  return { id: userId, name, client, req: new Requester(client) }
}

/** The device connected as itself: client id = device id, password = its device token. */
export async function connectDevice(
  th: TestHub,
  deviceId: string,
  token: string,
  will?: IClientOptions['will'],
): Promise<Actor> {
  const client = await th.connect({ clientId: deviceId, token, ...(will ? { will } : {}) })
  return { id: deviceId, name: `device ${deviceId}`, client, req: new Requester(client) }
}

/** Sends a request that must succeed and returns its result. */
export async function ok<T = Record<string, unknown>>(
  a: Actor,
  action: string,
  params: unknown = {},
): Promise<T> {
  const response = await a.req.request(action, params)
  if (!response.ok) throw new Error(`${a.name}: ${action} was refused: ${JSON.stringify(response.error)}`)
  return response.result as T
}

/** Sends a request that must be refused and returns its error. */
export async function refused(
  a: Actor,
  action: string,
  params: unknown = {},
): Promise<{ code: string; message: string }> {
  const response = await a.req.request(action, params)
  if (response.ok) {
    throw new Error(`${a.name}: ${action} succeeded unexpectedly: ${JSON.stringify(response.result)}`)
  }
  return response.error!
}

/** A payload as JSON, or undefined for a zero-length (deleted) one. */
export const parse = (payload: Buffer): unknown =>
  payload.length > 0 ? JSON.parse(payload.toString()) : undefined

/**
 * What a new subscription to `topic` gets retained: the parsed JSON, or undefined when nothing
 * retained arrives within `ms`. `topic` must be a filter the client does not hold already.
 */
export async function retainedOn(
  client: MqttClient,
  topic: string,
  ms = 300 * testTimeScale,
): Promise<unknown> {
  const arrival = waitForMessage(client, (m) => m.topic === topic && m.retain, ms).then(
    (m) => parse(m.payload),
    () => undefined,
  )
  await client.subscribeAsync(topic, { qos: 1 })
  try {
    return await arrival
  } finally {
    await client.unsubscribeAsync(topic)
  }
}

/** Everything a brand-new operator (admin-role token) subscriber gets under `filters` within `ms`. */
export async function operatorSees(th: TestHub, filters: string[], ms = 300): Promise<ReceivedMessage[]> {
  const ops = await th.connect({
    clientId: `ops-${++clientSeq}`,
    token: th.token({ sub: 'ops', role: 'admin' }),
  })
  const recording = recordMessages(ops)
  await ops.subscribeAsync(filters, { qos: 1 })
  await sleep(ms)
  recording.stop()
  await ops.endAsync()
  return recording.messages
}

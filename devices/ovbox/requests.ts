import { randomUUID } from 'node:crypto'
import type { MqttClient } from 'mqtt'
import type { ResponseEnvelope } from '../../schemas/protocol.ts'

/** A refusal from the hub (docs/protocol/README.md#requests-and-responses): `ok: false` with an error code. */
export class RequestError extends Error {
  readonly code: string

  constructor(action: string, code: string, message: string) {
    super(`${action} refused (${code}): ${message}`)
    this.code = code
  }
}

export interface RequestClientOptions {
  /** The MQTT client id requests are sent as: requests go to `clients/{id}/req/{action}`. */
  clientId: string
  /** Publishes QoS 1; rejects when there is no connection right now. */
  publish(topic: string, payload: string): Promise<unknown>
  /** How long to wait for the response before trying once more with the same id. */
  timeoutMs?: number
  /** Refusals the hub sends with id "" (e.g. an invalid report) and responses nobody waits for. */
  onUnmatched?(response: ResponseEnvelope): void
}

/**
 * Requests and responses over `clients/{c}/req/{action}` and `clients/{c}/res` (docs/protocol/README.md#requests-and-responses). Every
 * request gets a fresh random id, so an id never repeats across agent restarts (the hub answers a
 * repeated id from its 10-minute memory instead of applying it). A request without a response in time
 * is sent once more with the same id: if the first one was applied, the hub answers it again instead
 * of applying it twice. The client that carries it may change between the two (a reconnect).
 */
export class RequestClient {
  readonly responseTopic: string
  readonly #options: RequestClientOptions
  readonly #waiting = new Map<string, (response: ResponseEnvelope) => void>()

  constructor(options: RequestClientOptions) {
    this.#options = options
    this.responseTopic = `clients/${options.clientId}/res`
  }

  /** Feeds a message from the response topic; returns false for other topics. */
  handle(topic: string, payload: Buffer): boolean {
    if (topic !== this.responseTopic) return false
    let response: ResponseEnvelope
    try {
      response = JSON.parse(payload.toString('utf8')) as ResponseEnvelope
    } catch {
      return true
    }
    const resolve = this.#waiting.get(response.id)
    if (resolve) {
      this.#waiting.delete(response.id)
      resolve(response)
    } else {
      this.#options.onUnmatched?.(response)
    }
    return true
  }

  /** Sends `action` and resolves with its result; rejects with RequestError when refused. */
  async request<T = unknown>(action: string, params: unknown): Promise<T> {
    const id = randomUUID()
    const payload = JSON.stringify({ id, params })
    const timeoutMs = this.#options.timeoutMs ?? 10_000
    let lastError: Error | undefined
    for (let attempt = 0; attempt < 2; attempt++) {
      const response = this.#wait(id, timeoutMs)
      try {
        await this.#options.publish(`clients/${this.#options.clientId}/req/${action}`, payload)
      } catch (err) {
        response.cancel()
        lastError = err as Error
        continue
      }
      const answer = await response.promise
      if (answer === undefined) {
        lastError = new Error(`no response to ${action} within ${timeoutMs} ms`)
        continue
      }
      if (answer.ok) return answer.result as T
      throw new RequestError(action, answer.error.code, answer.error.message)
    }
    throw lastError ?? new Error(`${action} failed`)
  }

  #wait(id: string, timeoutMs: number) {
    let cancel = () => {}
    const promise = new Promise<ResponseEnvelope | undefined>((resolve) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id)
        resolve(undefined)
      }, timeoutMs)
      this.#waiting.set(id, (response) => {
        clearTimeout(timer)
        resolve(response)
      })
      cancel = () => {
        clearTimeout(timer)
        this.#waiting.delete(id)
        resolve(undefined)
      }
    })
    return { promise, cancel: () => cancel() }
  }
}

/** A RequestClient on an already connected MQTT.js client (e.g. a user's), subscribed to its responses. */
export async function requestClientFor(
  client: MqttClient,
  options: Omit<RequestClientOptions, 'clientId' | 'publish'> = {},
): Promise<RequestClient> {
  const requests = new RequestClient({
    ...options,
    clientId: client.options.clientId!,
    publish: (topic, payload) => client.publishAsync(topic, payload, { qos: 1 }),
  })
  client.on('message', (topic, payload) => requests.handle(topic, payload))
  await client.subscribeAsync(requests.responseTopic, { qos: 1 })
  return requests
}

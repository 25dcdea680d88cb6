import type { ErrorCode, ResponseEnvelope } from '../../schemas/protocol.ts'
import type { ActionName, ActionParams, ActionResult } from './actions.ts'
import { topicShapes as topics } from '../../schemas/topic-shapes.ts'

/**
 * Why a request failed: a refusal of the hub (`ok: false`, one of its error codes), no response in
 * time after the retry (`timeout`), or no connection to send it on (`not_connected`).
 */
export type RequestErrorCode = ErrorCode | 'timeout' | 'not_connected'

/**
 * A failed request. `message` names the action and the code, for logs; `reason` is what to tell a
 * person: the hub's own message for a refusal, a sentence for `timeout` and `not_connected`.
 */
export class RequestError extends Error {
  override readonly name = 'RequestError'

  constructor(
    readonly action: string,
    readonly code: RequestErrorCode,
    message: string,
    readonly reason: string = message,
  ) {
    super(message)
  }
}

export interface RequestClientOptions {
  /** The MQTT client id requests are sent as: requests go to `clients/{id}/req/{action}`. */
  clientId: string
  /** Publishes QoS 1; rejects when there is no connection right now. */
  publish(topic: string, payload: string): Promise<unknown>
  /** How long to wait for the response before trying once more with the same id (default 10 s). */
  timeoutMs?: number
  /** Refusals the hub sends with id "" (e.g. an invalid report) and responses nobody waits for. */
  onUnmatched?(response: ResponseEnvelope): void
}

const decoder = new TextDecoder()

/**
 * A fresh random id per request, so an id never repeats across restarts (the hub answers a repeated
 * id from its 10-minute memory instead of applying it). getRandomValues, unlike randomUUID, also
 * exists in a page served over plain http.
 */
function requestId(): string {
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(16))
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')
}

/**
 * Requests and responses over `clients/{c}/req/{action}` and `clients/{c}/res`
 * (docs/protocol/README.md#requests-and-responses). A request without a response in time is sent once
 * more with the same id: if the first one was applied, the hub answers it again instead of applying
 * it twice. The connection that carries it may change between the two (a reconnect).
 */
export class RequestClient {
  readonly responseTopic: string
  readonly #options: RequestClientOptions
  readonly #waiting = new Map<string, (response: ResponseEnvelope) => void>()

  constructor(options: RequestClientOptions) {
    this.#options = options
    this.responseTopic = topics.response.build(options.clientId)
  }

  /** Feeds a message from the response topic; returns false for other topics. */
  handle(topic: string, payload: Uint8Array): boolean {
    if (topic !== this.responseTopic) return false
    let response: ResponseEnvelope
    try {
      response = JSON.parse(decoder.decode(payload)) as ResponseEnvelope
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

  /**
   * Sends `action` and resolves with its result; rejects with a RequestError: the hub's refusal at
   * once, `timeout` or `not_connected` (the last attempt could not be sent) after two waits.
   */
  async request<N extends ActionName>(action: N, params: ActionParams<N>): Promise<ActionResult<N>> {
    const id = requestId()
    const payload = JSON.stringify({ id, params })
    const timeoutMs = this.#options.timeoutMs ?? 10_000
    let unsent: Error | undefined
    for (let attempt = 0; attempt < 2; attempt++) {
      const response = this.#wait(id, timeoutMs)
      // not awaited: a connection lost before the PUBACK fails the publish, yet the request may have
      // been applied, and the retry on the next connection is what finds out
      unsent = undefined
      this.#options
        .publish(topics.request.build(this.#options.clientId, action), payload)
        .catch((err: unknown) => {
          unsent = err as Error
        })
      const answer = await response
      if (answer === undefined) continue
      if (answer.ok) return answer.result as ActionResult<N>
      throw new RequestError(
        action,
        answer.error.code,
        `${action} refused (${answer.error.code}): ${answer.error.message}`,
        answer.error.message,
      )
    }
    const failed = unsent as Error | undefined
    if (failed)
      throw new RequestError(
        action,
        'not_connected',
        `${action} not sent: ${failed.message}`,
        'not connected to the hub: try again when the connection is back',
      )
    throw new RequestError(
      action,
      'timeout',
      `no response to ${action} within ${timeoutMs} ms (sent twice)`,
      'the hub did not answer in time: try again',
    )
  }

  /** The response with `id`, or undefined after `timeoutMs`. */
  #wait(id: string, timeoutMs: number): Promise<ResponseEnvelope | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id)
        resolve(undefined)
      }, timeoutMs)
      this.#waiting.set(id, (response) => {
        clearTimeout(timer)
        resolve(response)
      })
    })
  }
}

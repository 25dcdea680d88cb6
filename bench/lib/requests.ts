import { LiteClient } from './mqtt-lite.ts'
import { topics } from '../../schemas/topics.ts'

export interface Response {
  id: string
  ok: boolean
  result?: unknown
  error?: { code: string; message: string }
}

/** Requests (docs/protocol/README.md#requests-and-responses) over a LiteClient, for setting up benchmark scenarios through the real protocol. */
export class LiteRequester {
  readonly client: LiteClient
  readonly clientId: string
  readonly #waiting = new Map<string, (r: Response) => void>()
  #subscribed: Promise<unknown> | undefined
  #seq = 0

  constructor(client: LiteClient, clientId: string) {
    this.client = client
    this.clientId = clientId
    client.onPublish = (topic, payload) => {
      if (topic !== topics.response.build(clientId)) return
      const response = JSON.parse(payload.toString()) as Response
      const resolve = this.#waiting.get(response.id)
      this.#waiting.delete(response.id)
      resolve?.(response)
    }
  }

  static async connect(host: string, port: number, clientId: string, token: string): Promise<LiteRequester> {
    const client = LiteClient.connect({
      host,
      port,
      clientId,
      username: 'token',
      password: token,
      keepalive: 0,
    })
    const code = await client.connected
    if (code !== 0) throw new Error(`${clientId}: CONNACK ${code}`)
    return new LiteRequester(client, clientId)
  }

  /** Sends a request that must succeed; returns its result. */
  async ok<T = Record<string, unknown>>(
    action: string,
    params: unknown = {},
    timeoutMs = 30_000,
  ): Promise<T> {
    this.#subscribed ??= this.client.subscribe([topics.response.build(this.clientId)], 1)
    await this.#subscribed
    const id = `setup-${++this.#seq}`
    const response = new Promise<Response>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no response to ${action} within ${timeoutMs} ms`)),
        timeoutMs,
      )
      this.#waiting.set(id, (r) => {
        clearTimeout(timer)
        resolve(r)
      })
    })
    await this.client.publish(topics.request.build(this.clientId, action), JSON.stringify({ id, params }), 1)
    const r = await response
    if (!r.ok) throw new Error(`${this.clientId}: ${action} refused: ${JSON.stringify(r.error)}`)
    return r.result as T
  }

  end(): void {
    this.client.end()
  }
}

import { Redis } from 'ioredis'
import type { Logger } from 'pino'
import type { ClusterSettings } from '../config.ts'

/**
 * This process's connection to the deployment's Redis (docs/cluster.md): one connection for commands
 * (leases, liveness, publishing commits) and one for subscriptions, which Redis dedicates to pub/sub.
 * Every key and channel the hub uses is under `prefix`, so one Redis can serve several deployments.
 */
export class ClusterLink {
  readonly processId: string
  readonly prefix: string
  readonly commands: Redis
  readonly subscriber: Redis
  readonly #log: Logger

  private constructor(settings: ClusterSettings, commands: Redis, subscriber: Redis, log: Logger) {
    this.processId = settings.processId
    this.prefix = 'stagehub:'
    this.commands = commands
    this.subscriber = subscriber
    this.#log = log
    for (const [name, redis] of [
      ['commands', commands],
      ['subscriber', subscriber],
    ] as const) {
      // ioredis reconnects by itself; an error event without a listener would end the process
      redis.on('error', (err: Error) => this.#log.warn({ err, connection: name }, 'Redis connection error'))
    }
  }

  /** Connects both connections; rejects (and closes them) when Redis cannot be reached. */
  static async open(settings: ClusterSettings, log: Logger): Promise<ClusterLink> {
    const options = { lazyConnect: true, maxRetriesPerRequest: 3 }
    const commands = new Redis(settings.redisUrl, {
      ...options,
      connectionName: `${settings.processId}:commands`,
    })
    const subscriber = new Redis(settings.redisUrl, {
      ...options,
      connectionName: `${settings.processId}:subscriber`,
    })
    try {
      await Promise.all([commands.connect(), subscriber.connect()])
      await commands.ping()
    } catch (err) {
      commands.disconnect()
      subscriber.disconnect()
      throw new Error(`cannot reach Redis at REDIS_URL: ${(err as Error).message}`, { cause: err })
    }
    return new ClusterLink(settings, commands, subscriber, log)
  }

  /** A key or channel of this deployment. */
  key(name: string): string {
    return this.prefix + name
  }

  async close(): Promise<void> {
    // QUIT waits for Redis; one that is unreachable may never answer, and the process must still end
    await Promise.allSettled(
      [this.commands, this.subscriber].map((redis) =>
        redis.status === 'ready' ? redis.quit() : Promise.resolve(redis.disconnect()),
      ),
    )
  }
}

import { readFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { pino, type Logger } from 'pino'
import { Acl } from '../broker/acl.ts'
import { type BrokerDelegate, HubBroker } from '../broker/broker.ts'
import type { HubConfig } from './config.ts'
import { createHttpServer, startListeners, type Listeners } from '../broker/listeners.ts'
import { HubMetrics } from '../broker/metrics.ts'
import { DurableRetainedPersistence } from '../broker/persistence.ts'
import { createTokenService, type TokenService } from '../broker/tokens.ts'
import type { HubStatus } from '../schemas/state.ts'
import { type Consumer, findTopic, topics } from '../schemas/topics.ts'
import { AccessIndex } from './access.ts'
import { AuditTrail } from './audit/trail.ts'
import { ChangeFeed } from './cluster/change-feed.ts'
import { singleProcess } from './cluster/coordination.ts'
import { ClusterLink } from './cluster/link.ts'
import { ClusterMembership } from './cluster/membership.ts'
import { type UserDoc, collections } from './collections.ts'
import { corsHeaders } from './http/cors.ts'
import { webApp } from './http/web.ts'
import { errorReplies, explainRoute, healthRoutes, metricsRoute, schemaValidation } from './http/routes.ts'
import { registerHubStatus } from './operators/status.ts'
import { RequestPipeline } from './requests/pipeline.ts'
import { storeRetainedArchive } from './retained-archive.ts'
import { StatePublisher } from './state-publisher.ts'
import { openStore } from './store/index.ts'
import type { Store } from './store/store.ts'
import { DeviceProjection } from './devices/projection.ts'
import { DevicePresence } from './devices/presence.ts'
import { DeviceClaims } from './devices/claims.ts'
import { DevicesService } from './devices/service.ts'
import { FirmwareService } from './firmware/service.ts'
import { MediaService } from './media/service.ts'
import { RoutersService } from './routers/service.ts'
import { StagesService } from './stages/service.ts'
import { PasswordPool } from './users/password-pool.ts'
import { UsersService } from './users/service.ts'

/** How often the coordinator deletes expired change-log entries. */
const CHANGE_LOG_PURGE_MS = 60_000

export const HUB_VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version

export interface Hub {
  config: HubConfig
  /** `metrics`: METRICS_PORT's listener, when metrics have their own. */
  ports: Listeners['ports'] & { metrics?: number }
  store: Store
  broker: HubBroker
  tokens: TokenService
  access: AccessIndex
  users: UsersService
  claims: DeviceClaims
  pipeline: RequestPipeline
  /** In a cluster: the change feed that announces the other processes' commits here (docs/cluster.md). */
  feed?: ChangeFeed | undefined
  log: Logger
  /** Clean shutdown: hub/status offline, listeners and connections closed, store flushed and closed. */
  close(): Promise<void>
}

/**
 * A user, device or router whose token generation went up, or which was removed, loses its open
 * connections at once: the store is the truth, whichever request changed it.
 */
function closeRevokedConnections(
  store: Store,
  broker: HubBroker,
  access: AccessIndex,
  users: UsersService,
): void {
  store.onChange((changes) => {
    for (const { collection, id, before, after } of changes) {
      const userGenerationChanged =
        collection === collections.users.name
          ? after !== null && (before as UserDoc | null)?.tokenVersion !== (after as UserDoc).tokenVersion
          : collection === collections.deletedUsers.name && after !== null
      if (userGenerationChanged) {
        // the access index has applied this commit already (it listens first): it has the generation
        const generation = access.tokenGeneration('user', id)!
        broker.disconnectWhere(
          (who) =>
            who.role === 'user' &&
            who.id === id &&
            (who.ver ?? 0) < generation &&
            !users.renewing(who) &&
            !(generation === Infinity && users.answersDeletion(who)),
        )
        if (generation === Infinity) broker.endSessionsOf({ role: 'user', id })
        continue
      }
      const role =
        collection === collections.devices.name
          ? 'device'
          : collection === collections.routers.name
            ? 'router'
            : undefined
      if (!role || !before) continue
      const generation = (after as { tokenVersion?: number } | null)?.tokenVersion
      if (after && generation === (before as { tokenVersion?: number }).tokenVersion) continue
      broker.disconnectWhere(
        (who) =>
          who.role === role && who.id === id && (generation === undefined || (who.ver ?? 0) < generation),
      )
      if (!after) broker.endSessionsOf({ role, id })
    }
  })
}

/**
 * The operator CLI writes to the store while the hub runs (`user reset-password`): such commits
 * raise no change events, so the hub checks for them every second and closes the connections of
 * users whose token generation rose. (The embedded store can tell; MongoDB reports nothing here.)
 */
function followOutsideCommits(store: Store, broker: HubBroker, access: AccessIndex, log: Logger): () => void {
  let reloading: Promise<void> | undefined
  let again = false
  const reload = async (): Promise<void> => {
    do {
      again = false
      for (const id of await access.reloadUserGenerations(store)) {
        const generation = access.tokenGeneration('user', id)!
        const closed = broker.disconnectWhere(
          (who) => who.role === 'user' && who.id === id && (who.ver ?? 0) < generation,
        )
        log.info({ userId: id, generation, closed }, 'user token generation raised by another process')
      }
    } while (again)
  }
  return store.onOutsideCommit(() => {
    if (reloading) {
      again = true
      return
    }
    reloading = reload()
      .catch((err: unknown) =>
        log.error({ err }, 'could not read token generations written by another process'),
      )
      .finally(() => (reloading = undefined))
  })
}

/**
 * Client-published retained topics the hub keeps while their device or router is registered: a
 * presence of one removed meanwhile is cleared.
 */
function keepsPresence(access: AccessIndex, topic: string): boolean {
  const device = topics.devicePresence.parse(topic)
  if (device) return access.tokenGeneration('device', device.d) !== undefined
  const router = topics.routerPresence.parse(topic)
  return router !== null && access.tokenGeneration('router', router.r) !== undefined
}

/**
 * The composition root: opens the store, builds the access index, broker, publisher and request
 * pipeline, lets each service register itself, republishes state, and only then opens the listeners,
 * so the first client already sees current state. A start that fails on the way (a port in use, a
 * store that cannot be read) closes what it had opened before it rejects, so the process can end.
 */
export async function startHub(config: HubConfig, options: { log?: Logger } = {}): Promise<Hub> {
  const log = options.log ?? pino({ level: config.logLevel, base: { service: 'stagehub' } })
  const undo: (() => unknown)[] = []
  try {
    return await assembleHub(config, log, undo)
  } catch (err) {
    for (const step of undo.reverse()) {
      await Promise.resolve()
        .then(step)
        .catch((cleanupErr: unknown) =>
          log.warn({ err: cleanupErr }, 'could not close a part of a hub that failed to start'),
        )
    }
    throw err
  }
}

/** `startHub`'s work; `undo` collects how to close each part opened so far. */
async function assembleHub(config: HubConfig, log: Logger, undo: (() => unknown)[]): Promise<Hub> {
  const metrics = new HubMetrics()
  const tokens = createTokenService(config.jwt)
  const store = await openStore(config)
  undo.push(() => store.close())
  const link = config.cluster
    ? await ClusterLink.open(config.cluster, log.child({ component: 'cluster' }))
    : undefined
  if (link) undo.push(() => link.close())
  // before anything loads state or commits: every commit logs its changes, others' are held until start()
  const feed = link
    ? await ChangeFeed.open({
        store,
        link,
        log: log.child({ component: 'change-feed' }),
        // the coordinator purges the deployment's log (below)
        purgeEveryMs: 0,
      })
    : undefined
  if (feed) undo.push(() => feed.close())
  // work done once per deployment (docs/cluster.md#leases-and-liveness) runs where this says so
  const membership = link
    ? new ClusterMembership({
        link,
        log,
        // its devices and routers were marked lost meanwhile: they reconnect and say online again
        onDeclaredDead: () => broker.disconnectWhere((who) => who.role === 'device' || who.role === 'router'),
        onLiveChange: () => void publishStatus('online'),
      })
    : undefined
  const coordination = membership?.coordination ?? singleProcess(log)
  const isCoordinator = () => coordination.isCoordinator()
  const access = await AccessIndex.load(store)
  const acl = new Acl(access)
  const persistence = new DurableRetainedPersistence(await storeRetainedArchive(store), log, config.outbound)
  const audit = new AuditTrail({
    store,
    metrics,
    log: log.child({ component: 'audit' }),
    retentionDays: config.auditRetentionDays,
    isCoordinator,
  })
  undo.push(() => audit.stop())
  await audit.start()

  // the delegate closes over `pipeline`, `users` and `inbound`, declared below: clients arrive once the listeners are open
  const broker = await HubBroker.create(
    {
      tokens,
      metrics,
      log: log.child({ component: 'broker' }),
      maxPacketBytes: Math.max(256 * 1024, 4 * config.maxPayloadBytes),
      outbound: config.outbound,
      sessions: config.sessions,
      delegate: {
        acl,
        tokenGeneration: (role, id) => access.tokenGeneration(role, id),
        admit: (who) =>
          who.role === 'user' && !access.hasUser(who.id) ? users.admitNewUser(who) : undefined,
        userExists: (id) => access.hasUser(id),
        onRequest: (who, action, payload) => pipeline.handle(who, action, payload),
        onPublish: (who, topic, payload) => {
          const consumer = findTopic(topic)?.entry.consumer
          return consumer && consumer !== 'requests' ? inbound[consumer](who, topic, payload) : undefined
        },
        onConnected: (who) => media.connected(who),
        onDisconnected: (who, reason, superseded) => {
          presence.disconnected(who, reason, superseded)
          routers.disconnected(who, superseded)
          media.disconnected(who, superseded)
        },
        onRefused: (refusal) => audit.refused(refusal),
      },
    },
    persistence,
    link,
  )
  undo.push(
    () => persistence.flush(),
    () => broker.close(),
  )
  const publisher = new StatePublisher(broker, log.child({ component: 'state' }))
  publisher.register({
    name: 'presence',
    topics: async function* () {},
    keeps: (topic) => keepsPresence(access, topic),
  })
  const pipeline = new RequestPipeline({
    store,
    publisher,
    tokens,
    metrics,
    log: log.child({ component: 'requests' }),
    respond: (clientId, payload) =>
      broker
        .publish(topics.response.build(clientId), payload, { qos: 1 })
        .then(() => broker.closeIfRevoked(clientId)),
    maxPayloadBytes: config.maxPayloadBytes,
    rateLimit: config.rateLimit,
    accountRateLimit: config.accountRateLimit,
    requestIdTtlMs: config.requestIdTtlMs,
    onOutcome: (outcome) => audit.request(outcome),
    isCoordinator,
  })
  undo.push(() => pipeline.stop())
  await pipeline.start()
  audit.registerQuery(pipeline)
  registerHubStatus(pipeline, {
    metrics,
    version: HUB_VERSION,
    store: store.kind,
    cluster: membership && (() => membership.view()),
  })

  const passwords = new PasswordPool({ cost: config.passwordHashCost, ...config.passwordHashing })
  const users = new UsersService({
    store,
    pipeline,
    publisher,
    tokens,
    passwords,
    signupLimits: config.signupLimits,
    loginThrottle: config.loginThrottle,
    passwordChecks: {
      perClient: config.passwordChecks.accountPerClient,
      perUser: config.passwordChecks.accountPerUser,
      forgiveSeconds: config.passwordChecks.forgiveSeconds,
      slowdownMs: config.loginThrottle.slowdownMs,
    },
    userTokenTtlSeconds: config.userTokenTtlSeconds,
    log: log.child({ component: 'users' }),
    isCoordinator,
  })
  await users.start()
  const stages = new StagesService({
    store,
    pipeline,
    publisher,
    users,
    quotas: config.quotas,
    passwords,
    passwordChecks: {
      perUserAndStage: config.passwordChecks.stagePerUserAndStage,
      perUser: config.passwordChecks.stagePerUser,
      perStage: config.passwordChecks.stagePerStage,
      forgiveSeconds: config.passwordChecks.forgiveSeconds,
      slowdownMs: config.loginThrottle.slowdownMs,
    },
    log: log.child({ component: 'stages' }),
  })
  await stages.start()
  const devices = new DevicesService({
    store,
    pipeline,
    users,
    quotas: config.quotas,
    deviceTokenTtlSeconds: config.deviceTokenTtlSeconds,
  })
  await devices.start()
  const listening: { ports?: Listeners['ports'] } = {}
  const claims = new DeviceClaims({
    store,
    pipeline,
    tokens,
    log: log.child({ component: 'claims' }),
    claims: config.claims,
    deviceTokenTtlSeconds: config.deviceTokenTtlSeconds,
    // HTTP answers only once every listener is open
    ports: () => listening.ports!,
    isCoordinator,
  })
  await claims.start()
  await new FirmwareService(store, pipeline).start()
  const routers = new RoutersService({
    store,
    pipeline,
    publisher,
    routerTokenTtlSeconds: config.routerTokenTtlSeconds,
    routerReturnGraceSeconds: config.routerReturnGraceSeconds,
    log: log.child({ component: 'routers' }),
    isCurrent: (who) => broker.isCurrent(who),
    isCoordinator,
    processId: link?.processId,
  })
  await routers.start()
  const media = new MediaService({
    store,
    pipeline,
    log: log.child({ component: 'media' }),
    sendSignal: (topic, payload) => broker.publish(topic, payload, { qos: 1 }),
  })
  undo.push(() => media.stop())
  await media.start()
  publisher.project(new DeviceProjection(store))
  const presence = new DevicePresence({
    store,
    publisher,
    log: log.child({ component: 'presence' }),
    isCurrent: (who) => broker.isCurrent(who),
    isRegistered: (deviceId) => access.deviceOwner(deviceId) !== undefined,
    processId: link?.processId,
    tellDevice: (clientId, code, message) => {
      broker
        .publish(
          topics.response.build(clientId),
          JSON.stringify({ id: '', ok: false, error: { code, message } }),
        )
        // a device that sends while the hub shuts down gets no answer; that must not end the process
        .catch((err: unknown) =>
          log.debug({ err, clientId }, 'could not tell a device why its message was refused'),
        )
    },
  })
  // the catalogue names who consumes each client topic; requests go to the pipeline through the broker
  const inbound: Record<Exclude<Consumer, 'requests'>, NonNullable<BrokerDelegate['onPublish']>> = {
    presence: (who, topic, payload) => presence.inspect(who, topic, payload),
    routers: (who, topic, payload) => routers.inspect(who, topic, payload),
    media: (who, topic, payload) => media.inspect(who, topic, payload),
  }
  // one process: nothing is connected yet; in a cluster, what is online through other live processes stays
  const isLive = membership ? await membership.liveOthers() : undefined
  await presence.markAllOffline(isLive)
  await routers.markAllOffline(isLive)
  // a coordinator plans the distribution afresh (another process may have changed it meanwhile)
  coordination.onGained(() => void routers.distribute())
  membership?.heal([presence, routers])
  // periodic once-per-deployment tasks register here: coordination.every(name, intervalMs, task).
  if (feed) coordination.every('change log purge', CHANGE_LOG_PURGE_MS, () => feed.purge())
  undo.push(() => coordination.stop())
  publisher.follow(store)
  closeRevokedConnections(store, broker, access, users)
  const stopFollowing = followOutsideCommits(store, broker, access, log)
  undo.push(stopFollowing)
  // every listener is registered: the other processes' commits are announced from now on
  feed?.start()

  await publisher.republishAll(
    [...persistence.retainedTopics()].filter((t) => t !== topics.hubStatus.build()),
  )
  const since = new Date().toISOString()
  const status = (state: HubStatus['state']): HubStatus => ({
    state,
    version: HUB_VERSION,
    since: state === 'online' ? since : new Date().toISOString(),
    ...(membership && state === 'online' ? { processes: Math.max(1, membership.liveness.live.length) } : {}),
  })
  let statusClosed = false
  const publishStatus = (state: HubStatus['state']): Promise<void> =>
    statusClosed && state === 'online'
      ? Promise.resolve()
      : publisher
          .publish(topics.hubStatus.build(), status(state))
          .catch((err: unknown) => log.warn({ err }, 'could not publish hub/status'))

  const http = await createHttpServer(broker, config, log)
  undo.push(() => http.close())
  schemaValidation(http)
  errorReplies(http, metrics)
  corsHeaders(http, config.corsOrigins)
  healthRoutes(http, {
    // HTTP answers only once every listener is open, so a reachable store is what is left to check;
    // in a cluster also this process's liveness (a load balancer takes it out, see haproxy.cfg)
    ready: async () => {
      await store.ping()
      membership?.checkReady()
    },
  })
  explainRoute(http, (token, clientId) => broker.explainConnect(token, clientId))
  await http.register(users.routes)
  await http.register(claims.routes)
  webApp(http, { dir: config.webDir })
  // with METRICS_PORT, metrics are served there alone (e.g. on 127.0.0.1), not on the public port
  let metricsHttp: FastifyInstance | undefined
  if (config.metricsPort === undefined) {
    metricsRoute(http, { metrics, metricsToken: config.metricsToken })
  } else {
    // scrapes are not worth a log line each; failures are
    const metricsLog = log.child({ component: 'metrics' }, { level: log.levelVal > 40 ? log.level : 'warn' })
    metricsHttp = Fastify({ loggerInstance: metricsLog as FastifyBaseLogger })
    errorReplies(metricsHttp, metrics)
    metricsRoute(metricsHttp, { metrics, metricsToken: config.metricsToken })
    await metricsHttp.listen({ port: config.metricsPort, host: config.metricsHost })
  }
  if (membership) {
    undo.push(() => membership.stop())
    await membership.start()
  }
  await publishStatus('online')
  const listeners = await startListeners(broker, http, config)
  listening.ports = listeners.ports
  const ports = {
    ...listeners.ports,
    ...(metricsHttp ? { metrics: (metricsHttp.server.address() as AddressInfo).port } : {}),
  }
  log.info({ ports, store: store.kind, version: HUB_VERSION }, 'stagehub is listening')

  let closing: Promise<void> | undefined
  const close = () =>
    (closing ??= (async () => {
      log.info('shutting down')
      pipeline.stop()
      claims.stop()
      users.stop()
      media.stop()
      routers.stop()
      stopFollowing()
      // others' commits are no longer projected here; this process's last ones still reach them
      await feed?.stopReceiving()
      coordination.stop()
      await membership?.stop()
      statusClosed = true
      await publishStatus('offline')
      const listenersClosed = listeners.close()
      await broker.close()
      await listenersClosed
      await metricsHttp?.close()
      await persistence.flush()
      await feed?.close()
      await audit.stop()
      await store.close()
      await link?.close()
      log.info('stopped')
    })())

  return {
    config,
    ports,
    store,
    broker,
    tokens,
    access,
    users,
    claims,
    pipeline,
    feed,
    log,
    close,
  }
}

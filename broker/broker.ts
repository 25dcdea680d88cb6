import {
  Aedes,
  type AedesPublishPacket,
  type AuthenticateError,
  type Client,
  type PublishPacket,
} from 'aedes'
import type { Redis } from 'ioredis'
import type { Logger } from 'pino'
import type { Duplex } from 'node:stream'
import type { IncomingMessage } from 'node:http'
import type { ExplainReply } from '../schemas/http.ts'
import { topics } from '../schemas/topics.ts'
import type { Acl } from './acl.ts'
import { ClusterEmitter, routeOf } from './cluster-emitter.ts'
import type { HubMetrics } from './metrics.ts'
import {
  DRAIN_TIMEOUT_MESSAGE,
  type OutboundEvents,
  type OutboundLimits,
  boundOutbound,
} from './outbound-queue.ts'
import type { DurableRetainedPersistence } from './persistence.ts'
import { ProtocolGuard } from './protocol.ts'
import { SessionTable } from './sessions.ts'
import {
  type Identity,
  type TokenService,
  TokenRefusal,
  checkClientId,
  checkClientIdHolder,
  holderKey,
} from './tokens.ts'

/** A connection, subscription or publish the broker refused for lack of permission. */
export interface BrokerRefusal {
  kind: 'connect' | 'subscribe' | 'publish'
  /** Who, once the token was verified (a CONNECT refused for its token has nobody). */
  who?: Pick<Identity, 'role' | 'id'> | undefined
  clientId: string
  /** The topic of a refused publish, the filter of a refused subscription. */
  topic?: string
  /** CONNACK return code of a refused connection. */
  returnCode?: 4 | 5
  reason: string
}

/** What the broker asks of the services: nothing MQTT-specific crosses this line. */
export interface BrokerDelegate {
  acl: Acl
  /**
   * The stored token generation of a user, device or router: tokens with a lower `ver` are revoked.
   * Undefined for a device or router that is not registered; Infinity for a deleted user account.
   */
  tokenGeneration(role: 'user' | 'device' | 'router', id: string): number | undefined
  /** Whether a user account with this id exists (user tokens of unknown users are not refused). */
  userExists(id: string): boolean
  /**
   * A client published to its own `clients/{c}/req/{action}`; called after the ACL allowed it. The
   * request is consumed: it reaches no subscriber, whatever they subscribed to.
   */
  onRequest(who: Identity, action: string, payload: Buffer): void
  /**
   * Any other authorized client publish (presence, reported state, wills included). Returning a
   * reason refuses the message without closing the connection: it is consumed (routed nowhere, not
   * retained).
   */
  onPublish?(who: Identity, topic: string, payload: Buffer): string | undefined
  /**
   * Called for an accepted token before CONNACK: a promise holds the CONNACK until it settles, and a
   * rejection (a TokenRefusal, or any error: CONNACK 3) refuses the connection. Undefined: admitted.
   */
  admit?(who: Identity): Promise<void> | undefined
  /** Connection life cycle, for presence. */
  onConnected?(who: Identity): void
  /** `superseded`: a newer connection with the same client id took over (it is the client now). */
  onDisconnected?(who: Identity, reason: 'clean' | 'lost', superseded: boolean): void
  /** Every refusal of a permission by the broker (for the audit trail); must not throw or block. */
  onRefused?(refusal: BrokerRefusal): void
}

export interface BrokerOptions {
  tokens: TokenService
  delegate: BrokerDelegate
  metrics: HubMetrics
  log: Logger
  /** Whole MQTT packets above this size close the connection before they are buffered. */
  maxPacketBytes: number
  /** Per-connection outbound queue, and how long a connection's socket may stay full. */
  outbound: OutboundLimits & { drainTimeoutMs: number }
  /** Persistent sessions: how long one is kept offline, and how many one identity keeps. */
  sessions: { expiryMs: number; maxPerIdentity: number }
}

/**
 * This process's link to the other processes of a cluster (services/cluster/link.ts's ClusterLink):
 * its id, its Redis command connection (the message bus opens two like it) and its key prefix.
 */
export interface BrokerClusterLink {
  readonly processId: string
  readonly commands: Redis
  key(name: string): string
}

/**
 * Why a persistent session ended without its holder ending it (stagehub_sessions_ended_total);
 * `moved`: its client connected through another process of the cluster.
 */
type SessionEnd = 'expired' | 'identity_cap' | 'revoked' | 'moved'

const NOTHING = Buffer.alloc(0)
/** setTimeout's ceiling (~24.8 days); a later expiry is re-armed when this fires. */
const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * Aedes with stagehub's authentication and authorization (docs/protocol/README.md). One identity per client,
 * fixed at CONNECT from the verified token, and one ACL consulted on every subscribe, publish and
 * delivery.
 */
export class HubBroker {
  readonly aedes: Aedes
  readonly #identities = new WeakMap<Client, Identity>()
  /** The newest authenticated identity per client id, while it is connected. */
  readonly #newest = new Map<string, Identity>()
  /**
   * Who holds each persistent session (CONNECT with clean=false) by client id: the session, its
   * subscriptions and its queued messages outlive the connection, and only its holder may resume it.
   * Ended when the holder connects with a clean session (Aedes then discards the session), when it
   * expires offline, when its holder has too many, or when its holder's credentials are revoked.
   */
  readonly #sessions: SessionTable
  readonly #persistence: DurableRetainedPersistence
  #sessionTimer: NodeJS.Timeout | undefined
  /** When each connection's token expires (ms since the epoch): one timer for all, not one each. */
  readonly #expiries = new Map<Client, number>()
  #expiryTimer: NodeJS.Timeout | undefined
  #expiryAt = Infinity
  /** Connections whose CONNECT had an empty client id (Aedes then invents one, which must not pass). */
  readonly #emptyClientIds = new WeakSet<Client>()
  readonly #options: BrokerOptions
  readonly #protocol: ProtocolGuard
  /** One object for every connection's queue, not closures per connection. */
  readonly #outboundEvents: OutboundEvents
  /** Connections already being closed as slow consumers (Aedes reports a drain timeout many times). */
  readonly #slowClosed = new WeakSet<Client>()
  /** In a cluster: connections whose announcement (`$SYS/{process}/new/clients`) came back from Redis. */
  readonly #announced = new WeakSet<Client>()

  private constructor(aedes: Aedes, options: BrokerOptions, persistence: DurableRetainedPersistence) {
    this.aedes = aedes
    this.#options = options
    this.#persistence = persistence
    this.#sessions = new SessionTable(options.sessions)
    this.#protocol = new ProtocolGuard({
      maxPacketBytes: options.maxPacketBytes,
      log: options.log,
      metrics: options.metrics,
    })
    this.#outboundEvents = {
      dropped: () => options.metrics.outboundDropped.inc(),
      overflow: (client, queued) => this.#closeSlowConsumer(client, 'queue_full', queued),
    }
  }

  /**
   * With `cluster`, this process is one of several serving the deployment (docs/cluster.md#message-bus):
   * Aedes' broker id is the process id, and its messages travel on a ClusterEmitter.
   */
  static async create(
    options: BrokerOptions,
    persistence: DurableRetainedPersistence,
    cluster?: BrokerClusterLink,
  ): Promise<HubBroker> {
    let emitter: ClusterEmitter | undefined
    if (cluster) {
      emitter = await ClusterEmitter.open({
        processId: cluster.processId,
        redis: cluster.commands,
        channelPrefix: cluster.key('mqtt/'),
        log: options.log,
      })
      persistence.joinCluster({
        processId: cluster.processId,
        carries: (topic) => routeOf(topic) === 'bus',
      })
      emitter.onRetained = (packet, origin) => persistence.storeArrived(packet as never, origin)
      // Aedes queues what this process publishes for its persistent sessions; what others publish, here
      emitter.onArrival = (packet) =>
        packet.qos && packet.brokerId !== cluster.processId
          ? persistence.enqueueArrived(packet as never)
          : undefined
    }
    // the hooks close over `broker`, declared below: they only run once connections arrive, after it exists
    const aedes = await Aedes.createBroker({
      ...(cluster && emitter ? { id: cluster.processId, mq: emitter as never } : {}),
      persistence: persistence as never,
      maxClientsIdLength: 64,
      // Aedes closes a connection whose socket stays full this long; #watchConnections counts it
      drainTimeout: options.outbound.drainTimeoutMs,
      preConnect: (client, packet, done) => {
        if (!packet.clientId) broker.#emptyClientIds.add(client)
        done(null, true)
      },
      authenticate: (client, _username, password, done) => void broker.#authenticate(client, password, done),
      authorizePublish: (client, packet, done) => broker.#authorizePublish(client, packet, done),
      authorizeSubscribe: (client, subscription, done) => {
        const who = client ? broker.#identities.get(client) : undefined
        if (who && options.delegate.acl.canSubscribe(who, subscription.topic)) return done(null, subscription)
        options.log.info({ clientId: client?.id, topic: subscription.topic }, 'subscription refused')
        options.delegate.onRefused?.({
          kind: 'subscribe',
          who,
          clientId: client?.id ?? '',
          topic: subscription.topic,
          reason: 'the ACL does not allow this subscription',
        })
        done(null, null)
      },
      authorizeForward: (client, packet) => {
        const who = broker.#identities.get(client)
        if (!who || !options.delegate.acl.canReceive(who, packet.topic)) return null
        options.metrics.messagesOut.inc()
        return packet
      },
    }).catch((err: unknown) => {
      // the bus's Redis connections are open: they must not keep the process alive
      emitter?.close()
      throw err
    })
    const broker: HubBroker = new HubBroker(aedes, options, persistence)
    if (emitter) {
      emitter.onTakeover = (clientId, processId) => broker.#movedTo(clientId, processId)
      emitter.onAnnounced = (clientId) => {
        const client = broker.#client(clientId)
        if (client) broker.#announced.add(client)
      }
    }
    persistence.sessionEvents = {
      connected: (clientId) => broker.#client(clientId) !== undefined,
      overflow: (clientId, dropped, unacknowledged) =>
        broker.#sessionOverflow(clientId, dropped, unacknowledged),
    }
    broker.#watchConnections()
    return broker
  }

  /** Serves one transport stream (TCP socket, TLS socket or WebSocket stream) as an MQTT connection. */
  handle(stream: Duplex, request?: IncomingMessage): void {
    const client = (this.aedes.handle as (s: Duplex, r?: IncomingMessage) => Client)(stream, request)
    this.#protocol.install(client)
    boundOutbound(client, this.#options.outbound, this.#outboundEvents)
  }

  /**
   * Hub-originated publish (retained state, responses, chat): no publish rule applies, but delivery
   * does (Acl.canReceive): a response on `clients/{c}/res` reaches client c alone.
   */
  publish(
    topic: string,
    payload: Buffer | string,
    options: { qos?: 0 | 1; retain?: boolean } = {},
  ): Promise<void> {
    const packet: PublishPacket = {
      cmd: 'publish',
      topic,
      payload: typeof payload === 'string' ? Buffer.from(payload) : payload,
      qos: options.qos ?? 1,
      retain: options.retain ?? false,
      dup: false,
    }
    // once the broker is closing nobody can receive anything: work still finishing (a presence
    // update, a late response) must not fail, nor end the process with an unhandled rejection
    if (this.aedes.closed) return Promise.resolve()
    return new Promise((resolve, reject) =>
      this.aedes.publish(packet as AedesPublishPacket, (err) =>
        err && !this.aedes.closed ? reject(err) : resolve(),
      ),
    )
  }

  /**
   * Whether `who` is the newest authenticated connection of its client id. False for a connection a
   * takeover superseded, whose last will Aedes publishes while the new connection is being registered.
   */
  isCurrent(who: Identity): boolean {
    return this.#newest.get(who.clientId) === who
  }

  /**
   * A client id connected through another process (Aedes' `$SYS/{process}/new/clients`, just before
   * Aedes closes the connection here): the connection is superseded before its will is handled, so
   * neither the will nor the close changes the client's presence, and its persistent session, if any,
   * ends here (it does not follow the client to the other process), connected or kept offline.
   */
  #movedTo(clientId: string, processId: string): boolean {
    // Redis orders every process's announcements alike: one that arrives before this process's own
    // announcement of its connection was published before it, so that connection is the older one
    // (its process closes it when this announcement reaches it); a client that reconnected within the
    // bus's latency keeps its newer connection instead of losing both
    const client = this.#client(clientId)
    if (client && !client.closed && !this.#announced.has(client)) {
      this.#options.log.info({ clientId, processId }, 'an older connection elsewhere: this one stays')
      return false
    }
    if (this.#newest.delete(clientId))
      this.#options.log.info({ clientId, processId }, 'client connected through another process: taken over')
    // now, not when the connection's close is reported: Aedes reports none for a connection already
    // closing (a DISCONNECT being handled); a session kept here offline is left behind too
    this.#endSession(clientId, 'moved')
    return true
  }

  /** Closes every connection whose identity matches (a revoked token generation, a removed device). */
  disconnectWhere(matches: (who: Identity) => boolean): number {
    let closed = 0
    for (const client of Object.values(
      (this.aedes as unknown as { clients: Record<string, Client> }).clients,
    )) {
      const who = this.#identities.get(client)
      if (who && matches(who)) {
        this.#options.log.info({ clientId: client.id }, 'credentials revoked: closing the connection')
        client.close()
        closed++
      }
    }
    return closed
  }

  /**
   * Closes the connection of a client id whose credentials were revoked while it waited for an answer
   * (a deleted account's own user.delete): called once that answer is on its way.
   */
  closeIfRevoked(clientId: string): void {
    const client = this.#client(clientId)
    const who = client && this.#identities.get(client)
    if (!who || this.#credentialsCurrent(who)) return
    this.#options.log.info({ clientId }, 'credentials revoked: closing the connection after its answer')
    client.close()
  }

  /**
   * Ends the persistent sessions of an identity whose credentials were revoked (a deleted account, a
   * removed device): those offline at once, those connected when their connection closes.
   */
  endSessionsOf(who: Pick<Identity, 'role' | 'id'>): void {
    for (const clientId of this.#sessions.of(holderKey(who)))
      if (!this.#newest.has(clientId)) this.#endSession(clientId, 'revoked')
  }

  close(): Promise<void> {
    clearTimeout(this.#expiryTimer)
    clearTimeout(this.#sessionTimer)
    this.#expiries.clear()
    return new Promise((resolve) => this.aedes.close(() => resolve()))
  }

  #authenticate(
    client: Client,
    password: Readonly<Buffer> | undefined,
    done: (err: AuthenticateError | null, success: boolean | null) => void,
  ): void {
    const { delegate, metrics, log } = this.#options
    // mqtt-packet keeps the CONNECT packet as long as the connection lives (parser.settings): the token
    // need not live there too (0.3 KB per connection, and credentials are better not kept)
    const connect = (client as unknown as { _parser?: { settings?: { password?: unknown } } })._parser
      ?.settings
    if (connect && connect.password === password) connect.password = undefined
    let verified: Omit<Identity, 'clientId'> | undefined
    try {
      verified = this.#admit(
        password?.toString('utf8'),
        this.#emptyClientIds.has(client) ? '' : client.id,
        (claims) => (verified = claims),
      )
      // a literal of one fixed shape: a spread of the verified claims gave every identity its own hidden
      // class (about 0.6 KB per connection)
      const who: Identity = {
        role: verified.role,
        id: verified.id,
        clientId: client.id,
        name: verified.name,
        owner: verified.owner,
        ver: verified.ver,
        exp: verified.exp,
      }
      const admitting = delegate.admit?.(who)
      if (!admitting) return this.#accept(client, who, done)
      admitting.then(
        () => this.#accept(client, who, done),
        (err: unknown) => {
          if (err instanceof TokenRefusal) return refuse(err)
          // the store failed, not the token: "server unavailable", and no refusal of a permission to audit
          log.error({ err, clientId: client.id }, 'could not admit a connection')
          metrics.connectionRefusals.inc({ code: '3' })
          const unavailable = new Error('the hub could not admit the connection: try again')
          done(Object.assign(unavailable, { returnCode: 3 }) as AuthenticateError, null)
        },
      )
    } catch (err) {
      refuse(err instanceof TokenRefusal ? err : new TokenRefusal(4, 'token could not be checked', 'token'))
    }

    function refuse(refusal: TokenRefusal) {
      metrics.connectionRefusals.inc({ code: String(refusal.returnCode) })
      log.info(
        { clientId: client.id, code: refusal.returnCode, reason: refusal.message },
        'connection refused',
      )
      delegate.onRefused?.({
        kind: 'connect',
        who: verified,
        clientId: client.id,
        returnCode: refusal.returnCode,
        reason: refusal.message,
      })
      done(
        Object.assign(new Error(refusal.message), { returnCode: refusal.returnCode }) as AuthenticateError,
        null,
      )
    }
  }

  /**
   * The CONNECT checks of SPEC §2 in order: the token, the client id rules, the stored registration and
   * token generation. Returns the verified claims or throws the refusal; `verified` hears of the claims
   * as soon as the token verifies, so a refusal after that can name who was refused.
   */
  #admit(
    token: string | undefined,
    clientId: string,
    verified?: (claims: Omit<Identity, 'clientId'>) => void,
  ): Omit<Identity, 'clientId'> {
    const { tokens, delegate } = this.#options
    if (!token) throw new TokenRefusal(4, 'no token in the password field', 'token')
    const claims = tokens.verify(token)
    verified?.(claims)
    checkClientId(claims, clientId)
    checkClientIdHolder(
      claims,
      clientId,
      this.#reservedFor(clientId),
      this.#prefixOwners(clientId, claims),
      this.#holder(clientId),
    )
    if (claims.role !== 'admin') {
      const generation = delegate.tokenGeneration(claims.role, claims.id)
      if (generation === undefined)
        throw new TokenRefusal(5, `${claims.role} ${claims.id} is not registered`, 'registration')
      if ((claims.ver ?? 0) < generation) {
        throw new TokenRefusal(
          5,
          generation === Infinity
            ? `user ${claims.id} was deleted`
            : `${claims.role} token generation ${claims.ver ?? 0} was revoked (current: ${generation})`,
          'registration',
        )
      }
    }
    return claims
  }

  /**
   * What a CONNECT with this token and client id would get now, and why (POST /auth/explain): the very
   * checks of #admit, nothing connected or recorded. Claims are shown only for a token whose
   * signature verifies, so the answer is about its bearer's own token and never about anyone else's.
   */
  explainConnect(token: string, clientId: string): ExplainReply {
    const { tokens } = this.#options
    let claims: Omit<Identity, 'clientId'> | undefined
    const shown = (expired: boolean): ExplainReply['token'] =>
      claims && {
        role: claims.role,
        sub: claims.id,
        ...(claims.owner !== undefined ? { owner: claims.owner } : {}),
        ...(claims.ver !== undefined ? { ver: claims.ver } : {}),
        expiresAt: new Date(claims.exp * 1000).toISOString(),
        expired,
      }
    const refused = (refusal: TokenRefusal): ExplainReply => {
      const explained = shown(refusal.check === 'expiry')
      return {
        accepted: false,
        returnCode: refusal.returnCode,
        check: refusal.check,
        reason: refusal.message,
        ...(explained ? { token: explained } : {}),
      }
    }
    try {
      this.#admit(token, clientId, (verified) => (claims = verified))
      return { accepted: true, returnCode: 0, token: shown(false) }
    } catch (err) {
      if (!(err instanceof TokenRefusal)) throw err
      if (err.check !== 'expiry') return refused(err)
      // expired: with its claims when they are good, else what is wrong with them (a new token needs both)
      try {
        claims = tokens.verify(token, { ignoreExpiration: true })
      } catch (claimsErr) {
        if (claimsErr instanceof TokenRefusal) return refused(claimsErr)
        throw claimsErr
      }
      return refused(err)
    }
  }

  /** Registers an accepted connection; one that closed during an asynchronous admission is left alone. */
  #accept(
    client: Client,
    who: Identity,
    done: (err: AuthenticateError | null, success: boolean | null) => void,
  ): void {
    if (!client.closed) {
      this.#identities.set(client, who)
      this.#newest.set(who.clientId, who)
      if (client.clean) this.#sessions.end(who.clientId)
      else {
        this.#persistence.sessionConnected(who.clientId)
        for (const ending of this.#sessions.connected(who.clientId, holderKey(who)))
          this.#endSession(ending, 'identity_cap')
      }
      this.#armExpiry(client, who.exp)
    }
    done(null, true)
  }

  #authorizePublish(client: Client | null, packet: PublishPacket, done: (err?: Error | null) => void): void {
    const { delegate, metrics, log } = this.#options
    const who = client ? this.#identities.get(client) : undefined
    if (!who) return done(new Error('publish without an authenticated client'))
    if (!this.#credentialsCurrent(who)) {
      // revoked credentials (a removed or rotated-out device/router, a signed-out user): the connection is
      // being closed, and its last will (published during that close) must not put its presence back
      log.info({ clientId: who.clientId, topic: packet.topic }, 'publish with revoked credentials refused')
      this.#refusedPublish(who, packet.topic, 'credentials revoked')
      return done(new Error('credentials revoked'))
    }
    const decision = delegate.acl.canPublish(who, packet.topic)
    if (!decision.allowed) {
      log.warn(
        { clientId: who.clientId, topic: packet.topic },
        'unauthorized publish: closing the connection',
      )
      this.#refusedPublish(who, packet.topic, 'the ACL does not allow this publish: connection closed')
      return done(new Error(`not allowed to publish to ${packet.topic}`))
    }
    metrics.messagesIn.inc()
    if (!decision.retain) packet.retain = false
    const request = topics.request.parse(packet.topic)
    if (request) {
      delegate.onRequest(who, request.action, packet.payload as Buffer)
      consume(packet)
    } else {
      const refusal = delegate.onPublish?.(who, packet.topic, packet.payload as Buffer)
      if (refusal) {
        log.info({ clientId: who.clientId, topic: packet.topic, reason: refusal }, 'message refused')
        consume(packet)
      }
    }
    done(null)
  }

  #refusedPublish(who: Identity, topic: string, reason: string): void {
    this.#options.delegate.onRefused?.({ kind: 'publish', who, clientId: who.clientId, topic, reason })
  }

  /** Whether a client id is a registered device's or router's id, reserved for its own tokens. */
  #reservedFor(clientId: string): 'device' | 'router' | undefined {
    const { delegate } = this.#options
    if (delegate.tokenGeneration('device', clientId) !== undefined) return 'device'
    if (delegate.tokenGeneration('router', clientId) !== undefined) return 'router'
    return undefined
  }

  /**
   * The registered identities whose id followed by '-' begins this client id: ids of the form
   * `{id}-…` are reserved for that identity (ids may contain '-' themselves, so every '-' counts).
   */
  #prefixOwners(clientId: string, caller: Pick<Identity, 'id'>): string[] {
    if (clientId.startsWith(`${caller.id}-`)) return []
    const { delegate } = this.#options
    const owners: string[] = []
    for (let dash = clientId.indexOf('-', 1); dash > 0; dash = clientId.indexOf('-', dash + 1)) {
      const id = clientId.slice(0, dash)
      for (const role of ['device', 'router'] as const)
        if (delegate.tokenGeneration(role, id) !== undefined) owners.push(holderKey({ role, id }))
      if (delegate.userExists(id)) owners.push(holderKey({ role: 'user', id }))
    }
    return owners
  }

  /** Who holds a client id now: its connected identity, else the holder of its persistent session. */
  #holder(clientId: string): string | undefined {
    const connected = this.#newest.get(clientId)
    return connected ? holderKey(connected) : this.#sessions.holder(clientId)
  }

  /** A persistent session's connection closed: its session is kept offline, within the limits. */
  #sessionOffline(client: Client, who: Identity): void {
    if (client.clean || this.#sessions.holder(who.clientId) !== holderKey(who)) return
    if (!this.#credentialsCurrent(who)) return void this.#endSession(who.clientId, 'revoked')
    for (const ending of this.#sessions.disconnected(who.clientId, Date.now()))
      this.#endSession(ending, 'identity_cap')
    this.#scheduleSessionExpiry()
  }

  #scheduleSessionExpiry(): void {
    if (this.#sessionTimer) return
    const at = this.#sessions.nextExpiry()
    if (at === Infinity) return
    this.#sessionTimer = setTimeout(
      () => {
        this.#sessionTimer = undefined
        for (const clientId of this.#sessions.due(Date.now())) this.#endSession(clientId, 'expired')
        this.#scheduleSessionExpiry()
      },
      Math.max(0, Math.min(at - Date.now(), MAX_TIMER_MS)),
    )
    this.#sessionTimer.unref()
  }

  /** Ends a persistent session that is not connected: the id is free again, its messages are gone. */
  #endSession(clientId: string, reason: SessionEnd): void {
    if (!this.#sessions.end(clientId)) return
    const { metrics, log } = this.#options
    metrics.sessionsEnded.inc({ reason })
    log.info({ clientId, reason, ...this.#persistence.queued(clientId) }, 'persistent session ended')
    this.#persistence
      .endSession(clientId)
      .catch((err: unknown) => log.error({ err, clientId }, 'could not end a persistent session'))
  }

  /**
   * A persistent session's queue overflowed and lost messages. When everything in it was sent to its
   * connected client and not acknowledged (PUBACK), the client reads without acknowledging: it is
   * closed as a slow consumer, as the outbound queue does.
   */
  #sessionOverflow(clientId: string, dropped: number, unacknowledged: boolean): void {
    this.#options.metrics.sessionDropped.inc(dropped)
    const client = this.#client(clientId)
    if (client && unacknowledged)
      this.#closeSlowConsumer(client, 'unacknowledged', this.#persistence.queued(clientId))
  }

  /** The connected client of a client id. */
  #client(clientId: string): Client | undefined {
    return (this.aedes as unknown as { clients: Record<string, Client | undefined> }).clients[clientId]
  }

  /** Users, devices and routers keep a stored token generation no newer than their token's. */
  #credentialsCurrent(who: Identity): boolean {
    if (who.role === 'admin') return true
    const generation = this.#options.delegate.tokenGeneration(who.role, who.id)
    return generation !== undefined && (who.ver ?? 0) >= generation
  }

  #armExpiry(client: Client, exp: number): void {
    const at = exp * 1000
    this.#expiries.set(client, at)
    if (at < this.#expiryAt) this.#scheduleExpiry(at)
  }

  #scheduleExpiry(at: number): void {
    clearTimeout(this.#expiryTimer)
    this.#expiryAt = at
    this.#expiryTimer = setTimeout(() => this.#expire(), Math.max(0, Math.min(at - Date.now(), MAX_TIMER_MS)))
    this.#expiryTimer.unref()
  }

  /** Closes every connection whose token has expired, then waits for the next expiry. */
  #expire(): void {
    this.#expiryTimer = undefined
    this.#expiryAt = Infinity
    const now = Date.now()
    let next = Infinity
    for (const [client, at] of this.#expiries) {
      if (at > now) {
        next = Math.min(next, at)
        continue
      }
      this.#expiries.delete(client)
      this.#options.log.info({ clientId: client.id }, 'token expired: closing the connection')
      client.close()
    }
    if (next < Infinity) this.#scheduleExpiry(next)
  }

  #watchConnections(): void {
    const { metrics, delegate } = this.#options
    this.aedes.on('clientReady', (client) => {
      const who = this.#identities.get(client)
      if (!who) return
      metrics.connections.inc({ role: who.role })
      delegate.onConnected?.(who)
    })
    this.aedes.on('clientDisconnect', (client) => {
      this.#expiries.delete(client)
      const who = this.#identities.get(client)
      if (!who) return
      metrics.connections.dec({ role: who.role })
      const superseded = this.#newest.get(who.clientId) !== who
      if (!superseded) {
        this.#newest.delete(who.clientId)
        this.#sessionOffline(client, who)
      }
      const reason = (client as unknown as { _disconnected: boolean })._disconnected ? 'clean' : 'lost'
      delegate.onDisconnected?.(who, reason, superseded)
    })
    this.aedes.on('clientError', (client, err) => {
      if (err.message === DRAIN_TIMEOUT_MESSAGE) this.#closeSlowConsumer(client, 'drain_timeout')
    })
  }

  /**
   * A connection that does not take what it is sent: its queue overflowed (a QoS 1 message would be
   * lost) or its socket did not drain in time. Closing it is what keeps memory bounded; the client
   * can reconnect and read its state again from the retained topics.
   */
  #closeSlowConsumer(
    client: Client,
    reason: 'queue_full' | 'drain_timeout' | 'unacknowledged',
    queued?: { messages: number; bytes: number },
  ): void {
    if (this.#slowClosed.has(client)) return
    this.#slowClosed.add(client)
    this.#options.metrics.slowConsumerDisconnects.inc({ reason })
    this.#options.log.warn(
      { clientId: client.id, reason, ...queued },
      {
        queue_full: 'slow consumer: outbound queue full, closing the connection',
        drain_timeout: 'slow consumer: socket did not drain in time, closing the connection',
        unacknowledged: 'slow consumer: too many QoS 1 messages unacknowledged, closing the connection',
      }[reason],
    )
    client.close()
  }
}

/**
 * A client publish the hub has taken (a request) or refused: Aedes still acknowledges it, as the
 * client expects, but it goes, empty, to a topic delivered to nobody (see soleRecipient).
 */
function consume(packet: PublishPacket): void {
  packet.topic = topics.consumed.build()
  packet.payload = NOTHING
  packet.retain = false
}

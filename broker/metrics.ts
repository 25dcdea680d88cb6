import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

/** Every instrument the hub exports at /metrics, in one registry per hub (tests run several hubs). */
export class HubMetrics {
  readonly registry = new Registry()
  readonly connections = new Gauge({
    name: 'stagehub_connections',
    help: 'Open MQTT connections by role',
    labelNames: ['role'],
    registers: [this.registry],
  })
  readonly connectionRefusals = new Counter({
    name: 'stagehub_connection_refusals_total',
    help: 'Refused MQTT connections by CONNACK return code',
    labelNames: ['code'],
    registers: [this.registry],
  })
  readonly messagesIn = new Counter({
    name: 'stagehub_messages_in_total',
    help: 'PUBLISH packets received from clients',
    registers: [this.registry],
  })
  readonly messagesOut = new Counter({
    name: 'stagehub_messages_out_total',
    help: 'PUBLISH packets delivered to clients',
    registers: [this.registry],
  })
  readonly outboundDropped = new Counter({
    name: 'stagehub_outbound_dropped_total',
    help: "QoS 0 messages not delivered because the connection's outbound queue was full",
    registers: [this.registry],
  })
  readonly slowConsumerDisconnects = new Counter({
    name: 'stagehub_slow_consumer_disconnects_total',
    help: 'Connections closed because they did not take what they were sent (queue_full, drain_timeout, unacknowledged)',
    labelNames: ['reason'],
    registers: [this.registry],
  })
  readonly sessionDropped = new Counter({
    name: 'stagehub_session_dropped_total',
    help: "QoS 1 messages dropped (oldest first) because a persistent session's queue was full",
    registers: [this.registry],
  })
  readonly sessionsEnded = new Counter({
    name: 'stagehub_sessions_ended_total',
    help: 'Persistent sessions ended by the hub (expired offline, identity_cap, revoked credentials, moved to another process)',
    labelNames: ['reason'],
    registers: [this.registry],
  })
  readonly requests = new Counter({
    name: 'stagehub_requests_total',
    help: 'Requests by action and outcome code (ok or an error code)',
    labelNames: ['action', 'code'],
    registers: [this.registry],
  })
  readonly requestLatency = new Histogram({
    name: 'stagehub_request_duration_seconds',
    help: 'Time from a request arriving to its response being published',
    labelNames: ['action'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  })
  readonly httpRefusals = new Counter({
    name: 'stagehub_http_refusals_total',
    help: 'HTTP requests answered with an error, by route and code (sign-up and log-in limits among them)',
    labelNames: ['route', 'code'],
    registers: [this.registry],
  })
  readonly storeLatency = new Histogram({
    name: 'stagehub_store_commit_duration_seconds',
    help: 'Time to durably commit a store transaction',
    buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
    registers: [this.registry],
  })

  readonly auditDropped = new Counter({
    name: 'stagehub_audit_entries_dropped_total',
    help: 'Audit trail entries dropped because the store could not keep up (see the log)',
    registers: [this.registry],
  })

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'stagehub_' })
  }
}

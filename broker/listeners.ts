import net from 'node:net'
import tls from 'node:tls'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import websocket from '@fastify/websocket'
import { createWebSocketStream } from 'ws'
import type { Logger } from 'pino'
import type { HubBroker } from './broker.ts'
import { ConfigError, type ListenerConfig } from './config.ts'

export interface Listeners {
  http: FastifyInstance
  ports: { mqtt: number; http: number; mqtts?: number }
  /** Stops accepting connections; resolves once every MQTT connection is closed (close the broker meanwhile). */
  close(): Promise<void>
}

/**
 * The HTTP server (fastify) with MQTT over WebSocket at /mqtt. Routes are added by the caller before
 * `startListeners`.
 */
export async function createHttpServer(
  broker: HubBroker,
  config: ListenerConfig,
  log: Logger,
): Promise<FastifyInstance> {
  // request lines are debug noise (metrics scrapes, health checks); warnings and errors still show
  const httpLog = log.child({ component: 'http' }, { level: log.levelVal > 30 ? log.level : 'warn' })
  const http = Fastify({
    loggerInstance: httpLog as FastifyBaseLogger,
    bodyLimit: 64 * 1024,
    // request.ip: the TCP peer, or the client a trusted proxy names (the per-address auth limits)
    trustProxy: config.trustedProxies.length > 0 ? config.trustedProxies : false,
  })
  await http.register(websocket, {
    options: { maxPayload: Math.max(256 * 1024, 4 * config.maxPayloadBytes) },
  })
  http.get('/mqtt', { websocket: true }, (socket, request) => {
    // created synchronously in the handler so no early frame is lost
    broker.handle(createWebSocketStream(socket), request.raw)
  })
  return http
}

/**
 * Opens TCP (noDelay: no Nagle stall between SUBACK and retained PUBLISH), optional TLS, and HTTP. If
 * one cannot open, those already open are closed again and the error names the port and its variable.
 */
export async function startListeners(
  broker: HubBroker,
  http: FastifyInstance,
  config: ListenerConfig,
): Promise<Listeners> {
  const tcp = net.createServer({ noDelay: true }, (socket) => broker.handle(socket))
  let secure: tls.Server | undefined
  try {
    await listen(tcp, config.mqttPort, config.host, 'MQTT_PORT')
    if (config.tls) {
      secure = tls.createServer({ cert: config.tls.cert, key: config.tls.key }, (socket) => {
        socket.setNoDelay(true)
        broker.handle(socket)
      })
      await listen(secure, config.tls.port, config.host, 'MQTTS_PORT')
    }
    await http.listen({ port: config.httpPort, host: config.host }).catch((err: NodeJS.ErrnoException) => {
      throw listenError(err, config.httpPort, config.host, 'HTTP_PORT')
    })
  } catch (err) {
    await Promise.all([closeServer(tcp), secure && closeServer(secure)])
    throw err
  }

  const ports = {
    mqtt: (tcp.address() as AddressInfo).port,
    http: (http.server.address() as AddressInfo).port,
    ...(secure ? { mqtts: (secure.address() as AddressInfo).port } : {}),
  }
  return {
    http,
    ports,
    async close() {
      // servers stop accepting now but only report closed once their connections are gone, which
      // happens when the broker closes its clients: the caller closes the broker meanwhile
      const mqttClosed = Promise.all([closeServer(tcp), secure ? closeServer(secure) : undefined])
      await http.close()
      await mqttClosed
    },
  }
}

function listen(server: net.Server, port: number, host: string, variable: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (err: Error) => reject(listenError(err, port, host, variable))
    server.once('error', fail)
    server.listen(port, host, () => {
      server.off('error', fail)
      resolve()
    })
  })
}

/** The operator's question is which setting to change: a bare EADDRINUSE does not say. */
function listenError(err: NodeJS.ErrnoException, port: number, host: string, variable: string): Error {
  switch (err.code) {
    case 'EADDRINUSE':
      return new ConfigError(
        `${variable}: port ${port} on ${host} is already in use (another hub?): stop what listens there, or set ${variable} to a free port (0 picks one)`,
      )
    case 'EACCES':
      return new ConfigError(
        `${variable}: no permission to listen on port ${port} (ports below 1024 need privileges): set ${variable} to a higher port`,
      )
    case 'EADDRNOTAVAIL':
      return new ConfigError(`HOST: ${host} is not an address of this machine (listening for ${variable})`)
    default:
      return err
  }
}

function closeServer(server: net.Server): Promise<void> {
  // close() on a server that is not listening reports ERR_SERVER_NOT_RUNNING: it is closed either way
  return new Promise((resolve) => server.close(() => resolve()))
}

import type { Client } from 'aedes'
import type { Packet } from 'mqtt-packet'
import type { Logger } from 'pino'
import type { HubMetrics } from './metrics.ts'

/**
 * MQTT 3.1.1 as written, enforced in mqtt-packet's parser before Aedes sees a packet. mqtt-packet
 * checks framing but lets through what 3.1.1 forbids, and Aedes trusts what it gets: a will of QoS 3,
 * a password without a user name, packet id 0, SUBSCRIBE/UNSUBSCRIBE without a topic filter, oversized
 * packets buffered whole, and protocol levels it cannot parse closed without the CONNACK 0x01 the
 * standard requires. mqtt-packet has no option or hook for any of this, so each connection's parser
 * gets two guarded steps in place of its own.
 */

export interface ProtocolGuardOptions {
  /** Whole MQTT packets above this size close the connection before they are buffered. */
  maxPacketBytes: number
  log: Logger
  metrics: HubMetrics
}

interface ParserInternals {
  packet: Packet & { length: number; messageId?: number }
  error: Error | null
  _list: { length: number; readUInt8(offset: number): number; readUInt16BE(offset: number): number }
  _parseLength(): boolean
  _parsePayload(): boolean
  _emitError(err: Error): void
  _hubGuard?: ProtocolGuard
  _hubClient?: Client
}

/** One per broker; every connection's parser points at it rather than holding closures of its own. */
export class ProtocolGuard {
  readonly options: ProtocolGuardOptions
  /** mqtt-packet's own steps (from the parser prototype Aedes uses), which the guarded ones call first. */
  parseLength!: () => boolean
  parsePayload!: () => boolean

  constructor(options: ProtocolGuardOptions) {
    this.options = options
  }

  /** Guards one connection's parser. */
  install(client: Client): void {
    const parser = (client as unknown as { _parser: ParserInternals })._parser
    if (!this.parseLength) {
      const own = Object.getPrototypeOf(parser) as ParserInternals
      this.parseLength = own._parseLength
      this.parsePayload = own._parsePayload
    }
    parser._hubGuard = this
    parser._hubClient = client
    parser._parseLength = guardedParseLength
    parser._parsePayload = guardedParsePayload
  }
}

/** The protocol levels served: 3 (MQTT 3.1) and 4 (MQTT 3.1.1). */
const SUPPORTED_LEVELS: ReadonlySet<number> = new Set([3, 4])

/**
 * What a whole, parsed packet breaks of MQTT 3.1.1 that mqtt-packet accepts; undefined when nothing.
 * Each of these is a protocol violation, on which the server closes the connection (§4.8).
 */
export function violation(packet: Packet): string | undefined {
  switch (packet.cmd) {
    case 'connect':
      if (packet.will && (packet.will.qos as number) === 3) return 'will QoS 3 is not allowed [MQTT-3.1.2-14]'
      if (packet.password !== undefined && packet.username === undefined)
        return 'password flag without user name flag [MQTT-3.1.2-22]'
      return undefined
    case 'publish':
      return packet.qos > 0 && packet.messageId === 0
        ? 'PUBLISH of QoS > 0 with packet id 0 [MQTT-2.3.1-1]'
        : undefined
    case 'subscribe':
      if (packet.messageId === 0) return 'SUBSCRIBE with packet id 0 [MQTT-2.3.1-1]'
      return packet.subscriptions.length === 0 ? 'SUBSCRIBE without a topic filter [MQTT-3.8.3-3]' : undefined
    case 'unsubscribe':
      if (packet.messageId === 0) return 'UNSUBSCRIBE with packet id 0 [MQTT-2.3.1-1]'
      return packet.unsubscriptions.length === 0
        ? 'UNSUBSCRIBE without a topic filter [MQTT-3.10.3-2]'
        : undefined
    default:
      return undefined
  }
}

/** mqtt-packet's length step, then the size limit: refused as soon as the length is known. */
function guardedParseLength(this: ParserInternals): boolean {
  const guard = this._hubGuard!
  const { maxPacketBytes, log } = guard.options
  const complete = guard.parseLength.call(this)
  if (complete && this.packet.length > maxPacketBytes) {
    log.warn(
      { clientId: this._hubClient?.id, bytes: this.packet.length },
      'packet too large: closing the connection',
    )
    this._emitError(
      new Error(`packet of ${this.packet.length} bytes exceeds the ${maxPacketBytes}-byte limit`),
    )
    return false
  }
  return complete
}

/** mqtt-packet's payload step, with the protocol level answered first and the packet checked after. */
function guardedParsePayload(this: ParserInternals): boolean {
  const guard = this._hubGuard!
  const { log, metrics } = guard.options
  if (this.packet.cmd === 'connect' && this._list.length >= this.packet.length) {
    const level = unsupportedLevel(this)
    if (level !== undefined) {
      // a CONNECT of another protocol version cannot be parsed as 3.1.1 (level 5 has properties,
      // later levels anything): pass Aedes only the level, and it answers CONNACK 0x01 and closes
      metrics.connectionRefusals.inc({ code: '1' })
      log.info({ level }, 'connection refused: unsupported protocol level')
      Object.assign(this.packet, { protocolVersion: level, clientId: '', clean: true, keepalive: 0 })
      return true
    }
  }
  const complete = guard.parsePayload.call(this)
  if (!complete || this.error) return complete
  const broken = violation(this.packet)
  if (broken) {
    log.info(
      { clientId: this._hubClient?.id, cmd: this.packet.cmd, reason: broken },
      'protocol violation: closing the connection',
    )
    this._emitError(new Error(`protocol violation: ${broken}`))
    return false
  }
  return complete
}

/** The protocol level byte of a whole CONNECT when it is one not served; undefined otherwise. */
function unsupportedLevel(parser: ParserInternals): number | undefined {
  const list = parser._list
  if (list.length < 2) return undefined
  const at = 2 + list.readUInt16BE(0)
  // a malformed protocol name is mqtt-packet's to refuse
  if (at >= parser.packet.length) return undefined
  const level = list.readUInt8(at)
  return SUPPORTED_LEVELS.has(level) ? undefined : level
}

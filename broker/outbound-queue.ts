import type { AedesPublishPacket, Client } from 'aedes'

/**
 * A bounded outbound queue per connection, so that one slow or frozen subscriber cannot stall
 * delivery to everybody else (issue 10).
 *
 * Why it is needed: Aedes delivers a message through mqemitter, which finishes a message only when
 * every matching subscriber's delivery callback has run, and lets 100 messages be in flight at once
 * (its `concurrency`). A subscriber's callback runs after its socket accepted the write, and when the
 * socket's buffer is full, only after the socket drained. So a subscriber that stops reading holds
 * every message it matches; after 100 of them every publish of the broker waits (responses to other
 * users included), mqemitter's own queue grows without bound, and when Aedes' drain timeout finally
 * fails the thousands of waiting callbacks, mqemitter releases its queue recursively until the stack
 * overflows.
 *
 * What this does: it replaces the connection's two delivery functions (the ones Aedes' SUBSCRIBE
 * handler registers with mqemitter, read from the client when a subscription is made: installed
 * right after the connection is created, before any packet is read). A message is accepted into the
 * connection's queue and mqemitter is told at once that this subscriber is done with it; Aedes then
 * writes it as before. Messages the socket has not taken yet are counted, with their bytes; beyond
 * either limit a QoS 0 message is dropped (MQTT's at-most-once allows it) and a QoS 1/2 message,
 * which must not be lost silently, closes the connection. A connection whose socket does not drain
 * within Aedes' `drainTimeout` is closed by Aedes itself; see `DRAIN_TIMEOUT_MESSAGE`.
 *
 * Messages with the retain flag set bypass the queue: on a live connection MQTT 3.1.1 sets it only on
 * retained messages sent because of a new SUBSCRIBE [MQTT-3.3.1-8, -9], and those come from the
 * subscriber's own retained stream, which waits for each write (so it paces itself by the socket and
 * nobody else waits on it). Queueing them would instead overflow the queue of a client that
 * subscribes to a filter with more retained topics than the message limit.
 */

export interface OutboundLimits {
  /** Messages accepted for a connection and not yet taken by its socket. */
  maxMessages: number
  /** Their bytes (topic + payload). A message is always accepted into an empty queue. */
  maxBytes: number
}

export interface QueueOverflow {
  messages: number
  bytes: number
}

export interface OutboundEvents {
  /** A QoS 0 message was dropped because the connection's queue is full. */
  dropped(): void
  /** A QoS 1/2 message did not fit: the caller closes the connection (called once per connection). */
  overflow(client: Client, queued: QueueOverflow): void
}

/** The message of the error Aedes closes a connection with when its socket did not drain in time. */
export const DRAIN_TIMEOUT_MESSAGE = 'drain timeout'

type Deliver = (packet: AedesPublishPacket, done: () => void) => void

interface ClientInternals {
  deliver0: Deliver
  deliverQoS: Deliver
}

class OutboundQueue {
  messages = 0
  bytes = 0
  overflowed = false

  constructor(
    readonly client: Client,
    readonly limits: OutboundLimits,
    readonly events: OutboundEvents,
  ) {}

  accept(packet: AedesPublishPacket, done: () => void, deliver: Deliver, atMostOnce: boolean): void {
    if (packet.retain) return deliver(packet, done)
    const size = packet.topic.length + packet.payload.length
    if (this.overflowed) return process.nextTick(done)
    if (
      this.messages >= this.limits.maxMessages ||
      (this.messages > 0 && this.bytes + size > this.limits.maxBytes)
    ) {
      if (atMostOnce) {
        this.events.dropped()
      } else {
        this.overflowed = true
        this.events.overflow(this.client, { messages: this.messages, bytes: this.bytes })
      }
      return process.nextTick(done)
    }
    this.messages++
    this.bytes += size
    deliver(packet, () => {
      this.messages--
      this.bytes -= size
    })
    // mqemitter's callback on the next tick, not synchronously: it may start the next queued message
    // from inside this call, and a long queue would nest that as deep as it is long
    process.nextTick(done)
  }
}

/** Puts a bounded outbound queue in front of a new connection's delivery (before it reads any packet). */
export function boundOutbound(client: Client, limits: OutboundLimits, events: OutboundEvents): void {
  const internals = client as unknown as ClientInternals
  const queue = new OutboundQueue(client, limits, events)
  const deliver0 = internals.deliver0
  const deliverQoS = internals.deliverQoS
  internals.deliver0 = (packet, done) => queue.accept(packet, done, deliver0, true)
  // Aedes' deliverQoS hands QoS 0 messages to `client.deliver0`, which is the wrapper above: route them
  // there directly so that they are counted once
  internals.deliverQoS = (packet, done) =>
    packet.qos === 0
      ? queue.accept(packet, done, deliver0, true)
      : queue.accept(packet, done, deliverQoS, false)
}

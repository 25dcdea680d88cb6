import type { Socket } from 'node:net'
import type { MqttClient } from 'mqtt'

/**
 * Nagle off on a TCP connection to the hub: MQTT.js leaves it on, which delays small packets (a
 * request, a PUBACK) by up to 40 ms. Node only: the hub client takes it as its `onConnection`.
 */
export function noDelay(client: MqttClient): void {
  const stream = client.stream as Partial<Socket> | undefined
  stream?.setNoDelay?.(true)
}

import net from 'node:net'
import mqttPacket, { type Packet } from 'mqtt-packet'

/**
 * A bare MQTT 3.1.1 client on a plain socket, for what MQTT.js cannot do: stop reading its socket
 * (a slow or frozen consumer) and later read again, seeing exactly which messages reached it.
 */
export class RawClient {
  readonly clientId: string
  readonly #socket: net.Socket
  readonly #parser = mqttPacket.parser({ protocolVersion: 4 })
  readonly #waiting: { cmd: string; resolve: (p: Packet) => void }[] = []
  /** Every PUBLISH received, in order (only while reading). */
  readonly messages: { topic: string; payload: Buffer; qos: number }[] = []
  #nextId = 1
  #closed = false

  private constructor(socket: net.Socket, clientId: string) {
    this.#socket = socket
    this.clientId = clientId
    this.#parser.on('packet', (packet) => {
      if (packet.cmd === 'publish') {
        this.messages.push({ topic: packet.topic, payload: packet.payload as Buffer, qos: packet.qos })
        if (packet.qos > 0) this.#send({ cmd: 'puback', messageId: packet.messageId! })
      }
      const i = this.#waiting.findIndex((w) => w.cmd === packet.cmd)
      if (i >= 0) this.#waiting.splice(i, 1)[0]!.resolve(packet)
    })
    socket.on('data', (chunk) => this.#parser.parse(chunk))
    socket.on('error', () => undefined)
    socket.on('close', () => {
      this.#closed = true
    })
  }

  /** Connects (keepalive 0: the hub never closes it for silence) and resolves after CONNACK 0. */
  static async connect(port: number, clientId: string, token: string): Promise<RawClient> {
    const socket = net.connect({ host: '127.0.0.1', port })
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', reject)
    })
    const client = new RawClient(socket, clientId)
    const connack = client.#next('connack')
    client.#send({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clean: true,
      clientId,
      keepalive: 0,
      username: 'token',
      password: Buffer.from(token),
    })
    const code = ((await connack) as { returnCode: number }).returnCode
    if (code !== 0) throw new Error(`CONNACK ${code} for ${clientId}`)
    return client
  }

  async subscribe(topic: string, qos: 0 | 1): Promise<void> {
    const suback = this.#next('suback')
    this.#send({ cmd: 'subscribe', messageId: this.#nextId++, subscriptions: [{ topic, qos }] })
    const granted = ((await suback) as { granted: number[] }).granted
    if (granted[0] !== qos) throw new Error(`SUBACK ${granted[0]} for ${topic}`)
  }

  /** Stops reading: what the hub sends piles up in the kernel buffers, then in the hub. */
  stopReading(): void {
    this.#socket.pause()
  }

  resumeReading(): void {
    this.#socket.resume()
  }

  /** Whether the socket has closed (seen only while reading: a paused socket does not see the FIN). */
  get closed(): boolean {
    return this.#closed
  }

  /** Resolves when the hub answers a PINGREQ: everything it sent before is then read. */
  async ping(): Promise<void> {
    const pong = this.#next('pingresp')
    this.#send({ cmd: 'pingreq' })
    await pong
  }

  destroy(): void {
    this.#socket.destroy()
  }

  #send(packet: Packet): void {
    this.#socket.write(mqttPacket.generate(packet, { protocolVersion: 4 }))
  }

  #next(cmd: string, timeoutMs = 5000): Promise<Packet> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no ${cmd} for ${this.clientId} within ${timeoutMs} ms`)),
        timeoutMs,
      )
      this.#waiting.push({
        cmd,
        resolve: (p) => {
          clearTimeout(timer)
          resolve(p)
        },
      })
    })
  }
}

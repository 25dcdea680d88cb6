import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net'
import type { Teardown } from './hub.ts'

/** A TCP proxy in front of the hub whose connections can be cut or silenced (network loss). */
export interface Proxy {
  url: string
  /** Destroys every open connection (both sides), as a dropped network with RST would end them. */
  cut(): void
  /**
   * The open connections carry nothing more in either direction, not even their end (a Wi-Fi drop):
   * each side has to notice by its own keepalive. New connections work normally.
   */
  silence(): void
  close(): Promise<void>
}

export async function startProxy(t: Teardown, target: () => { host: string; port: number }): Promise<Proxy> {
  const sockets = new Set<Socket>()
  const silenced = new WeakSet<Socket>()
  const server: Server = createServer((client) => {
    const upstream = tcpConnect(target())
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      sockets.add(a)
      a.on('data', (chunk) => {
        if (!silenced.has(a)) b.write(chunk)
      })
      a.on('error', () => undefined)
      // a side that ends lets the other finish writing (a DISCONNECT must arrive); silenced sides say nothing
      a.on('close', () => {
        sockets.delete(a)
        if (!silenced.has(a)) b.end()
      })
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  const proxy: Proxy = {
    url: `mqtt://127.0.0.1:${port}`,
    cut: () => {
      for (const socket of sockets) socket.destroy()
    },
    silence: () => {
      for (const socket of sockets) silenced.add(socket)
    },
    // ends what is still open gently (a DISCONNECT on its way must arrive), then stops listening
    close: async () => {
      const open = [...sockets].map((socket) => new Promise((resolve) => socket.once('close', resolve)))
      for (const socket of sockets) socket.end()
      const timer = setTimeout(() => proxy.cut(), 1000)
      await Promise.all(open)
      clearTimeout(timer)
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
  t.teardown(() => proxy.close())
  return proxy
}

/** A TCP port that was free a moment ago (for a hub that must come back on the same port). */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

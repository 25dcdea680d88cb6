import type { HubClient } from '../../../devices/hub-client/index.ts'

/**
 * The media transports this browser's device has open on a router, kept in localStorage while they
 * are: a tab that closes (or reloads) cannot be relied on to close them, and the hub keeps a device's
 * media when it comes back within its grace period (the next tab, or the reloaded page, is the same
 * device). The first connection of a page closes what an earlier page left (its send transport would
 * otherwise keep a producer that sends nothing in the stage).
 */

const KEY = 'stagehub.media.transports'

function read(): string[] {
  try {
    const ids: unknown = JSON.parse(localStorage.getItem(KEY) ?? '[]')
    return Array.isArray(ids) ? ids.filter((id): id is string => typeof id === 'string') : []
  } catch {
    return []
  }
}

function write(ids: readonly string[]): void {
  if (ids.length) localStorage.setItem(KEY, JSON.stringify(ids))
  else localStorage.removeItem(KEY)
}

/** A transport was created on the router. */
export function rememberTransport(id: string): void {
  write([...read().filter((known) => known !== id), id].slice(-8))
}

/** A transport was closed (or went with its router). */
export function forgetTransport(id: string): void {
  write(read().filter((known) => known !== id))
}

/** Closes on the router what an earlier page of this browser left open (refusals are expected: gone already). */
export async function closeLeftovers(client: HubClient): Promise<number> {
  const ids = read()
  write([])
  await Promise.all(
    ids.map((transportId) => client.request('media.close', { transportId }).catch(() => undefined)),
  )
  return ids.length
}

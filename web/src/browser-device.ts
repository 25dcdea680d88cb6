import { computed, effect, signal } from '@preact/signals'
import { HubClient, topics } from '../../devices/hub-client/index.ts'
import { hub } from './connection.ts'
import { explain, hubOrigin, session } from './session.ts'

/**
 * This browser as a device of kind `browser` of the signed-in person: created once (its id and device
 * token kept only in this browser's localStorage), connected while a tab is open as a second
 * HubClient (client id = device id, user name `device`, presence with the last will `lost`), so the
 * person's device list shows it online while the tab is open and lost once it closes. Of several open
 * tabs one is the device (a Web Lock); when it closes, the next takes over.
 */

interface StoredDevice {
  deviceId: string
  token: string
  expiresAt: string
  /** The last presence session used: every connection attempt needs a larger one. */
  session: number
}

/** This browser's device id while it is connected as one (for "this browser" in the list). */
export const browserDeviceId = signal<string | undefined>(undefined)

/**
 * This browser's device connection while it is online, a new value for every (re)connection: the
 * browser's media (web/src/media/) is the device's, signalled over it and started over on each.
 */
export const browserDeviceLink = signal<
  { client: HubClient; deviceId: string; connection: number } | undefined
>(undefined)
let connections = 0

/**
 * True while another tab of this browser holds the device (the Web Lock): this tab has no device
 * connection, so no media; it takes over when that tab closes.
 */
export const browserDeviceElsewhere = signal(false)

const key = (userId: string) => `stagehub.browserDevice.${userId}`

function stored(userId: string): StoredDevice | undefined {
  const value = storedEntry(userId)
  return value?.deviceId && value.token && value.expiresAt
    ? { session: 0, ...value, deviceId: value.deviceId, token: value.token, expiresAt: value.expiresAt }
    : undefined
}

/** What this browser keeps of its device; after signing out only its id and session (no token). */
function storedEntry(userId: string): Partial<StoredDevice> | undefined {
  try {
    return (
      (JSON.parse(localStorage.getItem(key(userId)) ?? 'null') as Partial<StoredDevice> | null) ?? undefined
    )
  } catch {
    return undefined
  }
}

/**
 * Signing out leaves no device token in this browser (another person at the same computer could
 * act as the device): only the id stays, and the next sign-in re-keys the same device.
 */
function forgetToken(userId: string): void {
  const entry = storedEntry(userId)
  if (!entry?.deviceId) return
  localStorage.setItem(key(userId), JSON.stringify({ deviceId: entry.deviceId, session: entry.session ?? 0 }))
}

const keep = (userId: string, device: StoredDevice) =>
  localStorage.setItem(key(userId), JSON.stringify(device))

/** A name people recognise: the browser and the system, e.g. "Chrome on Linux". */
export function browserName(userAgent = navigator.userAgent): string {
  const browser = /Edg\//.test(userAgent)
    ? 'Edge'
    : /Firefox\//.test(userAgent)
      ? 'Firefox'
      : /Chrom(e|ium)\//.test(userAgent)
        ? 'Chrome'
        : /Safari\//.test(userAgent)
          ? 'Safari'
          : 'Browser'
  const system = /Android/.test(userAgent)
    ? 'Android'
    : /iPhone|iPad/.test(userAgent)
      ? 'iOS'
      : /Mac OS X/.test(userAgent)
        ? 'macOS'
        : /Windows/.test(userAgent)
          ? 'Windows'
          : /Linux/.test(userAgent)
            ? 'Linux'
            : ''
  return system ? `${browser} on ${system}` : browser
}

/** The person's client, once it is online (it is started by connection.ts; a new one after signing in again). */
function userHub(): Promise<HubClient> {
  return new Promise((resolve) => {
    let done = false
    const dispose = effect(() => {
      const client = hub.value
      if (!client || done) return
      void client.untilOnline().then(() => {
        if (done || hub.peek() !== client) return
        done = true
        resolve(client)
        dispose()
      })
    })
  })
}

/**
 * The stored device; the same device with a new token (device.token) after a sign-out left only its
 * id; or a new one (device.create) when there is none or it is gone.
 */
async function ensureDevice(userId: string, stopped: () => boolean): Promise<StoredDevice | undefined> {
  const known = stored(userId)
  if (known) {
    const why = await explain(known.token, known.deviceId).catch(() => undefined)
    // removed elsewhere, re-keyed elsewhere or expired: this browser registers anew
    if (!why || why.accepted) return known
  }
  const client = await userHub()
  if (stopped()) return undefined
  const signedOutFrom = known ? undefined : storedEntry(userId)
  if (signedOutFrom?.deviceId) {
    const rekeyed = await client
      .request('device.token', { deviceId: signedOutFrom.deviceId })
      .catch(() => undefined)
    if (stopped()) return undefined
    if (rekeyed) {
      const device = {
        deviceId: signedOutFrom.deviceId,
        token: rekeyed.token,
        expiresAt: rekeyed.expiresAt,
        session: signedOutFrom.session ?? 0,
      }
      keep(userId, device)
      return device
    }
  }
  const created = await client.request('device.create', { name: browserName(), kind: 'browser' })
  const device = {
    deviceId: created.device.id,
    token: created.token,
    expiresAt: created.expiresAt,
    session: 0,
  }
  keep(userId, device)
  return device
}

/** A device token handed out again by `device.token` for this browser's device: kept, used from the next attempt. */
export function rekeyed(
  userId: string,
  deviceId: string,
  token: { token: string; expiresAt: string },
): boolean {
  const known = stored(userId)
  if (known?.deviceId !== deviceId) return false
  keep(userId, { ...known, token: token.token, expiresAt: token.expiresAt })
  return true
}

let forget: (() => void) | undefined

/** This browser's device was removed (device.remove): forget it and disconnect until the next sign-in. */
export function removed(userId: string, deviceId: string): void {
  if (stored(userId)?.deviceId !== deviceId) return
  localStorage.removeItem(key(userId))
  forget?.()
}

/** Connects this browser as the person's device; returns the stop. */
export function startBrowserDevice(userId: string): () => void {
  let stopped = false
  let client: HubClient | undefined
  let release: (() => void) | undefined
  const held = new Promise<void>((resolve) => (release = resolve))

  const run = async () => {
    const device = await ensureDevice(userId, () => stopped)
    if (!device || stopped) return
    const { deviceId } = device
    client = new HubClient(
      {
        url: `${hubOrigin().replace(/^http/, 'ws')}/mqtt`,
        clientId: deviceId,
        username: 'device',
        // read at every attempt: a re-key from this browser's devices page is picked up
        token: () => stored(userId)?.token ?? device.token,
        presence: {
          topic: topics.devicePresence.build(deviceId),
          sessions: {
            next: () => {
              const now = stored(userId) ?? device
              const session = Math.max(now.session + 1, Math.floor(Date.now() / 1000))
              keep(userId, { ...now, session })
              return session
            },
          },
        },
      },
      {
        connected: () => {
          browserDeviceId.value = deviceId
          browserDeviceLink.value = { client: client!, deviceId, connection: ++connections }
        },
        disconnected: () => (browserDeviceLink.value = undefined),
      },
    )
    forget = () => {
      browserDeviceId.value = undefined
      browserDeviceLink.value = undefined
      void client?.stop()
    }
    client.start()
    await held
  }

  const locks = typeof navigator.locks?.request === 'function' ? navigator.locks : undefined
  const lockName = `stagehub-browser-device-${userId}`
  const started = locks
    ? locks.request(lockName, { ifAvailable: true }, (lock) => {
        if (stopped) return undefined
        if (lock) return run()
        // another tab is the device: this one waits for the lock, and says so meanwhile
        browserDeviceElsewhere.value = true
        return locks.request(lockName, () => {
          browserDeviceElsewhere.value = false
          return stopped ? undefined : run()
        })
      })
    : run()
  started.catch(() => {
    // the hub refused to create the device (e.g. over the device quota): the app works without it
  })

  return () => {
    stopped = true
    browserDeviceElsewhere.value = false
    browserDeviceId.value = undefined
    browserDeviceLink.value = undefined
    forget = undefined
    void client?.stop()
    release?.()
  }
}

const signedIn = computed(() => session.value?.userId)

/**
 * This browser is the signed-in person's device while they are signed in: a new token for the same
 * person (a password change) changes nothing, signing out disconnects it (`offline`) and forgets its
 * token (the next sign-in re-keys the same device). Returns the stop.
 */
export function followSignedIn(): () => void {
  let previous: string | undefined
  return effect(() => {
    const userId = signedIn.value
    // signed out (not a reload or a closed tab: those run no cleanup): the token goes
    if (previous && previous !== userId) forgetToken(previous)
    previous = userId
    return userId ? startBrowserDevice(userId) : undefined
  })
}

import { computed, signal } from '@preact/signals'
import type { ExplainReply, TokenReply } from '../../schemas/http.ts'

/** The signed-in person: what `/auth/signup`, `/auth/login` and `/auth/renew` answer, kept across reloads. */
export type Session = TokenReply

const KEY = 'stagehub.session'

function stored(): Session | null {
  try {
    const value = JSON.parse(localStorage.getItem(KEY) ?? 'null') as Partial<Session> | null
    return value?.token && value.userId && value.expiresAt ? (value as Session) : null
  } catch {
    return null
  }
}

export const session = signal<Session | null>(stored())

/**
 * Who is signed in: it changes on signing in and out only, not when the token is renewed, so what
 * follows the person (the connection) is not redone for every new token.
 */
export const signedInAs = computed(() => session.value?.userId)

// another tab signed in, renewed or signed out: this one follows
addEventListener('storage', (event) => {
  if (event.key !== KEY && event.key !== null) return
  renewal.value = { state: 'current' }
  session.value = stored()
})

/** A refusal of the hub's HTTP API, with its code and message as the hub wrote them. */
export class HubHttpError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** 429 and 503: when the hub says to try again. */
    readonly retryAfterSeconds?: number,
  ) {
    super(message)
  }
}

export const hubOrigin = (): string => HUB_ORIGIN || location.origin

async function post<T>(path: string, body: unknown, token?: string): Promise<T> {
  let response: Response
  try {
    response = await fetch(`${hubOrigin()}${path}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(token ? { authorization: `Bearer ${token}` } : {}),
      },
      body: JSON.stringify(body),
    })
  } catch {
    throw new HubHttpError('unavailable', 'the hub cannot be reached: check your connection and try again')
  }
  const reply = (await response.json().catch(() => ({}))) as T & { error?: { code: string; message: string } }
  if (!response.ok) {
    const retryAfter = Number(response.headers.get('retry-after'))
    throw new HubHttpError(
      reply.error?.code ?? 'internal',
      reply.error?.message ?? `the hub answered ${response.status}`,
      retryAfter > 0 ? retryAfter : undefined,
    )
  }
  return reply
}

function keep(value: Session): void {
  localStorage.setItem(KEY, JSON.stringify(value))
  session.value = value
}

export async function signUp(input: { name: string; email: string; password: string }): Promise<void> {
  keep(await post<Session>('/auth/signup', input))
}

export async function signIn(input: { email: string; password: string }): Promise<void> {
  keep(await post<Session>('/auth/login', input))
}

/** A fresh token for the same person (a password change and a renewal hand one back). */
export function renewed(token: { token: string; expiresAt: string }): void {
  renewal.value = { state: 'current' }
  if (session.value) keep({ ...session.value, token: token.token, expiresAt: token.expiresAt })
}

export function signOut(): void {
  renewal.value = { state: 'current' }
  localStorage.removeItem(KEY)
  session.value = null
}

/** Why the hub would refuse a connection with this token (CONNACK only says "not authorized"). */
export function explain(token: string, clientId: string): Promise<ExplainReply> {
  return post<ExplainReply>('/auth/explain', { clientId }, token)
}

export type RenewalState =
  | { state: 'current' }
  /** The hub could not be reached (or was busy): trying again at `retryAt` (ms since the epoch). */
  | { state: 'retrying'; message: string; retryAt: number }
  /** The hub will not renew this token (revoked, expired): only signing in again helps. */
  | { state: 'refused'; message: string }

/** How keeping the token fresh goes: the app asks the person to sign in again only when it failed. */
export const renewal = signal<RenewalState>({ state: 'current' })

/** The token's issue and expiry times (ms since the epoch), read from its payload (not verified: the hub does that). */
function lifetime(token: string, expiresAt: string): { issued: number; expires: number } {
  const expires = Date.parse(expiresAt)
  try {
    const payload = token.split('.')[1]!.replace(/-/g, '+').replace(/_/g, '/')
    const { iat } = JSON.parse(atob(payload)) as { iat?: unknown }
    if (typeof iat === 'number' && iat * 1000 < expires) return { issued: iat * 1000, expires }
  } catch {
    // a token the app cannot read: renewed in its last hour
  }
  return { issued: expires - 3 * 3600_000, expires }
}

/**
 * When to renew: once less than a third of the token's life is left; a token without a readable issue
 * time in its last hour.
 */
export function renewAt(current: Session): number {
  const { issued, expires } = lifetime(current.token, current.expiresAt)
  return expires - (expires - issued) / 3
}

const FIRST_RETRY_MS = 2_000
const MAX_RETRY_MS = 60_000

/**
 * Keeps the signed-in person's token fresh with `POST /auth/renew`, in the background: once less than
 * a third of its life is left, again for each new token. A hub that cannot be reached is asked again
 * with backoff (2 s doubling to a minute, never after the token's end); a refusal stops and says why.
 * Returns the stop.
 */
export function keepRenewed(): () => void {
  let timer: ReturnType<typeof setTimeout> | undefined
  let failures = 0
  let stopped = false
  let inFlight = false

  const schedule = (at: number) => {
    clearTimeout(timer)
    // timers hold 32-bit delays: a far renewal is looked at again in a day
    timer = setTimeout(() => void attempt(), Math.min(Math.max(0, at - Date.now()), 86_400_000))
  }

  const attempt = async () => {
    const current = session.peek()
    if (stopped || inFlight || !current) return
    if (Date.now() < renewAt(current)) return schedule(renewAt(current))
    if (Date.parse(current.expiresAt) <= Date.now()) {
      renewal.value = { state: 'refused', message: 'your sign-in has expired' }
      return
    }
    inFlight = true
    try {
      const fresh = await post<Session>('/auth/renew', {}, current.token)
      inFlight = false
      if (stopped || session.peek()?.userId !== fresh.userId) return
      failures = 0
      renewed(fresh)
      schedule(renewAt(fresh))
    } catch (err) {
      inFlight = false
      if (stopped) return
      const error = err instanceof HubHttpError ? err : new HubHttpError('internal', String(err))
      if (error.code === 'unauthorized' || error.code === 'forbidden') {
        renewal.value = { state: 'refused', message: error.message }
        return
      }
      const backoff = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** failures++)
      const retryAt = Date.now() + Math.max(backoff, (error.retryAfterSeconds ?? 0) * 1000)
      renewal.value = { state: 'retrying', message: error.message, retryAt }
      if (retryAt < Date.parse(current.expiresAt)) schedule(retryAt)
      else
        renewal.value = {
          state: 'refused',
          message: `${error.message}; your sign-in ends before the next try`,
        }
    }
  }

  void attempt()
  // a token renewed elsewhere (another tab, a password change): plan from it
  const unsubscribe = session.subscribe((value) => {
    if (value && renewal.peek().state !== 'refused') schedule(renewAt(value))
  })
  return () => {
    stopped = true
    clearTimeout(timer)
    unsubscribe()
  }
}

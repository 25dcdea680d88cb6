import { signal } from '@preact/signals'
import type { ExplainReply, TokenReply } from '../../schemas/http.ts'

/** The signed-in person: what `/auth/signup` and `/auth/login` answer, kept across reloads. */
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

/** A refusal of the hub's HTTP API, with its code and message as the hub wrote them. */
export class HubHttpError extends Error {
  constructor(
    readonly code: string,
    message: string,
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
    throw new HubHttpError(
      reply.error?.code ?? 'internal',
      reply.error?.message ?? `the hub answered ${response.status}`,
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

/** A fresh token for the same person (a password change hands one back). */
export function renewed(token: { token: string; expiresAt: string }): void {
  if (session.value) keep({ ...session.value, token: token.token, expiresAt: token.expiresAt })
}

export function signOut(): void {
  localStorage.removeItem(KEY)
  session.value = null
}

/** Why the hub would refuse a connection with this token (CONNACK only says "not authorized"). */
export function explain(token: string, clientId: string): Promise<ExplainReply> {
  return post<ExplainReply>('/auth/explain', { clientId }, token)
}

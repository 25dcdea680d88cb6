import type { ErrorCode } from '../schemas/protocol.ts'

/**
 * A refusal a client can act on: an error code (docs/protocol/README.md#errors) and a sentence saying what to do; refusals that pass
 * (`rate_limited`, `unavailable`) also say when to retry, sent over HTTP as `Retry-After`.
 */
export class HubError extends Error {
  override readonly name = 'HubError'
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly retryAfterSeconds?: number,
  ) {
    super(message)
  }
}

export const notFound = (what: string) => new HubError('not_found', `${what} does not exist`)
export const forbidden = (message: string) => new HubError('forbidden', message)
export const conflict = (message: string) => new HubError('conflict', message)

/** Compare-and-set check for versioned writes (docs/protocol/README.md#requests-and-responses). */
export function checkVersion(what: string, current: { version: number }, expected: number | undefined): void {
  if (expected !== undefined && expected !== current.version) {
    throw conflict(`${what} is at version ${current.version}, not ${expected}: read it again and retry`)
  }
}

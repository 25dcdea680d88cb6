import { createHash, randomBytes } from 'node:crypto'
import type { InviteState } from '../../schemas/actions/invite.ts'
import { HubError, notFound } from '../errors.ts'
import type { CollectionSpec, StoredDoc } from '../store/port.ts'

/**
 * A stage invitation as stored: only the code's sha256 (the code is a bearer secret that exists in
 * the creator's response and the redeemer's requests), never published on any topic.
 */
export interface InviteDoc extends StoredDoc, Omit<InviteState, 'id' | 'version'> {
  codeHash: string
  /** Set by invite.revoke: kept so that its code is refused as revoked rather than unknown. */
  revokedAt?: string
}

export const inviteCollection = {
  name: 'stage_invites',
  unique: [['codeHash']],
  indexes: [['stageId']],
} satisfies CollectionSpec

/** Live invitations one stage may have at once. */
export const INVITES_PER_STAGE = 50
export const DEFAULT_INVITE_SECONDS = 7 * 24 * 3600
/** Invite codes one account may try (invite.preview and invite.redeem together): a burst, then one per 6 s. */
export const INVITE_TRIES = { perSecond: 1 / 6, burst: 10 }

export const newInviteCode = (): string => randomBytes(18).toString('base64url')

export const hashInviteCode = (code: string): string => createHash('sha256').update(code).digest('hex')

export function inviteState(doc: InviteDoc): InviteState {
  const { codeHash: _hash, version: _version, revokedAt: _revoked, ...state } = doc
  return state
}

export function isLive(invite: InviteDoc, now: number): boolean {
  return invite.revokedAt === undefined && Date.parse(invite.expiresAt) > now
}

/** The stored invitation a code names, or the reason it cannot be used. */
export function usableInvite(invite: InviteDoc | undefined, now: number): InviteDoc {
  if (!invite)
    throw notFound('this invite (or its stage): check the link, or ask the stage admin for a new one')
  if (invite.revokedAt !== undefined)
    throw new HubError('forbidden', 'this invite was revoked by the stage admin: ask them for a new link')
  if (!isLive(invite, now))
    throw new HubError(
      'forbidden',
      `this invite expired at ${invite.expiresAt}: ask the stage admin for a new link`,
    )
  return invite
}

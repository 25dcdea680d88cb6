import type { BrokerRefusal } from '../../broker/broker.ts'
import type { ActionSchema, AuditTargets } from '../../schemas/action.ts'
import { type AuditEntry, type AuditOutcome, brokerActions } from '../../schemas/actions/audit.ts'
import type { ResponseEnvelope } from '../../schemas/protocol.ts'
import type { RequestOutcome } from '../requests/pipeline.ts'

/**
 * What the audit trail records, as plain functions over data: which requests, which target ids, and
 * the entry of a request or of a refusal by the broker. No entry is built from anything but ids,
 * codes and hub-written reasons, so no secret of a request (password, token, hash) can reach it.
 */

/** Refusals of a permission: recorded for every action, state-changing or not. */
const PERMISSION_REFUSALS: ReadonlySet<AuditOutcome> = new Set(['forbidden', 'unauthorized'])

const TARGET_ID = /^[A-Za-z0-9_.+-]{1,64}$/

export type NewAuditEntry = Omit<AuditEntry, 'id' | 'time'>

export function outcomeOf(response: ResponseEnvelope): AuditOutcome {
  return response.ok ? 'ok' : response.error.code
}

/** State-changing actions whatever the outcome; any action refused permission. */
export function isAudited(action: ActionSchema, outcome: AuditOutcome): boolean {
  return action.changesState || PERMISSION_REFUSALS.has(outcome)
}

/** The target ids the action declares, read from its validated params and (on success) its result. */
export function targetIds(
  rule: AuditTargets | undefined,
  params: unknown,
  result: unknown,
): AuditEntry['targets'] {
  const targets: Record<string, string> = {}
  for (const [kind, path] of Object.entries(rule ?? {})) {
    const [root, ...steps] = path.split('.')
    let value: unknown = root === 'params' ? params : result
    for (const step of steps) value = isObject(value) ? value[step] : undefined
    if (typeof value === 'string' && TARGET_ID.test(value)) targets[kind] = value
  }
  return targets
}

export function requestEntry({ who, action, params, response }: RequestOutcome): NewAuditEntry {
  return {
    role: who.role,
    identity: who.id,
    clientId: who.clientId,
    action: action.name,
    targets: targetIds(action.targets, params, response.ok ? response.result : undefined),
    outcome: outcomeOf(response),
  }
}

/** Topics, filters and reasons are cut to this: a client chooses them, and they may be 64 KiB long. */
export const MAX_TEXT = 256

/** CONNACK 4 (no valid token) is `unauthorized`; 5 and ACL refusals are `forbidden`. */
export function refusalEntry(refusal: BrokerRefusal): NewAuditEntry {
  return {
    role: refusal.who?.role ?? null,
    identity: refusal.who?.id ?? null,
    clientId: refusal.clientId.slice(0, 64),
    action: brokerActions[refusal.kind],
    targets: {},
    outcome: refusal.kind === 'connect' && refusal.returnCode === 4 ? 'unauthorized' : 'forbidden',
    ...(refusal.topic !== undefined ? { topic: clip(refusal.topic) } : {}),
    reason: clip(refusal.reason),
  }
}

/**
 * Whose refusals share one budget: an identity's refusals of one action, and every connection refused
 * before its token was verified (those have no identity; a client id would be the attacker's choice).
 */
export function refusalSource(entry: NewAuditEntry): string {
  return `${entry.action}|${entry.role ?? ''}|${entry.identity ?? ''}`
}

/** The entry that stands for `count` refusals of a source that were counted, not recorded. */
export function suppressedEntry(last: NewAuditEntry, count: number): NewAuditEntry {
  return {
    role: last.role,
    identity: last.identity,
    clientId: last.clientId,
    action: last.action,
    targets: {},
    outcome: last.outcome,
    reason: `${count} more refusals of ${last.action} by this source were counted, not recorded one by one (the last one is shown)`,
    suppressed: count,
    ...(last.topic !== undefined ? { topic: last.topic } : {}),
  }
}

function clip(text: string): string {
  return text.length <= MAX_TEXT ? text : `${text.slice(0, MAX_TEXT - 1)}…`
}

/**
 * Entry ids sort by time (then by order of recording in this process), so a page of the newest
 * entries is a range of ids: 13 digits of milliseconds, a sequence number, and a random part that
 * keeps the ids of several hub processes sharing one store apart.
 */
export function entryId(ms: number, sequence: number, random: string): string {
  return `${timeKey(ms)}-${String(sequence % 1e6).padStart(6, '0')}-${random}`
}

/** The id prefix of an instant: ids of entries recorded from `ms` on are ≥ it. */
export function timeKey(ms: number): string {
  return String(Math.max(0, Math.floor(ms))).padStart(13, '0')
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null
}

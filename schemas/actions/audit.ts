import { Type, type Static } from '@sinclair/typebox'
import { defineAction, type AuditTargetKind } from '../action.ts'
import { Id, Timestamp } from '../common.ts'
import { ErrorCode } from '../protocol.ts'

/** `ok`, or the error code (docs/protocol/README.md#errors) the request or connection was refused with. */
export const AuditOutcome = Type.Union([Type.Literal('ok'), ErrorCode])
export type AuditOutcome = Static<typeof AuditOutcome>

const AuditRole = Type.Union(['user', 'device', 'router', 'admin'].map((r) => Type.Literal(r)))

/** What may be recorded as a target id: ids, and release versions (semver). Never longer. */
export const AuditTargetId = Type.String({ pattern: '^[A-Za-z0-9_.+-]{1,64}$' })

const targetKinds: Record<AuditTargetKind, true> = {
  userId: true,
  stageId: true,
  groupId: true,
  memberId: true,
  trackId: true,
  deviceId: true,
  routerId: true,
  release: true,
  mixTarget: true,
  producerId: true,
  consumerId: true,
  transportId: true,
}

/** Broker-level refusals are recorded under these action names. */
export const brokerActions = {
  connect: 'mqtt.connect',
  subscribe: 'mqtt.subscribe',
  publish: 'mqtt.publish',
} as const

/** One entry of the audit trail: who did or was refused what, when; never a secret. */
export const AuditEntry = Type.Object(
  {
    id: Type.String({ description: 'sorts by time; also the paging cursor' }),
    time: Timestamp,
    role: Type.Union([AuditRole, Type.Null()], {
      description: 'null for a connection refused before its token was verified',
    }),
    identity: Type.Union([Id, Type.Null()], {
      description: 'the token subject (user, device, router, operator)',
    }),
    clientId: Type.String({ maxLength: 64 }),
    action: Type.String({
      description: `a request action, or ${Object.values(brokerActions).join(', ')} for refusals by the broker`,
    }),
    targets: Type.Object(
      Object.fromEntries(Object.keys(targetKinds).map((k) => [k, Type.Optional(AuditTargetId)])),
      { additionalProperties: false },
    ),
    outcome: AuditOutcome,
    topic: Type.Optional(
      Type.String({
        maxLength: 256,
        description: 'the topic or filter a broker-level refusal was about (cut to 256 characters)',
      }),
    ),
    reason: Type.Optional(
      Type.String({ maxLength: 256, description: 'why the broker refused (cut to 256 characters)' }),
    ),
    suppressed: Type.Optional(
      Type.Integer({
        minimum: 1,
        description:
          'a summary of broker refusals: how many more refusals of this action by this source (identity, or every connection refused before its token was verified) were counted but not recorded one by one since its previous entry',
      }),
    ),
  },
  { additionalProperties: false, $id: 'AuditEntry' },
)
export type AuditEntry = Static<typeof AuditEntry>

export const auditQuery = defineAction({
  name: 'audit.query',
  changesState: false,
  description:
    'The audit trail, newest first (admin-role tokens): every state-changing request and every refusal of a permission (requests refused with forbidden or unauthorized, refused subscriptions, publishes and connections). All filters are optional and combine; pass the returned cursor to get the next page.',
  params: Type.Object(
    {
      from: Type.Optional(Timestamp),
      to: Type.Optional(Type.String({ format: 'date-time', description: 'exclusive' })),
      identity: Type.Optional(Id),
      role: Type.Optional(AuditRole),
      clientId: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
      action: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
      targetId: Type.Optional(AuditTargetId),
      outcome: Type.Optional(AuditOutcome),
      limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 100 })),
      cursor: Type.Optional(Type.String({ pattern: '^[0-9a-z-]{1,64}$' })),
    },
    { additionalProperties: false },
  ),
  result: Type.Object(
    {
      entries: Type.Array(AuditEntry),
      cursor: Type.Optional(Type.String({ description: 'absent on the last page' })),
    },
    { additionalProperties: false },
  ),
})

import { Type, type Static } from '@sinclair/typebox'

/** Error codes (docs/protocol/README.md#errors): every refusal carries exactly one of these. */
export const ErrorCode = Type.Union(
  [
    Type.Literal('invalid_request'),
    Type.Literal('unauthorized'),
    Type.Literal('forbidden'),
    Type.Literal('not_found'),
    Type.Literal('conflict'),
    Type.Literal('rate_limited'),
    Type.Literal('too_large'),
    Type.Literal('unavailable'),
    Type.Literal('internal'),
  ],
  { $id: 'ErrorCode' },
)
export type ErrorCode = Static<typeof ErrorCode>

export const RequestId = Type.String({ minLength: 1, maxLength: 64 })

/** Published by a client to `clients/{c}/req/{action}`. */
export const RequestEnvelope = Type.Object(
  {
    id: RequestId,
    params: Type.Optional(Type.Object({}, { additionalProperties: true })),
  },
  { additionalProperties: false, $id: 'RequestEnvelope' },
)
export type RequestEnvelope = Static<typeof RequestEnvelope>

export const ErrorBody = Type.Object(
  { code: ErrorCode, message: Type.String() },
  { additionalProperties: false },
)
export type ErrorBody = Static<typeof ErrorBody>

/** Published by the hub to `clients/{c}/res`: exactly one per request. */
export const ResponseEnvelope = Type.Union(
  [
    Type.Object({ id: Type.String(), ok: Type.Literal(true), result: Type.Unknown() }),
    Type.Object({ id: Type.String(), ok: Type.Literal(false), error: ErrorBody }),
  ],
  { $id: 'ResponseEnvelope' },
)
export type ResponseEnvelope = Static<typeof ResponseEnvelope>

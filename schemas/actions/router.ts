import { Type, type Static } from '@sinclair/typebox'
import { defineAction } from '../action.ts'
import { Id, Timestamp, Version } from '../common.ts'
import { GeoPosition } from './stage.ts'
import { Name } from '../text.ts'

export const RouterKind = Type.Union([Type.Literal('mediasoup'), Type.Literal('ov')])
export type RouterKind = Static<typeof RouterKind>

const Capacity = Type.Object(
  {
    mediasoup: Type.Optional(Type.Integer({ minimum: 0, maximum: 100000 })),
    ov: Type.Optional(Type.Integer({ minimum: 0, maximum: 100000 })),
  },
  { additionalProperties: false, description: 'how many stages of each kind the router serves at most' },
)

/** What a router announces in its `online` presence (docs/protocol/README.md#routers-and-distribution). */
export const RouterAnnouncement = {
  capabilities: Type.Array(RouterKind, { minItems: 1, maxItems: 2, uniqueItems: true }),
  capacity: Capacity,
  position: GeoPosition,
  url: Type.String({ maxLength: 2000, description: 'where clients reach its media (wss://…)' }),
}

/** `routers/{r}/presence` (retained, by the router; its last will says `lost`). */
export const RouterPresencePayload = Type.Union(
  [
    Type.Object(
      {
        state: Type.Literal('online'),
        session: Type.Integer({ minimum: 0 }),
        ...RouterAnnouncement,
      },
      { additionalProperties: false },
    ),
    Type.Object(
      {
        state: Type.Union([Type.Literal('offline'), Type.Literal('lost')]),
        session: Type.Integer({ minimum: 0 }),
      },
      { additionalProperties: true },
    ),
  ],
  { $id: 'RouterPresencePayload' },
)
export type RouterPresencePayload = Static<typeof RouterPresencePayload>

/** `routers/{r}/load` (not retained): what the router is busy with now. */
export const RouterLoad = Type.Object(
  {
    cpu: Type.Optional(Type.Number({ minimum: 0, description: 'load average per core' })),
    stages: Type.Optional(Type.Integer({ minimum: 0 })),
    transports: Type.Optional(Type.Integer({ minimum: 0 })),
    producers: Type.Optional(Type.Integer({ minimum: 0 })),
    consumers: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false, $id: 'RouterLoad' },
)
export type RouterLoad = Static<typeof RouterLoad>

/** `routers/{r}` (admins): the router, its announcement, its load and the stages assigned to it. */
export const RouterState = Type.Object(
  {
    id: Id,
    name: Type.String(),
    online: Type.Boolean(),
    lastSeen: Type.Optional(Timestamp),
    capabilities: Type.Array(RouterKind),
    capacity: Capacity,
    position: Type.Optional(GeoPosition),
    url: Type.Optional(Type.String()),
    load: Type.Optional(RouterLoad),
    assignments: Type.Array(Id, { description: 'ids of the stages it serves' }),
    version: Version,
  },
  { additionalProperties: false, $id: 'RouterState' },
)
export type RouterState = Static<typeof RouterState>

/** `routers/{r}/assignments/{s}` (retained, for router r): a stage it must serve. */
export const AssignmentState = Type.Object(
  {
    stageId: Id,
    kinds: Type.Array(RouterKind, { minItems: 1 }),
    assignedAt: Timestamp,
  },
  { additionalProperties: false, $id: 'AssignmentState' },
)
export type AssignmentState = Static<typeof AssignmentState>

export const OvRelay = Type.Object(
  {
    ipv4: Type.String({ format: 'ipv4' }),
    ipv6: Type.Optional(Type.String({ format: 'ipv6' })),
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    pin: Type.Integer({ minimum: 0, maximum: 2 ** 31 - 1 }),
  },
  { additionalProperties: false },
)
export type OvRelay = Static<typeof OvRelay>

const RouterRef = { routerId: Id }

export const routerCreate = defineAction({
  name: 'router.create',
  changesState: true,
  targets: { routerId: 'result.router.id' },
  description: 'Register a router (admins); its token is returned once and never again.',
  params: Type.Object({ name: Name() }, { additionalProperties: false }),
  result: Type.Object({ router: RouterState, token: Type.String(), expiresAt: Timestamp }),
})

export const routerToken = defineAction({
  name: 'router.token',
  changesState: true,
  targets: { routerId: 'params.routerId' },
  description:
    "Issue a new router token (admins); older tokens are refused and the router's connection is closed.",
  params: Type.Object(RouterRef, { additionalProperties: false }),
  result: Type.Object({ token: Type.String(), expiresAt: Timestamp, generation: Type.Integer() }),
})

export const routerRemove = defineAction({
  name: 'router.remove',
  changesState: true,
  targets: { routerId: 'params.routerId' },
  description: 'Remove a router (admins): its token stops working and its stages move to other routers.',
  params: Type.Object(RouterRef, { additionalProperties: false }),
  result: Type.Object({}, { additionalProperties: false }),
})

export const routerServed = defineAction({
  name: 'router.served',
  changesState: true,
  targets: { stageId: 'params.stageId' },
  description:
    'The assigned router says how members reach the stage: its ov relay and/or mediasoup URL (the router itself only).',
  params: Type.Object(
    {
      stageId: Id,
      ov: Type.Optional(OvRelay),
      media: Type.Optional(
        Type.Object({ url: Type.String({ minLength: 1, maxLength: 2000 }) }, { additionalProperties: false }),
      ),
    },
    { additionalProperties: false, minProperties: 2 },
  ),
  result: Type.Object({}, { additionalProperties: false }),
})

export const routerUnserved = defineAction({
  name: 'router.unserved',
  changesState: true,
  targets: { stageId: 'params.stageId' },
  description: 'The router stopped serving a stage (after its assignment went away, or it cannot serve it).',
  params: Type.Object({ stageId: Id }, { additionalProperties: false }),
  result: Type.Object({}, { additionalProperties: false }),
})

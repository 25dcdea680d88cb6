import { Type } from '@sinclair/typebox'
import { defineAction } from '../action.ts'
import { Timestamp } from '../common.ts'

const Count = Type.Integer({ minimum: 0 })

export const hubStatus = defineAction({
  name: 'hub.status',
  changesState: false,
  description:
    "Hub operators (admin-role tokens) read the hub's live status: its connected MQTT clients by role, uptime, version and store.",
  params: Type.Object({}, { additionalProperties: false }),
  result: Type.Object(
    {
      version: Type.String({ description: 'stagehub release' }),
      startedAt: Timestamp,
      uptimeSeconds: Type.Number({ minimum: 0 }),
      store: Type.Union([Type.Literal('embedded'), Type.Literal('mongodb')], {
        description: 'embedded: SQLite under DATA_DIR; mongodb: MONGO_URL',
      }),
      connections: Type.Object(
        { user: Count, device: Count, router: Count, admin: Count, total: Count },
        {
          additionalProperties: false,
          description: 'open MQTT connections (TCP, TLS and WebSocket) by role',
        },
      ),
      cluster: Type.Optional(
        Type.Object(
          {
            processId: Type.String({ description: 'the hub process that answered (HUB_ID)' }),
            coordinator: Type.Boolean({
              description: 'whether it holds the coordinator lease (distribution, purges, healing)',
            }),
            processes: Type.Array(Type.String(), {
              description: 'the live hub processes of the deployment, this one included',
            }),
          },
          {
            additionalProperties: false,
            description: 'only when several hub processes serve the deployment (REDIS_URL)',
          },
        ),
      ),
    },
    { additionalProperties: false },
  ),
})

import type { Static } from '@sinclair/typebox'
import type { ActionSchema } from '../../schemas/action.ts'
import type * as audit from '../../schemas/actions/audit.ts'
import type * as device from '../../schemas/actions/device.ts'
import type * as hub from '../../schemas/actions/hub.ts'
import type * as invite from '../../schemas/actions/invite.ts'
import type * as media from '../../schemas/actions/media.ts'
import type * as release from '../../schemas/actions/release.ts'
import type * as router from '../../schemas/actions/router.ts'
import type * as stage from '../../schemas/actions/stage.ts'
import type * as user from '../../schemas/actions/user.ts'

// types only: the schemas' values stay out of a client's bundle
type Exported<M> = M[keyof M]
type Action = Extract<
  | Exported<typeof audit>
  | Exported<typeof device>
  | Exported<typeof hub>
  | Exported<typeof invite>
  | Exported<typeof media>
  | Exported<typeof release>
  | Exported<typeof router>
  | Exported<typeof stage>
  | Exported<typeof user>,
  ActionSchema
>

/** Every action the hub serves (docs/protocol/actions.md). */
export type ActionName = Action['name']
type Named<N extends ActionName> = Extract<Action, { name: N }>
export type ActionParams<N extends ActionName> = Static<Named<N>['params']>
export type ActionResult<N extends ActionName> = Static<Named<N>['result']>

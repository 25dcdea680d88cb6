/** The hub client's public face, for programs and the browser bundle (README.md). */
export type { ActionName, ActionParams, ActionResult } from './actions.ts'
export type { BackoffOptions } from './backoff.ts'
export {
  HubClient,
  type HubClientEvents,
  type HubClientLog,
  type HubClientOptions,
  type NoticeListener,
  type PresenceOptions,
  type SessionSource,
} from './hub-client.ts'
export { RequestError, type RequestErrorCode } from './requests.ts'
export type { StateChange, StateListener } from './state-cache.ts'
/** Topic builders and matchers only: the catalogue's payload schemas stay out of the browser bundle. */
export { matchesFilter, topicShapes as topics } from '../../schemas/topic-shapes.ts'

/** What devices and routers publish themselves (presence, reports, load): JSON, or undefined when it is not. */
export function parseClientMessage(payload: Buffer): unknown {
  try {
    return JSON.parse(payload.toString('utf8'))
  } catch {
    return undefined
  }
}

/**
 * Every topic the hub client and the device programs use, and nothing else of them knows a topic's
 * shape: the one place to switch to the hub's topic catalogue. Shapes: docs/protocol/README.md.
 */
export const topics = {
  request: (clientId: string, action: string) => `clients/${clientId}/req/${action}`,
  response: (clientId: string) => `clients/${clientId}/res`,
  device: {
    presence: (deviceId: string) => `devices/${deviceId}/presence`,
    reported: (deviceId: string) => `devices/${deviceId}/reported`,
    config: (deviceId: string) => `devices/${deviceId}/config`,
  },
  router: {
    presence: (routerId: string) => `routers/${routerId}/presence`,
    load: (routerId: string) => `routers/${routerId}/load`,
    /** Every assignment of the router: `routers/{r}/assignments/{s}`. */
    assignments: (routerId: string) => `routers/${routerId}/assignments/+`,
    signal: (routerId: string) => `routers/${routerId}/signal`,
    answers: (routerId: string) => `routers/${routerId}/signal/answers`,
  },
}

/** The stage id of a router's assignment topic, or undefined for any other topic. */
export function assignedStage(routerId: string, topic: string): string | undefined {
  const prefix = `routers/${routerId}/assignments/`
  return topic.startsWith(prefix) ? topic.slice(prefix.length) : undefined
}

/** Whether `topic` matches the MQTT subscription `filter` (`+` one level, `#` the rest). */
export function matchesFilter(filter: string, topic: string): boolean {
  const f = filter.split('/')
  const t = topic.split('/')
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return !(i === 0 && topic.startsWith('$'))
    if (i >= t.length) return false
    if (f[i] === '+') {
      if (i === 0 && topic.startsWith('$')) return false
      continue
    }
    if (f[i] !== t[i]) return false
  }
  return f.length === t.length
}

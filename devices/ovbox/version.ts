/** The ov-box agent's own version, reported as `status.version`. */
export const AGENT_VERSION = '0.1.0'

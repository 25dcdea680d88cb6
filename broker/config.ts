/**
 * What the broker itself is configured with: how it verifies tokens and where it listens. The hub's
 * whole configuration (services/config.ts) holds these and reads them from the environment.
 */

export type JwtAlgorithm = 'HS256' | 'RS256' | 'ES256'

export interface JwtConfig {
  algorithm: JwtAlgorithm
  secret?: string | undefined
  /** Where the HS256 secret was read from when JWT_SECRET is not set (services/config.ts, `ensureJwtSecretFile`). */
  secretFile?: string | undefined
  publicKey?: string | undefined
  privateKey?: string | undefined
}

export interface ListenerConfig {
  host: string
  mqttPort: number
  httpPort: number
  tls?: { port: number; cert: string; key: string } | undefined
  /** Largest accepted request payload in bytes (64 KiB by default). */
  maxPayloadBytes: number
  /**
   * Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` names the client for HTTP's
   * per-address limits; from anyone else the header is ignored, so clients cannot pick their address.
   */
  trustedProxies: string[]
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError'
}

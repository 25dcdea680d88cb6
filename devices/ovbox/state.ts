import { mkdirSync, readFileSync, renameSync } from 'node:fs'
import { open, rename } from 'node:fs/promises'
import { join } from 'node:path'

/** What the agent remembers across restarts (`{stateDir}/state.json`). */
export interface AgentStateData {
  /** The presence session of the newest connection attempt (docs/protocol/README.md#presence): increased on every connect. */
  session: number
  /** The `devices/{d}/config` revision applied successfully last. */
  appliedRevision?: string
  /** sha256 of the ov-client configuration written and restarted successfully last. */
  ovDigest?: string
  /** The firmware version installed by the agent (undefined: never installed one). */
  firmwareVersion?: string
  /** The last release that failed, so it is not tried again and again. */
  failedFirmware?: { version: string; sha256: string }
}

/** Where the agent keeps its state: a file for a real ov-box, memory for simulated ones. */
export interface StateStore {
  read(): Readonly<AgentStateData>
  /** Merges `patch` (an `undefined` value removes the field) and persists it before resolving. */
  update(patch: Partial<AgentStateData>): Promise<void>
}

/**
 * The first session of a device without remembered state: the wall clock in seconds, so a box whose
 * state was lost (new SD card, wiped state directory) still starts above the sessions the hub has seen
 * from it before and is not ignored as an old session.
 */
export const initialSession = (now = Date.now()): number => Math.floor(now / 1000)

function merge(current: AgentStateData, patch: Partial<AgentStateData>): AgentStateData {
  const next: Record<string, unknown> = { ...current }
  for (const [key, value] of Object.entries(patch)) {
    if (value === undefined) delete next[key]
    else next[key] = value
  }
  return next as unknown as AgentStateData
}

export class MemoryStateStore implements StateStore {
  #data: AgentStateData

  constructor(data: Partial<AgentStateData> = {}) {
    this.#data = { session: initialSession(), ...data }
  }

  read(): Readonly<AgentStateData> {
    return this.#data
  }

  async update(patch: Partial<AgentStateData>): Promise<void> {
    this.#data = merge(this.#data, patch)
  }
}

/** `{stateDir}/state.json`, replaced atomically (temp file, fsync, rename) on every change. */
export class FileStateStore implements StateStore {
  readonly path: string
  /** Why the stored state was not used (unreadable or corrupt): the agent started afresh. */
  readonly problem: string | undefined
  #data: AgentStateData
  #writes: Promise<void> = Promise.resolve()

  private constructor(path: string, data: AgentStateData, problem?: string) {
    this.path = path
    this.#data = data
    this.problem = problem
  }

  /**
   * Reads the state of `stateDir` (created if missing). A missing file is a fresh device; so is a
   * corrupt one (kept as `state.json.corrupt`): a box must come back online rather than wait for
   * someone to repair its SD card, and the clock-based first session still outranks the old ones.
   */
  static open(stateDir: string): FileStateStore {
    mkdirSync(stateDir, { recursive: true })
    const path = join(stateDir, 'state.json')
    const fresh: AgentStateData = { session: initialSession() }
    let text: string
    try {
      text = readFileSync(path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new FileStateStore(path, fresh)
      throw new Error(`cannot read the agent state ${path}: ${(err as Error).message}`)
    }
    try {
      const stored = JSON.parse(text) as Partial<AgentStateData> | null
      if (typeof stored?.session !== 'number' || !Number.isInteger(stored.session)) {
        throw new Error('no session counter')
      }
      return new FileStateStore(path, { ...stored, session: stored.session })
    } catch (err) {
      renameSync(path, `${path}.corrupt`)
      return new FileStateStore(
        path,
        fresh,
        `${path} was corrupt (${(err as Error).message}): started afresh`,
      )
    }
  }

  read(): Readonly<AgentStateData> {
    return this.#data
  }

  update(patch: Partial<AgentStateData>): Promise<void> {
    this.#data = merge(this.#data, patch)
    const text = JSON.stringify(this.#data, null, 2) + '\n'
    // writes go out in order; a failed one does not stop the next
    const write = this.#writes.then(() => writeFileAtomic(this.path, text))
    this.#writes = write.catch(() => undefined)
    return write
  }
}

/** Writes `text` to `path` so that readers see the old or the new content, never a partial file. */
export async function writeFileAtomic(path: string, text: string, mode = 0o600): Promise<void> {
  const temp = `${path}.${process.pid}.tmp`
  const file = await open(temp, 'w', mode)
  try {
    await file.writeFile(text, 'utf8')
    await file.sync()
  } finally {
    await file.close()
  }
  await rename(temp, path)
}

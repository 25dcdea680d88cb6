import { spawn } from 'node:child_process'

export interface CommandResult {
  /** Exit code; null when the command could not start or was killed. */
  code: number | null
  signal: NodeJS.Signals | null
  timedOut: boolean
  /** The last few KiB of standard error. */
  stderr: string
  /** Why it could not start (e.g. ENOENT), if so. */
  startError?: string
}

const TAIL_BYTES = 4096

/**
 * Runs `argv` without a shell (argv[0] looked up on PATH), standard input closed, killed with SIGKILL
 * after `timeoutMs`. Never rejects: the result says what happened.
 */
export function runCommand(argv: readonly string[], options: { timeoutMs: number }): Promise<CommandResult> {
  return new Promise((resolve) => {
    const [file, ...args] = argv
    if (!file) {
      resolve({ code: null, signal: null, timedOut: false, stderr: '', startError: 'empty command' })
      return
    }
    let stderr = Buffer.alloc(0)
    let timedOut = false
    let startError: string | undefined
    const child = spawn(file, args, { shell: false, stdio: ['ignore', 'ignore', 'pipe'] })
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, options.timeoutMs)
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = Buffer.concat([stderr, chunk])
      if (stderr.length > TAIL_BYTES) stderr = stderr.subarray(stderr.length - TAIL_BYTES)
    })
    let settled = false
    const settle = (code: number | null, signal: NodeJS.Signals | null) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resolve({
        code: startError ? null : code,
        signal,
        timedOut,
        stderr: stderr.toString('utf8'),
        ...(startError ? { startError } : {}),
      })
    }
    child.on('error', (err) => {
      startError = err.message
      // a command that never started has nothing more to say ('close' may or may not follow)
      if (child.pid === undefined) settle(null, null)
    })
    child.on('close', settle)
  })
}

/** A one-line reason for a failed command, ending with the tail of its standard error; undefined if it succeeded. */
export function commandFailure(
  what: string,
  result: CommandResult,
  timeoutMs: number,
  maxLength = 500,
): string | undefined {
  if (result.code === 0 && !result.timedOut) return undefined
  const why = result.startError
    ? `could not start: ${result.startError}`
    : result.timedOut
      ? `timed out after ${timeoutMs / 1000} s`
      : result.code !== null
        ? `exited with code ${result.code}`
        : `killed by ${result.signal ?? 'a signal'}`
  const head = `${what} ${why}`
  const tail = result.stderr.trim().replace(/\s+/g, ' ')
  if (!tail) return truncate(head, maxLength)
  const room = maxLength - head.length - 2
  return room > 20
    ? `${head}: ${tail.length > room ? '…' + tail.slice(-(room - 1)) : tail}`
    : truncate(head, maxLength)
}

export const truncate = (text: string, max: number): string =>
  text.length <= max ? text : text.slice(0, max - 1) + '…'

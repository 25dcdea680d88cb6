import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { Tasks } from '../load/tasks.ts'

const WORKER = fileURLToPath(new URL('../load/worker.ts', import.meta.url))

type Params<K extends keyof Tasks> = Parameters<Tasks[K]>[0]
type Result<K extends keyof Tasks> = Awaited<ReturnType<Tasks[K]>>

/** One load-generator process (child process, so its CPU time is its own and measurable). */
export class LoadWorker {
  readonly child: ChildProcess
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()
  #seq = 0

  private constructor(child: ChildProcess) {
    this.child = child
    child.on('message', (m: { id: number; result?: unknown; error?: string }) => {
      const p = this.#pending.get(m.id)
      if (!p) return
      this.#pending.delete(m.id)
      if (m.error !== undefined) p.reject(new Error(`load worker: ${m.error}`))
      else p.resolve(m.result)
    })
    child.on('exit', (code) => {
      for (const p of this.#pending.values()) p.reject(new Error(`load worker exited (${code})`))
      this.#pending.clear()
    })
  }

  static start(): Promise<LoadWorker> {
    const child = fork(WORKER, [], {
      execArgv: ['--import', 'tsx'],
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    return new Promise((resolve, reject) => {
      child.once('error', reject)
      child.once('message', () => resolve(new LoadWorker(child)))
    })
  }

  get pid(): number {
    return this.child.pid!
  }

  call<K extends keyof Tasks>(task: K, params: Params<K>): Promise<Result<K>> {
    const id = ++this.#seq
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject })
      this.child.send({ id, task, params })
    })
  }

  stop(): Promise<void> {
    // a worker killed by a signal has no exit code, only a signal code: waiting for its exit would hang
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.resolve()
    return new Promise((resolve) => {
      this.child.once('exit', () => resolve())
      if (this.child.connected) this.child.disconnect()
      setTimeout(() => this.child.kill('SIGKILL'), 3000).unref()
    })
  }
}

/** Several load-generator processes. */
export class LoadPool {
  readonly workers: LoadWorker[]

  private constructor(workers: LoadWorker[]) {
    this.workers = workers
  }

  static async start(size: number): Promise<LoadPool> {
    return new LoadPool(await Promise.all(Array.from({ length: size }, () => LoadWorker.start())))
  }

  get pids(): Record<string, number> {
    return Object.fromEntries(this.workers.map((w, i) => [`load${i}`, w.pid]))
  }

  /** Runs one task on every worker, with per-worker params. */
  all<K extends keyof Tasks>(task: K, params: (index: number) => Params<K>): Promise<Result<K>[]> {
    return Promise.all(this.workers.map((w, i) => w.call(task, params(i))))
  }

  stop(): Promise<void[]> {
    return Promise.all(this.workers.map((w) => w.stop()))
  }
}

/** Splits a list into n nearly equal consecutive parts. */
export function split<T>(items: readonly T[], n: number): T[][] {
  const parts: T[][] = []
  for (let i = 0; i < n; i++)
    parts.push(items.slice(Math.floor((i * items.length) / n), Math.floor(((i + 1) * items.length) / n)))
  return parts
}

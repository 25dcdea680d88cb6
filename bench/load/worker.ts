import { tasks } from './tasks.ts'

/** A load-generator process: runs the tasks its parent sends over IPC, one reply per call. */
interface Call {
  id: number
  task: keyof typeof tasks
  params: unknown
}

process.on('message', (call: Call) => {
  const run = tasks[call.task] as (params: unknown) => unknown
  Promise.resolve()
    .then(() => run(call.params))
    .then(
      (result) => process.send!({ id: call.id, result }),
      (err: unknown) => process.send!({ id: call.id, error: (err as Error).stack ?? String(err) }),
    )
})
process.on('disconnect', () => process.exit(0))
process.send!({ ready: true })

import { signal, useSignalEffect, type ReadonlySignal } from '@preact/signals'
import { useMemo } from 'preact/hooks'
import { hub } from './connection.ts'

/**
 * The retained values under an MQTT filter, by topic, live: every current value, then each change
 * (a cleared topic leaves the map). Watching starts with the component and stops when it goes, and
 * follows the connection (a new one after signing in again). Nothing polls.
 */
export function useLive<T>(filter: string | undefined): ReadonlySignal<ReadonlyMap<string, T>> {
  const values = useMemo(() => signal<ReadonlyMap<string, T>>(new Map()), [filter])
  useSignalEffect(() => {
    const client = hub.value
    if (!client || !filter) return
    // a burst of retained values (a stage's members and tracks) lands in one render
    let pending: Map<string, T> | undefined
    const stop = client.watch<T>(filter, ({ topic, value }) => {
      if (!pending) {
        pending = new Map(values.peek())
        queueMicrotask(() => {
          values.value = pending!
          pending = undefined
        })
      }
      if (value === undefined) pending.delete(topic)
      else pending.set(topic, value)
    })
    return () => {
      stop()
      values.value = new Map()
    }
  })
  return values
}

/** The retained value of one topic, live (undefined until it arrives or once cleared). */
export function useLiveValue<T>(topic: string | undefined): T | undefined {
  const values = useLive<T>(topic)
  return topic ? values.value.get(topic) : undefined
}

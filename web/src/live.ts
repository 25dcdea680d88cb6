import { effect, signal, type ReadonlySignal } from '@preact/signals'
import { useEffect, useMemo } from 'preact/hooks'
import { hub } from './connection.ts'

/**
 * The retained values under an MQTT filter, by topic, live: every current value, then each change
 * (a cleared topic leaves the map). Watching starts with the component, moves when the filter does
 * (one stage's page replaced by another's keeps the component), follows the connection (a new one
 * after signing in again) and stops when the component goes. Nothing polls.
 */
export function useLive<T>(filter: string | undefined): ReadonlySignal<ReadonlyMap<string, T>> {
  const values = useMemo(() => signal<ReadonlyMap<string, T>>(new Map()), [filter])
  useEffect(() => {
    if (!filter) return
    return effect(() => {
      const client = hub.value
      if (!client) return
      // a burst of retained values (a stage's members and tracks) lands in one render
      let pending: Map<string, T> | undefined
      let stopped = false
      const stopWatching = client.watch<T>(filter, ({ topic, value }) => {
        if (!pending) {
          pending = new Map(values.peek())
          queueMicrotask(() => {
            // a burst of a watch that has stopped since is not shown
            if (!stopped) values.value = pending!
            pending = undefined
          })
        }
        if (value === undefined) pending.delete(topic)
        else pending.set(topic, value)
      })
      return () => {
        stopped = true
        stopWatching()
        values.value = new Map()
      }
    })
  }, [values, filter])
  return values
}

/** The retained value of one topic, live (undefined until it arrives or once cleared). */
export function useLiveValue<T>(topic: string | undefined): T | undefined {
  const values = useLive<T>(topic)
  return topic ? values.value.get(topic) : undefined
}

import { useEffect, useRef } from 'preact/hooks'

/**
 * A ref that takes the keyboard focus whenever `active` turns true (not on the first render): a
 * confirmation's Cancel when it opens, its trigger again when it closes, so the focus is never lost
 * with a button that went away.
 */
export function useFocusOn<E extends HTMLElement = HTMLButtonElement>(active: boolean) {
  const ref = useRef<E>(null)
  const first = useRef(true)
  useEffect(() => {
    if (first.current) {
      first.current = false
      return
    }
    if (active) ref.current?.focus()
  }, [active])
  return ref
}

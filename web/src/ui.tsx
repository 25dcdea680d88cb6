import { useLayoutEffect } from 'preact/hooks'
import { RequestError } from '../../devices/hub-client/index.ts'
import { href } from './route.ts'

/** Reads a submitted form's text fields by name (and stops the page from navigating). */
export function fields(event: Event): (name: string) => string {
  event.preventDefault()
  const form = new FormData(event.currentTarget as HTMLFormElement)
  return (name) => {
    const value = form.get(name)
    return typeof value === 'string' ? value : ''
  }
}

const sentence = (text: string): string => text.charAt(0).toUpperCase() + text.slice(1)

/**
 * What to show a person for a failure: the hub's own message where it sent one, without the action
 * and code (programs read `err.code`), as a sentence.
 */
export const message = (err: unknown): string =>
  sentence(err instanceof RequestError ? err.reason : err instanceof Error ? err.message : String(err))

/** A form's outcome, announced: the hub's message on failure. */
export function Outcome({ text, failed }: { text: string; failed: boolean }) {
  if (!text) return null
  return failed ? (
    <p class="error" role="alert">
      {text}
    </p>
  ) : (
    <p role="status">{text}</p>
  )
}

/**
 * The tab's and screen reader's name for the page: "Stage name · stagehub". Set with the render that
 * shows the page (a layout effect), not a frame later.
 */
export function usePageTitle(title: string | undefined): void {
  useLayoutEffect(() => {
    document.title = title ? `${title} · stagehub` : 'stagehub'
  }, [title])
}

/** The way up, the same on every page: "← Back to stages" above the heading. */
export function BackLink({ to = ['stages'], label = 'stages' }: { to?: string[]; label?: string }) {
  return (
    <p class="back">
      <a href={href(...to)}>
        <span aria-hidden="true">← </span>Back to {label}
      </a>
    </p>
  )
}

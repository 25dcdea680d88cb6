import { computed, signal } from '@preact/signals'

/**
 * Where the person is, from the address's hash (`#/stages/abc`): links work without a server route,
 * a reload stays on the page, and an invite link (`#/invite/<code>`) survives signing in first.
 */
const hash = signal(location.hash)
addEventListener('hashchange', () => (hash.value = location.hash))

/** The path's levels, decoded: `#/stages/abc/mixer` → `['stages', 'abc', 'mixer']`. */
export const route = computed(() =>
  hash.value
    .replace(/^#\/?/, '')
    .split('/')
    .filter(Boolean)
    .map((level) => decodeURIComponent(level)),
)

/** The link to a page: `href('stages', id)` → `#/stages/<id>`. */
export const href = (...levels: string[]): string => `#/${levels.map(encodeURIComponent).join('/')}`

export function navigate(...levels: string[]): void {
  location.hash = href(...levels)
}

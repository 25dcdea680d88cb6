import type { MemberState } from '../../../schemas/actions/stage.ts'

/** Where a member is: online (in the stage with a device online), in the stage without one, or away. */
export function presenceOf(member: Pick<MemberState, 'joined' | 'online'>): {
  state: 'online' | 'joined' | 'away'
  text: string
} {
  if (member.online) return { state: 'online', text: 'online' }
  if (member.joined) return { state: 'joined', text: 'in the stage, no device online' }
  return { state: 'away', text: 'not in the stage' }
}

/** A dot for the eye and the same in words for screen readers. */
export function Presence({ member }: { member: Pick<MemberState, 'joined' | 'online'> }) {
  const { state, text } = presenceOf(member)
  return (
    <span class={`presence ${state}`} data-presence={state}>
      <span class="presence-dot" aria-hidden="true" />
      <span class="sr-only">{text}</span>
    </span>
  )
}

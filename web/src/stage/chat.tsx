import { useSignal, useSignalEffect } from '@preact/signals'
import { useEffect, useRef } from 'preact/hooks'
import { topics } from '../../../devices/hub-client/index.ts'
import type { ChatMessage } from '../../../schemas/actions/stage.ts'
import { connection, hub } from '../connection.ts'
import { session } from '../session.ts'
import { message, Outcome } from '../ui.tsx'

/** Messages kept in memory while the page is open; older ones drop off the top. */
export const CHAT_KEPT = 200

const clock = (time: string) => new Date(time).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })

/**
 * The stage's chat: notices on `stages/{s}/chat` (not retained, so only what arrives while the page
 * is open), newest at the bottom, announced politely; Enter sends (chat.send, only while joined).
 */
export function Chat({ stageId, joined }: { stageId: string; joined: boolean }) {
  const messages = useSignal<readonly ChatMessage[]>([])
  const outcome = useSignal({ text: '', failed: false })
  const busy = useSignal(false)
  const log = useRef<HTMLDivElement>(null)

  useSignalEffect(() => {
    const client = hub.value
    if (!client) return
    return client.listen<ChatMessage>(topics.chat.build(stageId), (_topic, m) => {
      const kept = messages.peek()
      if (kept.some((k) => k.id === m.id)) return
      messages.value = [...kept.slice(-(CHAT_KEPT - 1)), m]
    })
  })
  useEffect(() => {
    const list = log.current
    if (list) list.scrollTop = list.scrollHeight
  }, [messages.value])

  const send = async (event: Event) => {
    event.preventDefault()
    const form = event.currentTarget as HTMLFormElement
    const input = form.elements.namedItem('text') as HTMLInputElement
    const text = input.value.trim()
    if (!text) return
    busy.value = true
    try {
      await hub.value!.request('chat.send', { text })
      input.value = ''
      outcome.value = { text: '', failed: false }
    } catch (err) {
      outcome.value = { text: message(err), failed: true }
    } finally {
      busy.value = false
      input.focus()
    }
  }
  const me = session.value?.userId
  return (
    <section aria-labelledby="chat-heading" class="panel chat">
      <h2 id="chat-heading">Chat</h2>
      <div
        class="chat-log"
        ref={log}
        role="log"
        aria-live="polite"
        aria-labelledby="chat-heading"
        tabIndex={0}
      >
        <ol>
          {messages.value.length === 0 && <li class="muted">No messages since you opened this page.</li>}
          {messages.value.map((m) => (
            <li key={m.id} class={m.userId === me ? 'mine' : undefined}>
              <span class="chat-meta">
                <strong>{m.userId === me ? 'You' : m.name}</strong>{' '}
                <time dateTime={m.time}>{clock(m.time)}</time>
              </span>
              <span class="chat-text">{m.text}</span>
            </li>
          ))}
        </ol>
      </div>
      <form class="chat-form" onSubmit={(e) => void send(e)}>
        <label>
          Message
          <input
            name="text"
            autoComplete="off"
            maxLength={1000}
            required
            disabled={!joined}
            aria-describedby={joined ? undefined : 'chat-hint'}
          />
        </label>
        <button type="submit" disabled={!joined || busy.value || connection.value.state !== 'online'}>
          Send
        </button>
      </form>
      {!joined && (
        <p id="chat-hint" class="muted">
          Join the stage to chat.
        </p>
      )}
      <Outcome {...outcome.value} />
    </section>
  )
}

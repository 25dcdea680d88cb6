import { signal, useSignal, useSignalEffect } from '@preact/signals'
import { useEffect, useRef } from 'preact/hooks'
import { RequestError } from '../../devices/hub-client/index.ts'
import { connect, connection, hub, profile } from './connection.ts'
import { HubHttpError, renewed, session, signIn, signOut, signUp } from './session.ts'

const LABELS = {
  connecting: 'Connecting…',
  online: 'Online',
  reconnecting: 'Reconnecting…',
  refused: 'Refused',
} as const

/** The connection as it is, announced to screen readers when it changes. */
function ConnectionBadge() {
  const c = connection.value
  return (
    <p class={`connection ${c.state}`} role="status" aria-live="polite" data-testid="connection">
      <span class="dot" aria-hidden="true" />
      {LABELS[c.state]}
    </p>
  )
}

function AuthForm() {
  const mode = useSignal<'signin' | 'signup'>('signin')
  const error = useSignal('')
  const busy = useSignal(false)
  const heading = useRef<HTMLHeadingElement>(null)
  useEffect(() => heading.current?.focus(), [mode.value])

  const submit = async (event: Event) => {
    event.preventDefault()
    const form = new FormData(event.currentTarget as HTMLFormElement)
    const field = (name: string) => {
      const value = form.get(name)
      return typeof value === 'string' ? value : ''
    }
    busy.value = true
    error.value = ''
    try {
      if (mode.value === 'signup')
        await signUp({ name: field('name'), email: field('email'), password: field('password') })
      else await signIn({ email: field('email'), password: field('password') })
    } catch (err) {
      error.value = err instanceof HubHttpError ? err.message : String(err)
    } finally {
      busy.value = false
    }
  }
  const signingUp = mode.value === 'signup'
  return (
    <main class="card">
      <h1 tabIndex={-1} ref={heading}>
        {signingUp ? 'Create your account' : 'Sign in'}
      </h1>
      <form onSubmit={(e) => void submit(e)} aria-describedby={error.value ? 'auth-error' : undefined}>
        {signingUp && (
          <label>
            Name
            <input name="name" autoComplete="name" required maxLength={100} />
          </label>
        )}
        <label>
          E-mail
          <input name="email" type="email" autoComplete="email" required />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            autoComplete={signingUp ? 'new-password' : 'current-password'}
            required
            minLength={signingUp ? 8 : 1}
          />
        </label>
        {error.value && (
          <p id="auth-error" class="error" role="alert">
            {error.value}
          </p>
        )}
        <button type="submit" disabled={busy.value}>
          {signingUp ? 'Sign up' : 'Sign in'}
        </button>
      </form>
      <p>
        {signingUp ? 'Have an account? ' : 'New here? '}
        <button
          type="button"
          class="link"
          onClick={() => {
            mode.value = signingUp ? 'signin' : 'signup'
            error.value = ''
          }}
        >
          {signingUp ? 'Sign in' : 'Create an account'}
        </button>
      </p>
    </main>
  )
}

/** Reads a form's text fields by name. */
function fields(event: Event): (name: string) => string {
  event.preventDefault()
  const form = new FormData(event.currentTarget as HTMLFormElement)
  return (name) => {
    const value = form.get(name)
    return typeof value === 'string' ? value : ''
  }
}

const message = (err: unknown): string =>
  err instanceof RequestError ? err.message : err instanceof Error ? err.message : String(err)

/** A form's outcome, announced: the hub's message on failure. */
function Outcome({ text, failed }: { text: string; failed: boolean }) {
  if (!text) return null
  return failed ? (
    <p class="error" role="alert">
      {text}
    </p>
  ) : (
    <p role="status">{text}</p>
  )
}

function ProfileForms() {
  const nameOutcome = useSignal({ text: '', failed: false })
  const passwordOutcome = useSignal({ text: '', failed: false })
  const online = connection.value.state === 'online'

  const rename = async (event: Event) => {
    const field = fields(event)
    try {
      const avatarUrl = field('avatarUrl').trim()
      await hub.value!.request('user.update', { name: field('name'), avatarUrl: avatarUrl || null })
      nameOutcome.value = { text: 'Profile saved', failed: false }
    } catch (err) {
      nameOutcome.value = { text: message(err), failed: true }
    }
  }
  const changePassword = async (event: Event) => {
    const form = event.currentTarget as HTMLFormElement
    const field = fields(event)
    try {
      renewed(
        await hub.value!.request('user.changePassword', {
          currentPassword: field('current'),
          newPassword: field('new'),
        }),
      )
      form.reset()
      passwordOutcome.value = { text: 'Password changed: other sessions are signed out', failed: false }
    } catch (err) {
      passwordOutcome.value = { text: message(err), failed: true }
    }
  }
  return (
    <>
      <section aria-labelledby="name-heading">
        <h2 id="name-heading">Your profile</h2>
        <form onSubmit={(e) => void rename(e)}>
          <label>
            Name
            <input name="name" autoComplete="name" required maxLength={100} value={profile.value?.name} />
          </label>
          <label>
            Picture (an https:// address, optional)
            <input
              name="avatarUrl"
              type="url"
              inputMode="url"
              maxLength={2048}
              pattern="https?://.*"
              value={profile.value?.avatarUrl ?? ''}
            />
          </label>
          <Outcome {...nameOutcome.value} />
          <button type="submit" disabled={!online}>
            Save profile
          </button>
        </form>
      </section>
      <section aria-labelledby="password-heading">
        <h2 id="password-heading">Password</h2>
        <form onSubmit={(e) => void changePassword(e)}>
          <label>
            Current password
            <input name="current" type="password" autoComplete="current-password" required />
          </label>
          <label>
            New password
            <input name="new" type="password" autoComplete="new-password" required minLength={8} />
          </label>
          <Outcome {...passwordOutcome.value} />
          <button type="submit" disabled={!online}>
            Change password
          </button>
        </form>
      </section>
    </>
  )
}

/** Ticks twice a minute: what depends on the time (the token's end) reads it. */
const now = signal(Date.now())
setInterval(() => (now.value = Date.now()), 30_000)

/** Warns in the token's last hour, so the person signs in again before the hub refuses it. */
const WARN_BEFORE_MS = 3600_000

function ExpiryWarning() {
  const ends = Date.parse(session.value?.expiresAt ?? '')
  const left = ends - now.value
  if (!(left > 0 && left < WARN_BEFORE_MS)) return null
  return (
    <div class="warning" role="status">
      <p>
        Your sign-in ends at {new Date(ends).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}:
        sign in again before then to stay connected.
      </p>
      <button type="button" onClick={signOut}>
        Sign in again
      </button>
    </div>
  )
}

function Home() {
  const c = connection.value
  return (
    <main class="card">
      <div class="greeting">
        {profile.value?.avatarUrl && (
          <img class="avatar" src={profile.value.avatarUrl} alt="" referrerpolicy="no-referrer" />
        )}
        <h1>{profile.value ? `Hello, ${profile.value.name}` : 'Hello'}</h1>
      </div>
      {profile.value && (
        <p>
          Signed in as <strong data-testid="profile-name">{profile.value.name}</strong>
        </p>
      )}
      {c.state === 'refused' && (
        <div class="error" role="alert">
          <p>The hub refused the connection: {c.message}</p>
          {c.expired && <p>Your sign-in has expired: sign out and sign in again.</p>}
        </div>
      )}
      {c.state !== 'refused' && <ExpiryWarning />}
      {c.state !== 'refused' && <ProfileForms />}
    </main>
  )
}

export function App() {
  // one connection per signed-in session; signing out closes it
  useSignalEffect(() => {
    const current = session.value
    if (!current) return
    return connect(current)
  })
  const signedIn = session.value !== null
  return (
    <>
      <header class="bar">
        <span class="brand">stagehub</span>
        {signedIn && <ConnectionBadge />}
        {signedIn && (
          <button type="button" onClick={signOut}>
            Sign out
          </button>
        )}
      </header>
      {signedIn ? <Home /> : <AuthForm />}
    </>
  )
}

import { signal, useSignal, useSignalEffect } from '@preact/signals'
import { useEffect, useRef } from 'preact/hooks'
import { followSignedIn } from './browser-device.ts'
import { followDeviceChoices } from './media/device-choices.ts'
import { followMediaSession, leaveAudio, mediaSession } from './media/session.ts'
import { connect, connection } from './connection.ts'
import { AccountPage } from './pages/account.tsx'
import { DevicesPage } from './pages/devices.tsx'
import { InvitePage } from './pages/invite.tsx'
import { MixerPage } from './pages/mixer.tsx'
import { OperatorPage } from './pages/operator.tsx'
import { StagePage } from './pages/stage.tsx'
import { StageSettingsPage } from './pages/stage-settings.tsx'
import { StagesPage } from './pages/stages.tsx'
import { href, route } from './route.ts'
import { message, usePageTitle } from './ui.tsx'
import { renewal, session, signedInAs, signIn, signOut, signUp } from './session.ts'

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
      error.value = message(err)
    } finally {
      busy.value = false
    }
  }
  const signingUp = mode.value === 'signup'
  usePageTitle(signingUp ? 'Create your account' : 'Sign in')
  return (
    <main class="card">
      <h1 tabIndex={-1} ref={heading}>
        {signingUp ? 'Create your account' : 'Sign in'}
      </h1>
      {route.value[0] === 'invite' && (
        <p data-testid="invite-reason">Sign in or create an account to open your invitation.</p>
      )}
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

/** Ticks twice a minute: what depends on the time (the token's end) reads it. */
const now = signal(Date.now())
setInterval(() => (now.value = Date.now()), 30_000)

/** Warns in the token's last hour when renewing it is failing, so the person signs in again in time. */
const WARN_BEFORE_MS = 3600_000

/**
 * Shown only when the background renewal (session.ts) failed: refused (revoked, expired), or the hub
 * unreachable in the token's last hour. Otherwise the person stays signed in without a word.
 */
function ExpiryWarning() {
  const r = renewal.value
  const ends = Date.parse(session.value?.expiresAt ?? '')
  const left = ends - now.value
  if (r.state === 'current' || (r.state === 'retrying' && left > WARN_BEFORE_MS)) return null
  const at = new Date(ends).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
  return (
    <div class="warning" role="status" data-testid="expiry-warning">
      <p>
        {left > 0 ? `Your sign-in ends at ${at}` : 'Your sign-in has ended'} and could not be renewed:{' '}
        {r.message}.
      </p>
      <button type="button" onClick={signOut}>
        Sign in again
      </button>
    </div>
  )
}

/** What stops the app from working, shown on every page: a refused connection, a sign-in about to end. */
function ConnectionProblems() {
  const c = connection.value
  if (c.state !== 'refused') return <ExpiryWarning />
  return (
    <div class="card error" role="alert">
      <p>The hub refused the connection: {c.message}</p>
      {c.expired && <p>Your sign-in has expired: sign out and sign in again.</p>}
    </div>
  )
}

const PAGES = [
  { path: 'stages', label: 'Stages' },
  { path: 'devices', label: 'Devices' },
  { path: 'account', label: 'Account' },
  { path: 'operator', label: 'Operator' },
] as const

/** The page the address names; an unknown address shows the stages. */
function Page() {
  const [first, ...rest] = route.value
  switch (first) {
    case 'account':
      return <AccountPage />
    case 'devices':
      return <DevicesPage />
    case 'operator':
      return <OperatorPage />
    case 'invite':
      return <InvitePage code={rest[0] ?? ''} />
    case 'stages':
      if (rest[0] && rest[1] === 'mixer') return <MixerPage stageId={rest[0]} />
      if (rest[0] && rest[1] === 'settings') return <StageSettingsPage stageId={rest[0]} />
      if (rest[0]) return <StagePage stageId={rest[0]} />
      return <StagesPage />
    default:
      return <StagesPage />
  }
}

/**
 * The main pages, the current one marked: `page` on the page itself, `location` on its sub-pages (a
 * stage, its mixer and settings are in Stages). An unknown address shows the stages.
 */
function Navigation() {
  const [first, ...rest] = route.value
  const current = PAGES.some((p) => p.path === first) ? first : first === 'invite' ? undefined : 'stages'
  const here = rest.length ? 'location' : 'page'
  return (
    <nav aria-label="Main">
      <ul>
        {PAGES.map(({ path, label }) => (
          <li key={path}>
            <a href={href(path)} aria-current={current === path ? here : undefined}>
              {label}
            </a>
          </li>
        ))}
      </ul>
    </nav>
  )
}

/**
 * While the tab is in a stage's audio and the person is on another page (the stage's mixer or
 * settings, their devices…): which stage, a way back and Leave, and whether sound still arrives. On
 * the stage's own page its audio panel says all this.
 */
function InAudio() {
  const session = mediaSession.value
  const [first, stageId, sub] = route.value
  if (!session || (first === 'stages' && stageId === session.stageId && !sub)) return null
  const status = session.audio.status.value
  const figures = session.audio.figures.value
  let bytes = 0
  let packets = 0
  for (const f of figures.received.values()) {
    bytes += f.bytes
    packets += f.packets
  }
  const name = session.stage.value?.name ?? 'this stage'
  return (
    <section class="in-audio" aria-label="Audio" data-testid="in-audio" data-phase={status.phase}>
      <p role="status" data-bytes={bytes} data-packets={packets}>
        {status.phase === 'on' ? 'In audio' : status.phase === 'failed' ? 'Audio stopped' : 'Joining audio'}:{' '}
        <a href={href('stages', session.stageId)}>{name}</a>
      </p>
      <button type="button" class="secondary" onClick={leaveAudio}>
        Leave audio
      </button>
      {status.phase === 'failed' && (
        <p class="error" role="alert">
          {status.text}
        </p>
      )}
    </section>
  )
}

/**
 * The page, in a container that stays across addresses: after moving to another page the focus goes
 * to its start (screen readers read on from there, Tab continues in it), unless the page put it
 * somewhere itself. Not on the first load, where the browser's own start applies.
 */
function PageArea({ signedIn }: { signedIn: boolean }) {
  const area = useRef<HTMLDivElement>(null)
  const path = route.value.join('/')
  const first = useRef(true)
  useEffect(() => {
    if (first.current) {
      first.current = false
      return
    }
    if (!area.current?.contains(document.activeElement)) area.current?.focus()
  }, [path])
  return (
    <div id="page" tabIndex={-1} ref={area}>
      {signedIn || route.value[0] === 'operator' ? <Page /> : <AuthForm />}
    </div>
  )
}

export function App() {
  // one connection per signed-in session; signing out closes it
  useSignalEffect(() => {
    // a renewed token changes the session, not who is signed in: the connection stays
    if (!signedInAs.value) return
    return connect(session.peek()!)
  })
  useEffect(followSignedIn, [])
  useEffect(followDeviceChoices, [])
  useEffect(followMediaSession, [])
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
      {signedIn && <Navigation />}
      {signedIn && <InAudio />}
      {signedIn && <ConnectionProblems />}
      <PageArea signedIn={signedIn} />
    </>
  )
}

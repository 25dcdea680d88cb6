import { signal, useSignal } from '@preact/signals'
import { useEffect, useRef } from 'preact/hooks'
import { type ActionResult, HubClient, topics } from '../../../devices/hub-client/index.ts'
import type { AssignmentState, RouterState } from '../../../schemas/actions/router.ts'
import type { HubStatus } from '../../../schemas/state.ts'
import { explain, hubOrigin } from '../session.ts'
import { fields, message, usePageTitle } from '../ui.tsx'
import './operator.css'

/**
 * The operator's admin token: kept for this tab only (sessionStorage), sent only to this hub (as the
 * MQTT password and to /auth/explain), forgotten when the operator signs out here.
 */
const KEY = 'stagehub.operatorToken'
const adminToken = signal<string | null>(sessionStorage.getItem(KEY))

type OperatorConnection = 'connecting' | 'online' | 'reconnecting' | { refused: string }

const STATE_LABELS = { connecting: 'Connecting…', online: 'Online', reconnecting: 'Reconnecting…' } as const

/** Hub status and releases are read by requests: again this often, only while the page is visible. */
const REFRESH_MS = 5_000

/** The `sub` of a token, to name the connection's client id (the hub checks the token itself). */
function subject(token: string): string {
  try {
    const payload = token.split('.')[1]!.replace(/-/g, '+').replace(/_/g, '/')
    const { sub } = JSON.parse(atob(payload)) as { sub?: unknown }
    if (typeof sub === 'string' && /^[A-Za-z0-9_-]{1,40}$/.test(sub)) return sub
  } catch {
    // not a JWT: the hub says so at /auth/explain
  }
  return 'operator'
}

const newClientId = (token: string) => `${subject(token)}-ops-${crypto.randomUUID().slice(0, 8)}`

function forget(): void {
  sessionStorage.removeItem(KEY)
  adminToken.value = null
}

/** Asks for the admin token; the hub checks it (/auth/explain) before it is kept. */
function TokenForm() {
  const error = useSignal('')
  const busy = useSignal(false)
  const submit = async (event: Event) => {
    const token = fields(event)('token').trim()
    busy.value = true
    error.value = ''
    try {
      const why = await explain(token, newClientId(token))
      if (!why.accepted) error.value = `The hub refused this token: ${why.reason ?? 'not accepted'}.`
      else if (why.token?.role !== 'admin') {
        error.value = `This is a ${why.token?.role ?? 'non-admin'} token: the operator page needs an admin token (made with stagehub token --role admin).`
      } else {
        sessionStorage.setItem(KEY, token)
        adminToken.value = token
      }
    } catch (err) {
      error.value = message(err)
    } finally {
      busy.value = false
    }
  }
  return (
    <main class="card">
      <h1>Operator</h1>
      <p>Hub operators see the hub's status, its routers and firmware releases with an admin token.</p>
      <form onSubmit={(e) => void submit(e)}>
        <label>
          Admin token
          <input
            name="token"
            type="password"
            autoComplete="off"
            spellcheck={false}
            required
            aria-describedby="token-help"
          />
        </label>
        <p id="token-help" class="hint">
          Kept in this tab only until you sign out here, and sent only to this hub.
        </p>
        {error.value && (
          <p class="error" role="alert">
            {error.value}
          </p>
        )}
        <button type="submit" disabled={busy.value}>
          Open the operator view
        </button>
      </form>
    </main>
  )
}

type Status = ActionResult<'hub.status'>
type Releases = ActionResult<'release.list'>['releases']

/** The operator's own connection and what it shows, live while the page is open. */
function useOperatorHub(token: string) {
  const state = useSignal<OperatorConnection>('connecting')
  const hubStatus = useSignal<HubStatus | undefined>(undefined)
  const status = useSignal<Status | undefined>(undefined)
  const routers = useSignal<ReadonlyMap<string, RouterState>>(new Map())
  const assignments = useSignal<ReadonlyMap<string, AssignmentState>>(new Map())
  const releases = useSignal<Releases | undefined>(undefined)
  const problem = useSignal('')

  useEffect(() => {
    const clientId = newClientId(token)
    let attempts = 0
    let onlineSinceAttempt = false
    const client: HubClient = new HubClient(
      {
        url: `${hubOrigin().replace(/^http/, 'ws')}/mqtt`,
        clientId,
        token: async () => {
          // an attempt that did not get online: the hub says why (expired, revoked…) and retries stop
          if (attempts++ > 0 && !onlineSinceAttempt) {
            const why = await explain(token, clientId).catch(() => undefined)
            if (why && !why.accepted) {
              state.value = { refused: why.reason ?? 'the hub refused the connection' }
              void client.stop()
            }
          }
          onlineSinceAttempt = false
          return token
        },
      },
      {
        connected: () => {
          onlineSinceAttempt = true
          state.value = 'online'
          void refresh()
        },
        disconnected: () => {
          if (typeof state.value === 'string') state.value = 'reconnecting'
        },
      },
    )
    const into =
      <T,>(target: { value: ReadonlyMap<string, T> }) =>
      ({ topic, value }: { topic: string; value: T | undefined }) => {
        const next = new Map(target.value)
        if (value === undefined) next.delete(topic)
        else next.set(topic, value)
        target.value = next
      }
    const stops = [
      client.watch<HubStatus>(topics.hubStatus.build(), ({ value }) => (hubStatus.value = value)),
      client.watch<RouterState>(topics.router.filter({}), into(routers)),
      client.watch<AssignmentState>(topics.assignment.filter({}), into(assignments)),
    ]
    const refresh = async () => {
      if (document.visibilityState !== 'visible' || state.peek() !== 'online') return
      try {
        const [now, list] = await Promise.all([
          client.request('hub.status', {}),
          client.request('release.list', {}),
        ])
        status.value = now
        releases.value = list.releases
        problem.value = ''
      } catch (err) {
        problem.value = message(err)
      }
    }
    const timer = setInterval(() => void refresh(), REFRESH_MS)
    const visible = () => void refresh()
    document.addEventListener('visibilitychange', visible)
    client.start()
    return () => {
      clearInterval(timer)
      document.removeEventListener('visibilitychange', visible)
      for (const stop of stops) stop()
      void client.stop()
    }
  }, [token])

  return { state, hubStatus, status, routers, assignments, releases, problem }
}

function duration(seconds: number): string {
  const d = Math.floor(seconds / 86400)
  const h = Math.floor((seconds % 86400) / 3600)
  const m = Math.floor((seconds % 3600) / 60)
  if (d > 0) return `${d} d ${h} h`
  if (h > 0) return `${h} h ${m} min`
  return m > 0 ? `${m} min` : `${Math.floor(seconds)} s`
}

const when = (iso: string | undefined) =>
  iso ? new Date(iso).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' }) : '—'

const ROLES = [
  ['user', 'People'],
  ['device', 'Devices'],
  ['router', 'Routers'],
  ['admin', 'Operators'],
  ['total', 'Total'],
] as const

function HubSection({ hub }: { hub: ReturnType<typeof useOperatorHub> }) {
  const s = hub.status.value
  const retained = hub.hubStatus.value
  return (
    <section aria-labelledby="ops-hub" class="ops-section">
      <h2 id="ops-hub">Hub</h2>
      <dl class="facts">
        <div>
          <dt>Version</dt>
          <dd>{s?.version ?? retained?.version ?? '…'}</dd>
        </div>
        <div>
          <dt>Store</dt>
          <dd>{s ? (s.store === 'embedded' ? 'embedded (SQLite)' : 'MongoDB') : '…'}</dd>
        </div>
        <div>
          <dt>Up for</dt>
          <dd>{s ? duration(s.uptimeSeconds) : '…'}</dd>
        </div>
        <div>
          <dt>Started</dt>
          <dd>{when(s?.startedAt ?? retained?.since)}</dd>
        </div>
        {s?.cluster && (
          <div class="wide">
            <dt>Processes</dt>
            <dd data-testid="hub-processes">
              {s.cluster.processes.length} live process{s.cluster.processes.length === 1 ? '' : 'es'}:{' '}
              {s.cluster.processes.join(', ')} · this page is on {s.cluster.processId}
              {s.cluster.coordinator ? ' (the coordinator)' : ''}
            </dd>
          </div>
        )}
      </dl>
      <h3>Connected clients</h3>
      <ul class="counts" data-testid="client-counts">
        {ROLES.map(([role, label]) => (
          <li key={role}>
            <span class="count">{s ? s.connections[role] : '…'}</span> {label}
          </li>
        ))}
      </ul>
    </section>
  )
}

function Capacity({ capacity }: { capacity: RouterState['capacity'] }) {
  const parts = Object.entries(capacity).map(([kind, n]) => `${n} ${kind}`)
  return <>{parts.length ? `${parts.join(', ')} stages` : '—'}</>
}

const count = (n: number, noun: string) => `${n} ${noun}${n === 1 ? '' : 's'}`

function Load({ load }: { load: RouterState['load'] }) {
  if (!load) return <>not reported</>
  const parts = [
    load.cpu !== undefined && `CPU ${load.cpu.toFixed(2)} per core`,
    load.stages !== undefined && count(load.stages, 'stage'),
    load.transports !== undefined && count(load.transports, 'transport'),
    load.producers !== undefined && count(load.producers, 'producer'),
    load.consumers !== undefined && count(load.consumers, 'consumer'),
  ].filter(Boolean)
  return <>{parts.length ? parts.join(', ') : 'idle'}</>
}

/** A coordinate to about 100 m. */
const round = (degrees: number) => Number(degrees.toFixed(3))

function RoutersSection({ hub }: { hub: ReturnType<typeof useOperatorHub> }) {
  const list = [...hub.routers.value.values()].sort((a, b) => a.name.localeCompare(b.name))
  const kinds = (routerId: string, stageId: string) =>
    hub.assignments.value.get(topics.assignment.build(routerId, stageId))?.kinds.join(', ')
  return (
    <section aria-labelledby="ops-routers" class="ops-section">
      <h2 id="ops-routers">Routers</h2>
      {list.length === 0 && <p class="hint">No router is registered (router.create).</p>}
      <ul class="tiles">
        {list.map((r) => (
          <li key={r.id} class="tile" data-testid={`router-${r.id}`}>
            <div class="tile-head">
              <h3>{r.name}</h3>
              <p class={`presence ${r.online ? 'online' : 'offline'}`}>
                <span class="dot" aria-hidden="true" />
                {r.online ? 'Online' : 'Offline'}
              </p>
            </div>
            <dl class="facts">
              <div>
                <dt>Load</dt>
                <dd>
                  <Load load={r.load} />
                </dd>
              </div>
              <div>
                <dt>Capacity</dt>
                <dd>
                  <Capacity capacity={r.capacity} />
                </dd>
              </div>
              <div>
                <dt>Position</dt>
                <dd>{r.position ? `${round(r.position.lat)}, ${round(r.position.lng)}` : '—'}</dd>
              </div>
              <div>
                <dt>Last seen</dt>
                <dd>{r.online ? 'now' : when(r.lastSeen)}</dd>
              </div>
              <div class="wide">
                <dt>Stages ({r.assignments.length})</dt>
                <dd>
                  {r.assignments.length === 0 ? (
                    'none'
                  ) : (
                    <ul class="stage-ids">
                      {r.assignments.map((stageId) => (
                        <li key={stageId}>
                          <code>{stageId}</code>
                          {kinds(r.id, stageId) && ` (${kinds(r.id, stageId)})`}
                        </li>
                      ))}
                    </ul>
                  )}
                </dd>
              </div>
            </dl>
          </li>
        ))}
      </ul>
    </section>
  )
}

function ReleasesSection({ hub }: { hub: ReturnType<typeof useOperatorHub> }) {
  const list = hub.releases.value
  return (
    <section aria-labelledby="ops-releases" class="ops-section">
      <h2 id="ops-releases">Releases</h2>
      {list?.length === 0 && <p class="hint">No release is published (release.publish).</p>}
      <ul class="tiles">
        {list?.map(({ release, targeted, updated, failed, pending }) => (
          <li key={release.version} class="tile" data-testid={`release-${release.version}`}>
            <div class="tile-head">
              <h3>{release.version}</h3>
              <p class="hint">ov-client {release.ovClientVersion}</p>
            </div>
            <p class="rollout">
              Rolled out to {release.rollout.percent} % of ov-boxes
              {release.rollout.deviceIds.length > 0 && ` and ${release.rollout.deviceIds.length} named`}
            </p>
            <progress
              max={Math.max(targeted, 1)}
              value={updated}
              aria-label={`Release ${release.version}: ${updated} of ${targeted} boxes updated`}
            />
            <p class="progress-text">
              {updated} of {targeted} updated · {failed} failed · {pending} pending
            </p>
            <p class="hint">Published {when(release.publishedAt)}</p>
          </li>
        ))}
      </ul>
    </section>
  )
}

function Console({ token }: { token: string }) {
  const hub = useOperatorHub(token)
  const state = hub.state.value
  const heading = useRef<HTMLHeadingElement>(null)
  useEffect(() => heading.current?.focus(), [])
  return (
    <main class="operator">
      <div class="ops-head">
        <h1 tabIndex={-1} ref={heading}>
          Operator
        </h1>
        {typeof state === 'string' && (
          <p class={`connection ${state}`} role="status" data-testid="operator-connection">
            <span class="dot" aria-hidden="true" />
            {STATE_LABELS[state]}
          </p>
        )}
        <button type="button" onClick={forget}>
          Sign out operator
        </button>
      </div>
      {typeof state !== 'string' && (
        <div class="card error" role="alert">
          <p>The hub refused the admin token: {state.refused}.</p>
          <p>Sign out here and paste a new one.</p>
        </div>
      )}
      {hub.problem.value && (
        <p class="error" role="alert">
          {hub.problem.value}
        </p>
      )}
      <HubSection hub={hub} />
      <RoutersSection hub={hub} />
      <ReleasesSection hub={hub} />
    </main>
  )
}

/** `#/operator`: the hub's status, routers and releases for an operator holding an admin token. */
export function OperatorPage() {
  usePageTitle('Operator')
  const token = adminToken.value
  return token ? <Console token={token} /> : <TokenForm />
}

import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { BrowserContext, Page } from 'playwright-core'
import { chromiumMissing, launchHeadlessChromium, MEDIA_ARGS } from '../../scripts/chromium.ts'
import { pino } from 'pino'
import { buildWeb } from '../../scripts/build-web.ts'
import { collections, type UserDoc } from '../../services/collections.ts'
import { EmbeddedBackend } from '../../services/store/embedded.ts'
import { type Context, onHub, sleep } from '../lib/context.ts'
import { CpuWindow, cpuTimeMs } from '../lib/procs.ts'
import { LiteRequester } from '../lib/requests.ts'
import { round } from '../lib/results.ts'
import { seedId } from '../lib/seed.ts'

/**
 * `web_media`: browser audio through a stage's mediasoup router (issue 14). A hub in its own process,
 * a router agent with one real mediasoup worker in this process, and people in headless Chromium (one
 * browser, a context each, fake microphones) on the stage page of a mediasoup stage.
 *  - join: the "Join audio" click → the first inbound audio packet (getStats of the page's peer
 *    connections, polled every 10 ms), median of several joins against the same peer; the baseline is
 *    the pages' WebSocket connect to the hub (constructor → open), median over the pages.
 *  - with `members` people (8) sending and receiving: the mediasoup worker's CPU over a window
 *    (/proc/<pid>/stat) and the packet loss every page sees (inbound-rtp packetsLost / (lost +
 *    received) over the window), against the same with 2 people, in the same run.
 */

const ARGS = [
  ...MEDIA_ARGS,
  // eight pages in one browser, none in front: their timers and media must not be throttled
  '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows',
  '--autoplay-policy=no-user-gesture-required',
]
const berlin = { lat: 52.52, lng: 13.405 }

/** Records the page's peer connections and WebSocket connects (evaluated through DevTools before the app). */
const HOOKS = `(() => {
  const pcs = []
  const sockets = []
  const PC = globalThis.RTCPeerConnection
  globalThis.RTCPeerConnection = class extends PC {
    constructor(...args) { super(...args); pcs.push(this) }
  }
  const WS = globalThis.WebSocket
  globalThis.WebSocket = class extends WS {
    constructor(...args) {
      super(...args)
      const s = { at: performance.now() }
      sockets.push(s)
      this.addEventListener('open', () => { s.open = performance.now() - s.at })
    }
  }
  globalThis.__mediaBench = { pcs, sockets }
})()`

/** Inbound audio over every peer connection of the page: streams, packets received and lost. */
const INBOUND = `(async () => {
  const out = { streams: 0, flowing: 0, received: 0, lost: 0, jitterMs: 0 }
  for (const pc of globalThis.__mediaBench.pcs) {
    if (pc.connectionState === 'closed') continue
    for (const s of (await pc.getStats()).values()) {
      if (s.type !== 'inbound-rtp' || s.kind !== 'audio') continue
      out.streams++
      if (s.packetsReceived > 0) out.flowing++
      out.received += s.packetsReceived ?? 0
      out.lost += Math.max(0, s.packetsLost ?? 0)
      out.jitterMs = Math.max(out.jitterMs, (s.jitter ?? 0) * 1000)
    }
  }
  return out
})()`

interface Inbound {
  streams: number
  flowing: number
  received: number
  lost: number
  jitterMs: number
}

/** Polls in the page, from the click: ms to the first inbound audio packet on a new peer connection. */
const FIRST_PACKET = `(async (known) => {
  const t0 = performance.now()
  while (performance.now() - t0 < 30000) {
    for (const pc of globalThis.__mediaBench.pcs.slice(known)) {
      for (const s of (await pc.getStats()).values())
        if (s.type === 'inbound-rtp' && s.kind === 'audio' && s.packetsReceived > 0) return performance.now() - t0
    }
    await new Promise((r) => setTimeout(r, 10))
  }
  return -1
})`

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** Child processes of this one whose command is the mediasoup worker's. */
function mediasoupWorkers(): number[] {
  const pids: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === process.pid && comm.startsWith('mediasoup')) pids.push(Number(entry))
    } catch {
      // gone meanwhile
    }
  }
  return pids
}

async function mediasoupInstalled(): Promise<boolean> {
  try {
    await import('mediasoup')
    return true
  } catch {
    return false
  }
}

export async function webMedia(ctx: Context): Promise<void> {
  if (chromiumMissing) {
    ctx.log(`web_media skipped: ${chromiumMissing}`)
    return
  }
  if (!(await mediasoupInstalled())) {
    ctx.log('web_media skipped: mediasoup (and its worker) is not installed')
    return
  }
  const { joins, members, seconds } = ctx.profile.webMedia
  const webDir = join(ctx.dir, 'web')
  if (!existsSync(join(webDir, 'index.html'))) await buildWeb({ outdir: webDir })
  const dataDir = join(ctx.dir, 'web-media-data')
  mkdirSync(dataDir, { recursive: true })
  const users = Array.from({ length: members }, (_, i) => ({
    id: seedId('media-user', i),
    name: `Singer ${i + 1}`,
  }))
  const backend = EmbeddedBackend.open(dataDir)
  await backend.ensureCollection(collections.users)
  const createdAt = new Date().toISOString()
  await backend.commit(
    [],
    [],
    users.map((u) => ({
      op: 'insert' as const,
      collection: collections.users.name,
      doc: { id: u.id, name: u.name, createdAt, version: 1 } satisfies UserDoc,
    })),
  )
  await backend.close()

  const { RouterAgent } = await import('../../devices/router/agent.ts')
  const roomy = {
    RATE_LIMIT_BURST: '10000',
    RATE_LIMIT_PER_SECOND: '10000',
    RATE_LIMIT_ACCOUNT_BURST: '10000',
    RATE_LIMIT_ACCOUNT_PER_SECOND: '10000',
  }
  await onHub(
    ctx,
    async (hub) => {
      const httpUrl = `http://${hub.host}:${hub.httpPort}`
      const admin = await LiteRequester.connect(
        hub.host,
        hub.port,
        'bench-media-ops',
        ctx.tokens.sign({ sub: 'ops', role: 'admin' }, 3600).token,
      )
      const sessions = users.map((u) =>
        ctx.tokens.sign({ sub: u.id, role: 'user', name: u.name, ver: 0 }, 3600),
      )
      const people = await Promise.all(
        users.map((u, i) =>
          LiteRequester.connect(hub.host, hub.port, `bench-media-${i}`, sessions[i]!.token),
        ),
      )
      const { router, token } = await admin.ok<{ router: { id: string }; token: string }>('router.create', {
        name: 'bench-media',
      })
      const before = new Set(mediasoupWorkers())
      const agent = new RouterAgent(
        {
          hubUrl: `mqtt://${hub.host}:${hub.port}`,
          routerId: router.id,
          token,
          position: berlin,
          capacity: { mediasoup: 5 },
          listenIp: '127.0.0.1',
          workers: 1,
          loadIntervalSeconds: 10,
          keepaliveSeconds: 10,
        },
        { log: pino({ level: 'silent' }) },
      )
      await agent.start()
      const workerPid = mediasoupWorkers().find((pid) => !before.has(pid))
      const browser = await launchHeadlessChromium(ARGS)
      try {
        const stage = await people[0]!.ok<{ id: string }>('stage.create', {
          name: 'Choir',
          preferredPosition: berlin,
          audioType: 'mediasoup',
          videoType: 'none',
        })
        const group = await people[0]!.ok<{ id: string }>('group.create', {
          stageId: stage.id,
          name: 'Voices',
        })
        for (const p of people) await p.ok('stage.join', { stageId: stage.id, groupId: group.id })

        const contexts: BrowserContext[] = []
        const pages: Page[] = []
        const open = async (i: number) => {
          const context = await browser.newContext({ viewport: { width: 1024, height: 768 } })
          contexts.push(context)
          await context.addInitScript(HOOKS)
          const page = await context.newPage()
          await page.goto(`${httpUrl}/`)
          await page.evaluate((s) => localStorage.setItem('stagehub.session', JSON.stringify(s)), {
            userId: users[i]!.id,
            token: sessions[i]!.token,
            expiresAt: new Date(sessions[i]!.exp * 1000).toISOString(),
          })
          await page.goto(`${httpUrl}/#/stages/${stage.id}`)
          await page.reload()
          await page.getByTestId('connection').getByText('Online').waitFor({ timeout: 30_000 })
          pages[i] = page
          return page
        }
        const on = (page: Page) =>
          page.getByText('Audio is on: you hear the stage and it hears you.').waitFor({ timeout: 60_000 })
        const join = async (page: Page) => {
          await page.getByRole('button', { name: 'Join audio' }).click()
          await on(page)
        }
        const inbound = (page: Page) => page.evaluate(INBOUND) as Promise<Inbound>
        const flowing = async (page: Page, streams: number, what: string) => {
          const deadline = Date.now() + 60_000
          let last: Inbound | undefined
          while (Date.now() < deadline) {
            last = await inbound(page)
            if (last.flowing >= streams) return
            await sleep(100)
          }
          throw new Error(`${what}: ${JSON.stringify(last)} (${streams} streams expected)`)
        }

        // two people: B sends; A joins, leaves and joins again, each time timed to the first packet
        const a = await open(0)
        const b = await open(1)
        await join(b) // waits for the router to serve the stage, if it does not yet
        await join(a) // the warm-up join: not counted
        await flowing(a, 1, 'A receives B')
        const joinMs: number[] = []
        for (let j = 0; j < joins; j++) {
          await a.getByRole('button', { name: 'Leave audio' }).click()
          await a.getByRole('button', { name: 'Join audio' }).waitFor()
          await sleep(300)
          const known = (await a.evaluate('globalThis.__mediaBench.pcs.length')) as number
          const first = a.evaluate(`${FIRST_PACKET}(${known})`) as Promise<number>
          await a.getByRole('button', { name: 'Join audio' }).click()
          const ms = await first
          if (ms < 0) throw new Error('no inbound audio packet within 30 s of the click')
          joinMs.push(ms)
          await on(a)
        }
        await flowing(b, 1, 'B receives A')

        const measure = async (joined: Page[]) => {
          const start = await Promise.all(joined.map(inbound))
          const cpu = new CpuWindow({ worker: workerPid }).begin()
          const cpu0 = cpuTimeMs(workerPid)
          const t0 = performance.now()
          await sleep(seconds * 1000)
          // CpuWindow rounds to 0.01 core: the worker's own figure is read to the ms
          const worker = (cpuTimeMs(workerPid) - cpu0) / (performance.now() - t0)
          const used = cpu.end()
          const end = await Promise.all(joined.map(inbound))
          let received = 0
          let lost = 0
          let jitterMs = 0
          end.forEach((e, i) => {
            received += e.received - start[i]!.received
            lost += e.lost - start[i]!.lost
            jitterMs = Math.max(jitterMs, e.jitterMs)
          })
          return {
            worker: round(worker, 4),
            machine: used.machine ?? NaN,
            others: used.others ?? NaN,
            received,
            lost,
            loss: lost / Math.max(1, lost + received),
            jitterMs,
          }
        }
        await sleep(1000)
        const two = await measure([a, b])

        for (let i = 2; i < members; i++) await join(await open(i))
        const all = pages.slice(0, members)
        for (const [i, page] of all.entries())
          await flowing(page, members - 1, `member ${i + 1} receives all`)
        await sleep(1000)
        const many = await measure(all)
        const sockets = (await Promise.all(
          all.map((p) => p.evaluate('globalThis.__mediaBench.sockets.map((s) => s.open ?? NaN)')),
        )) as number[][]
        const connectMs = sockets.flat().filter((v) => Number.isFinite(v))
        const load = agent.load()

        const join50 = median(joinMs)
        const connect50 = median(connectMs)
        ctx.log(
          `web_media: join → first packet median ${Math.round(join50)} ms of ${joinMs.map(Math.round).join(', ')} ` +
            `(WebSocket connect ${Math.round(connect50)} ms); worker CPU ${two.worker} cores with 2, ${many.worker} with ${members} ` +
            `(machine ${two.machine} / ${many.machine}); loss ${(two.loss * 100).toFixed(2)} % / ${(many.loss * 100).toFixed(2)} %, ` +
            `worst jitter ${round(two.jitterMs, 1)} / ${round(many.jitterMs, 1)} ms; router ${JSON.stringify(load)}`,
        )
        const window = (w: typeof two) => ({
          worker_cpu_cores: w.worker,
          machine_busy_cores: w.machine,
          others_busy_cores: w.others,
          packets_received: w.received,
          packets_lost: w.lost,
          worst_jitter_ms: round(w.jitterMs, 1),
        })
        const detail = {
          members,
          window_seconds: seconds,
          joins_ms: joinMs.map((v) => round(v, 1)),
          websocket_connects_ms: connectMs.map((v) => round(v, 1)),
          router: load,
          with_members: window(many),
          with_two: window(two),
        }
        const ratio = (value: number, baseline: number) =>
          baseline > 0
            ? { baseline_value: baseline, ratio: round(value / baseline, 4) }
            : {
                baseline_value: null,
                ratio: null,
                note: 'baseline unavailable as a ratio: it was 0 (see detail.with_two)',
              }
        ctx.results.metrics.push(
          {
            name: 'web_media_join_to_first_packet',
            value: round(join50, 1),
            unit: 'ms',
            better: 'lower',
            baseline: 'websocket_connect',
            ...ratio(round(join50, 1), round(connect50, 1)),
            detail,
          },
          {
            name: 'web_media_router_cpu',
            value: many.worker,
            unit: 'cores',
            better: 'lower',
            baseline: 'two_members',
            ...ratio(many.worker, two.worker),
            detail,
          },
          {
            name: 'web_media_packet_loss',
            value: round(many.loss * 100, 3),
            unit: '%',
            better: 'lower',
            baseline: 'two_members',
            ...ratio(round(many.loss * 100, 3), round(two.loss * 100, 3)),
            detail,
          },
        )
        for (const context of contexts) await context.close()
      } finally {
        for (const p of people) p.end()
        admin.end()
        await browser.close()
        await agent.stop()
      }
    },
    { dataDir, env: { WEB_DIR: webDir, ...roomy }, label: 'web-media' },
  )
}

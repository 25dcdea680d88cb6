import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { buildWeb } from '../../scripts/build-web.ts'
import { chromiumMissing, launchHeadlessChromium } from '../../scripts/chromium.ts'
import { collections, type UserDoc } from '../../services/collections.ts'
import {
  type GroupDoc,
  type MemberDoc,
  type MixDoc,
  type StageDoc,
  type StageTrackDoc,
  stageCollections,
} from '../../services/stages/model.ts'
import { origin, stageDefaults } from '../../services/stages/rules.ts'
import { EmbeddedBackend } from '../../services/store/embedded.ts'
import type { StoredDoc, Write } from '../../services/store/port.ts'
import { type Context, onHub, sleep } from '../lib/context.ts'
import { LiteRequester } from '../lib/requests.ts'
import { round } from '../lib/results.ts'
import { seedId } from '../lib/seed.ts'
import { formatDb } from '../../web/src/mixer/coalesce.ts'

/**
 * `web_mixer`: the mixer page (web/src/pages/mixer.tsx) of a stage with 30 members and 100 tracks,
 * open in headless Chromium, while the stage's retained state changes 50 times a second (the admin
 * alternately changes a member's volume for everyone and a track's volume in their own mix, each a
 * retained message the page receives and renders). Measured in the page: long tasks (the
 * PerformanceObserver 'longtask' entries, > 50 ms each: count and total ms) and dropped frames
 * (requestAnimationFrame gaps longer than two 60 Hz frames, 33.4 ms), against the same page idle
 * for as long in the same run.
 */

export const MIXER_MEMBERS = 30
export const MIXER_TRACKS = 100
export const MIXER_GROUPS = 3
const FRAME_MS = 1000 / 60

function insert<T extends StoredDoc>(collection: string, doc: Omit<T, 'version'>): Write {
  return { op: 'insert', collection, doc: { ...doc, version: 1 } as StoredDoc }
}

/** The stage written straight into the embedded store: its admin is the first member. */
async function seedStage(dataDir: string) {
  const backend = EmbeddedBackend.open(dataDir)
  for (const spec of [collections.users, ...Object.values(stageCollections)])
    await backend.ensureCollection(spec)
  const createdAt = new Date().toISOString()
  const stageId = seedId('mixer-stage', 0)
  const users = Array.from({ length: MIXER_MEMBERS }, (_, i) => seedId('mixer-user', i))
  const groups = Array.from({ length: MIXER_GROUPS }, (_, g) => seedId('mixer-group', g))
  const members = users.map((_, i) => seedId('mixer-member', i))
  const tracks = Array.from({ length: MIXER_TRACKS }, (_, t) => seedId('mixer-track', t))
  const writes: Write[] = [
    ...users.map((id, i) =>
      insert<UserDoc>(collections.users.name, { id, name: `Player ${i + 1}`, createdAt }),
    ),
    insert<StageDoc>(stageCollections.stages.name, {
      id: stageId,
      ...stageDefaults,
      name: 'Big band',
      audioType: 'ov',
      admins: [users[0]!],
      createdBy: users[0]!,
      createdAt,
    }),
    ...groups.map((id, g) =>
      insert<GroupDoc>(stageCollections.groups.name, {
        id,
        stageId,
        name: ['Brass', 'Reeds', 'Rhythm'][g] ?? `Group ${g + 1}`,
        color: ['#b45309', '#15803d', '#1d4ed8'][g] ?? '#000000',
        volume: 1,
        muted: false,
        position: origin,
      }),
    ),
    ...members.map((id, m) =>
      insert<MemberDoc>(stageCollections.members.name, {
        id,
        stageId,
        userId: users[m]!,
        name: `Player ${m + 1}`,
        groupId: groups[m % MIXER_GROUPS]!,
        seat: m,
        joined: true,
        online: true,
        isDirector: false,
        volume: 1,
        muted: false,
        position: origin,
      }),
    ),
    insert<MixDoc>(stageCollections.mixes.name, {
      id: `${users[0]}/member/${members[0]}`,
      userId: users[0]!,
      stageId,
      kind: 'member',
      targetId: members[0]!,
      muted: true,
    }),
    // the tracks belong to the members other than the admin, who opens the mixer: the admin's
    // browser becomes a device of theirs, and a member's device coming online makes the hub derive
    // their ov tracks from their online ov-boxes again (none are seeded), which would clear theirs
    ...tracks.map((id, t) => {
      const sender = 1 + (t % (MIXER_MEMBERS - 1))
      return insert<StageTrackDoc>(stageCollections.stageTracks.name, {
        id,
        stageId,
        userId: users[sender]!,
        memberId: members[sender]!,
        deviceId: seedId('mixer-box', sender),
        kind: 'ov',
        ov: {
          soundCardName: 'hw:1',
          channel: Math.floor(t / (MIXER_MEMBERS - 1)),
          gain: 1,
          directivity: 'omni',
        },
      })
    }),
  ]
  await backend.commit([], [], writes)
  await backend.close()
  return { stageId, admin: users[0]!, users, members, tracks }
}

/** What the page measured over one window. */
interface Window {
  longTasks: number
  longTaskMs: number
  frames: number
  /** rAF gaps > 2 frames. */
  droppedFrames: number
  /** Frames missed in those gaps (a 100 ms gap misses 5). */
  missedFrames: number
  worstGapMs: number
  seconds: number
  /** Main-thread busy time of the renderer (all tasks, and JavaScript of them). */
  taskMs: number
  scriptMs: number
}

/** Starts the observers in the page (evaluated through DevTools: the app's CSP refuses injected scripts). */
const START = `(() => {
  const m = { longTasks: 0, longTaskMs: 0, frames: 0, droppedFrames: 0, missedFrames: 0, worstGapMs: 0, started: performance.now(), running: true }
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) { m.longTasks++; m.longTaskMs += e.duration }
  })
  observer.observe({ type: 'longtask' })
  let last = performance.now()
  const frame = (now) => {
    if (!m.running) return
    const gap = now - last
    last = now
    m.frames++
    if (gap > ${2 * FRAME_MS}) { m.droppedFrames++; m.missedFrames += Math.round(gap / ${FRAME_MS}) - 1 }
    if (gap > m.worstGapMs) m.worstGapMs = gap
    requestAnimationFrame(frame)
  }
  requestAnimationFrame((now) => { last = now; requestAnimationFrame(frame) })
  globalThis.__mixerBench = { m, observer }
})()`
const STOP = `(() => {
  const { m, observer } = globalThis.__mixerBench
  for (const e of observer.takeRecords()) { m.longTasks++; m.longTaskMs += e.duration }
  observer.disconnect()
  m.running = false
  return { ...m, seconds: (performance.now() - m.started) / 1000 }
})()`

export async function webMixer(ctx: Context): Promise<void> {
  if (chromiumMissing) {
    ctx.log(`web_mixer skipped: ${chromiumMissing}`)
    return
  }
  const seconds = ctx.profile.webMixer.seconds
  const rate = 50
  const webDir = join(ctx.dir, 'web')
  await buildWeb({ outdir: webDir })
  const dataDir = join(ctx.dir, 'web-mixer-data')
  mkdirSync(dataDir, { recursive: true })
  const seeded = await seedStage(dataDir)

  await onHub(
    ctx,
    async (hub) => {
      const httpUrl = `http://${hub.host}:${hub.httpPort}`
      const session = ctx.tokens.sign({ sub: seeded.admin, role: 'user', name: 'Player 1', ver: 0 }, 3600)
      const admin = await LiteRequester.connect(hub.host, hub.port, 'bench-mixer-admin', session.token)
      const browser = await launchHeadlessChromium()
      try {
        const page = await browser.newPage({ viewport: { width: 1280, height: 800 } })
        await page.goto(`${httpUrl}/`)
        await page.evaluate((s) => localStorage.setItem('stagehub.session', JSON.stringify(s)), {
          userId: seeded.admin,
          token: session.token,
          expiresAt: new Date(session.exp * 1000).toISOString(),
        })
        const loadStarted = performance.now()
        await page.goto(`${httpUrl}/#/stages/${seeded.stageId}/mixer`)
        await page.reload()
        const sliders = page.locator('input[type=range]')
        const expected = MIXER_GROUPS + MIXER_MEMBERS + MIXER_TRACKS
        const deadline = Date.now() + 60_000
        while ((await sliders.count()) < expected) {
          if (Date.now() > deadline)
            throw new Error(`the mixer shows ${await sliders.count()} of ${expected} sliders`)
          await sleep(50)
        }
        const firstRenderMs = performance.now() - loadStarted
        await sleep(500)

        // the renderer's main-thread busy time (DevTools' Performance domain), less sensitive to a busy machine
        const cdp = await page.context().newCDPSession(page)
        await cdp.send('Performance.enable')
        const busy = async () => {
          const { metrics } = await cdp.send('Performance.getMetrics')
          const get = (name: string) => metrics.find((m) => m.name === name)?.value ?? NaN
          return { task: get('TaskDuration') * 1000, script: get('ScriptDuration') * 1000 }
        }
        const measure = async (work: () => Promise<void>): Promise<Window> => {
          const before = await busy()
          await page.evaluate(START)
          await work()
          const window = (await page.evaluate(STOP)) as Window
          const after = await busy()
          return { ...window, taskMs: after.task - before.task, scriptMs: after.script - before.script }
        }
        const idle = await measure(() => sleep(seconds * 1000))

        let sent = 0
        let failed = 0
        const pending: Promise<unknown>[] = []
        const load = await measure(async () => {
          const started = performance.now()
          const total = rate * seconds
          for (let i = 0; i < total; i++) {
            const wait = started + (i * 1000) / rate - performance.now()
            if (wait > 0) await sleep(wait)
            // a volume between -30 and +6 dB, different every time
            const volume = round(10 ** ((-30 + ((i * 7.3) % 36)) / 20), 4)
            const request =
              i % 2 === 0
                ? admin.ok('member.update', {
                    stageId: seeded.stageId,
                    userId: seeded.users[(i / 2) % MIXER_MEMBERS]!,
                    patch: { volume },
                  })
                : admin.ok('mix.set', { kind: 'track', id: seeded.tracks[i % MIXER_TRACKS]!, volume })
            sent++
            pending.push(request.catch(() => failed++))
          }
          await Promise.all(pending)
        })
        // the page shows the last change: the last member's volume as the hub has it
        const lastMember = ((rate * seconds - 2) / 2) % MIXER_MEMBERS
        const lastVolume = round(10 ** ((-30 + (((rate * seconds - 2) * 7.3) % 36)) / 20), 4)
        const caughtUpStarted = performance.now()
        const lastSlider = page.getByLabel(`Volume of Player ${lastMember + 1}`, { exact: true })
        const shown = formatDb(lastVolume)
        while ((await lastSlider.getAttribute('aria-valuetext')) !== shown) {
          if (performance.now() - caughtUpStarted > 10_000)
            throw new Error(`the page did not show the last update (${shown} for Player ${lastMember + 1})`)
          await sleep(10)
        }
        const caughtUpMs = performance.now() - caughtUpStarted
        const achievedRate = sent / load.seconds
        ctx.log(
          `web_mixer: ${expected} sliders on screen after ${Math.round(firstRenderMs)} ms; ` +
            `idle ${idle.longTasks} long tasks (${Math.round(idle.longTaskMs)} ms), ${idle.droppedFrames} frame gaps; ` +
            `${sent} updates (${achievedRate.toFixed(1)}/s, ${failed} refused): ${load.longTasks} long tasks ` +
            `(${Math.round(load.longTaskMs)} ms), ${load.droppedFrames} frame gaps, worst ${Math.round(load.worstGapMs)} ms; ` +
            `main thread busy ${Math.round(load.taskMs)} ms (idle ${Math.round(idle.taskMs)} ms)`,
        )
        const detail = (w: Window) => ({
          seconds: round(w.seconds, 2),
          frames: w.frames,
          long_tasks: w.longTasks,
          long_task_ms: round(w.longTaskMs, 1),
          dropped_frames: w.droppedFrames,
          missed_frames: w.missedFrames,
          worst_frame_gap_ms: round(w.worstGapMs, 1),
          main_thread_busy_ms: round(w.taskMs, 1),
          script_ms: round(w.scriptMs, 1),
        })
        const common = {
          members: MIXER_MEMBERS,
          tracks: MIXER_TRACKS,
          sliders: expected,
          updates: sent,
          updates_per_second: round(achievedRate, 1),
          refused: failed,
          first_render_ms: Math.round(firstRenderMs),
          caught_up_ms: Math.round(caughtUpMs),
          load: detail(load),
          idle: detail(idle),
        }
        const row = (name: string, unit: string, measured: number, idleValue: number, extra = {}) => {
          const value = round(measured, 1)
          const baseline = round(idleValue, 1)
          ctx.results.metrics.push({
            name,
            value,
            unit,
            better: 'lower',
            baseline: 'idle_page',
            // the idle page usually has no long task: a ratio to 0 means nothing, the figure still does
            ...(baseline > 0
              ? { baseline_value: baseline, ratio: round(value / baseline, 4) }
              : {
                  baseline_value: null,
                  ratio: null,
                  note: 'baseline unavailable as a ratio: the idle page had 0 (see detail.idle)',
                }),
            detail: { ...common, ...extra },
          })
        }
        row('web_mixer_long_tasks', 'count', load.longTasks, idle.longTasks)
        row('web_mixer_long_task_ms', 'ms', load.longTaskMs, idle.longTaskMs)
        row('web_mixer_main_thread_busy_ms', 'ms', load.taskMs, idle.taskMs, {
          per_update_ms: round((load.taskMs - idle.taskMs) / sent, 3),
        })
        row('web_mixer_dropped_frames', 'count', load.droppedFrames, idle.droppedFrames, {
          missed_frames: load.missedFrames,
        })
      } finally {
        admin.end()
        await browser.close()
      }
    },
    { dataDir, env: { WEB_DIR: webDir }, label: 'web-mixer' },
  )
}

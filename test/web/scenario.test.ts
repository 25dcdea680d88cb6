import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import type { Browser, Locator, Page } from 'playwright-core'
import t, { type Test } from 'tap'
import { claimDevice } from '../../devices/ovbox/claim.ts'
import { type Simulator, startSimulator } from '../../devices/simulator/simulator.ts'
import type { StoredDoc } from '../../services/store/port.ts'
import { roomy } from '../helpers/actors.ts'
import { launchChromium, withoutChromium } from '../helpers/chromium.ts'
import { type TestHub, startTestHub, waitUntil } from '../helpers/hub.ts'
import { builtWebApp, DESKTOP, shoot, watchProblems } from '../helpers/web.ts'

const quiet = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' })

/** A person: a browser context of their own (own localStorage), its page, and its page errors and CSP reports. */
async function person(t: Test, browser: Browser): Promise<{ page: Page; problems: string[] }> {
  const context = await browser.newContext({ viewport: DESKTOP })
  t.teardown(() => context.close())
  const page = await context.newPage()
  return { page, problems: watchProblems(page) }
}

/** Signs up through the sign-in page's form, as a person does. */
async function signUp(page: Page, name: string, email: string): Promise<void> {
  await page.getByRole('heading', { name: 'Sign in' }).waitFor()
  await page.getByRole('button', { name: 'Create an account' }).click()
  await page.getByLabel('Name').fill(name)
  await page.getByLabel('E-mail').fill(email)
  await page.getByLabel('Password').fill(`${name} has a long password`)
  await page.getByRole('button', { name: 'Sign up' }).click()
  await page.getByTestId('connection').getByText('Online').waitFor()
}

/** Follows a link of the main navigation. */
const go = (page: Page, label: string) =>
  page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: label, exact: true }).click()

const deviceCard = (page: Page, name: string): Locator =>
  page.getByTestId('device').filter({ has: page.getByRole('heading', { name, exact: true }) })

/** Milliseconds until `locator` is there (at most `timeoutMs`). */
async function msUntil(locator: Locator, timeoutMs: number): Promise<number> {
  const start = Date.now()
  await locator.waitFor({ timeout: timeoutMs })
  return Date.now() - start
}

/**
 * Adds an ov-box on the devices page by claim code, then runs it as `stagehub-ovbox claim` and the
 * simulated box would: the box's side is the real claim and the real agent, its machine simulated.
 */
async function addBox(t: Test, th: TestHub, page: Page, name: string) {
  await go(page, 'Devices')
  await page.getByLabel('Name of the box').fill(name)
  await page.getByRole('button', { name: 'Get a claim code' }).click()
  const code = (await page.getByTestId('claim-code').textContent())!.trim()
  const dir = mkdtempSync(join(tmpdir(), 'stagehub-story-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const { config } = await claimDevice({ code, hubUrl: th.httpUrl, configPath: join(dir, 'agent.json') })
  let sim: Simulator | undefined
  t.teardown(() => sim?.stop())
  return {
    deviceId: config.deviceId,
    async start() {
      sim = await startSimulator({
        hubUrl: th.mqttUrl,
        boxes: [{ deviceId: config.deviceId, token: config.token }],
        statusIntervalSeconds: 30,
        backoff: { initialMs: 100, maxMs: 1000 },
        log: quiet,
      })
      await waitUntil(() => sim!.stats().online === 1, `${name} is online`, 10_000)
    },
    async stop() {
      await sim!.stop()
      sim = undefined
    },
    config: () => sim?.box(config.deviceId).lastConfig,
  }
}

t.test(
  "in Chromium, issue 13's story through the UI: Ann and Bo sign up; Ann creates a stage with password and group, invites into the group, Bo opens the link, signs up and joins; both online, chat both ways; Bo's box comes online in his device list, a remote edit and his own mix reach its configuration, it goes offline; Ann removes Bo and his view says so at once",
  { skip: withoutChromium },
  async (t) => {
    const th = await startTestHub(t, { WEB_DIR: await builtWebApp(t), ...roomy })
    const browser = await launchChromium(t)
    const figures: Record<string, number> = {}

    // Ann signs up and creates a stage with a password and its first group
    const ann = await person(t, browser)
    const annPage = ann.page
    await annPage.goto(`${th.httpUrl}/`)
    await signUp(annPage, 'Ann', 'ann@example.org')
    await annPage.getByText(/You are in no stage yet/).waitFor()
    const create = annPage.getByRole('form', { name: 'Create a stage' })
    await create.getByLabel('Name', { exact: true }).fill('Friday story')
    await create.getByLabel('Audio').selectOption('ov')
    await create.getByLabel(/^Password/).fill('open sesame')
    await create.getByLabel(/^First group/).fill('Band')
    await create.getByRole('button', { name: 'Create stage' }).click()
    await annPage.waitForURL(/#\/stages\/[^/]+$/)
    const stageId = decodeURIComponent(new URL(annPage.url()).hash.split('/')[2]!)
    t.match(
      await th.hub.store.get('stages', stageId),
      { name: 'Friday story', audioType: 'ov', passwordHash: String },
      'the stage is in the hub, with a password',
    )

    // the creator is its admin, not yet in it: she joins with her group and the password
    await annPage.getByRole('heading', { name: 'Friday story' }).waitFor()
    await annPage.getByLabel('Group', { exact: true }).selectOption({ label: 'Band' })
    await annPage.getByLabel('Stage password').fill('open sesame')
    await annPage.getByRole('button', { name: 'Join the stage' }).click()
    await annPage.getByText('You are in this stage, in Band').waitFor()
    t.pass('Ann joined her stage in Band')

    // an invite link for the group, made on the settings page
    await annPage
      .getByRole('navigation', { name: 'This stage' })
      .getByRole('link', { name: 'Settings' })
      .click()
    const invites = annPage.getByRole('region', { name: 'Invitations' })
    await invites.getByLabel('Group').selectOption({ label: 'Band' })
    await invites.getByRole('button', { name: 'Make invite link' }).click()
    const linkBox = invites.getByRole('textbox', { name: 'Invite link' })
    await linkBox.waitFor()
    const link = await linkBox.inputValue()
    t.match(link, new RegExp(`^${th.httpUrl}/#/invite/`), 'an invite link to send Bo')

    // Bo opens it signed out: signs up, gives the password, joins
    const bo = await person(t, browser)
    const boPage = bo.page
    await boPage.goto(link)
    await signUp(boPage, 'Bo', 'bo@example.org')
    await boPage.getByText('Ann invites you to join the stage').waitFor()
    await boPage.getByText(/You join the group\s*Band/).waitFor()
    await shoot(t, boPage, 'story-invite')
    await boPage.getByLabel("The stage's password").fill('open sesame')
    await boPage.getByRole('button', { name: 'Join Friday story' }).click()
    await boPage.waitForURL(new RegExp(`#/stages/${stageId}$`))
    t.pass('Bo signed up on the link and joined')

    // both in the stage view: each browser is a device of its person, so both are online
    await go(annPage, 'Stages')
    await annPage.getByRole('link', { name: 'Friday story', exact: true }).click()
    let start = Date.now()
    await annPage.getByTestId('member-Bo').locator('[data-presence="online"]').waitFor()
    await boPage.getByTestId('member-Ann').locator('[data-presence="online"]').waitFor()
    figures['both see each other online (ms after Ann opened the stage)'] = Date.now() - start
    t.pass('Ann sees Bo online and Bo sees Ann online')
    await annPage.getByText('2 members, 2 online').waitFor()
    t.pass("the stage's facts count both online")

    // chat both ways
    start = Date.now()
    await annPage.getByLabel('Message').fill('Hello Bo, welcome!')
    await annPage.getByLabel('Message').press('Enter')
    await boPage.getByRole('log').getByText('Hello Bo, welcome!').waitFor()
    figures['chat Ann → Bo (ms)'] = Date.now() - start
    start = Date.now()
    await boPage.getByLabel('Message').fill('Thanks Ann, here I am')
    await boPage.getByLabel('Message').press('Enter')
    await annPage.getByRole('log').getByText('Thanks Ann, here I am').waitFor()
    figures['chat Bo → Ann (ms)'] = Date.now() - start
    t.match(
      await annPage.getByRole('log').textContent(),
      /You.*Hello Bo, welcome!.*Bo.*Thanks Ann/s,
      'in order, with senders',
    )
    await shoot(t, annPage, 'story-stage')

    // Ann plays through an ov-box of her own, so she is in the ov session Bo's box renders
    const annBox = await addBox(t, th, annPage, "Ann's box")
    await annBox.start()
    await deviceCard(annPage, "Ann's box")
      .getByTestId('presence')
      .getByText('Online', { exact: true })
      .waitFor()

    // Bo adds his box; it coming online shows in his list within a second
    const boBox = await addBox(t, th, boPage, "Bo's box")
    const boCard = deviceCard(boPage, "Bo's box")
    await boCard.getByTestId('presence').getByText('Offline', { exact: true }).waitFor()
    await boBox.start()
    figures["Bo's box online → his device list (ms)"] = await msUntil(
      boCard.getByTestId('presence').getByText('Online', { exact: true }),
      1000,
    )
    t.pass('the box is online in his list within a second')

    // a remote edit in the browser reaches the box
    await boCard.getByText('Remote control').click()
    await boCard.getByLabel('Sender jitter (ms)').fill('7.5')
    start = Date.now()
    await boCard.getByRole('button', { name: 'Save settings' }).click()
    await waitUntil(() => boBox.config()?.desired.senderJitter === 7.5, 'the jitter reached the box')
    figures['remote edit → box configuration (ms)'] = Date.now() - start
    t.equal(boBox.config()?.ov?.rendersettings.jitter.send, 7.5, "and ov-client's sending jitter")

    // Bo's box seats Ann; Bo mutes her in his own mix, in the mixer
    await waitUntil(
      () => boBox.config()?.ov?.roomdev.some((peer) => peer.label === 'Ann') === true,
      "Ann's box is a peer in Bo's box",
    )
    t.match(
      boBox.config()?.ov?.roomdev,
      [{ label: 'Ann', gain: 1, mute: false }],
      'heard at the stage setting',
    )
    await go(boPage, 'Stages')
    await boPage.getByRole('link', { name: 'Friday story', exact: true }).click()
    await boPage.getByRole('navigation', { name: 'This stage' }).getByRole('link', { name: 'Mixer' }).click()
    const muteAnn = boPage.getByRole('button', { name: 'Mute Ann', exact: true })
    await muteAnn.waitFor()
    start = Date.now()
    await muteAnn.click()
    await boPage.locator('button[aria-label="Mute Ann"][aria-pressed="true"]').waitFor()
    await waitUntil(
      () => boBox.config()?.ov?.roomdev.find((peer) => peer.label === 'Ann')?.mute === true,
      "Bo's box mutes Ann",
    )
    figures["Bo's mute of Ann → his box's configuration (ms)"] = Date.now() - start
    t.pass("Bo's own mix reached his own box")
    const [annMember] = await th.hub.store.find<StoredDoc & { name: string; userId: string }>('members', {
      stageId,
      name: 'Ann',
    })
    const boId = await boPage.evaluate(
      () => (JSON.parse(localStorage.getItem('stagehub.session')!) as { userId: string }).userId,
    )
    const mutesOfAnn = await th.hub.store.find<StoredDoc & { userId: string; muted?: boolean }>('mixes', {
      stageId,
      kind: 'member',
      targetId: annMember!.id,
    })
    t.same(
      mutesOfAnn.filter((m) => m.userId !== annMember!.userId).map((m) => [m.userId, m.muted]),
      [[boId, true]],
      "Bo's own mix mutes Ann, nobody else's (Ann's own mix mutes herself: her monitor)",
    )
    await shoot(t, boPage, 'story-mixer')

    // the box going offline shows in his list within a second
    await go(boPage, 'Devices')
    await boCard.getByTestId('presence').getByText('Online', { exact: true }).waitFor()
    const stopping = boBox.stop()
    figures["Bo's box offline → his device list (ms)"] = await msUntil(
      boCard.getByTestId('presence').getByText('Offline', { exact: true }),
      1000,
    )
    await stopping
    t.pass('the box is offline in his list within a second')

    // Ann removes Bo in the stage view: his view says so at once
    await go(boPage, 'Stages')
    await boPage.getByRole('link', { name: 'Friday story', exact: true }).click()
    await boPage.getByText('You are in this stage, in Band').waitFor()
    const boRow = annPage.getByTestId('member-Bo')
    await go(annPage, 'Stages')
    await annPage.getByRole('link', { name: 'Friday story', exact: true }).click()
    await boRow.getByText('Manage Bo').click()
    await boRow.getByRole('button', { name: 'Remove from stage…' }).click()
    start = Date.now()
    await annPage.getByRole('button', { name: 'Yes, remove Bo' }).click()
    await boPage.getByRole('heading', { name: 'You were removed from this stage' }).waitFor({ timeout: 1000 })
    figures['removal → Bo told (ms)'] = Date.now() - start
    await boRow.waitFor({ state: 'detached' })
    t.pass("Bo's view says he was removed within a second; Ann's roster lost him")
    await shoot(t, boPage, 'story-removed')

    for (const [what, ms] of Object.entries(figures)) t.comment(`${what}: ${ms}`)
    t.same(ann.problems, [], 'no page errors, no CSP violations (Ann)')
    t.same(bo.problems, [], 'no page errors, no CSP violations (Bo)')
  },
)

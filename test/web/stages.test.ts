import t from 'tap'
import { actor, ok, roomy } from '../helpers/actors.ts'
import { launchChromium, withoutChromium } from '../helpers/chromium.ts'
import type { StoredDoc } from '../../services/store/port.ts'
import { startTestHub } from '../helpers/hub.ts'
import { builtWebApp, DESKTOP, openSignedIn, shoot, watchProblems } from '../helpers/web.ts'

interface StoredStage extends StoredDoc {
  name: string
  width: number
  audioType: string
  passwordHash?: string
  preferredPosition?: { lat: number; lng: number }
}

t.test(
  'in Chromium: create a stage with a password, edit it, invite into a group, a signed-out person opens the link, signs up, joins with the password and shows online in the list; revoke refuses the link; delete after typing the name',
  { skip: withoutChromium },
  async (t) => {
    const th = await startTestHub(t, { WEB_DIR: await builtWebApp(t), ...roomy })
    const browser = await launchChromium(t)

    // Ann, the admin, signed in through a stored session
    const ann = await th.hub.users.createUser({ name: 'Ann' })
    const annContext = await browser.newContext({ viewport: DESKTOP })
    await annContext.grantPermissions(['clipboard-read', 'clipboard-write'])
    const page = await annContext.newPage()
    const problems = watchProblems(page)
    await openSignedIn(page, `${th.httpUrl}/#/stages`, th.hub.users.userToken(ann))
    await page.getByText(/You are in no stage yet. Create one below, or open an invite link/).waitFor()
    t.pass('no stage yet: the empty state says what to do, and the create form is open')

    // create: the position denied is said honestly; a city fills the coordinates
    const form = page.getByRole('form', { name: 'Create a stage' })
    await form.getByLabel('Name', { exact: true }).fill('Rehearsal')
    t.equal(await form.getByLabel('Width').inputValue(), '13', "the room size starts at the hub's defaults")
    await form.getByRole('button', { name: 'Use my position' }).click()
    await form.getByText(/not allowed to tell your position: pick a city/).waitFor()
    t.pass('a refused position: the reason and what to do instead')
    await annContext.grantPermissions(['geolocation'])
    await annContext.setGeolocation({ latitude: 48.137, longitude: 11.575 })
    await form.getByRole('button', { name: 'Use my position' }).click()
    await form.getByText('Your position is filled in.').waitFor()
    t.equal(await form.getByLabel('Latitude').inputValue(), '48.137', "the browser's position")
    await form.getByLabel('Or a city').selectOption('Berlin')
    t.equal(await form.getByLabel('Latitude').inputValue(), '52.52', 'a city replaces it')
    t.equal(await form.getByLabel('Longitude').inputValue(), '13.405', 'both coordinates')
    t.equal(
      await form.getByLabel('Name', { exact: true }).inputValue(),
      'Rehearsal',
      'and the name typed first stays',
    )
    await form.getByLabel('Audio').selectOption('ov')
    await form.getByLabel('Length').fill('20')
    await form.getByLabel(/^Password/).fill('open sesame')
    await shoot(t, page, 'stage-create')
    await form.getByRole('button', { name: 'Create stage' }).click()
    await page.waitForURL(/#\/stages\/[^/]+$/)
    const stageId = decodeURIComponent(new URL(page.url()).hash.split('/')[2]!)
    const stored = await th.hub.store.get<StoredStage>('stages', stageId)
    t.equal(stored?.name, 'Rehearsal', 'after creating, the new stage is open')
    t.ok(stored?.passwordHash, 'with a password')
    t.same(stored?.preferredPosition, { lat: 52.52, lng: 13.405 }, 'at the picked place')
    t.equal(stored?.audioType, 'ov', 'with the audio type picked')
    const groups = await th.hub.store.find<StoredDoc & { name: string }>('groups', { stageId })
    t.same(
      groups.map((g) => g.name),
      ['Band'],
      'and its first group',
    )

    // the list: the role, nobody online yet, the settings link for the admin
    await page.goto(`${th.httpUrl}/#/stages`)
    const item = page.getByRole('listitem').filter({ has: page.getByRole('heading', { name: 'Rehearsal' }) })
    await item.getByText('Admin').waitFor()
    await item.getByText('0 online').waitFor()
    await item.getByText('no members yet').waitFor()
    await shoot(t, page, 'stages')

    // settings: a new name, room and audio type, and the password kept
    await item.getByRole('link', { name: /Settings and invitations/ }).click()
    await page.getByRole('heading', { name: 'Settings of Rehearsal' }).waitFor()
    const edit = page.getByRole('region', { name: 'Stage' })
    t.equal(await edit.getByLabel('Length').inputValue(), '20', 'the form shows the stage as it is')
    t.equal(await edit.getByLabel('Or a city').inputValue(), 'Berlin', 'its place among the cities')
    await edit.getByLabel('Name', { exact: true }).fill('Rehearsal Room')
    await edit.getByLabel('Width').fill('10')
    await edit.getByLabel('Audio').selectOption('mediasoup')
    await edit.getByLabel('Remove the password').check()
    await edit.getByLabel('Remove the password').uncheck()
    t.equal(await edit.getByLabel('Width').inputValue(), '10', 'edits survive the page changing around them')
    await edit.getByRole('button', { name: 'Save settings' }).click()
    await page.getByRole('heading', { name: 'Settings of Rehearsal Room' }).waitFor()
    await edit.getByText('Settings saved').waitFor()
    const edited = (await th.hub.store.get<StoredStage>('stages', stageId))!
    t.match(edited, { name: 'Rehearsal Room', width: 10, audioType: 'mediasoup' }, 'the hub has the changes')
    t.equal(edited.passwordHash, stored!.passwordHash, 'an empty password field keeps the password')

    // an invite for the group, valid for a day
    const invites = page.getByRole('region', { name: 'Invitations' })
    await invites.getByLabel('Group').selectOption({ label: 'Band' })
    await invites.getByLabel('Valid for').selectOption({ label: '1 day' })
    await invites.getByRole('button', { name: 'Make invite link' }).click()
    const linkBox = invites.getByRole('textbox', { name: 'Invite link' })
    await linkBox.waitFor()
    const link = await linkBox.inputValue()
    t.match(link, new RegExp(`^${th.httpUrl}/#/invite/[A-Za-z0-9_-]{24}$`), 'the link to open the invite')
    await invites.getByRole('button', { name: 'Copy' }).click()
    await invites.getByText('Copied').waitFor()
    t.equal(
      await page.evaluate(() =>
        (
          globalThis as unknown as { navigator: { clipboard: { readText(): Promise<string> } } }
        ).navigator.clipboard.readText(),
      ),
      link,
      'Copy puts it on the clipboard',
    )
    await invites.getByText(/For Band, until .*; used 0 times/).waitFor()
    t.pass('the open invite is listed with its group')
    await shoot(t, page, 'stage-settings')
    await page.emulateMedia({ colorScheme: 'dark' })
    await shoot(t, page, 'stage-settings-dark')
    await page.emulateMedia({ colorScheme: 'light' })

    // Bo opens the link signed out: sign up first, the address survives
    const boContext = await browser.newContext({ viewport: DESKTOP })
    const bo = await boContext.newPage()
    const boProblems = watchProblems(bo)
    await bo.goto(link)
    await bo.getByRole('heading', { name: 'Sign in' }).waitFor()
    await bo.getByRole('button', { name: 'Create an account' }).click()
    await bo.getByLabel('Name').fill('Bo Player')
    await bo.getByLabel('E-mail').fill('bo@example.org')
    await bo.getByLabel('Password').fill('bo password 123')
    await bo.getByRole('button', { name: 'Sign up' }).click()
    await bo.getByRole('heading', { name: 'Rehearsal Room' }).waitFor()
    await bo.getByText('Ann invites you to join the stage').waitFor()
    await bo.getByText(/You join the group\s*Band/).waitFor()
    t.pass('signed up on the invite: it shows the stage, who invites and the group')
    await shoot(t, bo, 'invite')
    await bo.getByLabel("The stage's password").fill('wrong')
    await bo.getByRole('button', { name: 'Join Rehearsal Room' }).click()
    t.match(await bo.getByRole('alert').textContent(), /password/i, "a wrong password: the hub's message")
    await bo.getByLabel("The stage's password").fill('open sesame')
    await bo.getByLabel("The stage's password").press('Enter')
    await bo.waitForURL(new RegExp(`#/stages/${stageId}$`))
    t.pass('joined: the stage page is open')

    // Bo is in, and online: his open tab is a device of his (kind browser, web/src/browser-device.ts)
    await page.goto(`${th.httpUrl}/#/stages`)
    await item.getByText('1 of 1 member in the stage').waitFor()
    await item.getByText('1 online').waitFor()
    t.match(
      await item.getByTestId('presence').textContent(),
      /1 online: Bo Player/,
      "who is online, live: Bo's open tab",
    )
    await shoot(t, page, 'stages-online')

    // Bo is no admin: the settings page says so
    await bo.goto(`${th.httpUrl}/#/stages/${stageId}/settings`)
    await bo.getByText("Only the stage's admins can change its settings").waitFor()
    t.pass('a member sees why there are no settings')

    // revoke: the link refuses with the hub's reason
    await page.goto(`${th.httpUrl}/#/stages/${stageId}/settings`)
    await invites.getByText(/For Band, .*used 1 time\b/).waitFor()
    await invites.getByRole('button', { name: /^Revoke/ }).click()
    await invites.getByText('Invite revoked: its link no longer works').waitFor()
    await invites.getByText(/None: links you make show here/).waitFor()
    const carl = await browser.newPage({ viewport: DESKTOP })
    await openSignedIn(carl, link, th.hub.users.userToken(await th.hub.users.createUser({ name: 'Carl' })))
    await carl.getByRole('heading', { name: 'This invitation cannot be used' }).waitFor()
    t.match(
      await carl.getByRole('alert').textContent(),
      /revoked.*ask them for a new link/,
      "the hub's reason",
    )
    await shoot(t, carl, 'invite-revoked')

    // delete: only once the name is typed; by keyboard
    const danger = page.getByRole('region', { name: 'Delete the stage' })
    const confirm = danger.getByLabel(/Type the stage's name/)
    await confirm.fill('Rehearsal')
    t.ok(
      await danger.getByRole('button', { name: 'Delete stage' }).isDisabled(),
      'a wrong name deletes nothing',
    )
    await confirm.fill('Rehearsal Room')
    await confirm.press('Enter')
    await page.waitForURL(/#\/stages$/)
    await page.getByText(/You are in no stage yet/).waitFor()
    t.equal(await th.hub.store.get('stages', stageId), null, 'the stage is gone from the hub')
    t.same(problems, [], 'no page errors, no CSP violations (Ann)')
    t.same(boProblems, [], 'no page errors, no CSP violations (Bo)')
  },
)

t.test(
  'in Chromium: an unknown invite code says so; an invite for no particular group and a stage without password: the person picks a group by keyboard and joins it',
  { skip: withoutChromium },
  async (t) => {
    const th = await startTestHub(t, { WEB_DIR: await builtWebApp(t), ...roomy })
    const admin = await actor(th, 'Alice')
    const stage = await ok<{ id: string }>(admin, 'stage.create', { name: 'Open Stage' })
    await ok(admin, 'group.create', { stageId: stage.id, name: 'Band', color: '#112233' })
    const choir = await ok<{ id: string }>(admin, 'group.create', {
      stageId: stage.id,
      name: 'Choir',
      color: '#445566',
    })
    const { code } = await ok<{ code: string }>(admin, 'invite.create', { stageId: stage.id })

    const browser = await launchChromium(t)
    const page = await browser.newPage({ viewport: DESKTOP })
    const problems = watchProblems(page)
    const bo = await th.hub.users.createUser({ name: 'Bo' })
    // a link with an unknown code first: the hub's message; then the right link in the same tab
    await openSignedIn(page, `${th.httpUrl}/#/invite/${'A'.repeat(24)}`, th.hub.users.userToken(bo))
    await page.getByRole('heading', { name: 'This invitation cannot be used' }).waitFor()
    t.match(
      await page.getByRole('alert').textContent(),
      /check the link/,
      "an unknown code: the hub's advice",
    )
    await page.goto(`${th.httpUrl}/#/invite/${code}`)
    await page.getByRole('heading', { name: 'Open Stage' }).waitFor()
    t.pass('another link opened in the same tab starts afresh')
    await page.getByText('Alice invites you to join the stage').waitFor()
    t.equal(await page.getByLabel("The stage's password").count(), 0, 'no password asked: the stage has none')
    const band = page.getByRole('radio', { name: 'Band' })
    t.ok(await band.isChecked(), 'the first group is picked to start with')
    await shoot(t, page, 'invite-pick-group')
    await band.focus()
    await page.keyboard.press('ArrowDown')
    t.ok(await page.getByRole('radio', { name: 'Choir' }).isChecked(), 'the arrow keys pick another group')
    await page.keyboard.press('Enter')
    await page.waitForURL(new RegExp(`#/stages/${stage.id}$`))
    const [member] = await th.hub.store.find<StoredDoc & { groupId: string; joined: boolean }>('members', {
      stageId: stage.id,
      userId: bo.id,
    })
    t.match(member, { groupId: choir.id, joined: true }, 'joined in the group picked')
    t.same(problems, [], 'no page errors, no CSP violations')
  },
)

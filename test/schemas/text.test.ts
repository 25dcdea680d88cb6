import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import type { UserDoc } from '../../services/collections.ts'
import { openStore } from '../../services/store/index.ts'
import { normaliseText, textProblem } from '../../schemas/text.ts'
import { type Actor, actor, ok, refused, retainedOn } from '../helpers/actors.ts'
import { Requester, TEST_SECRET, type TestHub, startTestHub, waitForMessage } from '../helpers/hub.ts'

/** Names that are not text a person can see, each with the rule its refusal must name. */
const badNames: Array<[string, string, RegExp]> = [
  ['a right-to-left override', 'evil\u202Egpj.exe', /bidirectional overrides or isolates \(found U\+202E\)/],
  ['a left-to-right isolate', '\u2066Admin\u2069', /bidirectional overrides or isolates \(found U\+2066\)/],
  ['a bell control character', 'Ann\u0007', /control characters \(found U\+0007\)/],
  ['a newline inside', 'Ann\nAdmin', /control characters \(found U\+000A\)/],
  ['a line separator', 'Ann\u2028Admin', /one line \(found U\+2028/],
  ['only zero-width spaces', '\u200B\u200B\u200B', /visible character/],
  ['only a zero-width joiner and a soft hyphen', '\u200D\u00AD', /visible character/],
  ['only a Hangul filler', '\u3164', /visible character/],
  ['only a Braille blank', '\u2800\u2800', /visible character/],
  ['only spaces', '   ', /visible character/],
  ['an unpaired surrogate', 'Ann\uD800', /unpaired UTF-16 surrogates/],
]

t.test('the text rule, as plain functions', async (t) => {
  for (const [what, name, rule] of badNames)
    t.match(textProblem('name', normaliseText('name', name)), rule, `a name with ${what} is refused`)
  const good: Array<[string, string, string]> = [
    ['decomposed accents are composed (NFC)', 'Ame\u0301lie', 'Am\u00E9lie'],
    ['surrounding spaces, tabs and no-break spaces are trimmed', ' \t\u00A0Ann \u3000', 'Ann'],
    ['emoji with joiners and variation selectors stay', 'Band 👩‍👩‍👧 ❤️', 'Band 👩‍👩‍👧 ❤️'],
    ['right-to-left text with a right-to-left mark stays', 'שלום\u200F 2', 'שלום\u200F 2'],
    ['a single punctuation mark is visible', '?', '?'],
  ]
  for (const [what, raw, normal] of good) {
    t.equal(normaliseText('name', raw), normal, what)
    t.equal(textProblem('name', normaliseText('name', raw)), undefined, `${what}: accepted`)
  }
  t.equal(
    normaliseText('message', ' line one\r\nline two\rthree\u0007\u001B[31m 🎻\u200D🔥 '),
    'line one\nline two\nthree[31m 🎻\u200D🔥',
    'chat: line breaks become \\n, other control characters go, emoji stay',
  )
  t.match(textProblem('message', normaliseText('message', '\u0007\r\n\u200B')), /visible character/)
  t.match(textProblem('message', normaliseText('message', 'hi \u202Ethere')), /bidirectional/)
})

async function userName(th: TestHub, userId: string): Promise<string | undefined> {
  return (await th.hub.store.get<UserDoc>('users', userId))?.name
}

t.test('invisible, bidi and control names are refused with invalid_request over MQTT', async (t) => {
  const th = await startTestHub(t, { RATE_LIMIT_BURST: '1000', RATE_LIMIT_PER_SECOND: '1000' })
  const ann = await actor(th, 'Ann')
  const admin = await th.connect({ clientId: 'ops', token: th.token({ sub: 'ops', role: 'admin' }) })
  const ops: Actor = { id: 'ops', name: 'ops', client: admin, req: new Requester(admin) }
  const stage = await ok<{ id: string }>(ann, 'stage.create', { name: 'Rehearsal' })
  const device = await ok<{ device: { id: string } }>(ann, 'device.create', { name: 'Box', kind: 'ovbox' })

  const requests: Array<[string, Actor, string, (name: string) => unknown]> = [
    ['user.update', ann, 'name', (name) => ({ name })],
    ['stage.create', ann, 'name', (name) => ({ name })],
    ['stage.update', ann, 'patch/name', (name) => ({ stageId: stage.id, patch: { name } })],
    ['group.create', ann, 'name', (name) => ({ stageId: stage.id, name, color: '#123456' })],
    ['device.create', ann, 'name', (name) => ({ name, kind: 'browser' })],
    ['device.update', ann, 'name', (name) => ({ deviceId: device.device.id, name })],
    ['router.create', ops, 'name', (name) => ({ name })],
  ]
  for (const [action, who, field, params] of requests) {
    for (const [what, name, rule] of badNames) {
      const error = await refused(who, action, params(name))
      t.equal(error.code, 'invalid_request', `${action} with ${what}: invalid_request`)
      t.match(
        error.message,
        new RegExp(`^invalid params: ${field} must .*${rule.source}`),
        `names ${field} and the rule`,
      )
    }
  }
  t.equal(await userName(th, ann.id), 'Ann', 'the profile kept its name')
  t.equal((await th.hub.store.find('stages', {})).length, 1, 'no stage was created')
  t.equal((await th.hub.store.find('groups', {})).length, 0, 'no group was created')
  t.equal((await th.hub.store.find('devices', {})).length, 1, 'no device was created')
  t.equal((await th.hub.store.find('routers', {})).length, 0, 'no router was created')
})

t.test('names are stored and published in NFC and trimmed', async (t) => {
  const th = await startTestHub(t)
  const ann = await actor(th, 'Ann')
  await ann.client.subscribeAsync(`users/${ann.id}`, { qos: 1 })
  const published = waitForMessage(ann.client, (m) => m.topic === `users/${ann.id}` && !m.retain)
  const renamed = ok<{ name: string }>(ann, 'user.update', { name: '  Ame\u0301lie\t' })
  t.equal((await renamed).name, 'Am\u00E9lie', 'the response has the normal form')
  t.equal(
    (JSON.parse((await published).payload.toString()) as { name: string }).name,
    'Am\u00E9lie',
    'so has users/{u}',
  )
  t.equal(await userName(th, ann.id), 'Am\u00E9lie', 'and the store')

  const stage = await ok<{ id: string; name: string }>(ann, 'stage.create', { name: ' Cafe\u0301 ' })
  t.equal(stage.name, 'Caf\u00E9', 'stage.create')
  t.match(await retainedOn(ann.client, `stages/${stage.id}`), { name: 'Caf\u00E9' }, 'stages/{s}')
  const device = await ok<{ device: { id: string; name: string } }>(ann, 'device.create', {
    name: '\u00A0Box 1 ',
    kind: 'browser',
  })
  t.equal(device.device.name, 'Box 1', 'device.create')
  t.match(await retainedOn(ann.client, `users/${ann.id}/devices/${device.device.id}`), { name: 'Box 1' })
})

t.test('chat text loses control characters and keeps emoji and line breaks', async (t) => {
  const th = await startTestHub(t)
  const ann = await actor(th, 'Ann')
  const stage = await ok<{ id: string }>(ann, 'stage.create', { name: 'Rehearsal' })
  const group = await ok<{ id: string }>(ann, 'group.create', {
    stageId: stage.id,
    name: 'All',
    color: '#123456',
  })
  await ok(ann, 'stage.join', { stageId: stage.id, groupId: group.id })
  await ann.client.subscribeAsync(`stages/${stage.id}/chat`, { qos: 1 })
  const delivered = waitForMessage(ann.client, `stages/${stage.id}/chat`)
  const sent = await ok<{ text: string }>(ann, 'chat.send', {
    text: '\u001B[2Jbravo 👏🏽\r\nencore! 🎻\u0000\u0008',
  })
  t.equal(sent.text, '[2Jbravo 👏🏽\nencore! 🎻', 'the response')
  t.equal(
    (JSON.parse((await delivered).payload.toString()) as { text: string }).text,
    sent.text,
    'what members get',
  )
  const empty = await refused(ann, 'chat.send', { text: '\u0007\u0007\r\n' })
  t.equal(empty.code, 'invalid_request', 'a message of control characters only is refused')
  t.match(empty.message, /text must contain a visible character/)
})

t.test('sign-up refuses invisible, bidi and control names and stores the normal form', async (t) => {
  const th = await startTestHub(t)
  const signup = async (name: string, email: string) => {
    const response = await fetch(`${th.httpUrl}/auth/signup`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email, password: 'a long passphrase', name }),
    })
    return { status: response.status, body: (await response.json()) as Record<string, never> }
  }
  for (const [what, name, rule] of badNames) {
    const { status, body } = await signup(name, 'bad@example.org')
    t.equal(status, 400, `${what}: 400`)
    t.match(body, {
      error: { code: 'invalid_request', message: new RegExp(`body/name must .*${rule.source}`) },
    })
  }
  t.same(await th.hub.store.find('users', {}), [], 'no account was created')
  const { status, body } = await signup(' Zo\u0308e ', 'zoe@example.org')
  t.equal(status, 201)
  t.equal(
    await userName(th, (body as unknown as { userId: string }).userId),
    'Z\u00F6e',
    'stored in NFC, trimmed',
  )
})

t.test("the operator's `stagehub user create` applies the same rule", async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'stagehub-text-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const run = (name: string) =>
    promisify(execFile)(
      'node',
      [
        '--import=tsx',
        new URL('../../bin/stagehub.ts', import.meta.url).pathname,
        'user',
        'create',
        '--name',
        name,
      ],
      { env: { ...process.env, JWT_SECRET: TEST_SECRET, DATA_DIR: dataDir } },
    ).then(
      ({ stdout }) => ({ code: 0, stdout, stderr: '' }),
      (err: { code: number; stdout: string; stderr: string }) => err,
    )
  const refusedName = await run('\u202EAnn')
  t.equal(refusedName.code, 2, 'exit 2')
  t.match(
    refusedName.stderr,
    'user create: name must not contain bidirectional overrides or isolates (found U+202E)',
  )
  const created = await run(' Zo\u0308e ')
  t.equal(created.code, 0)
  const store = await openStore({ dataDir, storeIntegrityCheck: 'quick' })
  t.teardown(() => store.close())
  const user = await store.get<UserDoc>('users', (JSON.parse(created.stdout) as { userId: string }).userId)
  t.equal(user?.name, 'Z\u00F6e', 'stored in NFC, trimmed')
})

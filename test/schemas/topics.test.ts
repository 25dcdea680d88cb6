import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { aclRules } from '../../broker/acl.ts'
import { docFiles, packageVersion } from '../../bin/docs.ts'
import { jsonSchemaFiles, payloadTopics, topicSchemaFile } from '../../schemas/index.ts'
import { topicShapes } from '../../schemas/topic-shapes.ts'
import { findTopic, topicCatalogue, topics, type Topic } from '../../schemas/topics.ts'
import { type Actor, actor, connectDevice, ok } from '../helpers/actors.ts'
import { Requester, recordMessages, startTestHub, waitUntil } from '../helpers/hub.ts'
import { findTopicSpellings } from '../helpers/topic-spellings.ts'

/** One distinct value per variable, so a parser that swaps two of them is caught. */
const valuesFor = (topic: Topic): string[] =>
  topic.levels.flatMap((level, i) => ('variable' in level ? [`${level.variable}-${i}`] : []))

/** A topic's builder with its values as a list, for code that walks the whole catalogue. */
const build = (topic: Topic, values: readonly string[]): string =>
  (topic.build as (...v: readonly string[]) => string)(...values)

const clientPublished = (topic: Topic): boolean => topic.publishers.some((party) => party !== 'the hub')

t.test('every builder builds a topic its own parser reads back, and no other entry claims it', async (t) => {
  for (const topic of topicCatalogue) {
    const values = valuesFor(topic)
    const built = build(topic, values)
    const names = topic.levels.flatMap((level) => ('variable' in level ? [level.variable] : []))
    t.same(
      topic.parse(built),
      Object.fromEntries(names.map((n, i) => [n, values[i]])),
      `${topic.pattern}: ${built}`,
    )
    t.equal(findTopic(built)?.entry, topic, `${built} belongs to ${topic.pattern} alone`)
  }
})

t.test(
  'a parser refuses topics of another shape: a level more or less, an empty variable, another word',
  async (t) => {
    t.same(topics.member.parse('stages/s1/members/u1'), { s: 's1', u: 'u1' })
    t.equal(topics.member.parse('stages/s1/members/u1/x'), null, 'a level more')
    t.equal(topics.member.parse('stages/s1/members'), null, 'a level less')
    t.equal(topics.member.parse('stages//members/u1'), null, 'an empty variable')
    t.equal(topics.member.parse('stages/s1/groups/u1'), null, 'another word')
    t.same(topics.request.parse('clients/app-1/req/user.update'), { c: 'app-1', action: 'user.update' })
    t.same(topics.brokerStatistics.parse('$SYS/broker/uptime'), {}, '# takes any levels below')
    t.equal(findTopic('stages/s1/unknown'), null, 'a topic the catalogue lacks belongs to no entry')
  },
)

// Never called: tsc checks that a builder takes exactly its pattern's variables and a parser names them.
const _typed = (): unknown[] => [
  // @ts-expect-error a member topic needs a stage and a user
  topics.member.build('s1'),
  // @ts-expect-error hub/status has no variables
  topics.hubStatus.build('x'),
  topics.member.parse('stages/s1/members/u1')?.u ?? '',
  // @ts-expect-error a member topic binds no device
  topics.member.parse('stages/s1/members/u1')?.d ?? '',
]

t.test('a filter binds the variables given and leaves the others to +', async (t) => {
  t.equal(topics.member.filter({ s: 's1' }), 'stages/s1/members/+')
  t.equal(topics.assignment.filter({ r: 'r1' }), 'routers/r1/assignments/+')
  t.equal(topics.mix.filter({}), 'users/+/mix/+/+')
})

t.test('the ACL is the catalogue: one rule per entry, in its order, with the parties it names', async (t) => {
  t.equal(aclRules.length, topicCatalogue.length, 'as many rules as topics')
  topicCatalogue.forEach((topic, i) => {
    const rule = aclRules[i]!
    t.equal(rule.topic, topic, `rule ${i} enforces ${topic.pattern}`)
    t.equal(rule.publish !== undefined, clientPublished(topic), `${topic.pattern}: clients may publish`)
    t.equal(
      rule.subscribe !== undefined,
      topic.subscribers.length > 0,
      `${topic.pattern}: someone may subscribe`,
    )
    t.equal(
      rule.retain,
      topic.retained && clientPublished(topic),
      `${topic.pattern}: a client's retain flag stands`,
    )
  })
})

t.test('every topic clients publish has a consumer in the hub, and only those', async (t) => {
  for (const topic of topicCatalogue)
    t.equal(
      topic.consumer !== undefined,
      clientPublished(topic),
      `${topic.pattern}: ${topic.consumer ?? 'none'}`,
    )
})

t.test(
  "a malformed message on each client topic reaches the catalogue's consumer, which keeps it from subscribers",
  async (t) => {
    const th = await startTestHub(t)
    const ops: Actor = await (async () => {
      const client = await th.connect({
        clientId: 'ops-topics',
        token: th.token({ sub: 'ops', role: 'admin' }),
      })
      return { id: 'ops', name: 'ops', client, req: new Requester(client) }
    })()
    const alice = await actor(th, 'Alice')
    const device = await ok<{ device: { id: string }; token: string }>(alice, 'device.create', {
      name: 'Box',
      kind: 'native',
    })
    const router = await ok<{ router: { id: string }; token: string }>(ops, 'router.create', { name: 'r' })
    const box = await connectDevice(th, device.device.id, device.token)
    const media = await th.connect({ clientId: router.router.id, token: router.token })
    const seen = recordMessages(ops.client)
    await ops.client.subscribeAsync('#', { qos: 1 })

    const consumed = topicCatalogue.filter(
      (topic) => topic.consumer !== undefined && topic.consumer !== 'requests',
    )
    t.ok(consumed.length > 0, 'the catalogue names consumers besides the request pipeline')
    for (const topic of consumed) {
      const publisher = topic.publishers.includes('device d') ? box.client : media
      const id = topic.publishers.includes('device d') ? device.device.id : router.router.id
      t.equal(valuesFor(topic).length, 1, `${topic.pattern} names only its publisher`)
      await publisher.publishAsync(build(topic, [id]), 'not json', { qos: 1 })
    }
    // each publisher's messages are handled in order: once a valid one arrives, the malformed ones were decided
    await box.client.publishAsync(topics.deviceReported.build(device.device.id), '{}', { qos: 1 })
    await media.publishAsync(topics.routerLoad.build(router.router.id), '{}', { qos: 1 })
    const arrived = (topic: string) => seen.messages.some((m) => m.topic === topic)
    const reported = topics.deviceReported.build(device.device.id)
    const load = topics.routerLoad.build(router.router.id)
    await waitUntil(() => arrived(reported) && arrived(load), 'the valid messages arrive')
    seen.stop()
    t.same(
      seen.messages.filter((m) => m.payload.toString() === 'not json').map((m) => m.topic),
      [],
      'no malformed message reached the admin subscribed to #',
    )
  },
)

t.test(
  'the AsyncAPI document has a channel for every catalogue topic, and none for a topic it lacks',
  async (t) => {
    const document = JSON.parse((await docFiles(await packageVersion())).get('asyncapi.json')!) as {
      channels: Record<string, { address: string }>
    }
    const addresses = Object.values(document.channels).map((channel) => channel.address)
    for (const address of addresses) t.ok(findTopic(address), `${address} is in the catalogue`)
    for (const topic of topicCatalogue.filter((topic) => topic.kind !== 'broker'))
      t.ok(
        addresses.some((address) => topic.parse(address) !== null),
        `${topic.pattern} has a channel`,
      )
  },
)

t.test(
  "schemas/json holds the payload schema of every catalogue topic but the envelopes and the broker's",
  async (t) => {
    const expected = topicCatalogue.filter((topic) => !['request', 'response', 'broker'].includes(topic.kind))
    t.same(payloadTopics, expected, 'the topics with a payload schema')
    const files = jsonSchemaFiles()
    t.same(
      [...files.keys()].filter((file) => /^(state|client)\//.test(file)).sort(),
      expected.map(topicSchemaFile).sort(),
      'one file per topic, and none for a topic the catalogue lacks',
    )
    for (const topic of expected) {
      const { title, ...schema } = JSON.parse(files.get(topicSchemaFile(topic))!) as { title: string }
      t.equal(title, topic.pattern, `${topicSchemaFile(topic)} is titled ${topic.pattern}`)
      t.same(
        schema,
        JSON.parse(JSON.stringify(topic.payload)),
        `${topicSchemaFile(topic)} is its payload schema`,
      )
    }
  },
)

t.test('the catalogue is the topic shapes, each with its payload and parties, in their order', async (t) => {
  t.same(Object.keys(topics), Object.keys(topicShapes), 'the same names in the same order')
  for (const [name, shape] of Object.entries(topicShapes)) {
    const entry = topics[name as keyof typeof topics]
    t.equal(entry.pattern, shape.pattern, name)
    t.equal(entry.build, shape.build, `${name}: the same builder, not a copy`)
    t.equal(entry.match, shape.match)
    t.ok(entry.payload, `${name} has a payload schema`)
  }
  const source = readFileSync(
    fileURLToPath(new URL('../../schemas/topic-shapes.ts', import.meta.url)),
    'utf8',
  )
  t.notMatch(source, /^import /m, 'the shapes import nothing: what builds topics needs no schema library')
})

t.test(
  'no source file but the catalogue spells a topic: builders, parsers and filters come from it',
  async (t) => {
    const root = fileURLToPath(new URL('../../', import.meta.url))
    const dirs = [
      'bin',
      'broker',
      'services',
      'schemas',
      'firmware-config',
      'devices',
      'bench',
      'scripts',
      'test/helpers',
    ]
    const found = findTopicSpellings(root, dirs)
    t.ok(
      found.some((spelling) => spelling.file === 'schemas/topic-shapes.ts'),
      "the scan finds the catalogue's patterns (it reads the files it should)",
    )
    t.same(
      found.filter((s) => s.file !== 'schemas/topic-shapes.ts').map((s) => `${s.file}:${s.line}: ${s.text}`),
      [],
      'use schemas/topics.ts (or its shapes, schemas/topic-shapes.ts) instead of spelling these topics',
    )
  },
)

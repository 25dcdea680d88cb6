import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { DiagnosticSeverity, Parser } from '@asyncapi/parser'
import t from 'tap'
import { Acl, aclRules } from '../../broker/acl.ts'
import type { Identity } from '../../broker/tokens.ts'
import { actions } from '../../schemas/index.ts'
import { type Party, topicCatalogue } from '../../schemas/topics.ts'
import { DOCS_DIR, docFiles, packageVersion } from '../../bin/docs.ts'

const generated = await docFiles(await packageVersion())

t.test(
  'the checked-in generated docs are what `npm run docs` writes now (run it after changing schemas/)',
  async (t) => {
    for (const [file, content] of generated)
      t.equal(readFileSync(join(DOCS_DIR, file), 'utf8'), content, file)
  },
)

t.test(
  'the publishers and subscribers the docs name are the ones the real Acl allows, for every ACL pattern',
  async (t) => {
    t.same(
      topicCatalogue.map((topic) => topic.pattern).sort(),
      aclRules.map((r) => r.topic.pattern).sort(),
      'one line per ACL pattern',
    )
    // plain stored state: the insider is a member of stage s1, the owner owns device d1
    const acl = new Acl({
      canSeeStage: (stageId, userId) => stageId === 's1' && userId === 'insider',
      deviceOwner: (deviceId) => (deviceId === 'd1' ? 'owner' : undefined),
    })
    const exp = Math.floor(Date.now() / 1000) + 3600
    const probes: Record<Exclude<Party, 'the hub'>, Identity> = {
      everyone: { role: 'user', id: 'nobody', clientId: 'nobody-app', exp },
      'user u': { role: 'user', id: 'u1', clientId: 'u1-app', exp },
      'stage insiders': { role: 'user', id: 'insider', clientId: 'insider-app', exp },
      'device d': { role: 'device', id: 'd1', clientId: 'd1', owner: 'owner', exp },
      'device owner': { role: 'user', id: 'owner', clientId: 'owner-app', exp },
      'router r': { role: 'router', id: 'r1', clientId: 'r1', exp },
      'client c': { role: 'user', id: 'stranger', clientId: 'c1', exp },
    }
    const values: Record<string, string> = { u: 'u1', s: 's1', g: 'g1', t: 't1', d: 'd1', r: 'r1', c: 'c1' }
    Object.assign(values, { kind: 'group', id: 'g1', action: 'user.update' })
    for (const { pattern, publishers, subscribers } of topicCatalogue) {
      const topic = pattern.replace(/\{(\w+)\}/g, (_, v: string) => values[v]!).replace('#', 'broker/uptime')
      for (const [party, who] of Object.entries(probes) as Array<[Party, Identity]>) {
        const mayRead = subscribers.includes(party) || subscribers.includes('everyone')
        t.equal(
          acl.canSubscribe(who, topic),
          mayRead,
          `${topic}: ${party} ${mayRead ? 'may' : 'may not'} subscribe`,
        )
        const mayWrite = publishers.includes(party)
        t.equal(
          acl.canPublish(who, topic).allowed,
          mayWrite,
          `${topic}: ${party} ${mayWrite ? 'may' : 'may not'} publish`,
        )
      }
    }
  },
)

t.test(
  'docs/asyncapi.json is a valid AsyncAPI 3.0 document with every action, state and client topic',
  async (t) => {
    const { document, diagnostics } = await new Parser().parse(generated.get('asyncapi.json')!)
    t.same(
      diagnostics
        // spectral-core types severity with its own copy of @stoplight/types, the parser exports
        // another copy of the same enum: equal values, two types
        // eslint-disable-next-line @typescript-eslint/no-unsafe-enum-comparison
        .filter((d) => d.severity === DiagnosticSeverity.Error)
        .map((d) => `${d.code}: ${d.message} at ${d.path.join('.')}`),
      [],
      'the official parser reports no errors',
    )
    t.ok(document, 'the parser returns a document')
    if (!document) return
    t.equal(document.version(), '3.0.0')
    const addresses = new Set(
      document
        .channels()
        .all()
        .map((c) => c.address()),
    )
    for (const { pattern } of topicCatalogue.filter((topic) =>
      ['state', 'notice', 'client'].includes(topic.kind),
    ))
      t.ok(addresses.has(pattern), `a channel for ${pattern}`)
    for (const action of actions) {
      const operation = document.operations().get(action.name)
      t.equal(operation?.action(), 'send', `${action.name} is an operation clients send`)
      t.equal(operation?.channels().all()[0]?.address(), `clients/{clientId}/req/${action.name}`)
      t.equal(
        operation?.reply()?.channel()?.address(),
        'clients/{clientId}/res',
        `${action.name} is answered on res`,
      )
    }
  },
)

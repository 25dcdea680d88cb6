import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Parser } from '@asyncapi/parser'
import t from 'tap'
import { aclRules } from '../../broker/acl.ts'
import { actions, clientTopics, stateTopics } from '../../schemas/index.ts'
import { DOCS_DIR, aclWords, docFiles, packageVersion } from '../../bin/docs.ts'

const generated = await docFiles(await packageVersion())

t.test(
  'the checked-in generated docs are what `npm run docs` writes now (run it after changing schemas/)',
  async (t) => {
    for (const [file, content] of generated)
      t.equal(readFileSync(join(DOCS_DIR, file), 'utf8'), content, file)
  },
)

t.test(
  'every ACL pattern has its publisher and subscribers in words, and no other pattern does',
  async (t) => {
    t.same(Object.keys(aclWords).sort(), aclRules.map((r) => r.pattern).sort())
  },
)

t.test(
  'docs/asyncapi.json is a valid AsyncAPI 3.0 document with every action, state and client topic',
  async (t) => {
    const { document, diagnostics } = await new Parser().parse(generated.get('asyncapi.json')!)
    t.same(
      diagnostics
        .filter((d) => d.severity === 0)
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
    for (const { topic } of [...stateTopics, ...clientTopics])
      t.ok(addresses.has(topic), `a channel for ${topic}`)
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

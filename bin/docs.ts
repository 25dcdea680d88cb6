/* eslint-disable no-console -- a build script */
// Writes the generated protocol reference: docs/protocol/actions.md, docs/protocol/topics.md and
// docs/asyncapi.json, all from schemas/ (actions) and its topic catalogue, schemas/topics.ts (topics).
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { TSchema } from '@sinclair/typebox'
import { format, resolveConfig } from 'prettier'
import type { ActionSchema } from '../schemas/action.ts'
import { actions, envelopes, payloadTopics, topicSchemaFile } from '../schemas/index.ts'
import { ErrorBody } from '../schemas/protocol.ts'
import { type Party, type Topic, topicCatalogue, topics } from '../schemas/topics.ts'

export const DOCS_DIR = fileURLToPath(new URL('../docs/', import.meta.url))

const PARTY_WORDS: Readonly<Record<Party, string>> = {
  'the hub': 'the hub',
  everyone: 'everyone',
  'user u': 'user u',
  'stage insiders': 'admins and members of stage s (checked on every delivery)',
  'device d': 'device d',
  'device owner': 'the owner of d (checked on every delivery)',
  'router r': 'router r',
  'client c': 'the client whose client id is c',
}

/** Who publishes on a catalogue topic and who may subscribe, in words (retention is said with the publishers). */
function aclWords(topic: Topic): { publish: string; subscribe: string } {
  const notes = [
    topic.kind === 'broker'
      ? undefined
      : topic.retained
        ? topic.kind === 'state'
          ? undefined
          : 'retained'
        : 'not retained',
    topic.note,
  ].filter((n) => n !== undefined)
  const publish = topic.publishers.map((p) => PARTY_WORDS[p]).join(', ')
  return {
    publish: notes.length ? `${publish} (${notes.join('; ')})` : publish,
    subscribe:
      topic.receivers === 'nobody'
        ? 'nobody receives it, not even admins'
        : topic.subscribers.length
          ? topic.subscribers.map((p) => PARTY_WORDS[p]).join(', ') +
            (topic.receivers ? ' alone (not even admins receive it)' : '')
          : 'admins only',
  }
}

const PARAMETER_WORDS: Readonly<Record<string, string>> = {
  u: 'a user id',
  s: 'a stage id',
  g: 'a group id',
  t: 'a track id',
  d: 'a device id',
  r: 'a router id',
  c: 'an MQTT client id',
  kind: '`group`, `member` or `track`',
  id: 'the id of the group, member or track',
  action: 'an action name',
  clientId: 'the MQTT client id of the connection (`[A-Za-z0-9_-]{1,64}`)',
}

/** A schema as plain JSON: no TypeBox symbols, no `$id` (one document embeds the same schema many times). */
function plain(schema: TSchema | object): object {
  return JSON.parse(JSON.stringify(schema), (key, value: unknown) =>
    key === '$id' ? undefined : value,
  ) as object
}

/** One short line for a schema: its type and the constraints a person needs to fill it in. */
function typeOf(schema: TSchema): string {
  if (schema.const !== undefined) return `\`${JSON.stringify(schema.const)}\``
  const variants = (schema.anyOf ?? schema.oneOf) as TSchema[] | undefined
  if (variants) return variants.map(typeOf).join(' or ')
  if (schema.enum) return (schema.enum as unknown[]).map((v) => `\`${JSON.stringify(v)}\``).join(' or ')
  // TSchema types its keywords any: the bounds keywords are numbers wherever they are present
  const bounds = (low: string, high: string, unit = ''): string => {
    const [min, max] = [schema[low], schema[high]] as (number | undefined)[]
    return min !== undefined && max !== undefined
      ? ` ${min}-${max}${unit}`
      : min !== undefined
        ? ` ≥ ${min}${unit}`
        : max !== undefined
          ? ` ≤ ${max}${unit}`
          : ''
  }
  switch (schema.type) {
    case 'string':
      return `string${bounds('minLength', 'maxLength', ' chars')}${schema.pattern ? ` \`${String(schema.pattern)}\`` : ''}${schema.format ? ` (${String(schema.format)})` : ''}`
    case 'number':
    case 'integer':
      return `${schema.type}${bounds('minimum', 'maximum')}`
    case 'array':
      return `array of ${typeOf(schema.items as TSchema)}${bounds('minItems', 'maxItems', ' items')}`
    case 'object':
      return schema.properties ? `{${Object.keys(schema.properties as object).join(', ')}}` : 'object'
    case 'null':
      return '`null`'
    case 'boolean':
      return 'boolean'
    default:
      return 'any'
  }
}

const cell = (text: string): string => text.replaceAll('|', '\\|').replaceAll('\n', ' ')

/** A table of an object schema's top-level fields, or a line when it has none. */
function fieldTable(schema: TSchema): string {
  const properties = (schema.properties ?? {}) as Record<string, TSchema>
  const names = Object.keys(properties)
  if (names.length === 0) return schema.type === 'object' ? 'none\n' : `${cell(typeOf(schema))}\n`
  const required = new Set((schema.required ?? []) as string[])
  const rows = names.map((name) => {
    const field = properties[name]!
    return `| \`${name}\` | ${cell(typeOf(field))} | ${required.has(name) ? 'yes' : ''} | ${cell(String(field.description ?? ''))} |`
  })
  return ['| field | type | required | meaning |', '| --- | --- | --- | --- |', ...rows, ''].join('\n')
}

/** The topics clients see in the docs, with their variables spelled as the docs spell them. */
const requestAddress = (action: string): string => topics.request.build('{clientId}', action)
const responseAddress = topics.response.build('{clientId}')
/** A topic's anchor in topics.md: its JSON Schema file's name. */
const anchor = (topic: Topic): string =>
  topicSchemaFile(topic)
    .replace(/^.*\//, '')
    .replace(/\.json$/, '')
    .toLowerCase()

function actionsMarkdown(): string {
  const lines = [
    '# Actions',
    '',
    '<!-- generated by `npm run docs` from schemas/: do not edit -->',
    '',
    `Every action is a request: publish \`{"id", "params"}\` to \`${requestAddress('{action}')}\` (QoS 1) and read`,
    `the one response \`{"id", "ok", "result" | "error"}\` on \`${responseAddress}\`. See`,
    '[requests and errors](README.md#requests-and-responses) for the envelope, retries and error codes. The',
    'full JSON Schema of each action is in [`schemas/json/actions/`](../../schemas/json/actions/).',
    '',
    '| action | changes state | what it does |',
    '| --- | --- | --- |',
    ...actions.map(
      (a) =>
        `| [\`${a.name}\`](#${a.name.replace('.', '').toLowerCase()}) | ${a.changesState ? 'yes' : 'no'} | ${cell(a.description)} |`,
    ),
    '',
  ]
  for (const action of actions) {
    lines.push(
      `## ${action.name}`,
      '',
      action.description,
      '',
      '**params**',
      '',
      fieldTable(action.params),
      '**result**',
      '',
      fieldTable(action.result),
      `Schemas: [params](../../schemas/json/actions/${action.name}.params.json), [result](../../schemas/json/actions/${action.name}.result.json).`,
      '',
    )
  }
  return lines.join('\n')
}

function topicsMarkdown(): string {
  const lines = [
    '# Topics',
    '',
    '<!-- generated by `npm run docs` from the topic catalogue, schemas/topics.ts: do not edit -->',
    '',
    'Every topic the hub knows, with who publishes on it and who may subscribe (the catalogue in',
    '[`schemas/topics.ts`](../../schemas/topics.ts), which the ACL in [`broker/acl.ts`](../../broker/acl.ts)',
    'enforces; anything not listed is refused). `{x}` is one topic level.',
    'Admin tokens may subscribe to everything, yet a request reaches nobody and a response only the client',
    'that asked ([requests](README.md#requests-and-responses)). State topics are retained and published with QoS 1.',
    '',
    '| topic | published by | who may subscribe | payload |',
    '| --- | --- | --- | --- |',
  ]
  for (const topic of topicCatalogue) {
    const words = aclWords(topic)
    const link = payloadTopics.includes(topic)
      ? `[${topic.kind === 'client' ? 'client message' : 'state'}](#${anchor(topic)})`
      : topic.kind === 'request' || topic.kind === 'response'
        ? '[envelope](README.md#requests-and-responses)'
        : ''
    lines.push(`| \`${topic.pattern}\` | ${cell(words.publish)} | ${cell(words.subscribe)} | ${link} |`)
  }
  lines.push('')
  for (const topic of payloadTopics) {
    const file = topicSchemaFile(topic)
    lines.push(
      `<a id="${anchor(topic)}"></a>`,
      '',
      `## ${topic.pattern}`,
      '',
      ...(topic.payload.description ? [String(topic.payload.description), ''] : []),
      fieldTable(topic.payload),
      `Schema: [\`schemas/json/${file}\`](../../schemas/json/${file}).`,
      '',
    )
  }
  return lines.join('\n')
}

/** AsyncAPI keys allow letters, digits, `.`, `-` and `_`. */
const key = (text: string): string => text.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^_+|_+$/g, '')

function parametersOf(address: string): Record<string, { description: string }> | undefined {
  const names = [...address.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!)
  if (names.length === 0) return undefined
  return Object.fromEntries(names.map((n) => [n, { description: PARAMETER_WORDS[n] ?? n }]))
}

function asyncApi(version: string): object {
  const channels: Record<string, object> = {}
  const operations: Record<string, object> = {}
  const responseMessages: Record<string, object> = {}
  const errorResponse = {
    type: 'object',
    required: ['id', 'ok', 'error'],
    additionalProperties: false,
    properties: {
      id: { type: 'string', description: 'the request id, or "" when it could not be read' },
      ok: { const: false },
      error: plain(ErrorBody),
    },
  }

  const request = (action: ActionSchema): void => {
    const channelId = `req.${action.name}`
    channels[channelId] = {
      address: requestAddress(action.name),
      title: `${action.name} request`,
      description: `${action.description} Published (QoS 1) only by the client whose client id is {clientId}; the hub consumes it, no subscriber receives it.`,
      parameters: parametersOf(requestAddress('x')),
      messages: {
        request: {
          name: `${action.name}.request`,
          payload: {
            type: 'object',
            required: ['id'],
            additionalProperties: false,
            properties: {
              id: {
                type: 'string',
                minLength: 1,
                maxLength: 64,
                description: 'new per request; a retry reuses it',
              },
              params: plain(action.params),
            },
          },
        },
      },
    }
    responseMessages[key(`${action.name}.response`)] = {
      name: `${action.name}.response`,
      payload: {
        oneOf: [
          {
            type: 'object',
            required: ['id', 'ok', 'result'],
            additionalProperties: false,
            properties: { id: { type: 'string' }, ok: { const: true }, result: plain(action.result) },
          },
          errorResponse,
        ],
      },
    }
    operations[key(action.name)] = {
      action: 'send',
      title: action.name,
      summary: action.description,
      channel: { $ref: `#/channels/${channelId}` },
      messages: [{ $ref: `#/channels/${channelId}/messages/request` }],
      reply: {
        channel: { $ref: '#/channels/res' },
        messages: [{ $ref: `#/channels/res/messages/${key(`${action.name}.response`)}` }],
      },
    }
  }
  for (const action of actions) request(action)
  channels.res = {
    address: responseAddress,
    title: 'responses',
    description:
      'Exactly one response per request, not retained, delivered to the client whose client id is {clientId} and to nobody else (admins included). Only that client may subscribe: subscribe before publishing a request.',
    parameters: parametersOf(responseAddress),
    messages: responseMessages,
  }

  for (const topic of payloadTopics) {
    const address = topic.pattern
    const action = topic.kind === 'client' ? 'send' : 'receive'
    const words = aclWords(topic)
    const id = key(address.replace(/[{}]/g, ''))
    channels[id] = {
      address,
      description: `Published by ${words.publish}. Who may subscribe: ${words.subscribe}.`,
      parameters: parametersOf(address),
      messages: { [key(address.replace(/[{}]/g, ''))]: { name: address, payload: plain(topic.payload) } },
      'x-publishers': words.publish,
      'x-subscribers': words.subscribe,
    }
    operations[key(`${action}.${id}`)] = {
      action,
      channel: { $ref: `#/channels/${id}` },
      summary:
        action === 'receive'
          ? `The hub publishes ${address}; clients allowed to read it receive it.`
          : `Sent by ${words.publish}.`,
    }
  }

  return {
    asyncapi: '3.0.0',
    info: {
      title: 'stagehub MQTT API',
      version,
      description:
        'The MQTT API of the stagehub hub (MQTT 3.1.1 only). Clients authenticate with a JWT as the MQTT password (any user name). Generated by `npm run docs` from schemas/ and its topic catalogue, schemas/topics.ts; prose in docs/protocol/README.md.',
    },
    defaultContentType: 'application/json',
    servers: {
      mqtt: {
        host: 'localhost:1883',
        protocol: 'mqtt',
        protocolVersion: '3.1.1',
        description: 'MQTT over TCP (MQTT_PORT)',
        security: [{ $ref: '#/components/securitySchemes/jwt' }],
      },
      mqtts: {
        host: 'localhost:8883',
        protocol: 'secure-mqtt',
        protocolVersion: '3.1.1',
        description: 'MQTT over TLS when TLS_CERT and TLS_KEY are set (MQTTS_PORT)',
        security: [{ $ref: '#/components/securitySchemes/jwt' }],
      },
      ws: {
        host: 'localhost:8080',
        pathname: '/mqtt',
        protocol: 'ws',
        description: 'MQTT over WebSocket (HTTP_PORT)',
        security: [{ $ref: '#/components/securitySchemes/jwt' }],
      },
    },
    channels,
    operations,
    components: {
      securitySchemes: {
        jwt: {
          type: 'userPassword',
          description:
            'A JWT (role user, device, router or admin) as the MQTT password; the user name is not read. See docs/protocol/README.md#authentication.',
        },
      },
      schemas: {
        RequestEnvelope: plain(envelopes.RequestEnvelope),
        ResponseEnvelope: plain(envelopes.ResponseEnvelope),
      },
    },
  }
}

/** docs/ file (relative) → content: what `npm run docs` writes, formatted as `npm run lint` wants it. */
export async function docFiles(version: string): Promise<Map<string, string>> {
  const files = new Map<string, string>()
  const raw: Array<[string, string]> = [
    ['protocol/actions.md', actionsMarkdown()],
    ['protocol/topics.md', topicsMarkdown()],
    ['asyncapi.json', JSON.stringify(asyncApi(version))],
  ]
  for (const [file, text] of raw) {
    const path = join(DOCS_DIR, file)
    files.set(file, await format(text, { ...(await resolveConfig(path)), filepath: path }))
  }
  return files
}

export const packageVersion = (): Promise<string> =>
  import('../package.json', { with: { type: 'json' } }).then(
    (m: { default: { version: string } }) => m.default.version,
  )

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const [file, content] of await docFiles(await packageVersion())) {
    mkdirSync(dirname(join(DOCS_DIR, file)), { recursive: true })
    writeFileSync(join(DOCS_DIR, file), content)
  }
  console.log(`wrote ${DOCS_DIR}`)
}

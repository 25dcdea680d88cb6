#!/usr/bin/env -S node --import=tsx
/* eslint-disable no-console -- this is the operator's command line */
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs'
import { basename, join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { Writable } from 'node:stream'
import { type ParseArgsConfig, parseArgs } from 'node:util'
import { Type } from '@sinclair/typebox'
import { UserName } from '../schemas/actions/user.ts'
import { Password } from '../schemas/common.ts'
import { Email } from '../schemas/http.ts'
import { validator } from '../schemas/validate.ts'
import { ConfigError, configFromEnv, ensureJwtSecretFile, storeSettingsFromEnv } from '../broker/config.ts'
import { createTokenService, type Role } from '../broker/tokens.ts'
import { OVBOX_PATHS, renderAgentConfig, renderAgentUnit } from '../firmware-config/provisioning.ts'
import { collections } from '../services/collections.ts'
import { HubError } from '../services/errors.ts'
import type { DeviceDoc } from '../services/collections.ts'
import { signDeviceToken } from '../services/devices/service.ts'
import { startHub } from '../services/hub.ts'
import { stopOnSignals } from '../devices/signals.ts'
import {
  STORE_FILE,
  StoreRefusedError,
  type Verification,
  backupStoreFile,
  verifyStoreFile,
} from '../services/store/embedded-integrity.ts'
import { openStore } from '../services/store/index.ts'
import { PasswordPool } from '../services/users/password-pool.ts'
import { createUser, resetPassword, userToken } from '../services/users/service.ts'

const validNewUser = validator(
  Type.Object(
    { name: UserName, email: Type.Optional(Email), password: Type.Optional(Password) },
    { additionalProperties: false },
  ),
)

const USAGE = `stagehub — MQTT hub for Digital Stage

  stagehub start                         run the hub (configuration from the environment, see README)
  stagehub token --role R --sub ID [--owner USER] [--ver N] [--name NAME] [--ttl SECONDS]
                                         mint a token (R: user, device, router, admin); default ttl 3600
  stagehub user create --name NAME [--email E --password P]
                                         create a user in the store and print its id and a token
  stagehub user reset-password (--id ID | --email E) [--password P]
                                         set a user's password (asked for when not given; read from
                                         standard input when that is not a terminal), sign out every
                                         session of the user, and print a fresh token
  stagehub provision --device ID --hub-url mqtts://HOST:PORT [--out DIR] [--ca-path PATH]
                                         write an ov-box's agent.json (with a fresh device token of
                                         the current generation) and its systemd unit into DIR
                                         (default: DATA_DIR/provision/ID, readable by you only)
  stagehub backup --out FILE             copy the embedded store to FILE while the hub runs (SQLite
                                         backup API), verified; exit 1 if the store or copy is damaged
  stagehub verify [--file FILE]          full integrity check of the embedded store (or of a backup);
                                         exit 0 intact, 1 damaged, empty or not a stagehub store
`

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv
  switch (command) {
    case 'start':
      return start()
    case 'token':
      return mintToken(rest)
    case 'user':
      if (rest[0] === 'create') return createUserCommand(rest.slice(1))
      if (rest[0] === 'reset-password') return resetPasswordCommand(rest.slice(1))
      break
    case 'provision':
      return provision(rest)
    case 'backup':
      return backup(rest)
    case 'verify':
      return verify(rest)
    case undefined:
    case 'help':
    case '--help':
      console.log(USAGE)
      return
  }
  console.error(`unknown command: ${argv.join(' ')}\n\n${USAGE}`)
  process.exitCode = 2
}

async function start(): Promise<void> {
  const generated = ensureJwtSecretFile()
  const hub = await startHub(configFromEnv())
  if (generated)
    hub.log.info(
      { file: generated.file },
      generated.created
        ? 'JWT_SECRET is not set: generated a signing secret (the CLI reads it from there too)'
        : 'JWT_SECRET is not set: signing with the secret kept in the data directory',
    )
  stopOnSignals({ stop: () => hub.close() }, hub.log)
}

function mintToken(args: string[]): void {
  const values = parseOptions(args, {
    role: { type: 'string' },
    sub: { type: 'string' },
    owner: { type: 'string' },
    ver: { type: 'string' },
    name: { type: 'string' },
    ttl: { type: 'string', default: '3600' },
  })
  const roles: Role[] = ['user', 'device', 'router', 'admin']
  if (!values.role || !roles.includes(values.role as Role) || !values.sub) {
    throw new ConfigError(`token needs --role (${roles.join(', ')}) and --sub ID`)
  }
  for (const option of ['sub', 'owner'] as const) {
    const value = values[option]
    if (value !== undefined && !ID.test(value)) {
      throw new UsageError(`--${option} must be an id of 1-64 characters [A-Za-z0-9_-], got "${value}"`)
    }
  }
  if (values.ver !== undefined && !/^\d+$/.test(values.ver)) {
    throw new UsageError(`--ver must be a whole number, got "${values.ver}"`)
  }
  if (!/^\d+$/.test(values.ttl) || Number(values.ttl) === 0) {
    throw new UsageError(`--ttl must be a whole number of seconds, got "${values.ttl}"`)
  }
  const tokens = createTokenService(configFromEnv().jwt)
  const { token } = tokens.sign(
    {
      sub: values.sub,
      role: values.role as Role,
      name: values.name,
      owner: values.owner,
      ver: values.ver === undefined ? undefined : Number(values.ver),
    },
    Number(values.ttl),
  )
  console.log(token)
}

async function createUserCommand(args: string[]): Promise<void> {
  const values = parseOptions(args, {
    name: { type: 'string' },
    email: { type: 'string' },
    password: { type: 'string' },
  })
  if (!values.name) throw new ConfigError('user create needs --name')
  // the rules of sign-up (the name is normalised in place)
  const input = { ...values, name: values.name }
  if (!validNewUser(input)) throw new UsageError(`user create: ${validNewUser.describe()}`)
  const config = configFromEnv()
  const store = await openStore(config)
  try {
    // no broker here: the profile topic is published when the hub starts or the user updates it
    const passwords = new PasswordPool({ cost: config.passwordHashCost, ...config.passwordHashing })
    const user = await createUser(store, input, passwords)
    console.log(
      JSON.stringify(userToken(createTokenService(config.jwt), user, config.userTokenTtlSeconds), null, 2),
    )
  } finally {
    await store.close()
  }
}

const validPassword = validator(Password)

async function resetPasswordCommand(args: string[]): Promise<void> {
  const values = parseOptions(args, {
    id: { type: 'string' },
    email: { type: 'string' },
    password: { type: 'string' },
  })
  if (Boolean(values.id) === Boolean(values.email))
    throw new ConfigError('user reset-password needs either --id ID or --email E')
  const password = values.password ?? (await askPassword('new password: '))
  if (!validPassword(password)) throw new ConfigError(`the password ${validPassword.describe()}`)
  const config = configFromEnv()
  const store = await openStore(config)
  try {
    const passwords = new PasswordPool({ cost: config.passwordHashCost, ...config.passwordHashing })
    const user = await resetPassword(store, values, password, passwords)
    const reply = userToken(createTokenService(config.jwt), user, config.userTokenTtlSeconds)
    console.log(JSON.stringify({ ...reply, generation: user.tokenVersion }, null, 2))
  } finally {
    await store.close()
  }
}

/** One line from standard input; on a terminal, asked for without echoing what is typed. */
async function askPassword(prompt: string): Promise<string> {
  const tty = process.stdin.isTTY
  if (tty) process.stderr.write(prompt)
  const silent = new Writable({ write: (_chunk, _encoding, done) => done() })
  const lines = createInterface({ input: process.stdin, output: silent, terminal: tty })
  try {
    for await (const line of lines) return line
    throw new ConfigError('no password given: pass --password or type one')
  } finally {
    lines.close()
    if (tty) process.stderr.write('\n')
  }
}

async function provision(args: string[]): Promise<void> {
  const values = parseOptions(args, {
    device: { type: 'string' },
    'hub-url': { type: 'string' },
    out: { type: 'string' },
    'ca-path': { type: 'string' },
  })
  if (!values.device || !values['hub-url'])
    throw new ConfigError('provision needs --device ID and --hub-url URL')
  const config = configFromEnv()
  const store = await openStore(config)
  try {
    const device = await store.get<DeviceDoc>(collections.devices.name, values.device)
    if (!device)
      throw new ConfigError(`device ${values.device} is not registered: create it with device.create first`)
    if (device.kind !== 'ovbox')
      throw new ConfigError(`device ${device.id} is a ${device.kind}, not an ov-box`)
    const { token, expiresAt } = signDeviceToken(
      createTokenService(config.jwt),
      device,
      config.deviceTokenTtlSeconds,
    )
    const agentConfig = renderAgentConfig({
      hubUrl: values['hub-url'],
      deviceId: device.id,
      token,
      ...(values['ca-path'] ? { caPath: values['ca-path'] } : {}),
    })
    const out = resolve(values.out ?? provisionDir(config.dataDir, device.id))
    mkdirSync(out, { recursive: true })
    // the token is a credential: readable by the owner only
    writeFileSync(join(out, 'agent.json'), JSON.stringify(agentConfig, null, 2) + '\n', { mode: 0o600 })
    writeFileSync(join(out, basename(OVBOX_PATHS.unit)), renderAgentUnit())
    console.log(
      `wrote ${join(out, 'agent.json')} (token valid until ${expiresAt}) and ${join(out, basename(OVBOX_PATHS.unit))}\n` +
        `copy them to ${OVBOX_PATHS.agentConfig} and ${OVBOX_PATHS.unit} on the box, then: systemctl enable --now ${basename(OVBOX_PATHS.unit)}`,
    )
  } finally {
    await store.close()
  }
}

/**
 * Where `provision` writes without --out: under the data directory (git-ignored in a checkout, and
 * already holding secrets), in folders only their owner may open, never the working directory.
 */
function provisionDir(dataDir: string, deviceId: string): string {
  const parent = join(dataDir, 'provision')
  const dir = join(parent, deviceId)
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  // modes of folders that existed already, and against a permissive umask
  chmodSync(parent, 0o700)
  chmodSync(dir, 0o700)
  return dir
}

/** The embedded store's file, or a usage error under MONGO_URL (MongoDB has its own tools). */
function embeddedStoreFile(command: string): string {
  const settings = storeSettingsFromEnv()
  if (settings.mongoUrl) {
    throw new UsageError(
      `${command} works on the embedded store; MONGO_URL is set: use mongodump / mongorestore (see "Backup and restore" in the README)`,
    )
  }
  return join(settings.dataDir, STORE_FILE)
}

function report(verification: Verification, intact: string): void {
  if (verification.problems.length > 0) {
    console.error(`${verification.file} is not usable:\n  ${verification.problems.join('\n  ')}`)
    process.exitCode = 1
    return
  }
  const counts = Object.entries(verification.documents)
    .filter(([, n]) => n > 0)
    .map(([collection, n]) => `${collection} ${n}`)
  const id = verification.storeId ?? 'without an identity yet: the hub gives it one when it opens it'
  console.log(`${intact} (store ${id}; documents: ${counts.join(', ') || 'none'})`)
}

async function backup(args: string[]): Promise<void> {
  const values = parseOptions(args, { out: { type: 'string' } })
  if (!values.out) throw new UsageError('backup needs --out FILE')
  const file = embeddedStoreFile('backup')
  const copy = await backupStoreFile(file, values.out)
  report(copy, `backed up ${file} to ${values.out}, verified intact`)
}

function verify(args: string[]): void {
  const values = parseOptions(args, { file: { type: 'string' } })
  const file = values.file ?? embeddedStoreFile('verify')
  report(verifyStoreFile(file, 'full'), `${file} is an intact stagehub store`)
}

/** Wrong arguments: exit code 2, as for an unknown command. */
class UsageError extends Error {}

const ID = /^[A-Za-z0-9_-]{1,64}$/

type StringOptions = Record<string, { type: 'string'; default?: string }>

/**
 * parseArgs, where an option that takes a value takes the next argument whatever it starts with, as
 * getopt does: ids may start with '-' (`--sub -abc`, as well as `--sub=-abc`). Mistakes are usage errors
 * naming the option, not stack traces.
 */
function parseOptions<T extends StringOptions>(
  args: string[],
  options: T,
): ReturnType<typeof parseArgs<{ args: string[]; options: T }>>['values'] {
  const joined: string[] = []
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    const name = arg.startsWith('--') && !arg.includes('=') ? arg.slice(2) : undefined
    if (name !== undefined && Object.hasOwn(options, name) && i + 1 < args.length) {
      joined.push(`${arg}=${args[++i]!}`)
    } else {
      joined.push(arg)
    }
  }
  try {
    return parseArgs({ args: joined, options } satisfies ParseArgsConfig).values as never
  } catch (err) {
    const code = (err as { code?: string }).code
    if (!code?.startsWith('ERR_PARSE_ARGS')) throw err
    const known = Object.keys(options)
      .map((option) => `--${option}`)
      .join(', ')
    throw new UsageError(`${(err as Error).message.split('\n')[0]} (this command takes ${known})`)
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof UsageError) {
    console.error(err.message)
    process.exitCode = 2
    return
  }
  console.error(
    err instanceof ConfigError
      ? `configuration: ${err.message}`
      : err instanceof StoreRefusedError
        ? err.message
        : err instanceof HubError
          ? `${err.code}: ${err.message}`
          : err,
  )
  process.exitCode = 1
})

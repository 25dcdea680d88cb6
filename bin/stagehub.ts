#!/usr/bin/env -S node --import=tsx
/* eslint-disable no-console -- this is the operator's command line */
import { parseArgs } from 'node:util'
import { ConfigError, configFromEnv } from '../broker/config.ts'
import { createTokenService, type Role } from '../broker/tokens.ts'
import { startHub } from '../services/hub.ts'
import { openStore } from '../services/store/index.ts'
import { createUser, userToken } from '../services/users/service.ts'

const USAGE = `stagehub — MQTT hub for Digital Stage

  stagehub start                         run the hub (configuration from the environment, see README)
  stagehub token --role R --sub ID [--owner USER] [--ver N] [--name NAME] [--ttl SECONDS]
                                         mint a token (R: user, device, router, admin); default ttl 3600
  stagehub user create --name NAME [--email E --password P]
                                         create a user in the store and print its id and a token
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
      break
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
  const hub = await startHub(configFromEnv())
  const stop = (signal: string) => {
    hub.log.info({ signal }, 'signal received')
    hub.close().then(
      () => process.exit(0),
      (err: unknown) => {
        hub.log.error({ err }, 'shutdown failed')
        process.exit(1)
      },
    )
  }
  process.once('SIGTERM', () => stop('SIGTERM'))
  process.once('SIGINT', () => stop('SIGINT'))
}

function mintToken(args: string[]): void {
  const { values } = parseArgs({
    args,
    options: {
      role: { type: 'string' },
      sub: { type: 'string' },
      owner: { type: 'string' },
      ver: { type: 'string' },
      name: { type: 'string' },
      ttl: { type: 'string', default: '3600' },
    },
  })
  const roles: Role[] = ['user', 'device', 'router', 'admin']
  if (!values.role || !roles.includes(values.role as Role) || !values.sub) {
    throw new ConfigError(`token needs --role (${roles.join(', ')}) and --sub ID`)
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
  const { values } = parseArgs({
    args,
    options: { name: { type: 'string' }, email: { type: 'string' }, password: { type: 'string' } },
  })
  if (!values.name) throw new ConfigError('user create needs --name')
  const config = configFromEnv()
  const store = await openStore({ dataDir: config.dataDir, mongoUrl: config.mongoUrl })
  try {
    // no broker here: the profile topic is published when the hub starts or the user updates it
    const user = await createUser(store, { ...values, name: values.name }, config.passwordHashCost)
    console.log(
      JSON.stringify(userToken(createTokenService(config.jwt), user, config.userTokenTtlSeconds), null, 2),
    )
  } finally {
    await store.close()
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  console.error(err instanceof ConfigError ? `configuration: ${err.message}` : err)
  process.exitCode = 1
})

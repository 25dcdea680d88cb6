#!/usr/bin/env node
// `stagehub-router`: the media router agent (../devices/router/main.ts)
import { runTypeScript } from './run-typescript.js'

await runTypeScript('../devices/router/main.ts')

#!/usr/bin/env node
// `stagehub-ovbox`: the ov-box agent (../devices/ovbox/main.ts)
import { runTypeScript } from './run-typescript.js'

await runTypeScript('../devices/ovbox/main.ts')

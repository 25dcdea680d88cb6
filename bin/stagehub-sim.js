#!/usr/bin/env node
// `stagehub-sim`: the ov-box simulator (../devices/simulator/main.ts)
import { runTypeScript } from './run-typescript.js'

await runTypeScript('../devices/simulator/main.ts')

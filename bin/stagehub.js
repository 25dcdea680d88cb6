#!/usr/bin/env node
// `stagehub`: the hub and its operator commands (./stagehub.ts)
import { runTypeScript } from './run-typescript.js'

await runTypeScript('./stagehub.ts')

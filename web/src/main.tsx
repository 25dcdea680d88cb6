import { render } from 'preact'
import { App } from './app.tsx'
import { joinAudio, mediaSession } from './media/session.ts'
import './styles.css'

// the console's (and the browser tests') way to what "Join audio" does, for any stage id: the hub
// decides, as for every client (a page script can do anything the page does anyway)
Object.assign(globalThis, { stagehub: { joinAudio, mediaSession } })

render(<App />, document.getElementById('app')!)

// npm run dev: esbuild says when a rebuild is written
if (LIVE_RELOAD) new EventSource('/esbuild').addEventListener('change', () => location.reload())

import { render } from 'preact'
import { App } from './app.tsx'
import './styles.css'

render(<App />, document.getElementById('app')!)

// npm run dev: esbuild says when a rebuild is written
if (LIVE_RELOAD) new EventSource('/esbuild').addEventListener('change', () => location.reload())

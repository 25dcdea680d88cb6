/** Set by the build (scripts/build-web.ts): the hub's origin, '' for the page's own. */
declare const HUB_ORIGIN: string
/** Set by `npm run dev`: listen to esbuild's change events and reload. */
declare const LIVE_RELOAD: boolean

import { useSignal } from '@preact/signals'
import type { ActionParams } from '../../../devices/hub-client/index.ts'
import './stage-fields.css'

/** What the stage form sets (stage.create's settings; stage.update takes them as its patch). */
export type StageSettings = Pick<
  ActionParams<'stage.create'>,
  'name' | 'audioType' | 'videoType' | 'width' | 'length' | 'height' | 'preferredPosition'
>

/** The hub's room defaults (services/stages/rules.ts), shown in the create form. */
export const ROOM_DEFAULTS = { width: 13, length: 25, height: 7.5 }

/** Places to pick for the router choice (the hub picks a media router near the stage's position). */
export const CITIES = [
  { name: 'Berlin', lat: 52.52, lng: 13.405 },
  { name: 'London', lat: 51.507, lng: -0.128 },
  { name: 'Paris', lat: 48.857, lng: 2.352 },
  { name: 'Madrid', lat: 40.417, lng: -3.704 },
  { name: 'Stockholm', lat: 59.329, lng: 18.069 },
  { name: 'New York', lat: 40.713, lng: -74.006 },
  { name: 'Los Angeles', lat: 34.052, lng: -118.244 },
  { name: 'São Paulo', lat: -23.551, lng: -46.633 },
  { name: 'Tokyo', lat: 35.68, lng: 139.769 },
  { name: 'Sydney', lat: -33.869, lng: 151.209 },
] as const

const AUDIO = [
  ['mediasoup', 'In the browser (mediasoup)'],
  ['ov', 'ov-box, low latency (ov)'],
  ['none', 'No audio'],
] as const
const VIDEO = [
  ['mediasoup', 'In the browser (mediasoup)'],
  ['none', 'No video'],
] as const

const round = (n: number) => String(Math.round(n * 1000) / 1000)

/**
 * The stage's name, media types, room size and location, as form fields (read back with
 * `readStageSettings`). The fields start from `initial` and keep what the person typed when the page
 * renders again (defaults, not controlled values); a live change of the stage shows in fields not
 * edited yet. The location is optional: the browser's position (asked for only on a click)
 * or one picked from a list of cities or typed as latitude/longitude.
 */
export function StageFields({ initial }: { initial?: Partial<StageSettings> }) {
  const lat = useSignal(initial?.preferredPosition ? round(initial.preferredPosition.lat) : '')
  const lng = useSignal(initial?.preferredPosition ? round(initial.preferredPosition.lng) : '')
  const where = useSignal('')
  /** The city picked from the list, until the coordinates change otherwise. */
  const city = useSignal(
    CITIES.find((c) => c.lat === initial?.preferredPosition?.lat && c.lng === initial.preferredPosition.lng)
      ?.name ?? '',
  )
  const locating = useSignal(false)
  const room = { ...ROOM_DEFAULTS, ...initial }

  const pickCity = (event: Event) => {
    const picked = CITIES.find((c) => c.name === (event.currentTarget as HTMLSelectElement).value)
    city.value = picked?.name ?? ''
    if (!picked) return
    lat.value = String(picked.lat)
    lng.value = String(picked.lng)
    where.value = `Near ${picked.name}`
  }
  const locate = () => {
    if (!('geolocation' in navigator)) {
      where.value = 'This browser cannot tell its position: pick a city or type the coordinates.'
      return
    }
    if (!isSecureContext) {
      where.value =
        'Browsers tell their position only to pages served over https (or from this computer): pick a city or type the coordinates.'
      return
    }
    locating.value = true
    where.value = 'Asking the browser for your position…'
    navigator.geolocation.getCurrentPosition(
      (position) => {
        locating.value = false
        lat.value = round(position.coords.latitude)
        lng.value = round(position.coords.longitude)
        city.value = ''
        where.value = 'Your position is filled in.'
      },
      (error) => {
        locating.value = false
        where.value =
          error.code === error.PERMISSION_DENIED
            ? 'The browser was not allowed to tell your position: pick a city or type the coordinates.'
            : `Your position is not known (${error.message || 'no answer'}): pick a city or type the coordinates.`
      },
      { timeout: 10_000, maximumAge: 600_000 },
    )
  }

  return (
    <>
      <label>
        Name
        <input name="name" required maxLength={100} defaultValue={initial?.name ?? ''} />
      </label>
      <div class="pair">
        <label>
          Audio
          <select name="audioType">
            {AUDIO.map(([value, label]) => (
              <option key={value} value={value} selected={value === (initial?.audioType ?? 'mediasoup')}>
                {label}
              </option>
            ))}
          </select>
        </label>
        <label>
          Video
          <select name="videoType">
            {VIDEO.map(([value, label]) => (
              <option key={value} value={value} selected={value === (initial?.videoType ?? 'mediasoup')}>
                {label}
              </option>
            ))}
          </select>
        </label>
      </div>
      <fieldset>
        <legend>Room size (metres)</legend>
        <div class="triple">
          {(['width', 'length', 'height'] as const).map((dimension) => (
            <label key={dimension}>
              {dimension[0]!.toUpperCase() + dimension.slice(1)}
              <input
                name={dimension}
                type="number"
                inputMode="decimal"
                min="0.1"
                max="1000"
                step="0.1"
                required
                defaultValue={String(room[dimension])}
              />
            </label>
          ))}
        </div>
      </fieldset>
      <fieldset>
        <legend>Location (for the choice of media server, optional)</legend>
        <div class="pair">
          <button type="button" class="secondary" onClick={locate} disabled={locating.value}>
            Use my position
          </button>
          <label>
            Or a city
            <select onChange={pickCity} value={city.value}>
              <option value="">Pick a city…</option>
              {CITIES.map((c) => (
                <option key={c.name} value={c.name}>
                  {c.name}
                </option>
              ))}
            </select>
          </label>
        </div>
        <p role="status" class="hint">
          {where.value}
        </p>
        <div class="pair coords">
          <label>
            Latitude
            <input
              name="lat"
              type="number"
              inputMode="decimal"
              min="-90"
              max="90"
              step="any"
              value={lat.value}
              onInput={(e) => {
                lat.value = e.currentTarget.value
                city.value = ''
              }}
              required={lng.value !== ''}
            />
          </label>
          <label>
            Longitude
            <input
              name="lng"
              type="number"
              inputMode="decimal"
              min="-180"
              max="180"
              step="any"
              value={lng.value}
              onInput={(e) => {
                lng.value = e.currentTarget.value
                city.value = ''
              }}
              required={lat.value !== ''}
            />
          </label>
        </div>
      </fieldset>
    </>
  )
}

/** The settings the form holds (`field` from ui.tsx's `fields`). */
export function readStageSettings(field: (name: string) => string): StageSettings {
  const lat = field('lat')
  const lng = field('lng')
  return {
    name: field('name').trim(),
    audioType: field('audioType') as StageSettings['audioType'],
    videoType: field('videoType') as StageSettings['videoType'],
    width: Number(field('width')),
    length: Number(field('length')),
    height: Number(field('height')),
    ...(lat !== '' && lng !== '' ? { preferredPosition: { lat: Number(lat), lng: Number(lng) } } : {}),
  }
}

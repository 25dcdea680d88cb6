import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { SoundCard } from '../../schemas/actions/device.ts'

/**
 * What the agent assumes of a card that ALSA does not describe: ov-client's defaults (48 kHz, 96
 * frames × 2 periods = 4 ms) and a stereo card. Channel counts and rates come from the card's
 * `stream0` (USB audio) when it exists.
 */
export const SOUND_CARD_DEFAULTS = {
  driver: 'alsa',
  sampleRate: 48000,
  periodSize: 96,
  numPeriods: 2,
  numInputChannels: 2,
  numOutputChannels: 2,
} as const satisfies Partial<SoundCard>

/** Where the sound cards come from: ALSA on a box, a fixed list in the simulator. */
export interface SoundCardSource {
  read(): Promise<SoundCard[]>
}

const CARD_LINE = /^\s*(\d+)\s+\[([^\]]*)\]:\s*(.*?)\s+-\s+(.*?)\s*$/

/**
 * Parses ALSA's `/proc/asound/cards`:
 *
 *      0 [Headphones     ]: bcm2835_headpho - bcm2835 Headphones
 *                           bcm2835 Headphones
 *      1 [Device         ]: USB-Audio - USB Audio Device
 *                           C-Media Electronics Inc. USB Audio Device at usb-3f980000.usb-1.4, full speed
 *
 * into cards named `hw:<index>` (the ALSA device ov-client opens), labelled with the description.
 */
export function parseAsoundCards(text: string): SoundCard[] {
  const cards: SoundCard[] = []
  for (const line of text.split('\n')) {
    const match = CARD_LINE.exec(line)
    if (!match) continue
    const label = (match[4] || match[2]!.trim()).slice(0, 200)
    cards.push({ name: `hw:${match[1]}`, label, ...SOUND_CARD_DEFAULTS })
  }
  return cards
}

/** Channels and rates from a USB card's `/proc/asound/card<N>/stream0` (Playback:/Capture: sections). */
export function parseStream(
  text: string,
): Partial<Pick<SoundCard, 'numInputChannels' | 'numOutputChannels' | 'sampleRates'>> {
  const result: Partial<Pick<SoundCard, 'numInputChannels' | 'numOutputChannels' | 'sampleRates'>> = {}
  const rates = new Set<number>()
  for (const section of text.split(/^(?=Playback:|Capture:)/m)) {
    const kind = section.startsWith('Playback:') ? 'out' : section.startsWith('Capture:') ? 'in' : undefined
    if (!kind) continue
    const channels = [...section.matchAll(/Channels:\s*(\d+)/g)].map((m) => Number(m[1]))
    if (channels.length > 0) {
      const most = Math.min(256, Math.max(...channels))
      if (kind === 'in') result.numInputChannels = most
      else result.numOutputChannels = most
    }
    for (const m of section.matchAll(/Rates:\s*([0-9, ]+)/g)) {
      for (const rate of m[1]!.split(',').map((r) => Number(r.trim()))) {
        if (Number.isInteger(rate) && rate >= 8000 && rate <= 384000) rates.add(rate)
      }
    }
  }
  // a USB card with a Playback section only has no inputs (and the other way round)
  if (result.numOutputChannels !== undefined && result.numInputChannels === undefined)
    result.numInputChannels = 0
  if (result.numInputChannels !== undefined && result.numOutputChannels === undefined)
    result.numOutputChannels = 0
  if (rates.size > 0) result.sampleRates = [...rates].sort((a, b) => a - b).slice(0, 32)
  return result
}

/** The cards in an ALSA cards file, with each card's stream0 next to it when readable. */
export class AlsaSoundCards implements SoundCardSource {
  readonly #path: string

  constructor(path: string) {
    this.#path = path
  }

  async read(): Promise<SoundCard[]> {
    const cards = parseAsoundCards(await readFile(this.#path, 'utf8'))
    return Promise.all(
      cards.map(async (card) => {
        const index = card.name.slice('hw:'.length)
        const stream = await readFile(join(dirname(this.#path), `card${index}`, 'stream0'), 'utf8').catch(
          () => undefined,
        )
        return stream === undefined ? card : { ...card, ...parseStream(stream) }
      }),
    )
  }
}

/** The facts the box knows better than anyone; rate and period sizes are settings the owner may change. */
const DETECTED = ['label', 'numInputChannels', 'numOutputChannels', 'sampleRates'] as const

/**
 * The `soundcard.set` cards that bring the configuration in line with the hardware: a detected card
 * the configuration does not have, as detected; a known card whose detected facts (label, channel
 * counts, rates) changed, with those facts replaced and the owner's choices (driver, sample rate,
 * period size and count, default flag) kept. Cards the box no longer sees are left alone: removing one
 * would remove its tracks, and a USB card may be back in a moment.
 */
export function soundCardsToSet(
  detected: readonly SoundCard[],
  configured: readonly SoundCard[],
): SoundCard[] {
  const changes: SoundCard[] = []
  for (const card of detected) {
    const known = configured.find((c) => c.name === card.name)
    if (!known) {
      changes.push(card)
      continue
    }
    if (DETECTED.every((field) => JSON.stringify(known[field]) === JSON.stringify(card[field]))) continue
    const updated: SoundCard = { ...known }
    for (const field of DETECTED) {
      if (card[field] === undefined) delete updated[field]
      else Object.assign(updated, { [field]: card[field] })
    }
    changes.push(updated)
  }
  return changes
}

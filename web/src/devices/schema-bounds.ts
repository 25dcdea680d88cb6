/**
 * The limits the hub's schemas put on device settings, sound cards and tracks, read from the JSON
 * Schemas that `npm run schemas` writes from `schemas/` (a test keeps them current): the forms refuse
 * what the hub would, without bundling the schema library into the browser.
 */
import type { SoundCard, Track } from '../../../schemas/actions/device.ts'
import deviceUpdate from '../../../schemas/json/actions/device.update.params.json' with { type: 'json' }
import soundCardSet from '../../../schemas/json/actions/soundcard.set.params.json' with { type: 'json' }
import trackAdd from '../../../schemas/json/actions/track.add.params.json' with { type: 'json' }

export const JITTER = deviceUpdate.properties.settings.properties.senderJitter.anyOf[0]!
export const SOUND_CARD = soundCardSet.properties.soundCard.properties
export const TRACK = trackAdd.properties
export const DRIVERS = SOUND_CARD.driver.anyOf.map((literal) => literal.const as SoundCard['driver'])
export const DIRECTIVITIES = TRACK.directivity.anyOf.map((literal) => literal.const as Track['directivity'])

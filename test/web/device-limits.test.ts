import t from 'tap'
import { deviceSettingsFields, SoundCard, Track } from '../../schemas/actions/device.ts'
import { DIRECTIVITIES, DRIVERS, JITTER, SOUND_CARD, TRACK } from '../../web/src/devices/limits.ts'

/** The bounds a schema sets, in the limits' shape (only the keys the limit names). */
const boundsOf = (schema: object, keys: string[]) =>
  Object.fromEntries(keys.map((key) => [key, (schema as Record<string, unknown>)[key]]))

t.test("the device forms' bounds are the schema's: the browser refuses what the hub would", async (t) => {
  for (const jitter of [deviceSettingsFields.senderJitter, deviceSettingsFields.receiverJitter])
    t.same(JITTER, boundsOf(jitter, Object.keys(JITTER)), 'jitter')
  for (const [field, limit] of Object.entries(SOUND_CARD))
    t.same(
      limit,
      boundsOf(SoundCard.properties[field as keyof typeof SOUND_CARD], Object.keys(limit)),
      `sound card ${field}`,
    )
  t.same(
    DRIVERS,
    SoundCard.properties.driver.anyOf.map((literal) => literal.const),
    'sound card drivers',
  )
  for (const [field, limit] of Object.entries(TRACK))
    t.same(
      limit,
      boundsOf(Track.properties[field as keyof typeof TRACK], Object.keys(limit)),
      `track ${field}`,
    )
  t.same(
    DIRECTIVITIES,
    Track.properties.directivity.anyOf.map((literal) => literal.const),
    'track directivities',
  )
})

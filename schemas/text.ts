import { Type } from '@sinclair/typebox'

/**
 * Text people read: names of users, stages, groups, devices, routers and tracks, and chat messages.
 * The rule is a schema keyword (`textRule`, registered on the hub's ajv in validate.ts) so that every
 * schema that uses these types applies it wherever it is validated, MQTT or HTTP. It normalises the
 * value in place before the length limits are checked; JSON Schema tools that do not know the keyword
 * ignore it, which is why each schema also states the rule in its description.
 */
export const TEXT_RULE = 'textRule'
export type TextRule = 'name' | 'message'

const NAME_RULE =
  'Normalised to NFC and trimmed; refused with control characters, line or paragraph separators, bidirectional overrides or isolates (U+202A-202E, U+2066-2069), unpaired surrogates, or when nothing visible is left (empty, or only zero-width and other default-ignorable characters).'
const MESSAGE_RULE =
  'Line breaks become \\n, other control characters are removed, then normalised to NFC and trimmed; refused with bidirectional overrides or isolates, unpaired surrogates, or when nothing visible is left. Emoji (with their joiners and variation selectors) are kept.'

/** A name a person gives something and others see in lists. */
export function Name(maxLength = 100) {
  return Type.String({ minLength: 1, maxLength, [TEXT_RULE]: 'name', description: NAME_RULE })
}

/** A chat message: several lines allowed. */
export function MessageText(maxLength: number) {
  return Type.String({ minLength: 1, maxLength, [TEXT_RULE]: 'message', description: MESSAGE_RULE })
}

const CONTROL = /\p{Cc}/u
const CONTROL_BUT_NEWLINE = /(?!\n)\p{Cc}/gu
const SEPARATOR = /[\u2028\u2029]/u
// overrides and isolates can make a name read as something else (or reorder the text around it);
// the plain marks LRM, RLM and ALM stay allowed, right-to-left names need them
const BIDI_CONTROL = /[\u202A-\u202E\u2066-\u2069]/u
const LONE_SURROGATE = /\p{Cs}/u
// Hangul fillers are letters but default-ignorable; the Braille blank is a symbol that shows nothing
const VISIBLE = /(?![\p{Default_Ignorable_Code_Point}\u2800])[\p{L}\p{N}\p{P}\p{S}]/u

/** The normal form of text of `rule`: what the hub stores and publishes. */
export function normaliseText(rule: TextRule, raw: string): string {
  const text = rule === 'message' ? raw.replace(/\r\n?/g, '\n').replace(CONTROL_BUT_NEWLINE, '') : raw
  return text.normalize('NFC').trim()
}

/** Why normalised text breaks `rule`, as the end of a sentence that starts with the field, or undefined. */
export function textProblem(rule: TextRule, text: string): string | undefined {
  const found = (match: RegExpExecArray | null) => (match ? codePoint(match[0]) : '')
  if (rule === 'name' && CONTROL.test(text))
    return `must not contain control characters (found ${found(CONTROL.exec(text))})`
  if (rule === 'name' && SEPARATOR.test(text))
    return `must be one line (found ${found(SEPARATOR.exec(text))}, a line or paragraph separator)`
  if (BIDI_CONTROL.test(text))
    return `must not contain bidirectional overrides or isolates (found ${found(BIDI_CONTROL.exec(text))})`
  if (LONE_SURROGATE.test(text)) return 'must not contain unpaired UTF-16 surrogates'
  if (!VISIBLE.test(text))
    return 'must contain a visible character (it is empty, blank or only invisible characters)'
  return undefined
}

function codePoint(char: string): string {
  return `U+${char.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`
}

import { randomBytes, scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from 'node:crypto'

const KEY_LENGTH = 32

function scrypt(password: string, salt: Buffer, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scryptCallback(password, salt, KEY_LENGTH, options, (err, key) => (err ? reject(err) : resolve(key))),
  )
}

/**
 * A slow salted hash (scrypt, N = 2^cost, r = 8, p = 1; cost 15 ≈ 32 MiB and ~100 ms), stored with its
 * parameters so the cost can be raised later without invalidating existing hashes.
 */
export async function hashPassword(password: string, cost: number): Promise<string> {
  const salt = randomBytes(16)
  const N = 2 ** cost
  const key = await scrypt(password, salt, { N, r: 8, p: 1, maxmem: 256 * N * 8 })
  return `scrypt$${cost}$${salt.toString('base64')}$${key.toString('base64')}`
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, costText, saltText, keyText] = stored.split('$')
  if (scheme !== 'scrypt' || !costText || !saltText || !keyText) return false
  const N = 2 ** Number(costText)
  const expected = Buffer.from(keyText, 'base64')
  const actual = await scrypt(password, Buffer.from(saltText, 'base64'), {
    N,
    r: 8,
    p: 1,
    maxmem: 256 * N * 8,
  })
  return actual.length === expected.length && timingSafeEqual(actual, expected)
}

import { randomBytes } from 'node:crypto'
import { MongoClient } from 'mongodb'
import type { Teardown } from './hub.ts'

/**
 * The MongoDB (or MongoDB-compatible test server) the tests may use: STAGEHUB_TEST_MONGO_URL, not
 * MONGO_URL, which the CLI tests pass on to child hubs. `.ci/run` sets it from ../shared/mongo-test.
 */
export const testMongoUrl = process.env.STAGEHUB_TEST_MONGO_URL || undefined

/** Why MongoDB tests cannot run here, or false: for `{ skip: mongoMissing }`. */
export const mongoMissing: string | false = testMongoUrl
  ? false
  : 'STAGEHUB_TEST_MONGO_URL is not set (a replica set, or ../shared/mongo-test/start)'

/**
 * A MONGO_URL naming a database of its own (so tests running at once never share data), dropped at
 * teardown. Requires STAGEHUB_TEST_MONGO_URL.
 */
export function freshMongoUrl(t: Teardown): string {
  if (!testMongoUrl) throw new Error(mongoMissing as string)
  const dbName = `stagehub_test_${process.pid}_${randomBytes(4).toString('hex')}`
  const url = new URL(testMongoUrl)
  url.pathname = `/${dbName}`
  t.teardown(async () => {
    const client = new MongoClient(testMongoUrl!)
    try {
      await client.db(dbName).dropDatabase()
    } finally {
      await client.close()
    }
  })
  return url.toString()
}

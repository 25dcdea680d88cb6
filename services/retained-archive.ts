import type { RetainedArchive, RetainedRecord } from '../broker/persistence.ts'
import { collections, type RetainedDoc } from './collections.ts'
import type { Store } from './store/store.ts'

/** Retained messages kept in the hub's store (base64 payloads, one document per topic). */
export async function storeRetainedArchive(store: Store): Promise<RetainedArchive> {
  await store.ensureCollection(collections.retained)
  const name = collections.retained.name
  return {
    async *load() {
      for await (const doc of store.scan<RetainedDoc>(name)) {
        yield {
          topic: doc.topic,
          payload: Buffer.from(doc.payload, 'base64'),
          qos: doc.qos,
        } satisfies RetainedRecord
      }
    },
    async save(changes) {
      await store.transaction(async (tx) => {
        for (const [topic, record] of changes) {
          const existing = await tx.get<RetainedDoc>(name, topic)
          if (record === null) {
            if (existing) tx.delete(name, existing)
            continue
          }
          const doc = { id: topic, topic, payload: record.payload.toString('base64'), qos: record.qos }
          if (existing) tx.replace<RetainedDoc>(name, { ...doc, version: existing.version })
          else tx.insert<RetainedDoc>(name, doc)
        }
      })
    },
  }
}

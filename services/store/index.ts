import type { StoreSettings } from '../config.ts'
import { EmbeddedBackend } from './embedded.ts'
import { Store } from './store.ts'

/** MongoDB when a URL is configured, otherwise the embedded store under dataDir (integrity-checked). */
export async function openStore(config: StoreSettings): Promise<Store> {
  if (config.mongoUrl) {
    const { MongoBackend } = await import('./mongo.ts')
    return new Store(await MongoBackend.connect(config.mongoUrl))
  }
  return new Store(EmbeddedBackend.open(config.dataDir, config.storeIntegrityCheck))
}

export { Store, Transaction } from './store.ts'
export * from './port.ts'

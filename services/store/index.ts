import { EmbeddedBackend } from './embedded.ts'
import { Store } from './store.ts'

export interface StoreConfig {
  dataDir: string
  mongoUrl?: string | undefined
}

/** MongoDB when a URL is configured, otherwise the embedded store under dataDir. */
export async function openStore(config: StoreConfig): Promise<Store> {
  if (config.mongoUrl) {
    const { MongoBackend } = await import('./mongo.ts')
    return new Store(await MongoBackend.connect(config.mongoUrl))
  }
  return new Store(EmbeddedBackend.open(config.dataDir))
}

export { Store, Transaction } from './store.ts'
export * from './port.ts'

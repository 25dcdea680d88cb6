import t, { type Test } from 'tap'
import {
  type Change,
  type StoredDoc,
  Store,
  type Transaction,
  UniqueViolationError,
  VersionConflictError,
} from '../../../services/store/index.ts'

/**
 * The behaviour every store backend must show through `Store`. Each subtest gets a fresh, empty store
 * from the factory; `reopen` (when the backend supports it) closes the store and opens a new one over
 * the same data.
 */
export interface StoreHarness {
  store: Store
  /** Closes every store the harness opened and removes the data. */
  cleanup(): Promise<void>
  /** Closes `store` and opens a new Store over the same data. */
  reopen?(): Promise<Store>
}

export type StoreFactory = () => Promise<StoreHarness>

interface Item extends StoredDoc {
  name: string
  kind?: string
  online?: boolean
  group?: string | null
  rank?: number
}

interface Member extends StoredDoc {
  stageId: string
  seat: number
}

interface Account extends StoredDoc {
  tenant?: string
  email?: string | null
}

interface LogEntry extends StoredDoc {
  who: string
  tags: string[]
}

const items = { name: 'items', indexes: [['kind'], ['online']] }
const logs = { name: 'logs', indexes: [['who']] }
const members = { name: 'members', unique: [['stageId', 'seat']], indexes: [['stageId']] }
const accounts = { name: 'accounts', unique: [['tenant', 'email']] }

async function setup(t: Tap, factory: StoreFactory): Promise<StoreHarness> {
  const harness = await factory()
  t.teardown(() => harness.cleanup())
  await harness.store.ensureCollection(items)
  await harness.store.ensureCollection(members)
  await harness.store.ensureCollection(accounts)
  return harness
}

type Tap = Test

/** The rejection of `promise`, or fails the test when it resolves. */
async function rejection(t: Tap, promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise
  } catch (err) {
    return err
  }
  t.fail('expected a rejection')
  return undefined
}

function ids(docs: readonly StoredDoc[]): string[] {
  return docs.map((d) => d.id)
}

async function insert<T extends StoredDoc>(
  store: Store,
  collection: string,
  docs: Omit<T, 'version'>[],
): Promise<void> {
  await store.transaction(async (tx) => {
    for (const doc of docs) tx.insert<T>(collection, doc)
  })
}

export function storeContract(
  name: string,
  factory: StoreFactory,
  options: { skip?: string | false } = {},
): void {
  t.test(name, { skip: options.skip ?? false }, async (t) => {
    t.test('insert, get, version 1', async (t) => {
      const { store } = await setup(t, factory)
      const { value, changes } = await store.transaction(async (tx) =>
        tx.insert<Item>('items', { id: 'a', name: 'first', kind: 'x' }),
      )
      t.same(value, { id: 'a', version: 1, name: 'first', kind: 'x' })
      t.equal(changes.length, 1)
      t.same(await store.get('items', 'a'), { id: 'a', version: 1, name: 'first', kind: 'x' })
      t.equal(await store.get('items', 'missing'), null)
      t.equal(await store.get('members', 'a'), null, 'collections are separate')
    })

    t.test('replace bumps the version once per commit', async (t) => {
      const { store } = await setup(t, factory)
      await insert<Item>(store, 'items', [{ id: 'a', name: 'one' }])
      const { value } = await store.transaction(async (tx) => {
        const doc = (await tx.get<Item>('items', 'a'))!
        const once = tx.replace('items', { ...doc, name: 'two' })
        return tx.replace('items', { ...once, name: 'three' })
      })
      t.equal(value.version, 2)
      t.same(await store.get('items', 'a'), { id: 'a', version: 2, name: 'three' })
      await store.transaction(async (tx) => {
        const doc = (await tx.get<Item>('items', 'a'))!
        doc.name = 'four'
        tx.replace('items', doc)
      })
      t.same(await store.get('items', 'a'), { id: 'a', version: 3, name: 'four' })
    })

    t.test('replace of a document not read in the transaction is refused', async (t) => {
      const { store } = await setup(t, factory)
      await insert<Item>(store, 'items', [{ id: 'a', name: 'one' }])
      const doc = (await store.get<Item>('items', 'a'))!
      const err = await rejection(
        t,
        store.transaction(async (tx) => {
          tx.replace('items', { ...doc, name: 'two' })
        }),
      )
      t.ok(err instanceof Error && !(err instanceof VersionConflictError))
      t.same(await store.get('items', 'a'), doc)
    })

    t.test('compare-and-set: a stale transaction is re-run, or fails without retries', async (t) => {
      const { store } = await setup(t, factory)
      await insert<Item>(store, 'items', [{ id: 'counter', name: 'counter', rank: 0 }])
      const increment = async (): Promise<void> => {
        await store.transaction(async (tx) => {
          const doc = (await tx.get<Item>('items', 'counter'))!
          tx.replace('items', { ...doc, rank: doc.rank! + 1 })
        })
      }

      let runs = 0
      await store.transaction(async (tx) => {
        runs++
        const doc = (await tx.get<Item>('items', 'counter'))!
        if (runs === 1) await increment() // a concurrent commit makes this read stale
        tx.replace('items', { ...doc, rank: doc.rank! + 1 })
      })
      t.equal(runs, 2, 'the work function ran again after the conflict')
      t.match(await store.get('items', 'counter'), { rank: 2, version: 3 }, 'no increment was lost')

      runs = 0
      const err = await rejection(
        t,
        store.transaction(
          async (tx) => {
            runs++
            const doc = (await tx.get<Item>('items', 'counter'))!
            await increment()
            tx.replace('items', { ...doc, rank: doc.rank! + 100 })
          },
          { retries: 0 },
        ),
      )
      t.ok(err instanceof VersionConflictError, 'retries: 0 gives up with a VersionConflictError')
      t.equal(runs, 1)
      t.match(await store.get('items', 'counter'), { rank: 3, version: 4 }, 'the stale write was not applied')
    })

    t.test('a document read as missing that appears meanwhile is a conflict', async (t) => {
      const { store } = await setup(t, factory)
      let runs = 0
      const { value } = await store.transaction(async (tx) => {
        runs++
        const existing = await tx.get<Item>('items', 'lazy')
        if (runs === 1) await insert<Item>(store, 'items', [{ id: 'lazy', name: 'theirs' }])
        if (existing) return existing.name
        tx.insert<Item>('items', { id: 'other', name: 'mine' })
        return 'created'
      })
      t.equal(runs, 2)
      t.equal(value, 'theirs')
      t.equal(await store.get('items', 'other'), null)
    })

    t.test('a query whose result changed meanwhile is a conflict', async (t) => {
      const { store } = await setup(t, factory)
      await insert<Item>(store, 'items', [{ id: 'a', name: 'a', kind: 'x' }])
      let runs = 0
      const { value } = await store.transaction(async (tx) => {
        runs++
        const found = await tx.find<Item>('items', { kind: 'x' })
        if (runs === 1) await insert<Item>(store, 'items', [{ id: 'b', name: 'b', kind: 'x' }])
        tx.insert<Item>('items', { id: 'count', name: String(found.length) })
        return found.length
      })
      t.equal(runs, 2)
      t.equal(value, 2)
      t.match(await store.get('items', 'count'), { name: '2' })
    })

    t.test('inserting an existing id is a UniqueViolationError and is not retried', async (t) => {
      const { store } = await setup(t, factory)
      await insert<Item>(store, 'items', [{ id: 'a', name: 'one' }])
      let runs = 0
      const err = await rejection(
        t,
        store.transaction(async (tx) => {
          runs++
          tx.insert<Item>('items', { id: 'a', name: 'two' })
        }),
      )
      t.ok(err instanceof UniqueViolationError)
      t.match(err, { collection: 'items', fields: ['id'] })
      t.equal(runs, 1)
      t.same(await store.get('items', 'a'), { id: 'a', version: 1, name: 'one' })
      // the same id in another collection is fine
      await insert<Account>(store, 'accounts', [{ id: 'a' }])
      t.match(await store.get('accounts', 'a'), { id: 'a', version: 1 })
    })

    t.test('unique constraint over several fields; documents missing a field are exempt', async (t) => {
      const { store } = await setup(t, factory)
      await insert<Account>(store, 'accounts', [
        { id: '1', tenant: 't1', email: 'a@x' },
        { id: '2', tenant: 't2', email: 'a@x' },
        { id: '3', tenant: 't1', email: 'b@x' },
      ])
      const err = await rejection(
        t,
        insert<Account>(store, 'accounts', [{ id: '4', tenant: 't1', email: 'a@x' }]),
      )
      t.ok(err instanceof UniqueViolationError)
      t.match(err, { collection: 'accounts', fields: ['tenant', 'email'] })
      t.equal(await store.get('accounts', '4'), null)

      await insert<Account>(store, 'accounts', [
        { id: '5', tenant: 't1' },
        { id: '6', tenant: 't1' },
        { id: '7', email: 'a@x' },
        { id: '8', email: 'a@x' },
        { id: '9', tenant: 't1', email: null },
        { id: '10', tenant: 't1', email: null },
      ])
      t.same((await store.find<Account>('accounts', { tenant: 't1' })).map((d) => d.id).sort(), [
        '1',
        '10',
        '3',
        '5',
        '6',
        '9',
      ])

      // a replace that would collide is refused as well
      const replaceErr = await rejection(
        t,
        store.transaction(async (tx) => {
          const doc = (await tx.get<Account>('accounts', '3'))!
          tx.replace('accounts', { ...doc, email: 'a@x' })
        }),
      )
      t.ok(replaceErr instanceof UniqueViolationError)
      t.match(replaceErr, { fields: ['tenant', 'email'] })
      t.match(await store.get('accounts', '3'), { email: 'b@x', version: 1 })

      // freeing a value makes it available again
      await store.transaction(async (tx) => {
        const doc = (await tx.get<Account>('accounts', '1'))!
        tx.replace('accounts', { ...doc, email: 'c@x' })
      })
      await insert<Account>(store, 'accounts', [{ id: '4', tenant: 't1', email: 'a@x' }])
      t.match(await store.get('accounts', '4'), { version: 1 })
    })

    t.test('find by equality', async (t) => {
      const { store } = await setup(t, factory)
      await insert<Item>(store, 'items', [
        { id: 'd', name: 'd', kind: 'x', online: true, group: 'g', rank: 1 },
        { id: 'b', name: 'b', kind: 'x', online: false, rank: 2 },
        { id: 'a', name: 'a', kind: 'y', online: true, group: null, rank: 1 },
        { id: 'c', name: 'c', kind: 'x', online: true, rank: 3 },
        { id: 'e', name: 'e', kind: 'y', online: false, group: 'g', rank: 10 },
      ])
      t.same(ids(await store.find('items', { kind: 'x' })), ['b', 'c', 'd'], 'sorted by id')
      t.same(ids(await store.find('items', {})), ['a', 'b', 'c', 'd', 'e'])
      t.same(ids(await store.find('items')), ['a', 'b', 'c', 'd', 'e'])
      t.same(ids(await store.find('items', { online: true })), ['a', 'c', 'd'])
      t.same(ids(await store.find('items', { online: false })), ['b', 'e'])
      t.same(ids(await store.find('items', { kind: 'x', online: true })), ['c', 'd'])
      t.same(ids(await store.find('items', { rank: 1 })), ['a', 'd'])
      t.same(ids(await store.find('items', { rank: 1, kind: 'y' })), ['a'])
      t.same(
        ids(await store.find('items', { group: null })),
        ['a', 'b', 'c'],
        'null matches null and missing',
      )
      t.same(ids(await store.find('items', { group: 'g' })), ['d', 'e'])
      t.same(ids(await store.find('items', { kind: 'z' })), [])
      t.same(ids(await store.find('items', { id: 'c' })), ['c'], 'id is a field like any other')
      t.same(await store.find('items', { kind: 'y', online: false }), [
        { id: 'e', version: 1, name: 'e', kind: 'y', online: false, group: 'g', rank: 10 },
      ])
      t.same(await store.find('accounts', {}), [])
    })

    t.test('find and get inside a transaction see its own buffered writes', async (t) => {
      const { store } = await setup(t, factory)
      await insert<Item>(store, 'items', [
        { id: 'a', name: 'a', kind: 'x' },
        { id: 'b', name: 'b', kind: 'x' },
        { id: 'c', name: 'c', kind: 'y' },
      ])
      await store.transaction(async (tx) => {
        tx.insert<Item>('items', { id: 'n', name: 'new', kind: 'x' })
        const a = (await tx.get<Item>('items', 'a'))!
        tx.replace('items', { ...a, kind: 'y' })
        const b = (await tx.get<Item>('items', 'b'))!
        tx.delete('items', b)
        const c = (await tx.get<Item>('items', 'c'))!
        tx.replace('items', { ...c, kind: 'x' })

        t.same(ids(await tx.find('items', { kind: 'x' })), ['c', 'n'])
        t.same(ids(await tx.find('items', { kind: 'y' })), ['a'])
        t.match(await tx.get('items', 'n'), { id: 'n', version: 1, name: 'new' })
        t.equal(await tx.get('items', 'b'), null)
        t.match(await tx.get('items', 'a'), { kind: 'y', version: 2 })
        t.same(
          ids(await store.find('items', { kind: 'x' })),
          ['a', 'b'],
          'nothing is visible outside before commit',
        )
      })
      t.same(ids(await store.find('items', { kind: 'x' })), ['c', 'n'])
      t.same(ids(await store.find('items', { kind: 'y' })), ['a'])
    })

    t.test('phantom protection: concurrent lowest-free-seat allocation', async (t) => {
      const { store } = await setup(t, factory)
      await insert<Member>(store, 'members', [{ id: 'other', stageId: 's2', seat: 0 }])
      const n = 20
      const runs = new Array<number>(n).fill(0)
      const results = await Promise.allSettled(
        Array.from({ length: n }, (_, i) =>
          store.transaction(
            async (tx) => {
              runs[i]!++
              const taken = new Set((await tx.find<Member>('members', { stageId: 's1' })).map((m) => m.seat))
              let seat = 0
              while (taken.has(seat)) seat++
              return tx.insert<Member>('members', { id: `m${i}`, stageId: 's1', seat }).seat
            },
            { retries: 50 },
          ),
        ),
      )
      const rejected = results.filter((r) => r.status === 'rejected')
      t.same(rejected, [], 'every allocation committed')
      const seats = (await store.find<Member>('members', { stageId: 's1' }))
        .map((m) => m.seat)
        .sort((a, b) => a - b)
      t.same(
        seats,
        Array.from({ length: n }, (_, i) => i),
        'seats are distinct and dense',
      )
      t.ok(
        runs.some((r) => r > 1),
        'some transactions had to be re-run',
      )
      t.same(await store.find('members', { stageId: 's2' }), [
        { id: 'other', version: 1, stageId: 's2', seat: 0 },
      ])
    })

    t.test(
      'transactions that read the same documents and queries but write different ones never conflict',
      async (t) => {
        const { store } = await setup(t, factory)
        await insert<Item>(store, 'items', [{ id: 'stage', name: 'stage', kind: 'x' }])
        const n = 5
        const runs = new Array<number>(n).fill(0)
        let arrived = 0
        let release!: () => void
        const allRead = new Promise<void>((resolve) => (release = resolve))
        await Promise.all(
          Array.from({ length: n }, (_, i) =>
            store.transaction(
              async (tx) => {
                runs[i]!++
                await tx.get<Item>('items', 'stage')
                await tx.find<Item>('items', { kind: 'x' })
                await tx.find<Member>('members', { stageId: 's1' })
                // every transaction has read before any commits: the reads overlap in time
                if (++arrived === n) release()
                await allRead
                tx.insert<Account>('accounts', { id: `own${i}`, tenant: 't', email: `${i}@example.org` })
              },
              { retries: 0 },
            ),
          ),
        )
        t.same(runs, new Array<number>(n).fill(1), 'each ran once: no conflict, no re-run')
        t.equal((await store.find('accounts', { tenant: 't' })).length, n)
        t.match(await store.get('items', 'stage'), { version: 1 }, 'the document only read was not written')
        const readOnly = await Promise.all(
          Array.from({ length: n }, () =>
            store.transaction(async (tx) => (await tx.get<Item>('items', 'stage'))!.name, { retries: 0 }),
          ),
        )
        t.same(
          readOnly.map((r) => r.value),
          new Array<string>(n).fill('stage'),
          'read-only transactions commit without conflict',
        )
      },
    )

    t.test('write skew: a quota counted with a query holds when contenders insert at once', async (t) => {
      const { store } = await setup(t, factory)
      const quota = 3
      let arrived = 0
      let release!: () => void
      const allCounted = new Promise<void>((resolve) => (release = resolve))
      const n = 6
      const results = await Promise.allSettled(
        Array.from({ length: n }, (_, i) =>
          store.transaction(
            async (tx) => {
              const present = await tx.find<Item>('items', { kind: 'slot' })
              if (arrived < n && ++arrived === n) release()
              await allCounted // all counted the same empty set before anyone commits
              if (present.length >= quota) return false
              tx.insert<Item>('items', { id: `slot${i}`, name: `slot ${i}`, kind: 'slot' })
              return true
            },
            { retries: 50 },
          ),
        ),
      )
      t.same(
        results.map((r) => r.status),
        new Array<string>(n).fill('fulfilled'),
      )
      t.equal((await store.find('items', { kind: 'slot' })).length, quota, 'exactly the quota, not one more')
    })

    t.test('write skew: a value two transactions both saw free in a set is taken by one only', async (t) => {
      const { store } = await setup(t, factory)
      await insert<Item>(store, 'items', [
        { id: 'g1', name: 'one', kind: 'group', group: 'blue' },
        { id: 'g2', name: 'two', kind: 'group', group: 'green' },
      ])
      let arrived = 0
      let release!: () => void
      const bothRead = new Promise<void>((resolve) => (release = resolve))
      const recolour = (id: string) =>
        store.transaction(
          async (tx) => {
            const groups = await tx.find<Item>('items', { kind: 'group' })
            if (arrived < 2 && ++arrived === 2) release()
            await bothRead
            const taken = new Set(groups.filter((g) => g.id !== id).map((g) => g.group))
            const colour = ['red', 'yellow', 'purple'].find((c) => !taken.has(c))!
            tx.replace('items', { ...groups.find((g) => g.id === id)!, group: colour })
          },
          { retries: 10 },
        )
      await Promise.all([recolour('g1'), recolour('g2')])
      const colours = (await store.find<Item>('items', { kind: 'group' })).map((g) => g.group)
      t.equal(new Set(colours).size, 2, `distinct colours: ${colours.join(', ')}`)
    })

    t.test(
      '30 contenders for the lowest free seat all commit with the default retries, each re-run once at most',
      async (t) => {
        const { store } = await setup(t, factory)
        const n = 30
        const runs = new Array<number>(n).fill(0)
        const results = await Promise.allSettled(
          Array.from({ length: n }, (_, i) =>
            store.transaction(async (tx) => {
              runs[i]!++
              const taken = new Set((await tx.find<Member>('members', { stageId: 's1' })).map((m) => m.seat))
              let seat = 0
              while (taken.has(seat)) seat++
              return tx.insert<Member>('members', { id: `m${i}`, stageId: 's1', seat }).seat
            }),
          ),
        )
        t.same(
          results.filter((r) => r.status === 'rejected'),
          [],
          'no contender gave up',
        )
        const seats = (await store.find<Member>('members', { stageId: 's1' })).map((m) => m.seat)
        t.same(
          seats.sort((a, b) => a - b),
          Array.from({ length: n }, (_, i) => i),
        )
        // re-runs queue behind each other per contended set: each sees the seats taken before it
        t.ok(Math.max(...runs) <= 2, `runs per contender: ${runs.join(' ')}`)
      },
    )

    t.test('a transaction run inside a re-run does not wait behind that re-run (no deadlock)', async (t) => {
      const { store } = await setup(t, factory)
      await insert<Item>(store, 'items', [{ id: 'counter', name: 'counter', rank: 0 }])
      const add = async (tx: Transaction, by: number) => {
        const doc = (await tx.get<Item>('items', 'counter'))!
        tx.replace('items', { ...doc, rank: doc.rank! + by })
      }
      let outerRuns = 0
      let innerRuns = 0
      await store.transaction(async (tx) => {
        outerRuns++
        const doc = (await tx.get<Item>('items', 'counter'))!
        if (outerRuns === 1) await store.transaction((other) => add(other, 1)) // conflicts: re-run
        if (outerRuns === 2) {
          // in the re-run, which holds the lane of items/counter: a transaction on the same document
          // that conflicts and re-runs itself must not queue behind the re-run it is part of
          await store.transaction(async (inner) => {
            innerRuns++
            const seen = (await inner.get<Item>('items', 'counter'))!
            if (innerRuns === 1) await store.transaction((other) => add(other, 1000))
            inner.replace('items', { ...seen, rank: seen.rank! + 10 })
          })
        }
        tx.replace('items', { ...doc, rank: doc.rank! + 100 })
      })
      t.equal(innerRuns, 2, 'the inner transaction re-ran')
      t.equal(outerRuns, 3, 'the outer one re-ran until its reads held')
      t.match(await store.get('items', 'counter'), { rank: 1111 }, 'every increment applied once')
    })

    t.test('delete', async (t) => {
      const { store } = await setup(t, factory)
      await insert<Item>(store, 'items', [
        { id: 'a', name: 'a', kind: 'x' },
        { id: 'b', name: 'b', kind: 'x' },
      ])
      const { changes } = await store.transaction(async (tx) => {
        tx.delete('items', (await tx.get<Item>('items', 'a'))!)
      })
      t.same(changes, [
        { collection: 'items', id: 'a', before: { id: 'a', version: 1, name: 'a', kind: 'x' }, after: null },
      ])
      t.equal(await store.get('items', 'a'), null)
      t.same(ids(await store.find('items', { kind: 'x' })), ['b'])

      // deleting with a stale version conflicts
      const stale = (await store.get<Item>('items', 'b'))!
      await store.transaction(async (tx) => {
        const doc = (await tx.get<Item>('items', 'b'))!
        tx.replace('items', { ...doc, name: 'changed' })
      })
      const err = await rejection(
        t,
        store.transaction(
          async (tx) => {
            tx.delete('items', stale)
          },
          { retries: 0 },
        ),
      )
      t.ok(err instanceof VersionConflictError)
      t.match(await store.get('items', 'b'), { name: 'changed', version: 2 })

      // an id can be reused after its deletion
      await insert<Item>(store, 'items', [{ id: 'a', name: 'again' }])
      t.same(await store.get('items', 'a'), { id: 'a', version: 1, name: 'again' })
    })

    t.test('delete then insert of the same id in one transaction', async (t) => {
      const { store } = await setup(t, factory)
      await insert<Item>(store, 'items', [{ id: 'a', name: 'old', kind: 'x' }])
      const { changes } = await store.transaction(async (tx) => {
        tx.delete('items', (await tx.get<Item>('items', 'a'))!)
        t.equal(await tx.get('items', 'a'), null)
        tx.insert<Item>('items', { id: 'a', name: 'new' })
      })
      t.same(changes, [
        {
          collection: 'items',
          id: 'a',
          before: { id: 'a', version: 1, name: 'old', kind: 'x' },
          after: { id: 'a', version: 2, name: 'new' },
        },
      ])
      t.same(await store.get('items', 'a'), { id: 'a', version: 2, name: 'new' })
      t.same(await store.find('items', { kind: 'x' }), [], 'fields of the deleted document are gone')
    })

    t.test('a commit is atomic over several documents', async (t) => {
      const { store } = await setup(t, factory)
      await insert<Member>(store, 'members', [{ id: 'm1', stageId: 's', seat: 3 }])
      await insert<Item>(store, 'items', [{ id: 'a', name: 'before' }])
      const err = await rejection(
        t,
        store.transaction(async (tx) => {
          const a = (await tx.get<Item>('items', 'a'))!
          tx.replace('items', { ...a, name: 'after' })
          tx.insert<Member>('members', { id: 'm2', stageId: 's', seat: 5 })
          tx.insert<Member>('members', { id: 'm3', stageId: 's', seat: 3 })
        }),
      )
      t.ok(err instanceof UniqueViolationError)
      t.match(err, { collection: 'members', fields: ['stageId', 'seat'] })
      t.equal(await store.get('members', 'm2'), null)
      t.equal(await store.get('members', 'm3'), null)
      t.same(await store.get('items', 'a'), { id: 'a', version: 1, name: 'before' })
      t.same(ids(await store.find('members', { stageId: 's' })), ['m1'])
    })

    t.test('change events', async (t) => {
      const { store } = await setup(t, factory)
      const events: (readonly Change[])[] = []
      const unsubscribe = store.onChange((changes) => {
        events.push(changes)
      })

      await insert<Item>(store, 'items', [
        { id: 'a', name: 'a' },
        { id: 'b', name: 'b' },
      ])
      t.equal(events.length, 1, 'one event per commit')
      t.same(events[0], [
        { collection: 'items', id: 'a', before: null, after: { id: 'a', version: 1, name: 'a' } },
        { collection: 'items', id: 'b', before: null, after: { id: 'b', version: 1, name: 'b' } },
      ])

      let runs = 0
      await store.transaction(async (tx) => {
        runs++
        const a = (await tx.get<Item>('items', 'a'))!
        if (runs === 1) {
          await store.transaction(async (tx2) => {
            const b = (await tx2.get<Item>('items', 'b'))!
            tx2.replace('items', { ...b, name: 'b2' })
            const a2 = (await tx2.get<Item>('items', 'a'))!
            tx2.replace('items', { ...a2, name: 'a2' })
          })
        }
        a.name = `${a.name}!` // modified in place: `before` must still be the stored document
        tx.replace('items', a)
        tx.delete('items', (await tx.get<Item>('items', 'b'))!)
      })
      t.equal(runs, 2)
      t.equal(
        events.length,
        3,
        'one event for the interfering commit, one for the retried one, none for the attempt that failed',
      )
      t.same(events[1], [
        {
          collection: 'items',
          id: 'b',
          before: { id: 'b', version: 1, name: 'b' },
          after: { id: 'b', version: 2, name: 'b2' },
        },
        {
          collection: 'items',
          id: 'a',
          before: { id: 'a', version: 1, name: 'a' },
          after: { id: 'a', version: 2, name: 'a2' },
        },
      ])
      t.same(events[2], [
        {
          collection: 'items',
          id: 'a',
          before: { id: 'a', version: 2, name: 'a2' },
          after: { id: 'a', version: 3, name: 'a2!' },
        },
        { collection: 'items', id: 'b', before: { id: 'b', version: 2, name: 'b2' }, after: null },
      ])

      await rejection(
        t,
        insert<Item>(store, 'items', [
          { id: 'c', name: 'c' },
          { id: 'a', name: 'dup' },
        ]),
      )
      await store.transaction(async (tx) => {
        await tx.find('items', {})
      })
      t.equal(events.length, 3, 'no event for a failed commit nor for a read-only transaction')

      unsubscribe()
      await insert<Item>(store, 'items', [{ id: 'd', name: 'd' }])
      t.equal(events.length, 3, 'no event after unsubscribing')
    })

    t.test('scan returns every document of a large collection', async (t) => {
      const { store } = await setup(t, factory)
      const total = 2345
      for (let start = 0; start < total; start += 500) {
        await insert<Item>(
          store,
          'items',
          Array.from({ length: Math.min(500, total - start) }, (_, i) => ({
            id: `item-${String(start + i).padStart(5, '0')}`,
            name: `n${start + i}`,
          })),
        )
      }
      await insert<Member>(store, 'members', [{ id: 'm', stageId: 's', seat: 0 }])
      const seen = new Map<string, StoredDoc>()
      let count = 0
      for await (const doc of store.scan<Item>('items')) {
        count++
        seen.set(doc.id, doc)
      }
      t.equal(count, total, 'as many documents as stored')
      t.equal(seen.size, total, 'each document once')
      t.same(seen.get('item-01234'), { id: 'item-01234', version: 1, name: 'n1234' })
      t.same(seen.get(`item-${String(total - 1).padStart(5, '0')}`), {
        id: `item-${String(total - 1).padStart(5, '0')}`,
        version: 1,
        name: `n${total - 1}`,
      })
      const scannedMembers: StoredDoc[] = []
      for await (const doc of store.scan('members')) scannedMembers.push(doc)
      t.same(scannedMembers, [{ id: 'm', version: 1, stageId: 's', seat: 0 }])
    })

    t.test('purgeExpired deletes the documents whose numeric field is below the limit', async (t) => {
      const { store } = await setup(t, factory)
      await insert<Item>(store, 'items', [
        { id: 'a', name: 'a', rank: 1 },
        { id: 'b', name: 'b', rank: 4.5 },
        { id: 'c', name: 'c', rank: 5 },
        { id: 'd', name: 'd', rank: 70 },
        { id: 'e', name: 'e' },
        { id: 'f', name: 'f', group: null },
      ])
      t.equal(await store.backend.purgeExpired('items', 'rank', 5), 2)
      t.same(ids(await store.find('items', {})), ['c', 'd', 'e', 'f'])
      t.equal(await store.backend.purgeExpired('items', 'rank', 5), 0)
      t.equal(await store.backend.purgeExpired('items', 'rank', 1000), 2)
      t.same(ids(await store.find('items', {})), ['e', 'f'], 'documents without the field are kept')
    })

    t.test('page: highest id first, within id bounds, with equality and array-element filters', async (t) => {
      const { store } = await setup(t, factory)
      await store.ensureCollection(logs)
      await insert<LogEntry>(
        store,
        'logs',
        Array.from({ length: 12 }, (_, i) => ({
          id: `e${String(i).padStart(2, '0')}`,
          who: i % 3 === 0 ? 'ann' : 'bob',
          tags: i % 2 === 0 ? ['even', `t${i}`] : [`t${i}`],
        })),
      )
      t.same(ids(await store.page('logs', { filter: {}, limit: 3 })), ['e11', 'e10', 'e09'])
      t.same(ids(await store.page('logs', { filter: {}, idBelow: 'e09', limit: 3 })), ['e08', 'e07', 'e06'])
      t.same(
        ids(await store.page('logs', { filter: {}, idFrom: 'e03', idBelow: 'e06', limit: 10 })),
        ['e05', 'e04', 'e03'],
        'idFrom is inclusive, idBelow exclusive',
      )
      t.same(ids(await store.page('logs', { filter: { who: 'ann' }, limit: 10 })), [
        'e09',
        'e06',
        'e03',
        'e00',
      ])
      t.same(
        ids(await store.page('logs', { filter: {}, contains: { field: 'tags', value: 'even' }, limit: 4 })),
        ['e10', 'e08', 'e06', 'e04'],
      )
      t.same(
        ids(
          await store.page('logs', {
            filter: { who: 'ann' },
            contains: { field: 'tags', value: 'even' },
            idBelow: 'e06',
            limit: 10,
          }),
        ),
        ['e00'],
        'every condition at once',
      )
      t.same(await store.page('logs', { filter: {}, contains: { field: 'tags', value: 't' }, limit: 10 }), [])
      t.same(await store.page('logs', { filter: { who: 'nobody' }, limit: 10 }), [])
    })

    t.test('committed data survives closing and reopening', async (t) => {
      const harness = await setup(t, factory)
      if (!harness.reopen) {
        t.plan(0, 'this backend cannot be reopened')
        return
      }
      await insert<Item>(harness.store, 'items', [{ id: 'a', name: 'a', kind: 'x' }])
      await insert<Member>(harness.store, 'members', [{ id: 'm', stageId: 's', seat: 1 }])
      await harness.store.transaction(async (tx) => {
        const a = (await tx.get<Item>('items', 'a'))!
        tx.replace('items', { ...a, name: 'a2' })
      })
      const store = await harness.reopen()
      await store.ensureCollection(items)
      await store.ensureCollection(members)
      t.same(await store.get('items', 'a'), { id: 'a', version: 2, name: 'a2', kind: 'x' })
      t.same(ids(await store.find('items', { kind: 'x' })), ['a'])
      const err = await rejection(t, insert<Member>(store, 'members', [{ id: 'm2', stageId: 's', seat: 1 }]))
      t.ok(err instanceof UniqueViolationError, 'constraints still hold after reopening')
    })

    t.test('ping works until the store is closed', async (t) => {
      const { store } = await setup(t, factory)
      await t.resolves(store.ping())
      await store.close()
      await t.rejects(store.ping())
      await t.rejects(insert<Item>(store, 'items', [{ id: 'a', name: 'a' }]))
    })
  })
}

import { MongoClient } from 'mongodb'
import type { MqttClient } from 'mqtt'
import t from 'tap'
import { roomy } from '../../helpers/actors.ts'
import { Requester, type Response, type TestHub, startTestHub, waitUntil } from '../../helpers/hub.ts'
import { freshMongoUrl, mongoMissing } from '../../helpers/mongo.ts'
import { redisMissing, startRedis } from '../../helpers/redis.ts'

/**
 * A rolling restart (docs/cluster.md): three processes are restarted one after the other while three
 * clients keep sending requests. A client whose process goes away reconnects to the next process (as
 * behind a TCP load balancer) and repeats its unanswered request with the same id. Nothing
 * acknowledged may be lost, nothing may apply twice, and afterwards every process serves retained
 * state equal to the store.
 */
t.test(
  'a rolling restart of three processes under request load loses no acknowledged request, applies none twice, and ends with retained state equal to the store on every process',
  { skip: redisMissing || mongoMissing },
  async (t) => {
    const redis = await startRedis(t)
    const mongoUrl = freshMongoUrl(t)
    const env = { ...roomy, QUOTA_STAGES_PER_USER: '1000', MONGO_URL: mongoUrl, REDIS_URL: redis.url }
    const hubs: TestHub[] = []
    for (const id of ['p1', 'p2', 'p3']) hubs.push(await startTestHub(t, { ...env, HUB_ID: id }))
    const restarting = new Set<TestHub>()

    const users = ['ann', 'bo', 'cy']
    const acknowledged = new Map<string, string[]>(users.map((u) => [u, []]))
    const retried = { count: 0 }
    let running = true

    /** One client's load: requests one after the other, following the processes like a load balancer. */
    const load = async (user: string, first: number): Promise<void> => {
      let at = first
      let client: MqttClient | undefined
      let requester: Requester | undefined
      const reconnect = async (): Promise<void> => {
        for (;;) {
          const hub = hubs[at % hubs.length]!
          at++
          if (restarting.has(hub)) continue
          try {
            client = await hub.connect({
              clientId: `${user}-app`,
              token: hub.token({ sub: user, name: user }),
            })
            requester = new Requester(client)
            return
          } catch {
            await new Promise((resolve) => setTimeout(resolve, 50))
          }
        }
      }
      await reconnect()
      for (let n = 0; running; n++) {
        const name = `${user}-${n}`
        const id = `create-${n}`
        for (let attempt = 0; ; attempt++) {
          let response: Response | undefined
          if (client?.connected) {
            // MQTT.js holds a QoS 1 publish of a closed connection for a reconnect that never comes
            let timer: NodeJS.Timeout | undefined
            const gaveUp = new Promise<undefined>(
              (resolve) => (timer = setTimeout(() => resolve(undefined), 6000)),
            )
            response = await Promise.race([
              requester!.request('stage.create', { name }, id).catch(() => undefined),
              gaveUp,
            ])
            clearTimeout(timer)
          }
          // no answer: the process went away (or the answer did); repeat the same id elsewhere
          if (response?.ok) break
          if (response && !response.ok) throw new Error(`${name} refused: ${JSON.stringify(response.error)}`)
          retried.count++
          client?.end(true)
          await reconnect()
        }
        acknowledged.get(user)!.push(name)
      }
      client?.end(true)
    }
    const loads = users.map((user, i) => load(user, i))

    const mongo = new MongoClient(mongoUrl)
    t.teardown(() => mongo.close())
    const stages = mongo.db().collection<{ _id: string; name: string; createdBy?: string }>('stages')
    const total = () => [...acknowledged.values()].reduce((sum, names) => sum + names.length, 0)

    await waitUntil(() => total() >= 15, 'the load is running', 20_000)
    for (const hub of hubs) {
      restarting.add(hub)
      // the connections on it close; their clients go elsewhere
      await hub.restart()
      restarting.delete(hub)
      const before = total()
      await waitUntil(
        () => total() >= before + 10,
        `requests go on after ${hub.config.cluster!.processId} restarted`,
        30_000,
      )
    }
    running = false
    await Promise.all(loads)
    t.ok(retried.count > 0, `clients repeated ${retried.count} unanswered requests through another process`)

    for (const user of users) {
      const names = acknowledged.get(user)!
      const stored = await stages.find({ name: { $regex: `^${user}-` } }).toArray()
      const counts = new Map<string, number>()
      for (const stage of stored) counts.set(stage.name, (counts.get(stage.name) ?? 0) + 1)
      t.same(
        names.filter((name) => counts.get(name) !== 1),
        [],
        `every one of ${user}'s ${names.length} acknowledged stages is in the store exactly once`,
      )
      t.equal(stored.length, names.length, `and ${user} has no stage that was not acknowledged`)
    }

    // every process serves the store's state: each user's stage summaries, retained on each process
    const storedIds = async (user: string) =>
      new Set((await stages.find({ name: { $regex: `^${user}-` } }).toArray()).map((s) => s._id))
    for (const hub of hubs) {
      for (const user of users) {
        const expected = await storedIds(user)
        const client = await hub.connect({
          clientId: `${user}-check`,
          token: hub.token({ sub: user, name: user }),
        })
        const seen = new Set<string>()
        client.on('message', (topic, payload) => {
          const id = topic.split('/')[3]!
          if (payload.length === 0) seen.delete(id)
          else seen.add(id)
        })
        await client.subscribeAsync(`users/${user}/stages/+`, { qos: 1 })
        await waitUntil(
          () => seen.size >= expected.size,
          `${user}'s summaries on ${hub.config.cluster!.processId}`,
          10_000,
        )
        t.same(
          [...seen].sort(),
          [...expected].sort(),
          `${hub.config.cluster!.processId} serves ${user}'s ${expected.size} stages as the store has them`,
        )
        await client.endAsync(true)
      }
    }
  },
)

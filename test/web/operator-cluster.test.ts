import t from 'tap'
import { launchChromium, withoutChromium } from '../helpers/chromium.ts'
import { startTestHub } from '../helpers/hub.ts'
import { freshMongoUrl, mongoMissing } from '../helpers/mongo.ts'
import { redisMissing, startRedis } from '../helpers/redis.ts'
import { builtWebApp, DESKTOP, shoot } from '../helpers/web.ts'

t.test(
  'in Chromium: with two hub processes the operator page lists the live processes, the one it is on and which coordinates; a stopped process leaves the list',
  { skip: withoutChromium || redisMissing || mongoMissing },
  async (t) => {
    const redis = await startRedis(t)
    const env = { MONGO_URL: freshMongoUrl(t), REDIS_URL: redis.url }
    const p1 = await startTestHub(t, { ...env, HUB_ID: 'hub-1', WEB_DIR: await builtWebApp(t) })
    const p2 = await startTestHub(t, { ...env, HUB_ID: 'hub-2' })

    const browser = await launchChromium(t)
    const page = await browser.newPage({ viewport: DESKTOP })
    const problems: string[] = []
    page.on('pageerror', (err) => problems.push(err.message))
    await page.goto(`${p1.httpUrl}/#/operator`)
    await page.getByLabel('Admin token').fill(p1.token({ sub: 'ops', role: 'admin' }))
    await page.getByLabel('Admin token').press('Enter')
    await page.getByTestId('operator-connection').getByText('Online').waitFor()
    const processes = page.getByTestId('hub-processes')
    await processes.waitFor()
    t.equal(
      (await processes.textContent())!.replace(/\s+/g, ' ').trim(),
      '2 live processes: hub-1, hub-2 · this page is on hub-1 (the coordinator)',
      'both processes, this one, and that it coordinates (it started first)',
    )
    await shoot(t, page, 'operator-cluster')

    // a clean stop deletes its liveness key: gone from the list at the next refresh (every 5 s)
    await p2.hub.close()
    await page
      .getByTestId('hub-processes')
      .getByText('1 live process: hub-1', { exact: false })
      .waitFor({ timeout: 10_000 })
    t.pass('the stopped process leaves the list')
    t.same(problems, [], 'no page errors')
  },
)

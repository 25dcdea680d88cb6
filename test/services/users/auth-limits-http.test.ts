import { request } from 'node:http'
import t, { type Test } from 'tap'
import { type TestHub, sleep, startTestHub } from '../../helpers/hub.ts'

interface Reply {
  status: number
  retryAfter: string | undefined
  body: { error?: { code: string; message: string }; userId?: string }
}

/**
 * POST over a new connection from the local address `from` (any 127.x.y.z reaches the hub on Linux),
 * so the hub sees requests from different remote addresses.
 */
function post(
  th: TestHub,
  path: string,
  body: unknown,
  from: string,
  headers: Record<string, string> = {},
): Promise<Reply> {
  const url = new URL(path, th.httpUrl)
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        localAddress: from,
        agent: false,
        headers: { 'content-type': 'application/json', ...headers },
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('end', () =>
          resolve({
            status: res.statusCode!,
            retryAfter: res.headers['retry-after'],
            body: JSON.parse(Buffer.concat(chunks).toString()) as Reply['body'],
          }),
        )
      },
    )
    req.on('error', reject)
    req.end(JSON.stringify(body))
  })
}

const OWNER = '127.0.0.3'
const ATTACKER = '127.0.0.2'
const owner = { email: 'owner@example.org', password: 'the owner passphrase', name: 'Owner' }

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!

/** The owner logs in `n` times one after another: each latency, every one of them a success. */
async function ownerLogins(t: Test, th: TestHub, n: number): Promise<number[]> {
  const latencies: number[] = []
  for (let i = 0; i < n; i++) {
    const started = performance.now()
    const reply = await post(th, '/auth/login', { email: owner.email, password: owner.password }, OWNER)
    latencies.push(performance.now() - started)
    if (reply.status !== 200)
      t.fail(`the owner's log-in was refused: ${reply.status} ${JSON.stringify(reply.body)}`)
  }
  return latencies
}

/**
 * Sign-ups from `from` until `done()`: `workers` in a row each, every worker at most one per 100 ms
 * (10 workers: up to 100/s, bounded to 2,000 in all); the replies.
 */
async function signupFlood(
  th: TestHub,
  from: string,
  workers: number,
  done: () => boolean,
): Promise<Reply[]> {
  const replies: Reply[] = []
  let next = 0
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (!done() && next < 2000) {
        const i = next++
        const started = performance.now()
        replies.push(
          await post(
            th,
            '/auth/signup',
            { email: `bot${i}@example.org`, password: 'bot password 123', name: `Bot ${i}` },
            from,
          ),
        )
        await sleep(Math.max(0, 100 - (performance.now() - started)))
      }
    }),
  )
  return replies
}

/** The owner's log-ins while a sign-up flood runs; both results. */
async function loginsDuringFlood(
  t: Test,
  th: TestHub,
  workers: number,
): Promise<{ during: number[]; replies: Reply[] }> {
  let done = false
  const flooding = signupFlood(th, ATTACKER, workers, () => done)
  await sleep(200)
  const during = await ownerLogins(t, th, 10)
  done = true
  return { during, replies: await flooding }
}

const statusCounts = (replies: Reply[]) => {
  const counts: Record<number, number> = {}
  for (const r of replies) counts[r.status] = (counts[r.status] ?? 0) + 1
  return counts
}

t.test(
  'a sign-up flood from one address is refused with 429 and Retry-After while log-ins from another address stay fast',
  async (t) => {
    // a hash costs ~40 ms here: unchecked sign-ups would occupy every hashing thread for seconds
    const th = await startTestHub(t, { PASSWORD_HASH_COST: '12' })
    t.equal((await post(th, '/auth/signup', owner, OWNER)).status, 201)
    const control = median(await ownerLogins(t, th, 5))

    const { during, replies } = await loginsDuringFlood(t, th, 10)

    t.ok(
      median(during) <= Math.max(4 * control, control + 250),
      `log-ins stay fast: median ${median(during).toFixed(0)} ms during the flood, ${control.toFixed(0)} ms before`,
    )
    const counts = statusCounts(replies)
    t.equal(
      counts[201],
      th.config.signupLimits.perAddress.burst,
      `the address's burst was served: ${JSON.stringify(counts)}`,
    )
    const refused = replies.filter((r) => r.status === 429)
    t.equal(refused.length, replies.length - counts[201]!, 'everything else was refused with 429')
    t.ok(
      refused.every((r) => r.body.error?.code === 'rate_limited' && Number(r.retryAfter) >= 1),
      'each refusal is rate_limited and carries Retry-After in seconds',
    )
    t.match(refused[0]?.body.error?.message, /sign-ups from your address: retry in \d+ s/)
  },
)

t.test(
  'sign-ups beyond the hashing queue get 503 unavailable with Retry-After, and log-ins are hashed first',
  async (t) => {
    const th = await startTestHub(t, {
      PASSWORD_HASH_COST: '12',
      // no sign-up limit: the hashing pool alone stands between the flood and the log-ins
      SIGNUP_PER_ADDRESS_BURST: '100000',
      SIGNUP_BURST: '100000',
      PASSWORD_HASH_CONCURRENCY: '1',
      PASSWORD_HASH_QUEUE: '8',
    })
    t.equal((await post(th, '/auth/signup', owner, OWNER)).status, 201)
    const control = median(await ownerLogins(t, th, 5))

    const { during, replies } = await loginsDuringFlood(t, th, 10)

    t.ok(
      median(during) <= Math.max(4 * control, control + 250),
      `log-ins stay fast: median ${median(during).toFixed(0)} ms during the flood, ${control.toFixed(0)} ms before`,
    )
    const counts = statusCounts(replies)
    t.same(Object.keys(counts).sort(), ['201', '503'], `only created or busy: ${JSON.stringify(counts)}`)
    const busy = replies.filter((r) => r.status === 503)
    t.ok(
      busy.every((r) => r.body.error?.code === 'unavailable' && Number(r.retryAfter) >= 1),
      'each busy reply is unavailable and carries Retry-After in seconds',
    )
    t.match(busy[0]?.body.error?.message, /busy hashing passwords: retry in \d+ s/)
  },
)

t.test(
  'wrong passwords from an attacker address cannot lock the owner out; guessing from many addresses only slows',
  async (t) => {
    const th = await startTestHub(t, { LOGIN_SLOWDOWN_MS: '500' })
    t.equal((await post(th, '/auth/signup', owner, OWNER)).status, 201)
    const guess = (i: number, from: string) =>
      post(th, '/auth/login', { email: owner.email, password: `guess number ${i}` }, from)

    // concurrent, so the throttle must count guesses before it checks them
    const guesses = await Promise.all(Array.from({ length: 30 }, (_, i) => guess(i, ATTACKER)))
    const { perAddressAndEmail } = th.config.loginThrottle
    t.same(statusCounts(guesses), { 401: perAddressAndEmail, 429: 30 - perAddressAndEmail })
    const refused = guesses.find((r) => r.status === 429)!
    t.equal(refused.body.error?.code, 'rate_limited')
    t.ok(Number(refused.retryAfter) >= 1, `Retry-After: ${refused.retryAfter}`)
    t.match(refused.body.error?.message, /failed log-ins from your address: retry in \d+ s/)
    t.equal(
      (await post(th, '/auth/login', { email: owner.email, password: owner.password }, ATTACKER)).status,
      429,
      'the guessing address is refused even with the right password',
    )

    const ownerLogin = await post(th, '/auth/login', { email: owner.email, password: owner.password }, OWNER)
    t.equal(ownerLogin.status, 200, 'the owner logs in from their own address')

    // 20 more addresses, 3 guesses each: more failures on the e-mail than it tolerates
    const spread = await Promise.all(
      Array.from({ length: 60 }, (_, i) => guess(100 + i, `127.0.1.${10 + (i % 20)}`)),
    )
    t.same(statusCounts(spread), { 401: 60 }, 'each of these addresses is within its own budget')
    const started = performance.now()
    const slowed = await post(th, '/auth/login', { email: owner.email, password: owner.password }, OWNER)
    const waited = performance.now() - started
    t.equal(slowed.status, 200, 'the owner still logs in while the e-mail is guessed from everywhere')
    t.ok(waited >= 500, `slowed down, not refused (${waited.toFixed(0)} ms)`)

    const metrics = await (await fetch(`${th.httpUrl}/metrics`)).text()
    t.match(
      metrics,
      /^stagehub_http_refusals_total\{route="\/auth\/login",code="rate_limited"\} 26$/m,
      'operators see the throttled attempts in /metrics',
    )
    t.match(metrics, /^stagehub_http_refusals_total\{route="\/auth\/login",code="unauthorized"\} 65$/m)
  },
)

t.test(
  'X-Forwarded-For names the client only from a trusted proxy, so guessers cannot pick their address',
  async (t) => {
    const direct = await startTestHub(t)
    t.equal((await post(direct, '/auth/signup', owner, OWNER)).status, 201)
    const forged = []
    for (let i = 0; i < 7; i++) {
      const headers = { 'x-forwarded-for': `203.0.113.${i}` }
      forged.push(
        (await post(direct, '/auth/login', { email: owner.email, password: `guess ${i}` }, ATTACKER, headers))
          .status,
      )
    }
    t.same(forged, [401, 401, 401, 401, 401, 429, 429], 'a forged header changes nothing')

    const proxied = await startTestHub(t, { TRUST_PROXY: '127.0.0.5, 10.0.0.0/8' })
    const PROXY = '127.0.0.5'
    t.equal(
      (await post(proxied, '/auth/signup', owner, PROXY, { 'x-forwarded-for': '198.51.100.4' })).status,
      201,
    )
    const viaProxy = []
    for (let i = 0; i < 7; i++) {
      const headers = { 'x-forwarded-for': '203.0.113.66' }
      viaProxy.push(
        (await post(proxied, '/auth/login', { email: owner.email, password: `guess ${i}` }, PROXY, headers))
          .status,
      )
    }
    t.same(viaProxy, [401, 401, 401, 401, 401, 429, 429], 'the guesser behind the proxy is refused')
    const ownerLogin = await post(
      proxied,
      '/auth/login',
      { email: owner.email, password: owner.password },
      PROXY,
      { 'x-forwarded-for': '198.51.100.4' },
    )
    t.equal(ownerLogin.status, 200, 'the owner behind the same proxy is not')
  },
)

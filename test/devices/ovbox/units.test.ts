import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type { SoundCard } from '../../../schemas/actions/device.ts'
import { commandFailure, runCommand } from '../../../devices/ovbox/command.ts'
import {
  SOUND_CARD_DEFAULTS,
  parseAsoundCards,
  parseStream,
  soundCardsToSet,
} from '../../../devices/ovbox/sound-cards.ts'
import { FileStateStore } from '../../../devices/ovbox/state.ts'
import { LinuxProbe, type OsFacts, parseNetDev } from '../../../devices/ovbox/system-probe.ts'
import { CARDS, USB_STREAM } from './fixture.ts'

/** The agent's pure parts: parsers, commands, state file, probe. */

t.test('/proc/asound/cards and stream0 parse into sound cards', async (t) => {
  t.same(parseAsoundCards(CARDS), [
    { name: 'hw:0', label: 'bcm2835 Headphones', ...SOUND_CARD_DEFAULTS },
    { name: 'hw:1', label: 'USB Audio Device', ...SOUND_CARD_DEFAULTS },
  ])
  t.same(parseAsoundCards('--- no soundcards ---\n'), [])
  t.same(parseStream(USB_STREAM), { numOutputChannels: 2, numInputChannels: 1, sampleRates: [44100, 48000] })
  t.same(
    parseStream('Capture:\n  Channels: 4\n  Rates: 96000\n'),
    { numInputChannels: 4, numOutputChannels: 0, sampleRates: [96000] },
    'a capture-only card has no outputs',
  )
})

t.test(
  'sound cards to set: new ones, and detected facts that changed, keeping the owner’s settings',
  async (t) => {
    const usb: SoundCard = { name: 'hw:1', label: 'USB', ...SOUND_CARD_DEFAULTS }
    t.same(soundCardsToSet([usb], []), [usb], 'a new card')
    t.same(soundCardsToSet([usb], [usb]), [], 'nothing when equal')
    const tuned = { ...usb, driver: 'jack' as const, periodSize: 64, sampleRate: 44100, isDefault: true }
    t.same(soundCardsToSet([usb], [tuned]), [], 'the owner’s driver, rate and period size are not reverted')
    t.same(
      soundCardsToSet([{ ...usb, numInputChannels: 8 }], [tuned]),
      [{ ...tuned, numInputChannels: 8 }],
      'more inputs detected: only that changes',
    )
    t.same(soundCardsToSet([], [usb]), [], 'a card that went away is not removed')
  },
)

t.test('commands run without a shell, with a timeout and the tail of their error output', async (t) => {
  t.equal((await runCommand(['true'], { timeoutMs: 5000 })).code, 0)
  const failed = await runCommand(['sh', '-c', 'echo one >&2; echo two >&2; exit 4'], { timeoutMs: 5000 })
  t.equal(commandFailure('restart', failed, 5000), 'restart exited with code 4: one two')
  const slow = await runCommand(['sleep', '5'], { timeoutMs: 100 })
  t.match(commandFailure('restart', slow, 100), /restart timed out after 0.1 s/)
  const missing = await runCommand(['/nonexistent/ov-client-restart'], { timeoutMs: 5000 })
  t.match(commandFailure('restart', missing, 5000), /restart could not start: .*ENOENT/)
  const literal = await runCommand(['echo', '$(touch /tmp/should-not-exist)'], { timeoutMs: 5000 })
  t.equal(literal.code, 0, 'arguments are not interpreted by a shell')
  const noisy = await runCommand(['sh', '-c', 'head -c 20000 /dev/zero | tr "\\0" x >&2; exit 1'], {
    timeoutMs: 5000,
  })
  t.ok(commandFailure('install', noisy, 5000)!.length <= 500, 'the reason fits the report (500 characters)')
})

t.test('the state file survives a restart; a corrupt one is set aside', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ovbox-state-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const first = FileStateStore.open(dir)
  t.ok(first.read().session > 1_000_000_000, 'a fresh state starts the sessions at the wall clock')
  await first.update({ session: 7, appliedRevision: '0123456789abcdef' })
  await first.update({ firmwareVersion: '1.0.0', appliedRevision: undefined })
  t.same(FileStateStore.open(dir).read(), { session: 7, firmwareVersion: '1.0.0' })
  writeFileSync(join(dir, 'state.json'), '{"session": 9')
  const recovered = FileStateStore.open(dir)
  t.match(recovered.problem, /was corrupt/)
  t.ok(recovered.read().session > 1_000_000_000, 'a fresh start, sessions from the wall clock')
  t.equal(readFileSync(join(dir, 'state.json.corrupt'), 'utf8'), '{"session": 9', 'the corrupt file is kept')
})

t.test(
  'the Linux probe: load per core, temperature, memory, ip, bandwidth from counter deltas',
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'ovbox-probe-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const netDev = (rx: number, tx: number) =>
      `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 999999   10    0    0    0     0          0         0  999999   10    0    0    0     0       0          0
  eth0: ${rx}   100    0    0    0     0          0         0  ${tx}   100    0    0    0     0       0          0
`
    writeFileSync(join(dir, 'net'), netDev(1000, 500))
    writeFileSync(join(dir, 'temp'), '51234\n')
    let now = 10_000
    const facts: OsFacts = {
      loadavg: () => [2, 1, 1],
      cpus: () => new Array(4).fill({}) as ReturnType<OsFacts['cpus']>,
      totalmem: () => 1000,
      freemem: () => 400,
      networkInterfaces: () => ({
        lo: [{ address: '127.0.0.1', family: 'IPv4', internal: true } as never],
        eth0: [{ address: '192.168.1.20', family: 'IPv4', internal: false } as never],
      }),
    }
    const probe = new LinuxProbe({
      version: '9.9.9',
      thermalZonePath: join(dir, 'temp'),
      netDevPath: join(dir, 'net'),
      os: facts,
      now: () => now,
    })
    t.same(await probe.sample(), {
      cpuLoad: 0.5,
      memoryUsed: 600,
      memoryTotal: 1000,
      version: '9.9.9',
      temperature: 51.234,
      localIp: '192.168.1.20',
    })
    now += 2000
    writeFileSync(join(dir, 'net'), netDev(5000, 2500))
    t.match(
      await probe.sample(),
      { bandwidthRx: 2000, bandwidthTx: 1000 },
      'bytes per second, loopback excluded',
    )
    t.same(parseNetDev(netDev(1, 2)), { rx: 1, tx: 2 })

    const bare = new LinuxProbe({
      version: '1',
      thermalZonePath: join(dir, 'none'),
      netDevPath: join(dir, 'none'),
      os: facts,
    })
    const status = await bare.sample()
    t.notOk('temperature' in status || 'bandwidthRx' in status, 'unreadable values are left out')
  },
)

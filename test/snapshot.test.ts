// test/snapshot.test.ts — snapshots are paced by the one who asks (issue 10, "amplification").
// Before: a kv OPEN framed a whole namespace in one go and a peers OPEN put every member into one
// OPENED, so a few connections that OPEN and never read stalled every client of the process (and,
// with Redis, of the other processes, while Redis grew by the replies it held). Now a snapshot goes
// a page at a time, yields to other connections between pages and waits while the asker does not
// read. Here, on a big namespace, attackers OPEN many kv and peers streams without reading while a
// victim's echo round trips are timed (on the same process and, with Redis, on another one);
// Redis's used_memory is sampled; and a late joiner still ends with the exact state, with changes
// made during its paged snapshot.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { Duplex } from 'node:stream'
import WebSocket from 'ws'
import { SignalChannel, type Channel, type WebSocketConstructor } from 'signalyard'
import { createServer, redisBroker, type Broker, type Yard } from 'signalyard/server'
import { FrameType } from '../src/protocol/frames.js'
import { rawClient, socketOf, type RawClient } from './raw-client.js'
import { next, startYard, TEST_BROKER, until, within } from './helpers.js'
import { startRedis, type TestRedis } from './redis.js'

/** The bound on a victim's echo round trip while the attack runs (today's code: seconds). */
const RTT_BOUND = 500
/** Victim probes: one every this many ms (well under the server's rate limit). */
const PROBE_EVERY = 10
const ATTACKERS = 10
const OPENS_PER_ATTACKER = 10
const KEYS = 3000
const VALUE = 8 * 1024
const MEMBERS = 100
const META = 60 * 1024
const PEER_OPENS = 20
const KEY = 'k'.repeat(24)

let redis: TestRedis | null = null
test.after(async () => { await redis?.stop() })

interface Yards { a: Yard, b: Yard, close: () => Promise<void> }

/** One yard (memory), or two processes' worth of yards on one Redis (the victim may sit on either). */
async function yards (): Promise<Yards> {
  const limits = { kv: { maxBytes: 64 * 1024 * 1024, maxOwnedBytes: 64 * 1024 * 1024 }, peers: { maxMeta: 64 * 1024 } }
  if (TEST_BROKER !== 'redis') {
    const a = await startYard({ limits })
    return { a, b: a, close: () => a.close() }
  }
  redis ??= await startRedis()
  const brokers: Broker[] = [0, 1].map(() => redisBroker({ url: (redis as TestRedis).url, prefix: 'snap:' }))
  const [a, b] = await Promise.all(brokers.map((broker) => createServer({ port: 0, host: '127.0.0.1', broker, limits })))
  return {
    a,
    b,
    close: async () => {
      await a.close()
      await b.close()
      for (const broker of brokers) await broker.close()
      await redis?.command('FLUSHALL')
    }
  }
}

/** Fill `ns` with KEYS keys of VALUE bytes through one raw connection, in batches. */
async function fillKv (yard: Yard, ns: string, clients: RawClient[]): Promise<void> {
  const c = await rawClient(yard, clients)
  assert.is((await c.open(1, { ep: 'kv', ns })).type, FrameType.Opened)
  const value = new Uint8Array(VALUE).fill(1)
  for (let start = 0; start < KEYS; start += 200) {
    const end = Math.min(KEYS, start + 200)
    for (let i = start; i < end; i++) c.send(FrameType.Request, 1, { op: 'set', req: i, key: `key-${i}` }, value)
    for (let i = start; i < end; i++) {
      const answer = await c.take((f) => f.meta?.req === i, 10_000, `reply ${i}`)
      assert.is(answer.type, FrameType.Reply, JSON.stringify(answer.meta))
    }
    c.frames.length = 0
  }
  c.ws.terminate()
}

/** Echo round trips on `yard`, one after another from when `start` resolves until `stop` does: the longest one. */
async function victim (yard: Yard, name: string, ready: (p: Promise<void>) => void, start: Promise<void>, stop: Promise<void>): Promise<{ max: number, count: number }> {
  const ch = SignalChannel('victim', { url: `${yard.url}?victim=${name}` })
  try {
    const echo = ch.echo()
    const opened = echo.ready()
    ready(opened)
    await opened
    await start
    let max = 0
    let count = 0
    let done = false
    void stop.then(() => { done = true })
    // A probe is due PROBE_EVERY ms after the last answer. Server and victim share this process,
    // so a stalled server also delays the victim's own timer: the round trip is counted from when
    // the probe was due (what a victim in another process would see), not from when it went out.
    let due = performance.now()
    while (!done) {
      const n = count
      await within(new Promise<void>((resolve) => {
        const on = (data: unknown): void => { if (data === n) { echo.off('data', on); resolve() } }
        echo.on('data', on)
        echo.send(n)
      }), 20_000, 'echo round trip')
      const answered = performance.now()
      max = Math.max(max, answered - due)
      count++
      due = answered + PROBE_EVERY
      await new Promise((resolve) => setTimeout(resolve, PROBE_EVERY))
    }
    return { max, count }
  } finally {
    ch.close()
  }
}

/** Redis used_memory (bytes). */
async function usedMemory (): Promise<number> {
  const info = await (redis as TestRedis).command('INFO', 'memory')
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? NaN)
}

/** Sample used_memory until `stop` resolves; the highest. */
async function peakMemory (stop: Promise<void>): Promise<number> {
  let peak = 0
  let done = false
  void stop.then(() => { done = true })
  while (!done) {
    peak = Math.max(peak, await usedMemory())
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return peak
}

/** MEMBERS presence members with META bytes of meta each, on one raw connection that reads. */
async function fillPeers (yard: Yard, ns: string, clients: RawClient[]): Promise<RawClient> {
  const c = await rawClient(yard, clients)
  for (let i = 1; i <= MEMBERS; i++) {
    c.send(FrameType.Open, i, { ep: 'peers', ns, id: `member-${i}`, key: KEY, meta: { n: i, pad: 'm'.repeat(META) } })
    const answer = await c.take((f) => f.id === i && (f.type === FrameType.Opened || f.type === FrameType.Closed), 10_000, `member ${i}`)
    assert.is(answer.type, FrameType.Opened, JSON.stringify(answer.meta))
    c.frames.length = 0
  }
  return c
}

/** Attackers: connections that stop reading, then OPEN `open(sid)` streams. */
async function attack (yard: Yard, clients: RawClient[], open: (attacker: number, sid: number) => object, opens = OPENS_PER_ATTACKER): Promise<RawClient[]> {
  const attackers: RawClient[] = []
  for (let i = 0; i < ATTACKERS; i++) {
    const c = await rawClient(yard, clients)
    socketOf(c.ws).pause()
    attackers.push(c)
  }
  for (const [i, c] of attackers.entries()) {
    // All of an attacker's OPENs in one TCP write, as a hostile client would send them.
    const socket = socketOf(c.ws) as unknown as { cork: () => void, uncork: () => void }
    socket.cork()
    for (let sid = 1; sid <= opens; sid++) c.send(FrameType.Open, sid, open(i, sid))
    socket.uncork()
  }
  return attackers
}

/**
 * Connect the victims (one on each process), then run `attack` and time the victims' round trips
 * for `ms` from its start: the longest round trip on each side, and Redis's peak used_memory.
 */
async function measure (y: Yards, ms: number, attack: () => Promise<unknown>): Promise<{ local: number, remote: number, peak: number }> {
  let end!: () => void
  const stop = new Promise<void>((resolve) => { end = resolve })
  let go!: () => void
  const start = new Promise<void>((resolve) => { go = resolve })
  const readies: Array<Promise<void>> = []
  const results = Promise.all([
    victim(y.a, 'local', (p) => readies.push(p), start, stop),
    y.b !== y.a ? victim(y.b, 'remote', (p) => readies.push(p), start, stop) : Promise.resolve({ max: 0, count: 0 }),
    start.then(() => redis !== null && TEST_BROKER === 'redis' ? peakMemory(stop) : 0)
  ])
  await Promise.all(readies)
  go()
  const timer = setTimeout(end, ms)
  await attack()
  const [local, remote, peak] = await results
  clearTimeout(timer)
  return { local: local.max, remote: remote.max, peak }
}

test('kv: attackers OPENing a big namespace without reading do not stall anyone; Redis stays small; a late joiner gets the exact state', async () => {
  const y = await yards()
  const clients: RawClient[] = []
  const channels: Channel[] = []
  try {
    await fillKv(y.a, 'big', clients)
    const before = TEST_BROKER === 'redis' ? await usedMemory() : 0
    const { local, remote, peak } = await measure(y, 2000, () => attack(y.a, clients, () => ({ ep: 'kv', ns: 'big' })))
    console.log(`kv snapshot attack: victim echo max RTT ${local.toFixed(0)} ms here, ${remote.toFixed(0)} ms on the other process; Redis used_memory +${((peak - before) / 1048576).toFixed(1)} MiB`)
    assert.ok(local < RTT_BOUND, `victim on the attacked process: ${local.toFixed(0)} ms`)
    assert.ok(remote < RTT_BOUND, `victim on another process: ${remote.toFixed(0)} ms`)
    if (TEST_BROKER === 'redis') assert.ok(peak - before < 16 * 1024 * 1024, `Redis grew by ${peak - before} bytes`)
    for (const c of clients.splice(0)) c.ws.terminate()

    // A late joiner (on the other process with Redis) while a writer changes the namespace.
    const writerCh = SignalChannel('big', { url: `${y.a.url}?writer` })
    channels.push(writerCh)
    const writer = writerCh.kv()
    await writer.ready()
    let writing = true
    const churn = (async () => {
      let round = 0
      while (writing) {
        const i = (round * 37) % KEYS
        await Promise.all([
          writer.set(`key-${i}`, `changed ${round}`),
          writer.delete(`key-${(i + 1) % KEYS}`),
          writer.set(`new-${round}`, round)
        ])
        round++
      }
    })()
    const lateCh = SignalChannel('big', { url: `${y.b.url}?late` })
    channels.push(lateCh)
    const late = lateCh.kv()
    await within(late.ready(), 20_000, 'late joiner ready')
    writing = false
    await churn
    const check = SignalChannel('big', { url: `${y.b.url}?check` })
    channels.push(check)
    const truth = check.kv()
    await within(truth.ready(), 20_000, 'checker ready')
    const expected = JSON.stringify(Object.entries(truth.toJSON()).sort(([a], [b]) => a < b ? -1 : 1))
    const state = (): string => JSON.stringify(Object.entries(late.toJSON()).sort(([a], [b]) => a < b ? -1 : 1))
    await until(() => state() === expected, 5000, 'the late joiner equals the server')
    assert.ok(late.keys().length > KEYS / 2, 'the state is the big one')
  } finally {
    for (const c of clients) c.ws.terminate()
    for (const ch of channels) ch.close()
    await y.close()
  }
})

test('peers: attackers joining a crowd with big metas without reading do not stall anyone; Redis stays small; a late joiner gets the exact list', async () => {
  const y = await yards()
  const clients: RawClient[] = []
  const channels: Channel[] = []
  try {
    const members = await fillPeers(y.a, 'crowd', clients)
    const before = TEST_BROKER === 'redis' ? await usedMemory() : 0
    const { local, remote, peak } = await measure(y, 2000, () =>
      attack(y.a, clients, (i, sid) => ({ ep: 'peers', ns: 'crowd', id: `attacker-${i}-${sid}`, key: KEY }), PEER_OPENS))
    console.log(`peers snapshot attack: victim echo max RTT ${local.toFixed(0)} ms here, ${remote.toFixed(0)} ms on the other process; Redis used_memory +${((peak - before) / 1048576).toFixed(1)} MiB`)
    assert.ok(local < RTT_BOUND, `victim on the attacked process: ${local.toFixed(0)} ms`)
    assert.ok(remote < RTT_BOUND, `victim on another process: ${remote.toFixed(0)} ms`)
    if (TEST_BROKER === 'redis') assert.ok(peak - before < 16 * 1024 * 1024, `Redis grew by ${peak - before} bytes`)
    for (const c of clients.splice(0)) if (c !== members) c.ws.terminate()
    clients.push(members)

    // A late joiner (on the other process with Redis) while members leave, come back and change.
    let churning = true
    const churn = (async () => {
      let round = 0
      while (churning) {
        const sid = (round % MEMBERS) + 1
        members.send(FrameType.Close, sid, null)
        members.send(FrameType.Open, sid, { ep: 'peers', ns: 'crowd', id: `member-${sid}`, key: KEY, meta: { n: sid, round, pad: 'm'.repeat(META) } })
        await members.take((f) => f.id === sid && f.type === FrameType.Opened, 10_000, `member ${sid} back`)
        members.send(FrameType.Request, sid, { op: 'update', req: round, meta: { n: sid, round, updated: true } })
        await members.take((f) => f.id === sid && f.type === FrameType.Reply, 10_000, `member ${sid} updated`)
        members.frames.length = 0
        round++
      }
    })()
    const lateCh = SignalChannel('crowd', { url: `${y.b.url}?late` })
    channels.push(lateCh)
    const late = lateCh.createPeers()
    await within(late.join({ id: 'late' }), 20_000, 'late joiner joined')
    churning = false
    await churn
    const checkCh = SignalChannel('crowd', { url: `${y.b.url}?check` })
    channels.push(checkCh)
    const check = checkCh.createPeers()
    await within(check.join({ id: 'check' }), 20_000, 'checker joined')
    const listing = (list: Array<Record<string, unknown>>, without: string): string =>
      JSON.stringify(list.filter((m) => m.id !== without).sort((a, b) => String(a.id) < String(b.id) ? -1 : 1))
    await until(() => listing(late.list(), 'check') === listing(check.list(), 'late'), 5000, 'the late joiner lists what the server holds')
    assert.is(late.list().filter((m) => String(m.id).startsWith('member-')).length, MEMBERS)
  } finally {
    for (const c of clients) c.ws.terminate()
    for (const ch of channels) ch.close()
    await y.close()
  }
})

test('peers: a member list in pages gives one join per member and none for yourself; after a reconnect, only what changed', async () => {
  const y = await yards()
  const clients: RawClient[] = []
  const channels: Channel[] = []
  const ids = Array.from({ length: 30 }, (_, i) => `m-${i + 1}`)
  const meta = (i: number, extra: object = {}): object => ({ i, pad: 'p'.repeat(20 * 1024), ...extra })
  try {
    // 30 members of 20 KiB: about ten pages of the list
    const c = await rawClient(y.a, clients)
    for (const [i, id] of ids.entries()) {
      c.send(FrameType.Open, i + 1, { ep: 'peers', ns: 'paged', id, key: KEY, meta: meta(i + 1) })
      assert.is((await c.take((f) => f.id === i + 1 && (f.type === FrameType.Opened || f.type === FrameType.Closed), 5000, id)).type, FrameType.Opened)
      c.frames.length = 0
    }
    // The joiner's socket: its DATA { peers } pages are counted off the wire.
    const pages: number[] = []
    const sockets: WebSocket[] = []
    class Tap extends WebSocket {
      constructor (url: string, protocols?: string | string[]) {
        super(url, protocols)
        sockets.push(this)
        this.on('message', (raw: Buffer | ArrayBuffer) => {
          const data = Buffer.isBuffer(raw) ? raw : Buffer.from(raw)
          if (data[0] !== FrameType.Data) return
          const m = JSON.parse(data.subarray(10, 10 + data.readUInt32BE(6)).toString()) as { peers?: unknown[] }
          if (Array.isArray(m.peers)) pages.push(m.peers.length)
        })
      }
    }
    let refusing = false
    y.b.server.prependListener('upgrade', (_req, socket: Duplex) => { if (refusing) socket.destroy() })
    const ch = SignalChannel('paged', { url: `${y.b.url}?paged`, WebSocket: Tap as unknown as WebSocketConstructor, reconnect: { minDelay: 50, maxDelay: 200 } })
    channels.push(ch)
    const peers = ch.createPeers()
    const log: Array<[string, string]> = []
    for (const event of ['join', 'update', 'leave'] as const) peers.on(event, (m) => log.push([event, m.id]))
    await within(peers.join({ id: 'me', x: 1 }), 10_000, 'join')
    assert.ok(pages.length >= 1, `the list came in pages (${pages.length} DATA pages before OPENED)`)
    assert.equal(log.map(([e]) => e), ids.map(() => 'join'), 'joins only, one per member')
    assert.equal(log.map(([, id]) => id).sort(), [...ids].sort(), 'every member once, not me')

    // Offline: five members leave and one changes its meta; back online, the diff is exactly that.
    log.length = 0
    pages.length = 0
    refusing = true
    const down = next(ch, 'state')
    sockets[0].terminate()
    assert.equal((await down)[0], 'reconnecting')
    for (let sid = 1; sid <= 5; sid++) c.send(FrameType.Close, sid, null)
    c.send(FrameType.Request, 6, { op: 'update', req: 1, meta: meta(6, { changed: true }) })
    await c.take((f) => f.id === 6 && f.type === FrameType.Reply, 5000, 'update')
    refusing = false
    await until(() => log.length >= 6, 10_000, 'the resync diff')
    assert.equal(log.filter(([e]) => e === 'leave').map(([, id]) => id).sort(), ids.slice(0, 5).sort())
    assert.equal(log.filter(([e]) => e !== 'leave'), [['update', 'm-6']])
    assert.is(peers.list().length, 25)
    assert.ok(pages.length >= 1, `the resync list came in pages too (${pages.length})`)
  } finally {
    for (const x of clients) x.ws.terminate()
    for (const ch of channels) ch.close()
    await y.close()
  }
})

test.run()

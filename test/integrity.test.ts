// test/integrity.test.ts — a reliable peer stream delivers every byte it was given, over WebRTC
// (node-datachannel's polyfill, loopback) and over the server relay, on both brokers:
// - 1,000 round trips per transport: messages of mixed sizes (bytes to 5 MiB), four streams
//   interleaved on one pc, two opened by each side, echoed back by the other side; every byte of
//   every echo is compared with what was sent (regenerated from a seed, not a hash), in order;
// - send() takes a copy: an app that overwrites its buffer as soon as send() returned (the tail of
//   a big message still queued behind a full pipe, or a message written on the acceptor before its
//   channel opened) never changes what arrives.
// On Redis also: the relay between two servers sharing one Redis (traffic through Redis pub/sub).
// The seed is fixed (INTEGRITY_SEED=n picks another) so a failure can be replayed.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import nodeDataChannel from 'node-datachannel'
import { RTCPeerConnection as PolyfillPC } from 'node-datachannel/polyfill'
import WebSocket from 'ws'
import { SignalChannel, type Channel, type PeerConnection, type PeerNode, type PeerStream, type RTCPeerConnectionConstructor, type WebSocketConstructor } from 'signalyard'
import { FrameType, decodePayload, encodePayload, readFrame, writeFrame } from '../src/protocol/codec.js'
import { createServer, redisBroker, type Yard } from 'signalyard/server'
import { seededRandom, startYard, TEST_BROKER, within } from './helpers.js'
import { startRedis } from './redis.js'

const WebRTC = PolyfillPC as unknown as RTCPeerConnectionConstructor
const LOOPBACK = { bindAddress: '127.0.0.1' }
const SEED = Number(process.env.INTEGRITY_SEED ?? 20261202)
const MiB = 1024 * 1024

/**
 * Two listening nodes on their own sockets; closes everything after `body`. `yards` given: alice
 * on the first, bob on the second (servers sharing one Redis).
 */
async function withPair (transport: 'webrtc' | 'relay', body: (a: PeerNode, b: PeerNode) => Promise<void>, yards?: [Yard, Yard]): Promise<void> {
  const [ya, yb] = yards ?? [await startYard(), null]
  const channels: Channel[] = []
  const node = async (id: string, yard: Yard): Promise<PeerNode> => {
    const channel = SignalChannel('integrity', { url: `${yard.url}?c=${id}`, rtcConfig: LOOPBACK, RTCPeerConnection: WebRTC })
    channels.push(channel)
    const n = channel.createNode(undefined, { transport })
    await within(n.listen(id), 2000, `listen(${id})`)
    return n
  }
  try {
    await body(await node('alice', ya), await node('bob', yb ?? ya))
  } finally {
    for (const c of channels) c.close()
    await ya.close()
    await yb?.close()
  }
}

/** Message `index` of stream `label`: its length and bytes are a function of (seed, label, index). */
function message (label: string, index: number, into?: Uint8Array): Uint8Array {
  let h = SEED >>> 0
  for (const ch of `${label}#${index}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0
  const rand = seededRandom(h)
  // mostly small, some medium, a few large: the mean is ~0.2 MiB, the largest 5 MiB
  const r = rand()
  const length = r < 0.7 ? Math.floor(rand() * 64 * 1024) : r < 0.95 ? Math.floor(rand() * 512 * 1024) : MiB + Math.floor(rand() * 4 * MiB)
  const out = into === undefined ? new Uint8Array(length) : into.subarray(0, length)
  // xorshift32 words: fast enough for hundreds of MiB, and a swapped, repeated or shifted
  // fragment never matches
  let x = (h ^ 0x9e3779b9) >>> 0 || 1
  const words = length >>> 2
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength)
  for (let i = 0; i < words; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5
    view.setUint32(i * 4, x >>> 0)
  }
  for (let i = words * 4; i < length; i++) out[i] = (x >>> ((i & 3) * 8)) & 0xff
  return out
}

/** The first offset where two byte arrays differ, or -1. */
function firstDifference (a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length)
  if (Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length))) return -1
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i
  return -1
}

/**
 * Echo every message of every stream the peer opens, in order, respecting backpressure (what
 * cannot go yet waits in the app, as a well-behaved echo would).
 */
function echoBack (pc: PeerConnection): void {
  pc.on('connection', (stream) => {
    const waiting: unknown[] = []
    let blocked = false
    const flush = (): void => {
      blocked = false
      while (waiting.length > 0 && stream.state !== 'closed') {
        if (!stream.send(waiting.shift())) { blocked = true; return }
      }
    }
    stream.on('drain', flush)
    stream.on('data', (data) => {
      waiting.push(data)
      if (!blocked) flush()
    })
  })
}

interface Tally { label: string, sent: number, echoed: number, bytes: number, bad: string[] }

/**
 * Send `count` messages on a new stream, one scratch buffer reused for all of them (as a file
 * sender that reads ahead does), at most `window` bytes not yet echoed; check every echo against
 * the message.
 */
async function roundTrips (pc: PeerConnection, label: string, count: number, window = 8 * MiB): Promise<Tally> {
  const tally: Tally = { label, sent: 0, echoed: 0, bytes: 0, bad: [] }
  const stream = pc.createStream(label)
  const scratch = new Uint8Array(5 * MiB)
  let unechoed = 0
  let wake: (() => void) | null = null
  const sizes: number[] = []
  const done = new Promise<void>((resolve, reject) => {
    stream.on('close', (err) => reject(new Error(`${label} closed after ${tally.echoed} echoes: ${String(err)}`)))
    stream.on('data', (data) => {
      const index = tally.echoed++
      const want = message(label, index)
      const got = data as Uint8Array
      const at = got instanceof Uint8Array ? firstDifference(got, want) : 0
      if (at !== -1) tally.bad.push(`${label}#${index}: ${got?.length} bytes, want ${want.length}; first difference at ${at}`)
      tally.bytes += want.length
      unechoed -= sizes[index]
      wake?.()
      if (tally.echoed === count) resolve()
    })
  })
  done.catch(() => {})
  let drained: Promise<void> | null = null
  for (let i = 0; i < count; i++) {
    // The next message is prepared in the scratch buffer while the previous one may still be
    // going out (before waiting for 'drain'): send() must have copied whatever it could not hand
    // to the transport at once.
    const m = message(label, i, scratch)
    if (drained !== null) await drained
    while (unechoed > 0 && unechoed + m.length > window) await new Promise<void>((resolve) => { wake = resolve })
    wake = null
    sizes.push(m.length)
    unechoed += m.length
    tally.sent++
    drained = stream.send(m) ? null : new Promise<void>((resolve) => stream.once('drain', () => resolve()))
  }
  await done
  return tally
}

/**
 * a connects to b, both echo; 250 round trips on each of two streams from each side at once
 * (1,000 in all); every echo must equal its message byte for byte. Returns a's pc.
 */
async function thousandRoundTrips (a: PeerNode, b: PeerNode, what: string): Promise<PeerConnection> {
  b.on('connection', echoBack)
  const pa = a.connect('bob')
  echoBack(pa)
  await within(pa.ready(), 5000, 'pc open')
  const pb = b.connections()[0]
  await within(pb.ready(), 5000, 'remote pc open')
  const started = performance.now()
  const tallies = await within(Promise.all([
    roundTrips(pa, 'a1', 250), roundTrips(pa, 'a2', 250),
    roundTrips(pb, 'b1', 250), roundTrips(pb, 'b2', 250)
  ]), 90_000, '1,000 round trips')
  const bytes = tallies.reduce((n, t) => n + t.bytes, 0)
  console.log(`  ${what}: 1,000 round trips, ${(bytes / MiB).toFixed(0)} MiB each way, in ${((performance.now() - started) / 1000).toFixed(1)} s`)
  assert.equal(tallies.flatMap((t) => t.bad), [], 'every echo equals its message, byte for byte')
  assert.equal(tallies.map((t) => t.echoed), [250, 250, 250, 250])
  return pa
}

for (const transport of ['webrtc', 'relay'] as const) {
  test(`${transport}: 1,000 round trips, 4 interleaved streams both ways, sizes up to 5 MiB — every byte arrives, in order`, () => withPair(transport, async (a, b) => {
    const pa = await thousandRoundTrips(a, b, transport)
    assert.is(pa.transport, transport)
    assert.is(pa.state, 'open')
  }))

  test(`${transport}: send() copies — overwriting the buffer right after send() never changes what arrives`, () => withPair(transport, async (a, b) => {
    const received: Uint8Array[] = []
    let remote: PeerStream | null = null
    b.on('connection', (pc) => pc.on('connection', (s) => { remote = s; s.on('data', (d) => received.push(d as Uint8Array)) }))
    const pa = a.connect('bob')
    const s = pa.createStream('reuse')
    // 1. written before open (queued), then overwritten. A Node Buffer, as Node apps send: its
    // own slice() is a view of the same memory, not a copy.
    const buffer = Buffer.alloc(4 * MiB)
    const fills = [1, 2, 3, 4, 5, 6]
    buffer.fill(fills[0])
    s.send(buffer)
    buffer.fill(fills[1])
    await within(pa.ready(), 5000, 'pc open')
    // 2. written on an open pc: the pipe takes about 1 MiB at once, the tail waits behind it
    s.send(buffer)
    buffer.fill(fills[2])
    s.send(buffer.subarray(0, 3 * MiB))
    buffer.fill(fills[3])
    await new Promise<void>((resolve) => s.once('drain', () => resolve()))
    // 3. the acceptor's side: written back on the remote stream, overwritten at once
    const deadline = performance.now() + 20_000
    while (received.length < 3 && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
    assert.is(received.length, 3, 'three messages arrived')
    const back: Uint8Array[] = []
    s.on('data', (d) => back.push(d as Uint8Array))
    const out = new Uint8Array(2 * MiB).fill(fills[4])
    ;(remote as unknown as PeerStream).send(out)
    out.fill(fills[5])
    while (back.length < 1 && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
    const summary = (m: Uint8Array): string => {
      const counts = new Map<number, number>()
      for (const v of m) counts.set(v, (counts.get(v) ?? 0) + 1)
      return [...counts].map(([v, n]) => `${n}×${v}`).join(' + ')
    }
    assert.equal([...received, ...back].map(summary), [
      `${4 * MiB}×${fills[0]}`, `${4 * MiB}×${fills[1]}`, `${3 * MiB}×${fills[2]}`, `${2 * MiB}×${fills[4]}`
    ])
  }))
}

if (TEST_BROKER === 'redis') {
  test('relay between two servers on one Redis: 1,000 round trips, 4 interleaved streams both ways — every byte arrives, in order', async () => {
    const redis = await startRedis()
    const brokers = [redisBroker({ url: redis.url, prefix: 'integrity:' }), redisBroker({ url: redis.url, prefix: 'integrity:' })]
    try {
      const yards = await Promise.all(brokers.map((broker) => createServer({ port: 0, host: '127.0.0.1', broker }))) as [Yard, Yard]
      await withPair('relay', async (a, b) => {
        const pa = await thousandRoundTrips(a, b, 'relay across two servers')
        assert.is(pa.transport, 'relay')
      }, yards)
    } finally {
      await Promise.all(brokers.map((broker) => broker.close()))
      await redis.stop()
    }
  })
}

/**
 * node-datachannel's polyfill delivers a channel's 'open' and its messages through separate
 * native callback queues, so on the accepting side the first messages (READY among them) can come
 * before 'open'. This RTCPeerConnection makes that order certain: the accepted channel's 'open'
 * handler runs 200 ms late, while messages flow at once.
 */
class LateOpenPC extends (PolyfillPC as unknown as new (config?: object) => object) {
  constructor (config?: object) {
    super(config)
    // The polyfill reads `this.ondatachannel` when it dispatches.
    let handler: ((ev: { channel: object }) => void) | null = null
    Object.defineProperty(this, 'ondatachannel', {
      configurable: true,
      get: () => handler === null ? null : (ev: { channel: object }) => { openLate(ev.channel); handler?.(ev) },
      set: (fn: ((ev: { channel: object }) => void) | null) => { handler = fn }
    })
  }
}
function openLate (channel: object): void {
  let onopen: ((ev: unknown) => void) | null = null
  Object.defineProperty(channel, 'onopen', {
    configurable: true,
    get: () => onopen === null ? null : (ev: unknown) => { setTimeout(() => onopen?.(ev), 200) },
    set: (fn: ((ev: unknown) => void) | null) => { onopen = fn }
  })
}

/**
 * alice (a regular node) connects to bob, whose RTCPeerConnection (and socket) misbehave as
 * given, sends `sent` before the pc is open, and gets everything echoed back, in order.
 */
async function echoesThroughOddAcceptor (bobPC: RTCPeerConnectionConstructor, sent: unknown[], bobSocket?: WebSocketConstructor): Promise<void> {
  const yard = await startYard()
  const channels: Channel[] = []
  try {
    const node = async (id: string, Ctor: RTCPeerConnectionConstructor, Socket?: WebSocketConstructor): Promise<PeerNode> => {
      const channel = SignalChannel('integrity', { url: `${yard.url}?c=${id}`, rtcConfig: LOOPBACK, RTCPeerConnection: Ctor, WebSocket: Socket })
      channels.push(channel)
      const n = channel.createNode(undefined, { transport: 'webrtc' })
      await within(n.listen(id), 2000, `listen(${id})`)
      return n
    }
    const a = await node('alice', WebRTC)
    const b = await node('bob', bobPC, bobSocket)
    b.on('connection', echoBack)
    const pa = a.connect('bob')
    const s = pa.createStream('early')
    const back: unknown[] = []
    s.on('data', (d) => back.push(d))
    for (const m of sent) s.send(m)
    await within(pa.ready(), 5000, 'pc open')
    assert.is(pa.transport, 'webrtc')
    const deadline = performance.now() + 5000
    while (back.length < sent.length && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
    assert.equal(back, sent, 'the acceptor echoed everything')
  } finally {
    for (const c of channels) c.close()
    await yard.close()
  }
}

test("webrtc: an accepted channel whose 'open' comes after its first messages still carries everything both ways", () =>
  echoesThroughOddAcceptor(LateOpenPC as unknown as RTCPeerConnectionConstructor, ['first', { second: 2 }, new Uint8Array([3, 3, 3])]))

/**
 * The socket of an acceptor of a version before the READY hold: its `accept` does not announce
 * READY (no `rd`), as older acceptors wrote it.
 */
class OldAcceptorSocket extends WebSocket {
  override send (data: Uint8Array): void {
    const frame = readFrame(data)
    if (frame?.type === FrameType.Data && typeof frame.meta?.to === 'string') {
      const msg = decodePayload(frame.kind, frame.payload) as { t?: string, rd?: true }
      if (msg?.t === 'accept' && msg.rd === true) {
        delete msg.rd
        return super.send(writeFrame(FrameType.Data, frame.id, frame.meta, encodePayload(msg)))
      }
    }
    super.send(data)
  }
}

/** An acceptor of a version before the READY hold: its channel never sends READY. */
class SilentAcceptorPC extends (PolyfillPC as unknown as new (config?: object) => object) {
  constructor (config?: object) {
    super(config)
    let handler: ((ev: { channel: { send: (b: Uint8Array) => void } }) => void) | null = null
    Object.defineProperty(this, 'ondatachannel', {
      configurable: true,
      get: () => handler === null ? null : (ev: { channel: { send: (b: Uint8Array) => void } }) => {
        const send = ev.channel.send.bind(ev.channel)
        ev.channel.send = (b) => { if (!(b.length === 6 && b[0] === 5)) send(b) } // drop READY (op 5, stream 0)
        handler?.(ev)
      },
      set: (fn: typeof handler) => { handler = fn }
    })
  }
}

test('webrtc: an older acceptor (no READY announced, none sent) still gets everything, after the grace time', () =>
  echoesThroughOddAcceptor(SilentAcceptorPC as unknown as RTCPeerConnectionConstructor, ['first', { second: 2 }, new Uint8Array(7 * 1024).fill(7)],
    OldAcceptorSocket as unknown as WebSocketConstructor))

// node-datachannel's native threads hold the event loop until its cleanup() runs.
test.after(() => { nodeDataChannel.cleanup() })
test.run()

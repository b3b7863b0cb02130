// test/web-streams.test.ts — Web Streams interop (issue 15): `stream.readable` / `stream.writable`
// on a peer connection's streams and on relay streams (src/client/web-streams.ts). Large
// transfers through pipeTo chains and Node's stream.pipeline, byte-exact by SHA-256, with the
// writer held back by 'drain' (counted) and memory bounded end to end; close, abort, cancel and
// errors propagating to the other side; a reader that falls behind (held, then queue-full past
// its bound); message types kept. A pc on the server relay (fast, deterministic) and one on real
// WebRTC (node-datachannel's polyfill on 127.0.0.1).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createHash, randomBytes } from 'node:crypto'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { ReadableStream as NodeReadableStream, WritableStream as NodeWritableStream } from 'node:stream/web'
import { RTCPeerConnection } from 'node-datachannel/polyfill'
import { SignalChannel, type Channel, type PeerConnection, type PeerStream, type RelayStream, type RTCPeerConnectionConstructor } from 'signalyard'
import type { Yard } from 'signalyard/server'
import { toWebStreams } from '../src/client/web-streams.js'
import { Kind, writeFrame } from '../src/protocol/codec.js'
import { FrameType } from '../src/protocol/frames.js'
import { rawClient } from './raw-client.js'
import { later, sleep, startYard, until, within } from './helpers.js'

const MiB = 1024 * 1024
/** The mux's high-water mark: `send()` returns false from there on. */
const HIGH_WATER = MiB
const LOOPBACK = { bindAddress: '127.0.0.1' }

type Mode = 'relay' | 'webrtc'

interface World {
  yard: Yard
  channel: (client: string, mode?: Mode) => Channel
  /** A pc from alice to bob (open), and bob's side of it. */
  pair: (mode: Mode) => Promise<{ a: PeerConnection, b: PeerConnection, channels: [Channel, Channel] }>
}

async function withWorld (body: (w: World) => Promise<void>): Promise<void> {
  const yard = await startYard()
  const opened: Channel[] = []
  let n = 0
  const channel: World['channel'] = (client, mode = 'relay') => {
    const c = SignalChannel('web-streams', {
      url: `${yard.url}?c=${client}-${++n}`,
      rtcConfig: LOOPBACK,
      ...(mode === 'webrtc' ? { RTCPeerConnection: RTCPeerConnection as unknown as RTCPeerConnectionConstructor } : {})
    })
    opened.push(c)
    return c
  }
  const pair: World['pair'] = async (mode) => {
    const ca = channel('alice', mode)
    const cb = channel('bob', mode)
    let b: PeerConnection | null = null
    const nodeB = cb.createNode((pc) => { b = pc }, { transport: mode })
    const nodeA = ca.createNode(undefined, { transport: mode })
    const suffix = String(n)
    await within(Promise.all([nodeA.listen(`alice${suffix}`), nodeB.listen(`bob${suffix}`)]), 2000, 'listen')
    const a = nodeA.connect(`bob${suffix}`)
    await within(a.ready(), 5000, 'pc open')
    assert.is(a.transport, mode)
    await until(() => b !== null && (b as PeerConnection).state === 'open', 3000, "bob's pc open")
    return { a, b: b as unknown as PeerConnection, channels: [ca, cb] }
  }
  try {
    await body({ yard, channel, pair })
  } finally {
    for (const c of opened) c.close()
    await yard.close()
  }
}

/** The other side's next stream, its readable made at once (as an app does in 'connection'). */
function accept (pc: PeerConnection): Promise<{ stream: PeerStream, readable: ReadableStream<unknown> }> {
  return within(new Promise((resolve) => pc.once('connection', (stream) => resolve({ stream, readable: stream.readable }))), 3000, "'connection'")
}

/** Count what the writer side saw: `send()` returning false, 'drain', and the most bytes buffered after a send. */
function watchSends (stream: { send: (data: unknown) => boolean, bufferedAmount: number, on: (e: 'drain', fn: () => void) => unknown }): { refused: number, drains: number, maxBuffered: number } {
  const seen = { refused: 0, drains: 0, maxBuffered: 0 }
  const send = stream.send.bind(stream)
  stream.send = (data) => {
    const ok = send(data)
    if (!ok) seen.refused++
    seen.maxBuffered = Math.max(seen.maxBuffered, stream.bufferedAmount)
    return ok
  }
  stream.on('drain', () => { seen.drains++ })
  return seen
}

/** A source of `total` random bytes in chunks of 1 byte to 256 KiB, hashing what it produced. */
function randomSource (total: number): { readable: ReadableStream<Uint8Array>, produced: () => number, chunks: () => number, digest: () => string } {
  const hash = createHash('sha256')
  let produced = 0
  let i = 0
  const readable = new ReadableStream<Uint8Array>({
    pull (controller) {
      if (produced >= total) return controller.close()
      // Mostly 64 KiB chunks; now and then a tiny or a large one.
      const size = Math.min(total - produced, i % 17 === 0 ? 1 + (i % 7) : i % 5 === 0 ? 256 * 1024 : 64 * 1024)
      i++
      const chunk = randomBytes(size)
      hash.update(chunk)
      produced += size
      controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength))
    }
  })
  return { readable, produced: () => produced, chunks: () => i, digest: () => hash.digest('hex') }
}

/** A sink hashing every chunk (each must be a Uint8Array). */
function hashingSink (): { writable: WritableStream<unknown>, received: () => number, digest: () => string, chunks: () => number } {
  const hash = createHash('sha256')
  let received = 0
  let chunks = 0
  const writable = new WritableStream<unknown>({
    write (chunk) {
      if (!(chunk instanceof Uint8Array)) throw new Error(`a chunk that is not bytes: ${typeof chunk}`)
      hash.update(chunk)
      received += chunk.byteLength
      chunks++
    }
  })
  return { writable, received: () => received, digest: () => hash.digest('hex'), chunks: () => chunks }
}

// ── large transfers through pipeTo ──

for (const mode of ['relay', 'webrtc'] as const) {
  test(`${mode}: 20 MB through source.pipeTo(a.writable) and b.readable.pipeTo(sink): byte-exact, the writer held back by 'drain' (never half the transfer in flight), the reader ends when the writer closes`, () => withWorld(async ({ pair }) => {
    const TOTAL = 20 * MiB
    const { a, b } = await pair(mode)
    const stream = a.createStream('file')
    const remote = accept(b)
    const seen = watchSends(stream)
    const source = randomSource(TOTAL)
    const sink = hashingSink()
    let maxInFlight = 0
    const sampler = setInterval(() => { maxInFlight = Math.max(maxInFlight, source.produced() - sink.received()) }, 5)
    try {
      const sending = later(source.readable.pipeTo(stream.writable))
      const { readable } = await remote
      const receiving = later(readable.pipeTo(sink.writable))
      await within(sending, 30_000, 'the writer pipe')
      await within(receiving, 30_000, 'the reader pipe ends after the writer closed')
    } finally {
      clearInterval(sampler)
    }
    assert.is(sink.received(), TOTAL)
    assert.is(sink.digest(), source.digest(), 'byte-exact (SHA-256)')
    assert.is(sink.chunks(), source.chunks(), 'each chunk written is one chunk read (one message)')
    assert.ok(seen.refused > 0, `send() returned false ${seen.refused} times`)
    assert.is(seen.drains, seen.refused, "the writer waited for a 'drain' after every send() that returned false")
    assert.ok(seen.maxBuffered < HIGH_WATER + 256 * 1024 + 64 * 1024, `bufferedAmount peaked at ${seen.maxBuffered} bytes`)
    // An unbounded writer would have queued all 20 MB at once (the source is instantaneous); seen
    // here: 2–4.5 MiB.
    assert.ok(maxInFlight < TOTAL / 2, `at most ${maxInFlight} bytes were produced and not yet received`)
    assert.is(stream.state, 'closed')
  }))
}

test('Node streams: pipeline(Readable, Writable.fromWeb(a.writable)) and pipeline(Readable.fromWeb(b.readable), Writable): 8 MB byte-exact, both pipelines finish', () => withWorld(async ({ pair }) => {
  const TOTAL = 8 * MiB
  const { a, b } = await pair('relay')
  const stream = a.createStream('node')
  const remote = accept(b)
  const seen = watchSends(stream)
  const sent = createHash('sha256')
  async function * chunks (): AsyncGenerator<Buffer> {
    for (let left = TOTAL; left > 0;) {
      const chunk = randomBytes(Math.min(left, 100_000))
      sent.update(chunk)
      left -= chunk.length
      yield chunk
    }
  }
  const got = createHash('sha256')
  let received = 0
  const sending = later(pipeline(Readable.from(chunks()), Writable.fromWeb(stream.writable as unknown as NodeWritableStream)))
  const { readable } = await remote
  const receiving = later(pipeline(
    Readable.fromWeb(readable as unknown as NodeReadableStream),
    new Writable({ write (chunk: Buffer, _enc, done) { got.update(chunk); received += chunk.length; done() } })
  ))
  await within(sending, 30_000, 'the sending pipeline')
  await within(receiving, 30_000, 'the receiving pipeline')
  assert.is(received, TOTAL)
  assert.is(got.digest('hex'), sent.digest('hex'))
  assert.ok(seen.refused > 0 && seen.drains === seen.refused, `backpressure through Writable.fromWeb: ${seen.refused} waits`)
}))

// ── messages, not bytes ──

test('the readable yields each message as \'data\' gives it: JSON values, text and bytes, in order; the writable sends any of them', () => withWorld(async ({ pair }) => {
  const { a, b } = await pair('relay')
  const stream = a.createStream('mixed')
  const remote = accept(b)
  const messages: unknown[] = [{ n: 1, nested: [true, null] }, 'text ✓', new Uint8Array([0, 1, 254, 255]), 42, null, '', [1, 'two']]
  const writer = stream.writable.getWriter()
  for (const m of messages) await writer.write(m)
  await writer.close()
  const { readable } = await remote
  const got: unknown[] = []
  for await (const chunk of readable as unknown as AsyncIterable<unknown>) got.push(chunk)
  assert.equal(got.length, messages.length)
  assert.equal(got.filter((_, i) => i !== 2), messages.filter((_, i) => i !== 2))
  assert.instance(got[2], Uint8Array)
  assert.equal([...(got[2] as Uint8Array)], [0, 1, 254, 255])
}))

test('the getters are lazy and return the same object each time; a stream already closed gives a readable that is done and a writable that rejects with stream-closed', () => withWorld(async ({ pair }) => {
  const { a } = await pair('relay')
  const stream = a.createStream('x')
  assert.is(stream.readable, stream.readable)
  assert.is(stream.writable, stream.writable)
  const late = a.createStream('late')
  late.close()
  const reader = late.readable.getReader()
  assert.equal(await within(reader.read(), 1000, 'read'), { done: true, value: undefined })
  const err = await later(late.writable.getWriter().write('x')).then(() => null, (e: unknown) => e)
  assert.is((err as { code?: string } | null)?.code, 'stream-closed')
}))

// ── ends on either side ──

test('writer close(): the reader gets every message, then ends; the stream is closed on both sides', () => withWorld(async ({ pair }) => {
  const { a, b } = await pair('relay')
  const stream = a.createStream('close')
  const remote = accept(b)
  const writer = stream.writable.getWriter()
  for (let i = 0; i < 500; i++) void writer.write({ i })
  await within(writer.close(), 3000, 'writer.close()')
  assert.is(stream.state, 'closed')
  const { stream: theirs, readable } = await remote
  const got: unknown[] = []
  const reader = readable.getReader()
  for (;;) {
    const r = await within(reader.read(), 3000, 'read')
    if (r.done) break
    got.push(r.value)
  }
  assert.equal(got, Array.from({ length: 500 }, (_, i) => ({ i })))
  assert.is(theirs.state, 'closed')
}))

test('reader cancel(): the stream closes both ways; the writer\'s pipe rejects with stream-closed and cancels its source', () => withWorld(async ({ pair }) => {
  const { a, b } = await pair('relay')
  const stream = a.createStream('cancel')
  const remote = accept(b)
  let cancelled = false
  const endless = new ReadableStream<Uint8Array>({
    pull (c) { c.enqueue(new Uint8Array(32 * 1024)) },
    cancel () { cancelled = true }
  })
  const sending = later(endless.pipeTo(stream.writable))
  const { stream: theirs, readable } = await remote
  const reader = readable.getReader()
  for (let i = 0; i < 20; i++) await within(reader.read(), 3000, 'read')
  await reader.cancel('enough')
  assert.is(theirs.state, 'closed')
  const err = await within(sending.then(() => null, (e: unknown) => e), 3000, 'the writer pipe settles')
  assert.is((err as { code?: string } | null)?.code, 'stream-closed')
  assert.ok(cancelled, 'the source was cancelled')
  assert.is(stream.state, 'closed')
}))

test('writer abort(): the stream closes, even while the write waits for a \'drain\' that is not coming; the other side sees it end', () => withWorld(async ({ channel }) => {
  // An unpaired relay stream holds what is over its pre-open window and never drains.
  const lonely = channel('lonely').relay({ local: 'lonely', remote: 'nobody' })
  const writer = lonely.writable.getWriter()
  await writer.write(new Uint8Array(100 * 1024))
  const stuck = later(writer.write(new Uint8Array(100 * 1024)))
  await sleep(50)
  assert.is(lonely.state, 'opening')
  await within(writer.abort(new Error('user gave up')), 1000, 'abort()')
  assert.is(lonely.state, 'closed')
  const err = await stuck.then(() => null, (e: unknown) => e)
  assert.ok(err !== null, 'the waiting write rejects')

  // And on a pc, the other side's readable ends.
  const { a, b } = await withPair(channel)
  const stream = a.createStream('abort')
  const remote = accept(b)
  const w = stream.writable.getWriter()
  await w.write('one')
  const { readable } = await remote
  const reader = readable.getReader()
  assert.equal(await within(reader.read(), 2000, 'read'), { done: false, value: 'one' })
  await w.abort()
  assert.equal(await within(reader.read(), 2000, 'read after abort'), { done: true, value: undefined })
}))

/** A relay pc on two channels of this world (for tests that also need plain channels). */
async function withPair (channel: World['channel']): Promise<{ a: PeerConnection, b: PeerConnection }> {
  const id = `p${Math.random().toString(36).slice(2)}`
  let b: PeerConnection | null = null
  const nodeB = channel('pb').createNode((pc) => { b = pc })
  const nodeA = channel('pa').createNode()
  await within(Promise.all([nodeA.listen(`${id}a`), nodeB.listen(`${id}b`)]), 2000, 'listen')
  const a = nodeA.connect(`${id}b`)
  await within(a.ready(), 3000, 'pc open')
  await until(() => b !== null, 2000, "bob's pc")
  return { a, b: b as unknown as PeerConnection }
}

test('the pc closing with an error mid-transfer errors the other side: its pipe rejects with peer-left; on the side that closed, the writer\'s pipe rejects with stream-closed and the reader\'s readable just ends', () => withWorld(async ({ pair }) => {
  for (const leaving of ['writer', 'reader'] as const) {
    const { a, b, channels } = await pair('relay')
    const stream = a.createStream('doomed')
    const remote = accept(b)
    const endless = new ReadableStream<Uint8Array>({ pull (c) { c.enqueue(randomBytes(64 * 1024)) } })
    const sending = later(endless.pipeTo(stream.writable))
    const { readable } = await remote
    let received = 0
    const receiving = later(readable.pipeTo(new WritableStream({ write (chunk) { received += (chunk as Uint8Array).byteLength } })))
    await until(() => received > 2 * MiB, 5000, '2 MiB through')
    // The side that leaves closes its channel; the other side's pc closes with peer-left.
    channels[leaving === 'writer' ? 0 : 1].close()
    const [sent, got] = await within(Promise.all([sending, receiving].map(async (p) => await p.then(() => 'ended', (e: unknown) => (e as { code?: string }).code))), 5000, 'both pipes settle')
    if (leaving === 'writer') {
      assert.is(got, 'peer-left', 'the reader learns the writer left')
      assert.is(sent, 'stream-closed', 'the writer\'s own pipe cannot finish')
    } else {
      assert.is(sent, 'peer-left', 'the writer learns the reader left')
      assert.is(got, 'ended', 'the reader closed on purpose: its readable ends')
    }
  }
}))

// ── a reader that falls behind ──

test('a reader that starts late gets every message (held in the readable\'s queue); one that falls past maxBuffered errors with queue-full and the sender\'s stream closes', () => withWorld(async ({ pair }) => {
  const { a, b } = await pair('relay')
  // Late but within the bound: 4 MiB wait unread, then all come out, in order.
  const stream = a.createStream('late-reader')
  const remote = accept(b)
  const source = randomSource(4 * MiB)
  const sending = later(source.readable.pipeTo(stream.writable))
  const { readable } = await remote
  await within(sending, 10_000, 'sent while nobody reads')
  await sleep(100)
  const sink = hashingSink()
  await within(readable.pipeTo(sink.writable), 10_000, 'read late')
  assert.is(sink.received(), 4 * MiB)
  assert.is(sink.digest(), source.digest())

  // Past the bound: toWebStreams with maxBuffered 256 KiB, nobody reads.
  const small = a.createStream('slow-reader')
  const accepted = within(new Promise<PeerStream>((resolve) => b.once('connection', resolve)), 3000, "'connection'")
  small.send('first')
  const theirs = await accepted
  const bounded = toWebStreams(theirs, { maxBuffered: 256 * 1024 }).readable
  const closed = within(new Promise((resolve) => small.once('close', resolve)), 5000, "the sender's stream closes")
  for (let i = 0; i < 40 && small.state !== 'closed'; i++) {
    small.send(new Uint8Array(16 * 1024))
    await sleep(1)
  }
  await closed
  const err = await bounded.getReader().read().then(() => null, (e: unknown) => e)
  assert.is((err as { code?: string } | null)?.code, 'queue-full')
  assert.is(theirs.state, 'closed')
}))

// ── relay streams ──

test('RelayStream: an 8 MB round trip — source → a.writable, b.readable.pipeTo(b.writable) echoes, a.readable hashes; byte-exact with drain waits; a.writable close ends a.readable', () => withWorld(async ({ channel }) => {
  const TOTAL = 8 * MiB
  const a: RelayStream = channel('ra').relay({ local: 'ra', remote: 'rb' })
  const b: RelayStream = channel('rb').relay({ local: 'rb', remote: 'ra' })
  const seen = watchSends(a)
  const echoed = watchSends(b)
  const source = randomSource(TOTAL)
  const sink = hashingSink()
  const echo = later(b.readable.pipeTo(b.writable))
  const back = later(a.readable.pipeTo(sink.writable))
  await within(source.readable.pipeTo(a.writable, { preventClose: true }), 30_000, 'sent')
  await until(() => sink.received() === TOTAL, 30_000, 'every byte back')
  assert.is(sink.digest(), source.digest(), 'byte-exact both ways')
  assert.ok(seen.refused > 0 && seen.drains === seen.refused, `a waited ${seen.refused} times`)
  assert.ok(echoed.drains === echoed.refused, 'the echo waited on every false too')
  await a.writable.getWriter().close()
  await within(back, 3000, 'a.readable ends once a closed')
  assert.is(a.state, 'closed')
  await within(echo.catch(() => {}), 3000, 'the echo pipe settles')
  assert.is(b.state, 'closed')
}))

test('RelayStream: a message that does not decode errors the readable with bad-frame (after what came before it) and closes the stream, which the sender sees', () => withWorld(async ({ yard, channel }) => {
  const raw = await rawClient(yard)
  try {
    const b = channel('decoder').relay({ local: 'lib', remote: 'raw' })
    const reader = b.readable.getReader()
    const opened = await raw.open(1, { ep: 'relay', ns: 'web-streams', local: 'raw', remote: 'lib' })
    assert.is(opened.type, FrameType.Opened)
    raw.send(FrameType.Data, 1, null, 'fine')
    raw.sendRaw(writeFrame(FrameType.Data, 1, null, { kind: Kind.Json, bytes: new TextEncoder().encode('{not json') }))
    assert.equal(await within(reader.read(), 2000, 'read'), { done: false, value: 'fine' })
    const err = await within(reader.read().then(() => null, (e: unknown) => e), 2000, 'read the broken one')
    assert.is((err as { code?: string } | null)?.code, 'bad-frame')
    assert.is(b.state, 'closed')
    await raw.take((f) => f.id === 1 && f.type === FrameType.Closed, 2000, 'CLOSED for the sender')
  } finally {
    raw.ws.terminate()
  }
}))

test('RelayStream: writer close after 6 MB: the reader gets every byte, then ends', () => withWorld(async ({ channel }) => {
  const TOTAL = 6 * MiB
  const a = channel('wa').relay({ local: 'wa', remote: 'wb' })
  const b = channel('wb').relay({ local: 'wb', remote: 'wa' })
  const source = randomSource(TOTAL)
  const sink = hashingSink()
  const receiving = later(b.readable.pipeTo(sink.writable))
  await within(source.readable.pipeTo(a.writable), 30_000, 'sent and closed')
  await within(receiving, 10_000, 'the reader ends')
  assert.is(sink.received(), TOTAL)
  assert.is(sink.digest(), source.digest())
}))

test.run()

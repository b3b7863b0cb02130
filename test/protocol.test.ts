// test/protocol.test.ts — the signalyard.2 codec and frame parsers (src/protocol): frame round
// trips, rejection of malformed input (null / coded FrameError, never a throw), in-place id
// rewriting, payload encoding for every value type, and one-encoding echo events.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import {
  HEADER_SIZE, Kind, decodePayload, encodePayload, framePayload, readFrame, rewriteId, writeFrame
} from '../src/protocol/codec.js'
import { echoEventMeta, readEchoFrom, writeEchoEvent } from '../src/protocol/echo.js'
import { readKvEvent, readKvKeys, readKvReply, writeKvEvent, writeKvKeys, kvReplyMeta } from '../src/protocol/kv.js'
import { readPresenceChange, readPresencePage, writePeersEvent, writePeersPage } from '../src/protocol/peers.js'
import { MAX_SDP_PARTS, readHandshake, SDP_PART } from '../src/protocol/handshake.js'
import { RtcSession } from '../src/client/transports/rtc-session.js'
import type { RTCPeerConnectionConstructor } from '../src/client/transports/webrtc.js'
import { BATCH_FRAME_MAX, MUX_BATCH, readBatch, writeBatch, writeMux, MuxOp } from '../src/protocol/mux.js'
import { Fifo } from '../src/client/fifo.js'
import { readRelayAck, readRelayWindow, RELAY_PRE_OPEN_WINDOW, writeRelayAck } from '../src/protocol/relay.js'
import { readSignalFrom, readSignalLeave, readSignalTo, writeSignalFrom, writeSignalLeave, writeSignalTo } from '../src/protocol/signal.js'
import { ENDPOINTS, FrameType, NAME_MAX, REQUEST_OPS, eventMemo, isFrameError, parseClientFrame, parseServerFrame, type FrameError } from '../src/protocol/frames.js'
import { rawFrame } from './helpers.js'

const enc = new TextEncoder()
const dec = new TextDecoder()

function expectError (bytes: Uint8Array, code: FrameError['error'], sid?: number, req?: number): FrameError {
  const parsed = parseClientFrame(bytes)
  assert.ok(isFrameError(parsed), `expected a ${code} FrameError, got ${JSON.stringify(parsed)}`)
  const e = parsed as FrameError
  assert.is(e.error, code)
  assert.type(e.message, 'string')
  if (sid !== undefined) assert.is(e.sid, sid)
  if (req !== undefined) assert.is(e.req, req)
  return e
}

// ---- writeFrame / readFrame ----

test('header layout: type, u32 BE id, kind, u32 BE metaLen, meta, payload', () => {
  const frame = writeFrame(0x03, 0x01020304, { a: 1 }, { kind: Kind.Binary, bytes: new Uint8Array([9, 8, 7]) })
  const meta = enc.encode('{"a":1}')
  assert.equal([...frame.subarray(0, HEADER_SIZE)], [0x03, 1, 2, 3, 4, Kind.Binary, 0, 0, 0, meta.length])
  assert.equal([...frame.subarray(HEADER_SIZE, HEADER_SIZE + meta.length)], [...meta])
  assert.equal([...frame.subarray(HEADER_SIZE + meta.length)], [9, 8, 7])
  assert.is(frame.length, HEADER_SIZE + meta.length + 3)
})

test('round trip of every payload kind, with and without meta', () => {
  const cases = [
    { payload: undefined, kind: Kind.None, value: undefined },
    { payload: encodePayload({ x: [1, 'two', null] }), kind: Kind.Json, value: { x: [1, 'two', null] } },
    { payload: encodePayload(new Uint8Array([0, 255, 128, 1])), kind: Kind.Binary, value: new Uint8Array([0, 255, 128, 1]) },
    { payload: encodePayload('héllo ✓ 🚀'), kind: Kind.Text, value: 'héllo ✓ 🚀' }
  ]
  for (const meta of [null, {}, { ep: 'echo', ns: 'room', nested: { deep: [1, 2] }, s: 'ünï' }]) {
    for (const c of cases) {
      const frame = writeFrame(FrameType.Data, 42, meta, c.payload)
      const read = readFrame(frame)
      assert.ok(read !== null)
      if (read === null) continue
      assert.is(read.type, FrameType.Data)
      assert.is(read.id, 42)
      assert.is(read.kind, c.kind)
      assert.equal(read.meta, meta === null ? null : meta)
      assert.equal(decodePayload(read.kind, read.payload), c.value)
      assert.is(read.bytes, frame)
      assert.equal(framePayload(frame), { kind: c.kind, bytes: read.payload })
    }
  }
})

test('empty meta object {} is carried (metaLen > 0) and read back as {}', () => {
  const frame = writeFrame(FrameType.Opened, 1, {})
  assert.is(new DataView(frame.buffer).getUint32(6), 2)
  assert.equal(readFrame(frame)?.meta, {})
})

test('ids at the edges: 0 and 0xffffffff', () => {
  assert.is(readFrame(writeFrame(FrameType.Data, 0, null))?.id, 0)
  assert.is(readFrame(writeFrame(FrameType.Data, 0xffffffff, null))?.id, 0xffffffff)
})

test('readFrame works on a view into a larger buffer (non-zero byteOffset)', () => {
  const frame = writeFrame(FrameType.Data, 7, { k: 'v' }, encodePayload('payload'))
  const big = new Uint8Array(frame.length + 13)
  big.set(frame, 5)
  const view = big.subarray(5, 5 + frame.length)
  const read = readFrame(view)
  assert.ok(read !== null)
  assert.is(read?.id, 7)
  assert.equal(read?.meta, { k: 'v' })
  assert.is(decodePayload(read?.kind ?? 0, read?.payload ?? new Uint8Array()), 'payload')
  // Node Buffers (what ws hands the server) are such views
  const buf = Buffer.from(frame)
  assert.is(readFrame(buf)?.id, 7)
})

test('readFrame returns null for malformed frames and never throws', () => {
  const good = writeFrame(FrameType.Data, 1, { a: 1 })
  // truncated header
  for (let n = 0; n < HEADER_SIZE; n++) assert.is(readFrame(good.subarray(0, n)), null, `header of ${n} bytes`)
  // metaLen past the end
  assert.is(readFrame(good.subarray(0, good.length - 1)), null, 'meta cut short')
  assert.is(readFrame(rawFrame(FrameType.Data, 1, Kind.None, new Uint8Array(0), new Uint8Array(0), 1)), null)
  assert.is(readFrame(rawFrame(FrameType.Data, 1, Kind.None, new Uint8Array(0), new Uint8Array(0), 0xffffffff)), null)
  // non-object meta
  for (const json of ['[]', '[1,2]', '1', '"str"', 'null', 'true']) {
    assert.is(readFrame(rawFrame(FrameType.Data, 1, Kind.None, enc.encode(json))), null, `meta ${json}`)
  }
  // not JSON, not UTF-8
  assert.is(readFrame(rawFrame(FrameType.Data, 1, Kind.None, enc.encode('{a:1}'))), null)
  assert.is(readFrame(rawFrame(FrameType.Data, 1, Kind.None, enc.encode('{"a":'))), null)
  assert.is(readFrame(rawFrame(FrameType.Data, 1, Kind.None, new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]))), null, 'invalid UTF-8 inside a string')
  assert.is(readFrame(rawFrame(FrameType.Data, 1, Kind.None, new Uint8Array([0xc3]))), null, 'truncated UTF-8 sequence')
  // unknown payload kind
  for (const kind of [4, 5, 127, 255]) assert.is(readFrame(rawFrame(FrameType.Data, 1, kind, new Uint8Array(0))), null, `kind ${kind}`)
  // the four known kinds are fine
  for (const kind of [0, 1, 2, 3]) assert.ok(readFrame(rawFrame(FrameType.Data, 1, kind, new Uint8Array(0))) !== null, `kind ${kind}`)
})

test('meta with __proto__ does not pollute Object.prototype', () => {
  const read = readFrame(rawFrame(FrameType.Open, 1, Kind.None, enc.encode('{"__proto__":{"polluted":1},"ns":"x","ep":"echo"}')))
  assert.ok(read !== null)
  assert.is(({} as Record<string, unknown>).polluted, undefined)
  const parsed = parseClientFrame(read?.bytes ?? new Uint8Array())
  assert.equal(parsed, { type: 'open', sid: 1, ep: 'echo', ns: 'x' })
})

// ---- parseClientFrame ----

test('parseClientFrame: OPEN for each endpoint', () => {
  assert.equal(parseClientFrame(writeFrame(FrameType.Open, 3, { ep: 'echo', ns: 'room' })), { type: 'open', sid: 3, ep: 'echo', ns: 'room' })
  assert.equal(parseClientFrame(writeFrame(FrameType.Open, 4, { ep: 'kv', ns: 'room' })), { type: 'open', sid: 4, ep: 'kv', ns: 'room', since: null })
  assert.equal(parseClientFrame(writeFrame(FrameType.Open, 4, { ep: 'kv', ns: 'room', epoch: 'abc', seq: 17 })),
    { type: 'open', sid: 4, ep: 'kv', ns: 'room', since: { epoch: 'abc', seq: 17 } })
  assert.equal(parseClientFrame(writeFrame(FrameType.Open, 5, { ep: 'relay', ns: 'room', local: 'a', remote: 'b' })),
    { type: 'open', sid: 5, ep: 'relay', ns: 'room', local: 'a', remote: 'b' })
  // a namespace at the length limit is fine
  const long = 'n'.repeat(NAME_MAX)
  assert.equal(parseClientFrame(writeFrame(FrameType.Open, 6, { ep: 'echo', ns: long })), { type: 'open', sid: 6, ep: 'echo', ns: long })
})

test('parseClientFrame: CLOSE, DATA and REQUEST', () => {
  assert.equal(parseClientFrame(writeFrame(FrameType.Close, 9, null)), { type: 'close', sid: 9 })
  const data = writeFrame(FrameType.Data, 9, null, encodePayload('hi'))
  const parsedData = parseClientFrame(data)
  assert.ok(!isFrameError(parsedData) && parsedData.type === 'data')
  if (!isFrameError(parsedData) && parsedData.type === 'data') {
    assert.is(parsedData.sid, 9)
    assert.is(parsedData.raw.bytes, data)
    assert.is(decodePayload(parsedData.raw.kind, parsedData.raw.payload), 'hi')
  }
  const set = parseClientFrame(writeFrame(FrameType.Request, 2, { op: 'set', key: 'k', req: 1, ttl: 500 }, encodePayload({ v: 1 })))
  assert.ok(!isFrameError(set) && set.type === 'request' && set.op === 'set')
  if (!isFrameError(set) && set.type === 'request' && set.op === 'set') {
    assert.is(set.sid, 2)
    assert.is(set.req, 1)
    assert.is(set.key, 'k')
    assert.is(set.ttl, 500)
    assert.equal(decodePayload(set.raw.kind, set.raw.payload), { v: 1 })
  }
  const noTtl = parseClientFrame(writeFrame(FrameType.Request, 2, { op: 'set', key: 'k', req: 2 }))
  assert.ok(!isFrameError(noTtl) && noTtl.type === 'request' && noTtl.op === 'set' && noTtl.ttl === null)
  assert.equal(parseClientFrame(writeFrame(FrameType.Request, 2, { op: 'delete', key: 'k', req: 3 })),
    { type: 'request', sid: 2, req: 3, op: 'delete', key: 'k' })
})

test('parseClientFrame: malformed bytes → bad-frame; unknown type → unknown-frame', () => {
  expectError(new Uint8Array([1, 2, 3]), 'bad-frame', 0)
  expectError(rawFrame(FrameType.Open, 1, Kind.None, enc.encode('[]')), 'bad-frame')
  expectError(rawFrame(FrameType.Open, 1, 9, new Uint8Array(0)), 'bad-frame')
  for (const type of [0x00, 0x06, 0x10, 0x11, 0x14, 0x16, 0x17, 0xff]) {
    expectError(writeFrame(type, 12, { ns: 'x' }), 'unknown-frame', 12)
  }
})

test('parseClientFrame: PING (0x05) is the client\'s liveness probe, whatever its id or meta', () => {
  assert.equal(parseClientFrame(writeFrame(FrameType.Ping, 0, null)), { type: 'ping', sid: 0 })
  assert.equal(parseClientFrame(writeFrame(FrameType.Ping, 7, { x: 1 })), { type: 'ping', sid: 0 })
})

test('parseClientFrame: OPEN with an unknown endpoint → unknown-endpoint', () => {
  for (const ep of ['nope', 'ECHO', '', 'toString', '__proto__', 5, null, undefined]) {
    expectError(writeFrame(FrameType.Open, 8, { ep, ns: 'x' }), 'unknown-endpoint', 8)
  }
})

test('parseClientFrame: wrong field types → bad-request, with the stream id (and req when known)', () => {
  const open = (id: number, meta: object | null): Uint8Array => writeFrame(FrameType.Open, id, meta)
  expectError(open(0, { ep: 'echo', ns: 'x' }), 'bad-request', 0) // id 0 is reserved
  expectError(open(1, null), 'bad-request', 1)
  expectError(open(1, { ep: 'echo' }), 'bad-request', 1)
  expectError(open(1, { ep: 'echo', ns: 5 }), 'bad-request', 1)
  expectError(open(1, { ep: 'echo', ns: '' }), 'bad-request', 1)
  expectError(open(1, { ep: 'echo', ns: 'n'.repeat(NAME_MAX + 1) }), 'bad-request', 1)
  expectError(open(1, { ep: 'echo', ns: ['x'] }), 'bad-request', 1)
  expectError(open(2, { ep: 'kv', ns: 'x', epoch: 5, seq: 1 }), 'bad-request', 2)
  expectError(open(2, { ep: 'kv', ns: 'x', epoch: 'e', seq: -1 }), 'bad-request', 2)
  expectError(open(2, { ep: 'kv', ns: 'x', epoch: 'e', seq: 1.5 }), 'bad-request', 2)
  expectError(open(2, { ep: 'kv', ns: 'x', epoch: 'e', seq: '1' }), 'bad-request', 2)
  expectError(open(2, { ep: 'kv', ns: 'x', epoch: 'e' }), 'bad-request', 2)
  expectError(open(2, { ep: 'kv', ns: 'x', seq: 3 }), 'bad-request', 2)
  expectError(open(2, { ep: 'kv', ns: 'x', epoch: 'e'.repeat(65), seq: 3 }), 'bad-request', 2)
  expectError(open(3, { ep: 'relay', ns: 'x', local: 'a' }), 'bad-request', 3)
  expectError(open(3, { ep: 'relay', ns: 'x', local: 'a', remote: 7 }), 'bad-request', 3)
  expectError(open(3, { ep: 'relay', ns: 'x', local: 'a', remote: 'a' }), 'bad-request', 3)

  const request = (meta: object | null): Uint8Array => writeFrame(FrameType.Request, 4, meta)
  expectError(request(null), 'bad-request', 4)
  expectError(request({ op: 'set', key: 'k' }), 'bad-request', 4)
  expectError(request({ op: 'set', key: 'k', req: '1' }), 'bad-request', 4)
  expectError(request({ op: 'set', key: 'k', req: -1 }), 'bad-request', 4)
  expectError(request({ op: 'set', key: 5, req: 7 }), 'bad-request', 4, 7)
  expectError(request({ op: 'set', key: '', req: 7 }), 'bad-request', 4, 7)
  expectError(request({ op: 'set', key: 'k'.repeat(NAME_MAX + 1), req: 7 }), 'bad-request', 4, 7)
  expectError(request({ op: 'set', key: 'k', req: 7, ttl: 0 }), 'bad-request', 4, 7)
  expectError(request({ op: 'set', key: 'k', req: 7, ttl: -5 }), 'bad-request', 4, 7)
  expectError(request({ op: 'set', key: 'k', req: 7, ttl: 1.5 }), 'bad-request', 4, 7)
  expectError(request({ op: 'set', key: 'k', req: 7, ttl: '100' }), 'bad-request', 4, 7)
  expectError(request({ op: 'set', key: 'k', req: 7, ttl: null }), 'bad-request', 4, 7)
  expectError(request({ op: 'get', key: 'k', req: 7 }), 'bad-request', 4, 7)
  expectError(request({ key: 'k', req: 7 }), 'bad-request', 4, 7)
})

test('parseClientFrame never throws on random bytes', () => {
  let seed = 0x5eed
  const rand = (): number => { seed = (seed * 1103515245 + 12345) >>> 0; return seed >>> 8 }
  for (let i = 0; i < 5000; i++) {
    const len = rand() % 64
    const b = new Uint8Array(len)
    for (let j = 0; j < len; j++) b[j] = rand() & 0xff
    // sometimes a plausible header with a small metaLen, so the JSON path is exercised too
    if (len >= HEADER_SIZE && i % 2 === 0) { b[0] = 1 + (rand() % 4); b[5] = rand() % 4; new DataView(b.buffer).setUint32(6, rand() % (len - HEADER_SIZE + 1)) }
    const parsed = parseClientFrame(b)
    assert.type(parsed, 'object')
  }
})

// ---- rewriteId ----

test('rewriteId changes only the id, in place, also inside a larger buffer', () => {
  const frame = writeFrame(FrameType.Data, 1, { a: 1 }, encodePayload('x'))
  const copy = frame.slice()
  rewriteId(frame, 0xdeadbeef)
  assert.is(readFrame(frame)?.id, 0xdeadbeef)
  assert.equal([...frame.subarray(0, 1)], [...copy.subarray(0, 1)])
  assert.equal([...frame.subarray(5)], [...copy.subarray(5)])

  const big = new Uint8Array(frame.length + 8)
  big.set(copy, 4)
  const view = big.subarray(4, 4 + copy.length)
  rewriteId(view, 77)
  assert.is(readFrame(view)?.id, 77)
  assert.equal([...big.subarray(0, 4)], [0, 0, 0, 0], 'bytes before the view untouched')
  assert.equal([...big.subarray(4 + copy.length)], new Array(4).fill(0), 'bytes after the view untouched')
})

// ---- encodePayload / decodePayload ----

test('encodePayload / decodePayload: binary in every form comes back as a Uint8Array of the same bytes', () => {
  const u8 = new Uint8Array([1, 2, 3, 250])
  const e1 = encodePayload(u8)
  assert.is(e1.kind, Kind.Binary)
  assert.is(e1.bytes, u8, 'a Uint8Array is not copied on encode')
  const back = decodePayload(e1.kind, e1.bytes) as Uint8Array
  assert.instance(back, Uint8Array)
  assert.equal([...back], [1, 2, 3, 250])
  assert.is.not(back.buffer, u8.buffer, 'decoded binary owns its buffer')

  const ab = new Uint8Array([4, 5, 6]).buffer
  const e2 = encodePayload(ab)
  assert.is(e2.kind, Kind.Binary)
  assert.equal([...(decodePayload(e2.kind, e2.bytes) as Uint8Array)], [4, 5, 6])

  // views with an offset: only the viewed bytes travel
  const backing = new Uint8Array([0, 0, 1, 2, 3, 4, 0, 0]).buffer
  const dv = new DataView(backing, 2, 4)
  const e3 = encodePayload(dv)
  assert.is(e3.kind, Kind.Binary)
  assert.equal([...(decodePayload(e3.kind, e3.bytes) as Uint8Array)], [1, 2, 3, 4])

  const u16 = new Uint16Array([0x0102, 0xffff])
  const e4 = encodePayload(u16)
  assert.is(e4.kind, Kind.Binary)
  assert.is(e4.bytes.length, 4)
  const back16 = decodePayload(e4.kind, e4.bytes) as Uint8Array
  assert.equal([...new Uint16Array(back16.buffer, back16.byteOffset, 2)], [0x0102, 0xffff])

  const f64 = new Float64Array([Math.PI]).subarray(0, 1)
  assert.is(encodePayload(f64).bytes.length, 8)

  const buf = Buffer.from('buffer bytes')
  const e5 = encodePayload(buf)
  assert.is(e5.kind, Kind.Binary)
  assert.is(dec.decode(decodePayload(e5.kind, e5.bytes) as Uint8Array), 'buffer bytes')

  const empty = encodePayload(new Uint8Array(0))
  assert.is(empty.kind, Kind.Binary)
  assert.equal([...(decodePayload(empty.kind, empty.bytes) as Uint8Array)], [])
})

test('encodePayload / decodePayload: strings, including non-ASCII, as UTF-8 text', () => {
  for (const s of ['', 'plain', 'café', '日本語', '😀 emoji', 'null', '{"looks":"like json"}', '\u0000nul']) {
    const e = encodePayload(s)
    assert.is(e.kind, Kind.Text)
    assert.equal([...e.bytes], [...enc.encode(s)])
    assert.is(decodePayload(e.kind, e.bytes), s)
  }
})

test('encodePayload / decodePayload: JSON values keep their type', () => {
  const values: unknown[] = [{ a: 1, b: [true, null, 'x'] }, [], {}, 0, -1.5, 1e21, null, true, false, [1, [2, [3]]], JSON.parse('{"__proto__":1}')]
  for (const v of values) {
    const e = encodePayload(v)
    assert.is(e.kind, Kind.Json, JSON.stringify(v))
    assert.equal(decodePayload(e.kind, e.bytes), v)
  }
  // null and false are values, not "no payload"
  assert.is(decodePayload(Kind.Json, encodePayload(null).bytes), null)
  assert.is(decodePayload(Kind.Json, encodePayload(false).bytes), false)
  assert.is(decodePayload(Kind.Json, encodePayload(0).bytes), 0)
  // undefined is no payload at all
  assert.equal(encodePayload(undefined), { kind: Kind.None, bytes: new Uint8Array(0) })
  assert.is(decodePayload(Kind.None, new Uint8Array(0)), undefined)
})

test('encodePayload throws a TypeError for values JSON cannot encode', () => {
  assert.throws(() => encodePayload(10n), TypeError)
  const cyclic: Record<string, unknown> = {}
  cyclic.self = cyclic
  assert.throws(() => encodePayload(cyclic), TypeError)
  assert.throws(() => encodePayload(() => 1), TypeError)
  assert.throws(() => encodePayload(Symbol('s')), TypeError)
})

test('decodePayload throws on malformed JSON or UTF-8 (callers turn that into an error event)', () => {
  assert.throws(() => decodePayload(Kind.Json, enc.encode('{nope')))
  assert.throws(() => decodePayload(Kind.Text, new Uint8Array([0xff, 0xfe])))
  assert.throws(() => decodePayload(Kind.Json, new Uint8Array([0x22, 0xff, 0x22])))
})

// ---- events ----

test('writeEchoEvent: one buffer per publish, the same bytes decode for every receiver', () => {
  const meta = echoEventMeta('room', 'conn.1')
  for (const data of ['héllo', { n: 1 }, new Uint8Array([1, 2, 3]), undefined]) {
    const payload = encodePayload(data)
    const frame = writeEchoEvent(meta, payload)
    assert.instance(frame, Uint8Array)
    // what N subscribers receive is this one buffer; each reads it independently
    for (let receiver = 0; receiver < 3; receiver++) {
      const read = readFrame(frame)
      assert.ok(read !== null)
      assert.is(read?.type, FrameType.Event)
      assert.is(read?.id, 0)
      assert.equal(read?.meta, { ep: 'echo', ns: 'room', from: 'conn.1' })
      assert.is(read?.kind, payload.kind)
      assert.equal(decodePayload(read?.kind ?? -1, read?.payload ?? new Uint8Array()), data instanceof Uint8Array ? new Uint8Array(data) : data)
    }
    // byte for byte the same as the generic encoder would produce
    assert.equal([...frame], [...writeFrame(FrameType.Event, 0, { ep: 'echo', ns: 'room', from: 'conn.1' }, payload.kind === Kind.None ? undefined : payload)])
  }
})

test('echoEventMeta escapes names (quotes, unicode) into valid JSON', () => {
  const meta = echoEventMeta('ns "quoted" \\ ünï', 'c.1')
  const read = readFrame(writeEchoEvent(meta, encodePayload('x')))
  assert.equal(read?.meta, { ep: 'echo', ns: 'ns "quoted" \\ ünï', from: 'c.1' })
})

test('writeKvEvent: set carries the value and ttl; delete/expire carry no payload', () => {
  const set = readFrame(writeKvEvent({ op: 'set', ns: 'n', epoch: 'e', key: 'k', seq: 3, kind: Kind.Text, value: enc.encode('v'), ttl: 500 }))
  assert.equal(set?.meta, { ep: 'kv', ns: 'n', op: 'set', key: 'k', seq: 3, epoch: 'e', ttl: 500 })
  assert.is(set?.type, FrameType.Event)
  assert.is(decodePayload(set?.kind ?? -1, set?.payload ?? new Uint8Array()), 'v')
  for (const op of ['delete', 'expire'] as const) {
    const read = readFrame(writeKvEvent({ op, ns: 'n', epoch: 'e', key: 'k', seq: 4 }))
    assert.equal(read?.meta, { ep: 'kv', ns: 'n', op, key: 'k', seq: 4, epoch: 'e' })
    assert.is(read?.kind, Kind.None)
    assert.is(read?.payload.length, 0)
  }
})

// ---- server → client: parseServerFrame and each endpoint's writer ↔ reader ----

/** What a client reads from the bytes a server writer made. */
function serverFrame (bytes: Uint8Array): NonNullable<ReturnType<typeof parseServerFrame>> {
  const parsed = parseServerFrame(bytes)
  assert.ok(parsed !== null, 'a server frame parses')
  return parsed as NonNullable<ReturnType<typeof parseServerFrame>>
}

test('parseServerFrame with an EventMemo: a repeated echo meta is not parsed again, and every frame still reads as without it', () => {
  const memo = eventMemo()
  const enc = new TextEncoder()
  const event = (ns: string, from: string, text: string): Uint8Array => writeEchoEvent(echoEventMeta(ns, from), { kind: Kind.Text, bytes: enc.encode(text) })
  const frames = [
    event('room', 'c1.1', 'a'), event('room', 'c1.1', 'b'), event('room', 'c2.1', 'c'), event('room', 'c1.1', 'd'),
    event('other', 'c1.1', 'e'), event('other', 'c1.1', 'f'),
    writeKvEvent({ op: 'set', ns: 'room', epoch: 'e', key: 'k', seq: 3, kind: Kind.Text, value: enc.encode('v'), ttl: 500 }),
    event('other', 'c1.1', 'g'),
    writeKvEvent({ op: 'set', ns: 'room', epoch: 'e', key: 'k', seq: 3, kind: Kind.Text, value: enc.encode('w'), ttl: 500 })
  ]
  const plain = frames.map((f) => parseServerFrame(f))
  const memoized = frames.map((f) => parseServerFrame(f, memo))
  assert.equal(memoized, plain, 'the same frames, field for field')
  const metas = memoized.map((f) => (f as { raw: { meta: object } }).raw.meta)
  assert.ok(metas[1] === metas[0], 'the second EVENT of a sender reuses the first one\'s meta object')
  assert.ok(metas[2] !== metas[1] && metas[3] !== metas[2] && metas[4] !== metas[3], 'another sender or namespace is parsed')
  assert.ok(metas[8] !== metas[6], 'kv metas are never shared: each reaches the app')
  assert.is(memo.topic, 'echo:other')
  // A frame whose meta bytes match the memo but is cut short is still malformed.
  const cut = frames[5].subarray(0, HEADER_SIZE + 5)
  assert.is(parseServerFrame(cut, memo), null)
  // A Node Buffer view into a larger buffer (ws's 'nodebuffer' messages) reads the same.
  const big = Buffer.alloc(frames[5].length + 20)
  big.set(frames[5], 7)
  const view = parseServerFrame(big.subarray(7, 7 + frames[5].length), memo) as { topic: string, raw: { meta: object, payload: Uint8Array } }
  const want = plain[5] as { topic: string, raw: { meta: object, payload: Uint8Array } }
  assert.equal([view.topic, view.raw.meta, [...view.raw.payload]], [want.topic, want.raw.meta, [...want.raw.payload]])
})

test('parseServerFrame: every server frame type, typed; unknown types → unknown (ignored), malformed → null', () => {
  assert.equal(serverFrame(writeFrame(FrameType.Hello, 0, { v: 1, conn: 'c' })), { type: 'hello', meta: { v: 1, conn: 'c' } })
  assert.equal(serverFrame(writeFrame(FrameType.Pong, 0, null)), { type: 'pong' })
  const names = { [FrameType.Opened]: 'opened', [FrameType.Closed]: 'closed', [FrameType.Reply]: 'reply', [FrameType.Error]: 'error', [FrameType.Ack]: 'ack', [FrameType.Data]: 'data' }
  for (const [type, name] of Object.entries(names)) {
    const f = serverFrame(writeFrame(Number(type), 7, { x: 1 }))
    assert.is(f.type, name)
    assert.ok('sid' in f && f.sid === 7 && f.meta.x === 1)
  }
  const event = serverFrame(writeFrame(FrameType.Event, 0, { ep: 'kv', ns: 'room' }))
  assert.ok(event.type === 'event' && event.topic === 'kv:room')
  assert.equal(parseServerFrame(writeFrame(FrameType.Open, 1, { ep: 'echo', ns: 'n' })), { type: 'unknown', frameType: FrameType.Open })
  assert.equal(parseServerFrame(writeFrame(0x7f, 3, null)), { type: 'unknown', frameType: 0x7f })
  assert.is(parseServerFrame(new Uint8Array([0x11, 0, 0])), null)
})

test('the endpoint table: every endpoint has its request ops, each op belongs to one endpoint', () => {
  assert.equal(ENDPOINTS, ['echo', 'kv', 'relay', 'peers', 'signal'])
  assert.equal(REQUEST_OPS, { echo: [], kv: ['set', 'delete'], relay: [], peers: ['update'], signal: ['settled'] })
})

test('echo and kv: what the server writes, the client reads back', () => {
  const echo = serverFrame(writeEchoEvent(echoEventMeta('n', 'c.1'), encodePayload('hi')))
  assert.ok(echo.type === 'event')
  assert.is(readEchoFrom(echo.raw), 'c.1')
  const set = serverFrame(writeKvEvent({ op: 'set', ns: 'n', epoch: 'e', key: 'k', seq: 3, kind: Kind.Text, value: enc.encode('v'), ttl: 500 }))
  assert.ok(set.type === 'event')
  const change = readKvEvent(set.raw)
  assert.equal(change, { op: 'set', key: 'k', seq: 3, epoch: 'e', ttl: 500 })
  assert.is(decodePayload(set.raw.kind, set.raw.payload), 'v')
  const expire = serverFrame(writeKvEvent({ op: 'expire', ns: 'n', epoch: 'e', key: 'k', seq: 4 }))
  assert.ok(expire.type === 'event')
  assert.equal(readKvEvent(expire.raw), { op: 'expire', key: 'k', seq: 4, epoch: 'e' })
  assert.is(readKvEvent(writeFrameRaw(FrameType.Event, { ep: 'kv', ns: 'n', op: 'set', key: 1, seq: 1, epoch: 'e' })), null)
  const page = serverFrame(writeKvKeys(5, ['a', 'b']))
  assert.ok(page.type === 'data' && page.sid === 5)
  assert.equal(readKvKeys(page.meta), ['a', 'b'])
  assert.equal(readKvKeys({ keys: ['a', 2, null, 'c'] }), ['a', 'c'])
  assert.equal(readKvReply(kvReplyMeta(1, 9, 'e', 100) as Record<string, unknown>), { seq: 9, epoch: 'e', ttl: 100 })
  assert.equal(readKvReply(kvReplyMeta(1, 9, 'e') as Record<string, unknown>), { seq: 9, epoch: 'e', ttl: null })
  assert.is(readKvReply(kvReplyMeta(1, null, null) as Record<string, unknown>), null)
})

test('relay, peers and signal: what the server writes, the client reads back', () => {
  const ack = serverFrame(writeRelayAck(3, 4096))
  assert.ok(ack.type === 'ack' && ack.sid === 3)
  assert.is(readRelayAck(ack.raw), 4096)
  assert.is(readRelayAck(writeFrameRaw(FrameType.Ack, { bytes: -1 })), null)
  assert.is(readRelayWindow({ window: 1 }), RELAY_PRE_OPEN_WINDOW)
  assert.is(readRelayWindow({ window: 2 ** 21 }), 2 ** 21)
  assert.is(readRelayWindow({}), null)

  const join = serverFrame(writePeersEvent('n', 'join', { id: 'a', meta: { name: 'A' } }))
  assert.ok(join.type === 'event' && join.topic === 'peers:n')
  assert.equal(readPresenceChange(join.raw.meta ?? {}), { op: 'join', id: 'a', meta: { name: 'A' } })
  assert.equal(readPresenceChange({ op: 'leave', id: 'a', meta: null }), { op: 'leave', id: 'a', meta: {} })
  assert.is(readPresenceChange({ op: 'jump', id: 'a' }), null)
  const page = serverFrame(writePeersPage(2, [{ id: 'a', meta: {} }, { id: 'b', meta: { x: 1 } }]))
  assert.ok(page.type === 'data')
  assert.equal(readPresencePage(page.meta), [{ id: 'a', meta: {} }, { id: 'b', meta: { x: 1 } }])
  assert.equal(readPresencePage({ peers: [{ id: 1 }, null, { id: 'c', meta: [1] }] }), [{ id: 'c', meta: {} }])
  assert.is(readPresencePage({}), null)

  const sent = readFrame(writeSignalTo(4, 'bob', encodePayload({ t: 'hello' })))
  assert.ok(sent !== null)
  const to = readSignalTo(sent)
  assert.is(to.to, 'bob')
  assert.equal(decodePayload(to.payload.kind, to.payload.bytes), { t: 'hello' })
  assert.is(readSignalTo(writeFrameRaw(FrameType.Data, { to: '' })).to, null)
  const delivered = serverFrame(writeSignalFrom('alice', to.payload))
  assert.ok(delivered.type === 'data')
  assert.is(readSignalFrom(delivered.raw), 'alice')
  const leave = serverFrame(writeSignalLeave('n', 'alice'))
  assert.ok(leave.type === 'event' && leave.topic === 'signal:n')
  assert.is(readSignalLeave(leave.raw), 'alice')
})

test('handshake accept: `rd: true` (the acceptor will send READY) is read; anything else is not', () => {
  const c = 'abcdefghijklmnopqrstu'
  assert.equal(readHandshake({ t: 'accept', c, tr: 'webrtc', rd: true }), { t: 'accept', c, tr: 'webrtc', rd: true })
  assert.equal(readHandshake({ t: 'accept', c, tr: 'webrtc' }), { t: 'accept', c, tr: 'webrtc' })
  assert.equal(readHandshake({ t: 'accept', c, tr: 'webrtc', rd: 'yes' }), { t: 'accept', c, tr: 'webrtc' })
  assert.is(readHandshake({ t: 'accept', c, tr: 'carrier-pigeon', rd: true }), null)
})

test('handshake md and sdp parts: `md` is read on hello, and on accept only with WebRTC chosen or mv; pi/pn only as a valid pair', () => {
  const c = 'abcdefghijklmnopqrstu'
  assert.equal(readHandshake({ t: 'hello', c, rtc: true, md: true }), { t: 'hello', c, rtc: true, md: true })
  assert.equal(readHandshake({ t: 'hello', c, rtc: true, md: 1 }), { t: 'hello', c, rtc: true })
  assert.equal(readHandshake({ t: 'accept', c, tr: 'webrtc', md: true }), { t: 'accept', c, tr: 'webrtc', md: true })
  assert.equal(readHandshake({ t: 'accept', c, tr: 'relay', mv: true, md: true }), { t: 'accept', c, tr: 'relay', mv: true, md: true })
  assert.equal(readHandshake({ t: 'accept', c, tr: 'relay', md: true }), { t: 'accept', c, tr: 'relay' }, 'relay for good: no media')
  const d = { type: 'offer', sdp: 'v=0' }
  assert.equal(readHandshake({ t: 'sdp', c, d, pi: 1, pn: 3 }), { t: 'sdp', c, d, pi: 1, pn: 3 })
  assert.equal(readHandshake({ t: 'sdp', c, d }), { t: 'sdp', c, d })
  for (const [pi, pn] of [[0, 1], [3, 3], [-1, 2], [0, MAX_SDP_PARTS + 1], [0.5, 2], ['0', 2], [0, undefined], [undefined, 2]]) {
    assert.is(readHandshake({ t: 'sdp', c, d, pi, pn }), null, `pi ${String(pi)}, pn ${String(pn)}`)
  }
})

/**
 * A stand-in RTCPeerConnection that records the descriptions it is given: enough to check what an
 * RtcSession makes of the parts a peer sends and how it cuts its own long descriptions (the real
 * negotiation is tested in Chromium, test/media.test.ts).
 */
function recordingPc (localSdp: string): { Ctor: RTCPeerConnectionConstructor, remote: string[] } {
  const remote: string[] = []
  class Recording {
    signalingState = 'stable'
    localDescription: { type: string, sdp: string } | null = null
    onicecandidate = null
    ondatachannel = null
    onconnectionstatechange = null
    onnegotiationneeded: (() => void) | null = null
    ontrack = null
    addTrack (): void {}
    restartIce (): void {}
    createDataChannel (): never { throw new Error('not here') }
    async createOffer (): Promise<{ type: string, sdp: string }> { return { type: 'offer', sdp: localSdp } }
    async createAnswer (): Promise<{ type: string, sdp: string }> { return { type: 'answer', sdp: localSdp } }
    async setLocalDescription (d: { type: string, sdp: string }): Promise<void> {
      this.localDescription = d
      this.signalingState = d.type === 'offer' ? 'have-local-offer' : 'stable'
    }

    async setRemoteDescription (d: { type: string, sdp: string }): Promise<void> {
      remote.push(d.sdp)
      this.signalingState = d.type === 'offer' ? 'have-remote-offer' : 'stable'
    }

    async addIceCandidate (): Promise<void> {}
    close (): void {}
  }
  return { Ctor: Recording as unknown as RTCPeerConnectionConstructor, remote }
}

test('RtcSession: a long description goes out in parts of SDP_PART characters and is read back whole; parts out of order, too long or of another type are dropped', async () => {
  const long = 'a=x\r\n'.repeat(Math.ceil(2.5 * SDP_PART / 5)).slice(0, Math.floor(2.5 * SDP_PART))
  const sent: Array<{ t: string, d: { type: string, sdp: string }, pi?: number, pn?: number }> = []
  const offerer = recordingPc(long)
  const a = new RtcSession(offerer.Ctor, {}, true, false, () => true, (m) => sent.push(m as never))
  ;(a.pc as unknown as { onnegotiationneeded: () => void }).onnegotiationneeded()
  await new Promise((resolve) => setTimeout(resolve, 10))
  assert.equal(sent.map((m) => [m.pi, m.pn, m.d.sdp.length]), [[0, 3, SDP_PART], [1, 3, SDP_PART], [2, 3, long.length - 2 * SDP_PART]])
  assert.is(sent.map((m) => m.d.sdp).join(''), long)

  const answerer = recordingPc('v=0')
  const b = new RtcSession(answerer.Ctor, {}, true, true, () => false, () => {})
  for (const m of sent) b.receive(m as never)
  await new Promise((resolve) => setTimeout(resolve, 10))
  assert.equal(answerer.remote, [long], 'read back whole, once')

  const bad = [
    [sent[0], sent[2], sent[1]], // out of order
    [sent[1], sent[2]], // no first part
    [sent[0], { ...sent[1], d: { type: 'answer', sdp: sent[1].d.sdp } }, sent[2]], // another type midway
    [sent[0], { ...sent[1], d: { type: 'offer', sdp: sent[1].d.sdp + 'x' } }, sent[2]] // a part over SDP_PART
  ]
  for (const parts of bad) {
    const fresh = recordingPc('v=0')
    const session = new RtcSession(fresh.Ctor, {}, true, true, () => false, () => {})
    for (const m of parts) session.receive(m as never)
    await new Promise((resolve) => setTimeout(resolve, 10))
    assert.equal(fresh.remote, [], 'dropped')
    session.close()
  }
  a.close()
  b.close()
})

/** A RawFrame with `meta` and no payload. */
function writeFrameRaw (type: number, meta: object): NonNullable<ReturnType<typeof readFrame>> {
  const raw = readFrame(writeFrame(type, 1, meta))
  assert.ok(raw !== null)
  return raw as NonNullable<ReturnType<typeof readFrame>>
}

// ---- relay batches of mux frames, and the client's queue ----

test('a batch carries mux frames whole and in order; malformed batches read as null, never throw', () => {
  const frames = [writeMux(MuxOp.Data, 1, Kind.Json, enc.encode('1'), 7), writeMux(MuxOp.Close, 3, 0, undefined, 8), new Uint8Array(BATCH_FRAME_MAX - 1).fill(5)]
  const batch = writeBatch(frames, frames.reduce((n, f) => n + f.length, 0))
  assert.is(batch[0], MUX_BATCH)
  assert.equal(readBatch(batch)?.map((f) => [...f]), frames.map((f) => [...f]))
  assert.is(readBatch(new Uint8Array([MUX_BATCH])), null, 'empty')
  assert.is(readBatch(new Uint8Array([MUX_BATCH, 0, 0])), null, 'a zero-length frame')
  assert.is(readBatch(new Uint8Array([MUX_BATCH, 0, 5, 1, 2])), null, 'a frame cut short')
  assert.is(readBatch(new Uint8Array([MUX_BATCH, 0, 1, 9, 0])), null, 'a length cut short')
  for (let i = 0; i < 2000; i++) {
    const junk = new Uint8Array(1 + Math.floor(Math.random() * 40)).map(() => Math.floor(Math.random() * 256))
    junk[0] = MUX_BATCH
    const read = readBatch(junk)
    if (read !== null) assert.is(read.reduce((n, f) => n + 2 + f.length, 1), junk.length, 'a batch that reads covers every byte')
  }
})

test('Fifo: first in, first out across compactions, retain and iteration keep the order', () => {
  const q = new Fifo<number>()
  for (let i = 0; i < 5000; i++) q.push(i)
  for (let i = 0; i < 3000; i++) assert.is(q.shift(), i)
  assert.is(q.length, 2000)
  assert.is(q.peek(), 3000)
  assert.is(q.last(), 4999)
  q.retain((n) => n % 2 === 0)
  assert.equal([...q].slice(0, 3), [3000, 3002, 3004])
  assert.is(q.length, 1000)
  for (let i = 0; i < 1000; i++) q.shift()
  assert.is(q.shift(), undefined)
  assert.is(q.peek(), undefined)
  q.push(1)
  assert.equal([...q], [1])
})

test.run()

// test/coalesce.test.ts — what the server has for one connection within one event-loop turn leaves
// in one write (src/server/flow.ts, `due`): the copies of several publishes that reached the
// server in one read, the EVENT of a kv set and its REPLY (sent after an `await`), every message
// in order. And
// what was due before the server closes a connection goes out before the close frame. And a
// lone message is not held back: it is written in the turn that sent it.
//
// In-memory broker only: the burst must reach the server in one read and be handled in one turn,
// which a Redis round trip between publish and delivery does not promise.
import * as net from 'node:net'
import { Readable } from 'node:stream'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import WebSocket from 'ws'
import { encodePayload, writeFrame } from '../src/protocol/codec.js'
import { FrameType } from '../src/protocol/frames.js'
import { rawClient, type RawClient } from './raw-client.js'
import { startYard, until } from './helpers.js'

interface TcpSocket { cork: () => void, uncork: () => void }
const tcp = (ws: WebSocket): TcpSocket => (ws as unknown as { _socket: TcpSocket })._socket

/**
 * Counts the writes (a `write` or a `writev`, as net.Socket hands them to libuv through its
 * `_writeGeneric`) of the server's sockets — accepted ones, which have `server` — while `during`
 * runs and until `done()`. The yard runs in this process, so what the client reads cannot tell
 * one write from ten (all ten are in its receive queue by the time it reads); the server's own
 * writes can.
 */
async function serverWrites (during: () => void, done: () => boolean, onWrite = (_writev: boolean): void => {}): Promise<number> {
  const proto = net.Socket.prototype as unknown as { _writeGeneric: (this: net.Socket, ...args: unknown[]) => unknown }
  const original = proto._writeGeneric
  let count = 0
  proto._writeGeneric = function (this: net.Socket, ...args: unknown[]) {
    if ((this as unknown as { server?: unknown }).server != null) {
      count++
      onWrite(args[0] === true) // _writeGeneric(writev, data, encoding, cb)
    }
    return original.apply(this, args)
  }
  try {
    during()
    await until(done, 2000, 'every message')
  } finally {
    proto._writeGeneric = original
  }
  return count
}

/** Everything `send` sends leaves in one TCP write of the client (ws corks each frame; this the lot). */
function inOneWrite (ws: WebSocket, send: () => void): void {
  tcp(ws).cork()
  send()
  tcp(ws).uncork()
}

async function yClient (url: string): Promise<{ ws: WebSocket, got: any[] }> {
  const ws = new WebSocket(`${url.replace(/\/$/, '')}/y-webrtc`)
  const got: any[] = []
  ws.on('message', (data) => got.push(JSON.parse(data.toString())))
  await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject) })
  ws.send(JSON.stringify({ type: 'subscribe', topics: ['room'] }))
  ws.send(JSON.stringify({ type: 'ping' }))
  await until(() => got.some((m) => m.type === 'pong'), 2000, 'subscribed')
  got.length = 0
  return { ws, got }
}

test('y-webrtc: 10 publishes in one read reach each subscriber (the sender too) in one write, in order', async () => {
  const yard = await startYard()
  const clients: WebSocket[] = []
  try {
    const subs = await Promise.all([1, 2, 3].map(async () => await yClient(yard.url)))
    const pub = await yClient(yard.url)
    const all = [...subs, pub]
    clients.push(...all.map((c) => c.ws))
    const writes = await serverWrites(() => inOneWrite(pub.ws, () => {
      for (let i = 0; i < 10; i++) pub.ws.send(JSON.stringify({ type: 'publish', topic: 'room', data: { i } }))
    }), () => all.every((c) => c.got.length >= 10))
    for (const [n, c] of all.entries()) assert.equal(c.got.map((m) => m.data.i), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], `client ${n}: every copy, in order`)
    assert.is(writes, all.length, `one write per subscriber for the 10 copies (${writes} writes to ${all.length} sockets)`)
  } finally {
    for (const ws of clients) ws.terminate()
    await yard.close()
  }
})

test('echo: 10 publishes in one read reach a subscriber as 10 EVENTs in one write, in order', async () => {
  const yard = await startYard()
  const raws: RawClient[] = []
  try {
    const a = await rawClient(yard, raws)
    const b = await rawClient(yard, raws)
    assert.is((await a.open(1, { ep: 'echo', ns: 'burst' })).type, FrameType.Opened)
    assert.is((await b.open(1, { ep: 'echo', ns: 'burst' })).type, FrameType.Opened)
    const events = (c: RawClient): string[] => c.frames.filter((f) => f.type === FrameType.Event).map((f) => Buffer.from(f.payload).toString())
    const writes = await serverWrites(() => inOneWrite(a.ws, () => {
      for (let i = 0; i < 10; i++) a.sendRaw(writeFrame(FrameType.Data, 1, null, encodePayload(`m${i}`)))
    }), () => events(a).length === 10 && events(b).length === 10)
    const sent = Array.from({ length: 10 }, (_, i) => `m${i}`)
    assert.equal(events(b), sent, 'the subscriber: every EVENT, in order')
    assert.equal(events(a), sent, 'the sender (subscribed too): every EVENT, in order')
    assert.is(writes, 2, `one write per subscriber for the 10 EVENTs (${writes} writes to 2 sockets)`)
  } finally {
    for (const c of raws) c.ws.terminate()
    await yard.close()
  }
})

test('relay: 10 DATA frames in one read reach the other side in one write, in order', async () => {
  const yard = await startYard()
  const raws: RawClient[] = []
  try {
    const a = await rawClient(yard, raws)
    const b = await rawClient(yard, raws)
    const opened = await Promise.all([a.open(1, { ep: 'relay', ns: 'one-write', local: 'a', remote: 'b' }), b.open(1, { ep: 'relay', ns: 'one-write', local: 'b', remote: 'a' })])
    assert.equal(opened.map((f) => f.type), [FrameType.Opened, FrameType.Opened])
    const data = (): string[] => b.frames.filter((f) => f.type === FrameType.Data).map((f) => Buffer.from(f.payload).toString())
    let toB = 0
    const writes = await serverWrites(() => inOneWrite(a.ws, () => {
      for (let i = 0; i < 10; i++) a.sendRaw(writeFrame(FrameType.Data, 1, null, encodePayload(`m${i}`)))
    }), () => data().length === 10 && a.frames.some((f) => f.type === FrameType.Ack), () => { toB++ })
    assert.equal(data(), Array.from({ length: 10 }, (_, i) => `m${i}`), 'every frame, in order')
    // One write to B for the 10 frames, one to A for their ACK: before, the relay's check for a
    // full socket flushed before every frame (10 writes to B).
    assert.is(writes, 2, `one write to each side (${toB} writes)`)
  } finally {
    for (const c of raws) c.ws.terminate()
    await yard.close()
  }
})

test('kv: the writer gets the EVENT of its set and the REPLY (sent after an await) in one write, EVENT first', async () => {
  const yard = await startYard()
  const raws: RawClient[] = []
  try {
    const c = await rawClient(yard, raws)
    assert.is((await c.open(1, { ep: 'kv', ns: 'one-write' })).type, FrameType.Opened)
    assert.equal(c.frames, [], 'an empty namespace: OPENED and nothing else')
    const writes = await serverWrites(() => c.send(FrameType.Request, 1, { req: 7, op: 'set', key: 'k' }, 'v'),
      () => c.frames.some((f) => f.type === FrameType.Reply))
    assert.equal(c.frames.map((f) => [f.type, f.meta?.op ?? f.meta?.req]), [[FrameType.Event, 'set'], [FrameType.Reply, 7]], 'the EVENT, then the REPLY')
    assert.is(writes, 1, `EVENT and REPLY in one write (${writes})`)
  } finally {
    for (const c of raws) c.ws.terminate()
    await yard.close()
  }
})

test('what is due when the server closes a connection goes out before the close frame', async () => {
  const yard = await startYard({ limits: { maxBadFrames: 3 } })
  try {
    const ws = new WebSocket(`${yard.url.replace(/\/$/, '')}/y-webrtc`)
    const got: any[] = []
    ws.on('message', (data) => got.push(JSON.parse(data.toString())))
    const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)))
    await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject) })
    // Four bad frames in one read: four errors due in one turn, the fourth closes the socket.
    inOneWrite(ws, () => { for (let i = 0; i < 4; i++) ws.send('{not json') })
    assert.is(await closed, 1008)
    assert.equal(got.map((m) => m.code), ['bad-frame', 'bad-frame', 'bad-frame', 'bad-frame'], 'every error before the close')
  } finally {
    await yard.close()
  }
})

test('a lone message is written in the event-loop turn that read what caused it, in one buffer: nothing waits for a timer', async () => {
  const yard = await startYard()
  // Turns of the event loop, counted by a setImmediate that keeps rescheduling itself.
  let turn = 0
  let ticking = true
  const tick = (): void => { turn++; if (ticking) setImmediate(tick) }
  setImmediate(tick)
  const readable = Readable.prototype as unknown as { push: (this: Readable, ...args: unknown[]) => boolean }
  const push = readable.push
  let readIn = -1
  readable.push = function (this: Readable, ...args: unknown[]) {
    if ((this as unknown as { server?: unknown }).server != null && args[0] !== null) readIn = turn
    return push.apply(this, args)
  }
  const ws = new WebSocket(`${yard.url.replace(/\/$/, '')}/y-webrtc`)
  try {
    await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject) })
    let pong: unknown = null
    ws.once('message', (data) => { pong = JSON.parse(data.toString()) })
    let writtenIn = -1
    let vectored = false
    const writes = await serverWrites(() => ws.send(JSON.stringify({ type: 'ping' })), () => pong !== null, (writev) => { writtenIn = turn; vectored = writev })
    assert.equal(pong, { type: 'pong' })
    assert.is(writes, 1)
    assert.is(vectored, false, 'a small message is one buffer (its header copied in front), not a two-piece writev')
    assert.ok(readIn >= 0, 'the server read the ping')
    assert.is(writtenIn, readIn, `read in turn ${readIn}, written in turn ${writtenIn}`)
  } finally {
    ticking = false
    readable.push = push
    ws.terminate()
    await yard.close()
  }
})

test.run()

// test/signal-server.test.ts — the signal endpoint (directed signalling) against a real server,
// spoken to by raw WebSocket clients (docs/PROTOCOL.md "signal"; SPEC §3.5): DATA { to } reaches
// the one stream that holds `to`, as DATA { from } stamped by the server, and no one else in the
// namespace (not a connection with echo, peers and signal streams open there); `from` cannot be
// forged; an unknown target is answered with ERROR unknown-peer { to }; released ids are announced
// with EVENT leave; payloads travel byte for byte up to peers.maxSignal; the grace period holds an
// id (messages to it dropped) until its owner reclaims it.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { randomBytes } from 'node:crypto'
import type { Broker } from 'signalyard/server'
import { Kind, decodePayload, type RawFrame } from '../src/protocol/codec.js'
import { FrameType } from '../src/protocol/frames.js'
import { TEST_BROKER, sleep, startYard, testBroker, testRedisKeys } from './helpers.js'
import { rawClient, type RawClient } from './raw-client.js'

const GRACE = 200
const key = (name: string): string => `owner-key-of-${name}`.padEnd(20, '.')

/** A yard with a small grace period and its own broker (Redis in a `[redis]` run), closed after `body`. */
async function withYard (body: (client: () => Promise<RawClient>, broker: Broker) => Promise<void>, peers: object = {}): Promise<void> {
  const broker: Broker = await testBroker()
  const yard = await startYard({ broker, limits: { peers: { grace: GRACE, maxSignal: 64 * 1024, ...peers } } })
  const clients: RawClient[] = []
  try {
    await body(() => rawClient(yard, clients), broker)
  } finally {
    for (const c of clients) c.ws.terminate()
    await yard.close()
    await broker.close()
  }
}

/** A client holding signal id `id` in `ns` on stream `sid`. */
async function node (client: () => Promise<RawClient>, id: string, sid = 1, ns = 'sig'): Promise<RawClient> {
  const c = await client()
  const opened = await c.open(sid, { ep: 'signal', ns, id, key: key(id) })
  assert.is(opened.type, FrameType.Opened, `signal ${id}: ${JSON.stringify(opened.meta)}`)
  assert.type(opened.meta?.id, 'string')
  return c
}

const isData = (sid: number) => (f: RawFrame): boolean => f.type === FrameType.Data && f.id === sid
const isError = (sid: number) => (f: RawFrame): boolean => f.type === FrameType.Error && f.id === sid
const isLeave = (id: string, ns = 'sig') => (f: RawFrame): boolean =>
  f.type === FrameType.Event && f.meta?.ep === 'signal' && f.meta?.ns === ns && f.meta?.op === 'leave' && f.meta?.id === id

test('the yard keeps its ids in the broker the run names (Redis in a [redis] run)', async () => {
  await withYard(async (client, broker) => {
    await node(client, 'a', 1, 'where-are-ids-kept')
    assert.is((await broker.stats()).signals, 1)
    const inRedis = (await testRedisKeys()).filter((k) => k.includes('where-are-ids-kept'))
    if (TEST_BROKER === 'redis') assert.ok(inRedis.length > 0, 'the claim is a Redis key: this [redis] run really uses Redis')
    else assert.equal(inRedis, [], 'an in-memory run writes nothing to Redis')
  })
})

test('DATA { to } reaches only the stream holding `to`, as DATA { from } with the same kind and payload', async () => {
  await withYard(async (client) => {
    const a = await node(client, 'a', 3)
    const b = await node(client, 'b', 8)
    // c is in the namespace with every kind of stream, and must hear none of it
    const c = await node(client, 'c', 1)
    assert.is((await c.open(2, { ep: 'echo', ns: 'sig' })).type, FrameType.Opened)
    assert.is((await c.open(4, { ep: 'peers', ns: 'sig', id: 'c', key: key('c') })).type, FrameType.Opened)
    const before = c.frames.length

    a.send(FrameType.Data, 3, { to: 'b' }, { t: 'hello', c: 'x'.repeat(21), rtc: true })
    const got = await b.take(isData(8), 1000, 'directed DATA at b')
    assert.equal(got.meta, { from: 'a' })
    assert.is(got.kind, Kind.Json)
    assert.equal(decodePayload(got.kind, got.payload), { t: 'hello', c: 'x'.repeat(21), rtc: true })

    b.send(FrameType.Data, 8, { to: 'a' }, 'answer ✓')
    const back = await a.take(isData(3), 1000, 'directed DATA at a')
    assert.equal(back.meta, { from: 'b' })
    assert.is(back.kind, Kind.Text)
    assert.is(decodePayload(back.kind, back.payload), 'answer ✓')

    a.send(FrameType.Data, 3, { to: 'a' }, 'note to self')
    assert.is(decodePayload(Kind.Text, (await a.take(isData(3))).payload), 'note to self')

    await sleep(100)
    assert.equal(c.frames.slice(before), [], 'the third connection received nothing')
    assert.equal(a.frames, [], 'nothing else at the sender')
    assert.equal(b.frames, [], 'nothing else at the receiver')
  })
})

test('`from` cannot be forged: whatever meta the sender writes, the receiver sees its claimed id', async () => {
  await withYard(async (client) => {
    const b = await node(client, 'b')
    await node(client, 'a')
    const c = await node(client, 'c', 5)
    c.send(FrameType.Data, 5, { to: 'b', from: 'a' }, 'forged?')
    c.send(FrameType.Data, 5, { to: 'b', from: 'a', id: 'a', ep: 'signal' }, 'forged again?')
    for (const text of ['forged?', 'forged again?']) {
      const got = await b.take(isData(1), 1000, text)
      assert.equal(got.meta, { from: 'c' }, text)
      assert.is(decodePayload(got.kind, got.payload), text)
    }
  })
})

test('an unknown target → ERROR unknown-peer { to }; a bad `to` → bad-request; the stream goes on', async () => {
  await withYard(async (client) => {
    const a = await node(client, 'a', 2)
    const b = await node(client, 'b')
    await node(client, 'b', 1, 'other-namespace')
    a.send(FrameType.Data, 2, { to: 'nobody' }, 'hi')
    const err = await a.take(isError(2), 1000, 'unknown-peer')
    assert.is(err.meta?.code, 'unknown-peer')
    assert.is(err.meta?.to, 'nobody')
    assert.type(err.meta?.message, 'string')

    for (const [what, meta] of [['no to', {}], ['no meta', null], ['to a number', { to: 7 }], ['to empty', { to: '' }], ['to too long', { to: 'b'.repeat(257) }]] as const) {
      a.send(FrameType.Data, 2, meta, 'x')
      const f = await a.take(isError(2), 1000, what)
      assert.is(f.meta?.code, 'bad-request', what)
    }
    a.send(FrameType.Request, 2, { op: 'update', req: 3, meta: {} })
    const wrongOp = await a.take(isError(2), 1000, 'a request on a signal stream')
    assert.equal([wrongOp.meta?.code, wrongOp.meta?.req], ['bad-request', 3])

    a.send(FrameType.Data, 2, { to: 'b' }, 'still here')
    assert.is(decodePayload(Kind.Text, (await b.take(isData(1))).payload), 'still here')
  })
})

test('REQUEST settled { tr } counts a peer connection by transport in /metrics (REPLY { req }); any other tr → bad-request, nothing counted', async () => {
  const broker: Broker = await testBroker()
  const yard = await startYard({ broker })
  const clients: RawClient[] = []
  try {
    const a = await node(() => rawClient(yard, clients), 'a')
    const isAnswer = (req: number) => (f: RawFrame): boolean => (f.type === FrameType.Reply || f.type === FrameType.Error) && f.meta?.req === req
    a.send(FrameType.Request, 1, { op: 'settled', req: 1, tr: 'webrtc' })
    a.send(FrameType.Request, 1, { op: 'settled', req: 2, tr: 'relay' })
    a.send(FrameType.Request, 1, { op: 'settled', req: 3, tr: 'webrtc' })
    for (const req of [1, 2, 3]) assert.is((await a.take(isAnswer(req), 1000, `reply ${req}`)).type, FrameType.Reply)
    for (const [req, tr] of [[4, 'turn'], [5, 7], [6, null], [7, 'WEBRTC']] as const) {
      a.send(FrameType.Request, 1, { op: 'settled', req, tr })
      const f = await a.take(isAnswer(req), 1000, `tr ${String(tr)}`)
      assert.equal([f.type, f.meta?.code], [FrameType.Error, 'bad-request'])
    }
    const text = await yard.metrics()
    assert.match(text, /signalyard_peer_connections_total\{transport="webrtc"\} 2\n/)
    assert.match(text, /signalyard_peer_connections_total\{transport="relay"\} 1\n/)
  } finally {
    for (const c of clients) c.ws.terminate()
    await yard.close()
    await broker.close()
  }
})

test('binary payloads travel byte for byte up to peers.maxSignal; one byte more → payload-too-large', async () => {
  await withYard(async (client) => {
    const a = await node(client, 'a')
    const b = await node(client, 'b')
    const max = new Uint8Array(randomBytes(64 * 1024))
    a.send(FrameType.Data, 1, { to: 'b' }, max)
    const got = await b.take(isData(1), 2000, '64 KiB binary')
    assert.is(got.kind, Kind.Binary)
    assert.ok(Buffer.from(got.payload).equals(Buffer.from(max)), 'the same bytes')
    a.send(FrameType.Data, 1, { to: 'b' }, new Uint8Array(64 * 1024 + 1))
    assert.is((await a.take(isError(1), 1000, 'payload-too-large')).meta?.code, 'payload-too-large')
    a.send(FrameType.Data, 1, { to: 'b' }, new Uint8Array([0, 255, 1]))
    assert.equal([...(await b.take(isData(1))).payload], [0, 255, 1])
    await sleep(50)
    assert.not.ok(b.frames.some(isData(1)), 'the oversized message was not delivered')
  })
})

test('a released id is announced with EVENT leave (CLOSE at once, a vanished socket after the grace period)', async () => {
  await withYard(async (client, broker) => {
    const a = await node(client, 'a')
    const b = await node(client, 'b')
    const c = await node(client, 'c')
    const t0 = Date.now()
    b.send(FrameType.Close, 1, null)
    const left = await a.take(isLeave('b'), 1000, 'leave of b')
    assert.ok(Date.now() - t0 < 1000, 'leave within 1 s of CLOSE (SPEC §3.4)')
    assert.equal(left.meta, { ep: 'signal', ns: 'sig', op: 'leave', id: 'b' })
    await c.take(isLeave('b'), 1000, 'leave of b at c')
    a.send(FrameType.Data, 1, { to: 'b' }, 'gone?')
    assert.is((await a.take(isError(1))).meta?.code, 'unknown-peer')

    const t1 = Date.now()
    c.ws.terminate()
    await a.take(isLeave('c'), GRACE + 1000, 'leave of c after the grace period')
    const ms = Date.now() - t1
    assert.ok(ms >= GRACE && ms <= GRACE + 1000, `leave ${ms} ms after the socket closed (grace ${GRACE} ms)`)
    assert.is((await broker.stats()).signals, 1)
  })
})

test('during the grace period messages to the id are dropped silently; the owner reclaims it without a leave', async () => {
  await withYard(async (client) => {
    const a = await node(client, 'a')
    const b = await node(client, 'b', 4)
    const intruder = await client()
    b.ws.terminate()
    await sleep(50)
    a.send(FrameType.Data, 1, { to: 'b' }, 'into the void')
    const refused = await intruder.open(1, { ep: 'signal', ns: 'sig', id: 'b', key: key('intruder') })
    assert.equal([refused.type, refused.meta?.code], [FrameType.Closed, 'peer-id-taken'])
    const back = await node(client, 'b', 9)
    a.send(FrameType.Data, 1, { to: 'b' }, 'welcome back')
    const got = await back.take(isData(9), 1000, 'message to the reclaimed id')
    assert.is(decodePayload(got.kind, got.payload), 'welcome back')
    assert.equal(got.meta, { from: 'a' })
    await sleep(GRACE + 200)
    assert.equal(a.frames, [], 'no error for the dropped message, no leave for the reclaimed id')
    assert.equal(back.frames, [], 'the dropped message was not delivered later')
  })
})

test('the same key reclaims a live signal id: the old stream gets CLOSED peer-id-taken and receives no more', async () => {
  await withYard(async (client) => {
    const a = await node(client, 'a')
    const old = await node(client, 'b', 2)
    const fresh = await node(client, 'b', 3)
    const closed = await old.take((f) => f.type === FrameType.Closed && f.id === 2, 1000, 'CLOSED at the old stream')
    assert.is(closed.meta?.code, 'peer-id-taken')
    a.send(FrameType.Data, 1, { to: 'b' }, 'to the new owner')
    assert.is(decodePayload(Kind.Text, (await fresh.take(isData(3))).payload), 'to the new owner')
    old.ws.terminate()
    await sleep(GRACE + 200)
    assert.not.ok(a.frames.some(isLeave('b')), 'the old stream\'s socket closing releases nothing')
    a.send(FrameType.Data, 1, { to: 'b' }, 'still the new owner')
    assert.is(decodePayload(Kind.Text, (await fresh.take(isData(3))).payload), 'still the new owner')
  })
})

test('presence and signal ids are separate spaces', async () => {
  await withYard(async (client) => {
    const x = await client()
    const y = await client()
    const peersX = await x.open(1, { ep: 'peers', ns: 'sig', id: 'same', key: key('x') })
    const signalY = await y.open(1, { ep: 'signal', ns: 'sig', id: 'same', key: key('y') })
    assert.is(peersX.type, FrameType.Opened)
    assert.is(signalY.type, FrameType.Opened, 'another key holds "same" in presence only')
    const sender = await node(client, 's')
    sender.send(FrameType.Data, 1, { to: 'same' }, 'for y')
    assert.is(decodePayload(Kind.Text, (await y.take(isData(1))).payload), 'for y')
    await sleep(50)
    assert.not.ok(x.frames.some((f) => f.type === FrameType.Data), 'the presence holder gets no signal DATA')
  })
})

test('peers.maxPeers bounds a namespace\'s signal ids too (too-many-peers); a released id makes room', async () => {
  await withYard(async (client) => {
    const a = await node(client, 'a')
    const b = await node(client, 'b')
    const c = await client()
    const refused = await c.open(1, { ep: 'signal', ns: 'sig', id: 'c', key: key('c') })
    assert.equal([refused.type, refused.meta?.code], [FrameType.Closed, 'too-many-peers'])
    assert.is((await c.open(2, { ep: 'signal', ns: 'elsewhere', id: 'c', key: key('c') })).type, FrameType.Opened)
    a.send(FrameType.Close, 1, null)
    await b.take(isLeave('a'), 1000, 'leave of a')
    assert.is((await c.open(3, { ep: 'signal', ns: 'sig', id: 'c', key: key('c') })).type, FrameType.Opened)
  }, { maxPeers: 2 })
})

test.run()

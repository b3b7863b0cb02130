// test/peers-server.test.ts — the peers (presence) endpoint against a real server, spoken to by
// raw WebSocket clients (docs/PROTOCOL.md "peers"; SPEC §3.4): OPENED lists the members, every
// member's connection gets EVENT join / update / leave with meta, ids are owned by a key (another
// key is refused, the same key reclaims at once), CLOSE leaves at once, a vanished socket leaves
// after the grace period unless its owner came back, limits and malformed fields get coded answers.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { Broker, TopicHandler, Yard } from 'signalyard/server'
import type { RawFrame } from '../src/protocol/codec.js'
import { FrameType } from '../src/protocol/frames.js'
import { TEST_BROKER, sleep, startYard, testBroker, testRedisKeys, until } from './helpers.js'
import { rawClient, type RawClient } from './raw-client.js'

const GRACE = 200
const KEY_A = 'key-of-a-0123456789'
const KEY_B = 'key-of-b-0123456789'
const KEY_X = 'key-of-x-0123456789'

/**
 * A yard with a small grace period and its own broker (to check what it holds), closed after
 * `body`. The broker is the kind the run names (SIGNALYARD_TEST_BROKER): Redis in `[redis]` runs.
 */
async function withYard (body: (yard: Yard, client: () => Promise<RawClient>, broker: Broker) => Promise<void>, peers: object = {}): Promise<void> {
  const broker: Broker = await testBroker()
  const yard = await startYard({ broker, limits: { peers: { grace: GRACE, ...peers } } })
  const clients: RawClient[] = []
  try {
    await body(yard, () => rawClient(yard, clients), broker)
  } finally {
    for (const c of clients) c.ws.terminate()
    await yard.close()
    await broker.close()
  }
}

const join = (c: RawClient, sid: number, id: string, key: string, meta?: object, ns = 'room'): Promise<RawFrame> =>
  c.open(sid, meta === undefined ? { ep: 'peers', ns, id, key } : { ep: 'peers', ns, id, key, meta })

function assertOpened (f: RawFrame): void {
  assert.is(f.type, FrameType.Opened, `OPENED expected, got ${JSON.stringify(f.meta)}`)
  assert.type(f.meta?.id, 'string')
}

function assertClosed (f: RawFrame, code: string): void {
  assert.is(f.type, FrameType.Closed, `CLOSED ${code} expected, got type ${f.type} ${JSON.stringify(f.meta)}`)
  assert.is(f.meta?.code, code)
  assert.type(f.meta?.message, 'string')
}

/**
 * The members an OPENED lists, sorted by id: docs/PROTOCOL.md promises every member, in no
 * particular order (the in-memory broker lists them in join order, Redis in hash order).
 */
const members = (f: RawFrame): Array<{ id: string, meta: object }> =>
  [...(f.meta?.peers as Array<{ id: string, meta: object }>)].sort((x, y) => x.id < y.id ? -1 : x.id > y.id ? 1 : 0)

const isPresence = (op: string, id: string, ns = 'room') => (f: RawFrame): boolean =>
  f.type === FrameType.Event && f.meta?.ep === 'peers' && f.meta?.ns === ns && f.meta?.op === op && f.meta?.id === id

const presenceEvents = (c: RawClient): RawFrame[] => c.frames.filter((f) => f.type === FrameType.Event && f.meta?.ep === 'peers')

test('the yard keeps its ids in the broker the run names (Redis in a [redis] run)', async () => {
  await withYard(async (_yard, client, broker) => {
    const a = await client()
    assertOpened(await join(a, 1, 'a', KEY_A, {}, 'where-are-ids-kept'))
    assert.is((await broker.stats()).peers, 1)
    const inRedis = (await testRedisKeys()).filter((k) => k.includes('where-are-ids-kept'))
    if (TEST_BROKER === 'redis') assert.ok(inRedis.length > 0, 'the claim is a Redis key: this [redis] run really uses Redis')
    else assert.equal(inRedis, [], 'an in-memory run writes nothing to Redis')
  })
})

test('OPENED lists every member; join, update and leave reach every member with meta', async () => {
  await withYard(async (_yard, client, broker) => {
    const a = await client()
    const b = await client()
    const elsewhere = await client()

    const openedA = await join(a, 1, 'a', KEY_A, { name: 'Ann' })
    assertOpened(openedA)
    assert.equal(members(openedA), [{ id: 'a', meta: { name: 'Ann' } }], 'the joiner is listed')
    assertOpened(await join(elsewhere, 1, 'z', KEY_X, {}, 'other-room'))

    const openedB = await join(b, 7, 'b', KEY_B) // no meta: {}
    assertOpened(openedB)
    assert.equal(members(openedB), [{ id: 'a', meta: { name: 'Ann' } }, { id: 'b', meta: {} }])
    const joined = await a.take(isPresence('join', 'b'), 1000, 'join of b at a')
    assert.equal(joined.meta, { ep: 'peers', ns: 'room', op: 'join', id: 'b', meta: {} })
    assert.is(joined.id, 0)

    b.send(FrameType.Request, 7, { op: 'update', req: 41, meta: { name: 'Bob', tags: ['x'] } })
    const isReply = (f: RawFrame): boolean => f.type === FrameType.Reply && f.id === 7
    await until(() => b.frames.some(isReply), 1000, 'REPLY to update')
    const [ownUpdate, reply] = [b.frames.findIndex(isPresence('update', 'b')), b.frames.findIndex(isReply)]
    assert.equal(b.frames[reply].meta, { req: 41 })
    assert.ok(ownUpdate >= 0 && ownUpdate < reply, 'the updater got its own EVENT update before the REPLY')
    const updated = await a.take(isPresence('update', 'b'), 1000, 'update of b at a')
    assert.equal(updated.meta?.meta, { name: 'Bob', tags: ['x'] })

    const t0 = Date.now()
    b.send(FrameType.Close, 7, null)
    const left = await a.take(isPresence('leave', 'b'), 1000, 'leave of b at a')
    const ms = Date.now() - t0
    assert.ok(ms < 1000, `leave ${ms} ms after CLOSE (SPEC §3.4: within 1 s)`)
    assert.equal(left.meta, { ep: 'peers', ns: 'room', op: 'leave', id: 'b', meta: { name: 'Bob', tags: ['x'] } })

    await sleep(50)
    assert.equal(presenceEvents(elsewhere).map((f) => f.meta?.id), [], 'another namespace hears nothing of this one (and no echo of its own join)')
    a.send(FrameType.Close, 1, null)
    elsewhere.send(FrameType.Close, 1, null)
    await sleep(50)
    assert.is((await broker.stats()).peers, 0, 'nothing held once everyone left')
  })
})

test('a live id is refused to another key (peer-id-taken), and its owner keeps it undisturbed', async () => {
  await withYard(async (_yard, client) => {
    const a = await client()
    const intruder = await client()
    const watcher = await client()
    assertOpened(await join(a, 1, 'a', KEY_A, { v: 1 }))
    assertOpened(await join(watcher, 1, 'w', KEY_X))
    assertClosed(await join(intruder, 3, 'a', KEY_B, { v: 'evil' }), 'peer-id-taken')
    // the refused stream does not exist: it can be opened again with the same stream id
    assertOpened(await join(intruder, 3, 'i', KEY_B))
    // nor did the refusal change anything for the owner or the others
    await sleep(100)
    assert.equal(presenceEvents(watcher).filter((f) => f.meta?.id === 'a'), [], 'no event about a')
    assert.not.ok(a.frames.some((f) => f.type === FrameType.Closed), 'the owner\'s stream stays open')
    a.send(FrameType.Request, 1, { op: 'update', req: 1, meta: { v: 2 } })
    assert.equal((await watcher.take(isPresence('update', 'a'))).meta?.meta, { v: 2 })
  })
})

test('the same key from a new connection reclaims the id at once: the old stream gets CLOSED peer-id-taken, no leave', async () => {
  await withYard(async (_yard, client) => {
    const old = await client()
    const watcher = await client()
    assertOpened(await join(old, 5, 'a', KEY_A, { gen: 1 }))
    assertOpened(await join(watcher, 1, 'w', KEY_X))

    const fresh = await client()
    const opened = await join(fresh, 9, 'a', KEY_A, { gen: 2 })
    assertOpened(opened)
    assert.equal(members(opened), [{ id: 'a', meta: { gen: 2 } }, { id: 'w', meta: {} }])
    assertClosed(await old.take((f) => f.type === FrameType.Closed && f.id === 5, 1000, 'CLOSED at the old stream'), 'peer-id-taken')
    const rejoined = await watcher.take(isPresence('join', 'a'), 1000, 'join of the reclaimed id')
    assert.equal(rejoined.meta?.meta, { gen: 2 })

    // the old connection going away afterwards releases nothing
    old.ws.terminate()
    await sleep(GRACE + 300)
    assert.not.ok(watcher.frames.some(isPresence('leave', 'a')), 'no leave for a reclaimed id')
    fresh.send(FrameType.Request, 9, { op: 'update', req: 2, meta: { gen: 3 } })
    assert.equal((await watcher.take(isPresence('update', 'a'))).meta?.meta, { gen: 3 }, 'the new stream owns the id')
  })
})

test('a socket gone without CLOSE: the id leaves after the grace period, not before', async () => {
  // A grace of its own: the intruder's claim, 50 ms after the drop, must land inside it even on a
  // loaded machine with Redis round trips (at 200 ms it did not, once in a CI run).
  const GRACE = 700
  await withYard(async (_yard, client) => {
    const a = await client()
    const watcher = await client()
    const intruder = await client()
    assertOpened(await join(a, 1, 'a', KEY_A, { last: true }))
    assertOpened(await join(watcher, 1, 'w', KEY_X))
    const t0 = Date.now()
    a.ws.terminate()
    await sleep(50)
    assertClosed(await join(intruder, 1, 'a', KEY_B), 'peer-id-taken') // held during the grace period
    const left = await watcher.take(isPresence('leave', 'a'), GRACE + 1000, 'leave after the grace period')
    const ms = Date.now() - t0
    assert.ok(ms >= GRACE, `leave ${ms} ms after the socket closed, before the ${GRACE} ms grace`)
    assert.ok(ms <= GRACE + 1000, `leave ${ms} ms after the socket closed (grace ${GRACE} ms)`)
    assert.equal(left.meta?.meta, { last: true })
    assertOpened(await join(intruder, 2, 'a', KEY_B)) // free for anyone now
  }, { grace: GRACE })
})

test('the owner reconnecting within the grace period reclaims its id: join with the new meta, never a leave', async () => {
  // A grace of its own, long enough that a loaded machine reconnects well within it.
  const grace = 1000
  await withYard(async (yard, client, broker) => {
    const a = await client()
    const watcher = await client()
    assertOpened(await join(a, 1, 'a', KEY_A, { gen: 1 }))
    assertOpened(await join(watcher, 1, 'w', KEY_X))
    a.ws.terminate()
    await until(() => yard.health().connections === 1, 1000, 'the server saw the socket go') // the grace runs from here
    const back = await client()
    const opened = await join(back, 1, 'a', KEY_A, { gen: 2 })
    assertOpened(opened)
    assert.equal(members(opened), [{ id: 'a', meta: { gen: 2 } }, { id: 'w', meta: {} }])
    assert.equal((await watcher.take(isPresence('join', 'a'), 1000, 'join on reclaim')).meta?.meta, { gen: 2 })
    await sleep(grace + 300)
    assert.not.ok(watcher.frames.some(isPresence('leave', 'a')), 'no leave: the owner came back in time')
    assert.is((await broker.stats()).peers, 2)
  }, { grace })
})

test('limits: meta over peers.maxMeta (OPEN and update) → payload-too-large; a full namespace → too-many-peers', async () => {
  await withYard(async (_yard, client, broker) => {
    const a = await client()
    const b = await client()
    const c = await client()
    const meta = (bytes: number): object => ({ s: 'x'.repeat(bytes - '{"s":""}'.length) })
    assertClosed(await join(a, 1, 'a', KEY_A, meta(65)), 'payload-too-large')
    assertOpened(await join(a, 2, 'a', KEY_A, meta(64))) // exactly the limit
    a.send(FrameType.Request, 2, { op: 'update', req: 3, meta: meta(65) })
    const err = await a.take((f) => f.type === FrameType.Error && f.id === 2, 1000, 'ERROR for the update')
    assert.equal([err.meta?.code, err.meta?.req], ['payload-too-large', 3])

    assertOpened(await join(b, 1, 'b', KEY_B))
    assertClosed(await join(c, 1, 'c', KEY_X), 'too-many-peers')
    assertOpened(await join(c, 2, 'c', KEY_X, {}, 'another-room')) // the limit is per namespace
    // a refused OPEN leaves the connection unsubscribed: c hears nothing more from 'room'
    a.send(FrameType.Request, 2, { op: 'update', req: 4, meta: { small: 1 } })
    await b.take(isPresence('update', 'a'))
    await sleep(50)
    assert.not.ok(c.frames.some((f) => f.type === FrameType.Event && f.meta?.ns === 'room'), 'no events from the refused namespace')

    b.send(FrameType.Close, 1, null)
    await a.take(isPresence('leave', 'b'))
    assertOpened(await join(c, 3, 'c', KEY_X)) // room again
    assert.is((await broker.stats()).peers, 3)
  }, { maxMeta: 64, maxPeers: 2 })
})

test('malformed fields are refused with a coded CLOSED or ERROR; nothing is claimed', async () => {
  await withYard(async (_yard, client, broker) => {
    const c = await client()
    const bad: Array<[string, object]> = [
      ['key too short', { ep: 'peers', ns: 'room', id: 'a', key: 'k'.repeat(15) }],
      ['key too long', { ep: 'peers', ns: 'room', id: 'a', key: 'k'.repeat(129) }],
      ['key missing', { ep: 'peers', ns: 'room', id: 'a' }],
      ['key not a string', { ep: 'peers', ns: 'room', id: 'a', key: 1234567890123456789 }],
      ['id empty', { ep: 'peers', ns: 'room', id: '', key: KEY_A }],
      ['id too long', { ep: 'peers', ns: 'room', id: 'i'.repeat(257), key: KEY_A }],
      ['id not a string', { ep: 'peers', ns: 'room', id: 5, key: KEY_A }],
      ['id missing', { ep: 'peers', ns: 'room', key: KEY_A }],
      ['meta an array', { ep: 'peers', ns: 'room', id: 'a', key: KEY_A, meta: [1] }],
      ['meta a string', { ep: 'peers', ns: 'room', id: 'a', key: KEY_A, meta: 'hi' }],
      ['meta null', { ep: 'peers', ns: 'room', id: 'a', key: KEY_A, meta: null }],
      ['signal key too short', { ep: 'signal', ns: 'room', id: 'a', key: 'short' }],
      ['signal id too long', { ep: 'signal', ns: 'room', id: 'i'.repeat(257), key: KEY_A }]
    ]
    let sid = 10
    for (const [what, meta] of bad) {
      const f = await c.open(++sid, meta)
      assert.is(f.type, FrameType.Closed, what)
      assert.is(f.meta?.code, 'bad-request', what)
    }
    const { kvKeys, relayPairs, peers, signals } = await broker.stats()
    assert.equal({ kvKeys, relayPairs, peers, signals }, { kvKeys: 0, relayPairs: 0, peers: 0, signals: 0 })
    assertOpened(await join(c, 1, 'a', 'k'.repeat(16)))
    assertOpened(await join(c, 2, 'b', 'k'.repeat(128)))
    assertOpened(await c.open(3, { ep: 'kv', ns: 'room' }))

    const error = async (sid: number, what: string, code = 'bad-request'): Promise<RawFrame> => {
      const f = await c.take((f) => f.type === FrameType.Error && f.id === sid, 1000, what)
      assert.is(f.meta?.code, code, what)
      return f
    }
    c.send(FrameType.Request, 1, { op: 'update', req: 5, meta: 'not an object' })
    assert.is((await error(1, 'update with a string meta')).meta?.req, 5)
    c.send(FrameType.Request, 1, { op: 'set', req: 6, key: 'k' }, 'v')
    assert.is((await error(1, 'a kv op on a peers stream')).meta?.req, 6)
    c.send(FrameType.Request, 3, { op: 'update', req: 7, meta: {} })
    assert.is((await error(3, 'update on a kv stream')).meta?.req, 7)
    c.send(FrameType.Data, 1, null, 'hello')
    await error(1, 'DATA on a peers stream')
    // the streams survived all of it
    c.send(FrameType.Request, 1, { op: 'update', req: 8, meta: { ok: 1 } })
    assert.equal((await c.take((f) => f.type === FrameType.Reply && f.id === 1)).meta, { req: 8 })
    c.send(FrameType.Request, 3, { op: 'set', req: 9, key: 'k' }, 'v')
    assert.is((await c.take((f) => f.type === FrameType.Reply && f.id === 3)).meta?.req, 9)
  })
})

test('ids named like Object.prototype members are ordinary ids', async () => {
  await withYard(async (_yard, client, broker) => {
    const a = await client()
    const b = await client()
    for (const [sid, id] of [[1, '__proto__'], [2, 'constructor'], [3, 'toString']] as const) {
      const f = await join(a, sid, id, KEY_A, { id })
      assertOpened(f)
      assert.ok(members(f).some((p) => p.id === id), `${id} is listed`)
    }
    assertClosed(await join(b, 1, '__proto__', KEY_B), 'peer-id-taken')
    const opened = await join(b, 2, 'hasOwnProperty', KEY_B)
    assert.equal(members(opened).map((p) => p.id), ['__proto__', 'constructor', 'hasOwnProperty', 'toString'])
    a.send(FrameType.Close, 1, null)
    assert.equal((await b.take(isPresence('leave', '__proto__'))).meta?.meta, { id: '__proto__' })
    assert.is((await broker.stats()).peers, 3)
  })
})

/** The memory broker, but every call answers on a later turn and every topic message arrives on one (as with Redis). */
function asyncBroker (inner: Broker): Broker {
  const later = <T>(value: () => T): Promise<Awaited<T>> => new Promise((resolve, reject) => {
    setImmediate(() => { try { resolve(value() as Awaited<T>) } catch (err) { reject(err) } })
  })
  const wrapped = new Map<TopicHandler, TopicHandler>()
  return {
    ...inner,
    subscribe: (topic, handler) => {
      const late: TopicHandler = (m) => setImmediate(() => handler(m))
      wrapped.set(handler, late)
      return later(() => inner.subscribe(topic, late))
    },
    unsubscribe: (topic, handler) => later(() => inner.unsubscribe(topic, wrapped.get(handler) ?? handler)),
    claim: (request, sink) => later(() => inner.claim(request, sink)),
    direct: (ns, to, frame) => later(() => inner.direct(ns, to, frame))
  }
}

test('presence and signalling work the same through an asynchronous broker', async () => {
  const inner = await testBroker()
  const yard = await startYard({ broker: asyncBroker(inner), limits: { peers: { grace: GRACE } } })
  const clients: RawClient[] = []
  try {
    const a = await rawClient(yard, clients)
    const b = await rawClient(yard, clients)
    assertOpened(await join(a, 1, 'a', KEY_A, { n: 1 }))
    const openedB = await join(b, 1, 'b', KEY_B, { n: 2 })
    assertOpened(openedB)
    assert.equal(members(openedB), [{ id: 'a', meta: { n: 1 } }, { id: 'b', meta: { n: 2 } }])
    await a.take(isPresence('join', 'b'))
    b.send(FrameType.Request, 1, { op: 'update', req: 1, meta: { n: 3 } })
    await b.take((f) => f.type === FrameType.Reply && f.meta?.req === 1)
    assert.equal((await a.take(isPresence('update', 'b'))).meta?.meta, { n: 3 })
    assertClosed(await join(a, 2, 'b', KEY_A), 'peer-id-taken')

    assertOpened(await a.open(3, { ep: 'signal', ns: 'room', id: 'a', key: KEY_A }))
    assertOpened(await b.open(3, { ep: 'signal', ns: 'room', id: 'b', key: KEY_B }))
    a.send(FrameType.Data, 3, { to: 'b' }, 'hi b')
    const got = await b.take((f) => f.type === FrameType.Data && f.id === 3)
    assert.equal(got.meta, { from: 'a' })
    a.send(FrameType.Data, 3, { to: 'nobody' }, 'hi?')
    assert.is((await a.take((f) => f.type === FrameType.Error && f.id === 3)).meta?.code, 'unknown-peer')

    const b2 = await rawClient(yard, clients)
    assertOpened(await join(b2, 1, 'b', KEY_B, { n: 4 }))
    assertClosed(await b.take((f) => f.type === FrameType.Closed && f.id === 1), 'peer-id-taken')
    assert.equal((await a.take(isPresence('join', 'b'))).meta?.meta, { n: 4 })
    b2.send(FrameType.Close, 1, null)
    await a.take(isPresence('leave', 'b'), 1000, 'leave after CLOSE')
    await sleep(GRACE + 100)
    assert.not.ok(presenceEvents(a).some((f) => f.meta?.op === 'leave'), 'one leave only')
  } finally {
    for (const c of clients) c.ws.terminate()
    await yard.close()
    await inner.close()
  }
})

test.run()

// test/server-api.test.ts — the server-side API (SPEC §11): `yard.publish(ns, data)` reaching
// clients' echo streams, `yard.kv(ns)` (set / get / delete / keys, TTLs) on the store clients
// replicate, `yard.peers(ns)`, and the `onJoin` / `onLeave` hooks (once per join and leave; a
// reconnect within the grace or an owner's takeover is neither). Coded errors for bad input.
// Both brokers; plus two yards on one Redis (everything across processes, hooks per process).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { SignalChannel, type Channel } from 'signalyard'
import { createServer, memoryBroker, redisBroker, SignalyardError, type Broker, type PeerMeta, type ServerOptions, type Yard } from 'signalyard/server'
import { FrameType } from '../src/protocol/frames.js'
import { rawClient, type RawClient } from './raw-client.js'
import { collect, next, readyAll, sleep, startYard, until, within } from './helpers.js'
import { startRedis } from './redis.js'

/** Channels opened by a test, closed by `close`. */
function channels (): { open: (yard: Yard, ns: string) => Channel, close: () => void } {
  const list: Channel[] = []
  return {
    open: (yard, ns) => {
      const channel = SignalChannel(ns, { url: yard.url })
      list.push(channel)
      return channel
    },
    close: () => { for (const c of list) c.close() }
  }
}

type HookCall = [what: 'join' | 'leave', ns: string, member: PeerMeta]

/** onJoin / onLeave options that record every call, in order. */
function hooks (): { calls: HookCall[], options: Pick<ServerOptions, 'onJoin' | 'onLeave'> } {
  const calls: HookCall[] = []
  return {
    calls,
    options: {
      onJoin: (ns, member) => { calls.push(['join', ns, member]) },
      onLeave: (ns, member) => { calls.push(['leave', ns, member]) }
    }
  }
}

/** A code-checking predicate for assert.throws / rejects. */
const coded = (code: string) => (err: unknown): boolean => err instanceof SignalyardError && err.code === code

/** The code `promise` rejects with (fails when it resolves). */
async function rejection (promise: Promise<unknown>): Promise<string> {
  try {
    await promise
  } catch (err) {
    assert.instance(err, SignalyardError)
    return (err as SignalyardError).code
  }
  throw new Error('expected a rejection')
}

/** A raw client's presence OPEN (id held for owner `key`), answered OPENED. */
async function rawJoin (raw: RawClient, sid: number, ns: string, id: string, key: string, meta: object = {}): Promise<void> {
  const answer = await raw.open(sid, { ep: 'peers', ns, id, key, meta })
  assert.is(answer.type, FrameType.Opened, `OPEN of ${id}: ${JSON.stringify(answer.meta)}`)
}

const OWNER_KEY = 'k'.repeat(24)
const NAMES_BAD: unknown[] = ['', 'x'.repeat(257), 'lone\uD800', 42, null]

test('yard.publish reaches every echo stream of the namespace, self: false ones too, with from "server"; JSON, text and bytes keep their type', async () => {
  const yard = await startYard()
  const c = channels()
  try {
    const a = c.open(yard, 'room').echo()
    const b = c.open(yard, 'room').echo({ self: false })
    const other = c.open(yard, 'elsewhere').echo()
    await readyAll(a, b, other)
    const gotA = collect(a, 'data', 3)
    const gotB = collect(b, 'data', 3)
    await yard.publish('room', { type: 'notice', n: 1 })
    await yard.publish('room', 'plain text')
    await yard.publish('room', new Uint8Array([0, 1, 255]))
    for (const got of [await gotA, await gotB]) {
      assert.equal(got[0], [{ type: 'notice', n: 1 }, { from: 'server' }])
      assert.equal(got[1], ['plain text', { from: 'server' }])
      assert.instance(got[2][0], Uint8Array, 'bytes stay bytes')
      assert.equal([...got[2][0]], [0, 1, 255])
      assert.equal(got[2][1], { from: 'server' })
    }
    // The other namespace got nothing: its first message is the one published to it.
    const otherGot = next(other, 'data')
    await yard.publish('elsewhere', 'only this')
    assert.equal(await otherGot, ['only this', { from: 'server' }])
    // A client's own publish still carries its stream id.
    const fromClient = next(a, 'data')
    b.send('hi')
    assert.equal((await fromClient)[1].from, b.id)
  } finally {
    c.close()
    await yard.close()
  }
})

test('yard.publish: a bad namespace or unencodable data rejects bad-request; past maxFrame payload-too-large; nothing is sent', async () => {
  const yard = await startYard({ limits: { maxFrame: 4096 } })
  const c = channels()
  try {
    const echo = c.open(yard, 'room').echo()
    await readyAll(echo)
    const got: unknown[] = []
    echo.on('data', (d) => got.push(d))
    for (const ns of NAMES_BAD) assert.is(await rejection(yard.publish(ns as string, 1)), 'bad-request', `namespace ${JSON.stringify(ns)}`)
    assert.is(await rejection(yard.publish('room', { big: 10n })), 'bad-request', 'a BigInt does not encode')
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    assert.is(await rejection(yard.publish('room', cyclic)), 'bad-request', 'a cycle does not encode')
    assert.is(await rejection(yard.publish('room', 'x'.repeat(4096))), 'payload-too-large')
    await yard.publish('room', 'x'.repeat(3000)) // below the bound: sent
    await until(() => got.length === 1, 2000, 'the one message that fits')
    assert.is(got[0], 'x'.repeat(3000))
  } finally {
    c.close()
    await yard.close()
  }
})

test('yard.kv: a server set reaches connected replicas; a client set is read by get; values keep their type', async () => {
  const yard = await startYard()
  const c = channels()
  try {
    const replica = c.open(yard, 'game').kv()
    await readyAll(replica)
    const kv = yard.kv('game')
    const updates = collect(replica, 'update', 3)
    await kv.set('score', { alice: 3 })
    await kv.set('motd', 'hello')
    await kv.set('blob', new Uint8Array([9, 8, 7]))
    assert.equal((await updates).map(([key]) => key), ['score', 'motd', 'blob'])
    assert.equal(replica.get('score'), { alice: 3 })
    assert.is(replica.get('motd'), 'hello')
    assert.equal([...(replica.get('blob') as Uint8Array)], [9, 8, 7])
    // A late replica gets the server's keys in its snapshot.
    const late = c.open(yard, 'game').kv()
    await readyAll(late)
    assert.equal(late.toJSON(), replica.toJSON())
    // The other way: what a client writes, the server reads.
    await replica.set('cursor', { x: 1, y: 2 })
    assert.equal(await kv.get('cursor'), { x: 1, y: 2 })
    assert.equal(await kv.get('score'), { alice: 3 })
    assert.is(await kv.get('motd'), 'hello')
    const blob = await kv.get('blob')
    assert.instance(blob, Uint8Array)
    assert.equal([...(blob as Uint8Array)], [9, 8, 7])
    assert.is(await kv.get('missing'), undefined)
    assert.is(await yard.kv('other-ns').get('score'), undefined, 'namespaces are separate')
    // An overwrite from the server replaces a client's value everywhere.
    const overwritten = next(replica, 'update')
    await kv.set('cursor', { x: 5 })
    assert.equal(await overwritten, ['cursor', { x: 5 }])
    assert.equal(await kv.get('cursor'), { x: 5 })
  } finally {
    c.close()
    await yard.close()
  }
})

test('yard.kv: the app may reuse its buffer after set; delete tells replicas and says whether the key existed; keys lists the live keys', async () => {
  const yard = await startYard()
  const c = channels()
  try {
    const replica = c.open(yard, 'store').kv()
    await readyAll(replica)
    const kv = yard.kv('store')
    const buffer = new Uint8Array([1, 2, 3])
    await kv.set('bytes', buffer)
    buffer.fill(0)
    assert.equal([...(await kv.get('bytes') as Uint8Array)], [1, 2, 3], 'the stored value is a copy')
    await kv.set('a', 1)
    await replica.set('b', 2)
    assert.equal((await kv.keys()).sort(), ['a', 'b', 'bytes'])
    const deleted = next(replica, 'delete')
    assert.is(await kv.delete('a'), true)
    assert.equal(await deleted, ['a', 'deleted'])
    assert.is(await kv.delete('a'), false, 'already gone')
    assert.is(await kv.get('a'), undefined)
    assert.equal((await kv.keys()).sort(), ['b', 'bytes'])
    assert.is(replica.has('a'), false)
    await kv.delete('b')
    await kv.delete('bytes')
    assert.equal(await kv.keys(), [], 'an emptied namespace')
    assert.equal(await yard.kv('never-written').keys(), [])
    // Many keys: more than one snapshot page (about 64 KiB each), each key once.
    const value = 'v'.repeat(1000)
    await Promise.all(Array.from({ length: 150 }, (_, i) => kv.set(`k${i}`, value)))
    const keys = await kv.keys()
    assert.is(keys.length, 150)
    assert.is(new Set(keys).size, 150)
  } finally {
    c.close()
    await yard.close()
  }
})

test('yard.kv ttl: a key set with a ttl expires for replicas ("expired"), get and keys; the ttl is capped at kv.maxTtl', async () => {
  const yard = await startYard({ limits: { kv: { sweepInterval: 20, maxTtl: 400 } } })
  const c = channels()
  try {
    const replica = c.open(yard, 'ttl').kv()
    await readyAll(replica)
    const kv = yard.kv('ttl')
    await kv.set('short', 'soon gone', { ttl: 150 })
    await kv.set('capped', 'asked for an hour', { ttl: 3_600_000 })
    await kv.set('default', 'default ttl') // kv.defaultTtl (5 min) capped to maxTtl too
    assert.is(await kv.get('short'), 'soon gone')
    const expired = await collect(replica, 'delete', 1, 2000)
    assert.equal(expired[0], ['short', 'expired'])
    assert.is(await kv.get('short'), undefined)
    assert.equal((await kv.keys()).sort(), ['capped', 'default'])
    const rest = await collect(replica, 'delete', 2, 2000)
    assert.equal(rest.map(([key, reason]) => `${key as string}:${reason as string}`).sort(), ['capped:expired', 'default:expired'])
    assert.equal(await kv.keys(), [])
  } finally {
    c.close()
    await yard.close()
  }
})

test('yard.kv bad input: coded errors (bad-request, payload-too-large, too-many-keys), and nothing reaches the replicas', async () => {
  const yard = await startYard({ limits: { kv: { maxValue: 100, maxKeys: 2 } } })
  const c = channels()
  try {
    const replica = c.open(yard, 'strict').kv()
    await readyAll(replica)
    const updates: string[] = []
    replica.on('update', (key) => updates.push(key))
    for (const ns of NAMES_BAD) assert.throws(() => yard.kv(ns as string), coded('bad-request'), `namespace ${JSON.stringify(ns)}`)
    const kv = yard.kv('strict')
    for (const key of NAMES_BAD) {
      assert.is(await rejection(kv.set(key as string, 1)), 'bad-request', `set key ${JSON.stringify(key)}`)
      assert.is(await rejection(kv.get(key as string)), 'bad-request', `get key ${JSON.stringify(key)}`)
      assert.is(await rejection(kv.delete(key as string)), 'bad-request', `delete key ${JSON.stringify(key)}`)
    }
    for (const ttl of [0, -1, 1.5, Number.NaN]) assert.is(await rejection(kv.set('k', 1, { ttl })), 'bad-request', `ttl ${ttl}`)
    assert.is(await rejection(kv.set('k', { n: 1n })), 'bad-request', 'a BigInt does not encode')
    assert.is(await rejection(kv.set('k', 'x'.repeat(101))), 'payload-too-large')
    assert.is(await rejection(kv.set('k', new Uint8Array(101))), 'payload-too-large')
    await kv.set('k', 'x'.repeat(100)) // exactly the bound
    await kv.set('k2', 1)
    assert.is(await rejection(kv.set('k3', 1)), 'too-many-keys')
    await kv.set('k2', 2) // an overwrite is no new key
    await until(() => updates.length === 3, 2000, 'the accepted writes')
    assert.equal(updates, ['k', 'k2', 'k2'])
    assert.equal((await kv.keys()).sort(), ['k', 'k2'])
  } finally {
    c.close()
    await yard.close()
  }
})

test('yard.kv: the yard-wide KV budget (total.kv) bounds server writes too (quota-exceeded)', async () => {
  const yard = await startYard({ limits: { total: { kv: 2000 } } })
  try {
    const kv = yard.kv('budget')
    await kv.set('a', 'x'.repeat(1000)) // 1,001 + 256 bytes counted
    assert.is(await rejection(kv.set('b', 'x'.repeat(1000))), 'quota-exceeded')
    assert.equal(await kv.keys(), ['a'])
  } finally {
    await yard.close()
  }
})

test('yard.peers lists every member as { id, ...meta }, follows updates, drops leaves; a bad namespace rejects bad-request', async () => {
  const yard = await startYard()
  const c = channels()
  try {
    assert.equal(await yard.peers('lobby'), [], 'nobody yet')
    const alice = c.open(yard, 'lobby').createPeers()
    const bob = c.open(yard, 'lobby').createPeers()
    const carol = c.open(yard, 'elsewhere').createPeers()
    await alice.join({ id: 'alice', name: 'Alice' })
    await bob.join({ id: 'bob', name: 'Bob', tags: ['x'] })
    await carol.join({ id: 'carol' })
    const byId = (list: PeerMeta[]): PeerMeta[] => [...list].sort((x, y) => x.id.localeCompare(y.id))
    assert.equal(byId(await yard.peers('lobby')), [{ id: 'alice', name: 'Alice' }, { id: 'bob', name: 'Bob', tags: ['x'] }])
    assert.equal(await yard.peers('elsewhere'), [{ id: 'carol' }])
    await alice.join({ id: 'alice', name: 'Alice L.' })
    assert.equal(byId(await yard.peers('lobby'))[0], { id: 'alice', name: 'Alice L.' }, 'the latest meta')
    bob.leave()
    await until(async () => (await yard.peers('lobby')).length === 1, 2000, 'bob gone from the listing')
    assert.equal(await yard.peers('lobby'), [{ id: 'alice', name: 'Alice L.' }])
    for (const ns of NAMES_BAD) assert.is(await rejection(yard.peers(ns as string)), 'bad-request', `namespace ${JSON.stringify(ns)}`)
  } finally {
    c.close()
    await yard.close()
  }
})

test('yard.peers: a large namespace (several pages) lists each member once', async () => {
  const yard = await startYard()
  const raws: RawClient[] = []
  try {
    const raw = await rawClient(yard, raws)
    const meta = { bio: 'b'.repeat(2000) }
    await Promise.all(Array.from({ length: 80 }, (_, i) => rawJoin(raw, i + 1, 'big', `m${i}`, OWNER_KEY, meta)))
    const list = await yard.peers('big')
    assert.is(list.length, 80)
    assert.is(new Set(list.map((m) => m.id)).size, 80)
    assert.ok(list.every((m) => m.bio === meta.bio))
  } finally {
    for (const r of raws) r.ws.terminate()
    await yard.close()
  }
})

test('onJoin / onLeave: once per join and per leave, with { id, ...meta }; an update fires neither; leave() and channel.close() are leaves', async () => {
  const h = hooks()
  const yard = await startYard(h.options)
  const c = channels()
  try {
    const alice = c.open(yard, 'hooks').createPeers()
    const bobChannel = c.open(yard, 'hooks')
    const bob = bobChannel.createPeers()
    await alice.join({ id: 'alice', role: 'host' })
    await bob.join({ id: 'bob' })
    await until(() => h.calls.length === 2, 2000, 'two joins')
    assert.equal(h.calls, [['join', 'hooks', { id: 'alice', role: 'host' }], ['join', 'hooks', { id: 'bob' }]])
    await alice.join({ id: 'alice', role: 'guest' }) // an update: no hook
    alice.leave()
    await until(() => h.calls.length === 3, 2000, "alice's leave")
    assert.equal(h.calls[2], ['leave', 'hooks', { id: 'alice', role: 'guest' }], 'the leave carries the latest meta')
    bobChannel.close()
    await until(() => h.calls.length === 4, 2000, "bob's leave")
    assert.equal(h.calls[3], ['leave', 'hooks', { id: 'bob' }])
    // Joining again is a new join.
    await alice.join({ id: 'alice' })
    await until(() => h.calls.length === 5, 2000, 'the second join')
    assert.equal(h.calls[4], ['join', 'hooks', { id: 'alice' }])
    await sleep(100)
    assert.is(h.calls.length, 5, 'nothing more')
  } finally {
    c.close()
    await yard.close()
  }
})

test('onJoin / onLeave: a socket that went away leaves after peers.grace; its owner back within the grace, or taking the id over from a second socket, fires neither', async () => {
  const h = hooks()
  const yard = await startYard({ ...h.options, limits: { peers: { grace: 300 } } })
  const raws: RawClient[] = []
  try {
    const first = await rawClient(yard, raws)
    await rawJoin(first, 1, 'grace', 'dana', OWNER_KEY, { v: 1 })
    await until(() => h.calls.length === 1, 2000, 'the join')
    // The socket dies; the owner is back (same key) within the grace: neither hook fires.
    first.ws.terminate()
    await sleep(100)
    const second = await rawClient(yard, raws)
    await rawJoin(second, 1, 'grace', 'dana', OWNER_KEY, { v: 2 })
    // A second socket of the same owner takes the id over from a live one: neither.
    const third = await rawClient(yard, raws)
    await rawJoin(third, 1, 'grace', 'dana', OWNER_KEY, { v: 3 })
    await second.take((f) => f.type === FrameType.Closed && f.id === 1, 2000, 'the taken stream closed')
    await sleep(500) // past the first socket's grace
    assert.equal(h.calls, [['join', 'grace', { id: 'dana', v: 1 }]])
    // Now it goes for good: one leave, a grace after the socket went away, with the latest meta.
    const gone = performance.now()
    third.ws.terminate()
    await until(() => h.calls.length === 2, 2000, 'the leave after the grace')
    assert.ok(performance.now() - gone >= 250, 'not before the grace')
    assert.equal(h.calls[1], ['leave', 'grace', { id: 'dana', v: 3 }])
    await sleep(400)
    assert.is(h.calls.length, 2, 'exactly one leave')
    assert.equal(await yard.peers('grace'), [])
  } finally {
    for (const r of raws) r.ws.terminate()
    await yard.close()
  }
})

test('onJoin / onLeave: signal ids (createNode) fire no hook; a hook that throws or rejects is logged and changes nothing; yard.close() reports the leaves still due', async () => {
  const h = hooks()
  const logged: string[] = []
  const yard = await startYard({
    onJoin: (ns, member) => {
      h.calls.push(['join', ns, member])
      if (member.id === 'thrower') throw new Error('boom')
      if (member.id === 'rejecter') return Promise.reject(new Error('async boom'))
    },
    onLeave: h.options.onLeave,
    logger: (level, message) => { if (level === 'error') logged.push(message) }
  })
  const c = channels()
  let closed = false
  try {
    const node = c.open(yard, 'mixed').createNode()
    await within(node.listen('node-1'), 2000, 'listen')
    const thrower = c.open(yard, 'mixed').createPeers()
    const rejecter = c.open(yard, 'mixed').createPeers()
    assert.is(await thrower.join({ id: 'thrower' }), 'thrower', 'the join went through')
    assert.is(await rejecter.join({ id: 'rejecter' }), 'rejecter')
    await until(() => logged.length === 2, 2000, 'both failures logged')
    assert.equal(logged.sort(), ['onJoin failed', 'onJoin failed'])
    assert.equal(h.calls.map(([what, , m]) => `${what} ${m.id}`), ['join thrower', 'join rejecter'], 'no hook for the node id')
    assert.is((await yard.peers('mixed')).length, 2)
    // Closing the yard: both members leave through it.
    await yard.close()
    closed = true
    assert.equal(h.calls.slice(2).map(([what, , m]) => `${what} ${m.id}`).sort(), ['leave rejecter', 'leave thrower'])
  } finally {
    c.close()
    if (!closed) await yard.close()
  }
})

test('a broker written before kvGet and members: get reads through kvScan, peers rejects internal-error', async () => {
  const inner = memoryBroker()
  const { kvGet: _get, members: _members, ...older } = inner
  const broker: Broker = older
  const yard = await createServer({ port: 0, host: '127.0.0.1', broker })
  try {
    const kv = yard.kv('old')
    await kv.set('a', { n: 1 })
    await kv.set('b', 'two')
    assert.equal(await kv.get('a'), { n: 1 })
    assert.is(await kv.get('b'), 'two')
    assert.is(await kv.get('c'), undefined)
    assert.is(await rejection(yard.peers('old')), 'internal-error')
  } finally {
    await yard.close()
    inner.close()
  }
})

test('two yards on one Redis: publish, kv and peers span both; each yard reports the joins and leaves made through it, once', async () => {
  const redis = await startRedis()
  const brokers = [redisBroker({ url: redis.url }), redisBroker({ url: redis.url })]
  const h = [hooks(), hooks()]
  const yards = await Promise.all(brokers.map(async (broker, i) => await createServer({ port: 0, host: '127.0.0.1', broker, ...h[i].options, limits: { peers: { grace: 300 } } })))
  const c = channels()
  const raws: RawClient[] = []
  try {
    // publish from either yard reaches echo streams on both.
    const echoes = yards.map((yard) => c.open(yard, 'hall').echo())
    await readyAll(...echoes)
    await sleep(100) // Redis subscriptions settle
    for (const [i, yard] of yards.entries()) {
      const got = echoes.map((e) => next(e, 'data'))
      await yard.publish('hall', `from yard ${i}`)
      for (const g of got) assert.equal(await g, [`from yard ${i}`, { from: 'server' }])
    }
    // kv: a set on one yard reaches a replica on the other and is read by the other's get.
    const replica = c.open(yards[0], 'hall').kv()
    await readyAll(replica)
    const update = next(replica, 'update')
    await yards[1].kv('hall').set('topic', { title: 'hello' })
    assert.equal(await update, ['topic', { title: 'hello' }])
    assert.equal(await yards[0].kv('hall').get('topic'), { title: 'hello' })
    await replica.set('by-client', 1)
    assert.is(await yards[1].kv('hall').get('by-client'), 1)
    assert.equal((await yards[0].kv('hall').keys()).sort(), ['by-client', 'topic'])
    assert.is(await yards[0].kv('hall').delete('topic'), true)
    assert.is(await yards[1].kv('hall').delete('topic'), false)
    // peers: members on both yards, listed by either.
    const alice = c.open(yards[0], 'hall').createPeers()
    const bob = c.open(yards[1], 'hall').createPeers()
    await alice.join({ id: 'alice', at: 0 })
    await bob.join({ id: 'bob', at: 1 })
    for (const yard of yards) {
      const list = (await yard.peers('hall')).sort((x, y) => x.id.localeCompare(y.id))
      assert.equal(list, [{ id: 'alice', at: 0 }, { id: 'bob', at: 1 }])
    }
    // hooks: each yard reports its own member, once.
    await until(() => h[0].calls.length === 1 && h[1].calls.length === 1, 2000, 'one join on each yard')
    assert.equal(h[0].calls, [['join', 'hall', { id: 'alice', at: 0 }]])
    assert.equal(h[1].calls, [['join', 'hall', { id: 'bob', at: 1 }]])
    bob.leave()
    await until(() => h[1].calls.length === 2, 2000, "bob's leave on yard 1")
    assert.equal(h[1].calls[1], ['leave', 'hall', { id: 'bob', at: 1 }])
    // An owner that moves to the other yard (same key) leaves through the first and joins through the second.
    const onA = await rawClient(yards[0], raws)
    await rawJoin(onA, 1, 'hall', 'erin', OWNER_KEY)
    const onB = await rawClient(yards[1], raws)
    await rawJoin(onB, 1, 'hall', 'erin', OWNER_KEY, { moved: true })
    await until(() => h[0].calls.length === 3 && h[1].calls.length === 3, 2000, 'erin on both yards')
    assert.equal(h[0].calls.slice(1), [['join', 'hall', { id: 'erin' }], ['leave', 'hall', { id: 'erin' }]])
    assert.equal(h[1].calls[2], ['join', 'hall', { id: 'erin', moved: true }])
    await sleep(500) // past any grace: nothing more
    assert.is(h[0].calls.length + h[1].calls.length, 6, 'no duplicate and no stray hook')
    assert.equal((await yards[0].peers('hall')).map((m) => m.id).sort(), ['alice', 'erin'])
  } finally {
    c.close()
    for (const r of raws) r.ws.terminate()
    await Promise.all(yards.map(async (yard) => await yard.close()))
    await Promise.all(brokers.map(async (broker) => await broker.close()))
    await redis.stop()
  }
})

test.run()

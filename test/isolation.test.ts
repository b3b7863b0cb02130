// test/isolation.test.ts — isolation and spoofing against a real server (issue 5; SPEC §7):
// namespaces never leak into each other (echo, kv state and events, peers join/leave, signal DATA
// and leave), not even between names that differ only by case, a trailing space, or that look like
// another endpoint's topic ('x' vs 'echo:x'); relay pairs cannot be joined or hijacked, and freed
// tokens serve only a new pair; a signal id cannot be taken or read by another key (also during
// its grace period); KV keys and values named like Object.prototype members are ordinary data and
// pollute nothing, in the client or in the server (which runs in this process).
//
// Already covered elsewhere, not repeated here: relay-token-in-use for pending and paired tokens
// and reuse after close (test/relay.test.ts), a forged `from` stamped by the server
// (test/signal-server.test.ts "`from` cannot be forged", test/node.test.ts "cannot pose as another
// id"), __proto__ in frame meta (test/protocol.test.ts), prototype-named peer ids and meta
// (test/peers-server.test.ts, test/peers.test.ts), and set/get/keys/toJSON/delete of
// prototype-named KV keys (test/kv.test.ts).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { SignalChannel, type Channel, type KvStream } from 'signalyard'
import type { ServerOptions, Yard } from 'signalyard/server'
import { Kind, decodePayload, type RawFrame } from '../src/protocol/codec.js'
import { FrameType } from '../src/protocol/frames.js'
import { rawFrame, readyAll, sleep, startYard, until, within } from './helpers.js'
import { rawClient, type RawClient } from './raw-client.js'

const ownerKey = (who: string): string => `owner-key:${who}`.padEnd(24, '.')

interface Ctx {
  yard: Yard
  raw: () => Promise<RawClient>
  channel: (ns: string, client: number) => Channel
}

/** A yard, raw clients and channels, all closed after `body`. */
async function withYard (body: (ctx: Ctx) => Promise<void>, options: ServerOptions = {}): Promise<void> {
  const yard = await startYard(options)
  const raws: RawClient[] = []
  const channels: Channel[] = []
  try {
    await body({
      yard,
      raw: () => rawClient(yard, raws),
      channel: (ns, client) => {
        const c = SignalChannel(ns, { url: `${yard.url}?c=${client}` })
        channels.push(c)
        return c
      }
    })
  } finally {
    for (const c of channels) c.close()
    for (const r of raws) r.ws.terminate()
    await yard.close()
  }
}

async function opened (c: RawClient, sid: number, meta: object): Promise<RawFrame> {
  const f = await c.open(sid, meta)
  assert.is(f.type, FrameType.Opened, `OPEN ${JSON.stringify(meta)} → ${JSON.stringify(f.meta)}`)
  return f
}

async function refused (c: RawClient, sid: number, meta: object, code: string): Promise<void> {
  const f = await c.open(sid, meta)
  assert.equal([f.type, f.meta?.code], [FrameType.Closed, code], `OPEN ${JSON.stringify(meta)} refused with ${code}`)
}

/** A short summary of a received frame, for exact comparisons. */
function summary (f: RawFrame): string {
  const m = f.meta ?? {}
  const body = f.payload.length > 0 ? JSON.stringify(decodePayload(f.kind, f.payload)) : ''
  if (f.type === FrameType.Event) return ['event', m.ep, JSON.stringify(m.ns), m.op, m.key ?? m.id, body].filter((x) => x !== undefined && x !== '').join(' ')
  if (f.type === FrameType.Data) return `data#${f.id} from=${String(m.from)} ${body}`
  return `type${f.type}#${f.id} ${JSON.stringify(m)}`
}

// ── namespaces ──

/** Names that must all be distinct namespaces, including ones that mimic another endpoint's topic. */
const NAMESPACES = [
  'room', 'Room', 'ROOM', 'room ', ' room', 'room\t', 'rööm',
  'a:b', 'a', 'b', 'a:', ':b',
  'x', 'echo:x', 'kv:x', 'peers:x', 'signal:x', 'relay:x', 'echo', 'kv',
  '["x","a","b"]', '__proto__', 'constructor'
]

test('echo, kv, peers and signal traffic of one namespace reaches only that namespace (case, spaces, ":" and topic-like names)', async () => {
  await withYard(async ({ raw }) => {
    // one listener per namespace, with every kind of stream; the same ids in every namespace
    const listeners = new Map<string, RawClient>()
    for (const ns of NAMESPACES) {
      const l = await raw()
      await opened(l, 1, { ep: 'echo', ns })
      await opened(l, 2, { ep: 'kv', ns })
      await opened(l, 3, { ep: 'peers', ns, id: 'listener', key: ownerKey(`l ${ns}`) })
      await opened(l, 4, { ep: 'signal', ns, id: 'target', key: ownerKey(`l ${ns}`) })
      listeners.set(ns, l)
    }
    await sleep(50)
    for (const l of listeners.values()) l.frames.length = 0 // the listeners' own joins

    // in each namespace an actor does everything once, tagging every payload with its namespace
    const actors: RawClient[] = []
    for (const ns of NAMESPACES) {
      const a = await raw()
      actors.push(a)
      await opened(a, 1, { ep: 'echo', ns })
      a.send(FrameType.Data, 1, null, `echo in ${ns}`)
      await opened(a, 2, { ep: 'kv', ns })
      a.send(FrameType.Request, 2, { op: 'set', req: 1, key: 'k', ttl: 60_000 }, `kv in ${ns}`)
      a.send(FrameType.Request, 2, { op: 'set', req: 2, key: 'short', ttl: 1 }, `short in ${ns}`)
      a.send(FrameType.Request, 2, { op: 'delete', req: 3, key: 'k' })
      for (const req of [1, 2, 3]) await a.take((f) => f.type === FrameType.Reply && f.meta?.req === req, 2000, `kv reply ${req} in ${ns}`)
      await opened(a, 3, { ep: 'peers', ns, id: 'joiner', key: ownerKey(`a ${ns}`) })
      a.send(FrameType.Close, 3, null)
      await opened(a, 4, { ep: 'signal', ns, id: 'sender', key: ownerKey(`a ${ns}`) })
      a.send(FrameType.Data, 4, { to: 'target' }, `signal in ${ns}`)
      a.send(FrameType.Close, 4, null)
    }

    const expected = (ns: string): string[] => [
      `event echo ${JSON.stringify(ns)} ${JSON.stringify(`echo in ${ns}`)}`,
      `event kv ${JSON.stringify(ns)} set k ${JSON.stringify(`kv in ${ns}`)}`,
      `event kv ${JSON.stringify(ns)} set short ${JSON.stringify(`short in ${ns}`)}`,
      `event kv ${JSON.stringify(ns)} delete k`,
      `event peers ${JSON.stringify(ns)} join joiner`,
      `event peers ${JSON.stringify(ns)} leave joiner`,
      `data#4 from=sender ${JSON.stringify(`signal in ${ns}`)}`,
      `event signal ${JSON.stringify(ns)} leave sender`,
      `event kv ${JSON.stringify(ns)} expire short`
    ]
    for (const [ns, l] of listeners) {
      await until(() => l.frames.length >= 9, 2000, `9 frames for ${JSON.stringify(ns)}`)
    }
    await sleep(150) // time for anything stray to arrive
    for (const [ns, l] of listeners) {
      assert.equal(l.frames.map(summary).sort(), expected(ns).sort(), `namespace ${JSON.stringify(ns)} sees exactly its own traffic`)
    }

    // a late joiner of each namespace syncs only that namespace's KV state and presence
    for (const ns of NAMESPACES) {
      const late = await raw()
      const kv = await opened(late, 1, { ep: 'kv', ns })
      assert.equal(kv.meta?.keys, [], `no key of another namespace in ${JSON.stringify(ns)}`)
      const peers = await opened(late, 2, { ep: 'peers', ns, id: 'late', key: ownerKey('late') })
      assert.equal((peers.meta?.peers as Array<{ id: string }>).map((p) => p.id).sort(), ['late', 'listener'], `members of ${JSON.stringify(ns)}`)
      late.ws.terminate()
    }
    for (const a of actors) a.ws.terminate()
  }, { limits: { peers: { grace: 100 } } })
})

test('the real client: KV replicas and echo streams of look-alike namespaces stay apart', async () => {
  await withYard(async ({ channel }) => {
    const names = ['room', 'Room', 'room ', 'echo:room', 'kv:room']
    const kvs = new Map<string, KvStream>()
    const heard = new Map<string, unknown[]>()
    let client = 1
    for (const ns of names) {
      const c = channel(ns, client++)
      const kv = c.kv()
      const echo = c.echo()
      const got: unknown[] = []
      echo.on('data', (d) => { got.push(d) })
      kv.on('update', (k, v) => { got.push(['update', k, v]) })
      await readyAll(kv, echo)
      kvs.set(ns, kv)
      heard.set(ns, got)
    }
    for (const ns of names) {
      const c = channel(ns, client++)
      const kv = c.kv()
      const echo = c.echo()
      await readyAll(kv, echo)
      await kv.set('shared-key', `value of ${ns}`)
      echo.send(`hello ${ns}`)
    }
    for (const ns of names) {
      await until(() => (heard.get(ns) ?? []).length === 2, 2000, `both messages in ${JSON.stringify(ns)}`)
    }
    await sleep(100)
    for (const ns of names) {
      const kv = kvs.get(ns) as KvStream
      assert.equal(kv.toJSON(), { 'shared-key': `value of ${ns}` }, JSON.stringify(ns))
      assert.equal((heard.get(ns) ?? []).sort(), [`hello ${ns}`, ['update', 'shared-key', `value of ${ns}`]].sort(), JSON.stringify(ns))
    }
  })
})

// ── relay ──

/** Not a relay ACK (flow control for the receiver's own DATA: not something it heard from anyone). */
const notAck = (f: { type: number }): boolean => f.type !== FrameType.Ack

test('a relay pair cannot be joined: an intruder with either side\'s tokens (even pipelining DATA) gets nothing and disturbs nothing', async () => {
  await withYard(async ({ raw }) => {
    const a = await raw()
    const b = await raw()
    a.send(FrameType.Open, 1, { ep: 'relay', ns: 'r', local: 'tok-a', remote: 'tok-b' })
    await opened(b, 1, { ep: 'relay', ns: 'r', local: 'tok-b', remote: 'tok-a' })
    await a.take((f) => f.type === FrameType.Opened && f.id === 1)

    const eve = await raw()
    let sid = 1
    for (const [local, remote] of [['tok-a', 'tok-b'], ['tok-b', 'tok-a']]) {
      // OPEN and DATA back to back, as if the intruder hoped a frame slips through
      eve.send(FrameType.Open, sid, { ep: 'relay', ns: 'r', local, remote })
      eve.send(FrameType.Data, sid, null, `intrusion as ${local}`)
      const answer = await eve.take((f) => f.id === sid && (f.type === FrameType.Opened || f.type === FrameType.Closed))
      assert.equal([answer.type, answer.meta?.code], [FrameType.Closed, 'relay-token-in-use'])
      sid++
    }
    // the same tokens in look-alike namespaces do not touch the pair
    for (const ns of ['R', 'r ', ' r', 'relay:r']) {
      eve.send(FrameType.Open, sid, { ep: 'relay', ns, local: 'tok-a', remote: 'tok-b' })
      eve.send(FrameType.Data, sid++, null, `intrusion via ${JSON.stringify(ns)}`)
      eve.send(FrameType.Open, sid, { ep: 'relay', ns, local: 'tok-b', remote: 'tok-a' })
      eve.send(FrameType.Data, sid++, null, `intrusion via ${JSON.stringify(ns)}`)
    }

    a.send(FrameType.Data, 1, null, 'a→b')
    b.send(FrameType.Data, 1, null, 'b→a')
    const atB = await b.take((f) => f.type === FrameType.Data)
    const atA = await a.take((f) => f.type === FrameType.Data)
    assert.equal([atB.id, decodePayload(atB.kind, atB.payload)], [1, 'a→b'])
    assert.equal([atA.id, decodePayload(atA.kind, atA.payload)], [1, 'b→a'])
    await sleep(150)
    assert.equal(a.frames.filter(notAck).map(summary), [], 'a got nothing from the intruder')
    assert.equal(b.frames.filter(notAck).map(summary), [], 'b got nothing from the intruder')
    // the look-alike namespaces paired among themselves (eve with eve), never with a or b
    const eveData = eve.frames.filter((f) => f.type === FrameType.Data).map((f) => decodePayload(f.kind, f.payload))
    assert.not.ok(eveData.includes('a→b') || eveData.includes('b→a'), 'the intruder read none of the pair\'s data')
    assert.ok(eveData.every((d) => typeof d === 'string' && d.startsWith('intrusion via')), JSON.stringify(eveData))
  })
})

test('after a pair ends its tokens serve only a new pair: the old pair\'s data never reaches the newcomer', async () => {
  await withYard(async ({ raw }) => {
    const a = await raw()
    const b = await raw()
    a.send(FrameType.Open, 1, { ep: 'relay', ns: 'r', local: 'tok-a', remote: 'tok-b' })
    await opened(b, 7, { ep: 'relay', ns: 'r', local: 'tok-b', remote: 'tok-a' })
    await a.take((f) => f.type === FrameType.Opened && f.id === 1)

    // b sends (a reads it), then a closes; b keeps sending on its (now closed) stream
    b.send(FrameType.Data, 7, null, 'old 1')
    const old = await a.take((f) => f.type === FrameType.Data && f.id === 1, 1000, 'old 1 at a')
    assert.is(decodePayload(old.kind, old.payload), 'old 1')
    a.send(FrameType.Close, 1, null)
    const closed = await b.take((f) => f.type === FrameType.Closed && f.id === 7, 1000, 'CLOSED at b')
    assert.is(closed.meta?.code, undefined, 'the pair ended because the other side closed')
    // DATA in flight when the server ended the stream is dropped silently (not a bad frame)
    b.send(FrameType.Data, 7, null, 'old 2')
    b.send(FrameType.Ping, 0, null)
    await b.take((f) => f.type === FrameType.Pong, 1000, 'PONG')

    // a newcomer takes a's old tokens: it is pending, not joined to what is left of the old pair
    const n = await raw()
    n.send(FrameType.Open, 3, { ep: 'relay', ns: 'r', local: 'tok-a', remote: 'tok-b' })
    b.send(FrameType.Data, 7, null, 'old 3')
    await sleep(150)
    assert.equal(n.frames.filter(notAck).map(summary), [], 'the newcomer is pending and received nothing')

    // only a fresh counterpart pairs with it, and they hear only each other
    const m = await raw()
    await opened(m, 5, { ep: 'relay', ns: 'r', local: 'tok-b', remote: 'tok-a' })
    await n.take((f) => f.type === FrameType.Opened && f.id === 3)
    m.send(FrameType.Data, 5, null, 'new m→n')
    n.send(FrameType.Data, 3, null, 'new n→m')
    const atN = await n.take((f) => f.type === FrameType.Data)
    const atM = await m.take((f) => f.type === FrameType.Data)
    assert.equal(decodePayload(atN.kind, atN.payload), 'new m→n')
    assert.equal(decodePayload(atM.kind, atM.payload), 'new n→m')
    await sleep(100)
    assert.equal(n.frames.filter(notAck).map(summary), [], 'nothing of the old pair at the newcomer')
    assert.equal(m.frames.filter(notAck).map(summary), [])
    assert.equal(a.frames.filter(notAck).map(summary), [], 'the old side hears nothing of the new pair')
    assert.equal(b.frames.filter(notAck).map(summary), [], 'the old side\'s late DATA got no ERROR and reached no one')
  })
})

// ── signal ──

test('a signal id cannot be taken by another key, nor its messages read, live or during its grace period', async () => {
  await withYard(async ({ raw }) => {
    const victim = await raw()
    await opened(victim, 1, { ep: 'signal', ns: 's', id: 'victim', key: ownerKey('victim') })
    const friend = await raw()
    await opened(friend, 1, { ep: 'signal', ns: 's', id: 'friend', key: ownerKey('friend') })
    const eve = await raw()
    await opened(eve, 9, { ep: 'signal', ns: 's', id: 'eve', key: ownerKey('eve') })

    // eve claims victim's id with her own key, pipelining DATA on the refused stream
    eve.send(FrameType.Open, 2, { ep: 'signal', ns: 's', id: 'victim', key: ownerKey('eve') })
    eve.send(FrameType.Data, 2, { to: 'friend' }, 'posing as victim')
    const answer = await eve.take((f) => f.id === 2 && (f.type === FrameType.Opened || f.type === FrameType.Closed))
    assert.equal([answer.type, answer.meta?.code], [FrameType.Closed, 'peer-id-taken'])
    // look-alike ids are other ids: claiming one does not capture the victim's messages
    await opened(eve, 3, { ep: 'signal', ns: 's', id: 'Victim', key: ownerKey('eve') })
    await opened(eve, 4, { ep: 'signal', ns: 's', id: 'victim ', key: ownerKey('eve') })
    await opened(eve, 5, { ep: 'signal', ns: 'S', id: 'victim', key: ownerKey('eve') })

    friend.send(FrameType.Data, 1, { to: 'victim' }, 'for victim only')
    const got = await victim.take((f) => f.type === FrameType.Data, 1000, 'the message at victim')
    assert.equal([got.id, got.meta, decodePayload(got.kind, got.payload)], [1, { from: 'friend' }, 'for victim only'])
    // eve writing to the victim, claiming to be the friend, is stamped as eve
    eve.send(FrameType.Data, 9, { to: 'victim', from: 'friend' }, 'forged')
    const forged = await victim.take((f) => f.type === FrameType.Data, 1000, 'the forged message at victim')
    assert.equal(forged.meta, { from: 'eve' })
    await sleep(100)
    assert.equal(friend.frames.map(summary), [], 'the refused stream delivered nothing to the friend')
    assert.equal(victim.frames.map(summary), [], 'the victim was not disturbed (no leave, no join)')
    assert.ok(eve.frames.every((f) => f.type === FrameType.Error && f.id === 2), `eve read nothing: ${eve.frames.map(summary).join(' | ')}`)
    eve.frames.length = 0

    // the victim's socket vanishes: during the grace period the id is still not eve's, and
    // messages to it are dropped, never delivered to a would-be taker
    victim.ws.terminate()
    await sleep(50)
    await refused(eve, 6, { ep: 'signal', ns: 's', id: 'victim', key: ownerKey('eve') }, 'peer-id-taken')
    friend.send(FrameType.Data, 1, { to: 'victim' }, 'during grace')
    await eve.take((f) => f.type === FrameType.Event && f.meta?.op === 'leave' && f.meta?.id === 'victim', 2000, 'leave after the grace')
    await opened(eve, 7, { ep: 'signal', ns: 's', id: 'victim', key: ownerKey('eve') }) // released: a new claim is legitimate
    await sleep(100)
    const eveData = eve.frames.filter((f) => f.type === FrameType.Data)
    assert.equal(eveData.map(summary), [], 'what was sent to the old holder never reaches the new one')
  }, { limits: { peers: { grace: 300 } } })
})

// ── prototype-named KV keys and values ──

const PROTO_KEYS = ['__proto__', 'constructor', 'hasOwnProperty', 'toString', 'valueOf', 'prototype', '__defineGetter__']

function prototypeIntact (before: string[]): void {
  const probe = {} as Record<string, unknown>
  assert.is(probe.polluted, undefined, '({}).polluted')
  assert.is(probe.evil, undefined, '({}).evil')
  assert.equal(Object.getOwnPropertyNames(Object.prototype).sort(), before, 'Object.prototype has the same own names')
  assert.is(Object.getPrototypeOf(probe), Object.prototype)
  assert.type(probe.hasOwnProperty, 'function')
  assert.is(String(probe), '[object Object]', 'toString untouched')
  assert.is(Object.prototype.constructor, Object)
  assert.is(({} as Record<string, unknown>).__proto__, Object.prototype)
}

test('prototype-named keys carrying __proto__ values are ordinary data end to end (set, sync, get, keys, toJSON, delete, expire); nothing is polluted', async () => {
  const before = Object.getOwnPropertyNames(Object.prototype).sort()
  await withYard(async ({ channel, raw }) => {
    const w = channel('__proto__', 1).kv()
    const r = channel('__proto__', 2).kv()
    await readyAll(w, r)
    const evil = (): unknown => JSON.parse('{"__proto__":{"polluted":true},"constructor":{"prototype":{"evil":1}}}')
    const expired: string[] = []
    r.on('delete', (key, reason) => { if (reason === 'expired') expired.push(key) })
    for (const key of PROTO_KEYS) await w.set(key, evil())
    await w.set('toString', 'short-lived', { ttl: 150 })
    await w.set('constructor', 'short-lived too', { ttl: 150 })
    // a raw client writes its own meta with a __proto__ member next to a prototype-named key
    const h = await raw()
    await opened(h, 1, { ep: 'kv', ns: '__proto__' })
    const enc = new TextEncoder()
    h.sendRaw(rawFrame(FrameType.Request, 1, Kind.Json, enc.encode('{"op":"set","req":1,"key":"hasOwnProperty","__proto__":{"polluted":true},"ttl":60000}'), enc.encode('{"__proto__":{"evil":1}}')))
    await h.take((f) => f.type === FrameType.Reply && f.meta?.req === 1, 1000, 'raw set')

    await until(() => r.get('hasOwnProperty') !== undefined && JSON.stringify(r.get('hasOwnProperty')).includes('evil'), 1000, 'raw set replicated')
    const fresh = channel('__proto__', 3).kv()
    await readyAll(fresh)
    for (const kv of [w, r, fresh]) {
      assert.equal(kv.keys().sort(), [...PROTO_KEYS].sort())
      const json = kv.toJSON()
      assert.is(Object.getPrototypeOf(json), Object.prototype)
      assert.equal(Object.keys(json).sort(), [...PROTO_KEYS].sort())
      const value = kv.get('__proto__') as Record<string, unknown>
      assert.ok(Object.hasOwn(value, '__proto__'), 'the value keeps __proto__ as an own member')
      assert.equal(Object.getOwnPropertyDescriptor(value, '__proto__')?.value, { polluted: true })
      assert.is(Object.getPrototypeOf(value), Object.prototype)
      assert.is(value.polluted, undefined, 'the value did not get a polluted prototype')
      assert.equal(JSON.stringify(kv.get('hasOwnProperty')), '{"__proto__":{"evil":1}}')
    }
    prototypeIntact(before)

    await within(until(() => expired.length === 2, 1500, 'two expiries'), 2000, 'expiry')
    assert.equal(expired.sort(), ['constructor', 'toString'])
    await w.delete('__proto__')
    await until(() => !r.has('__proto__'), 1000, '__proto__ deleted at r')
    const rest = PROTO_KEYS.filter((k) => !['__proto__', 'constructor', 'toString'].includes(k)).sort()
    for (const kv of [w, r, fresh]) {
      await until(() => kv.keys().length === rest.length, 1000, 'replicas converge')
      assert.equal(kv.keys().sort(), rest)
      assert.not.ok(kv.has('__proto__'))
      assert.is(kv.get('toString'), undefined)
    }
    // the server agrees: a new replica syncs exactly the remaining keys
    const late = await raw()
    const sync = await opened(late, 1, { ep: 'kv', ns: '__proto__' })
    assert.equal((sync.meta?.keys as string[]).sort(), rest)
    // and other namespaces are untouched
    const other = await raw()
    assert.equal((await opened(other, 1, { ep: 'kv', ns: 'constructor' })).meta?.keys, [])
    prototypeIntact(before)
  }, { limits: { kv: { sweepInterval: 25 } } })
  prototypeIntact(before)
})

test.run()

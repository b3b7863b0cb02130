// test/kv.test.ts — the kv endpoint end to end (SPEC §3.2): a real server on 127.0.0.1 and
// clients through the public entry points. Replication, late joiners, TTL expiry within 1 s,
// TTL refresh and cap, deletes, convergence of concurrent writes, limits, prototype-ish keys,
// binary values, and resync after a server restart and after a reconnect to the same server.
//
// Channels of one realm that use the same URL share one WebSocket; each "client" here gets its
// own URL (a distinct query string, which the server ignores) so that each has its own socket.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { Duplex } from 'node:stream'
import WebSocket from 'ws'
import { SignalChannel, SignalyardError, type Channel, type ChannelOptions, type KvStream, type WebSocketConstructor } from 'signalyard'
import { createServer, memoryBroker, type Broker, type Yard } from 'signalyard/server'
import { collect, next, sleep, startYard, until } from './helpers.js'

let clients = 0
/** A channel with its own socket. */
function client (yard: Yard | string, ns: string, options: ChannelOptions = {}): Channel {
  const url = typeof yard === 'string' ? yard : yard.url
  return SignalChannel(ns, { ...options, url: `${url}?client=${++clients}` })
}

/** Closes every channel and yard it was given, whatever happened. */
function scope (): { ch: (c: Channel) => Channel, yard: (y: Yard) => Yard, close: () => Promise<void> } {
  const channels: Channel[] = []
  const yards: Yard[] = []
  return {
    ch: (c) => { channels.push(c); return c },
    yard: (y) => { yards.push(y); return y },
    close: async () => {
      for (const c of channels) c.close()
      for (const y of yards) await y.close()
    }
  }
}

/** A ready replica on its own socket. */
async function replica (s: ReturnType<typeof scope>, yard: Yard | string, ns: string, options?: ChannelOptions): Promise<KvStream> {
  const kv = s.ch(client(yard, ns, options)).kv()
  await kv.ready()
  return kv
}

async function rejection (promise: Promise<unknown>): Promise<SignalyardError> {
  try {
    await promise
  } catch (err) {
    assert.instance(err, SignalyardError)
    return err as SignalyardError
  }
  throw new assert.Assertion({ message: 'expected the promise to reject', generated: false, operator: 'rejects', expects: 'rejection', actual: 'resolved' })
}

/** Time (performance.now, the server's own clock) at which `kv` emits delete(key, reason). */
function deleteAt (kv: KvStream, key: string, ms: number): Promise<{ reason: string, at: number }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { kv.off('delete', on); reject(new Error(`no delete of ${key} within ${ms} ms`)) }, ms)
    const on = (k: string, reason: string): void => {
      if (k !== key) return
      clearTimeout(timer)
      kv.off('delete', on)
      resolve({ reason, at: performance.now() })
    }
    kv.on('delete', on)
  })
}

/**
 * Control over the server's sockets: every upgraded socket in order, and a switch that refuses
 * upgrades (so a client stays offline until it is turned off).
 */
function socketControl (yard: Yard): { sockets: Duplex[], refuse: (on: boolean) => void } {
  const sockets: Duplex[] = []
  let refusing = false
  yard.server.prependListener('upgrade', (_req, socket: Duplex) => { if (refusing) socket.destroy() })
  yard.server.on('upgrade', (_req, socket: Duplex) => { sockets.push(socket) })
  return { sockets, refuse: (on) => { refusing = on } }
}

/**
 * A WebSocket constructor that records the meta of every frame the server sends, read off the
 * wire (docs/PROTOCOL.md: 10-byte header, u32 BE meta length at offset 6, then the JSON meta).
 */
function wireTap (): { WebSocket: WebSocketConstructor, metas: Array<Record<string, unknown>> } {
  const metas: Array<Record<string, unknown>> = []
  class WireTap extends WebSocket {
    constructor (url: string, protocols?: string | string[]) {
      super(url, protocols)
      this.on('message', (raw: Buffer | ArrayBuffer) => {
        const data = Buffer.isBuffer(raw) ? raw : Buffer.from(raw)
        const metaLen = data.readUInt32BE(6)
        metas.push(metaLen === 0 ? {} : JSON.parse(data.subarray(10, 10 + metaLen).toString('utf8')))
      })
    }
  }
  return { WebSocket: WireTap as unknown as WebSocketConstructor, metas }
}

/** Keys of the KV set events recorded by a wire tap. */
const setEvents = (metas: Array<Record<string, unknown>>): string[] =>
  metas.filter((m) => m.ep === 'kv' && m.op === 'set').map((m) => String(m.key))

test('set resolves with the value in the writer\'s replica; other replicas get update(key, value)', async () => {
  const s = scope()
  try {
    const yard = s.yard(await startYard())
    const a = await replica(s, yard, 'ns')
    const b = await replica(s, yard, 'ns')
    const c = await replica(s, yard, 'ns')
    const other = await replica(s, yard, 'other-ns')
    let otherUpdates = 0
    other.on('update', () => { otherUpdates++ })
    const onB = next(b, 'update')
    const onC = next(c, 'update')
    const writerUpdates: unknown[][] = []
    a.on('update', (...args) => writerUpdates.push(args))
    await a.set('greeting', { text: 'hello', n: 1 })
    assert.equal(a.get('greeting'), { text: 'hello', n: 1 }, 'the writer shows the value once set() resolves')
    assert.ok(a.has('greeting'))
    assert.equal(await onB, ['greeting', { text: 'hello', n: 1 }])
    assert.equal(await onC, ['greeting', { text: 'hello', n: 1 }])
    assert.equal(writerUpdates, [['greeting', { text: 'hello', n: 1 }]], 'the writer gets update once, too')
    assert.equal(b.get('greeting'), { text: 'hello', n: 1 })
    // overwrite
    const again = next(b, 'update')
    await a.set('greeting', 'bye')
    assert.equal(await again, ['greeting', 'bye'])
    assert.is(a.get('greeting'), 'bye')
    await sleep(50)
    assert.is(otherUpdates, 0, 'another namespace hears nothing')
    assert.equal(other.keys(), [])
  } finally {
    await s.close()
  }
})

test('set and delete written before the socket opens are delivered once it does', async () => {
  const s = scope()
  try {
    const yard = s.yard(await startYard())
    const kv = s.ch(client(yard, 'early')).kv()
    const p1 = kv.set('a', 1)
    const p2 = kv.set('b', 2)
    const p3 = kv.delete('a')
    await Promise.all([p1, p2, p3, kv.ready()])
    assert.equal(kv.toJSON(), { b: 2 })
    const fresh = await replica(s, yard, 'early')
    assert.equal(fresh.toJSON(), { b: 2 })
  } finally {
    await s.close()
  }
})

test('a late joiner has the current unexpired state when ready() resolves, after sync', async () => {
  const s = scope()
  try {
    const yard = s.yard(await startYard())
    const w = await replica(s, yard, 'late')
    await w.set('a', 1)
    await w.set('b', { deep: ['x'] })
    await w.set('c', 'text')
    await w.set('short', 'gone soon', { ttl: 100 })
    await w.delete('c')
    await until(() => !w.has('short'), 1500, 'short key expired')

    const kv = s.ch(client(yard, 'late')).kv()
    const order: string[] = []
    const updates: unknown[][] = []
    kv.on('update', (key, value) => { order.push(`update:${key}`); updates.push([key, value]) })
    kv.on('sync', () => { order.push('sync'); assert.equal(kv.toJSON(), { a: 1, b: { deep: ['x'] } }, 'state is complete at sync') })
    assert.equal(kv.keys(), [], 'nothing before the server answered')
    await kv.ready()
    order.push('ready')
    assert.equal(kv.toJSON(), { a: 1, b: { deep: ['x'] } })
    assert.is(order[order.length - 2], 'sync')
    assert.is(order[order.length - 1], 'ready')
    assert.equal(updates.sort(), [['a', 1], ['b', { deep: ['x'] }]])
    assert.not.ok(kv.has('short'))
    assert.not.ok(kv.has('c'))
  } finally {
    await s.close()
  }
})

test('an empty namespace: ready() resolves with an empty replica and sync fires', async () => {
  const s = scope()
  try {
    const yard = s.yard(await startYard())
    const kv = s.ch(client(yard, 'empty')).kv()
    const synced = next(kv, 'sync')
    await kv.ready()
    await synced
    assert.equal(kv.keys(), [])
    assert.equal(kv.toJSON(), {})
  } finally {
    await s.close()
  }
})

test('TTL: every replica emits delete(key, "expired") within 1 s after the TTL, and the server forgets the key', async () => {
  const s = scope()
  try {
    const yard = s.yard(await startYard()) // default sweep, 100 ms
    const w = await replica(s, yard, 'ttl')
    const r = await replica(s, yard, 'ttl')
    await w.set('keep', 'long-lived', { ttl: 60_000 })
    const onW = deleteAt(w, 'k', 3000)
    const onR = deleteAt(r, 'k', 3000)
    const started = performance.now()
    await w.set('k', 'v', { ttl: 300 })
    await until(() => r.has('k'), 1000, 'replicated')
    await sleep(200 - (performance.now() - started))
    assert.ok(w.has('k') && r.has('k'), 'still there before its TTL')
    const [dw, dr] = await Promise.all([onW, onR])
    for (const d of [dw, dr]) {
      assert.is(d.reason, 'expired')
      const after = d.at - started
      assert.ok(after >= 300, `not before its TTL (${after.toFixed(0)} ms)`)
      assert.ok(after <= 1300, `within 1 s after its TTL (${after.toFixed(0)} ms)`)
    }
    assert.not.ok(w.has('k'))
    assert.not.ok(r.has('k'))
    assert.is(w.get('keep'), 'long-lived', 'other keys stay')
    const fresh = await replica(s, yard, 'ttl')
    assert.equal(fresh.toJSON(), { keep: 'long-lived' }, 'a fresh replica does not see the expired key')
  } finally {
    await s.close()
  }
})

test('the default TTL comes from limits.kv.defaultTtl', async () => {
  const s = scope()
  try {
    const yard = s.yard(await startYard({ limits: { kv: { defaultTtl: 200 } } }))
    const w = await replica(s, yard, 'default-ttl')
    const gone = deleteAt(w, 'k', 2000)
    const started = performance.now()
    await w.set('k', 'no ttl given')
    const d = await gone
    assert.is(d.reason, 'expired')
    assert.ok(d.at - started >= 200 && d.at - started <= 1200, `expired after ${(d.at - started).toFixed(0)} ms`)
  } finally {
    await s.close()
  }
})

test('writing a key again refreshes its TTL', async () => {
  const s = scope()
  try {
    const yard = s.yard(await startYard())
    const w = await replica(s, yard, 'refresh')
    const r = await replica(s, yard, 'refresh')
    let early = false
    r.on('delete', () => { early = true })
    const started = performance.now()
    await w.set('k', 1, { ttl: 600 })
    await sleep(300)
    const rewritten = performance.now()
    await w.set('k', 2, { ttl: 600 })
    const onR = deleteAt(r, 'k', 3000)
    await sleep(700 - (performance.now() - started)) // past the first TTL (600), well before the second (≥ 900)
    assert.not.ok(early, 'no delete at the first TTL')
    assert.is(r.get('k'), 2)
    assert.is(w.get('k'), 2)
    const fresh = await replica(s, yard, 'refresh')
    assert.is(fresh.get('k'), 2, 'the server still holds the key past its first TTL')
    const d = await onR
    assert.is(d.reason, 'expired')
    const after = d.at - rewritten
    assert.ok(after >= 600 && after <= 1600, `expired ${after.toFixed(0)} ms after the rewrite`)
  } finally {
    await s.close()
  }
})

test('ttl is capped at limits.kv.maxTtl', async () => {
  const s = scope()
  try {
    const yard = s.yard(await startYard({ limits: { kv: { maxTtl: 300 } } }))
    const w = await replica(s, yard, 'cap')
    const r = await replica(s, yard, 'cap')
    const onW = deleteAt(w, 'k', 3000)
    const onR = deleteAt(r, 'k', 3000)
    const started = performance.now()
    await w.set('k', 'v', { ttl: 60_000 })
    const [dw, dr] = await Promise.all([onW, onR])
    for (const d of [dw, dr]) {
      assert.is(d.reason, 'expired')
      assert.ok(d.at - started <= 1300, `expired ${(d.at - started).toFixed(0)} ms after a set with ttl 60000 (maxTtl 300)`)
    }
  } finally {
    await s.close()
  }
})

test('delete → delete(key, "deleted") on every replica; deleting a missing key resolves quietly', async () => {
  const s = scope()
  try {
    const yard = s.yard(await startYard())
    const a = await replica(s, yard, 'del')
    const b = await replica(s, yard, 'del')
    await a.set('k', 'v')
    await a.set('stay', 1)
    await until(() => b.has('k') && b.has('stay'), 1000, 'replicated')
    const onA = next(a, 'delete')
    const onB = next(b, 'delete')
    await b.delete('k')
    assert.not.ok(b.has('k'), 'the deleter\'s replica shows the delete once delete() resolves')
    assert.equal(await onA, ['k', 'deleted'])
    assert.equal(await onB, ['k', 'deleted'])
    assert.not.ok(a.has('k'))
    assert.is(a.get('k'), undefined)

    let extra = 0
    a.on('delete', () => { extra++ })
    b.on('delete', () => { extra++ })
    await b.delete('never-was')
    await b.delete('k')
    await sleep(50)
    assert.is(extra, 0, 'no event for a key that was not there')
    const fresh = await replica(s, yard, 'del')
    assert.equal(fresh.toJSON(), { stay: 1 })
  } finally {
    await s.close()
  }
})

test('concurrent writes converge: every replica ends equal to the server\'s state', async () => {
  const s = scope()
  try {
    const yard = s.yard(await startYard())
    const writers = await Promise.all([0, 1, 2, 3].map(() => replica(s, yard, 'race')))
    const observer = await replica(s, yard, 'race')
    const keys = ['k0', 'k1', 'k2', 'k3', 'k4']
    const writes: Array<Promise<void>> = []
    for (let i = 0; i < 50; i++) {
      writers.forEach((kv, c) => {
        writes.push(kv.set(keys[(i + c) % keys.length], { c, i }))
        if (i % 17 === c) writes.push(kv.delete(keys[(i + 2 * c) % keys.length]))
      })
    }
    await Promise.all(writes)
    const fresh = await replica(s, yard, 'race')
    const truth = JSON.stringify(sorted(fresh.toJSON()))
    const all = [...writers, observer]
    await until(() => all.every((kv) => JSON.stringify(sorted(kv.toJSON())) === truth), 2000, 'every replica equal to a fresh one')
    for (const kv of all) assert.equal(kv.toJSON(), fresh.toJSON())
    // the last write to each key wins for everyone: the server's order, one value per key
    for (const key of fresh.keys()) {
      const v = fresh.get(key) as { c: number, i: number }
      assert.ok(v.i >= 40, `${key} holds a late write (${JSON.stringify(v)})`)
    }
  } finally {
    await s.close()
  }
})

test('value too large → payload-too-large; past maxKeys → too-many-keys; the replica is unharmed', async () => {
  const s = scope()
  try {
    const yard = s.yard(await startYard({ limits: { kv: { maxValue: 16, maxKeys: 3 } } }))
    const w = await replica(s, yard, 'limits')
    const r = await replica(s, yard, 'limits')
    const big = await rejection(w.set('big', 'x'.repeat(100)))
    assert.is(big.code, 'payload-too-large')
    const bigBinary = await rejection(w.set('big', new Uint8Array(17)))
    assert.is(bigBinary.code, 'payload-too-large')
    assert.not.ok(w.has('big'))
    await w.set('fits', new Uint8Array(16))

    await w.set('a', 1)
    await w.set('b', 2)
    const tooMany = await rejection(w.set('c', 3))
    assert.is(tooMany.code, 'too-many-keys')
    assert.not.ok(w.has('c'))
    await w.set('a', 'overwrite') // an existing key at the limit is fine
    await w.delete('b')
    await w.set('c', 3)
    await until(() => r.has('c'), 1000, 'replicated')
    assert.equal(Object.keys(r.toJSON()).sort(), ['a', 'c', 'fits'])
    assert.not.ok(r.has('big'))
  } finally {
    await s.close()
  }
})

test('bad arguments reject with bad-request before anything is sent', async () => {
  const s = scope()
  try {
    const yard = s.yard(await startYard())
    const kv = await replica(s, yard, 'args')
    assert.is((await rejection(kv.set('', 1))).code, 'bad-request')
    assert.is((await rejection(kv.set('k'.repeat(257), 1))).code, 'bad-request')
    assert.is((await rejection(kv.set('k', 1, { ttl: 0 }))).code, 'bad-request')
    assert.is((await rejection(kv.set('k', 1, { ttl: -1 }))).code, 'bad-request')
    assert.is((await rejection(kv.set('k', 1, { ttl: 1.5 }))).code, 'bad-request')
    assert.is((await rejection(kv.set('k', 10n))).code, 'bad-request')
    assert.is((await rejection(kv.delete(''))).code, 'bad-request')
    await kv.set('k'.repeat(256), 'a key of 256 characters is fine')
    assert.equal(kv.keys(), ['k'.repeat(256)])
  } finally {
    await s.close()
  }
})

test('__proto__, constructor and friends are ordinary keys and do not pollute Object.prototype', async () => {
  const s = scope()
  try {
    const yard = s.yard(await startYard())
    const w = await replica(s, yard, 'proto')
    const r = await replica(s, yard, 'proto')
    const entries: Array<[string, unknown]> = [
      ['__proto__', { polluted: true }],
      ['constructor', 'c'],
      ['hasOwnProperty', 1],
      ['toString', null],
      ['prototype', [1, 2]]
    ]
    for (const [key, value] of entries) await w.set(key, value)
    await until(() => r.keys().length === entries.length, 1000, 'replicated')
    const fresh = await replica(s, yard, 'proto')
    for (const kv of [w, r, fresh]) {
      for (const [key, value] of entries) {
        assert.ok(kv.has(key), key)
        assert.equal(kv.get(key), value)
      }
      assert.not.ok(kv.has('valueOf'), 'inherited names are not keys')
      assert.is(kv.get('valueOf'), undefined)
      const json = kv.toJSON()
      assert.equal(Object.keys(json).sort(), entries.map(([k]) => k).sort())
      assert.ok(Object.prototype.hasOwnProperty.call(json, '__proto__'))
      assert.equal(Object.getOwnPropertyDescriptor(json, '__proto__')?.value, { polluted: true })
      assert.is(Object.getPrototypeOf(json), Object.prototype)
    }
    assert.is(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype untouched')
    assert.type(Object.prototype.hasOwnProperty, 'function')
    const gone = next(r, 'delete')
    await w.delete('__proto__')
    assert.equal(await gone, ['__proto__', 'deleted'])
    assert.not.ok(r.has('__proto__'))
    assert.is(r.get('constructor'), 'c')
  } finally {
    await s.close()
  }
})

test('values of every kind round trip: binary (as Uint8Array), strings, JSON, null, booleans', async () => {
  const s = scope()
  try {
    const yard = s.yard(await startYard())
    const w = await replica(s, yard, 'values')
    const r = await replica(s, yard, 'values')
    const all = new Uint8Array(256).map((_, i) => i)
    const values: Record<string, unknown> = {
      bin: all,
      str: 'héllo ✓ 日本',
      num: 42.5,
      zero: 0,
      nul: null,
      yes: true,
      no: false,
      obj: { a: [1, { b: 'c' }] },
      empty: ''
    }
    for (const [k, v] of Object.entries(values)) await w.set(k, v)
    await w.set('ab', new Uint8Array([7, 8, 9]).buffer)
    await until(() => r.keys().length === Object.keys(values).length + 1, 1000, 'replicated')
    const fresh = await replica(s, yard, 'values')
    for (const kv of [r, fresh]) {
      for (const [k, v] of Object.entries(values)) assert.equal(kv.get(k), v, k)
      const bin = kv.get('bin')
      assert.instance(bin, Uint8Array)
      assert.equal([...(bin as Uint8Array)], [...all])
      const ab = kv.get('ab')
      assert.instance(ab, Uint8Array, 'an ArrayBuffer is received as a Uint8Array')
      assert.equal([...(ab as Uint8Array)], [7, 8, 9])
      assert.ok(kv.has('nul') && kv.has('no') && kv.has('empty'), 'falsy values are present keys')
    }
  } finally {
    await s.close()
  }
})

test('get / has / keys / toJSON', async () => {
  const s = scope()
  try {
    const yard = s.yard(await startYard())
    const kv = await replica(s, yard, 'api')
    assert.equal(kv.keys(), [])
    assert.equal(kv.toJSON(), {})
    assert.is(kv.get('x'), undefined)
    assert.is(kv.has('x'), false)
    await kv.set('x', 1)
    await kv.set('y', { z: 2 })
    assert.is(kv.get('x'), 1)
    assert.is(kv.has('x'), true)
    assert.equal(kv.keys().sort(), ['x', 'y'])
    assert.equal(kv.toJSON(), { x: 1, y: { z: 2 } })
    assert.is(JSON.stringify({ state: kv }), '{"state":{"x":1,"y":{"z":2}}}', 'JSON.stringify uses toJSON')
    await kv.delete('x')
    assert.equal(kv.keys(), ['y'])
    assert.is(kv.has('x'), false)
  } finally {
    await s.close()
  }
})

test('after a server restart on the same port the replica resyncs to the (empty) new state and replicates again', async () => {
  const s = scope()
  let yard2: Yard | null = null
  try {
    const yard = await startYard()
    const port = yard.port
    const reconnect = { minDelay: 50, maxDelay: 200 }
    const kv = await replica(s, yard, 'restart', { reconnect })
    await kv.set('x', 1)
    await kv.set('y', 2)
    const deletes = collect(kv, 'delete', 2, 5000)
    const synced = next(kv, 'sync', 5000)
    await yard.close()
    yard2 = await createServer({ port, host: '127.0.0.1' })
    const deleted = await deletes
    assert.equal(deleted.map(([key]) => key).sort(), ['x', 'y'])
    for (const [, reason] of deleted) assert.ok(reason === 'deleted' || reason === 'expired')
    await synced
    assert.equal(kv.keys(), [], 'the replica equals the restarted server: empty')

    const other = await replica(s, yard2, 'restart')
    const update = next(kv, 'update')
    await other.set('z', 'after restart')
    assert.equal(await update, ['z', 'after restart'])
    const back = next(other, 'update')
    await kv.set('w', 'from the old replica')
    assert.equal(await back, ['w', 'from the old replica'])
    assert.equal(kv.toJSON(), { z: 'after restart', w: 'from the old replica' })
    assert.equal(other.toJSON(), kv.toJSON())
  } finally {
    await s.close()
    await yard2?.close()
  }
})

test('after a reconnect to the same server the replica catches up on what it missed, without replaying what it has', async () => {
  const s = scope()
  try {
    const yard = s.yard(await startYard())
    const { sockets, refuse } = socketControl(yard)

    const w = await replica(s, yard, 'resync')
    await w.set('a', 1)
    await w.set('b', 2)
    await w.set('c', 3)
    await w.set('t', 'short', { ttl: 400 })
    const before = sockets.length
    const tap = wireTap()
    const channel = s.ch(client(yard, 'resync', { reconnect: { minDelay: 50, maxDelay: 200 }, WebSocket: tap.WebSocket }))
    const r = channel.kv()
    await r.ready()
    assert.equal(r.toJSON(), { a: 1, b: 2, c: 3, t: 'short' })
    assert.is(sockets.length, before + 1)

    const updates: string[] = []
    const deletes: Array<[string, string]> = []
    r.on('update', (key) => updates.push(key))
    r.on('delete', (key, reason) => deletes.push([key, reason]))

    refuse(true)
    const down = next(channel, 'state')
    sockets[before].destroy()
    assert.equal((await down)[0], 'reconnecting')

    // while the replica is offline: an overwrite, a delete, a new key, an expiry
    await w.set('b', 20)
    await w.delete('c')
    await w.set('d', 4)
    const queued = r.set('e', 5) // written offline: delivered after the reconnect
    await until(() => !w.has('t'), 2000, 't expired on the server')
    assert.equal(r.toJSON(), { a: 1, b: 2, c: 3, t: 'short' }, 'offline, the replica is unchanged')
    assert.equal(updates, [])

    const synced = next(r, 'sync', 3000)
    tap.metas.length = 0
    refuse(false)
    await synced
    const resent = setEvents(tap.metas).filter((k) => k !== 'e')
    assert.equal(resent.sort(), ['b', 'd'], 'the server sends only what the replica lacks (a is not sent again)')
    await queued
    assert.equal(r.toJSON(), { a: 1, b: 20, d: 4, e: 5 })
    assert.equal(updates.filter((k) => k !== 'e').sort(), ['b', 'd'], 'only what changed is sent again (a is not replayed)')
    assert.equal(deletes.sort(), [['c', 'deleted'], ['t', 'expired']])
    await until(() => w.get('e') === 5, 1000, 'the offline write reached the other replica')

    // and it keeps replicating both ways
    const live = next(r, 'update')
    await w.set('f', 6)
    assert.equal(await live, ['f', 6])
    const fresh = await replica(s, yard, 'resync')
    assert.equal(r.toJSON(), fresh.toJSON())
    assert.equal(w.toJSON(), fresh.toJSON())
  } finally {
    await s.close()
  }
})

test('a replica that joined an empty namespace also catches up without a full replay', async () => {
  const s = scope()
  try {
    const yard = s.yard(await startYard())
    const { sockets, refuse } = socketControl(yard)
    const tap = wireTap()
    const channel = s.ch(client(yard, 'from-empty', { reconnect: { minDelay: 50, maxDelay: 200 }, WebSocket: tap.WebSocket }))
    const r = channel.kv()
    await r.ready() // the namespace holds nothing yet
    const w = await replica(s, yard, 'from-empty')
    await w.set('x', 1)
    await r.set('y', 2)
    await until(() => r.has('x') && r.has('y'), 1000, 'replicated')

    refuse(true)
    const down = next(channel, 'state')
    sockets[0].destroy()
    assert.equal((await down)[0], 'reconnecting')
    await w.set('z', 3)
    const synced = next(r, 'sync', 3000)
    tap.metas.length = 0
    refuse(false)
    await synced
    assert.equal(setEvents(tap.metas), ['z'], 'x and y are not sent again')
    assert.equal(r.toJSON(), { x: 1, y: 2, z: 3 })
  } finally {
    await s.close()
  }
})

test('with a broker that delivers events late (as across processes), replies first still converge and resync stays minimal', async () => {
  const s = scope()
  // The memory broker, but every topic message reaches this process 30 ms late: REPLY frames
  // overtake the EVENT of the same write, as they may with Redis.
  const inner = memoryBroker()
  const broker: Broker = {
    ...inner,
    subscribe: (topic, handler) => inner.subscribe(topic, (message) => { setTimeout(() => handler(message), 30) })
  }
  try {
    const yard = s.yard(await startYard({ broker }))
    const { sockets, refuse } = socketControl(yard)
    const w = await replica(s, yard, 'late-events')
    await w.set('seed', 0)
    const tap = wireTap()
    const channel = s.ch(client(yard, 'late-events', { reconnect: { minDelay: 50, maxDelay: 200 }, WebSocket: tap.WebSocket }))
    const r = channel.kv()
    await r.ready()
    // interleave: the replica's own writes are answered before the events of earlier writes arrive
    const writes: Array<Promise<void>> = []
    for (let i = 0; i < 5; i++) {
      writes.push(w.set(`w${i}`, i))
      writes.push(r.set(`r${i}`, i))
    }
    await Promise.all(writes)
    assert.equal(Object.keys(r.toJSON()).filter((k) => k.startsWith('r')).sort(), ['r0', 'r1', 'r2', 'r3', 'r4'], 'own writes show at once')
    await until(() => r.keys().length === 11 && w.keys().length === 11, 1000, 'all events delivered')
    assert.equal(r.toJSON(), w.toJSON())

    refuse(true)
    const down = next(channel, 'state')
    sockets[1].destroy()
    assert.equal((await down)[0], 'reconnecting')
    const synced = next(r, 'sync', 3000)
    tap.metas.length = 0
    refuse(false)
    await synced
    assert.equal(setEvents(tap.metas), [], 'the replica had everything: nothing is sent again')
    assert.equal(r.toJSON(), w.toJSON())
  } finally {
    await s.close()
    inner.close()
  }
})

function sorted (o: Record<string, unknown>): Array<[string, unknown]> {
  return Object.entries(o).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
}

test('a wall-clock step does not change why a key went away: deadlines use the monotonic clock', async () => {
  const s = scope()
  const realNow = Date.now
  try {
    const yard = s.yard(await startYard())
    const { sockets, refuse } = socketControl(yard)
    const w = await replica(s, yard, 'clock')
    await w.set('long', 1, { ttl: 60_000 })
    const before = sockets.length
    const channel = s.ch(client(yard, 'clock', { reconnect: { minDelay: 50, maxDelay: 200 } }))
    const r = channel.kv()
    await r.ready()
    const deletes: Array<[string, string]> = []
    r.on('delete', (key, reason) => deletes.push([key, reason]))
    refuse(true)
    const down = next(channel, 'state')
    sockets[before].destroy()
    assert.equal((await down)[0], 'reconnecting')
    await w.delete('long')
    // NTP steps the wall clock two hours ahead while the replica is offline
    Date.now = () => realNow() + 2 * 60 * 60_000
    const synced = next(r, 'sync', 3000)
    refuse(false)
    await synced
    assert.equal(deletes, [['long', 'deleted']], 'deleted, not expired: its 60 s had not passed')
  } finally {
    Date.now = realNow
    await s.close()
  }
})

test.run()

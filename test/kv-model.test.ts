// test/kv-model.test.ts — the pure expiring KV model (src/kv/model.ts): ordering by seq,
// expiry by one sweep over a timing wheel, purging, epochs and snapshots. Deterministic: every
// call gets `now` explicitly, nothing here uses a timer.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { KV_ENTRY_COST, KvModel, kvEntryBytes, type KvChange, type KvPage } from '../src/kv/model.js'
import { Kind } from '../src/protocol/codec.js'
import { SignalyardError } from '../src/protocol/errors.js'

const enc = new TextEncoder()
const bytes = (s: string): Uint8Array => enc.encode(s)
const text = (b: Uint8Array | undefined): string | undefined => b === undefined ? undefined : new TextDecoder().decode(b)

/** A model whose epochs are predictable: e1, e2, … */
function model (resolution = 100): KvModel {
  let n = 0
  return new KvModel({ resolution, epoch: () => `e${++n}` })
}

const set = (m: KvModel, key: string, value: string, ttl: number, now: number, ns = 'ns', maxKeys?: number): KvChange =>
  m.set(ns, key, Kind.Text, bytes(value), ttl, now, { maxKeys })

const keysOf = (changes: KvChange[]): string[] => changes.map((c) => c.key).sort()

test('set / get / delete / count / size', () => {
  const m = model()
  assert.is(m.size, 0)
  assert.is(m.count('ns'), 0)
  assert.is(m.get('ns', 'a', 0), undefined)

  const change = set(m, 'a', 'one', 1000, 0)
  assert.is(change.op, 'set')
  assert.is(change.key, 'a')
  assert.is(change.ns, 'ns')
  assert.is(change.epoch, 'e1')
  assert.ok(change.op === 'set' && change.ttl === 1000 && change.kind === Kind.Text)
  assert.is(text(m.get('ns', 'a', 10)?.value), 'one')
  assert.is(m.get('ns', 'a', 10)?.kind, Kind.Text)

  set(m, 'b', 'two', 1000, 0)
  set(m, 'a', 'uno', 1000, 5) // overwrite: no new key
  set(m, 'x', 'other', 1000, 0, 'other-ns')
  assert.is(m.count('ns'), 2)
  assert.is(m.count('other-ns'), 1)
  assert.is(m.size, 3)
  assert.is(text(m.get('ns', 'a', 10)?.value), 'uno')
  assert.is(m.get('other-ns', 'a', 10), undefined, 'namespaces are separate')

  const deleted = m.delete('ns', 'a')
  assert.ok(deleted !== null)
  assert.is(deleted?.op, 'delete')
  assert.is(deleted?.key, 'a')
  assert.is(m.get('ns', 'a', 10), undefined)
  assert.is(m.count('ns'), 1)
  assert.is(m.size, 2)
  assert.is(m.delete('ns', 'a'), null, 'deleting a missing key is a no-op')
  assert.is(m.delete('nowhere', 'a'), null)
  assert.is(m.size, 2)
})

test('get hides an entry whose time has passed even before the sweep', () => {
  const m = model()
  set(m, 'a', 'v', 250, 0)
  assert.ok(m.get('ns', 'a', 249) !== undefined)
  assert.is(m.get('ns', 'a', 250), undefined)
})

test('seq increases by one per change, separately per namespace', () => {
  const m = model()
  const seqs = [
    set(m, 'a', '1', 1000, 0).seq,
    set(m, 'b', '1', 1000, 0).seq,
    set(m, 'a', '2', 1000, 0).seq,
    m.delete('ns', 'b')?.seq
  ]
  assert.equal(seqs, [1, 2, 3, 4])
  assert.is(set(m, 'a', '1', 1000, 0, 'other').seq, 1, 'another namespace counts on its own')
  assert.is(set(m, 'c', '1', 1000, 0).seq, 5)
  // expiry takes a seq too
  const [expired] = m.sweep(1000)
  assert.is(expired.op, 'expire')
  assert.ok(expired.seq > 5)
})

test('overwrite refreshes the TTL and moves the entry (the old slot does not expire it)', () => {
  const m = model()
  m.sweep(0)
  set(m, 'k', 'v1', 300, 0)
  set(m, 'k', 'v2', 300, 200) // now lives until 500
  assert.equal(m.sweep(300), [], 'the first TTL passing does not expire the rewritten key')
  assert.equal(m.sweep(400), [])
  assert.is(text(m.get('ns', 'k', 450)?.value), 'v2')
  const changes = m.sweep(500)
  assert.equal(keysOf(changes), ['k'])
  assert.is(m.size, 0)
  // a key overwritten with a shorter TTL expires at the new, earlier time
  set(m, 'short', 'v', 10_000, 500)
  set(m, 'short', 'v', 100, 550) // due at 650
  assert.equal(keysOf(m.sweep(700)), ['short'])
  assert.equal(m.sweep(20_000), [], 'and its old slot holds nothing any more')
})

test('sweep expires exactly the due keys and returns expire changes with seqs', () => {
  const m = model()
  m.sweep(0)
  set(m, 'a', 'v', 100, 0)
  set(m, 'b', 'v', 200, 0)
  set(m, 'c', 'v', 200, 0)
  set(m, 'd', 'v', 1000, 0)
  set(m, 'z', 'v', 200, 0, 'other')
  assert.equal(m.sweep(50), [])
  const first = m.sweep(100)
  assert.equal(keysOf(first), ['a'])
  assert.equal(first[0], { op: 'expire', ns: 'ns', epoch: 'e1', key: 'a', seq: 5 })
  const second = m.sweep(200)
  assert.equal(keysOf(second), ['b', 'c', 'z'])
  for (const c of second) assert.is(c.op, 'expire')
  const inNs = second.filter((c) => c.ns === 'ns').map((c) => c.seq).sort()
  assert.equal(inNs, [6, 7], 'each expiry takes the next seq of its namespace')
  assert.equal(second.find((c) => c.ns === 'other')?.seq, 2)
  assert.equal(m.sweep(999), [])
  assert.is(text(m.get('ns', 'd', 999)?.value), 'v')
  assert.equal(keysOf(m.sweep(1000)), ['d'])
  assert.equal(m.sweep(5000), [], 'nothing is expired twice')
})

test('expiry is never early and at most one resolution late', () => {
  const m = model(100)
  m.sweep(0)
  set(m, 'k', 'v', 250, 0) // due at 250
  assert.equal(m.sweep(249), [])
  const late = m.sweep(300)
  assert.equal(keysOf(late), ['k'], 'swept by the end of the slot its time falls in')
})

test('the first sweep after a long time (or a big clock jump) still expires everything due', () => {
  const m = model()
  set(m, 'a', 'v', 100, 0)
  set(m, 'b', 'v', 5000, 0)
  set(m, 'c', 'v', 1_000_000, 0)
  // no sweep has run yet; the first one comes much later
  assert.equal(keysOf(m.sweep(10_000)), ['a', 'b'])
  assert.is(m.size, 1)
  // later jumps too
  set(m, 'd', 'v', 50, 10_000)
  assert.equal(keysOf(m.sweep(5_000_000)), ['c', 'd'])
  assert.is(m.size, 0)
  assert.is(m.namespaceCount, 0)
})

test('sweep cost follows the due entries, not the number of keys', () => {
  const m = model(100)
  const N = 100_000
  m.sweep(0)
  // 100k long-lived keys, each in its own wheel slot
  for (let i = 0; i < N; i++) m.set('big', `k${i}`, Kind.Text, bytes('v'), 10_000_000 + i * 100, 0)
  // 10 keys due in the first second
  for (let i = 0; i < 10; i++) set(m, `due${i}`, 'v', 100 * (i + 1), 0, 'small')
  assert.is(m.size, N + 10)

  const started = performance.now()
  let expired = 0
  // 2,000 sweeps, one per slot: if each one looked at every slot of the wheel this would be
  // 2e8 steps (seconds); proportional to what is due it is a few milliseconds.
  for (let t = 100; t <= 200_000; t += 100) expired += m.sweep(t).length
  const elapsed = performance.now() - started
  assert.is(expired, 10)
  assert.is(m.size, N)
  assert.is(m.count('small'), 0)
  assert.ok(elapsed < 250, `2,000 sweeps over ${N} live keys took ${elapsed.toFixed(1)} ms`)

  // and a single sweep with a few due among the 100k returns just those
  for (let i = 0; i < 10; i++) set(m, `again${i}`, 'v', 50, 200_000, 'small')
  assert.is(m.sweep(200_100).length, 10)
})

test('expired entries are purged: size drops and an empty namespace disappears', () => {
  const m = model()
  m.sweep(0)
  set(m, 'a', 'v', 100, 0, 'one')
  set(m, 'b', 'v', 100, 0, 'one')
  set(m, 'c', 'v', 100, 0, 'two')
  set(m, 'd', 'v', 1000, 0, 'two')
  assert.is(m.namespaceCount, 2)
  assert.is(m.size, 4)
  m.sweep(100)
  assert.is(m.size, 1)
  assert.is(m.count('one'), 0)
  assert.is(m.namespaceCount, 1, 'a namespace with no keys is gone')
  m.delete('two', 'd')
  assert.is(m.namespaceCount, 0, 'deleting the last key removes the namespace too')
  assert.is(m.size, 0)
  assert.equal(m.snapshot('one', null, 100), { epoch: '', seq: 0, changes: [], keys: [] })
})

test('a namespace emptied and written again is a new epoch with seq from 1', () => {
  const m = model()
  m.sweep(0)
  const first = set(m, 'a', 'v', 100, 0)
  m.sweep(100)
  const again = set(m, 'a', 'v', 100, 200)
  assert.is(first.epoch, 'e1')
  assert.is(again.epoch, 'e2')
  assert.is(again.seq, 1)
  // a replica of the old incarnation gets everything
  const snap = m.snapshot('ns', { epoch: 'e1', seq: 5 }, 200)
  assert.is(snap.epoch, 'e2')
  assert.equal(keysOf(snap.changes), ['a'])
})

test('default epochs are random per incarnation', () => {
  const m = new KvModel()
  const a = m.set('ns', 'k', Kind.None, new Uint8Array(0), 10, 0)
  m.delete('ns', 'k')
  const b = m.set('ns', 'k', Kind.None, new Uint8Array(0), 10, 0)
  assert.type(a.epoch, 'string')
  assert.ok(a.epoch.length >= 8)
  assert.is.not(a.epoch, b.epoch)
})

test('snapshot with the current epoch: only newer entries, plus every live key', () => {
  const m = model()
  m.sweep(0)
  set(m, 'a', 'v', 10_000, 0) // seq 1
  set(m, 'b', 'v', 10_000, 0) // seq 2
  set(m, 'c', 'v', 10_000, 0) // seq 3
  const snap1 = m.snapshot('ns', null, 0)
  assert.is(snap1.seq, 3)
  set(m, 'b', 'v2', 10_000, 100) // seq 4
  m.delete('ns', 'c') // seq 5
  set(m, 'd', 'v', 10_000, 100) // seq 6
  const snap = m.snapshot('ns', { epoch: snap1.epoch, seq: snap1.seq }, 1000)
  assert.is(snap.epoch, 'e1')
  assert.is(snap.seq, 6)
  assert.equal(keysOf(snap.changes), ['b', 'd'])
  assert.equal(snap.keys.sort(), ['a', 'b', 'd'])
  const b = snap.changes.find((c) => c.key === 'b')
  assert.ok(b?.op === 'set')
  if (b?.op === 'set') {
    assert.is(text(b.value), 'v2')
    assert.is(b.seq, 4)
    assert.is(b.ttl, 10_000 - 900, 'ttl is the time left, not the original TTL')
  }
  // up to date: nothing to send but the keys
  const same = m.snapshot('ns', { epoch: 'e1', seq: 6 }, 1000)
  assert.equal(same.changes, [])
  assert.equal(same.keys.sort(), ['a', 'b', 'd'])
})

test('snapshot with a foreign or empty epoch (or none) returns everything', () => {
  const m = model()
  set(m, 'a', 'v', 10_000, 0)
  set(m, 'b', 'v', 10_000, 0)
  for (const since of [null, { epoch: '', seq: 0 }, { epoch: 'someone-else', seq: 99 }, { epoch: 'x', seq: 1 }]) {
    const snap = m.snapshot('ns', since, 0)
    assert.equal(keysOf(snap.changes), ['a', 'b'], JSON.stringify(since))
    assert.equal(snap.keys.sort(), ['a', 'b'])
  }
})

test('snapshot leaves out entries whose time has passed but that are not swept yet', () => {
  const m = model()
  set(m, 'old', 'v', 100, 0)
  set(m, 'new', 'v', 10_000, 0)
  const snap = m.snapshot('ns', null, 150)
  assert.equal(keysOf(snap.changes), ['new'])
  assert.equal(snap.keys, ['new'])
})

test('maxKeys: a new key past the limit throws too-many-keys; overwrites still work', () => {
  const m = model()
  set(m, 'a', 'v', 1000, 0, 'ns', 2)
  set(m, 'b', 'v', 1000, 0, 'ns', 2)
  try {
    set(m, 'c', 'v', 1000, 0, 'ns', 2)
    assert.unreachable('should have thrown')
  } catch (err) {
    assert.instance(err, SignalyardError)
    assert.is((err as SignalyardError).code, 'too-many-keys')
  }
  assert.is(m.count('ns'), 2)
  assert.is(m.size, 2)
  assert.is(set(m, 'a', 'v2', 1000, 0, 'ns', 2).seq, 3, 'overwriting an existing key is allowed at the limit')
  set(m, 'c', 'v', 1000, 0, 'other', 2)
  assert.is(m.count('other'), 1, 'the limit is per namespace')
  m.delete('ns', 'b')
  set(m, 'c', 'v', 1000, 0, 'ns', 2)
  assert.is(m.count('ns'), 2)
  // a refused write to a new namespace leaves no namespace behind
  assert.throws(() => set(m, 'k', 'v', 1000, 0, 'zero', 0))
  assert.is(m.namespaceCount, 2)
})

test('__proto__, constructor, hasOwnProperty and friends are ordinary keys and namespaces', () => {
  const m = model()
  m.sweep(0)
  const names = ['__proto__', 'constructor', 'hasOwnProperty', 'toString', 'valueOf', 'prototype']
  for (const k of names) set(m, k, `v-${k}`, 1000, 0)
  for (const k of names) set(m, 'x', `ns-${k}`, 1000, 0, k)
  assert.is(m.count('ns'), names.length)
  for (const k of names) {
    assert.is(text(m.get('ns', k, 1)?.value), `v-${k}`)
    assert.is(text(m.get(k, 'x', 1)?.value), `ns-${k}`)
  }
  assert.equal(m.snapshot('ns', null, 1).keys.sort(), [...names].sort())
  assert.is(m.get('ns', 'missing', 1), undefined)
  assert.is(m.count('toString'), 1)
  assert.is(m.count('isPrototypeOf'), 0)
  assert.ok(m.delete('ns', '__proto__') !== null)
  assert.is(m.get('ns', '__proto__', 1), undefined)
  assert.is(m.sweep(1000).length, names.length * 2 - 1)
  assert.is(m.size, 0)
  assert.is(({} as Record<string, unknown>).x, undefined, 'Object.prototype untouched')
})

test('bytes: every entry counts key + value + KV_ENTRY_COST, per namespace and in all; overwrite, delete and expiry give them back', () => {
  const m = model()
  assert.is(kvEntryBytes('ab', 10), 2 + 10 + KV_ENTRY_COST)
  assert.is(kvEntryBytes('é', 0), 2 + KV_ENTRY_COST, 'keys count their UTF-8 bytes')
  set(m, 'a', 'x'.repeat(100), 1000, 0)
  set(m, 'b', 'x'.repeat(50), 100, 0, 'other')
  assert.is(m.bytesOf('ns'), kvEntryBytes('a', 100))
  assert.is(m.bytes, kvEntryBytes('a', 100) + kvEntryBytes('b', 50))
  set(m, 'a', 'x'.repeat(10), 1000, 0)
  assert.is(m.bytesOf('ns'), kvEntryBytes('a', 10), 'an overwrite counts its new size')
  m.sweep(200)
  assert.is(m.bytesOf('other'), 0, 'an expired key gives its bytes back')
  m.delete('ns', 'a')
  assert.is(m.bytes, 0)
})

test('maxBytes / maxTotal: a write past them throws quota-exceeded; growth only counts; shrinking always passes', () => {
  const m = model()
  const one = kvEntryBytes('k1', 100)
  const bounds = { maxBytes: 2 * one + 10, maxTotal: 3 * one + 10 }
  m.set('ns', 'k1', Kind.Text, bytes('x'.repeat(100)), 1000, 0, bounds)
  m.set('ns', 'k2', Kind.Text, bytes('x'.repeat(100)), 1000, 0, bounds)
  const refused = (fn: () => void): string => {
    try { fn() } catch (err) { return (err as SignalyardError).code }
    return 'accepted'
  }
  assert.is(refused(() => m.set('ns', 'k3', Kind.Text, bytes('x'.repeat(100)), 1000, 0, bounds)), 'quota-exceeded')
  assert.is(refused(() => m.set('ns', 'k1', Kind.Text, bytes('x'.repeat(120)), 1000, 0, bounds)), 'quota-exceeded', 'growing overwrite')
  assert.is(refused(() => m.set('ns', 'k1', Kind.Text, bytes('x'.repeat(105)), 1000, 0, bounds)), 'accepted', 'growth within the bound')
  assert.is(refused(() => m.set('ns', 'k1', Kind.Text, bytes('x'), 1000, 0, bounds)), 'accepted', 'shrinking')
  m.set('b', 'k1', Kind.Text, bytes('x'.repeat(100)), 1000, 0, bounds)
  assert.is(refused(() => m.set('c', 'k1', Kind.Text, bytes('x'.repeat(100)), 1000, 0, bounds)), 'quota-exceeded', 'the total')
  assert.is(m.count('c'), 0, 'a refused write leaves nothing')
})

test('pages: a namespace read a page at a time; entries changed before their turn are read as they are then, deleted ones skipped, new ones last', () => {
  const m = model()
  for (let i = 0; i < 10; i++) set(m, `k${i}`, 'x'.repeat(100), 1000, 0)
  const pages = m.pages('ns', null, () => 10, 2 * kvEntryBytes('k0', 100) + 1)
  const first = pages.next().value as KvPage
  assert.is(first.epoch, 'e1')
  assert.is(first.seq, 10)
  assert.ok(first.keys.length >= 1 && first.keys.length < 10, `a page holds part of the namespace (${first.keys.length} keys)`)
  assert.equal(first.changes.map((c) => c.key), first.keys)
  const seen = new Set(first.keys)
  // changes between pages
  m.delete('ns', 'k9')
  set(m, 'k8', 'changed', 1000, 10)
  set(m, 'new', 'n', 1000, 10)
  const rest: KvPage[] = [...pages]
  const changes = rest.flatMap((p) => p.changes)
  for (const p of rest) for (const k of p.keys) { assert.not.ok(seen.has(k), `${k} read twice`); seen.add(k) }
  assert.not.ok(seen.has('k9'), 'deleted before its turn: not read')
  assert.is(text((changes.find((c) => c.key === 'k8') as { value: Uint8Array }).value), 'changed')
  assert.is(rest.filter((p) => p.keys.length > 0).at(-1)?.keys.at(-1), 'new', 'added meanwhile: read last')
  assert.is(seen.size, 10)
  assert.is(rest[rest.length - 1].seq, 13)
})

test('pages: with the current epoch only newer entries carry values; an empty namespace is one empty page', () => {
  const m = model()
  for (let i = 0; i < 5; i++) set(m, `k${i}`, 'v', 1000, 0)
  const pages = [...m.pages('ns', { epoch: 'e1', seq: 3 }, () => 1, 1 << 20)]
  assert.is(pages.length, 1)
  assert.equal(pages[0].keys.sort(), ['k0', 'k1', 'k2', 'k3', 'k4'])
  assert.equal(keysOf(pages[0].changes), ['k3', 'k4'])
  assert.equal([...m.pages('none', null, () => 1, 100)], [{ epoch: '', seq: 0, changes: [], keys: [] }])
})

test.run()

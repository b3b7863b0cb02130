// test/browser.test.ts — the browser bundles in a real Chromium (Debian's /usr/bin/chromium driven
// by playwright-core; never `npx playwright install`).
//
// A tiny static HTTP server on 127.0.0.1 serves dist/browser/signalyard.js (ESM),
// dist/browser/signalyard.iife.js (global `signalyard`) and the pages in test/fixtures/browser/.
// Each page runs harness.js, which exposes `window.h`; the tests drive it with page.evaluate and
// read back a log of every event a stream emitted, binary values tagged as "a Uint8Array of that
// realm". Two pages are two JS realms, hence two sockets. Launching, the static server and the
// harness driver live in test/browser-helpers.ts (shared with test/browser-peers.test.ts).
//
// Chromium missing is a FAILURE with a clear message, not a skip: CI (.ci/run) installs it.
// `npm test -- browser` builds first; run alone, `node build.mjs --quiet` before.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createHash } from 'node:crypto'
import type { Page } from 'playwright-core'
import { SignalChannel, type Channel } from 'signalyard'
import type { Yard } from 'signalyard/server'
import { collect, sleep } from './helpers.js'
import {
  bytes, call, closeBrowser, closeChannels, dataOf, eventsOf, json, newContext, openPage, scoped, startStatic, str,
  waitLog, yardOn, type Defer, type Desc, type LogEntry
} from './browser-helpers.js'

test.after(closeBrowser)

const arrayBuffer = (v: number[]): Desc => ({ t: 'arraybuffer', v })
const pattern = (n: number, seed: number): number[] => Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff)

/**
 * Long byte arrays shown as length + SHA-1 (still byte-exact), so that a failing comparison prints
 * a readable diff instead of 70 000 lines.
 */
function compact (values: Desc[]): Desc[] {
  return values.map((d) => Array.isArray(d.v) && d.v.length > 32 && d.v.every((n) => Number.isInteger(n) && n >= 0 && n < 256)
    ? { ...d, v: `${d.v.length} byte values, sha1 ${createHash('sha1').update(Uint8Array.from(d.v as number[])).digest('hex')}` }
    : d)
}

/** Deep-equal lists of received values, byte arrays compared through `compact`. */
function sameValues (actual: Desc[], expected: Desc[], message?: string): void {
  assert.equal(compact(actual), compact(expected), message)
}

const waitData = (page: Page, id: number, count: number, what: string, ms?: number): Promise<Desc[]> =>
  waitLog(page, id, (log) => dataOf(log).length >= count, what, ms).then(dataOf)

/** Everything `stream.ready()` reports in the page. */
interface Ready { id: string | null, state: string, replica: Record<string, unknown> | null }

/** A yard, a static server and two ESM pages whose channels are closed at the end. */
async function twoPages (defer: Defer): Promise<{ yard: Yard, a: Page, b: Page }> {
  const yard = await yardOn(defer)
  const { origin } = await startStatic(defer)
  const context = await newContext(defer)
  const a = await openPage(context, `${origin}/esm.html`)
  const b = await openPage(context, `${origin}/esm.html`)
  defer(() => closeChannels(a))
  defer(() => closeChannels(b))
  return { yard, a, b }
}

// ── tests ──

test('echo between two pages (ESM bundle): JSON, string and bytes in order, binary as Uint8Array, sender included', async () => {
  await scoped(async (defer) => {
    const { yard, a, b } = await twoPages(defer)
    assert.is(await a.evaluate(() => (window as any).h.lib), 'esm', 'page A uses the ESM bundle')
    assert.ok((await a.evaluate(() => (window as any).h.exports as string[])).includes('SignalChannel'))

    const ea = await call<number>(a, 'echo', await call<number>(a, 'channel', 'room', { url: yard.url }))
    const eb = await call<number>(b, 'echo', await call<number>(b, 'channel', 'room', { url: yard.url }))
    const [ra, rb] = await Promise.all([call<Ready>(a, 'ready', ea), call<Ready>(b, 'ready', eb)])
    assert.type(ra.id, 'string', 'A has a server-stamped stream id')
    assert.is.not(ra.id, rb.id)
    assert.is(yard.health().connections, 2, 'two pages (two realms) hold two sockets')
    // a second channel in the same realm and to the same URL shares that realm's socket
    const kvA = await call<number>(a, 'kv', await call<number>(a, 'channel', 'room-2', { url: yard.url }))
    await call(a, 'ready', kvA)
    assert.is(yard.health().connections, 2, 'a second channel in page A reuses its socket')

    const everyByte = Array.from({ length: 256 }, (_, i) => i)
    const sent: Desc[] = [
      json({ hello: 'world', n: [1, 2.5, null, true], nested: { deep: { x: 'y' } } }),
      str('héllo ✓ 🚀'),
      bytes(everyByte),
      // a view into the middle of a bigger buffer: only its own bytes travel
      { t: 'subarray', v: [9, 8, 7, 6, 5], pad: 3 }
    ]
    for (const d of sent) await call(a, 'send', ea, d)
    const expected = [sent[0], sent[1], bytes(everyByte), bytes([9, 8, 7, 6, 5])]

    const gotB = await waitLog(b, eb, (log) => dataOf(log).length >= 4, 'B receives A\'s 4 messages')
    sameValues(dataOf(gotB), expected, 'B gets JSON, string, bytes (as Uint8Array, byte-exact), in order')
    for (const [, info] of eventsOf(gotB, 'data')) assert.equal(info, json({ from: ra.id }), 'from is A\'s stream id')

    const gotA = await waitLog(a, ea, (log) => dataOf(log).length >= 4, 'A receives its own 4 messages')
    sameValues(dataOf(gotA), expected, 'A gets its own messages too (self defaults to true)')

    await call(b, 'send', eb, str('pong'))
    const back = await waitLog(a, ea, (log) => dataOf(log).length >= 5, 'A receives B\'s reply')
    assert.equal(eventsOf(back, 'data')[4], [str('pong'), json({ from: rb.id })])
    await sleep(100)
    assert.is(dataOf(await call<LogEntry[]>(b, 'log', eb)).length, 5, 'B got nothing twice')
  })
})

test('kv between two pages: late joiner has the state at ready(), sees updates; a 300 ms TTL expires in both within 1.3 s', async () => {
  await scoped(async (defer) => {
    const { yard, a, b } = await twoPages(defer)

    const ka = await call<number>(a, 'kv', await call<number>(a, 'channel', 'board', { url: yard.url }))
    await call(a, 'ready', ka)
    const greeting = { text: 'hi', n: 1, list: [1, 'two', null] }
    await call(a, 'kvSet', ka, 'greeting', greeting)

    // B joins late: the replica holds A's key by the time ready() resolves.
    const kb = await call<number>(b, 'kv', await call<number>(b, 'channel', 'board', { url: yard.url }))
    const rb = await call<Ready>(b, 'ready', kb)
    assert.equal(rb.replica, { greeting }, 'late joiner sees the current state at ready()')

    await call(a, 'kvSet', ka, 'later', [1, 2, 3])
    const upd = await waitLog(b, kb, (log) => eventsOf(log, 'update').some(([k]) => k.v === 'later'), 'B sees the later set')
    assert.equal(eventsOf(upd, 'update').find(([k]) => k.v === 'later'), [str('later'), json([1, 2, 3])])

    const t0 = Date.now()
    await call(a, 'kvSet', ka, 'short', 'lived', { ttl: 300 })
    const expired = (log: LogEntry[]): LogEntry | undefined => log.find((e) => e.event === 'delete' && e.args[0].v === 'short')
    const [logA, logB] = await Promise.all([
      waitLog(a, ka, (log) => expired(log) !== undefined, 'A: delete of the 300 ms key', 3000),
      waitLog(b, kb, (log) => expired(log) !== undefined, 'B: delete of the 300 ms key', 3000)
    ])
    for (const [name, log] of [['A', logA], ['B', logB]] as const) {
      const entry = expired(log) as LogEntry
      assert.equal(entry.args, [str('short'), str('expired')], `${name}: 'delete'('short', 'expired')`)
      const after = entry.at - t0
      assert.ok(after >= 300, `${name}: not before its TTL (${after} ms)`)
      assert.ok(after <= 1300, `${name}: within 1 s after its TTL (${after} ms)`)
      assert.ok(eventsOf(log, 'update').some(([k, v]) => k.v === 'short' && v.v === 'lived'), `${name} saw the key first`)
    }
    for (const page of [a, b]) {
      const state = await call<{ keys: string[], json: Record<string, unknown> }>(page, 'kvState', page === a ? ka : kb)
      assert.equal(state.keys, ['greeting', 'later'], 'the expired key is gone, the others stay')
    }
  })
})

test('relay between two pages: strings and ArrayBuffers both ways, byte-exact; data sent before pairing is held', async () => {
  await scoped(async (defer) => {
    const { yard, a, b } = await twoPages(defer)

    const ra = await call<number>(a, 'relay', await call<number>(a, 'channel', 'pipe', { url: yard.url }), { local: 'a', remote: 'b' })
    await call(a, 'send', ra, str('early'))
    await sleep(50)
    const rb = await call<number>(b, 'relay', await call<number>(b, 'channel', 'pipe', { url: yard.url }), { local: 'b', remote: 'a' })
    await Promise.all([call(a, 'ready', ra), call(b, 'ready', rb)])

    const big = pattern(70_000, 7)
    await call(a, 'send', ra, str('from a'))
    await call(a, 'send', ra, arrayBuffer([0, 255, 1, 254, 128]))
    await call(a, 'send', ra, arrayBuffer(big))
    await call(b, 'send', rb, str('from b ✓'))
    await call(b, 'send', rb, arrayBuffer([42]))

    sameValues(await waitData(b, rb, 4, 'B receives A\'s relay data'),
      [str('early'), str('from a'), bytes([0, 255, 1, 254, 128]), bytes(big)],
      'B gets the held message, then the rest in order; ArrayBuffers arrive as Uint8Array, byte-exact')
    sameValues(await waitData(a, ra, 2, 'A receives B\'s relay data'), [str('from b ✓'), bytes([42])])
    for (const [page, id] of [[a, ra], [b, rb]] as const) {
      const log = await call<LogEntry[]>(page, 'log', id)
      assert.is(eventsOf(log, 'open').length, 1, 'one open per side')
      assert.is(eventsOf(log, 'error').length, 0, 'no errors')
    }
  })
})

test('a Node client (import from "signalyard") and a browser page talk over echo and relay', async () => {
  await scoped(async (defer) => {
    const yard = await yardOn(defer)
    const { origin } = await startStatic(defer)
    const context = await newContext(defer)
    const page = await openPage(context, `${origin}/esm.html`)
    defer(() => closeChannels(page))
    const node: Channel = SignalChannel('mixed', { url: yard.url })
    defer(() => node.close())

    const pageCh = await call<number>(page, 'channel', 'mixed', { url: yard.url })
    const pe = await call<number>(page, 'echo', pageCh, { self: false })
    const pr = await call<number>(page, 'relay', pageCh, { local: 'page', remote: 'node' })
    const ne = node.echo({ self: false })
    const nr = node.relay({ local: 'node', remote: 'page' })
    await Promise.all([ne.ready(), nr.ready(), call(page, 'ready', pe), call(page, 'ready', pr)])

    // echo: Node → page
    ne.send({ from: 'node' })
    ne.send(new Uint8Array([3, 1, 4, 1, 5, 9, 2, 6]))
    sameValues(await waitData(page, pe, 2, 'page receives Node\'s echo'),
      [json({ from: 'node' }), bytes([3, 1, 4, 1, 5, 9, 2, 6])])
    // echo: page → Node
    const nodeEcho = collect(ne, 'data', 2)
    await call(page, 'send', pe, str('to node'))
    await call(page, 'send', pe, bytes([0, 0, 255, 7]))
    const echoed = (await nodeEcho).map(([d]) => d)
    assert.is(echoed[0], 'to node')
    assert.instance(echoed[1], Uint8Array, 'binary from the page is a Uint8Array in Node')
    assert.equal(Array.from(echoed[1] as Uint8Array), [0, 0, 255, 7])

    // relay: both ways, ArrayBuffer in, Uint8Array out
    const big = pattern(20_000, 3)
    nr.send('hello page')
    nr.send(new Uint8Array(big).buffer)
    sameValues(await waitData(page, pr, 2, 'page receives Node\'s relay data'), [str('hello page'), bytes(big)])
    const nodeRelay = collect(nr, 'data', 2)
    await call(page, 'send', pr, json({ ok: true }))
    await call(page, 'send', pr, arrayBuffer([10, 20, 30]))
    const relayed = (await nodeRelay).map(([d]) => d)
    assert.equal(relayed[0], { ok: true })
    assert.instance(relayed[1], Uint8Array)
    assert.equal(Array.from(relayed[1] as Uint8Array), [10, 20, 30])
  })
})

test('the IIFE bundle: window.signalyard.SignalChannel works for an echo round trip with an ESM page', async () => {
  await scoped(async (defer) => {
    const yard = await yardOn(defer)
    const { origin } = await startStatic(defer)
    const context = await newContext(defer)
    const requested: string[] = []
    context.on('request', (req) => requested.push(new URL(req.url()).pathname))
    const iife = await openPage(context, `${origin}/iife.html`)
    const esmRequestsBefore = requested.filter((p) => p === '/signalyard.js').length
    assert.is(esmRequestsBefore, 0, 'the IIFE page never loads the ESM bundle')
    const esm = await openPage(context, `${origin}/esm.html`)
    defer(() => closeChannels(iife))
    defer(() => closeChannels(esm))

    assert.is(await iife.evaluate(() => typeof (window as any).signalyard?.SignalChannel), 'function', 'window.signalyard.SignalChannel')
    assert.is(await iife.evaluate(() => (window as any).h.lib), 'iife', 'the harness runs on the global')

    const ei = await call<number>(iife, 'echo', await call<number>(iife, 'channel', 'mixed-bundles', { url: yard.url }))
    const ee = await call<number>(esm, 'echo', await call<number>(esm, 'channel', 'mixed-bundles', { url: yard.url }))
    await Promise.all([call(iife, 'ready', ei), call(esm, 'ready', ee)])
    await call(iife, 'send', ei, str('from iife'))
    sameValues(await waitData(esm, ee, 1, 'ESM page receives from the IIFE page'), [str('from iife')])
    await call(esm, 'send', ee, bytes([1, 2, 3, 250]))
    sameValues(await waitData(iife, ei, 2, 'IIFE page receives its own and the reply'), [str('from iife'), bytes([1, 2, 3, 250])])
  })
})

test('a yard attached to the page\'s own HTTP server at /yard: pages connect to location.origin + /yard', async () => {
  await scoped(async (defer) => {
    const { server, origin } = await startStatic(defer)
    const yard = await yardOn(defer, { server, path: '/yard' })
    const context = await newContext(defer)
    const a = await openPage(context, `${origin}/esm.html`)
    const b = await openPage(context, `${origin}/esm.html`)
    defer(() => closeChannels(a))
    defer(() => closeChannels(b))

    const url = await a.evaluate(() => location.origin.replace('http', 'ws') + '/yard')
    assert.is(url, `${origin.replace('http', 'ws')}/yard`)
    const ea = await call<number>(a, 'echo', await call<number>(a, 'channel', 'same-origin', { url }))
    const eb = await call<number>(b, 'echo', await call<number>(b, 'channel', 'same-origin', { url }))
    await Promise.all([call(a, 'ready', ea), call(b, 'ready', eb)])
    assert.is(yard.health().connections, 2, 'both pages are connected to the attached yard')
    await call(a, 'send', ea, bytes([5, 4, 3]))
    sameValues(await waitData(b, eb, 1, 'B receives through the attached yard'), [bytes([5, 4, 3])])
    // the app's own routes still work next to the yard
    const res = await fetch(`${origin}/harness.js`)
    assert.is(res.status, 200)
    await res.arrayBuffer()
  })
})

test('SignalChannel(ns) without a url connects to the page\'s own origin', async () => {
  await scoped(async (defer) => {
    const { server, origin } = await startStatic(defer)
    const yard = await yardOn(defer, { server })   // WebSocket upgrades at '/', the app serves files
    const context = await newContext(defer)
    const a = await openPage(context, `${origin}/esm.html`)
    const b = await openPage(context, `${origin}/esm.html`)
    defer(() => closeChannels(a))
    defer(() => closeChannels(b))

    const ca = await call<number>(a, 'channel', 'defaults')
    const ea = await call<number>(a, 'echo', ca)
    const eb = await call<number>(b, 'echo', await call<number>(b, 'channel', 'defaults'))
    await Promise.all([call(a, 'ready', ea), call(b, 'ready', eb)])
    assert.is(yard.health().connections, 2, 'both pages reached the yard on their own origin')
    await call(a, 'send', ea, json({ via: 'default url' }))
    sameValues(await waitData(b, eb, 1, 'B receives through the default URL'), [json({ via: 'default url' })])
    assert.is(await call(a, 'socketState', ca), 'open')
  })
})

test.run()

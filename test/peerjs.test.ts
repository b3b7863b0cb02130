// test/peerjs.test.ts — the registry package peerjs, unmodified, against the yard's PeerJS compat
// endpoint (issue 14; src/server/compat/peerjs.ts) in a real Chromium. Two yards share one
// redis-server; page A's Peers talk only to yard 1 and page B's only to yard 2, each page in a
// browser context of its own. With nothing but PeerJS's public API in the pages:
//   - a data connection (`peer.connect`) opens across the yards and carries messages both ways
//     (B's id picked by yard 2 over HTTP, as `new Peer()` without an id asks);
//   - a media call (`peer.call` with the fake camera, `call.answer`) decodes frames on both sides;
//   - an id held with another token gives the new Peer PeerJS's `unavailable-id` (on either yard);
//   - a socket cut under a Peer (a TCP proxy resets both sides: what a network drop is) gives
//     PeerJS's `network` error and 'disconnected'; the app's `peer.reconnect()` (same token) gets
//     OPEN again through the other yard and is reachable; another token could not take the id
//     meanwhile;
//   - a connection to an id whose Peer appears 500 ms later opens (the yard queued the OFFER and
//     candidates), and one to an id that never appears gives `peer-unavailable` (EXPIRE).
// test/peerjs-server.test.ts checks the same endpoint frame by frame; this file checks that the real
// client is satisfied with those frames.
//
// The page (test/fixtures/peerjs/page.ts) is bundled here with esbuild into a temporary directory:
// peerjs's "module" build (dist/bundler.mjs) with its dependencies (webrtc-adapter,
// peerjs-js-binarypack, @msgpack/msgpack), no Node polyfills needed.
//
// Network: as test/media.test.ts: a private namespace with only lo, so Chromium's ICE candidates
// are 127.0.0.1 and nothing else.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { randomUUID } from 'node:crypto'
import { connect as connectTcp, createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as esbuild from 'esbuild'
import type { Page } from 'playwright-core'
import { createServer, redisBroker, type Yard } from 'signalyard/server'
import { sleep } from './helpers.js'
import { closeBrowser, newContext, scoped, withTimeout, type Defer, bundlePage, servePage, type BundledPage } from './browser-helpers.js'
import { loopbackOnly } from './netns.js'
import { startRedis } from './redis.js'
import type { ConnState, PairEnd, PeerState } from './fixtures/peerjs/page.js'

const ISOLATED = await loopbackOnly(import.meta.url, 'ICE pairs may use this host\'s own addresses, not only 127.0.0.1')

const root = fileURLToPath(new URL('..', import.meta.url))
const FIXTURES = join(root, 'test/fixtures/peerjs')
/** Where the yards serve PeerJS (compat.peerjs.path's default), as the Peers are told. */
const PATH = '/peerjs'
/** Signalling, ICE and DTLS on loopback take well under a second; this is the bound. */
const OPEN_TIMEOUT = 10_000
/** The yard's EXPIRE comes 5 s after the first message to an absent id (EXPIRE_MS); the bound. */
const EXPIRE_TIMEOUT = 9000
/** Video frames each side must have decoded (the fake camera sends ~30 a second). */
const FRAMES = 10
/** How much later the Peer a connection waits for appears. */
const LATE_MS = 500

let page: BundledPage | null = null

test.before(async () => {
  page = await bundlePage(FIXTURES)
  assert.ok(page.inputs.includes('node_modules/peerjs/dist/bundler.mjs'), 'the bundle holds the registry package\'s own build')
  console.log(`bundle: ${page.inputs.length} modules, ${Math.round(page.bytes / 1024)} KiB in ${page.ms} ms`)
})

test.after(async () => {
  await closeBrowser()
  await page?.remove()
})

// ── servers: the page's, two yards on one Redis, a TCP proxy that can cut its connections ──

async function startPageServer (defer: Defer): Promise<string> {
  return await servePage(defer, FIXTURES, page as BundledPage)
}

/** Two yards, each with its own Redis broker on one redis-server; all closed at the end. */
async function twoYards (defer: Defer): Promise<[Yard, Yard]> {
  const redis = await startRedis()
  defer(() => redis.stop())
  const yards: Yard[] = []
  for (let i = 0; i < 2; i++) {
    const broker = redisBroker({ url: redis.url })
    defer(() => broker.close()) // a broker passed in is the caller's to close, after its yard
    const yard = await createServer({ port: 0, host: '127.0.0.1', broker })
    defer(() => yard.close())
    yards.push(yard)
  }
  return [yards[0], yards[1]]
}

/** A value of a yard's /metrics (0 when the series is absent). */
async function metric (yard: Yard, series: string): Promise<number> {
  const line = (await yard.metrics()).split('\n').find((l) => l.startsWith(series + ' '))
  return line === undefined ? 0 : Number(line.slice(series.length + 1))
}

interface CutProxy {
  port: number
  /** The yard port new connections go to. */
  target: number
  /** The target of each connection accepted, in order. */
  accepted: number[]
  /** Reset every connection open now, both sides (RST): a network drop, no WebSocket close frame. */
  cut: () => void
}

/** A TCP proxy on 127.0.0.1 in front of the yard at `target`. */
async function startProxy (defer: Defer, target: number): Promise<CutProxy> {
  const open = new Set<Socket>()
  const proxy: CutProxy = {
    port: 0,
    target,
    accepted: [],
    cut: () => { for (const s of open) s.resetAndDestroy() }
  }
  const server = createTcpServer((client) => {
    proxy.accepted.push(proxy.target)
    const upstream = connectTcp(proxy.target, '127.0.0.1')
    for (const [s, other] of [[client, upstream], [upstream, client]] as const) {
      open.add(s)
      s.on('error', () => other.destroy())
      s.on('close', () => { open.delete(s); other.destroy() })
    }
    client.pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  proxy.port = (server.address() as AddressInfo).port
  defer(() => new Promise<void>((resolve) => {
    for (const s of open) s.destroy()
    server.close(() => resolve())
  }))
  return proxy
}

// ── pages ──

interface PjPage { page: Page, who: string, problems: string[] }

/** page.html in a browser context of its own. */
async function openPjPage (defer: Defer, origin: string, who: string): Promise<PjPage> {
  const context = await newContext(defer, { rtcOrigin: origin })
  const page = await context.newPage()
  const problems: string[] = []
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`))
  await page.goto(origin + '/')
  await page.waitForFunction(() => (window as any).pj !== undefined, null, { timeout: 5000 })
    .catch((err: Error) => { throw new Error(`${who}: page.js did not load: ${problems.join('; ') || err.message}`) })
  defer(() => page.evaluate(() => (window as any).pj.stop()).catch(() => {}))
  return { page, who, problems }
}

function pcall<T = void> (p: PjPage, fn: string, ...args: unknown[]): Promise<T> {
  return withTimeout(p.page.evaluate(([fn, args]) => (window as any).pj[fn](...args), [fn, args] as [string, unknown[]]), 5000, `${p.who}: pj.${fn}()`)
}

/** `new Peer(id ?? <server-assigned>, { host: '127.0.0.1', port, path: '/peerjs', token, config: { iceServers: [] } })` named `name`. */
const createPeer = (p: PjPage, name: string, id: string | null, port: number, token?: string): Promise<void> =>
  pcall(p, 'create', name, id, { port, path: PATH, ...(token === undefined ? {} : { token }) })

const stateOf = (p: PjPage, name: string): Promise<PeerState> => pcall<PeerState>(p, 'state', name)

/** Poll Peer `name` of `p` until `done`, or fail showing what PeerJS said. */
async function waitPeer (p: PjPage, name: string, what: string, done: (s: PeerState) => boolean, timeout = OPEN_TIMEOUT): Promise<PeerState> {
  const deadline = performance.now() + timeout
  for (;;) {
    const s = await stateOf(p, name)
    if (done(s)) return s
    if (performance.now() > deadline) throw new Error(`${p.who}/${name}: ${what}: not within ${timeout} ms; ${describe(s)}${p.problems.length > 0 ? '; ' + p.problems.join('; ') : ''}`)
    await sleep(20)
  }
}

/** A Peer's state for a failure message: its events one a line, the rest as JSON. */
function describe (s: PeerState): string {
  const { events, createdAt, ...rest } = s
  return `state ${JSON.stringify(rest)}; events:\n    ${events.map((e) => `${Math.round(e.at - createdAt)} ms ${e.event} ${e.detail}`).join('\n    ')}`
}

const isOpen = (s: PeerState): boolean => s.open && s.opens.length > 0
const errorTypes = (s: PeerState): string[] => s.errors.map((e) => e.type)
const ms = (n: number): string => `${Math.round(n)} ms`
const unique = (prefix: string): string => `${prefix}-${randomUUID().slice(0, 8)}`

/**
 * The selected ICE pair is on loopback (checked when the file runs in its namespace): the local
 * end 127.0.0.1, and the remote end too, or a peer-reflexive candidate whose address Chromium keeps
 * out of getStats (the other page's connectivity check came before its CANDIDATE message). Each
 * side is checked, so both local ends are 127.0.0.1.
 */
function assertLoopback (pair: PairEnd[], who: string): void {
  if (!ISOLATED) return
  const shown = pair.map((end) => `${end.address ?? '(hidden)'}:${end.port} ${end.type}`).join(' ↔ ')
  const [local, remote] = pair
  assert.ok(pair.length === 2 && local.address === '127.0.0.1' && (remote.address === '127.0.0.1' || (remote.address === null && remote.type === 'prflx')),
    `${who}: the ICE pair is on loopback (${shown})`)
}

/**
 * `from`'s Peer `fromName` connects to `to`'s Peer (id `toId`, named `toName`); both ends open,
 * then a message each way arrives as sent. Returns the timings for the report.
 */
async function dataBothWays (from: PjPage, fromName: string, to: PjPage, toName: string, toId: string): Promise<{ open: number, there: number, back: number }> {
  const label = unique('chat')
  const out = await pcall<number>(from, 'connect', fromName, toId, label)
  const sa = await waitPeer(from, fromName, 'the outgoing data connection opens', (s) => s.conns.some((c) => c.key === out && c.open))
  const sb = await waitPeer(to, toName, 'the incoming data connection opens', (s) => s.conns.some((c) => c.label === label && c.open))
  const outgoing = sa.conns.find((c) => c.key === out) as ConnState
  const incoming = sb.conns.find((c) => c.label === label) as ConnState
  assert.is(incoming.peer, sa.id, 'the incoming connection names the caller\'s id')
  assert.is(incoming.serialization, 'binary', 'PeerJS\'s default serialization')

  const there = { text: 'hello from A', n: 1, list: [1, 2, 3], nested: { ok: true } }
  const sentThere = await pcall<number>(from, 'send', fromName, out, there)
  const gotThere = await waitPeer(to, toName, 'the message arrives', (s) => (s.conns.find((c) => c.key === incoming.key)?.received.length ?? 0) >= 1, 5000)
  const arrived = (gotThere.conns.find((c) => c.key === incoming.key) as ConnState).received
  assert.equal(arrived.map((r) => r.data), [there], 'one message, as sent')

  const back = 'and back from B'
  const sentBack = await pcall<number>(to, 'send', toName, incoming.key, back)
  const gotBack = await waitPeer(from, fromName, 'the reply arrives', (s) => (s.conns.find((c) => c.key === out)?.received.length ?? 0) >= 1, 5000)
  const replies = (gotBack.conns.find((c) => c.key === out) as ConnState).received
  assert.equal(replies.map((r) => r.data), [back], 'one reply, as sent')

  for (const [c, who] of [[outgoing, from.who], [incoming, to.who]] as const) {
    assert.equal(c.errors, [], `${who}: no connection errors`)
    assertLoopback(c.pair, who)
  }
  return { open: (outgoing.openedAt ?? NaN) - outgoing.createdAt, there: arrived[0].at - sentThere, back: replies[0].at - sentBack }
}

// ── tests ──

test('a PeerJS data connection opens between pages on two yards of one Redis, and messages go both ways (B\'s id picked by yard 2)', async () => {
  await scoped(async (defer) => {
    const [yard1, yard2] = await twoYards(defer)
    const origin = await startPageServer(defer)
    const a = await openPjPage(defer, origin, 'A')
    const b = await openPjPage(defer, origin, 'B')
    const aliceId = unique('alice')
    await createPeer(a, 'a', aliceId, yard1.port)
    await createPeer(b, 'b', null, yard2.port)
    const [sa, sb] = await Promise.all([waitPeer(a, 'a', 'open', isOpen), waitPeer(b, 'b', 'open', isOpen)])
    assert.is(sa.id, aliceId)
    assert.match(sb.id ?? '', /^[0-9a-f-]{36}$/, 'B\'s id came from yard 2\'s GET /peerjs/peerjs/id')
    assert.equal([sa.errors, sb.errors], [[], []], 'no errors')

    const t = await dataBothWays(a, 'a', b, 'b', sb.id as string)
    console.log(`data: open A ${ms(sa.opens[0] - sa.createdAt)}, B ${ms(sb.opens[0] - sb.createdAt)} (with the id fetch) after new Peer(); connection open ${ms(t.open)} after connect(); message A→B ${ms(t.there)}, B→A ${ms(t.back)}`)

    // Each yard saw PeerJS frames: A's OFFER and candidates entered at yard 1 and left at yard 2.
    for (const [yard, name] of [[yard1, 'yard 1'], [yard2, 'yard 2']] as const) {
      const inFrames = await metric(yard, 'signalyard_frames_in_total{endpoint="peerjs"}')
      const outFrames = await metric(yard, 'signalyard_frames_out_total{endpoint="peerjs"}')
      assert.ok(inFrames > 0 && outFrames > 1, `${name} received and sent PeerJS frames (in ${inFrames}, out ${outFrames})`)
    }
  })
})

test('a PeerJS media call with the fake camera across two yards: answered, and video frames decoded on both sides', async () => {
  await scoped(async (defer) => {
    const [yard1, yard2] = await twoYards(defer)
    const origin = await startPageServer(defer)
    const a = await openPjPage(defer, origin, 'A')
    const b = await openPjPage(defer, origin, 'B')
    const bobId = unique('bob')
    await createPeer(a, 'a', unique('alice'), yard1.port)
    await createPeer(b, 'b', bobId, yard2.port)
    await Promise.all([waitPeer(a, 'a', 'open', isOpen), waitPeer(b, 'b', 'open', isOpen)])
    const started = performance.timeOrigin + performance.now()
    await pcall<number>(a, 'call', 'a', bobId)
    const decoding = (s: PeerState): boolean => s.calls.length === 1 && s.calls[0].streamAt !== null && s.calls[0].framesDecoded >= FRAMES && s.calls[0].pcState === 'connected'
    const [sa, sb] = await Promise.all([
      waitPeer(a, 'a', 'the answer\'s stream arrives and its frames are decoded', decoding, 15_000),
      waitPeer(b, 'b', 'the call\'s stream arrives and its frames are decoded', decoding, 15_000)
    ])
    const decodedAfter = performance.timeOrigin + performance.now() - started
    const [ca, cb] = [sa.calls[0], sb.calls[0]]
    assert.ok(ca.outgoing && !cb.outgoing)
    assert.is(cb.peer, sa.id, 'B\'s call is from A')
    for (const [c, who] of [[ca, 'A'], [cb, 'B']] as const) {
      assert.equal(c.remoteKinds, ['audio', 'video'], `${who}: the other side's camera and microphone`)
      assert.ok(c.frameWidth > 0, `${who}: decoded frames have a size`)
      assertLoopback(c.pair, who)
    }
    assert.equal([sa.errors, sb.errors], [[], []], 'no errors')
    console.log(`media: remote stream at A ${ms((ca.streamAt ?? NaN) - started)}, at B ${ms((cb.streamAt ?? NaN) - started)} after call(); ≥ ${FRAMES} frames decoded on both sides within ${ms(decodedAfter)} (A ${ca.framesDecoded}, B ${cb.framesDecoded}, ${ca.frameWidth} px wide); audio packets A ${ca.audioPacketsReceived}, B ${cb.audioPacketsReceived}`)
  })
})

test('a live id asked for with another token: PeerJS\'s unavailable-id and a destroyed Peer, on the other yard and on the same one; the holder is untouched and reachable', async () => {
  await scoped(async (defer) => {
    const [yard1, yard2] = await twoYards(defer)
    const origin = await startPageServer(defer)
    const a = await openPjPage(defer, origin, 'A')
    const b = await openPjPage(defer, origin, 'B')
    const takenId = unique('taken-id')
    await createPeer(a, 'holder', takenId, yard1.port, 'tok-holder')
    await waitPeer(a, 'holder', 'open', isOpen)
    for (const [name, yard] of [['thief-other-yard', yard2], ['thief-same-yard', yard1]] as const) {
      const started = performance.timeOrigin + performance.now()
      await createPeer(b, name, takenId, yard.port, 'other')
      const s = await waitPeer(b, name, 'unavailable-id', (s) => s.destroyed, 5000)
      assert.equal(errorTypes(s), ['unavailable-id'], `${name}: one error, unavailable-id`)
      assert.match(s.errors[0].message, takenId)
      assert.equal(s.opens, [], `${name}: never open`)
      console.log(`unavailable-id: ${name} ${ms(s.errors[0].at - started)} after new Peer()`)
    }
    const holder = await stateOf(a, 'holder')
    assert.ok(holder.open && !holder.disconnected && holder.opens.length === 1, 'the holder is still open, once')
    assert.equal(holder.errors, [], 'the holder heard nothing')
    await createPeer(b, 'caller', unique('caller'), yard2.port)
    await waitPeer(b, 'caller', 'open', isOpen)
    await dataBothWays(b, 'caller', a, 'holder', takenId)
  })
})

test('a network drop under an open Peer (both TCP sides reset): network error and disconnected; reconnect() with the same token gets open again through the other yard, the id held meanwhile, and the Peer is reachable', async () => {
  await scoped(async (defer) => {
    const [yard1, yard2] = await twoYards(defer)
    const proxy = await startProxy(defer, yard1.port)
    const origin = await startPageServer(defer)
    const a = await openPjPage(defer, origin, 'A')
    const b = await openPjPage(defer, origin, 'B')
    const roamerId = unique('roamer')
    await createPeer(a, 'roamer', roamerId, proxy.port, 'tok-roamer')
    await createPeer(b, 'b', unique('bee'), yard2.port)
    await Promise.all([waitPeer(a, 'roamer', 'open', isOpen), waitPeer(b, 'b', 'open', isOpen)])
    assert.equal(proxy.accepted, [yard1.port], 'A\'s socket goes through the proxy to yard 1')

    // The drop: no WebSocket close frame either way, the yard's and the browser's sockets reset.
    // What follows goes to yard 2, as after a load balancer moved the client.
    proxy.target = yard2.port
    const cutAt = performance.timeOrigin + performance.now()
    proxy.cut()
    const dropped = await waitPeer(a, 'roamer', 'PeerJS notices the drop', (s) => s.disconnected, 5000)
    assert.equal(errorTypes(dropped), ['network'], 'PeerJS\'s network error ("Lost connection to server.")')
    assert.ok(!dropped.open && !dropped.destroyed && dropped.id === null, 'disconnected, not destroyed; PeerJS forgets its id until reconnect()')
    const noticed = (dropped.events.find((e) => e.event === 'disconnected')?.at ?? NaN) - cutAt

    // Within the yard's grace nobody else gets the id.
    await createPeer(b, 'thief', roamerId, yard1.port, 'tok-thief')
    const thief = await waitPeer(b, 'thief', 'unavailable-id', (s) => s.destroyed, 5000)
    assert.equal(errorTypes(thief), ['unavailable-id'], 'the dropped id is held for its token')

    const reconnectAt = performance.timeOrigin + performance.now()
    await pcall(a, 'reconnect', 'roamer')
    const back = await waitPeer(a, 'roamer', 'open again', (s) => s.opens.length === 2 && s.open, 5000)
    assert.is(back.id, roamerId, 'the same id')
    assert.equal(errorTypes(back), ['network'], 'no error after the reconnect')
    assert.equal(proxy.accepted, [yard1.port, yard2.port], 'the reconnect went to yard 2')
    const reopened = back.opens[1] - reconnectAt
    const t = await dataBothWays(b, 'b', a, 'roamer', roamerId)
    console.log(`drop: PeerJS disconnected ${ms(noticed)} after the cut; open again ${ms(reopened)} after reconnect() (${ms(back.opens[1] - cutAt)} after the cut); then a connection from B opened in ${ms(t.open)}`)

    // PeerJS's own disconnect() (a clean close, no LEAVE) and reconnect(): open a third time.
    await pcall(a, 'disconnect', 'roamer')
    await waitPeer(a, 'roamer', 'disconnected', (s) => s.disconnected && !s.open, 2000)
    await pcall(a, 'reconnect', 'roamer')
    const third = await waitPeer(a, 'roamer', 'open a third time', (s) => s.opens.length === 3 && s.open, 5000)
    assert.is(third.id, roamerId)
    assert.equal(errorTypes(third), ['network'], 'still no error but the drop\'s')
  })
})

test('a connection to an id whose Peer appears 500 ms later opens (its OFFER and candidates waited in the yard); one to an id that never appears gives peer-unavailable once', async () => {
  await scoped(async (defer) => {
    const [yard1, yard2] = await twoYards(defer)
    const origin = await startPageServer(defer)
    const a = await openPjPage(defer, origin, 'A')
    const b = await openPjPage(defer, origin, 'B')
    await createPeer(a, 'a', unique('alice'), yard1.port)
    await waitPeer(a, 'a', 'open', isOpen)
    const lateId = unique('late')
    const neverId = unique('never')
    const connectedAt = performance.timeOrigin + performance.now()
    const late = await pcall<number>(a, 'connect', 'a', lateId)
    await pcall<number>(a, 'connect', 'a', neverId)
    await sleep(LATE_MS)
    await createPeer(b, 'late', lateId, yard2.port)
    const sb = await waitPeer(b, 'late', 'the waiting connection arrives and opens', (s) => s.conns.some((c) => c.open))
    const sa = await waitPeer(a, 'a', 'the connection to the late Peer opens', (s) => s.conns.some((c) => c.key === late && c.open))
    const lateOpen = (sa.conns.find((c) => c.key === late)?.openedAt ?? NaN) - connectedAt
    assert.is(sb.conns.length, 1, 'one connection for the late Peer')
    assert.is(sb.conns[0].peer, sa.id)
    assert.ok(sb.opens[0] < (sb.conns[0].openedAt ?? 0), 'the late Peer was open before its connection')
    const msg = await pcall<number>(a, 'send', 'a', late, 'were you waiting?')
    await pcall<number>(b, 'send', 'late', sb.conns[0].key, 'just arrived')
    const [ra, rb] = await Promise.all([
      waitPeer(a, 'a', 'the reply', (s) => (s.conns.find((c) => c.key === late)?.received.length ?? 0) === 1, 5000),
      waitPeer(b, 'late', 'the message', (s) => s.conns[0].received.length === 1, 5000)
    ])
    assert.equal(ra.conns.find((c) => c.key === late)?.received.map((r) => r.data), ['just arrived'])
    assert.equal(rb.conns[0].received.map((r) => r.data), ['were you waiting?'])
    assert.ok(rb.conns[0].received[0].at >= msg)

    // The other one: the yard answers EXPIRE 5 s after the first message to the absent id.
    const expired = await waitPeer(a, 'a', 'peer-unavailable', (s) => s.errors.length > 0, EXPIRE_TIMEOUT)
    const unavailableAfter = expired.errors[0].at - connectedAt
    await sleep(500)
    const final = await stateOf(a, 'a')
    assert.equal(errorTypes(final), ['peer-unavailable'], 'peer-unavailable, once')
    assert.match(final.errors[0].message, neverId, 'for the id that never appeared')
    assert.ok(final.open && !final.disconnected && !final.destroyed, 'peer-unavailable does not end the Peer')
    assert.ok(final.conns.find((c) => c.key === late)?.open, 'the late connection is still open')
    console.log(`late: B's Peer created ${LATE_MS} ms after A's connect(), open ${ms(sb.opens[0] - sb.createdAt)} later; the connection open ${ms(lateOpen)} after connect(); peer-unavailable ${ms(unavailableAfter)} after connect() to the id that never came`)
  })
})

test.run()

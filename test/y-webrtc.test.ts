// test/y-webrtc.test.ts — the registry packages y-webrtc and yjs, unmodified, against the yard's
// y-webrtc compat endpoint (issue 14; src/server/compat/y-webrtc.ts) in a real Chromium: two
// pages in separate browser contexts (so no BroadcastChannel joins them), each given only its own
// yard's `/y-webrtc` URL, two yard processes on one redis-server. The pages find each other through
// both yards and Redis, open a WebRTC data channel between them, and a Y.Text typed on either side
// shows on the other; a page whose `?token=` authenticate() refuses never joins, however often
// y-webrtc retries. A first test runs the same pages through y-webrtc's own `bin/server.js`, the
// reference the endpoint copies, so that a failure below is the yard's and not the harness's.
//
// The page (test/fixtures/y-webrtc/page.ts) is bundled here with esbuild into a temporary
// directory; y-webrtc imports simple-peer's prebuilt browser file, so no Node polyfills are needed.
//
// Network: as test/media.test.ts: a private namespace with only lo, so Chromium's ICE candidates
// are 127.0.0.1 and nothing else.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as esbuild from 'esbuild'
import type { Page } from 'playwright-core'
import { fetchText, freePort, sleep, until } from './helpers.js'
import { closeBrowser, newContext, scoped, withTimeout, type Defer, bundlePage, servePage, type BundledPage } from './browser-helpers.js'
import { loopbackOnly } from './netns.js'
import { startRedis, type TestRedis } from './redis.js'
import type { State } from './fixtures/y-webrtc/page.js'

const ISOLATED = await loopbackOnly(import.meta.url, 'ICE pairs may use this host\'s own addresses, not only 127.0.0.1')

const root = fileURLToPath(new URL('..', import.meta.url))
const FIXTURES = join(root, 'test/fixtures/y-webrtc')
const YARD = join(FIXTURES, 'yard.mjs')
const REFERENCE = join(root, 'node_modules/y-webrtc/bin/server.js')
/** Signalling, ICE and the first Yjs sync on loopback take well under a second; this is the bound. */
const SYNC_TIMEOUT = 10_000
const TOKEN = 'sesame-4f1c'
const WRONG_TOKEN = 'not-the-token-9d2e'
/** How long the refused page is watched retrying. */
const REFUSED_WINDOW = 3000

let page: BundledPage | null = null

test.before(async () => {
  page = await bundlePage(FIXTURES)
  console.log(`bundle: ${page.inputs.length} modules, ${Math.round(page.bytes / 1024)} KiB in ${page.ms} ms`)
})

test.after(async () => {
  await closeBrowser()
  await page?.remove()
})

// ── the page's server: page.html and the bundle, on 127.0.0.1 ──

async function startPageServer (defer: Defer): Promise<string> {
  return await servePage(defer, FIXTURES, page as BundledPage)
}

// ── signalling servers: y-webrtc's own, or a yard process ──

interface Signaller {
  /** The URL y-webrtc is given (a yard's `/y-webrtc`, with `?token=` when asked). */
  url: (token?: string) => string
  /** Everything it printed. */
  output: () => string
  /** GET /metrics (yards only). */
  metrics: () => Promise<string>
}

function spawnChild (defer: Defer, args: string[], env: NodeJS.ProcessEnv = {}): { child: ChildProcess, output: () => string } {
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  child.stdout?.on('data', (d) => { out += String(d) })
  child.stderr?.on('data', (d) => { out += String(d) })
  defer(() => new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    const kill = setTimeout(() => child.kill('SIGKILL'), 3000)
    child.once('exit', () => { clearTimeout(kill); resolve() })
    child.kill('SIGTERM')
  }))
  return { child, output: () => out }
}

/** y-webrtc's bin/server.js on a free port (it listens on PORT and answers GET with "okay"). */
async function startReference (defer: Defer): Promise<Signaller> {
  const port = await freePort()
  const { child, output } = spawnChild(defer, [REFERENCE], { PORT: String(port) })
  await until(async () => {
    if (child.exitCode !== null) throw new Error(`bin/server.js exited (${child.exitCode}): ${output()}`)
    return await fetchText(`http://127.0.0.1:${port}/`).then((r) => r.body === 'okay', () => false)
  }, 5000, 'y-webrtc\'s bin/server.js answers')
  return { url: () => `ws://127.0.0.1:${port}`, output, metrics: async () => '' }
}

/** A yard process (fixtures/y-webrtc/yard.mjs) on `redis`; with `token`, authenticate() wants it. */
async function startYardProcess (defer: Defer, redis: TestRedis, token?: string): Promise<Signaller> {
  const { child, output } = spawnChild(defer, [YARD, redis.url, ...(token === undefined ? [] : [token])])
  let base = ''
  await until(() => {
    if (child.exitCode !== null) throw new Error(`yard.mjs exited (${child.exitCode}): ${output()}`)
    base = /^listening (ws:\/\/\S+)$/m.exec(output())?.[1] ?? ''
    return base !== ''
  }, 8000, 'the yard process listens')
  const url = new URL('y-webrtc', base)
  return {
    url: (t) => t === undefined ? url.href : `${url.href}?token=${encodeURIComponent(t)}`,
    output,
    metrics: async () => (await fetchText(new URL('metrics', base.replace('ws', 'http')).href)).body
  }
}

/** A value of /metrics (0 when the series is absent). */
function metric (text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '))
  return line === undefined ? 0 : Number(line.slice(series.length + 1))
}

// ── pages ──

interface YPage { page: Page, who: string, problems: string[] }

/** page.html in a browser context of its own (no BroadcastChannel shared with any other page). */
async function openYPage (defer: Defer, origin: string, who: string): Promise<YPage> {
  const context = await newContext(defer, { rtcOrigin: origin })
  const page = await context.newPage()
  const problems: string[] = []
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`))
  page.on('console', (msg) => { if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`) })
  await page.goto(origin + '/')
  await page.waitForFunction(() => (window as any).yw !== undefined, null, { timeout: 5000 })
    .catch((err: Error) => { throw new Error(`${who}: page.js did not load: ${problems.join('; ') || err.message}`) })
  defer(() => page.evaluate(() => (window as any).yw.stop()).catch(() => {}))
  return { page, who, problems }
}

function ycall<T> (p: YPage, fn: string, ...args: unknown[]): Promise<T> {
  return withTimeout(p.page.evaluate(([fn, args]) => (window as any).yw[fn](...args), [fn, args] as [string, unknown[]]), 5000, `${p.who}: yw.${fn}()`)
}

const stateOf = (p: YPage): Promise<State> => ycall<State>(p, 'state')

/** Poll `p`'s state until `done`, or fail showing it. */
async function waitState (p: YPage, what: string, done: (s: State) => boolean, ms = SYNC_TIMEOUT): Promise<State> {
  const deadline = performance.now() + ms
  for (;;) {
    const s = await stateOf(p)
    if (done(s)) return s
    if (performance.now() > deadline) throw new Error(`${p.who}: ${what}: not within ${ms} ms; ${describe(s)}; ${p.problems.join('; ')}`)
    await sleep(20)
  }
}

/**
 * Start `first` in `room`, and `second` once the server has `first` subscribed (`subscribed()`):
 * a second person opening the document, the case y-webrtc handles. Started in the
 * same few ms, both pages may each get the other's announce and both make an initiating
 * simple-peer; y-webrtc's glare token has one answer the other's offer, which Chromium accepts by
 * rolling back its own, and then each side sends on the data channel it created and reads none:
 * both 'connected', never synced, for good (y-webrtc 10.3.0). Through two yards that happened to
 * 3 of 20 simultaneous starts here; through bin/server.js, one process that handles one page's
 * subscribe and announce before the other's, to none of 35.
 */
async function startInTurn (room: string, first: YPage, firstUrl: string, second: YPage, secondUrl: string, subscribed: () => Promise<boolean>): Promise<void> {
  await ycall(first, 'start', room, firstUrl)
  await until(subscribed, 5000, `${first.who} subscribed to the room`).catch(async (err: Error) => {
    throw new Error(`${err.message}; ${describe(await stateOf(first))}`)
  })
  await ycall(second, 'start', room, secondUrl)
}

/** bin/server.js has `page` subscribed once it sends the page's own announce back. */
const echoed = (page: YPage) => async (): Promise<boolean> => (await stateOf(page)).echoed

/** A yard has subscribed to the room in Redis once a pub/sub channel named after it exists. */
const inRedis = (redis: TestRedis, room: string) => async (): Promise<boolean> => (await redis.channels()).some((c) => c.includes(room))

/** A page's state for a failure message: the signalling frames one a line, the rest as JSON. */
function describe (s: State): string {
  const { frames, sockets, ...rest } = s
  const closes = [...new Set(sockets.map((k) => k.closeCode))]
  return `state ${JSON.stringify(rest)}; ${sockets.length} sockets (close codes ${JSON.stringify(closes)}); frames:\n    ${frames.join('\n    ')}`
}

/** Exactly one WebRTC peer, its data channel open, the Yjs handshake done. */
const joined = (s: State): boolean => s.synced && s.webrtcPeers.length === 1 && s.webrtcPeers[0].connected && s.webrtcPeers[0].synced

/**
 * `a` and `b` (already started in one room) become WebRTC peers, then text typed on each shows on
 * the other, and it came over their data channel. Returns the timings (ms) for the report.
 */
async function syncBothWays (a: YPage, b: YPage): Promise<{ syncB: number, aToB: number, bToA: number }> {
  const [sa, sb] = await Promise.all([waitState(a, 'a synced WebRTC peer', joined), waitState(b, 'a synced WebRTC peer', joined)])
    .catch(async (err: Error) => {
      const [da, db] = await Promise.all([stateOf(a), stateOf(b)]).then((both) => both.map(describe), () => ['?', '?'])
      throw new Error(`${err.message.split(';')[0]}\n  ${a.who}: ${da}\n  ${b.who}: ${db}`)
    })
  // Each page's one peer is the other page (y-webrtc's room peer ids).
  assert.is(sa.webrtcPeers[0].id, sb.peerId, `${a.who}'s WebRTC peer is ${b.who}`)
  assert.is(sb.webrtcPeers[0].id, sa.peerId, `${b.who}'s WebRTC peer is ${a.who}`)

  const typeAndSee = async (from: YPage, to: YPage, text: string, expected: string): Promise<number> => {
    const before = (await stateOf(to)).webrtcPeers[0].channelMessagesReceived
    const at = await ycall<number>(from, 'insert', text)
    const seen = await waitState(to, `sees ${JSON.stringify(expected)}`, (s) => s.text === expected, 5000)
    // The update arrived as a data channel message: the receiver's count of them grows (polled:
    // Chromium serves getStats() from a cache that may be a few tens of ms old).
    await waitState(to, `counts the update among its data channel messages (${before} before)`, (s) => s.webrtcPeers[0]?.channelMessagesReceived > before, 2000)
    return (seen.lastRemoteAt ?? Infinity) - at
  }
  const aToB = await typeAndSee(a, b, 'hello from A. ', 'hello from A. ')
  const bToA = await typeAndSee(b, a, 'and from B.', 'hello from A. and from B.')

  const [fa, fb] = await Promise.all([stateOf(a), stateOf(b)])
  for (const [s, p] of [[fa, a], [fb, b]] as const) {
    assert.is(s.text, 'hello from A. and from B.', `${p.who} holds both edits`)
    assert.equal(s.bcPeers, [], `${p.who}: no peer over BroadcastChannel (separate browser contexts)`)
    const peer = s.webrtcPeers[0]
    assert.is(peer.pcState, 'connected', `${p.who}: the RTCPeerConnection is connected`)
    assert.ok(peer.channelMessagesSent > 0 && peer.channelMessagesReceived > 0, `${p.who}: Yjs messages both ways on the data channel`)
    if (ISOLATED) assert.ok(peer.pair.length === 2 && peer.pair.every((end) => end.startsWith('127.0.0.1:')), `${p.who}: the ICE pair is on loopback (${peer.pair.join(' ↔ ')})`)
  }
  return { syncB: fb.firstSyncMs ?? NaN, aToB, bToA }
}

const ms = (n: number): string => `${Math.round(n)} ms`

// ── tests ──

test('harness check: two pages sync both ways over WebRTC through y-webrtc\'s own bin/server.js', async () => {
  await scoped(async (defer) => {
    const reference = await startReference(defer)
    const origin = await startPageServer(defer)
    const a = await openYPage(defer, origin, 'A')
    const b = await openYPage(defer, origin, 'B')
    const room = `room-${randomUUID()}`
    await startInTurn(room, a, reference.url(), b, reference.url(), echoed(a))
    const t = await syncBothWays(a, b)
    console.log(`reference server: B synced with A ${ms(t.syncB)} after its start(); text A→B ${ms(t.aToB)}, B→A ${ms(t.bToA)}`)
  })
})

test('two pages on two yards of one Redis, each knowing only its own yard\'s /y-webrtc: they become WebRTC peers and sync text both ways', async () => {
  await scoped(async (defer) => {
    const redis = await startRedis()
    defer(() => redis.stop())
    const yard1 = await startYardProcess(defer, redis)
    const yard2 = await startYardProcess(defer, redis)
    const origin = await startPageServer(defer)
    const a = await openYPage(defer, origin, 'A')
    const b = await openYPage(defer, origin, 'B')
    const room = `room-${randomUUID()}`
    await startInTurn(room, a, yard1.url(), b, yard2.url(), inRedis(redis, room))
    const t = await syncBothWays(a, b)
    console.log(`two yards: B synced with A ${ms(t.syncB)} after its start(); text A→B ${ms(t.aToB)}, B→A ${ms(t.bToA)}`)

    // Each page spoke only to its own yard, and both yards carried y-webrtc frames: the announce,
    // offer and answer between A and B crossed from one yard to the other through Redis.
    const [sa, sb] = await Promise.all([stateOf(a), stateOf(b)])
    assert.ok(sa.sockets.length >= 1 && sa.sockets.every((s) => s.url === yard1.url()), `A's sockets all went to yard 1: ${JSON.stringify(sa.sockets)}`)
    assert.ok(sb.sockets.length >= 1 && sb.sockets.every((s) => s.url === yard2.url()), `B's sockets all went to yard 2: ${JSON.stringify(sb.sockets)}`)
    for (const [yard, name] of [[yard1, 'yard 1'], [yard2, 'yard 2']] as const) {
      const text = await yard.metrics()
      const inFrames = metric(text, 'signalyard_frames_in_total{endpoint="y-webrtc"}')
      const outFrames = metric(text, 'signalyard_frames_out_total{endpoint="y-webrtc"}')
      console.log(`${name}: y-webrtc frames in ${inFrames}, out ${outFrames}`)
      assert.ok(inFrames > 0 && outFrames > 0, `${name} received and sent y-webrtc frames`)
    }
  })
})

test('with authenticate(): a page whose ?token= is wrong is refused on every retry and never joins; a right token on the same yard joins', async () => {
  await scoped(async (defer) => {
    const redis = await startRedis()
    defer(() => redis.stop())
    const yard1 = await startYardProcess(defer, redis, TOKEN)
    const yard2 = await startYardProcess(defer, redis, TOKEN)
    const origin = await startPageServer(defer)
    const a = await openYPage(defer, origin, 'A')
    const b = await openYPage(defer, origin, 'B (wrong token)')
    const room = `room-${randomUUID()}`
    await startInTurn(room, a, yard1.url(TOKEN), b, yard2.url(WRONG_TOKEN), inRedis(redis, room))
    await ycall(a, 'insert', 'for members only')

    // y-webrtc reconnects forever (lib0's WebsocketClient). Every attempt is refused, either at
    // the upgrade (an HTTP error: the socket never opens, 1006) or once open (close 4401). Which
    // one decides how hard y-webrtc retries: it backs off only after attempts that never opened.
    await sleep(REFUSED_WINDOW)
    const sb = await stateOf(b)
    const finished = sb.sockets.filter((k) => k.closeCode !== null)
    const refused = (k: State['sockets'][number]): boolean => k.opened ? k.closeCode === 4401 : k.closeCode === 1006
    assert.ok(finished.length >= 2, `B tried more than once: ${JSON.stringify(sb.sockets.slice(0, 5))}`)
    assert.ok(finished.every(refused), `every attempt of B was refused: ${JSON.stringify([...new Set(finished.map((k) => `${k.opened ? 'opened' : 'not opened'}, ${String(k.closeCode)}`))])}`)
    const sa = await stateOf(a)
    assert.is(sb.text, '', 'B never got the text')
    assert.equal(sb.webrtcPeers, [], 'B has no WebRTC peer')
    assert.equal(sa.webrtcPeers, [], 'A never saw B')
    assert.not.ok(sa.frames.some((f) => f.includes(`${String(sb.peerId).slice(0, 4)}→`)), 'nothing B sent reached A')
    const log = yard2.output()
    const refusals = log.split('\n').filter((l) => l.includes('refused')).length
    const counted = metric(await yard2.metrics(), 'signalyard_refusals_total{code="unauthorized"}')
    const shapes = [...new Set(finished.map((k) => k.opened ? 'opened, then closed 4401' : 'never opened'))].join(' / ')
    console.log(`wrong token: ${finished.length} attempts in ${REFUSED_WINDOW} ms (${(finished.length / REFUSED_WINDOW * 1000).toFixed(1)}/s), each ${shapes}; yard 2 logged ${refusals} refusals, counted ${counted}`)
    assert.ok(refusals >= finished.length, `yard 2 logged each refusal (${refusals} lines for ${finished.length} attempts)`)
    assert.ok(counted >= finished.length, `yard 2 counted each refusal (${counted} for ${finished.length} attempts)`)
    assert.not.ok(log.includes(WRONG_TOKEN), 'the refused token is not in the yard\'s log')

    // The refusal is about the token: a page with the right one on the same yard joins A.
    const c = await openYPage(defer, origin, 'C (right token)')
    await ycall(c, 'start', room, yard2.url(TOKEN))
    const sc = await waitState(c, 'synced with A and holding A\'s text', (s) => joined(s) && s.text === 'for members only')
    assert.is(sc.webrtcPeers[0].id, (await stateOf(a)).peerId, 'C\'s peer is A')
    const late = await stateOf(b)
    assert.ok(late.text === '' && late.webrtcPeers.length === 0, 'B is still out')
  })
})

test.run()

// test/video-call.test.ts — examples/video-call as its header says: `node examples/video-call/server.mjs`
// with PORT serves the page, its icon and the bundle, and runs the yard on the same port; Chromium
// pages (Debian's /usr/bin/chromium through playwright-core, with a synthetic camera and microphone:
// see browser-helpers.ts) join a room and see and hear each other.
//
// What a user relies on, checked from outside the page: frames decoded both ways (getStats
// inbound-rtp video framesDecoded, audio packetsReceived) AND a remote <video> with a picture
// (videoWidth > 0: decoding alone does not mean the element shows it); the tile's path label says
// WebRTC; mute disables the microphone track; camera off takes the track off the sender
// (replaceTrack(null)), the other side stops getting frames and its tile says "Camera off", camera
// on brings frames back; hanging up removes the tile on the other side; at 375×700 (a phone) the
// controls are inside the viewport and nothing covers them; ?transport=relay says video needs
// WebRTC instead of failing; a page without camera joins to watch and listen; three pages form a
// small mesh. No page errors or console errors anywhere. The page's test hook is
// `window.videoCall` (documented in index.html).
//
// Network: 127.0.0.1 only. Chromium gathers ICE candidates on every interface, so this file re-runs
// itself in a private network namespace with only `lo` up (test/netns.ts). Where that is not
// possible the media tests are skipped (they need WebRTC between the pages) and the rest uses the
// relay (?transport=relay).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { BrowserContext, Page } from 'playwright-core'
import { assertPortTaken, assertServesBundleAndYard, assertServesPageAndIcon, startExampleServer, type ExampleServer, closeBrowser, newContext, scoped, withTimeout, type Defer } from './browser-helpers.js'
import { fetchText, freePort, sleep, until } from './helpers.js'
import { loopbackOnly } from './netns.js'

const ISOLATED = await loopbackOnly(import.meta.url,
  'the media tests are skipped (they need WebRTC between the pages) and the others use the relay (?transport=relay)')
/** Tests that need WebRTC between the pages (and so the namespace). */
const rtcTest = ISOLATED ? test : test.skip

const root = fileURLToPath(new URL('..', import.meta.url))
const PHONE = { width: 375, height: 700 }
const DESKTOP = { width: 1280, height: 720 }
/** Connecting, negotiating the media and decoding a first frame, with room for a loaded machine. */
const MEDIA_MS = 15_000

test.after(closeBrowser)
test.before.each(() => { problems = [] }) // a failed test's leftovers are its own

// ── the server ──

/** `node examples/video-call/server.mjs` on a free port (browser-helpers.ts). */
const startServer = async (defer: Defer): Promise<ExampleServer> => await startExampleServer(defer, 'video-call', 'video call')

// ── pages ──

/** Every page's uncaught errors and console errors; `noPageErrors()` at the end of a test checks them. */
let problems: string[] = []
function noPageErrors (): void {
  const all = problems
  problems = []
  assert.equal(all, [], 'no page errors and no console errors in the video call pages')
}

/** A fresh browser context, one per person (two people's browsers share nothing), with camera and microphone granted. */
async function context (defer: Defer, origin: string): Promise<BrowserContext> {
  const ctx = await newContext(defer, { rtcOrigin: origin })
  ctx.setDefaultTimeout(MEDIA_MS)
  return ctx
}

/** Open the page (errors collected, `initScript` before the page's own), without joining. */
async function open (ctx: BrowserContext, url: string, name: string, options: { viewport?: typeof PHONE, initScript?: string } = {}): Promise<Page> {
  const page = await ctx.newPage()
  await page.setViewportSize(options.viewport ?? DESKTOP)
  page.on('pageerror', (err) => problems.push(`${name}: page error: ${err.message}`))
  page.on('console', (msg) => { if (msg.type() === 'error') problems.push(`${name}: console error: ${msg.text()}`) })
  if (options.initScript !== undefined) await page.addInitScript({ content: options.initScript })
  await page.goto(url)
  await page.waitForFunction(() => (window as any).videoCall !== undefined, null, { timeout: 5000 })
  return page
}

/** Open the page, enter `name`, press Join; resolves once joined. */
async function join (ctx: BrowserContext, url: string, name: string, options: Parameters<typeof open>[3] = {}): Promise<Page> {
  const page = await open(ctx, url, name, options)
  await page.fill('#name', name)
  await page.click('#join')
  try {
    await page.waitForFunction(() => (window as any).videoCall.ready === true, null, { timeout: 5000 })
  } catch (err) {
    throw new Error(`${name} did not join: "${await page.textContent('#media-note')}"; ${problems.join('; ') || (err as Error).message}`)
  }
  return page
}

const idOf = (page: Page): Promise<string> => page.evaluate(() => (window as any).videoCall.me as string)

/** What a page shows and holds, for failure messages. */
async function dump (page: Page): Promise<string> {
  return await page.evaluate(async () => {
    const tiles = [...document.querySelectorAll<HTMLElement>('#grid .tile')].map((t) => ({
      ...t.dataset, w: t.querySelector('video')?.videoWidth, label: t.querySelector('figcaption')?.textContent, state: t.querySelector('.state')?.textContent
    }))
    const pcs: Record<string, unknown> = {}
    for (const [id, pc] of (window as any).videoCall.pcs as Map<string, any>) {
      const stats = pc.rtc === null ? [] : [...(await pc.rtc.getStats()).values()].filter((s: any) => s.type === 'inbound-rtp')
      pcs[id] = { state: pc.state, transport: pc.transport, inbound: stats.map((s: any) => `${s.kind} frames=${s.framesDecoded} packets=${s.packetsReceived}`) }
    }
    const notices = [...document.querySelectorAll('#notices .notice')].map((n) => n.textContent)
    return JSON.stringify({ me: (window as any).videoCall.me, tiles, pcs, notices })
  }).catch((err: Error) => `(no dump: ${err.message})`)
}

/** Wait for an in-page condition on the tile of `peer`; fails showing the page's state. */
async function tileUntil (page: Page, peer: string, what: string, predicate: string, ms = MEDIA_MS): Promise<void> {
  try {
    await page.waitForFunction(([peer, predicate]) => {
      const tile = document.querySelector<HTMLElement>(`#grid .tile[data-peer="${peer}"]`)
      return tile !== null && (new Function('tile', `return ${predicate}`))(tile) === true
    }, [peer, predicate] as const, { timeout: ms })
  } catch {
    throw new Error(`${what}: not within ${ms} ms; the page: ${await dump(page)}`)
  }
}

/** The tile of `peer` shows a picture: the <video> has frames (videoWidth > 0) and the page says so. */
const showsVideo = (page: Page, peer: string, who: string): Promise<void> =>
  tileUntil(page, peer, `${who} shows a picture`, 'tile.dataset.video === "on" && tile.querySelector("video").videoWidth > 0')

/** Inbound media counters of the pc to `peer`: video frames decoded, audio packets received. */
async function inbound (page: Page, peer: string): Promise<{ frames: number, audio: number }> {
  return await page.evaluate(async (peer) => {
    const pc = (window as any).videoCall.pcs.get(peer)
    if (pc?.rtc == null) return { frames: -1, audio: -1 }
    let frames = 0
    let audio = 0
    for (const s of (await pc.rtc.getStats()).values()) {
      if (s.type !== 'inbound-rtp') continue
      if (s.kind === 'video') frames += s.framesDecoded ?? 0
      if (s.kind === 'audio') audio += s.packetsReceived ?? 0
    }
    return { frames, audio }
  }, peer)
}

/** The next `ms` of frames decoded from `peer`. */
async function framesIn (page: Page, peer: string, ms: number): Promise<number> {
  const before = await inbound(page, peer)
  await sleep(ms)
  return (await inbound(page, peer)).frames - before.frames
}

/** Frames decoded from `peer` keep coming (> 0 in the next half second, checked for up to `ms`). */
async function framesFlow (page: Page, peer: string, who: string, ms = MEDIA_MS): Promise<void> {
  const deadline = Date.now() + ms
  while (await framesIn(page, peer, 500) <= 0) {
    if (Date.now() > deadline) throw new Error(`${who}: no new frames decoded within ${ms} ms; the page: ${await dump(page)}`)
  }
}

/** The controls the page shows now: each inside the viewport, and the topmost element at its centre. */
async function controlsClear (page: Page, where: string): Promise<string[]> {
  const report = await page.evaluate(() => {
    const vw = document.documentElement.clientWidth
    const vh = document.documentElement.clientHeight
    const out: Array<{ id: string, ok: boolean, why: string }> = []
    const buttons = [...document.querySelectorAll<HTMLButtonElement>('button')].filter((b) => b.getClientRects().length > 0)
    for (const b of buttons) {
      const r = b.getBoundingClientRect()
      const id = b.id || b.className
      const inside = r.left >= 0 && r.top >= 0 && r.right <= vw && r.bottom <= vh && r.width >= 24 && r.height >= 24
      const top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2)
      const onTop = top !== null && top.closest('button') === b
      out.push({ id, ok: inside && onTop, why: `${id}: box ${Math.round(r.left)},${Math.round(r.top)} ${Math.round(r.width)}×${Math.round(r.height)} in ${vw}×${vh}; at its centre: ${top === null ? 'nothing' : `${top.tagName.toLowerCase()}#${top.id}.${top.getAttribute('class') ?? ''}`}` })
    }
    const overflow = document.documentElement.scrollWidth > vw || document.documentElement.scrollHeight > vh
    return { out, overflow, size: `${document.documentElement.scrollWidth}×${document.documentElement.scrollHeight}` }
  })
  const bad = report.out.filter((c) => !c.ok).map((c) => c.why)
  assert.equal(bad, [], `${where}: every control is inside the viewport and uncovered`)
  assert.not.ok(report.overflow, `${where}: the page does not scroll (it is ${report.size})`)
  return report.out.map((c) => c.id)
}

// ── the tests ──

test('examples/video-call: one command serves the page, its icon and the bundle, and the yard on PORT (127.0.0.1); SIGTERM stops it', async () => {
  await scoped(async (defer) => {
    const server = await startServer(defer)
    await assertServesPageAndIcon(server.origin)
    await assertServesBundleAndYard(server.origin, 'video-call lobby')

    server.child.kill('SIGTERM')
    assert.is(await withTimeout(server.exited, 5000, 'the server exits on SIGTERM'), 0, `exit code; stderr: ${server.stderr()}`)
  })
})

test('examples/video-call: a taken PORT is an error (exit 1) that says so', async () => {
  await scoped(async (defer) => {
    const server = await startServer(defer)
    const port = new URL(server.origin).port
    await assertPortTaken(defer, 'examples/video-call/server.mjs', port, `video call server: port ${port} is in use`)
  })
})

test('examples/video-call: the header says how to run it', () => {
  const source = readFileSync(`${root}examples/video-call/server.mjs`, 'utf8')
  const header = source.split('\n').filter((l) => l.startsWith('//')).join('\n')
  assert.match(header, 'node examples/video-call/server.mjs')
  assert.match(header, 'PORT')
  assert.match(source, /from 'signalyard\/server'/)
})

test(`examples/video-call at 375×700 (a phone): the controls are inside the viewport and uncovered before joining, waiting alone and in a call${ISOLATED ? '' : ' (relay)'}`, async () => {
  await scoped(async (defer) => {
    const server = await startServer(defer)
    const query = ISOLATED ? '?room=layout' : '?room=layout&transport=relay'
    const phone = await open(await context(defer, server.origin), `${server.origin}/${query}`, 'phone', { viewport: PHONE })
    // Before joining: the camera preview, the join card, the microphone and camera buttons.
    await phone.waitForFunction(() => document.querySelector<HTMLElement>('#self')?.dataset.video === 'on', null, { timeout: 5000 })
    assert.equal((await controlsClear(phone, 'before joining')).sort(), ['cam', 'join', 'mic'])

    await phone.fill('#name', 'Pat')
    await phone.click('#join')
    await phone.waitForFunction(() => (window as any).videoCall.ready === true, null, { timeout: 5000 })
    // Alone: the waiting card with the link to share.
    assert.ok(await phone.isVisible('#waiting'), 'the waiting card shows')
    assert.match(await phone.textContent('#waiting') ?? '', 'Waiting for someone to join')
    assert.is(await phone.inputValue('#share-url'), `${server.origin}/?room=layout`)
    assert.equal((await controlsClear(phone, 'waiting alone')).sort(), ['cam', 'copy', 'invite', 'leave', 'mic'])

    // In a call: the other's tile fills the stage, our picture sits in its corner, above the controls.
    const desk = await join(await context(defer, server.origin), `${server.origin}/${query}`, 'Sam')
    const sam = await idOf(desk)
    if (ISOLATED) await showsVideo(phone, sam, 'the phone')
    else await tileUntil(phone, sam, 'the phone shows Sam on the relay', 'tile.querySelector(".path").dataset.transport === "relay"')
    assert.ok(await phone.isHidden('#waiting'), 'no waiting card in a call')
    assert.equal((await controlsClear(phone, 'in a call')).sort(), ['cam', 'invite', 'leave', 'mic'])
    // (no named functions inside evaluate: tsx wraps them in a helper the page does not have)
    const boxes = await phone.evaluate(() => {
      const [self, controls, tile] = ['#self', '#controls', '#grid .tile'].map((sel) => document.querySelector(sel)!.getBoundingClientRect().toJSON())
      return { self, controls, tile, vw: innerWidth }
    })
    assert.ok(boxes.self.bottom <= boxes.controls.top, `the self view (${JSON.stringify(boxes.self)}) is above the controls (${JSON.stringify(boxes.controls)})`)
    assert.ok(boxes.self.width < boxes.vw / 2, 'the self view is a small picture in a corner')
    assert.ok(boxes.tile.width >= boxes.vw - 24 && boxes.tile.bottom <= boxes.controls.top, `the remote tile fills the stage (${JSON.stringify(boxes.tile)})`)
    // The desktop page lays the same call out without covering its controls either.
    await controlsClear(desk, 'desktop in a call')
    noPageErrors()
  })
})

rtcTest('examples/video-call: two tabs see and hear each other over WebRTC; mute; camera off and on; hanging up', async () => {
  await scoped(async (defer) => {
    const server = await startServer(defer)
    const alice = await join(await context(defer, server.origin), `${server.origin}/`, 'Alice')
    const bob = await join(await context(defer, server.origin), `${server.origin}/`, 'Bob')
    const [a, b] = [await idOf(alice), await idOf(bob)]

    // Pictures both ways: the <video> of each remote tile has frames.
    await showsVideo(alice, b, 'Alice')
    await showsVideo(bob, a, 'Bob')
    for (const [page, peer, who] of [[alice, b, 'Alice'], [bob, a, 'Bob']] as const) {
      const got = await inbound(page, peer)
      assert.ok(got.frames > 0, `${who} decoded video frames (${got.frames})`)
      await until(async () => (await inbound(page, peer)).audio > 0, 5000, `${who} receives audio packets`)
      // The label names the peer and the path: "Bob", then "WebRTC · host/udp · 0 ms" (the RTT
      // once the stack measured one).
      await tileUntil(page, peer, `${who}'s tile says WebRTC`,
        'tile.querySelector(".path").dataset.transport === "webrtc" && /^WebRTC · host\\/udp · \\d+ ms$/.test(tile.querySelector(".path").textContent)')
      assert.is(await page.textContent(`#grid .tile[data-peer="${peer}"] .name`), who === 'Alice' ? 'Bob' : 'Alice')
    }
    assert.match(await alice.textContent('#people') ?? '', '2 people')

    // Mute: Alice's microphone track is disabled; Bob's tile of her shows the crossed microphone.
    await alice.click('#mic')
    assert.equal(await alice.evaluate(() => (window as any).videoCall.local.getAudioTracks().map((t: MediaStreamTrack) => t.enabled)), [false])
    assert.is(await alice.getAttribute('#mic', 'aria-pressed'), 'true')
    await tileUntil(bob, a, 'Bob sees Alice muted', 'tile.dataset.mic === "off" && getComputedStyle(tile.querySelector(".muted-mic")).display !== "none"', 5000)
    await alice.click('#mic')
    assert.equal(await alice.evaluate(() => (window as any).videoCall.local.getAudioTracks().map((t: MediaStreamTrack) => t.enabled)), [true])
    await tileUntil(bob, a, 'Bob sees Alice unmuted', 'tile.dataset.mic === "on"', 5000)

    // Camera off: the sender to Bob carries no track, the camera stops, Bob's tile says so and no
    // new frames come.
    await alice.click('#cam')
    await alice.waitForFunction(() => (window as any).videoCall.local.getVideoTracks().length === 0, null, { timeout: 5000 })
    const senders = await alice.evaluate((b) => (window as any).videoCall.pcs.get(b).rtc.getTransceivers()
      .filter((t: RTCRtpTransceiver) => t.receiver.track.kind === 'video').map((t: RTCRtpTransceiver) => t.sender.track), b)
    assert.equal(senders, [null], 'the video sender to Bob has no track (replaceTrack(null))')
    await tileUntil(bob, a, 'Bob\'s tile of Alice says "Camera off"', 'tile.dataset.cam === "off" && tile.dataset.video === "off" && tile.querySelector(".state").textContent === "Camera off"', 5000)
    await sleep(500) // frames already on their way
    assert.is(await framesIn(bob, a, 1000), 0, 'no frames from Alice with her camera off')
    assert.is(await alice.getAttribute('#cam', 'aria-pressed'), 'true')

    // Camera on: a new camera track on the same sender, and Bob sees her again.
    await alice.click('#cam')
    await alice.waitForFunction(() => (window as any).videoCall.local.getVideoTracks().length === 1, null, { timeout: 5000 })
    await framesFlow(bob, a, 'Bob after Alice turned her camera on', 5000)
    await tileUntil(bob, a, 'Bob sees Alice again', 'tile.dataset.cam === "on" && tile.dataset.video === "on"', 5000)
    await framesFlow(alice, b, 'Alice still gets Bob', 5000)

    // Hanging up: Bob's page says he left; Alice's loses his tile at once and waits again.
    await bob.click('#leave')
    assert.ok(await bob.isVisible('#left-card'), 'Bob sees that he left')
    await alice.waitForFunction((b) => document.querySelector(`#grid .tile[data-peer="${b}"]`) === null, b, { timeout: 3000 })
    assert.ok(await alice.isVisible('#waiting'), 'Alice waits for someone again')
    assert.equal(await alice.evaluate(() => [...(window as any).videoCall.pcs.keys()]), [])
    noPageErrors()
  })
})

rtcTest('examples/video-call without a camera or microphone: joins to watch and listen, and sees the other', async () => {
  await scoped(async (defer) => {
    const server = await startServer(defer)
    const noDevices = `navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('Requested device not found', 'NotFoundError'))`
    const viewer = await join(await context(defer, server.origin), `${server.origin}/?room=nocam`, 'Viewer', { initScript: noDevices })
    assert.match(await viewer.textContent('#notices') ?? '', 'No camera or microphone found: you can join to watch and listen.')
    assert.ok(await viewer.isDisabled('#cam') && await viewer.isDisabled('#mic'), 'no camera or microphone to switch')
    assert.is(await viewer.evaluate(() => (window as any).videoCall.local), null)
    const caster = await join(await context(defer, server.origin), `${server.origin}/?room=nocam`, 'Caster')
    const [v, c] = [await idOf(viewer), await idOf(caster)]
    await showsVideo(viewer, c, 'the viewer')
    await until(async () => (await inbound(viewer, c)).audio > 0, 5000, 'the viewer receives audio packets')
    await tileUntil(caster, v, 'the caster\'s tile of the viewer says "No camera"', 'tile.querySelector(".state").textContent === "No camera" && tile.dataset.mic === "none"', 5000)
    noPageErrors()
  })
})

test('examples/video-call ?transport=relay: the page says video needs WebRTC and keeps working', async () => {
  await scoped(async (defer) => {
    const server = await startServer(defer)
    // Both relay-only.
    const ann = await join(await context(defer, server.origin), `${server.origin}/?room=relay&transport=relay`, 'Ann', { viewport: PHONE })
    const ben = await join(await context(defer, server.origin), `${server.origin}/?room=relay&transport=relay`, 'Ben')
    const [a, b] = [await idOf(ann), await idOf(ben)]
    for (const [page, peer, who] of [[ann, b, 'Ann'], [ben, a, 'Ben']] as const) {
      // addTrack threw media-needs-webrtc on the relay-only pc: the tile says so (set only there).
      await tileUntil(page, peer, `${who}'s tile says video needs WebRTC`, 'tile.dataset.media === "needs-webrtc" && tile.querySelector(".state").textContent === "Video needs WebRTC"', 5000)
      await tileUntil(page, peer, `${who}'s tile is on the relay`, 'tile.querySelector(".path").dataset.transport === "relay" && tile.querySelector(".path").textContent === "relay"', 5000)
      assert.match(await page.textContent('#notices') ?? '', 'Video needs WebRTC; this call is relay-only')
    }
    await controlsClear(ann, 'relay-only at 375×700')

    // One side relay-only, the other 'auto': the auto side says so too (its pc learns in the
    // handshake that the pair can have no WebRTC leg).
    if (ISOLATED) {
      const cat = await join(await context(defer, server.origin), `${server.origin}/?room=mixed`, 'Cat')
      const dan = await join(await context(defer, server.origin), `${server.origin}/?room=mixed&transport=relay`, 'Dan')
      const [c, d] = [await idOf(cat), await idOf(dan)]
      await tileUntil(cat, d, 'Cat\'s tile of Dan says video needs WebRTC', 'tile.dataset.media === "needs-webrtc"', 5000)
      assert.match(await cat.textContent('#notices') ?? '', 'Video needs WebRTC; the call with Dan is relay-only')
      await tileUntil(dan, c, 'Dan\'s tile of Cat says video needs WebRTC', 'tile.dataset.media === "needs-webrtc"', 5000)
    }
    noPageErrors()
  })
})

rtcTest('examples/video-call: three in a room form a mesh, each seeing the other two', async () => {
  await scoped(async (defer) => {
    const server = await startServer(defer)
    const pages: Page[] = []
    for (const name of ['Ada', 'Bo', 'Cy']) pages.push(await join(await context(defer, server.origin), `${server.origin}/?room=mesh`, name))
    const ids = await Promise.all(pages.map(idOf))
    for (const [i, page] of pages.entries()) {
      for (const [j, peer] of ids.entries()) {
        if (i !== j) await showsVideo(page, peer, `page ${i} sees page ${j}`)
      }
      assert.is(await page.locator('#grid .tile').count(), 2)
      assert.match(await page.textContent('#people') ?? '', '3 people')
      await controlsClear(page, `page ${i} in a call of three`)
    }
    noPageErrors()
  })
})

test.run()

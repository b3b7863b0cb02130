// test/browser-peers.test.ts — presence (createPeers) and peer connections (createNode) in a real
// Chromium: two pages over real WebRTC, two pages over the relay when one page has no WebRTC, and a
// Node peer (node-datachannel) with a page, both directions.
//
// Network: 127.0.0.1 only. The yard and the static server listen there; Chromium resolves no host
// but 127.0.0.1 (--host-resolver-rules) and gets no ICE servers. Two guards keep ICE on loopback:
//
// 1. Candidate filters. Chromium gathers host candidates on every interface (here also eth0's
//    192.0.2.2, ::1, fd00::2), so both sides use an RTCPeerConnection subclass that drops every
//    candidate not on 127.0.0.1, going out and coming in (LoopbackPC in
//    test/fixtures/browser/harness.js, NodeLoopbackPC below): nobody is told a non-loopback address.
// 2. A private network namespace. Filters alone are not enough: ICE pairs each of Chromium's local
//    sockets, the one bound to 192.0.2.2 included, with the remote 127.0.0.1 candidate, so checks
//    go 192.0.2.2 → 127.0.0.1 and the peer answers to 192.0.2.2, a peer-reflexive candidate no filter
//    sees (measured here: in most runs one side nominates such a pair). That traffic stays inside the host,
//    but it is addressed to 192.0.2.2. So this file re-runs itself under `unshare -n` (root) or
//    `unshare -rn` (user namespaces) with only `lo` up: Node, the yard and Chromium then have
//    127.0.0.1 and nothing else. Where unshare cannot do that, the file runs as is, says so, and
//    accepts pairs whose far end is one of this host's own addresses (traffic that never leaves it).
//    SIGNALYARD_NETNS=off skips the namespace (test/netns.ts).
//
// Each test checks in the ICE stats that the chosen pair is 127.0.0.1 ↔ 127.0.0.1 (isolated).
//
// Chromium missing is a FAILURE, not a skip (see browser-helpers.ts). Timings (open time over WebRTC
// and over the relay, presence leave) are printed as `timing:` lines.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { networkInterfaces } from 'node:os'
import type { Page } from 'playwright-core'
import { RTCPeerConnection as NodeRTCPeerConnection } from 'node-datachannel/polyfill'
import { SignalChannel, type PeerConnection, type PeerStream, type RTCPeerConnectionConstructor } from 'signalyard'
import { collect, later, next, sleep, until, within } from './helpers.js'
import {
  bytes, call, callWithin, closeBrowser, closeChannels, dataOf, eventsOf, json, newContext, openPage, scoped,
  startStatic, str, waitLog, yardOn, type Defer, type Desc, type LogEntry
} from './browser-helpers.js'
import { loopbackOnly } from './netns.js'

const LOOPBACK = '127.0.0.1'

// ── a network namespace with only loopback (guard 2 in the header) ──

const ISOLATED = await loopbackOnly(import.meta.url,
  'the candidate filters keep signalling on 127.0.0.1, and ICE pairs may use this host\'s own addresses')

/** Where ICE traffic may go: 127.0.0.1, or, without the namespace, this host's own addresses. */
const HOST_ADDRESSES = new Set(Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address)))
const allowedFarEnd = (address: string | undefined): boolean =>
  address === LOOPBACK || (!ISOLATED && (address === '' || (address !== undefined && HOST_ADDRESSES.has(address))))

test.after(closeBrowser)

/** WebRTC may take this long before 'auto' falls back to the relay; the tests require WebRTC well before. */
const CONNECT_TIMEOUT = 8000
/** Deleted before the page's own scripts run: the page has no WebRTC at all. */
const NO_WEBRTC = `for (const name of ['RTCPeerConnection', 'webkitRTCPeerConnection', 'RTCDataChannel',
  'RTCSessionDescription', 'RTCIceCandidate', 'RTCPeerConnectionIceEvent']) delete window[name]`

// ── the Node side's loopback guard ──

const candidateAddress = (line: string): string | undefined => {
  const parts = line.trim().replace(/^a=/, '').split(/\s+/)
  return parts[0].startsWith('candidate:') ? parts[4] : undefined
}
const nodeRtc = { kept: [] as string[], dropped: [] as string[] }
function keep (line: string, where: string): boolean {
  const address = candidateAddress(line)
  const ok = address === LOOPBACK
  ;(ok ? nodeRtc.kept : nodeRtc.dropped).push(`${where} ${String(address)}`)
  return ok
}
const loopbackSdp = (sdp: string, where: string): string =>
  sdp.split('\r\n').filter((l) => !l.startsWith('a=candidate:') || keep(l, where)).join('\r\n')

/**
 * node-datachannel's RTCPeerConnection with `bindAddress: '127.0.0.1'` gathers loopback candidates
 * only; this subclass also refuses non-loopback candidates from the browser (addIceCandidate and
 * a=candidate lines of the remote description), and drops any non-loopback local one, like
 * LoopbackPC in the page. The polyfill sets `onicecandidate` as an own field in its constructor, so
 * the filter is an own accessor defined after super().
 */
class NodeLoopbackPC extends NodeRTCPeerConnection {
  static readonly instances: NodeLoopbackPC[] = []

  constructor (config?: ConstructorParameters<typeof NodeRTCPeerConnection>[0]) {
    super(config)
    NodeLoopbackPC.instances.push(this)
    let handler: ((ev: RTCPeerConnectionIceEvent) => unknown) | null = null
    Object.defineProperty(this, 'onicecandidate', {
      configurable: true,
      get: () => handler,
      set: (fn: ((ev: RTCPeerConnectionIceEvent) => unknown) | null) => {
        handler = typeof fn !== 'function'
          ? null
          : (ev) => {
              const line = ev.candidate?.candidate
              if (typeof line === 'string' && line !== '' && !keep(line, 'local')) return
              return fn.call(this, ev)
            }
      }
    })
  }

  override addIceCandidate (candidate?: RTCIceCandidateInit | null): Promise<void> {
    const line = candidate?.candidate
    if (typeof line === 'string' && line !== '' && !keep(line, 'remote')) return Promise.resolve()
    return super.addIceCandidate(candidate ?? undefined)
  }

  override setRemoteDescription (d: RTCSessionDescriptionInit): Promise<void> {
    return super.setRemoteDescription(typeof d.sdp === 'string' ? { type: d.type, sdp: loopbackSdp(d.sdp, 'remote-sdp') } : d)
  }
}

// ── what a page's LoopbackPC reports (harness.js h.rtcStats) ──

interface RtcStats {
  created: number
  kept: string[]
  dropped: string[]
  pcs: Array<{ connectionState: string, pairs: Array<{ local?: string, remote?: string, nominated: boolean }>, local: string[], remote: string[] }>
}

/**
 * The page's one open RTCPeerConnection: its filter passed candidates both ways, and every pair that
 * worked is 127.0.0.1 ↔ 127.0.0.1 (isolated; else its far end is this host).
 * Chromium reports a peer-reflexive candidate's address as ''.
 */
async function assertLoopbackIce (page: Page, who: string): Promise<RtcStats> {
  // Chromium's getStats() can lag the 'open' event by a moment: read again until a succeeded pair
  // shows (bounded), then assert on that report.
  let stats = await call<RtcStats>(page, 'rtcStats')
  for (let i = 0; i < 20 && (stats.pcs[0]?.pairs.length ?? 0) === 0; i++) {
    await sleep(100)
    stats = await call<RtcStats>(page, 'rtcStats')
  }
  assert.is(stats.pcs.length, 1, `${who}: one RTCPeerConnection open`)
  const [pc] = stats.pcs
  assert.is(pc.connectionState, 'connected', `${who}: ICE connected`)
  assert.ok(pc.pairs.length > 0, `${who}: a succeeded candidate pair`)
  for (const pair of pc.pairs) {
    if (ISOLATED) assert.equal([pair.local, pair.remote], [LOOPBACK, LOOPBACK], `${who}: the pair is 127.0.0.1 ↔ 127.0.0.1`)
    else assert.ok(allowedFarEnd(pair.remote), `${who}: the pair's far end ${String(pair.remote)} is on this host`)
  }
  assert.ok(pc.remote.every(allowedFarEnd), `${who}: remote candidates ${pc.remote.join(', ')}`)
  assert.ok(stats.kept.some((k) => k.startsWith('remote')), `${who}: the peer's candidates arrived`)
  assert.ok(stats.kept.some((k) => k.startsWith('local')), `${who}: its own candidates went out`)
  return stats
}

// ── two pages ──

const metaOf = (log: LogEntry[], event: string, id: string): unknown =>
  eventsOf(log, event).map(([d]) => d.v as { id?: string }).find((m) => m.id === id)

/** The page's side of a connection another node opened to it. */
async function incoming (page: Page, node: number, from: string, ms: number): Promise<number> {
  const log = await waitLog(page, node, (l) => eventsOf(l, 'connection').some(([, p]) => p.v === from), `a connection from ${from}`, ms)
  return eventsOf(log, 'connection').find(([, p]) => p.v === from)?.[0].v as number
}

/** The stream the peer created with `label` on connection `pc`. */
async function remoteStream (page: Page, pc: number, label: string): Promise<number> {
  const log = await waitLog(page, pc, (l) => eventsOf(l, 'connection').some(([, lb]) => lb.v === label), `the peer's stream "${label}"`)
  return eventsOf(log, 'connection').find(([, lb]) => lb.v === label)?.[0].v as number
}

const waitData = (page: Page, stream: number, count: number, what: string): Promise<Desc[]> =>
  waitLog(page, stream, (log) => dataOf(log).length >= count, what).then(dataOf)

const openTime = (log: LogEntry[]): number =>
  (log.find((e) => e.event === 'open')?.at ?? NaN) - (log.find((e) => e.event === 'created')?.at ?? NaN)

const pattern = (n: number, seed: number): number[] => Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff)

/**
 * Alice (page A, with WebRTC) and Bob (page B; with WebRTC unless `bobInit` removes it) join
 * presence, connect with createNode (A connects), exchange text and binary both ways on a stream
 * each side created, then A closes the connection and B's channel closes.
 */
async function twoPagesTalk (defer: Defer, expected: 'webrtc' | 'relay', bobInit?: string): Promise<void> {
  const yard = await yardOn(defer)
  const { origin } = await startStatic(defer)
  const context = await newContext(defer, { rtcOrigin: origin })
  const a = await openPage(context, `${origin}/esm.html`)
  const b = await openPage(context, `${origin}/esm.html`, { initScript: bobInit })
  defer(() => closeChannels(a))
  defer(() => closeChannels(b))
  assert.is(await a.evaluate(() => (window as any).h.webrtc), true, 'page A has WebRTC')
  assert.is(await b.evaluate(() => (window as any).h.webrtc), expected === 'webrtc', `page B ${expected === 'webrtc' ? 'has' : 'has no'} WebRTC`)

  // Presence: both see the other's join, with its meta.
  const ca = await call<number>(a, 'rtcChannel', 'room', yard.url)
  const cb = await call<number>(b, 'rtcChannel', 'room', yard.url)
  const pa = await call<number>(a, 'peers', ca)
  const pb = await call<number>(b, 'peers', cb)
  const alice = { id: 'alice', name: 'Alice', tags: ['a', 1] }
  const bob = { id: 'bob', name: 'Bob', webrtc: expected === 'webrtc' }
  await call(a, 'join', pa, alice)
  await call(b, 'join', pb, bob)
  const logA = await waitLog(a, pa, (l) => metaOf(l, 'join', 'bob') !== undefined, 'A sees bob join')
  const logB = await waitLog(b, pb, (l) => metaOf(l, 'join', 'alice') !== undefined, 'B sees alice (present before it joined)')
  assert.equal(metaOf(logA, 'join', 'bob'), bob, 'A: join with bob\'s meta')
  assert.equal(metaOf(logB, 'join', 'alice'), alice, 'B: join with alice\'s meta')
  assert.equal(await call(a, 'peersList', pa), [bob])
  assert.equal(await call(b, 'peersList', pb), [alice])

  // Nodes: A connects to B.
  const na = await call<number>(a, 'node', ca, { connectTimeout: CONNECT_TIMEOUT })
  const nb = await call<number>(b, 'node', cb, { connectTimeout: CONNECT_TIMEOUT })
  await call(a, 'listen', na, 'alice')
  await call(b, 'listen', nb, 'bob')
  const pcA = await call<number>(a, 'connect', na, 'bob')
  const chatA = await call<number>(a, 'createStream', pcA, 'chat')   // made while connecting: held until open
  await call(a, 'send', chatA, str('hello bob'))
  await callWithin(CONNECT_TIMEOUT + 4000, a, 'pcReady', pcA)
  const openedOn = (await call<LogEntry[]>(a, 'log', pcA)).find((e) => e.event === 'open')?.args[0]?.v
  assert.is(openedOn, 'relay', "'auto' opens on the relay at once")
  const pcB = await incoming(b, nb, 'alice', 3000)
  await call(b, 'pcReady', pcB)
  // ... and moves to WebRTC live when ICE connects (with WebRTC available here)
  const infoA = await callWithin<{ transport: string, state: string }>(CONNECT_TIMEOUT + 4000, a, 'pcSettled', pcA, expected, CONNECT_TIMEOUT + 2000)
  const infoB = await callWithin<{ transport: string, state: string, peerId: string }>(CONNECT_TIMEOUT + 4000, b, 'pcSettled', pcB, expected, CONNECT_TIMEOUT + 2000)
  assert.is(infoA.transport, expected, `A's connection is on ${expected}`)
  assert.is(infoB.transport, expected, `B's connection is on ${expected}`)
  assert.is(infoB.peerId, 'alice')
  const pcLogA = await call<LogEntry[]>(a, 'log', pcA)
  const opened = openTime(pcLogA)
  const created = pcLogA.find((e) => e.event === 'created')?.at ?? NaN
  const moved = pcLogA.find((e) => e.event === 'transport' && e.args[0]?.v === 'webrtc')?.at
  console.log(`timing: page ↔ page open on the relay in ${opened} ms (connect() to 'open' in page A)` +
    (moved === undefined ? '' : `, on WebRTC ${moved - created} ms after connect()`))

  if (expected === 'webrtc') {
    for (const [page, pc, who] of [[a, pcA, 'A'], [b, pcB, 'B']] as const) {
      const path = await call<{ transport: string, local?: string, remote?: string, protocol?: string, rtt?: number } | null>(page, 'pcPath', pc, 'webrtc', 2000)
      assert.is(path?.transport, 'webrtc', `page ${who}'s pc.path says WebRTC`)
      assert.is(path?.local, 'host', `page ${who}: a host candidate on loopback (${JSON.stringify(path)})`)
      // the other page's host address, learnt from its candidate or from its first check (prflx: the
      // initiator trickles its candidates only once the answer is applied)
      assert.ok(path?.remote === 'host' || path?.remote === 'prflx', `page ${who}: to the other page's own address (${JSON.stringify(path)})`)
      assert.is(path?.protocol, 'udp')
      assert.ok(typeof path?.rtt === 'number' && path.rtt >= 0 && path.rtt < 1000, `page ${who}: rtt ${String(path?.rtt)} ms`)
    }
    const [sa] = await Promise.all([assertLoopbackIce(a, 'page A'), assertLoopbackIce(b, 'page B')])
    console.log(`ice: page A kept ${sa.kept.length} candidate(s) on 127.0.0.1, dropped ${sa.dropped.length} elsewhere (${[...new Set(sa.dropped)].join(', ') || 'none'})`)
  } else {
    assert.is((await call<RtcStats>(a, 'rtcStats')).created, 0, 'A made no RTCPeerConnection: the relay was chosen at the handshake')
  }

  // Two named streams, one made by each side, text and binary both ways on each.
  const filesB = await call<number>(b, 'createStream', pcB, 'files')
  const chatB = await remoteStream(b, pcB, 'chat')
  const filesA = await remoteStream(a, pcA, 'files')
  assert.equal(await call(b, 'streamInfo', chatB), { label: 'chat', state: 'open' })

  const big = pattern(50_000, 3)   // over the 16 KiB WebRTC fragment size
  await call(a, 'send', chatA, bytes([0, 1, 2, 254, 255]))
  await call(a, 'send', filesA, str('file list, please ✓'))
  await call(a, 'send', filesA, bytes(big))
  await call(b, 'send', chatB, str('hi alice'))
  await call(b, 'send', chatB, bytes([9, 8, 7]))
  await call(b, 'send', filesB, bytes(pattern(3000, 1)))
  await call(b, 'send', filesB, json({ files: ['a.txt', 'b.bin'] }))

  assert.equal(await waitData(b, chatB, 2, 'B on chat'), [str('hello bob'), bytes([0, 1, 2, 254, 255])], 'B: chat, in order, bytes as Uint8Array')
  const filesAtB = await waitData(b, filesB, 2, 'B on files')
  assert.equal(filesAtB[0], str('file list, please ✓'))
  assert.is(filesAtB[1].t, 'bytes', 'B: binary on files is a Uint8Array')
  assert.ok(JSON.stringify(filesAtB[1].v) === JSON.stringify(big), 'B: 50 000 bytes on files, byte-exact')
  assert.equal(await waitData(a, chatA, 2, 'A on chat'), [str('hi alice'), bytes([9, 8, 7])], 'A: chat')
  assert.equal(await waitData(a, filesA, 2, 'A on files'), [bytes(pattern(3000, 1)), json({ files: ['a.txt', 'b.bin'] })], 'A: files')
  for (const [page, id, who] of [[a, chatA, 'A chat'], [a, filesA, 'A files'], [b, chatB, 'B chat'], [b, filesB, 'B files']] as const) {
    assert.is(eventsOf(await call<LogEntry[]>(page, 'log', id), 'error').length, 0, `${who}: no errors`)
  }

  if (expected === 'webrtc') {
    // An unreliable stream: a data channel of its own on the pair's RTCPeerConnection (Chromium
    // renegotiates: the shared session's path), made by A with its options, received by B; both ways.
    const posA = await call<number>(a, 'createStream', pcA, 'pos', { ordered: false, maxRetransmits: 0 })
    const posB = await remoteStream(b, pcB, 'pos')
    await until(async () => (await call<Array<{ made: boolean, label: string }>>(b, 'dataChannels')).some((c) => !c.made && c.label.startsWith('signalyard.u:')), 3000, 'B receives the side channel')
    await sleep(100)
    for (let i = 0; i < 30; i++) await call(a, 'send', posA, json({ i }))
    await call(b, 'send', posB, json({ back: true }))
    const atB = await waitData(b, posB, 30, 'B on pos')
    assert.equal(new Set(atB.map((d: any) => d.v.i)).size, 30, 'B: every position once (loopback loses none)')
    assert.equal(await waitData(a, posA, 1, 'A on pos'), [json({ back: true })])
    const made = (await call<Array<{ made: boolean, label: string, ordered: boolean, maxRetransmits: number | null }>>(a, 'dataChannels')).filter((c) => c.label.startsWith('signalyard.u:'))
    const got = (await call<Array<{ made: boolean, label: string, ordered: boolean, maxRetransmits: number | null }>>(b, 'dataChannels')).filter((c) => c.label.startsWith('signalyard.u:'))
    assert.equal(made.map((c) => [c.made, c.ordered, c.maxRetransmits]), [[true, false, 0]], 'A made one unordered channel without retransmissions')
    assert.equal(got.map((c) => [c.made, c.ordered, c.maxRetransmits]), [[false, false, 0]], 'B received it with the same options')
  }

  // A closes the connection: B's connection and both of its streams close, without an error.
  await call(a, 'pcClose', pcA)
  const closedB = await waitLog(b, pcB, (l) => eventsOf(l, 'close').length > 0, 'B\'s connection closes')
  assert.equal(eventsOf(closedB, 'close')[0][0].v, undefined, 'B: close without an error (closed on purpose)')
  for (const id of [chatB, filesB]) {
    const log = await waitLog(b, id, (l) => eventsOf(l, 'close').length > 0, 'B\'s stream closes')
    assert.is(eventsOf(log, 'error').length, 0, 'B: the stream closed without an error')
  }
  assert.is((await call<{ state: string }>(b, 'pcInfo', pcB)).state, 'closed')
  assert.is((await call<{ state: string }>(a, 'pcInfo', pcA)).state, 'closed')
  assert.equal(await call(a, 'streamInfo', filesA), { label: 'files', state: 'closed' })

  // B closes its channel: A sees bob leave within 1 s (SPEC §3.4).
  const leftAt = Date.now()
  await call(b, 'closeAll')
  const left = await waitLog(a, pa, (l) => metaOf(l, 'leave', 'bob') !== undefined, 'A sees bob leave', 1000)
  assert.equal(metaOf(left, 'leave', 'bob'), bob, 'A: leave with bob\'s meta')
  console.log(`timing: presence leave seen ${(left.find((e) => e.event === 'leave')?.at ?? NaN) - leftAt} ms after channel.close()`)
  assert.equal(await call(a, 'peersList', pa), [])
}

test('two pages over real WebRTC: presence join with meta, two named streams both ways, pc.close() ends both sides, leave on channel close', async () => {
  await scoped((defer) => twoPagesTalk(defer, 'webrtc'))
})

test('two pages, one without WebRTC (deleted before load): the connection opens over the relay and the same exchange works', async () => {
  await scoped((defer) => twoPagesTalk(defer, 'relay', NO_WEBRTC))
})

// ── a Node peer and a page ──

/**
 * A Node node (SignalChannel + node-datachannel) and a page's node in one namespace. `nodeDials`:
 * the Node side connects, else the page does. Text and binary both ways on a stream each side
 * made; then the Node side closes the connection.
 */
async function nodeAndPage (defer: Defer, nodeDials: boolean): Promise<void> {
  const yard = await yardOn(defer)
  const { origin } = await startStatic(defer)
  const context = await newContext(defer, { rtcOrigin: origin })
  const page = await openPage(context, `${origin}/esm.html`)
  defer(() => closeChannels(page))
  const channel = SignalChannel('mixed-rtc', {
    url: yard.url,
    RTCPeerConnection: NodeLoopbackPC as unknown as RTCPeerConnectionConstructor,
    rtcConfig: { bindAddress: LOOPBACK, iceServers: [] }
  })
  defer(() => channel.close())
  nodeRtc.kept.length = nodeRtc.dropped.length = 0
  NodeLoopbackPC.instances.length = 0

  const node = channel.createNode(undefined, { connectTimeout: CONNECT_TIMEOUT })
  await within(node.listen('node'), 3000, 'node.listen')
  const pn = await call<number>(page, 'node', await call<number>(page, 'rtcChannel', 'mixed-rtc', yard.url), { connectTimeout: CONNECT_TIMEOUT })
  await call(page, 'listen', pn, 'page')

  let pc: PeerConnection
  let pcPage: number
  let opened = NaN
  if (nodeDials) {
    const started = Date.now()
    pc = node.connect('page')
    await within(pc.ready(), CONNECT_TIMEOUT + 4000, 'the Node side\'s pc.ready()')
    opened = Date.now() - started
    pcPage = await incoming(page, pn, 'node', 3000)
  } else {
    const arriving = later(next(node, 'connection', CONNECT_TIMEOUT))
    pcPage = await call<number>(page, 'connect', pn, 'node')
    pc = (await arriving)[0] as PeerConnection
    await within(pc.ready(), CONNECT_TIMEOUT + 4000, 'the Node side\'s pc.ready()')
  }
  await callWithin(CONNECT_TIMEOUT + 4000, page, 'pcReady', pcPage)
  // 'auto': open on the relay, then both sides move to WebRTC live
  const pageInfo = await callWithin<{ transport: string }>(CONNECT_TIMEOUT + 4000, page, 'pcSettled', pcPage, 'webrtc', CONNECT_TIMEOUT + 2000)
  await until(() => pc.transport === 'webrtc', CONNECT_TIMEOUT + 2000, 'the Node side on WebRTC')
  assert.is(pc.transport, 'webrtc', `the Node side is open over WebRTC (candidates kept ${nodeRtc.kept.join(', ')}; dropped ${nodeRtc.dropped.join(', ')})`)
  assert.is(pageInfo.transport, 'webrtc', 'the page is open over WebRTC')
  if (!nodeDials) opened = openTime(await call<LogEntry[]>(page, 'log', pcPage))
  console.log(`timing: Node ↔ page open over webrtc in ${opened} ms (connect() to 'open' on the dialling side, ${nodeDials ? 'Node' : 'the page'})`)

  // Loopback only, at both ends.
  await assertLoopbackIce(page, 'page')
  const pair = NodeLoopbackPC.instances.at(-1)?.selectedCandidatePair()
  if (ISOLATED) assert.equal([pair?.local.address, pair?.remote.address], [LOOPBACK, LOOPBACK], 'Node: the selected pair is 127.0.0.1 ↔ 127.0.0.1')
  else assert.ok(allowedFarEnd(pair?.remote.address), `Node: the selected pair's far end ${String(pair?.remote.address)} is on this host`)
  assert.ok(nodeRtc.kept.some((k) => k.startsWith('remote')), 'Node: the page\'s loopback candidates arrived')

  // A stream each way: Node's 'from-node', the page's 'from-page'.
  const pageStreams: PeerStream[] = []
  pc.on('connection', (s) => pageStreams.push(s))
  const fromNode = pc.createStream('from-node')
  const fromPage = await call<number>(page, 'createStream', pcPage, 'from-page')
  const nodeSide = await remoteStream(page, pcPage, 'from-node')

  const big = new Uint8Array(pattern(40_000, 5))
  const gotOnFromNode = later(collect(fromNode, 'data', 2, 3000))
  fromNode.send('hello page')
  fromNode.send(big)
  fromNode.send(new Uint8Array([1, 2, 3]).buffer)
  const atPage = await waitData(page, nodeSide, 3, 'the page on from-node')
  assert.equal(atPage[0], str('hello page'))
  assert.is(atPage[1].t, 'bytes', 'Node\'s Uint8Array is a Uint8Array in the page')
  assert.ok(JSON.stringify(atPage[1].v) === JSON.stringify(Array.from(big)), 'the page: 40 000 bytes, byte-exact')
  assert.equal(atPage[2], bytes([1, 2, 3]), 'an ArrayBuffer arrives as a Uint8Array')
  await call(page, 'send', nodeSide, str('reply on from-node ✓'))
  await call(page, 'send', nodeSide, bytes([255, 0, 128]))
  const replies = (await gotOnFromNode).map(([d]) => d)
  assert.is(replies[0], 'reply on from-node ✓')
  assert.instance(replies[1], Uint8Array, 'binary from the page is a Uint8Array in Node')
  assert.equal(Array.from(replies[1] as Uint8Array), [255, 0, 128])

  await until(() => pageStreams.length > 0, 3000, 'the page\'s stream reaching Node')
  const [onNode] = pageStreams
  assert.is(onNode.label, 'from-page')
  const gotOnFromPage = later(collect(onNode, 'data', 2, 3000))
  await call(page, 'send', fromPage, json({ n: 1, list: [true, null] }))
  await call(page, 'send', fromPage, bytes(pattern(20_000, 9)))
  const fromPageData = (await gotOnFromPage).map(([d]) => d)
  assert.equal(fromPageData[0], { n: 1, list: [true, null] })
  assert.instance(fromPageData[1], Uint8Array)
  assert.equal(Array.from(fromPageData[1] as Uint8Array), pattern(20_000, 9), 'Node: 20 000 bytes, byte-exact')
  onNode.send('node answers on from-page')
  assert.equal(await waitData(page, fromPage, 1, 'the page on from-page'), [str('node answers on from-page')])

  // Node closes: the page's connection and streams close without an error.
  const nodeClosed = later(next(pc, 'close', 3000))
  pc.close()
  assert.equal(await nodeClosed, [undefined], 'Node: close without an error')
  const closedAtPage = await waitLog(page, pcPage, (l) => eventsOf(l, 'close').length > 0, 'the page\'s connection closes')
  assert.equal(eventsOf(closedAtPage, 'close')[0][0].v, undefined, 'the page: close without an error')
  await waitLog(page, fromPage, (l) => eventsOf(l, 'close').length > 0, 'the page\'s own stream closes')
  assert.is(onNode.state, 'closed')
}

test('a Node peer (node-datachannel) connects to a page: open over WebRTC on 127.0.0.1, text and binary both ways', async () => {
  await scoped((defer) => nodeAndPage(defer, true))
})

test('a page connects to a Node peer (node-datachannel): open over WebRTC on 127.0.0.1, text and binary both ways', async () => {
  await scoped((defer) => nodeAndPage(defer, false))
})

test.run()

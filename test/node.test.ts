// test/node.test.ts — createNode end to end (SPEC §3.5) against a real server, over both
// transports: real WebRTC data channels (node-datachannel's W3C polyfill, bound to 127.0.0.1) and
// the server relay. Streams (named, ordered, binary-safe, backpressure, writes before open, close
// both ways), the transport choice and its per-pair fallback (one side without WebRTC; ICE that
// cannot connect), glare, directed signalling that no third client sees, faults (unknown and
// departed peers, a peer vanishing mid-handshake, garbage signalling) and leaks (RTCPeerConnections
// and open handles after 200 connect/close cycles).
//
// Each client uses its own URL (`?c=N`) and so its own WebSocket, as two apps would.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createHash, randomBytes } from 'node:crypto'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import nodeDataChannel from 'node-datachannel'
import { RTCPeerConnection as PolyfillPC } from 'node-datachannel/polyfill'
import WebSocket from 'ws'
import {
  SignalChannel, SignalyardError,
  type Channel, type ChannelOptions, type NodeOptions, type PeerConnection, type PeerNode, type PeerStream,
  type RTCPeerConnectionConstructor, type WebSocketConstructor
} from 'signalyard'
import type { ServerOptions, Yard } from 'signalyard/server'
import { FrameType } from '../src/protocol/frames.js'
import { readFrame, writeFrame, encodePayload } from '../src/protocol/codec.js'
import { collect, later, next, sleep, startYard, until, within } from './helpers.js'

// ── WebRTC in Node: counted, so that a leaked RTCPeerConnection fails a test ──

const rtc = { created: 0, closed: 0 }
class CountedPC extends (PolyfillPC as unknown as new (config?: object) => { close (): void }) {
  private counted = false
  constructor (config?: object) {
    super(config)
    rtc.created++
  }

  override close (): void {
    if (!this.counted) { this.counted = true; rtc.closed++ }
    super.close()
  }
}
const WebRTC = CountedPC as unknown as RTCPeerConnectionConstructor
/** Loopback only: node-datachannel gathers candidates on this address alone. */
const LOOPBACK = { bindAddress: '127.0.0.1' }
const liveRtc = (): number => rtc.created - rtc.closed

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

interface Ctx {
  yard: Yard
  channel: (client: string, extra?: Partial<ChannelOptions>) => Channel
  /** A listening node on its own socket. */
  node: (id: string, options?: NodeOptions & { webrtc?: boolean }, onConnection?: (pc: PeerConnection) => void) => Promise<PeerNode>
}

async function withYard (body: (ctx: Ctx) => Promise<void>, options: ServerOptions = {}): Promise<void> {
  const yard = await startYard(options)
  const channels: Channel[] = []
  const channel: Ctx['channel'] = (client, extra = {}) => {
    const c = SignalChannel('mesh', { url: `${yard.url}?c=${client}`, rtcConfig: LOOPBACK, ...extra })
    channels.push(c)
    return c
  }
  const node: Ctx['node'] = async (id, options = {}, onConnection) => {
    const { webrtc = true, ...nodeOptions } = options
    // A node with WebRTC forces it unless a test asks for another transport: most tests here are
    // about WebRTC pcs; those about 'auto' (open on the relay, move live) say so.
    if (webrtc && nodeOptions.transport === undefined) nodeOptions.transport = 'webrtc'
    const n = channel(id, webrtc ? { RTCPeerConnection: WebRTC } : {}).createNode(onConnection, nodeOptions)
    await within(n.listen(id), 2000, `listen(${id})`)
    return n
  }
  try {
    await body({ yard, channel, node })
  } finally {
    for (const c of channels) c.close()
    await yard.close()
  }
  await until(() => liveRtc() === 0, 3000, 'every RTCPeerConnection closed')
}

/** Every message a stream receives. */
function record (stream: PeerStream): unknown[] {
  const got: unknown[] = []
  stream.on('data', (data) => { got.push(data) })
  return got
}

/** Echo every stream of every connection back (the remote side of most tests). */
const echoBack = (pc: PeerConnection): void => {
  pc.on('connection', (stream) => stream.on('data', (data) => stream.send(data)))
}

// ── both transports: the same app code ──

for (const mode of ['webrtc', 'relay', 'auto'] as const) {
  // 'webrtc' forces WebRTC; 'relay': neither side has WebRTC; 'auto': both have it, the pc opens
  // on the relay and moves to WebRTC live.
  const transport = mode === 'webrtc' ? 'webrtc' : 'relay' // at 'open'
  const nodeOptions = mode === 'relay' ? { webrtc: false } : { transport: mode }

  test(`${mode}: connect() returns a pc at once; both sides open over ${transport}; the remote gets 'connection'`, () => withYard(async ({ node }) => {
    const incoming: PeerConnection[] = []
    const a = await node('alice', nodeOptions)
    const b = await node('bob', nodeOptions, (pc) => incoming.push(pc))
    const pc = a.connect('bob')
    assert.is(pc.peerId, 'bob')
    assert.is(pc.state, 'connecting')
    assert.is(a.connect('bob'), pc, 'one pc per pair: connecting again returns the same pc')
    const started = Date.now()
    await within(pc.ready(), 3000, 'pc.ready()')
    assert.is(pc.transport, transport)
    await until(() => incoming.length === 1 && incoming[0].state === 'open', 2000, 'remote pc open')
    assert.is(incoming[0].peerId, 'alice')
    assert.is(incoming[0].transport, transport)
    assert.is(b.connections().length, 1)
    if (mode === 'auto') {
      // both sides move to WebRTC live, each saying so once
      const moved = await Promise.all([pc, incoming[0]].map(async (side) => side.transport === 'webrtc' ? 'webrtc' : (await next(side, 'transport', 5000))[0]))
      assert.equal(moved, ['webrtc', 'webrtc'])
      assert.is(pc.transport, 'webrtc')
    }
    assert.ok(Date.now() - started < 2000, `opened in ${Date.now() - started} ms`)
  }))

  test(`${mode}: named streams carry JSON, text and binary both ways, in order, each on its own label`, () => withYard(async ({ node }) => {
    const remote: PeerStream[] = []
    const a = await node('alice', nodeOptions)
    await node('bob', nodeOptions, (pc) => pc.on('connection', (s) => { remote.push(s); s.on('data', (d) => s.send(d)) }))
    const pc = a.connect('bob')
    const chat = pc.createStream('chat')
    const files = pc.createStream('files')
    const again = pc.createStream('chat') // the same label twice: independent streams
    const gotChat = record(chat)
    const gotFiles = record(files)
    const gotAgain = record(again)
    const bytes = new Uint8Array(256).map((_, i) => i)
    const messages: unknown[] = [{ n: 1, nested: { ok: true } }, 'text ✓', bytes, [1, 'two', null], 42, '']
    // written before open: delivered after it, in order
    for (const m of messages) chat.send(m)
    files.send(bytes)
    again.send('second chat stream')
    await within(pc.ready(), 3000, 'open')
    await until(() => gotChat.length === messages.length && gotFiles.length === 1 && gotAgain.length === 1, 3000, 'echoes')
    assert.equal(gotChat, messages)
    assert.instance(gotFiles[0], Uint8Array)
    assert.equal([...(gotFiles[0] as Uint8Array)], [...bytes])
    assert.equal(gotAgain, ['second chat stream'])
    assert.equal(remote.map((s) => s.label), ['chat', 'files', 'chat'])
    // order under load: 2,000 numbered messages
    const ordered = pc.createStream('order')
    const gotOrdered = record(ordered)
    for (let i = 0; i < 2000; i++) ordered.send(i)
    await until(() => gotOrdered.length === 2000, 5000, '2000 echoes')
    assert.equal(gotOrdered, Array.from({ length: 2000 }, (_, i) => i))
  }))

  test(`${mode}: a 5 MiB message arrives whole (fragmented and joined) with the same bytes`, () => withYard(async ({ node }) => {
    const a = await node('alice', nodeOptions)
    await node('bob', nodeOptions, echoBack)
    const pc = a.connect('bob')
    const s = pc.createStream('big')
    const got = record(s)
    const big = randomBytes(5 * 1024 * 1024)
    s.send(big)
    await until(() => got.length === 1, 10_000, 'the big echo')
    const back = got[0] as Uint8Array
    assert.is(back.length, big.length)
    assert.is(createHash('sha256').update(back).digest('hex'), createHash('sha256').update(big).digest('hex'))
  }))

  test(`${mode}: backpressure — send() returns false past the high-water mark, 'drain' follows, nothing is lost`, () => withYard(async ({ node }) => {
    const a = await node('alice', nodeOptions)
    let received = 0
    await node('bob', nodeOptions, (pc) => pc.on('connection', (s) => s.on('data', (d) => { received += (d as Uint8Array).length })))
    const pc = a.connect('bob')
    await within(pc.ready(), 3000, 'open')
    const s = pc.createStream('bulk')
    const chunk = new Uint8Array(64 * 1024)
    let sent = 0
    let refused = 0
    let drains = 0
    s.on('drain', () => { drains++ })
    for (let round = 0; round < 4; round++) {
      // bufferedAmount read just before each send: a WebRTC channel drains on its own thread, so
      // the amount can only have fallen by the time send() looks at it. A refusal therefore
      // means this amount plus the message reached the mark (a read after send() could be below).
      let before = s.bufferedAmount
      while (s.send(chunk)) {
        sent += chunk.length
        before = s.bufferedAmount
      }
      sent += chunk.length // the write that returned false was still accepted
      refused++
      assert.ok(before + chunk.length >= 1024 * 1024, `bufferedAmount ${before} + ${chunk.length} reached the mark`)
      await next(s, 'drain', 5000)
      assert.ok(s.bufferedAmount < 1024 * 1024, 'below the mark after drain')
    }
    await until(() => received === sent, 10_000, `all ${sent} bytes received (got ${received})`)
    assert.is(refused, 4)
    assert.is(drains, 4)
  }))

  test(`${mode}: pc.close() closes the pc and every stream on both sides; what was sent first still arrives`, () => withYard(async ({ node }) => {
    let remotePc: PeerConnection | null = null
    const remoteStreams: PeerStream[] = []
    const remoteGot: unknown[] = []
    const a = await node('alice', nodeOptions)
    const b = await node('bob', nodeOptions, (pc) => {
      remotePc = pc
      pc.on('connection', (s) => { remoteStreams.push(s); s.on('data', (d) => remoteGot.push(d)) })
    })
    const pc = a.connect('bob')
    const s1 = pc.createStream('one')
    pc.createStream('two')
    await within(pc.ready(), 3000, 'open')
    await until(() => remoteStreams.length === 2, 2000, 'remote streams')
    const closes: Array<SignalyardError | undefined> = []
    ;(remotePc as unknown as PeerConnection).on('close', (err) => closes.push(err))
    for (const rs of remoteStreams) rs.on('close', (err) => closes.push(err))
    for (let i = 0; i < 100; i++) s1.send(i)
    pc.close()
    assert.is(pc.state, 'closed')
    assert.is(s1.state, 'closed')
    assert.throws(() => s1.send('late'), (err: SignalyardError) => err.code === 'stream-closed')
    await until(() => closes.length === 3, 2000, 'remote pc and streams closed')
    assert.equal(closes, [undefined, undefined, undefined], 'a close on purpose carries no error')
    assert.equal(remoteGot, Array.from({ length: 100 }, (_, i) => i), 'sent before close() still delivered')
    assert.is(b.connections().length, 0)
    assert.is(a.connections().length, 0)
    // and the pair can connect again
    const again = a.connect('bob')
    assert.is.not(again, pc)
    await within(again.ready(), 3000, 'reconnect after close')
  }))

  test(`${mode}: stream.close() ends that stream on both sides and leaves the others open`, () => withYard(async ({ node }) => {
    const remote: PeerStream[] = []
    const a = await node('alice', nodeOptions)
    await node('bob', nodeOptions, (pc) => pc.on('connection', (s) => { remote.push(s); s.on('data', (d) => s.send(d)) }))
    const pc = a.connect('bob')
    const keep = pc.createStream('keep')
    const drop = pc.createStream('drop')
    const got = record(keep)
    await within(pc.ready(), 3000, 'open')
    await until(() => remote.length === 2, 2000, 'remote streams')
    const remoteClosed = next(remote[1], 'close', 2000)
    drop.close()
    await remoteClosed
    assert.is(remote[0].state, 'open')
    keep.send('still here')
    await until(() => got.length === 1, 2000, 'echo on the kept stream')
    // and the other way round: the remote closes its side
    const localClosed = next(keep, 'close', 2000)
    remote[0].close()
    await localClosed
    assert.is(pc.state, 'open')
  }))
}

// ── transport choice and fallback ──

test('auto: a side without RTCPeerConnection makes the pair use the relay at once, the same code works', () => withYard(async ({ node }) => {
  const before = rtc.created
  const a = await node('alice', { transport: 'auto' })
  await node('bob', { webrtc: false }, echoBack)
  const pc = a.connect('bob')
  const s = pc.createStream('x')
  const got = record(s)
  s.send('over the relay')
  const started = Date.now()
  await within(pc.ready(), 2000, 'open')
  assert.is(pc.transport, 'relay')
  assert.ok(Date.now() - started < 1000, 'no WebRTC attempt, no timeout to wait for')
  assert.is(rtc.created, before, 'no RTCPeerConnection was even created')
  await until(() => got.length === 1, 2000, 'echo')
  assert.equal(got, ['over the relay'])
}))

test('pc.path: on the relay { transport: relay }; after the move the selected pair on loopback (host ↔ host or prflx over UDP, an RTT in ms); \'path\' fires for each change on both sides', () => withYard(async ({ yard, node }) => {
  const a = await node('alice', { transport: 'auto' })
  const remote: PeerConnection[] = []
  const remotePaths: unknown[] = []
  await node('bob', { transport: 'auto' }, (pc) => { remote.push(pc); pc.on('path', (p) => remotePaths.push(p)) })
  const pc = a.connect('bob')
  assert.is(pc.path, null, 'no path before open')
  const paths: unknown[] = []
  pc.on('path', (p) => paths.push(p))
  await within(pc.ready(), 2000, 'open')
  assert.equal(pc.path, { transport: 'relay' })
  await until(() => pc.transport === 'webrtc' && pc.path?.transport === 'webrtc' && remote[0]?.path?.transport === 'webrtc', 5000, 'both on WebRTC with a path')
  const path = pc.path as NonNullable<typeof pc.path>
  assert.is(path.local, 'host')
  assert.ok(path.remote === 'host' || path.remote === 'prflx', `the other side's own address, from its candidate or its first check: ${JSON.stringify(path)}`)
  assert.is(path.protocol, 'udp')
  assert.ok(path.rtt === undefined || (path.rtt >= 0 && path.rtt < 1000), `rtt ${String(path.rtt)} ms`)
  assert.equal(paths.map((p) => (p as { transport: string }).transport), ['relay', 'webrtc'])
  assert.equal(remotePaths.map((p) => (p as { transport: string }).transport), ['relay', 'webrtc'])
  await until(async () => /signalyard_peer_connections_total\{transport="webrtc"\} 1\n/.test(await yard.metrics()), 2000, 'the moved pc counted once, as WebRTC')
  assert.match(await yard.metrics(), /signalyard_peer_connections_total\{transport="relay"\} 0\n/)
  pc.close()
  assert.is(pc.path, null, 'no path once closed')
}))

test('pc.path on a relay-only pair and on a forced WebRTC pair; /metrics counts each pc once by the transport it settled on', () => withYard(async ({ yard, node }) => {
  const a = await node('alice', { webrtc: false })
  await node('bob', { webrtc: false }, echoBack)
  const relayed = a.connect('bob')
  await within(relayed.ready(), 2000, 'open on the relay')
  assert.equal(relayed.path, { transport: 'relay' })
  const c = await node('carol')
  await node('dave', {}, echoBack)
  const direct = c.connect('dave')
  const told = next(direct, 'path', 3000)
  await within(direct.ready(), 3000, 'open on WebRTC')
  assert.is((await told)[0].transport, 'webrtc')
  assert.is(direct.path?.local, 'host')
  // each initiator told the server which transport its pc settled on; the acceptors did not
  await until(async () => /signalyard_peer_connections_total\{transport="webrtc"\} 1\n/.test(await yard.metrics()), 2000, 'the WebRTC pc counted')
  assert.match(await yard.metrics(), /signalyard_peer_connections_total\{transport="relay"\} 1\n/)
}))

test('auto: the pc opens on the relay at once; ICE that cannot connect is given up after connectTimeout, tried twice more with fresh RTCPeerConnections (1 s, then 2 s later), then never again; none is left; the pc stays on the relay, works, and is counted as relay', () => withYard(async ({ yard, channel }) => {
  const before = rtc.created
  // iceTransportPolicy 'relay' with no TURN server: no candidate is ever gathered, ICE cannot succeed.
  const noIce = { bindAddress: '127.0.0.1', iceTransportPolicy: 'relay' }
  const a = channel('a', { RTCPeerConnection: WebRTC }).createNode(undefined, { connectTimeout: 400, rtcConfig: noIce })
  const b = channel('b', { RTCPeerConnection: WebRTC }).createNode(echoBack, { connectTimeout: 400, rtcConfig: noIce })
  await within(Promise.all([a.listen('alice'), b.listen('bob')]), 2000, 'listen')
  const pc = a.connect('bob')
  const moves: string[] = []
  pc.on('transport', (t) => moves.push(t))
  const s = pc.createStream('x')
  const got = record(s)
  s.send('at once, on the relay')
  const started = Date.now()
  await within(pc.ready(), 3000, 'open')
  const took = Date.now() - started
  assert.is(pc.transport, 'relay')
  assert.ok(took < 300, `open on the relay after ${took} ms, not after connectTimeout`)
  await until(() => got.length === 1, 2000, 'echo')
  // three attempts of 400 ms with 1 s and 2 s between them: about 4.2 s
  await until(() => rtc.created - before === 6 && liveRtc() === 0, 8000, `three attempts on each side, all closed (made ${rtc.created - before}, live ${liveRtc()})`)
  assert.ok(Date.now() - started >= 3 * 380 + 2900, `the attempts lived for connectTimeout each, with the pauses (${Date.now() - started} ms)`)
  await until(async () => /signalyard_peer_connections_total\{transport="relay"\} 1\n/.test(await yard.metrics()), 2000, 'settled on the relay')
  await sleep(2500)
  assert.is(rtc.created - before, 6, 'no fourth attempt')
  s.send('still on the relay')
  await until(() => got.length === 2, 2000, 'second echo')
  assert.equal(moves, [], 'never moved')
}))

test('ids of the longest length (256 characters) connect over either transport', () => withYard(async ({ node }) => {
  for (const webrtc of [true, false]) {
    const long = (c: string): string => c.repeat(255) + String(webrtc)[0]
    const a = await node(long('a'), { webrtc })
    await node(long('b'), { webrtc }, echoBack)
    const pc = a.connect(long('b'))
    const s = pc.createStream('x')
    const echoed = next(s, 'data', 3000)
    s.send('long ids')
    await within(pc.ready(), 3000, 'open')
    assert.is(pc.transport, webrtc ? 'webrtc' : 'relay')
    assert.equal((await echoed)[0], 'long ids')
  }
}))

test("transport 'relay' forces the relay even when both sides have WebRTC", () => withYard(async ({ node }) => {
  const a = await node('alice', { transport: 'relay' })
  await node('bob', { transport: 'auto' }, echoBack)
  const pc = a.connect('bob')
  await within(pc.ready(), 2000, 'open')
  assert.is(pc.transport, 'relay')
}))

test("transport 'webrtc' against a peer without WebRTC fails with webrtc-unavailable on both sides", () => withYard(async ({ node }) => {
  const a = await node('alice', { transport: 'webrtc' })
  const incoming: PeerConnection[] = []
  await node('bob', { webrtc: false }, (pc) => incoming.push(pc))
  const pc = a.connect('bob')
  const err = await within(pc.ready().then(() => null, (e: SignalyardError) => e), 2000, 'ready() settles')
  assert.is(err?.code, 'webrtc-unavailable')
  assert.is(pc.state, 'closed')
  await until(() => incoming.length === 1 && incoming[0].state === 'closed', 2000, 'remote closed too')
}))

// ── glare ──

test('glare: both sides connect at once → exactly one working connection on each side', () => withYard(async ({ node }) => {
  for (const webrtc of [true, false]) {
    const events: string[] = []
    const a = await node(`alice-${String(webrtc)}`, { webrtc }, () => events.push('a connection'))
    const b = await node(`bob-${String(webrtc)}`, { webrtc }, () => events.push('b connection'))
    const pa = a.connect(b.id as string)
    const pb = b.connect(a.id as string) // same tick: both hellos cross on the wire
    const sa = pa.createStream('from-a')
    const sb = pb.createStream('from-b')
    const gotA: unknown[] = []
    const gotB: unknown[] = []
    pa.on('connection', (s) => s.on('data', (d) => gotA.push(d)))
    pb.on('connection', (s) => s.on('data', (d) => gotB.push(d)))
    sa.send('hi from a')
    sb.send('hi from b')
    await within(Promise.all([pa.ready(), pb.ready()]), 3000, 'both open')
    await until(() => gotA.length === 1 && gotB.length === 1, 2000, 'both messages')
    assert.equal(gotB, ['hi from a'])
    assert.equal(gotA, ['hi from b'])
    assert.is(pa.transport, webrtc ? 'webrtc' : 'relay')
    assert.is(pb.transport, pa.transport)
    assert.equal(a.connections(), [pa])
    assert.equal(b.connections(), [pb])
    assert.equal(events, [], "neither side gets 'connection': each already holds its pc")
    await sleep(100)
    assert.is(pa.state, 'open')
    assert.is(pb.state, 'open')
  }
}))

test('glare: the lower id\'s attempt wins — both sides end on its connection id, whichever hello goes out first', () => withYard(async ({ node }) => {
  for (const webrtc of [true, false]) {
    for (const lowerFirst of [true, false]) {
      const tag = `${String(webrtc)}-${String(lowerFirst)}`
      const low = await node(`a-${tag}`, { webrtc }) // 'a-…' < 'b-…'
      const high = await node(`b-${tag}`, { webrtc })
      const [pLow, pHigh] = lowerFirst
        ? [low.connect(high.id as string), high.connect(low.id as string)]
        : [high.connect(low.id as string), low.connect(high.id as string)].reverse()
      // The connection id and the initiator flag are internals (not in the public types).
      const inner = (pc: PeerConnection): { cid: string, initiator: boolean } => pc as unknown as { cid: string, initiator: boolean }
      const lowCid = inner(pLow).cid
      const highCid = inner(pHigh).cid
      assert.is.not(lowCid, highCid)
      await within(Promise.all([pLow.ready(), pHigh.ready()]), 3000, 'both open')
      assert.is(inner(pLow).cid, lowCid, "the lower id keeps its own attempt's connection id")
      assert.is(inner(pHigh).cid, lowCid, "the higher id adopts the lower id's attempt")
      assert.ok(inner(pLow).initiator, 'the lower id stays the initiator')
      assert.not.ok(inner(pHigh).initiator, 'the higher id became the acceptor')
    }
  }
}))

const MiB = 1024 * 1024

test('a message of exactly 16 MiB goes through; one byte more throws payload-too-large; a peer that sends more is cut off', () => withYard(async ({ node }) => {
  const a = await node('alice', { webrtc: false })
  const b = await node('bob', { webrtc: false }, echoBack)
  const pc = a.connect('bob')
  await within(pc.ready(), 3000, 'open')
  const s = pc.createStream('cap')
  assert.throws(() => s.send(new Uint8Array(16 * MiB + 1)), (err: SignalyardError) => err.code === 'payload-too-large')
  const got = record(s)
  const max = randomBytes(16 * MiB)
  s.send(max)
  await until(() => got.length === 1, 30_000, 'the 16 MiB echo')
  assert.ok(Buffer.from(got[0] as Uint8Array).equals(max), '16 MiB arrive whole')
  // the receiver's bound: a raw peer sending 16 MiB + 1 byte in one message is cut off
  const remote = b.connections()[0]
  const closed = next(remote, 'close', 20_000)
  pipeOf(pc).send(mux(1, 1001, new TextEncoder().encode('raw')))
  const fragment = new Uint8Array(64 * 1024)
  for (let sent = 0; sent < 16 * MiB; sent += fragment.length) {
    pipeOf(pc).send(mux(3, 1001, fragment))
    while (pc.state !== 'closed' && pipeOf(pc).bufferedAmount > 2 * MiB) await sleep(5)
  }
  pipeOf(pc).send(mux(2, 1001, new Uint8Array(1)))
  assert.is((await closed)[0]?.code, 'payload-too-large')
}))

// ── directed signalling ──

/** A WebSocket that counts the frames its client receives, by frame type. */
function countingSocket (counts: Map<number, number>): WebSocketConstructor {
  return class extends WebSocket {
    constructor (url: string, protocols?: string | string[]) {
      super(url, protocols)
      this.on('message', (data: Buffer) => {
        const frame = readFrame(new Uint8Array(data))
        if (frame !== null) counts.set(frame.type, (counts.get(frame.type) ?? 0) + 1)
      })
    }
  } as unknown as WebSocketConstructor
}

test('signalling is directed: a third client in the namespace sees none of it, and cannot pose as another id', () => withYard(async ({ yard, channel }) => {
  const counts = new Map<number, number>()
  const eve = channel('eve', { RTCPeerConnection: WebRTC, WebSocket: countingSocket(counts) })
  const eveNode = eve.createNode()
  await within(eveNode.listen('eve'), 2000, 'eve listens')
  const evePeers = eve.createPeers()
  await evePeers.join({ id: 'eve' })
  const eveEcho = eve.echo()
  await eveEcho.ready()
  const seenBefore = new Map(counts)

  const a = channel('a', { RTCPeerConnection: WebRTC }).createNode(undefined, { transport: 'webrtc' })
  const b = channel('b', { RTCPeerConnection: WebRTC }).createNode(echoBack, { transport: 'webrtc' })
  await Promise.all([a.listen('alice'), b.listen('bob')])
  const pc = a.connect('bob')
  const s = pc.createStream('x')
  const got = record(s)
  s.send('secret')
  await within(pc.ready(), 3000, 'open over webrtc')
  assert.is(pc.transport, 'webrtc')
  await until(() => got.length === 1, 2000, 'echo')
  await sleep(100)
  // Eve got no DATA and no EVENT from the whole handshake (offer, answer, candidates).
  assert.is(counts.get(FrameType.Data) ?? 0, seenBefore.get(FrameType.Data) ?? 0, 'no DATA reached eve')
  assert.is(counts.get(FrameType.Event) ?? 0, seenBefore.get(FrameType.Event) ?? 0, 'no EVENT reached eve')

  // Eve, speaking raw frames, claims to be alice in the meta: bob sees her stamped id, not alice's.
  const forged: Array<{ from: unknown }> = []
  const raw = new WebSocket(yard.url, 'signalyard.2')
  await new Promise((resolve) => raw.once('open', resolve))
  raw.send(writeFrame(FrameType.Open, 1, { ep: 'signal', ns: 'mesh', id: 'mallory', key: 'k'.repeat(24) }))
  const bobSpy = channel('bob-spy').createNode()
  await bobSpy.listen('bob-spy')
  const spySocket = (bobSpy as unknown as { stream: { data: (f: unknown) => void } }).stream
  const original = spySocket.data.bind(spySocket)
  spySocket.data = (frame: any) => { forged.push({ from: frame.meta?.from }); original(frame) }
  await sleep(50)
  raw.send(writeFrame(FrameType.Data, 1, { to: 'bob-spy', from: 'alice' }, encodePayload({ t: 'hello', c: 'x'.repeat(21), rtc: false })))
  await until(() => forged.length === 1, 2000, 'the forged message arrives')
  assert.equal(forged, [{ from: 'mallory' }], 'the server stamps the sender: from is mallory, not alice')
  raw.close()
  eveEcho.close()
  evePeers.leave()
}))

// ── faults ──

test('connect() before listen() throws must-listen-first; connecting to yourself is refused', () => withYard(async ({ channel }) => {
  const n = channel('x').createNode()
  assert.throws(() => n.connect('bob'), (err: SignalyardError) => err.code === 'must-listen-first')
  await n.listen('me')
  assert.throws(() => n.connect('me'), (err: SignalyardError) => err.code === 'bad-request')
  assert.throws(() => n.connect(''), (err: SignalyardError) => err.code === 'bad-request')
}))

test('listen() on an id another client holds rejects with peer-id-taken (and emits it)', () => withYard(async ({ node, channel }) => {
  await node('taken')
  const other = channel('other').createNode()
  const errors: SignalyardError[] = []
  other.on('error', (err) => errors.push(err))
  const err = await within(other.listen('taken').then(() => null, (e: SignalyardError) => e), 2000, 'listen settles')
  assert.is(err?.code, 'peer-id-taken')
  assert.equal(errors.map((e) => e.code), ['peer-id-taken'])
  assert.throws(() => other.connect('x'), (e: SignalyardError) => e.code === 'must-listen-first')
}))

test('connecting to an id nobody listens on fails fast with unknown-peer', () => withYard(async ({ node }) => {
  const a = await node('alice')
  const pc = a.connect('nobody')
  const started = Date.now()
  const err = await within(pc.ready().then(() => null, (e: SignalyardError) => e), 2000, 'ready() settles')
  assert.is(err?.code, 'unknown-peer')
  assert.ok(Date.now() - started < 1500, 'no timeout involved (connectTimeout is 10 s)')
  assert.is(pc.state, 'closed')
  assert.equal(a.connections(), [])
}))

test('the remote peer going away closes the pc on this side: clean close at once, a dead socket within the grace', () => withYard(async ({ yard, node, channel }) => {
  for (const webrtc of [true, false]) {
    // clean: the remote closes its channel
    const a = await node(`a-clean-${String(webrtc)}`, { webrtc, transport: 'auto' })
    const bChannel = channel(`b-clean-${String(webrtc)}`, webrtc ? { RTCPeerConnection: WebRTC } : {})
    const b = bChannel.createNode(echoBack)
    await b.listen(`b-clean-${String(webrtc)}`)
    const pc = a.connect(b.id as string)
    const s = pc.createStream('x')
    await within(pc.ready(), 3000, 'open')
    const closed = next(pc, 'close', 1000)
    const sClosed = next(s, 'close', 1000)
    bChannel.close()
    const [err] = await closed
    const [sErr] = await sClosed
    assert.is(err?.code, 'peer-left', `the pc closes with peer-left (${String(err)})`)
    assert.is(sErr?.code, 'peer-left', `its streams too (${String(sErr)})`)
  }
  // dead socket: the server drops the remote's connection (no BYE can be sent); with grace 300 ms.
  // Over the relay the pair closes with the socket; over WebRTC the channel lives on in the remote
  // process, and the release of the remote's id (signal 'leave') is what closes the pc.
  for (const transport of ['relay', 'webrtc'] as const) {
    const a = await node(`a-dead-${transport}`, { transport: 'auto' })
    let victim: any = null
    // A dead process does not come back: once its socket is destroyed, no new one opens (the
    // reconnect delay is random from 0, so a reconnect inside the grace would reclaim the id).
    let dead = false
    const b = channel(`b-dead-${transport}`, {
      RTCPeerConnection: WebRTC,
      WebSocket: class extends WebSocket { constructor (u: string, p?: string | string[]) { if (dead) throw new Error('this process is dead'); super(u, p); victim = this } } as unknown as WebSocketConstructor,
      reconnect: { minDelay: 60_000, maxDelay: 60_000 }
    }).createNode(echoBack, { transport })
    await b.listen(`b-dead-${transport}`)
    const pc = a.connect(`b-dead-${transport}`)
    await within(pc.ready(), 3000, 'open')
    assert.is(pc.transport, transport)
    const started = Date.now()
    const closed = next(pc, 'close', 3000)
    dead = true
    victim._socket.destroy() // the TCP connection dies without a WebSocket close handshake
    const [err] = await closed
    assert.ok(err instanceof SignalyardError, `closed with a coded error (${String(err)})`)
    assert.is(err.code, 'peer-left', `${transport}: peer-left`)
    assert.ok(Date.now() - started < 2000, `closed ${Date.now() - started} ms after the socket died`)
    b.close()
  }
  void yard
}, { limits: { peers: { grace: 300 } } }))

test('a peer vanishing mid-handshake: the pc closes with a code and no RTCPeerConnection is left', () => withYard(async ({ node, channel }) => {
  const a = await node('alice', { connectTimeout: 300 })
  // bob accepts and then disappears before WebRTC can finish: its channel closes inside 'connection'
  const bChannel = channel('b', { RTCPeerConnection: WebRTC })
  const b = bChannel.createNode(() => { setTimeout(() => bChannel.close(), 0) })
  await b.listen('bob')
  const pc = a.connect('bob')
  const err = await within(pc.ready().then(() => null, (e: SignalyardError) => e), 3000, 'ready() settles')
  assert.ok(err === null || err instanceof SignalyardError, 'settles (or opened before the close) without an uncaught error')
  await until(() => pc.state === 'closed', 3000, 'pc closed')
  await until(() => liveRtc() === 0, 3000, 'no RTCPeerConnection left')
}, { limits: { peers: { grace: 200 } } }))

/**
 * A raw signal client (no library) claiming id 'mallory' in 'mesh': `say` sends a handshake
 * message to 'alice', `inbox` collects what it is sent.
 */
async function mallory (yard: { url: string }): Promise<{ raw: WebSocket, inbox: any[], say: (msg: unknown) => void }> {
  const raw = new WebSocket(yard.url, 'signalyard.2')
  const inbox: any[] = []
  raw.on('message', (data: Buffer) => {
    const f = readFrame(new Uint8Array(data))
    if (f?.type === FrameType.Data) inbox.push(JSON.parse(new TextDecoder().decode(f.payload)))
  })
  await new Promise((resolve) => raw.once('open', resolve))
  raw.send(writeFrame(FrameType.Open, 1, { ep: 'signal', ns: 'mesh', id: 'mallory', key: 'm'.repeat(24) }))
  return { raw, inbox, say: (msg) => raw.send(writeFrame(FrameType.Data, 1, { to: 'alice' }, encodePayload(msg))) }
}

test('garbage, duplicate answers and stale candidates from a raw peer: ignored or a coded close, never a crash', () => withYard(async ({ yard, node }) => {
  const uncaught: unknown[] = []
  const onUncaught = (err: unknown): void => { uncaught.push(err) }
  process.on('uncaughtException', onUncaught)
  process.on('unhandledRejection', onUncaught)
  try {
    // 1 s: short, so alice gives mallory up quickly (2 × connectTimeout as acceptor), yet long
    // enough for alice's own WebRTC connect at the end on a loaded machine (500 ms was not: 1 CI
    // run in 3 timed out there)
    const alice = await node('alice', { connectTimeout: 1000 })
    const incoming: PeerConnection[] = []
    alice.on('connection', (pc) => incoming.push(pc))
    const { raw, inbox, say } = await mallory(yard)
    // garbage first
    for (const junk of [null, 1, 'x', [], { t: 'hello' }, { t: 'nope', c: 'c'.repeat(21) }, { t: 'sdp', c: 'c'.repeat(21), d: 5 }]) say(junk)
    raw.send(writeFrame(FrameType.Data, 1, { to: 'alice' }, { kind: 2, bytes: new Uint8Array([0xff, 0xfe]) }))
    // a real-looking handshake that mallory never completes: hello, then nonsense answers and candidates
    const c = 'm'.repeat(21)
    say({ t: 'hello', c, rtc: true })
    await until(() => inbox.some((m) => m.t === 'accept'), 2000, 'alice accepts')
    await until(() => inbox.some((m) => m.t === 'sdp' || m.t === 'ice') || inbox.some((m) => m.t === 'accept'), 2000, 'handshake going')
    say({ t: 'sdp', c, d: { type: 'answer', sdp: 'v=0 garbage' } })
    say({ t: 'sdp', c, d: { type: 'answer', sdp: 'v=0 garbage again' } })
    say({ t: 'sdp', c, d: { type: 'offer', sdp: 'not even sdp' } })
    say({ t: 'ice', c, d: { candidate: 'candidate:1 1 UDP 1 127.0.0.1 9 typ host', sdpMid: '0', sdpMLineIndex: 0 } })
    say({ t: 'ice', c: 'stale-connection-id-00', d: { candidate: 'candidate:bogus' } })
    say({ t: 'accept', c, tr: 'relay' }) // accept sent to the acceptor: ignored
    // then mallory vanishes
    raw.terminate()
    await until(() => incoming.length === 1 && incoming[0].state === 'closed', 5000, 'alice gives up on mallory')
    await until(() => liveRtc() === 0, 3000, 'no RTCPeerConnection left')
    assert.equal(uncaught, [])
    // alice still works
    await node('bob', {}, echoBack)
    const pc = alice.connect('bob')
    await within(pc.ready(), 3000, 'alice can still connect')
  } finally {
    process.off('uncaughtException', onUncaught)
    process.off('unhandledRejection', onUncaught)
  }
}, { limits: { peers: { grace: 100 } } }))

test('auto: a raw peer sending offers of ever newer attempts (300 in a burst) makes the acceptor build at most one RTCPeerConnection per 500 ms', () => withYard(async ({ yard, node }) => {
  const alice = await node('alice', { transport: 'auto' })
  const incoming: PeerConnection[] = []
  alice.on('connection', (pc) => incoming.push(pc))
  const { raw, inbox, say } = await mallory(yard)
  try {
    const c = 'g'.repeat(21)
    say({ t: 'hello', c, rtc: true, mv: true })
    await until(() => inbox.some((m) => m.t === 'accept' && m.mv === true), 2000, 'alice accepts a moving connection')
    const before = rtc.created
    const started = performance.now()
    for (let g = 1; g <= 300; g++) say({ t: 'sdp', c, g, d: { type: 'offer', sdp: 'v=0 not a real offer' } })
    await sleep(300)
    const made = rtc.created - before
    const window = performance.now() - started
    assert.ok(made >= 1 && made <= Math.ceil(window / 500) + 1, `${made} RTCPeerConnection(s) for 300 offers in ${Math.round(window)} ms`)
    assert.ok(incoming.length === 1 && incoming[0].state !== 'closed', 'the connection itself is not torn down by the burst')
  } finally {
    raw.terminate()
  }
}, { limits: { peers: { grace: 100 } } }))

test('a WebRTC connection survives its signalling socket reconnecting; the node reclaims its id', () => withYard(async ({ node, channel }) => {
  const a = await node('alice')
  let victim: any = null
  const bChannel = channel('b', {
    RTCPeerConnection: WebRTC,
    WebSocket: class extends WebSocket { constructor (u: string, p?: string | string[]) { super(u, p); victim = this } } as unknown as WebSocketConstructor
  })
  const b = bChannel.createNode(echoBack)
  await b.listen('bob')
  const pc = a.connect('bob')
  const s = pc.createStream('x')
  const got = record(s)
  await within(pc.ready(), 3000, 'open')
  assert.is(pc.transport, 'webrtc')
  const reopened = next(bChannel, 'state', 5000)
  victim._socket.destroy()
  await reopened
  await until(() => bChannel.state === 'open', 5000, 'b reconnected')
  s.send('still connected')
  await until(() => got.length === 1, 2000, 'echo over the data channel')
  assert.is(pc.state, 'open')
  // b holds its id again: a new node can reach it
  await sleep(100)
  const c = await node('carol')
  const pc2 = c.connect('bob')
  await within(pc2.ready(), 3000, 'carol reaches bob after his reconnect')
}))

test('a relay connection whose signalling socket drops ends on both sides at once; the pair connects again after', () => withYard(async ({ node, channel }) => {
  const a = await node('alice', { webrtc: false }, echoBack)
  let victim: any = null
  const bChannel = channel('b', {
    WebSocket: class extends WebSocket { constructor (u: string, p?: string | string[]) { super(u, p); victim = this } } as unknown as WebSocketConstructor,
    reconnect: { minDelay: 20, maxDelay: 50 }
  })
  const b = bChannel.createNode(echoBack)
  await b.listen('bob')
  const pc = a.connect('bob')
  await within(pc.ready(), 2000, 'open')
  const remote = b.connections()[0]
  assert.is(remote.transport, 'relay')
  const started = Date.now()
  const localClosed = next(pc, 'close', 2000)
  const remoteClosed = next(remote, 'close', 2000)
  victim._socket.destroy()
  const [[localErr], [remoteErr]] = await Promise.all([localClosed, remoteClosed])
  assert.ok(localErr instanceof SignalyardError && remoteErr instanceof SignalyardError, 'both closed with a coded error')
  assert.ok(Date.now() - started < 1000, `both sides closed ${Date.now() - started} ms after the socket died (not after the relay timeout)`)
  await until(() => bChannel.state === 'open', 3000, 'b reconnected')
  const again = b.connect('alice')
  const s = again.createStream('x')
  const echoed = next(s, 'data', 3000)
  s.send('after the blip')
  await within(again.ready(), 3000, 'a new connection opens')
  assert.equal((await echoed)[0], 'after the blip')
}, { limits: { peers: { grace: 2000 } } }))

test('glare: a stream the losing side made and closed before the glare resolved does not touch the winner\'s streams', () => withYard(async ({ node }) => {
  for (const webrtc of [true, false]) {
    const a = await node(`a-${String(webrtc)}`, { webrtc }) // 'a-…' < 'b-…': a wins
    const b = await node(`b-${String(webrtc)}`, { webrtc })
    const pa = a.connect(b.id as string)
    const pb = b.connect(a.id as string)
    const aChat = pa.createStream('chat')
    pb.createStream('short-lived').close() // queued OPEN + CLOSE under b's initiator numbering
    const bChat = pb.createStream('chat')
    const got: unknown[] = []
    pa.on('connection', (st) => st.on('data', (d) => got.push(d)))
    bChat.send('from b')
    await within(Promise.all([pa.ready(), pb.ready()]), 3000, 'both open')
    await until(() => got.length === 1, 2000, "b's message")
    await sleep(50)
    assert.is(aChat.state, 'open', "the winner's first stream is still open")
    aChat.send('still works')
  }
}))

/** The pipe of a connection, for tests that speak raw mux frames at a peer. */
const pipeOf = (pc: PeerConnection): { send: (b: Uint8Array) => void, bufferedAmount: number } => (pc as unknown as { pipe: { send: (b: Uint8Array) => void, bufferedAmount: number } }).pipe
const mux = (op: number, id: number, payload = new Uint8Array(0)): Uint8Array => {
  const out = new Uint8Array(6 + payload.length)
  out[0] = op
  new DataView(out.buffer).setUint32(1, id)
  out[5] = 2
  out.set(payload, 6)
  return out
}

test('a peer that opens too many streams or piles up unfinished messages is cut off with a code', () => withYard(async ({ node }) => {
  // too many streams
  const evil = await node('evil', { webrtc: false })
  const victim = await node('victim', { webrtc: false })
  let pc = evil.connect('victim')
  await within(pc.ready(), 2000, 'open')
  let remote = victim.connections()[0]
  let closed = next(remote, 'close', 3000)
  for (let i = 0; i < 1100; i++) pipeOf(pc).send(mux(1, 1001 + 2 * i, new TextEncoder().encode('x')))
  assert.is((await closed)[0]?.code, 'too-many-streams')
  await until(() => pc.state === 'closed', 2000, 'the sender is closed too')
  // 40 MiB of unfinished messages spread over streams, each under the 16 MiB message limit
  pc = evil.connect('victim')
  await within(pc.ready(), 2000, 'open again')
  remote = victim.connections()[0]
  closed = next(remote, 'close', 10_000)
  const chunk = new Uint8Array(900 * 1024)
  let sent = 0
  const victimOpen = (): boolean => (remote.state as string) !== 'closed'
  for (let k = 0; k < 4 && victimOpen(); k++) {
    pipeOf(pc).send(mux(1, 1001 + 2 * k, new TextEncoder().encode('x')))
    for (let i = 0; i < 11 && victimOpen(); i++) {
      pipeOf(pc).send(mux(3, 1001 + 2 * k, chunk))
      sent += chunk.length
      while ((pc.state as string) !== 'closed' && pipeOf(pc).bufferedAmount > 4e6) await sleep(5)
    }
  }
  assert.is((await closed)[0]?.code, 'payload-too-large')
  assert.ok(sent <= 40 * 1024 * 1024)
}))

test('auto: an acceptor whose RTCPeerConnection cannot be made answers with the relay', () => withYard(async ({ node, channel }) => {
  const a = await node('alice', { transport: 'auto' })
  class Broken { constructor () { throw new Error('no WebRTC here today') } }
  const errors: SignalyardError[] = []
  const b = channel('b', { RTCPeerConnection: Broken as unknown as RTCPeerConnectionConstructor }).createNode(echoBack)
  await b.listen('bob')
  const pc = a.connect('bob')
  await within(pc.ready(), 2000, 'open')
  assert.is(pc.transport, 'relay')
  b.connections()[0].on('error', (e) => errors.push(e))
  const s = pc.createStream('x')
  const echoed = next(s, 'data', 2000)
  s.send('relayed')
  assert.equal((await echoed)[0], 'relayed')
}))

// ── leaks ──

test('200 connect/close cycles: RTCPeerConnections, open handles and heap return to baseline', () => withYard(async ({ node }) => {
  // 8 pairs cycling side by side, 25 cycles each (one WebRTC open sometimes waits ~1 s on an ICE retransmission)
  const pairs = await Promise.all(Array.from({ length: 8 }, async (_, i) => ({
    a: await node(`cycler-${i}`),
    b: await node(`partner-${i}`, {}, echoBack)
  })))
  const handles = (): number => process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap').length
  const transports: string[] = []
  const cycle = async (a: PeerNode, b: PeerNode, i: number): Promise<void> => {
    const pc = a.connect(b.id as string)
    const s = pc.createStream('cycle')
    const echoed = next(s, 'data', 5000)
    s.send(i)
    await within(pc.ready(), 5000, `cycle ${i}`)
    await echoed
    transports.push(pc.transport as string)
    pc.close()
    await until(() => a.connections().length === 0 && b.connections().length === 0, 3000, 'closed on both sides')
  }
  // warm-up: lazily created resources exist before the baseline
  await Promise.all(pairs.map(({ a, b }) => cycle(a, b, -1)))
  await until(() => liveRtc() === 0, 3000, 'warm-up closed')
  await sleep(200)
  gc()
  const baseHandles = handles()
  const baseHeap = process.memoryUsage().heapUsed
  const createdBefore = rtc.created
  await Promise.all(pairs.map(async ({ a, b }) => { for (let i = 0; i < 25; i++) await cycle(a, b, i) }))
  await until(() => liveRtc() === 0, 5000, 'every RTCPeerConnection closed')
  await sleep(300)
  gc()
  // libdatachannel now and then refuses a good answer ("remote candidate without ICE transport"):
  // that pair then falls back to the relay, as designed. Nearly every cycle must be WebRTC.
  const overWebRtc = transports.slice(8).filter((t) => t === 'webrtc').length
  assert.ok(overWebRtc >= 190, `${overWebRtc}/200 cycles over WebRTC`)
  assert.ok(rtc.created - createdBefore >= 2 * overWebRtc, 'two RTCPeerConnections per WebRTC connection')
  assert.is(rtc.created, rtc.closed)
  const extraHandles = handles() - baseHandles
  assert.ok(extraHandles <= 0, `open handles back to baseline (${extraHandles} more: ${process.getActiveResourcesInfo().join(',')})`)
  const growth = process.memoryUsage().heapUsed - baseHeap
  assert.ok(growth < 8 * 1024 * 1024, `heap grew ${(growth / 1024 / 1024).toFixed(1)} MiB over 200 cycles`)
}))

// node-datachannel's native threads hold the event loop until its documented cleanup() runs.
test.after(() => { nodeDataChannel.cleanup() })
test.run()

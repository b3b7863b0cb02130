// test/unreliable.test.ts — unreliable streams (SPEC §11): `pc.createStream(label, { ordered:
// false, maxRetransmits: 0 })`. On WebRTC (node-datachannel here) such a stream's messages go on a
// data channel of its own, made with exactly those options by the side that created the stream,
// and come back the same way; with UDP losing one packet in five (iptables in this file's own
// network namespace) a reliable stream on the same pc still delivers everything in order while the
// unreliable one loses some and never waits for them; on the relay it stays reliable and ordered;
// bad options are refused. The file re-runs itself in a namespace with only `lo` (test/netns.ts).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFileSync } from 'node:child_process'
import { RTCPeerConnection as PolyfillPC } from 'node-datachannel/polyfill'
import { SignalChannel, SignalyardError, type Channel, type NodeOptions, type PeerConnection, type PeerStream, type RTCPeerConnectionConstructor } from 'signalyard'
import type { Yard } from 'signalyard/server'
import { next, sleep, startYard, until, within } from './helpers.js'
import { loopbackOnly } from './netns.js'

const ISOLATED = await loopbackOnly(import.meta.url, 'the loss test is skipped (it needs iptables in a namespace of its own)')

/** Every data channel made or received, with its options, per RTCPeerConnection created. */
const channels: Array<{ label: string, ordered: boolean, maxRetransmits: number | null, made: boolean }> = []
interface PolyfillLike { createDataChannel (label: string, init?: object): any, addEventListener (type: string, fn: (ev: any) => void): void }
class RecordingPC extends (PolyfillPC as unknown as new (config?: object) => PolyfillLike) {
  constructor (config?: object) {
    super(config)
    this.addEventListener('datachannel', (ev: { channel: { label: string, ordered: boolean, maxRetransmits: number | null } }) => {
      channels.push({ label: ev.channel.label, ordered: ev.channel.ordered, maxRetransmits: ev.channel.maxRetransmits, made: false })
    })
  }

  override createDataChannel (label: string, init?: { ordered?: boolean, maxRetransmits?: number }): any {
    channels.push({ label, ordered: init?.ordered ?? true, maxRetransmits: init?.maxRetransmits ?? null, made: true })
    return super.createDataChannel(label, init)
  }
}
const WebRTC = RecordingPC as unknown as RTCPeerConnectionConstructor

interface Pair { a: PeerConnection, b: PeerConnection, close: () => void }

/** Two nodes on their own sockets and a pc from a to b, open. */
async function pair (yard: Yard, options: NodeOptions & { webrtc: boolean }): Promise<Pair> {
  const { webrtc, ...nodeOptions } = options
  const made: Channel[] = []
  const channel = (n: string): Channel => {
    const c = SignalChannel('unreliable', { url: `${yard.url}?c=${n}`, ...(webrtc ? { RTCPeerConnection: WebRTC, rtcConfig: { bindAddress: '127.0.0.1' } } : {}) })
    made.push(c)
    return c
  }
  const na = channel('a').createNode(undefined, nodeOptions)
  const nb = channel('b').createNode(undefined, nodeOptions)
  await na.listen('a')
  await nb.listen('b')
  const incoming = next(nb, 'connection', 5000)
  const a = na.connect('b')
  const [b] = await incoming as [PeerConnection]
  await within(Promise.all([a.ready(), b.ready()]), 8000, 'the pc opens')
  return { a, b, close: () => { for (const c of made) c.close() } }
}

/** The stream the other side gets for `label`, and every message on it (recorded from its first). */
const accepted = (pc: PeerConnection, label: string): { stream: Promise<PeerStream>, got: unknown[] } => {
  const got: unknown[] = []
  const stream = new Promise<PeerStream>((resolve) => {
    pc.on('connection', (s) => {
      if (s.label !== label) return
      s.on('data', (d) => got.push(d))
      resolve(s)
    })
  })
  return { stream, got }
}

const record = (s: PeerStream): unknown[] => {
  const got: unknown[] = []
  s.on('data', (d) => got.push(d))
  return got
}

test('on WebRTC: the unreliable stream has a data channel of its own with exactly its options; messages go both ways', async () => {
  const yard = await startYard()
  channels.length = 0
  const p = await pair(yard, { webrtc: true, transport: 'webrtc' })
  try {
    const remote = accepted(p.b, 'pos')
    const pos = p.a.createStream('pos', { ordered: false, maxRetransmits: 0 })
    pos.send({ x: 0 }) // the OPEN, and this first message through the mux while the channel opens
    const there = await within(remote.stream, 3000, 'b gets the stream')
    const got = remote.got
    const back = record(pos)
    await until(() => channels.some((c) => c.made && c.label.startsWith('signalyard.u:')) && channels.some((c) => !c.made && c.label.startsWith('signalyard.u:')), 3000, 'the side channel made and received')
    await sleep(100) // its DCEP handshake
    for (let i = 1; i <= 200; i++) pos.send({ x: i })
    for (let i = 1; i <= 50; i++) there.send({ y: i })
    await until(() => got.length === 201 && back.length === 50, 3000, 'every message (loopback loses none)')
    const side = channels.filter((c) => c.label.startsWith('signalyard.u:'))
    // (node-datachannel's polyfill does not report a received channel's options: the made one's are checked)
    assert.equal(side.map((c) => [c.made, c.label]).sort(), [[false, `signalyard.u:${pos.id}`], [true, `signalyard.u:${pos.id}`]], 'one channel, made by the creator, received by the other side')
    assert.equal(side.filter((c) => c.made).map((c) => [c.ordered, c.maxRetransmits]), [[false, 0]], 'unordered, no retransmissions')
    assert.equal(new Set(got.map((m) => (m as { x: number }).x)).size, 201, 'none twice')
    // A reliable stream on the same pc is untouched: no channel of its own.
    const chat = p.a.createStream('chat')
    chat.send('hi')
    await sleep(100)
    assert.is(channels.filter((c) => c.label.startsWith('signalyard.u:')).length, 2)
  } finally {
    p.close()
    await yard.close()
  }
})

test('UDP losing one packet in five: the reliable stream delivers all in order, the unreliable one loses some and never repeats', async () => {
  if (!ISOLATED) {
    console.log('(skipped: no private network namespace here)')
    return
  }
  const yard = await startYard()
  const p = await pair(yard, { webrtc: true, transport: 'webrtc', connectTimeout: 8000 })
  const rule = ['INPUT', '-p', 'udp', '-m', 'statistic', '--mode', 'random', '--probability', '0.2', '-j', 'DROP']
  let dropping = false
  try {
    const remoteU = accepted(p.b, 'u')
    const remoteR = accepted(p.b, 'r')
    const u = p.a.createStream('u', { ordered: false, maxRetransmits: 0 })
    const r = p.a.createStream('r')
    u.send(-1)
    r.send(-1)
    await within(Promise.all([remoteU.stream, remoteR.stream]), 3000, 'both streams')
    const gotU = remoteU.got
    const gotR = remoteR.got
    await until(() => channels.some((c) => !c.made && c.label === `signalyard.u:${u.id}`), 3000, 'the side channel')
    await sleep(200)
    // iptables here changes only the private namespace this file runs in (test/netns.ts).
    execFileSync('iptables', ['-I', ...rule])
    dropping = true
    for (let i = 0; i < 400; i++) {
      u.send(i)
      r.send(i)
      if (i % 20 === 19) await sleep(20)
    }
    await until(() => gotR.length === 401, 20_000, 'the reliable stream, every message')
    await sleep(500)
    execFileSync('iptables', ['-D', ...rule])
    dropping = false
    assert.equal(gotR, [-1, ...Array.from({ length: 400 }, (_, i) => i)], 'reliable: all, in order')
    const numbers = gotU.filter((v) => v !== -1) as number[]
    console.log(`unreliable: ${numbers.length} of 400 arrived under 20 % UDP loss`)
    assert.ok(numbers.length < 400, `some were lost (${numbers.length} of 400 arrived)`)
    assert.ok(numbers.length > 100, `most arrived (${numbers.length})`)
    assert.is(new Set(numbers).size, numbers.length, 'none twice')
    assert.ok(numbers.every((n) => Number.isInteger(n) && n >= 0 && n < 400), 'each intact')
  } finally {
    if (dropping) execFileSync('iptables', ['-D', ...rule])
    p.close()
    await yard.close()
  }
})

test('on the relay an unreliable stream stays reliable and ordered', async () => {
  const yard = await startYard()
  const p = await pair(yard, { webrtc: false })
  try {
    assert.is(p.a.transport, 'relay')
    const remote = accepted(p.b, 'u')
    const u = p.a.createStream('u', { ordered: false, maxRetransmits: 0 })
    for (let i = 0; i < 1000; i++) u.send(i)
    await remote.stream
    const got = remote.got
    await until(() => got.length === 1000, 3000, 'all')
    assert.equal(got, Array.from({ length: 1000 }, (_, i) => i))
  } finally {
    p.close()
    await yard.close()
  }
})

test('bad stream options are refused with bad-request; ordered + reliable options make a plain stream', async () => {
  const yard = await startYard()
  channels.length = 0
  const p = await pair(yard, { webrtc: true, transport: 'webrtc' })
  try {
    for (const bad of [{ ordered: 'no' }, { maxRetransmits: -1 }, { maxRetransmits: 1.5 }, { maxPacketLifeTime: 70000 }, { maxRetransmits: 0, maxPacketLifeTime: 10 }, 'fast']) {
      assert.throws(() => p.a.createStream('x', bad as object), (err: SignalyardError) => err.code === 'bad-request', JSON.stringify(bad))
    }
    const plain = p.a.createStream('plain', { ordered: true })
    plain.send('x')
    await sleep(200)
    assert.is(channels.filter((c) => c.label.startsWith('signalyard.u:')).length, 0, 'no channel of its own')
    // A large message on an unreliable stream goes the reliable way, whole.
    const remote = accepted(p.b, 'big')
    const big = p.a.createStream('big', { ordered: false, maxRetransmits: 0 })
    big.send(new Uint8Array(200_000).fill(7))
    await remote.stream
    await until(() => remote.got.length === 1, 3000, 'the large message')
    assert.is((remote.got[0] as Uint8Array).length, 200_000)
  } finally {
    p.close()
    await yard.close()
  }
})

test.run()

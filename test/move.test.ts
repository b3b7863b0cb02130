// The live move of transport 'auto' (docs/PROTOCOL.md, "Moving between paths"), with real
// RTCPeerConnections (node-datachannel, loopback) and a real yard: a pc opens on the relay, moves
// to WebRTC while numbered messages flow both ways on several streams, loses its WebRTC path in
// the middle of a transfer, goes back to the relay and returns to WebRTC after a retry. Every
// message must arrive exactly once and in order on every stream, whatever moved when.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { RTCPeerConnection as PolyfillPC } from 'node-datachannel/polyfill'
import { SignalChannel, type Channel, type PeerConnection, type PeerStream, type RTCPeerConnectionConstructor } from 'signalyard'
import { next, startYard, until, within } from './helpers.js'

/** Every RTCPeerConnection made here, so a test can cut one from under its pc. */
const made: Array<{ close: () => void, connectionState?: string }> = []
class TrackedPC extends (PolyfillPC as unknown as new (config?: object) => { close: () => void }) {
  constructor (config?: object) {
    super(config)
    made.push(this)
  }
}
const WebRTC = TrackedPC as unknown as RTCPeerConnectionConstructor
const LOOPBACK = { bindAddress: '127.0.0.1' }

/** Numbered messages on one stream: what arrived, and whether it was 0, 1, 2, … without a gap or repeat. */
function counter (stream: PeerStream): { got: () => number, ok: () => boolean } {
  let expected = 0
  let broken = false
  stream.on('data', (d) => {
    if (d !== expected) broken = true
    expected++
  })
  return { got: () => expected, ok: () => !broken }
}

/** Send 0..n-1 on `stream`, waiting for 'drain' when it asks; small payloads with some padding. */
async function sendNumbered (stream: PeerStream, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    if (!stream.send(i)) await next(stream, 'drain', 20_000)
  }
}

async function pair (): Promise<{ a: PeerConnection, b: () => PeerConnection, close: () => Promise<void> }> {
  const yard = await startYard()
  const channels: Channel[] = []
  const open = (who: string): Channel => {
    const c = SignalChannel('move', { url: `${yard.url}?c=${who}`, RTCPeerConnection: WebRTC, rtcConfig: LOOPBACK })
    channels.push(c)
    return c
  }
  let remote: PeerConnection | null = null
  const bob = open('b').createNode((pc) => { remote = pc })
  const alice = open('a').createNode()
  await within(Promise.all([alice.listen('alice'), bob.listen('bob')]), 2000, 'listen')
  const a = alice.connect('bob')
  return {
    a,
    b: () => remote as unknown as PeerConnection,
    close: async () => {
      for (const c of channels) c.close()
      await yard.close()
    }
  }
}

test('auto: the pc opens on the relay and moves to WebRTC while 3 streams carry 20,000 numbered messages each way: every one arrives once, in order', async () => {
  const { a, b, close } = await pair()
  try {
    const moves: string[] = []
    a.on('transport', (t) => moves.push(t))
    const streams = ['one', 'two', 'three'].map((label) => a.createStream(label))
    const back = streams.map((s) => counter(s))
    const remote: Array<{ got: () => number, ok: () => boolean }> = []
    let echoing = 0
    a.once('open', () => { assert.is(a.transport, 'relay', 'open on the relay first') })
    await within(a.ready(), 3000, 'open')
    b().on('connection', (s) => {
      remote.push(counter(s))
      echoing++
      void sendNumbered(s, 20_000)
    })
    await Promise.all(streams.map(async (s) => await sendNumbered(s, 20_000)))
    await until(() => echoing === 3 && remote.every((r) => r.got() === 20_000) && back.every((r) => r.got() === 20_000), 30_000,
      `all messages (here ${back.map((r) => r.got()).join('/')}, there ${remote.map((r) => r.got()).join('/')})`)
    assert.ok(back.every((r) => r.ok()) && remote.every((r) => r.ok()), 'in order, no gap, no repeat')
    await until(() => a.transport === 'webrtc', 5000, 'moved to WebRTC')
    assert.equal(moves, ['webrtc'])
  } finally {
    await close()
  }
})

test('auto: the WebRTC path dies mid-transfer → the pc goes back to the relay at once and then to WebRTC again; not a message lost or reordered', async () => {
  const { a, b, close } = await pair()
  try {
    const moves: string[] = []
    a.on('transport', (t) => moves.push(t))
    await within(a.ready(), 3000, 'open')
    await until(() => a.transport === 'webrtc' && b().transport === 'webrtc', 5000, 'both on WebRTC')
    const there: Array<{ got: () => number, ok: () => boolean }> = []
    b().on('connection', (rs) => there.push(counter(rs)))
    const s = a.createStream('bulk')
    const sending = sendNumbered(s, 60_000)
    await until(() => (there[0]?.got() ?? 0) > 10_000, 10_000, 'the transfer under way')
    const before = made.length
    for (const pc of made.slice(0, before)) pc.close() // every RTCPeerConnection so far: the path dies under both sides
    await until(() => a.transport === 'relay', 5000, 'back on the relay')
    await sending
    await until(() => there[0].got() === 60_000, 20_000, `every message (${there[0].got()})`)
    assert.ok(there[0].ok(), 'in order, no gap, no repeat')
    await until(() => a.transport === 'webrtc', 10_000, 'on WebRTC again after the retry')
    assert.ok(made.length > before, 'a fresh RTCPeerConnection')
    assert.equal(moves, ['webrtc', 'relay', 'webrtc'])
    const after = a.createStream('after')
    const echoed = next(after, 'data', 3000)
    b().once('connection', (rs) => rs.on('data', (d) => rs.send(d)))
    after.send('still the same pc')
    assert.equal((await echoed)[0], 'still the same pc')
  } finally {
    await close()
  }
})

test.run()

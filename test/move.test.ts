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

/** An RTCPeerConnection class that keeps every instance in `list`, so a test can cut one from under its pc. */
function tracked (list: Array<{ close: () => void }>): RTCPeerConnectionConstructor {
  return class extends (PolyfillPC as unknown as new (config?: object) => { close: () => void }) {
    constructor (config?: object) {
      super(config)
      list.push(this)
    }
  } as unknown as RTCPeerConnectionConstructor
}
/** The RTCPeerConnections of side a (the initiator) and side b, in the order they were made. */
const madeA: Array<{ close: () => void }> = []
const madeB: Array<{ close: () => void }> = []
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
  const open = (who: 'a' | 'b'): Channel => {
    const c = SignalChannel('move', { url: `${yard.url}?c=${who}`, RTCPeerConnection: tracked(who === 'a' ? madeA : madeB), rtcConfig: LOOPBACK })
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

test('auto: the WebRTC path dies mid-transfer, cut on one side then on the other → the pc goes back to the relay at once and then to WebRTC again, twice; not a message lost or reordered', async () => {
  const { a, b, close } = await pair()
  try {
    const moves: string[] = []
    a.on('transport', (t) => moves.push(t))
    await within(a.ready(), 3000, 'open')
    await until(() => a.transport === 'webrtc' && b().transport === 'webrtc', 5000, 'both on WebRTC')
    const there: Array<{ got: () => number, ok: () => boolean }> = []
    b().on('connection', (rs) => there.push(counter(rs)))
    const s = a.createStream('bulk')
    // numbered messages flow until both cuts are over and 20,000 more went on the last path: every
    // cut comes mid-transfer, however fast the relay carries the backlog
    let sent = 0
    let stop = false
    const sending = (async () => {
      while (!stop) if (!s.send(sent++)) await next(s, 'drain', 20_000)
    })()
    let at = 20_000 // the first cut; the second 10,000 messages after WebRTC is back
    for (const [side, made] of [['the acceptor', madeB], ['the initiator', madeA]] as const) {
      await until(() => (there[0]?.got() ?? 0) > at, 15_000, `the transfer past ${at}`)
      const before = madeA.length + madeB.length
      const cutAt = there[0].got()
      made[made.length - 1].close() // this side's current RTCPeerConnection: the path dies under it
      const t0 = performance.now()
      await until(() => a.transport === 'relay', 5000, `back on the relay (${side} cut)`)
      const back = performance.now() - t0
      await until(() => a.transport === 'webrtc', 10_000, `on WebRTC again after the retry (${side} cut)`)
      assert.ok(madeA.length + madeB.length > before, 'fresh RTCPeerConnections')
      at = there[0].got() + 10_000
      console.log(`move: ${side}'s path cut at message ${cutAt}: on the relay after ${Math.round(back)} ms, on WebRTC again after ${Math.round(performance.now() - t0)} ms`)
    }
    const last = there[0].got() + 20_000
    await until(() => there[0].got() > last, 15_000, 'the transfer on WebRTC again')
    stop = true
    await sending
    await until(() => there[0].got() === sent, 20_000, `every message (${there[0].got()} of ${sent})`)
    assert.ok(there[0].ok(), 'in order, no gap, no repeat')
    assert.equal(moves, ['webrtc', 'relay', 'webrtc', 'relay', 'webrtc'])
    const after = a.createStream('after')
    const echoed = next(after, 'data', 3000)
    b().once('connection', (rs) => rs.on('data', (d) => rs.send(d)))
    after.send('still the same pc')
    assert.equal((await echoed)[0], 'still the same pc')
  } finally {
    await close()
  }
})

test('auto: pc.close() at any moment of the move (30 pairs, closed 0–290 ms after open) still delivers every message sent before it, in order', async () => {
  const yard = await startYard()
  const channels = ['a', 'b'].map((who) => SignalChannel('close-move', { url: `${yard.url}?c=${who}`, RTCPeerConnection: tracked(who === 'a' ? madeA : madeB), rtcConfig: LOOPBACK }))
  try {
    const got: unknown[][] = []
    const closed: number[] = []
    const bob = channels[1].createNode((pc) => {
      const mine: unknown[] = []
      got.push(mine)
      pc.on('connection', (rs) => rs.on('data', (d) => mine.push(d)))
      pc.on('close', (err) => { if (err !== undefined) throw err; closed.push(got.length) })
    })
    const alice = channels[0].createNode()
    await within(Promise.all([alice.listen('alice'), bob.listen('bob')]), 2000, 'listen')
    const transports: string[] = []
    for (let k = 0; k < 30; k++) {
      const pc = alice.connect('bob')
      const s = pc.createStream('last words')
      await within(pc.ready(), 3000, `open ${k}`)
      await new Promise((resolve) => setTimeout(resolve, k * 10))
      transports.push(String(pc.transport))
      for (let i = 0; i < 200; i++) s.send(i)
      pc.close()
      await until(() => closed.length === k + 1, 4000, `pair ${k} closed on bob's side`)
      assert.equal(got[k], Array.from({ length: 200 }, (_, i) => i), `pair ${k} (closed ${k * 10} ms after open, on ${String(transports[k])}): every message before the close`)
    }
    console.log(`close during the move: transports at close ${transports.join(' ')}`)
  } finally {
    for (const c of channels) c.close()
    await yard.close()
  }
})

test('auto: pc.close() while the move waits behind a relay backlog (MOVE sent, MOVED not yet back) still delivers the frames held for the move', async () => {
  // 100 relay messages/s: 1,000 messages of 1 KiB are about 0.8 s of relay backlog, and the MOVE goes behind it
  const yard = await startYard({ limits: { messagesPerSecond: 100, messageBurst: 50 } })
  const channels = ['a', 'b'].map((who) => SignalChannel('close-held', { url: `${yard.url}?c=${who}`, RTCPeerConnection: tracked(who === 'a' ? madeA : madeB), rtcConfig: LOOPBACK }))
  try {
    const got: number[] = []
    let closedWith: unknown = 'open'
    const bob = channels[1].createNode((pc) => {
      pc.on('connection', (rs) => rs.on('data', (d) => got.push(new DataView((d as Uint8Array).buffer, (d as Uint8Array).byteOffset).getUint32(0))))
      pc.on('close', (err) => { closedWith = err })
    })
    const alice = channels[0].createNode()
    await within(Promise.all([alice.listen('alice'), bob.listen('bob')]), 2000, 'listen')
    const before = madeA.length
    const pc = alice.connect('bob')
    const s = pc.createStream('held')
    const numbered = (i: number): Uint8Array => { const m = new Uint8Array(1024); new DataView(m.buffer).setUint32(0, i); return m }
    await within(pc.ready(), 3000, 'open')
    for (let i = 0; i < 1000; i++) s.send(numbered(i))
    // alice's WebRTC path is up (so its MOVE went out, behind the backlog) while it still sends on the relay
    await until(() => madeA.length > before && (madeA[madeA.length - 1] as unknown as { connectionState: string }).connectionState === 'connected', 3000, "alice's RTCPeerConnection connected")
    await new Promise((resolve) => setTimeout(resolve, 50))
    assert.is(pc.transport, 'relay', 'the move is still under way')
    for (let i = 1000; i < 1200; i++) s.send(numbered(i))
    pc.close()
    await until(() => closedWith !== 'open', 5000, "bob's pc closed")
    assert.is(closedWith, undefined, 'a close on purpose')
    assert.equal(got, Array.from({ length: 1200 }, (_, i) => i), `every message, in order, the held ones too (got ${got.length}, last ${String(got.at(-1))})`)
  } finally {
    for (const c of channels) c.close()
    await yard.close()
  }
})

test.run()

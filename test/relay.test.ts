// test/relay.test.ts — the relay endpoint against a real server (SPEC §3.3): pairing in either
// order, 'open' on both sides, ordered binary-safe data both ways and to no one else, data written
// before the pair exists, refusal of tokens in use, the pending timeout, close propagation (close,
// the peer's channel, the peer's socket closing or dying), and reuse of tokens after a close.
//
// Each side uses its own URL (`?c=N` on the same server) and so its own WebSocket, as two apps would.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { randomBytes } from 'node:crypto'
import WebSocket from 'ws'
import { SignalChannel, SignalyardError, type Channel, type RelayStream, type WebSocketConstructor } from 'signalyard'
import type { ServerOptions, Yard } from 'signalyard/server'
import { FrameType } from '../src/protocol/frames.js'
import { rawClient, socketOf, type RawClient } from './raw-client.js'
import { collect, later, next, readyAll, sleep, startYard, until, within } from './helpers.js'

interface Ctx {
  yard: Yard
  /** A channel on client `client` (its own socket per client number). */
  open: (ns: string, client: number, options?: { WebSocket?: WebSocketConstructor }) => Channel
}

async function withYard (body: (ctx: Ctx) => Promise<void>, options: ServerOptions = {}): Promise<void> {
  const yard = await startYard(options)
  const channels: Channel[] = []
  const open: Ctx['open'] = (ns, client, extra = {}) => {
    const channel = SignalChannel(ns, { url: `${yard.url}?c=${client}`, ...extra })
    channels.push(channel)
    return channel
  }
  try {
    await body({ yard, open })
  } finally {
    for (const channel of channels) channel.close()
    await yard.close()
  }
}

function record (stream: RelayStream): unknown[] {
  const got: unknown[] = []
  stream.on('data', (data) => { got.push(data) })
  return got
}

/** Expect `promise` to reject with a SignalyardError of `code`. */
async function rejectsWith (promise: Promise<unknown>, code: string): Promise<SignalyardError> {
  try {
    await within(promise, 2000, `rejection with ${code}`)
  } catch (err) {
    assert.instance(err, SignalyardError)
    assert.is((err as SignalyardError).code, code)
    return err as SignalyardError
  }
  assert.unreachable(`expected a rejection with ${code}`)
  throw new Error('unreachable')
}

/** Both sides exchange a message each way. */
async function exchange (x: RelayStream, y: RelayStream, tag: string): Promise<void> {
  const both = Promise.all([next(y, 'data'), next(x, 'data')])
  x.send(`${tag} x→y`)
  y.send(`${tag} y→x`)
  const [[atY], [atX]] = await both
  assert.is(atY, `${tag} x→y`)
  assert.is(atX, `${tag} y→x`)
}

/** A WebSocket (ws) that remembers its instances, so a test can kill one abruptly. */
function trackedWebSocket (): { ctor: WebSocketConstructor, sockets: WebSocket[] } {
  const sockets: WebSocket[] = []
  class Tracked extends WebSocket {
    constructor (url: string, protocols?: string | string[]) {
      super(url, protocols)
      sockets.push(this)
    }
  }
  return { ctor: Tracked as unknown as WebSocketConstructor, sockets }
}

for (const order of ['local first', 'remote first'] as const) {
  test(`pairs whichever side comes first (${order}); 'open' on both; ordered, binary-exact data both ways`, async () => {
    await withYard(async ({ open, yard }) => {
      const first = order === 'local first'
        ? open('room', 1).relay({ local: 'alice', remote: 'bob' })
        : open('room', 2).relay({ local: 'bob', remote: 'alice' })
      const firstOpen = next(first, 'open', 2000)
      // the first side's stream is registered (its namespace counted) once the broker holds it pending
      await until(() => yard.health().namespaces === 1, 2000, 'the first side held by the server')
      assert.is(first.state, 'opening', 'not open while unpaired')
      const second = order === 'local first'
        ? open('room', 2).relay({ local: 'bob', remote: 'alice' })
        : open('room', 1).relay({ local: 'alice', remote: 'bob' })
      const secondOpen = next(second, 'open', 2000)
      await Promise.all([firstOpen, secondOpen, readyAll(first, second)])
      assert.is(first.state, 'open')
      assert.is(second.state, 'open')

      const N = 200
      const blob = new Uint8Array(randomBytes(64 * 1024))
      const message = (side: string, i: number): unknown =>
        i % 3 === 0 ? `${side}-${i}` : i % 3 === 1 ? { side, i } : new Uint8Array([i & 0xff, side.charCodeAt(0)])
      const both = Promise.all([collect(second, 'data', N + 1, 5000), collect(first, 'data', N + 1, 5000)])
      for (let i = 0; i < N; i++) {
        first.send(message('f', i))
        second.send(message('s', i))
      }
      first.send(blob)
      second.send(blob.buffer)
      const [atSecond, atFirst] = await both
      for (const [got, side] of [[atSecond, 'f'], [atFirst, 's']] as const) {
        const values = got.map(([d]) => d)
        assert.equal(values.slice(0, N), Array.from({ length: N }, (_, i) => message(side, i)), `${side}'s messages in order`)
        const last = values[N]
        assert.instance(last, Uint8Array)
        assert.ok(Buffer.from(last as Uint8Array).equals(Buffer.from(blob)), `${side}'s 64 KiB blob byte-exact`)
      }
    })
  })
}

test('data sent before \'open\' (before the peer even exists) is held and delivered after it, in order', async () => {
  await withYard(async ({ open }) => {
    const a = open('room', 1).relay({ local: 'a', remote: 'b' })
    const events: string[] = []
    for (let i = 0; i < 20; i++) a.send(`early-${i}`) // the socket is not even open yet
    await sleep(150) // socket open, stream pending on the server
    for (let i = 20; i < 40; i++) a.send(i % 2 === 0 ? `early-${i}` : new Uint8Array([i]))
    assert.is(a.state, 'opening')

    const b = open('room', 2).relay({ local: 'b', remote: 'a' })
    b.on('open', () => events.push('open'))
    b.on('data', () => events.push('data'))
    b.send('from b, before open')
    const atB = collect(b, 'data', 40, 2000)
    const atA = later(next(a, 'data', 2000))
    const got = (await atB).map(([d]) => d)
    assert.equal(got, Array.from({ length: 40 }, (_, i) => i < 20 || i % 2 === 0 ? `early-${i}` : new Uint8Array([i])))
    assert.is(events[0], 'open', '\'open\' comes before the held data')
    assert.is((await atA)[0], 'from b, before open')
  })
})

test('the relay delivers to its peer and to no other stream', async () => {
  await withYard(async ({ open }) => {
    const a = open('room', 1).relay({ local: 'a', remote: 'b' })
    const b = open('room', 2).relay({ local: 'b', remote: 'a' })
    const c = open('room', 1).relay({ local: 'c', remote: 'd' }) // another pair in the namespace
    const d = open('room', 2).relay({ local: 'd', remote: 'c' })
    const echo1 = open('room', 1).echo()
    const echo2 = open('room', 2).echo()
    const echo3 = open('room', 3).echo()
    const elsewhere = open('other-room', 3).relay({ local: 'b', remote: 'a' }) // same tokens, other namespace
    await readyAll(a, b, c, d, echo1, echo2, echo3)
    const bystanders = { c: record(c), d: record(d), elsewhere: record(elsewhere) }
    const echoes: unknown[] = []
    for (const e of [echo1, echo2, echo3]) e.on('data', (data) => echoes.push(data))

    const atB = collect(b, 'data', 10)
    for (let i = 0; i < 10; i++) a.send(i % 2 === 0 ? `m${i}` : new Uint8Array([i]))
    await atB
    await exchange(c, d, 'other pair') // the other pair still works, and gets only its own traffic
    await sleep(100)
    assert.equal(bystanders.c, ['other pair y→x'])
    assert.equal(bystanders.d, ['other pair x→y'])
    assert.equal(bystanders.elsewhere, [], 'a stream with the same tokens in another namespace gets nothing')
    assert.is(elsewhere.state, 'opening', 'and does not pair across namespaces')
    assert.equal(echoes, [], 'echo streams of the namespace get nothing')
  })
})

test('tokens already pending are refused with relay-token-in-use; the pending side then pairs normally', async () => {
  await withYard(async ({ open }) => {
    const a = open('room', 1).relay({ local: 'a', remote: 'b' })
    await sleep(100) // pending
    const intruder = open('room', 3).relay({ local: 'a', remote: 'b' })
    const intruderClosed = later(next(intruder, 'close', 1000))
    const err = await rejectsWith(intruder.ready(), 'relay-token-in-use')
    assert.ok(err.message.length > 0)
    const [closeError] = await intruderClosed
    assert.is((closeError as SignalyardError | undefined)?.code, 'relay-token-in-use', '\'close\' carries the error')

    const b = open('room', 2).relay({ local: 'b', remote: 'a' })
    await readyAll(a, b)
    await exchange(a, b, 'after refusal')
  })
})

test('tokens already paired are refused (either side\'s) and the pair keeps working', async () => {
  await withYard(async ({ open }) => {
    const a = open('room', 1).relay({ local: 'a', remote: 'b' })
    const b = open('room', 2).relay({ local: 'b', remote: 'a' })
    await readyAll(a, b)
    const atA = record(a)
    const atB = record(b)

    const asA = open('room', 3).relay({ local: 'a', remote: 'b' })
    const asB = open('room', 3).relay({ local: 'b', remote: 'a' })
    const sameSocket = open('room', 1).relay({ local: 'b', remote: 'a' }) // on a's own socket
    await rejectsWith(asA.ready(), 'relay-token-in-use')
    await rejectsWith(asB.ready(), 'relay-token-in-use')
    await rejectsWith(sameSocket.ready(), 'relay-token-in-use')
    for (const s of [asA, asB, sameSocket]) assert.is(s.state, 'closed')

    await exchange(a, b, 'still paired')
    assert.equal(atA, ['still paired y→x'])
    assert.equal(atB, ['still paired x→y'])
  })
})

test('an unmatched side gets relay-timeout after pendingTimeout, and \'close\'', async () => {
  await withYard(async ({ open }) => {
    const started = Date.now()
    const lonely = open('room', 1).relay({ local: 'x', remote: 'y' })
    const closed = later(next(lonely, 'close', 1500))
    await rejectsWith(lonely.ready(), 'relay-timeout')
    const ms = Date.now() - started
    assert.ok(ms >= 250, `not before the timeout (${ms} ms)`)
    assert.ok(ms < 1000, `within ~1 s (${ms} ms)`)
    const [error] = await closed
    assert.is((error as SignalyardError).code, 'relay-timeout')
    assert.is(lonely.state, 'closed')
    console.log(`  relay: pendingTimeout 300 ms → relay-timeout after ${ms} ms`)

    // A paired pair outlives the pending timeout, and the timed-out tokens are free again.
    const x = open('room', 1).relay({ local: 'x', remote: 'y' })
    const y = open('room', 2).relay({ local: 'y', remote: 'x' })
    await readyAll(x, y)
    await sleep(600)
    assert.is(x.state, 'open')
    await exchange(x, y, 'past the timeout')
  }, { limits: { relay: { pendingTimeout: 300 } } })
})

test('what a pending side holds is bounded: past relay.prePairBuffer the stream is closed with payload-too-large', async () => {
  await withYard(async ({ open }) => {
    const a = open('room', 1).relay({ local: 'a', remote: 'b' })
    const closed = later(next(a, 'close', 2000))
    a.send(new Uint8Array(600))
    a.send(new Uint8Array(600))
    await rejectsWith(a.ready(), 'payload-too-large')
    const [error] = await closed
    assert.is((error as SignalyardError).code, 'payload-too-large')

    // Under the bound it is all held and delivered.
    const x = open('room', 1).relay({ local: 'x', remote: 'y' })
    x.send(new Uint8Array(400))
    x.send(new Uint8Array(400))
    await sleep(50)
    const y = open('room', 2).relay({ local: 'y', remote: 'x' })
    const got = await collect(y, 'data', 2)
    assert.equal(got.map(([d]) => (d as Uint8Array).length), [400, 400])
  }, { limits: { relay: { prePairBuffer: 1000 } } })
})

test('close() on one side closes the other within 1 s; the tokens can then be paired again', async () => {
  await withYard(async ({ open, yard }) => {
    const a = open('room', 1).relay({ local: 'a', remote: 'b' })
    const b = open('room', 2).relay({ local: 'b', remote: 'a' })
    await readyAll(a, b)
    const closes = Promise.all([next(a, 'close', 1000), next(b, 'close', 1000)])
    const started = Date.now()
    a.close()
    const [, [reason]] = await closes
    console.log(`  relay: peer 'close' ${Date.now() - started} ms after close()`)
    assert.is(b.state, 'closed')
    assert.not.instance(reason, SignalyardError, 'a close on purpose is not an error')
    assert.is(yard.health().connections, 2, 'closing a relay stream does not close the sockets')

    const a2 = open('room', 1).relay({ local: 'a', remote: 'b' })
    const b2 = open('room', 2).relay({ local: 'b', remote: 'a' })
    await readyAll(a2, b2)
    await exchange(a2, b2, 'reused tokens')
  })
})

test('the peer\'s channel closing closes this side (the peer\'s socket stays open for its other channel)', async () => {
  await withYard(async ({ open, yard }) => {
    const a = open('room', 1).relay({ local: 'a', remote: 'b' })
    const peerChannel = open('room', 2)
    const keepsSocket = open('room', 2).echo()
    const b = peerChannel.relay({ local: 'b', remote: 'a' })
    await readyAll(a, b, keepsSocket)
    const aClosed = next(a, 'close', 1000)
    peerChannel.close()
    await aClosed
    assert.is(a.state, 'closed')
    assert.is(yard.health().connections, 2, 'the peer\'s socket is still open')
  })
})

test('the peer\'s socket closing (a clean close, no CLOSE for its stream) closes this side; the tokens are then free', async () => {
  const raws: RawClient[] = []
  try {
    await withYard(async ({ open, yard }) => {
      const a = open('room', 1).relay({ local: 'a', remote: 'b' })
      // The peer is a raw client: it never sends CLOSE for its relay stream, only closes its socket,
      // so only the server's socket-close path can close this side.
      const peer = await rawClient(yard, raws)
      assert.is((await peer.open(1, { ep: 'relay', ns: 'room', local: 'b', remote: 'a' })).type, FrameType.Opened)
      await readyAll(a)
      const aClosed = next(a, 'close', 1000)
      peer.ws.close(1000)
      const [reason] = await aClosed
      assert.is(a.state, 'closed')
      assert.not.instance(reason, SignalyardError, 'the peer going away is a close, not an error')
      assert.equal((await peer.closed).code, 1000)
      await until(() => yard.health().connections === 1, 1000, 'the peer\'s socket closed on the server')
      assert.is(yard.health().namespaces, 0, 'nothing left open in the room')

      // the tokens are free: a new pair on them works, on this side's socket
      const a2 = open('room', 1).relay({ local: 'a', remote: 'b' })
      const b2 = open('room', 2).relay({ local: 'b', remote: 'a' })
      await readyAll(a2, b2)
      await exchange(a2, b2, 'after the peer\'s socket closed')
    })
  } finally {
    for (const c of raws) c.ws.terminate()
  }
})

test('the peer\'s socket dying abruptly closes this side within 1 s; the tokens are then free', async () => {
  await withYard(async ({ open }) => {
    const { ctor, sockets } = trackedWebSocket()
    const a = open('room', 1).relay({ local: 'a', remote: 'b' })
    const b = open('room', 2, { WebSocket: ctor }).relay({ local: 'b', remote: 'a' })
    await readyAll(a, b)
    assert.is(sockets.length, 1)
    const aClosed = next(a, 'close', 1000)
    const started = Date.now()
    sockets[0].terminate() // no close frame, no CLOSE for the stream: the TCP connection just ends
    await aClosed
    console.log(`  relay: peer 'close' ${Date.now() - started} ms after the other socket died`)
    assert.is(a.state, 'closed')

    // b's client reconnects and presents its tokens again; a new 'a' side pairs with it.
    const a2 = open('room', 1).relay({ local: 'a', remote: 'b' })
    await Promise.all([readyAll(a2), next(b, 'open', 5000)])
    await exchange(a2, b, 'after the socket died')
  })
})


test.run()

// test/relay-flow.test.ts — relay flow control is per stream (issue 10): a paired peer that never
// reads stops only its stream (the sender's echo, kv and presence keep flowing) and the stream
// closes with relay-stalled; a client that ignores the window is closed with relay-overflow;
// pre-pair buffers are bounded per connection and server-wide (quota-exceeded); frames in flight
// when the server ended a stream are not bad frames; every byte arrives through pause and resume
// (one server, and two servers on Redis); the relay budget returns to 0.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createHash, randomBytes } from 'node:crypto'
import { SignalChannel, SignalyardError as SignalyardErrorClass, type Channel, type RelayStream, type SignalyardError } from 'signalyard'
import { DEFAULTS, createServer, redisBroker, type Broker, type ServerOptions, type Yard } from 'signalyard/server'
import { FrameType } from '../src/protocol/frames.js'
import { HEADER_SIZE, Kind, writeFrame } from '../src/protocol/codec.js'
import { rawClient, socketOf, type RawClient } from './raw-client.js'
import { startRedis } from './redis.js'
import { TEST_BROKER, next, readyAll, sleep, startYard, until, within } from './helpers.js'

/** Bytes the server holds in relay buffers now (the relay budget, from /metrics). */
async function relayBudget (yard: Yard): Promise<number> {
  const m = /signalyard_budget_used\{budget="relay"\} (\d+)/.exec(await yard.metrics())
  if (m === null) throw new Error('/metrics shows no relay budget')
  return Number(m[1])
}

/** A yard, raw clients and channels that are all closed after `body`; the relay budget must be back to 0. */
async function withYard (body: (yard: Yard, raws: RawClient[], open: (ns: string, client: string) => Channel) => Promise<void>, options: ServerOptions = {}): Promise<void> {
  const yard = await startYard(options)
  const raws: RawClient[] = []
  const channels: Channel[] = []
  const open = (ns: string, client: string): Channel => {
    const channel = SignalChannel(ns, { url: `${yard.url}?c=${client}` })
    channels.push(channel)
    return channel
  }
  try {
    await body(yard, raws, open)
    for (const c of raws) c.ws.terminate()
    for (const channel of channels) channel.close()
    await until(async () => (await relayBudget(yard)) === 0, 3000, 'relay budget back to 0 once every client left')
  } finally {
    for (const c of raws) c.ws.terminate()
    for (const channel of channels) channel.close()
    await yard.close()
  }
}

const relayOpen = (ns: string, local: string, remote: string): object => ({ ep: 'relay', ns, local, remote })
const dataFrame = (sid: number, bytes: Uint8Array): Uint8Array => writeFrame(FrameType.Data, sid, null, { kind: Kind.Binary, bytes })
const isClosed = (sid: number) => (f: { type: number, id: number }): boolean => f.type === FrameType.Closed && f.id === sid

/** Send 64 KiB chunks as fast as the stream takes them until it takes nothing more ('drain' does not come within 500 ms). */
async function fillUntilStuck (relay: RelayStream): Promise<number> {
  const chunk = new Uint8Array(64 * 1024)
  let sent = 0
  for (;;) {
    if (sent > 64 * 1024 * 1024) throw new Error('the stream never got stuck')
    sent += chunk.length
    if (relay.send(chunk)) continue
    try {
      await within(next(relay, 'drain', 500), 500, 'drain')
    } catch {
      return sent
    }
  }
}

/** Time one round trip of `run`, failing past `ms`. */
async function timed (what: string, ms: number, run: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now()
  await within(run(), ms, what)
  return performance.now() - t0
}

test('a paired peer that never reads stops only that relay stream: the sender\'s echo, kv and presence round-trip meanwhile, and the stream closes with relay-stalled on both sides', () => withYard(async (yard, raws, open) => {
  const peer = await rawClient(yard, raws)
  peer.send(FrameType.Open, 1, relayOpen('room', 'p', 'v'))
  const channel = open('room', 'victim')
  const relay = channel.relay({ local: 'v', remote: 'p' })
  const echo = channel.echo()
  const kv = channel.kv()
  await readyAll(relay, echo, kv)
  await peer.take((f) => f.type === FrameType.Opened && f.id === 1, 2000, 'OPENED (peer)')
  socketOf(peer.ws).pause() // the peer never reads again

  const closed = next(relay, 'close', 8000)
  closed.catch(() => {})
  await fillUntilStuck(relay)
  const started = performance.now()
  // 8 MiB more, whatever send() says: they wait on the client (a client that ignored the window
  // would now have its stream closed; one on a server that pauses sockets would be frozen).
  const chunk = new Uint8Array(64 * 1024)
  for (let i = 0; i < 128; i++) relay.send(chunk)

  const times: Record<string, number> = {}
  for (let round = 0; round < 3; round++) {
    times.echo = await timed('echo round trip', 1000, async () => {
      const got = next(echo, 'data', 1000)
      echo.send(`ping ${round}`)
      await got
    })
    times.kv = await timed('kv.set', 1000, async () => await kv.set(`k${round}`, round))
    const peers = channel.createPeers()
    times.presence = await timed('presence join', 1000, async () => await peers.join({ id: `victim-${round}` }))
    peers.leave()
    await sleep(200)
  }
  assert.is(channel.state, 'open')
  assert.is(relay.state, 'open', 'the stuck stream is still open before stallTimeout')
  assert.ok(relay.bufferedAmount >= 1024 * 1024, 'the stuck stream\'s bytes wait on the client')
  assert.ok(await relayBudget(yard) > 0, 'the stuck bytes are counted in the relay budget')

  const [error] = await closed
  const ms = performance.now() - started
  assert.is((error as SignalyardError | undefined)?.code, 'relay-stalled')
  // The clock started at the last byte passed on, up to 500 ms before the stream was found stuck.
  assert.ok(ms >= 2000 && ms < 4500, `closed after about stallTimeout (${ms.toFixed(0)} ms after it was found stuck)`)
  assert.is(relay.bufferedAmount, 0, 'what waited on the stream is dropped with it')
  socketOf(peer.ws).resume()
  const peerClosed = await peer.take(isClosed(1), 5000, 'CLOSED (peer)')
  assert.is(peerClosed.meta?.code, 'relay-stalled', 'the peer gets the code too')
  assert.match(await yard.metrics(), /^signalyard_refusals_total\{code="relay-stalled"\} 1$/m, '/metrics counts the stall once')
  // The socket was never held: echo still works after the stall too.
  const got = next(echo, 'data', 1000)
  echo.send('after')
  assert.is((await got)[0], 'after')
  console.log(`  relay-flow: while stuck, echo ${times.echo.toFixed(1)} ms, kv ${times.kv.toFixed(1)} ms, presence ${times.presence.toFixed(1)} ms; relay-stalled after ${ms.toFixed(0)} ms`)
}, { limits: { relay: { stallTimeout: 3000 } } }))

test('a client that ignores the window gets its stream closed with relay-overflow; its echo stream keeps working', () => withYard(async (yard, raws) => {
  const sender = await rawClient(yard, raws)
  const receiver = await rawClient(yard, raws)
  sender.send(FrameType.Open, 1, relayOpen('room', 's', 'r'))
  await receiver.open(1, relayOpen('room', 'r', 's'))
  const opened = await sender.take((f) => f.type === FrameType.Opened && f.id === 1, 2000, 'OPENED (sender)')
  assert.is(opened.meta?.window, DEFAULTS.relay.window, 'OPENED announces the window')
  assert.is((await sender.open(2, { ep: 'echo', ns: 'room' })).type, FrameType.Opened)
  socketOf(receiver.ws).pause()
  const chunk = new Uint8Array(256 * 1024)
  for (let i = 0; i < 64; i++) sender.sendRaw(dataFrame(1, chunk)) // 16 MiB, never looking at ACKs
  const closed = await sender.take(isClosed(1), 5000, 'CLOSED relay-overflow')
  assert.is(closed.meta?.code, 'relay-overflow')
  sender.send(FrameType.Data, 2, null, 'still here')
  const echoed = await sender.take((f) => f.type === FrameType.Event && f.meta?.ep === 'echo', 2000, 'echo EVENT')
  assert.is(new TextDecoder().decode(echoed.payload), 'still here')
  assert.not.ok(sender.frames.some((f) => f.type === FrameType.Error), 'the late DATA frames were not answered as errors')
  socketOf(receiver.ws).resume()
  assert.is((await receiver.take(isClosed(1), 5000, 'CLOSED (receiver)')).meta?.code, 'relay-overflow')
  assert.is(receiver.ws.readyState, 1, 'the receiver was not cut off as a slow consumer')
  assert.match(await yard.metrics(), /^signalyard_refusals_total\{code="relay-overflow"\} 1$/m, '/metrics counts the refusal')
}))

test('pre-pair buffers are bounded per connection (relay.maxBufferedPerConnection) and server-wide (total.relay): quota-exceeded, and the bytes come back', () => withYard(async (yard, raws) => {
  const payload = new Uint8Array(60_000)
  const frameBytes = dataFrame(1, payload).length
  const a = await rawClient(yard, raws)
  // Per connection: 128 KiB holds two streams' 60 kB; the third is refused.
  for (let sid = 1; sid <= 3; sid++) {
    a.send(FrameType.Open, sid, relayOpen('room', `a${sid}`, 'nobody'))
    a.sendRaw(dataFrame(sid, payload))
  }
  assert.is((await a.take(isClosed(3), 2000, 'CLOSED for the third stream')).meta?.code, 'quota-exceeded')
  assert.is(await relayBudget(yard), 2 * frameBytes, 'two streams\' bytes held')
  // Server-wide: 200 kB in all; another connection gets one stream's worth, then quota-exceeded.
  const b = await rawClient(yard, raws)
  for (let sid = 1; sid <= 2; sid++) {
    b.send(FrameType.Open, sid, relayOpen('room', `b${sid}`, 'nobody'))
    b.sendRaw(dataFrame(sid, payload))
  }
  assert.is((await b.take(isClosed(2), 2000, 'CLOSED for b\'s second stream')).meta?.code, 'quota-exceeded')
  assert.is(await relayBudget(yard), 3 * frameBytes)
  assert.ok(!b.frames.some(isClosed(1)), 'b\'s first stream is still pending')
  // A pending stream's bytes are delivered when it pairs, and given back.
  const c = await rawClient(yard, raws)
  await c.open(1, relayOpen('room', 'nobody', 'b1'))
  const got = await c.take((f) => f.type === FrameType.Data && f.id === 1, 2000, 'b1\'s held DATA')
  assert.is(got.payload.length, payload.length)
  await until(async () => (await relayBudget(yard)) === 2 * frameBytes, 2000, 'b1\'s bytes given back once passed on')
  a.ws.close()
  await until(async () => (await relayBudget(yard)) === 0, 2000, 'a\'s bytes given back when it left')
}, { limits: { relay: { prePairBuffer: 64 * 1024, maxBufferedPerConnection: 128 * 1024 }, total: { relay: 200_000 } } }))

test('frames in flight when the peer closes are not bad frames: 50 pairs closed mid-stream never get the sender cut off; DATA for a stream never opened still counts', () => withYard(async (yard, raws) => {
  const sender = await rawClient(yard, raws)
  const peer = await rawClient(yard, raws)
  for (let i = 1; i <= 50; i++) {
    sender.send(FrameType.Open, i, relayOpen('room', `s${i}`, `p${i}`))
    await peer.open(i, relayOpen('room', `p${i}`, `s${i}`))
    await sender.take((f) => f.type === FrameType.Opened && f.id === i, 2000, `OPENED ${i}`)
    sender.sendRaw(dataFrame(i, new Uint8Array(100)))
    await peer.take((f) => f.type === FrameType.Data && f.id === i, 2000, `DATA ${i}`)
    peer.send(FrameType.Close, i, null)
    await sender.take(isClosed(i), 2000, `CLOSED ${i}`)
    // What the sender wrote before it read the CLOSED: it arrives after the server ended the stream.
    for (let k = 0; k < 5; k++) sender.sendRaw(dataFrame(i, new Uint8Array(100)))
  }
  sender.send(FrameType.Ping, 0, null)
  await sender.take((f) => f.type === FrameType.Pong, 2000, 'PONG')
  assert.is(sender.ws.readyState, 1, 'the sender is still connected')
  assert.equal(sender.frames.filter((f) => f.type === FrameType.Error).map((f) => f.meta?.code), [], 'no ERROR for late frames')
  sender.sendRaw(dataFrame(5000, new Uint8Array(1)))
  const err = await sender.take((f) => f.type === FrameType.Error, 2000, 'ERROR for a stream never opened')
  assert.is(err.meta?.code, 'unknown-stream')
}, { limits: { maxBadFrames: 20 } }))

test('reference clients: 50 times a peer closes while the sender streams; the sender\'s socket is never cut off (no 1008), each stream just closes', () => withYard(async (yard, raws, open) => {
  const sender = open('room', 'sender')
  const states: string[] = []
  sender.on('state', (state: string) => states.push(state))
  const errors: string[] = []
  sender.on('error', (err: SignalyardError) => errors.push(err.code))
  const receiverChannel = open('room', 'receiver')
  const chunk = new Uint8Array(16 * 1024)
  for (let i = 0; i < 50; i++) {
    const a = sender.relay({ local: `s${i}`, remote: `r${i}` })
    const b = receiverChannel.relay({ local: `r${i}`, remote: `s${i}` })
    await readyAll(a, b)
    const closed = next(a, 'close', 2000)
    // The sender streams all the time (a few chunks a millisecond, never more than 256 KiB waiting).
    const pump = setInterval(() => {
      for (let k = 0; k < 4 && a.state === 'open' && a.bufferedAmount < 256 * 1024; k++) a.send(chunk)
    }, 1)
    try {
      await next(b, 'data', 2000)
      b.close() // the sender has DATA in flight right now, and sends more until CLOSED reaches it
      const [error] = await closed
      assert.is(error, undefined, 'a plain close, not an error')
    } finally {
      clearInterval(pump)
    }
  }
  const got = next(sender.echo(), 'open', 2000)
  await got
  assert.not.ok(states.includes('reconnecting'), `the sender's socket stayed open (states: ${states.join(', ')})`)
  assert.equal(errors, [], 'no error reached the sender\'s channel')
}, { limits: { maxBadFrames: 10 } }))

/** Send `total` bytes through `from` (honouring 'drain'), read by a raw client on `toYard` that pauses its socket now and then; both SHA-256. */
async function transfer (fromYard: Yard, toYard: Yard, total: number): Promise<{ sent: string, received: string, drains: number, echoMs: number }> {
  const raws: RawClient[] = []
  const channel = SignalChannel('pipe', { url: `${fromYard.url}?c=sender` })
  try {
    const receiver = await rawClient(toYard, raws)
    receiver.send(FrameType.Open, 1, relayOpen('pipe', 'r', 's'))
    const relay = channel.relay({ local: 's', remote: 'r' })
    const echo = channel.echo()
    await readyAll(relay, echo)
    await receiver.take((f) => f.type === FrameType.Opened && f.id === 1, 2000, 'OPENED (receiver)')
    const inbound = createHash('sha256')
    let received = 0
    const done = new Promise<void>((resolve) => {
      receiver.ws.on('message', (data: Buffer) => {
        if (data[0] !== FrameType.Data) return
        inbound.update(data.subarray(HEADER_SIZE)) // relay DATA carries no meta
        received += data.length - HEADER_SIZE
        if (received >= total) resolve()
      })
    })
    // The slow reader: reads for 20 ms, then not for 60 ms.
    let reading = true
    const slow = setInterval(() => {
      reading = !reading
      if (reading) socketOf(receiver.ws).resume()
      else socketOf(receiver.ws).pause()
    }, 40)
    const outbound = createHash('sha256')
    let drains = 0
    let echoMs = 0
    try {
      for (let sent = 0; sent < total;) {
        const chunk = randomBytes(Math.min(200 * 1024, total - sent))
        outbound.update(chunk)
        sent += chunk.length
        if (!relay.send(chunk)) {
          await within(next(relay, 'drain', 10_000), 10_000, 'drain')
          drains++
          if (drains % 20 === 1) {
            // The sender's socket is never held: its echo answers while the relay waits.
            echoMs = Math.max(echoMs, await timed('echo during the transfer', 1000, async () => {
              const got = next(echo, 'data', 1000)
              echo.send('x')
              await got
            }))
          }
        }
      }
      await within(done, 30_000, `all ${total} bytes received (${received} so far)`)
    } finally {
      clearInterval(slow)
      socketOf(receiver.ws).resume()
    }
    return { sent: outbound.digest('hex'), received: inbound.digest('hex'), drains, echoMs }
  } finally {
    channel.close()
    for (const c of raws) c.ws.terminate()
  }
}

test('pause and resume keep every byte: 32 MiB to a slow reader, SHA-256 equal, the sender waits on \'drain\' and its echo keeps answering', () => withYard(async (yard) => {
  const total = 32 * 1024 * 1024
  const r = await transfer(yard, yard, total)
  assert.is(r.received, r.sent, 'the same bytes, in order')
  assert.ok(r.drains > 0, 'the sender waited for \'drain\'')
  console.log(`  relay-flow: 32 MiB to a slow reader on one server (${TEST_BROKER}): ${r.drains} drains, echo ≤ ${r.echoMs.toFixed(1)} ms meanwhile`)
}))

test('across two servers on Redis: 32 MiB to a slow reader on the other server, every byte, relay budgets back to 0 on both', async () => {
  if (TEST_BROKER !== 'redis') return
  const redis = await startRedis()
  const brokers: Broker[] = [redisBroker({ url: redis.url, prefix: 'flow:' }), redisBroker({ url: redis.url, prefix: 'flow:' })]
  const yards: Yard[] = []
  try {
    for (const broker of brokers) yards.push(await createServer({ port: 0, host: '127.0.0.1', broker }))
    const r = await transfer(yards[0], yards[1], 32 * 1024 * 1024)
    assert.is(r.received, r.sent, 'the same bytes, in order')
    assert.ok(r.drains > 0, 'the sender waited for \'drain\'')
    for (const yard of yards) await until(async () => (await relayBudget(yard)) === 0, 3000, 'relay budget back to 0')
    console.log(`  relay-flow: 32 MiB across two servers on Redis: ${r.drains} drains, echo ≤ ${r.echoMs.toFixed(1)} ms meanwhile`)
  } finally {
    for (const yard of yards) await yard.close()
    for (const broker of brokers) await broker.close()
    await redis.stop()
  }
})

/** A raw sender that honours the window of its OPENED: `send` waits while `window` bytes are unacknowledged. */
function windowed (client: RawClient, sid: number, window: number): { send: (bytes: Uint8Array) => Promise<void>, sent: () => number } {
  let unacked = 0
  let sent = 0
  let acked: (() => void) | null = null
  client.ws.on('message', (data: Buffer) => {
    if (data[0] !== FrameType.Ack || data.readUInt32BE(1) !== sid) return
    unacked -= Number(JSON.parse(data.subarray(HEADER_SIZE, HEADER_SIZE + data.readUInt32BE(6)).toString()).bytes)
    acked?.()
  })
  return {
    async send (bytes) {
      while (unacked >= window) await within(new Promise<void>((resolve) => { acked = resolve }), 10_000, 'an ACK')
      const frame = dataFrame(sid, bytes)
      unacked += frame.length
      sent += bytes.length
      client.sendRaw(frame)
    },
    sent: () => sent
  }
}

test('a receiver that reads slowly slows a sender that honours the window instead of being cut off as a slow consumer', () => withYard(async (yard, raws) => {
  const sender = await rawClient(yard, raws)
  const receiver = await rawClient(yard, raws)
  sender.send(FrameType.Open, 1, relayOpen('room', 's', 'r'))
  await receiver.open(1, relayOpen('room', 'r', 's'))
  const opened = await sender.take((f) => f.type === FrameType.Opened, 2000, 'OPENED (sender)')
  const window = Number(opened.meta?.window)
  assert.ok(window > 0, 'OPENED announces a window')
  let received = 0
  receiver.ws.on('message', (data: Buffer) => { if (data[0] === FrameType.Data) received += data.length - HEADER_SIZE })
  socketOf(receiver.ws).pause()
  const out = windowed(sender, 1, window)
  const total = 12 * 1024 * 1024 // six times the receiver's outbound bound
  const chunk = new Uint8Array(256 * 1024)
  const sending = (async () => { for (let i = 0; i < total / chunk.length; i++) await out.send(chunk) })()
  sending.catch(() => {})
  await sleep(500)
  assert.ok(out.sent() < total / 2, `the sender waits for ACKs (${out.sent()} bytes sent)`)
  assert.is(receiver.ws.readyState, 1, 'the receiver was not cut off')
  socketOf(receiver.ws).resume()
  await within(sending, 10_000, 'the sender got every ACK it needed')
  await until(() => received === total, 10_000, 'every byte delivered')
  assert.is(receiver.ws.readyState, 1)
  assert.not.ok(receiver.frames.some((f) => f.type === FrameType.Closed), 'the stream is still open')
}, { limits: { maxOutbound: 2 * 1024 * 1024 } }))

test('across two servers on Redis: a peer on the other server that never reads gets the pair closed with relay-stalled on both sides', async () => {
  if (TEST_BROKER !== 'redis') return
  const redis = await startRedis()
  const brokers: Broker[] = [redisBroker({ url: redis.url, prefix: 'stall:' }), redisBroker({ url: redis.url, prefix: 'stall:' })]
  const yards: Yard[] = []
  const raws: RawClient[] = []
  let channel: Channel | null = null
  try {
    for (const broker of brokers) yards.push(await createServer({ port: 0, host: '127.0.0.1', broker, limits: { relay: { stallTimeout: 1000 } } }))
    const peer = await rawClient(yards[1], raws)
    peer.send(FrameType.Open, 1, relayOpen('room', 'p', 'v'))
    channel = SignalChannel('room', { url: yards[0].url })
    const relay = channel.relay({ local: 'v', remote: 'p' })
    await readyAll(relay)
    await peer.take((f) => f.type === FrameType.Opened && f.id === 1, 2000, 'OPENED (peer)')
    socketOf(peer.ws).pause()
    const closed = next(relay, 'close', 8000)
    closed.catch(() => {})
    await fillUntilStuck(relay)
    assert.is(((await closed)[0] as SignalyardError | undefined)?.code, 'relay-stalled')
    socketOf(peer.ws).resume()
    assert.is((await peer.take(isClosed(1), 5000, 'CLOSED (peer, other server)')).meta?.code, 'relay-stalled', 'the code crossed servers')
    for (const c of raws) c.ws.terminate()
    for (const yard of yards) await until(async () => (await relayBudget(yard)) === 0, 3000, 'relay budget back to 0')
  } finally {
    channel?.close()
    for (const c of raws) c.ws.terminate()
    for (const yard of yards) await yard.close()
    for (const broker of brokers) await broker.close()
    await redis.stop()
  }
})

test('close() after send delivers everything first: what waited for the window and what the server queued for a slow reader reach it, then the close', () => withYard(async (yard, raws, open) => {
  // One reader with two relay streams (two senders), so its socket's queue fills past what one
  // stream's window allows and the server holds frames per stream for it.
  const receiver = await rawClient(yard, raws)
  receiver.send(FrameType.Open, 1, relayOpen('room', 'r1', 's1'))
  receiver.send(FrameType.Open, 3, relayOpen('room', 'r2', 's2'))
  const relays: RelayStream[] = [open('room', 'sender-1').relay({ local: 's1', remote: 'r1' }), open('room', 'sender-2').relay({ local: 's2', remote: 'r2' })]
  await readyAll(...relays)
  socketOf(receiver.ws).pause()
  // Numbered 64 KiB chunks on both until neither takes more ('drain' not within 500 ms).
  const CHUNK = 64 * 1024
  const sent = [0, 0]
  await Promise.all(relays.map(async (relay, r) => {
    for (;;) {
      if (sent[r] > 1024) throw new Error('the stream never got stuck')
      const chunk = new Uint8Array(CHUNK)
      new DataView(chunk.buffer).setUint32(0, sent[r]++)
      if (relay.send(chunk)) continue
      try {
        await within(next(relay, 'drain', 500), 500, 'drain')
      } catch {
        return
      }
    }
  }))
  const [relay] = relays
  assert.ok(relay.bufferedAmount >= CHUNK, 'the sender still holds a chunk of its own')
  assert.ok(await relayBudget(yard) > 0, 'the server holds bytes for the paused reader')
  relay.close()
  assert.throws(() => relay.send(new Uint8Array(1)), (err: SignalyardError) => err.code === 'stream-closed', 'no send after close()')
  socketOf(receiver.ws).resume()
  const closed = await receiver.take(isClosed(1), 10_000, 'CLOSED after the data')
  assert.is(closed.meta?.code, undefined, 'a plain close, no error')
  const numbers = receiver.frames.filter((f) => f.type === FrameType.Data && f.id === 1).map((f) => new DataView(f.payload.buffer, f.payload.byteOffset).getUint32(0))
  assert.is(numbers.length, sent[0], `every chunk sent before close() arrived (${numbers.length} of ${sent[0]})`)
  assert.ok(numbers.every((n, i) => n === i), 'in order')
}))

test('a sender that closes right after its last frame: the server writes what it holds for the slow reader, then the close', () => withYard(async (yard, raws, open) => {
  // The reader's socket is clogged by a second stream, so the server holds the first stream's
  // frames for it; the raw sender sends a window's worth and CLOSE at once, without waiting.
  const receiver = await rawClient(yard, raws)
  receiver.send(FrameType.Open, 1, relayOpen('room', 'r1', 's1'))
  receiver.send(FrameType.Open, 3, relayOpen('room', 'r2', 's2'))
  const sender = await rawClient(yard, raws)
  const opened = await sender.open(1, relayOpen('room', 's1', 'r1'))
  const window = Number(opened.meta?.window)
  assert.ok(window > 0, 'OPENED announces a window')
  const flood = open('room', 'sender-2').relay({ local: 's2', remote: 'r2' })
  await readyAll(flood)
  await receiver.take((f) => f.type === FrameType.Opened && f.id === 1, 2000, 'the reader\'s stream 1 open')
  socketOf(receiver.ws).pause()
  await fillUntilStuck(flood)
  const CHUNK = 32 * 1024
  const count = Math.floor(window / (CHUNK + 64))
  for (let i = 0; i < count; i++) {
    const chunk = new Uint8Array(CHUNK)
    new DataView(chunk.buffer).setUint32(0, i)
    sender.sendRaw(dataFrame(1, chunk))
  }
  sender.send(FrameType.Close, 1, null)
  await sleep(200)
  assert.ok(await relayBudget(yard) > 0, 'the server holds bytes for the paused reader')
  socketOf(receiver.ws).resume()
  const closed = await receiver.take(isClosed(1), 10_000, 'CLOSED after the data')
  assert.is(closed.meta?.code, undefined, 'a plain close, no error')
  const numbers = receiver.frames.filter((f) => f.type === FrameType.Data && f.id === 1).map((f) => new DataView(f.payload.buffer, f.payload.byteOffset).getUint32(0))
  assert.is(numbers.length, count, `every frame sent before CLOSE arrived (${numbers.length} of ${count})`)
  assert.ok(numbers.every((n, i) => n === i), 'in order')
}))

test('a stream closed on one side releases what the other side queued for its socket', () => withYard(async (yard, raws, open) => {
  const receiver = await rawClient(yard, raws)
  receiver.send(FrameType.Open, 1, relayOpen('room', 'r', 's'))
  const relay: RelayStream = open('room', 'sender').relay({ local: 's', remote: 'r' })
  await readyAll(relay)
  socketOf(receiver.ws).pause()
  await fillUntilStuck(relay)
  assert.ok(await relayBudget(yard) > 0, 'bytes queued for the paused receiver')
  const closed = next(relay, 'close', 2000)
  receiver.ws.terminate()
  await closed
  await until(async () => (await relayBudget(yard)) === 0, 2000, 'the queue given back')
}))


test('the rate limit never opens a gap in a relay stream: a reference client paces itself to HELLO\'s rate (6,000 tiny messages at 2,000 frames/s, all in order, none refused); a raw client past it gets the stream closed with rate-limited on both sides', () => withYard(async (yard, raws, open) => {
  const limits = ((await rawClient(yard, raws)).hello.meta as { limits?: Record<string, unknown> } | null)?.limits
  assert.is(limits?.messagesPerSecond, 2000, 'HELLO announces the rate')
  assert.is(limits?.messageBurst, 500)
  // the reference client: far more frames than the burst, as fast as it may
  const a = open('room', 'a').relay({ local: 'p', remote: 'q' })
  const b = open('room', 'b').relay({ local: 'q', remote: 'p' })
  const got: number[] = []
  b.on('data', (d) => { got.push(new DataView((d as Uint8Array).buffer, (d as Uint8Array).byteOffset).getUint32(0)) })
  const closes: unknown[] = []
  a.on('close', (e) => closes.push(e))
  await readyAll(a, b)
  const N = 6000
  for (let i = 0; i < N; i++) {
    const msg = new Uint8Array(4)
    new DataView(msg.buffer).setUint32(0, i)
    if (!a.send(msg)) await next(a, 'drain', 10_000)
  }
  await until(() => got.length === N, 10_000, `${N} messages (got ${got.length})`)
  assert.equal(got, Array.from({ length: N }, (_, i) => i), 'every message, in order')
  assert.equal(closes, [])
  assert.not.match(await yard.metrics(), /signalyard_refusals_total\{code="rate-limited"\}/, 'the server refused nothing')
  // a raw client that ignores the rate: its stream ends, it is not left with a hole
  const sender = await rawClient(yard, raws)
  const receiver = await rawClient(yard, raws)
  sender.send(FrameType.Open, 1, relayOpen('room', 's', 'r'))
  await receiver.open(1, relayOpen('room', 'r', 's'))
  await sender.take((f) => f.type === FrameType.Opened && f.id === 1, 2000, 'OPENED (sender)')
  for (let i = 0; i < 1500; i++) sender.sendRaw(dataFrame(1, new Uint8Array([i & 255])))
  assert.is((await sender.take(isClosed(1), 3000, 'CLOSED (sender)')).meta?.code, 'rate-limited')
  assert.is((await receiver.take(isClosed(1), 3000, 'CLOSED (receiver)')).meta?.code, 'rate-limited')
  const delivered = receiver.frames.filter((f) => f.type === FrameType.Data && f.id === 1).map((f) => f.payload[0])
  assert.ok(delivered.length >= 400 && delivered.length < 1500, `${delivered.length} delivered before the close`)
  assert.equal(delivered, Array.from({ length: delivered.length }, (_, i) => i & 255), 'what arrived is the prefix, in order')
}, { limits: { messagesPerSecond: 2000, messageBurst: 500 } }))

test('paced frames wait per stream and take turns: a relay stream\'s backlog does not hold up an echo message on the same socket, and its close() does not overtake its data', () => withYard(async (_yard, _raws, open) => {
  const sender = open('room', 'a')
  const a = sender.relay({ local: 'p2', remote: 'q2' })
  const b = open('room', 'b').relay({ local: 'q2', remote: 'p2' })
  const echo = sender.echo()
  const listener = open('room', 'c').echo()
  await readyAll(a, b, echo, listener)
  let got = 0
  let closedAfter = -1
  b.on('data', () => { got++ })
  b.on('close', () => { closedAfter = got })
  // 3,000 frames at 1,600/s (80 % of the limit) are about 1.5 s of backlog past the burst
  const N = 3000
  for (let i = 0; i < N; i++) a.send(new Uint8Array([i & 255]))
  a.close()
  const heard = next(listener, 'data', 3000)
  const t0 = performance.now()
  echo.send('not stuck behind the relay')
  assert.equal((await heard)[0], 'not stuck behind the relay')
  const waited = performance.now() - t0
  assert.ok(waited < 500, `the echo message came through in ${Math.round(waited)} ms while the relay backlog drained`)
  await until(() => closedAfter >= 0, 10_000, 'the relay stream closed on the other side')
  assert.is(closedAfter, N, 'every frame arrived before the close')
}, { limits: { messagesPerSecond: 2000, messageBurst: 500 } }))

test('what waits for the rate limit is bounded: an app that publishes far faster than the server takes gets queue-full at 32 MiB waiting, and the socket keeps working', () => withYard(async (_yard, _raws, open) => {
  const channel = open('room', 'flood')
  const echo = channel.echo()
  const listener = open('room', 'ear').echo()
  await readyAll(echo, listener)
  const chunk = new Uint8Array(512 * 1024)
  let thrown: unknown = null
  let sent = 0
  try {
    for (; sent < 200; sent++) echo.send(chunk) // 100 MiB at 8 frames/s
  } catch (err) {
    thrown = err
  }
  assert.ok(thrown instanceof SignalyardErrorClass && thrown.code === 'queue-full', `queue-full (${String(thrown)})`)
  // half the burst (5) goes at once, then about 62 wait: 32 MiB of 512 KiB frames
  assert.ok(sent >= 64 && sent <= 70, `${sent} messages of 512 KiB were taken before the bound (32 MiB)`)
  const heard = next(listener, 'data', 3000)
  channel.close() // what waits is dropped with the socket
  const small = open('room', 'other').echo()
  await small.ready()
  small.send('still served')
  let got = await heard
  while (got[0] instanceof Uint8Array) got = await next(listener, 'data', 3000)
  assert.equal(got[0], 'still served')
}, { limits: { messagesPerSecond: 10, messageBurst: 10 } }))

test.run()

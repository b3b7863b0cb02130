// test/socket.test.ts — the client's shared WebSocket against a real server (SPEC §3): one socket
// per URL for every channel and stream, writes before the socket opens, closing with the last
// channel, the 'state' events, reconnecting after a server restart on the same port (echo and
// relay resume by themselves), the frame limit from HELLO, the bounded offline queue, one socket
// per URL *and* token (a refused token never rides an accepted socket), and a heartbeat that a
// wall-clock step cannot fool.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import WebSocket, { WebSocketServer } from 'ws'
import { SignalChannel, SignalyardError, type Channel, type ChannelOptions, type SocketState, type StateChange, type WebSocketConstructor } from 'signalyard'
import { createServer, type ServerOptions, type Yard } from 'signalyard/server'
import { collect, freePort, later, next, readyAll, sleep, startYard, until, within } from './helpers.js'
import { writeFrame } from '../src/protocol/codec.js'
import { FrameType } from '../src/protocol/frames.js'

const FAST = { minDelay: 50, maxDelay: 200 }

/** A WebSocket (ws) that remembers its instances and the close code each one saw. */
function trackedWebSocket (): { ctor: WebSocketConstructor, sockets: WebSocket[], closeCodes: number[] } {
  const sockets: WebSocket[] = []
  const closeCodes: number[] = []
  class Tracked extends WebSocket {
    constructor (url: string, protocols?: string | string[]) {
      super(url, protocols)
      sockets.push(this)
      this.on('close', (code) => closeCodes.push(code))
    }
  }
  return { ctor: Tracked as unknown as WebSocketConstructor, sockets, closeCodes }
}

/** Yards and channels that are closed after the test, whatever happens. */
function resources (): { yards: Yard[], channel: (ns: string, options: ChannelOptions) => Channel, close: () => Promise<void> } {
  const yards: Yard[] = []
  const channels: Channel[] = []
  return {
    yards,
    channel: (ns, options) => {
      const channel = SignalChannel(ns, options)
      channels.push(channel)
      return channel
    },
    close: async () => {
      for (const channel of channels) channel.close()
      await Promise.all(yards.map((yard) => yard.close()))
    }
  }
}

async function expectCode (fn: () => unknown, code: string): Promise<void> {
  try {
    fn()
  } catch (err) {
    assert.instance(err, SignalyardError)
    assert.is((err as SignalyardError).code, code)
    return
  }
  assert.unreachable(`expected a SignalyardError ${code}`)
}

test('every channel and stream to one URL shares one WebSocket (3 channels × echo + kv + relay)', async () => {
  const r = resources()
  try {
    const yard = await startYard()
    r.yards.push(yard)
    const { ctor, sockets } = trackedWebSocket()
    const channels = [0, 1, 2].map(() => r.channel('room', { url: yard.url, WebSocket: ctor }))
    const echoes = channels.map((c) => c.echo())
    const kvs = channels.map((c) => c.kv())
    const relays = [
      channels[0].relay({ local: 'p', remote: 'q' }),
      channels[1].relay({ local: 'q', remote: 'p' }),
      channels[2].relay({ local: 's', remote: 't' }) // stays pending
    ]
    await readyAll(...echoes, ...kvs, relays[0], relays[1])
    assert.is(yard.health().connections, 1, 'one connection on the server')
    assert.is(sockets.length, 1, 'one WebSocket constructed')

    // Everything works over the one socket.
    const got = collect(echoes[2], 'data', 1)
    echoes[0].send('over one socket')
    assert.is((await got)[0][0], 'over one socket')
    const relayed = next(relays[1], 'data')
    relays[0].send('relayed on the same socket')
    assert.is((await relayed)[0], 'relayed on the same socket')
    await kvs[0].set('k', 'v')
    await until(() => kvs[2].get('k') === 'v', 1000, 'kv replicated')
    assert.is(yard.health().connections, 1)
  } finally {
    await r.close()
  }
})

test('different URLs use different sockets', async () => {
  const r = resources()
  try {
    const one = await startYard()
    const two = await startYard()
    r.yards.push(one, two)
    const { ctor, sockets } = trackedWebSocket()
    const a = r.channel('room', { url: one.url, WebSocket: ctor }).echo()
    const b = r.channel('room', { url: two.url, WebSocket: ctor }).echo()
    const c = r.channel('room', { url: `${one.url}?client=2`, WebSocket: ctor }).echo() // same server, other URL
    await readyAll(a, b, c)
    assert.is(sockets.length, 3)
    assert.is(one.health().connections, 2)
    assert.is(two.health().connections, 1)
    const atC = next(c, 'data')
    a.send('hi')
    assert.is((await atC)[0], 'hi', 'two sockets to one server are in one namespace')
  } finally {
    await r.close()
  }
})

test('streams created and written before the socket opens deliver everything, in order', async () => {
  const r = resources()
  try {
    const yard = await startYard()
    r.yards.push(yard)
    const receiver = r.channel('room', { url: yard.url }).echo()
    await readyAll(receiver)

    const channel = r.channel('room', { url: `${yard.url}?c=2` })
    const sender = channel.echo()
    const N = 50
    const atReceiver = collect(receiver, 'data', N)
    const atSender = later(collect(sender, 'data', N))
    for (let i = 0; i < N; i++) sender.send({ i })
    assert.is(channel.state, 'connecting', 'all 50 were written before the socket opened')
    const expected = Array.from({ length: N }, (_, i) => ({ i }))
    const got = await atReceiver
    assert.equal(got.map(([d]) => d), expected, 'another client gets all 50 in order')
    for (const [, info] of got) assert.is(info.from, sender.id)
    assert.equal((await atSender).map(([d]) => d), expected, 'the sender (self) too')
  } finally {
    await r.close()
  }
})

test('the socket closes when the last channel using it closes', async () => {
  const r = resources()
  try {
    const yard = await startYard()
    r.yards.push(yard)
    const { ctor, sockets, closeCodes } = trackedWebSocket()
    const first = r.channel('room', { url: yard.url, WebSocket: ctor })
    const second = r.channel('other-room', { url: yard.url, WebSocket: ctor })
    const e1 = first.echo()
    const e2 = second.echo()
    await readyAll(e1, e2)
    assert.is(yard.health().connections, 1)

    const firstClosed = next(first, 'state', 1000)
    first.close()
    assert.equal((await firstClosed)[0], 'closed')
    await sleep(100)
    assert.is(yard.health().connections, 1, 'still used by the second channel')
    const echoed = next(e2, 'data')
    e2.send('still here')
    assert.is((await echoed)[0], 'still here')

    second.close()
    await until(() => yard.health().connections === 0, 1000, 'server-side connection gone')
    await until(() => closeCodes.length === 1, 1000, 'client socket closed')
    assert.equal(closeCodes, [1000])
    assert.is(second.state, 'closed')

    // A channel opened afterwards gets a fresh socket.
    const third = r.channel('room', { url: yard.url, WebSocket: ctor }).echo()
    await readyAll(third)
    assert.is(sockets.length, 2)
    assert.is(yard.health().connections, 1)
  } finally {
    await r.close()
  }
})

test('\'state\': connecting → open; a server restart on the same port gives reconnecting → open, and echo and relay resume by themselves', async () => {
  const r = resources()
  try {
    const first = await startYard()
    r.yards.push(first)
    const { port, url } = first
    const { ctor, sockets, closeCodes } = trackedWebSocket()
    const chA = r.channel('room', { url, WebSocket: ctor, reconnect: FAST })
    const chB = r.channel('room', { url: `${url}?c=2`, reconnect: FAST })
    const changes: StateChange[] = []
    chA.on('state', (_state: SocketState, change: StateChange) => { changes.push(change) })
    assert.is(chA.state, 'connecting')
    const echoA = chA.echo()
    const echoB = chB.echo()
    const relayA = chA.relay({ local: 'a', remote: 'b' })
    const relayB = chB.relay({ local: 'b', remote: 'a' })
    await readyAll(echoA, echoB, relayA, relayB)
    assert.equal(changes.map(({ from, to }) => [from, to]), [['connecting', 'open']])
    assert.is(chA.state, 'open')
    const oldId = echoA.id

    // Stop the server: clients get 1001 and start reconnecting.
    const reopened = later(Promise.all([next(relayA, 'open', 5000), next(relayB, 'open', 5000)]))
    await first.close()
    await until(() => chA.state === 'reconnecting', 1000, 'reconnecting')
    assert.equal(closeCodes, [1001], 'the server closed the socket with 1001')
    assert.is(echoA.state, 'opening')
    await sleep(300) // down for a while: attempts fail and are retried
    assert.is(chA.state, 'reconnecting')
    assert.ok(sockets.length >= 2, `retried while down (${sockets.length} sockets)`)
    // Written while down: queued, and delivered once the streams are back (the relay re-paired).
    const atRelayB = later(collect(relayB, 'data', 4, 5000))
    const ownEcho = later(next(echoA, 'data', 5000))
    for (let i = 0; i < 3; i++) relayA.send(`while down ${i}`)
    echoA.send('echo while down')

    // Start a new server on the same port; the clients find it by themselves.
    const started = Date.now()
    const second = await createServer({ port, host: '127.0.0.1' })
    r.yards.push(second)
    await until(() => chA.state === 'open', 2000, 'open again')
    console.log(`  socket: reopened ${Date.now() - started} ms after the new server started (${sockets.length} sockets, maxDelay 200)`)
    assert.equal(changes.slice(0, 3).map(({ from, to }) => [from, to]),
      [['connecting', 'open'], ['open', 'reconnecting'], ['reconnecting', 'open']])
    assert.equal(changes.map(({ to }) => to).filter((s) => s === 'reconnecting').length, 1, 'failed attempts do not repeat the event')

    await reopened
    assert.is.not(echoA.id, oldId, 'a new server-side stream')
    await until(() => echoB.state === 'open', 1000, 'echo B re-opened')
    const atB = next(echoB, 'data')
    echoA.send('after restart')
    const [data, info] = await atB
    assert.is(data, 'after restart')
    assert.is(info.from, echoA.id)
    assert.is((await ownEcho)[0], 'echo while down', 'the sender got its own queued echo back')
    relayA.send(new Uint8Array([1, 2, 3]))
    const relayed = (await atRelayB).map(([d]) => d)
    assert.equal(relayed.slice(0, 3), ['while down 0', 'while down 1', 'while down 2'], 'relay data written while down, in order')
    assert.equal([...relayed[3] as Uint8Array], [1, 2, 3], 'the relay pair re-paired')
    assert.is(second.health().connections, 2)

    const closed = next(chA, 'state', 1000)
    chA.close()
    const [state, change] = await closed
    assert.is(state, 'closed')
    assert.equal(change.from, 'open', 'the change says what the state was')
    assert.is(change.to, 'closed')
  } finally {
    await r.close()
  }
})

test('a channel closed before its socket opened leaves no connection behind', async () => {
  const r = resources()
  try {
    const yard = await startYard()
    r.yards.push(yard)
    const { ctor, closeCodes } = trackedWebSocket()
    const channel = r.channel('room', { url: yard.url, WebSocket: ctor })
    const echo = channel.echo()
    echo.send('never sent')
    const closed = next(echo, 'close', 1000)
    channel.close()
    await closed
    assert.is(channel.state, 'closed')
    await until(() => closeCodes.length === 1, 1000, 'the connecting socket was abandoned')
    await sleep(100)
    assert.is(yard.health().connections, 0)

    const again = r.channel('room', { url: yard.url }).echo() // the URL is usable again
    await readyAll(again)
    assert.is(yard.health().connections, 1)
  } finally {
    await r.close()
  }
})

test('a send over the server\'s frame limit throws payload-too-large; the socket stays usable', async () => {
  const r = resources()
  try {
    const yard = await startYard({ limits: { maxFrame: 1024 } } satisfies ServerOptions)
    r.yards.push(yard)
    const channel = r.channel('room', { url: yard.url })
    const echo = channel.echo()
    const relayA = channel.relay({ local: 'a', remote: 'b' })
    const relayB = channel.relay({ local: 'b', remote: 'a' })
    await readyAll(echo, relayA, relayB) // HELLO has told the client the limit
    await expectCode(() => echo.send(new Uint8Array(2048)), 'payload-too-large')
    await expectCode(() => echo.send('x'.repeat(1100)), 'payload-too-large')
    await expectCode(() => relayA.send(new Uint8Array(4096)), 'payload-too-large')

    const got = next(echo, 'data')
    echo.send(new Uint8Array(900))
    assert.is(((await got)[0] as Uint8Array).length, 900, 'a frame under the limit goes through')
    assert.is(channel.state, 'open')
    assert.is(yard.health().connections, 1)
  } finally {
    await r.close()
  }
})

test('the offline queue is bounded: past maxQueued, send throws queue-full; what was queued is delivered', async () => {
  const r = resources()
  try {
    const port = await freePort()
    const channel = r.channel('room', { url: `ws://127.0.0.1:${port}/`, maxQueued: 10, reconnect: FAST })
    const echo = channel.echo()
    for (let i = 0; i < 10; i++) echo.send(i)
    await expectCode(() => echo.send(10), 'queue-full')
    await sleep(150) // the socket fails to connect and retries; the queue stays bounded
    assert.is.not(channel.state, 'open')
    await expectCode(() => echo.send(10), 'queue-full')

    // The server comes up: the ten queued messages go out, in order.
    const got = later(collect(echo, 'data', 10, 3000))
    const yard = await createServer({ port, host: '127.0.0.1' })
    r.yards.push(yard)
    assert.equal((await got).map(([d]) => d), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    echo.send('after the flush') // open now: sent at once, not queued
  } finally {
    await r.close()
  }
})

test('the offline queue is bounded in bytes too (maxQueuedBytes)', async () => {
  const r = resources()
  try {
    const port = await freePort()
    const channel = r.channel('room', { url: `ws://127.0.0.1:${port}/`, maxQueuedBytes: 1000, reconnect: FAST })
    const echo = channel.echo()
    echo.send(new Uint8Array(600))
    await expectCode(() => echo.send(new Uint8Array(600)), 'queue-full')
    echo.send(new Uint8Array(100)) // still fits
  } finally {
    await r.close()
  }
})

test('one socket per URL and token: another token gets its own socket and identity; a refused token never rides an accepted socket', async () => {
  const opened: Array<[string, string]> = []
  const yard = await startYard({
    authenticate: (_req, token) => {
      if (token !== 'good' && token !== 'other') throw new Error('bad token')
      return { user: token }
    },
    authorize: (identity, namespace) => { opened.push([(identity as { user: string }).user, namespace]); return true }
  })
  const r = resources()
  try {
    const good = r.channel('first', { url: yard.url, token: 'good' })
    await within(good.echo().ready(), 2000, 'the good token opens')
    // Same URL, a token the server refuses: refused, on its own socket.
    const bad = r.channel('second', { url: yard.url, token: 'bad' })
    const err = await within(bad.echo().ready().then(() => null, (e: SignalyardError) => e), 3000, 'the bad token settles')
    assert.is(err?.code, 'unauthorized', 'the wrong token is refused, not let in as the first user')
    assert.is(bad.state, 'closed')
    assert.is(good.state, 'open', "the refusal does not touch the good token's socket")
    // Same URL, another accepted token: its own identity.
    const other = r.channel('third', { url: yard.url, token: 'other' })
    await within(other.echo().ready(), 2000, 'the other token opens')
    // The same token string shares the socket; a token function by identity.
    const fn = (): string => 'good'
    const viaFn1 = r.channel('fourth', { url: yard.url, token: fn })
    const viaFn2 = r.channel('fifth', { url: yard.url, token: fn })
    const viaOtherFn = r.channel('sixth', { url: yard.url, token: () => 'good' })
    await readyAll(r.channel('first', { url: yard.url, token: 'good' }).echo(), viaFn1.echo(), viaFn2.echo(), viaOtherFn.echo())
    const byName = (a: [string, string], b: [string, string]): number => a.join().localeCompare(b.join())
    assert.equal(opened.slice(0, 2), [['good', 'first'], ['other', 'third']], "'second' never reached authorize: it was refused at connect")
    assert.equal(opened.slice(2).sort(byName), [['good', 'fifth'], ['good', 'first'], ['good', 'fourth'], ['good', 'sixth']])
    assert.is(yard.health().connections, 4, "'good', 'other', the function shared by two channels, the other function")
  } finally {
    await r.close()
    await yard.close()
  }
})

test('a wall clock stepped back an hour does not hide a dead server: the heartbeat runs on a monotonic clock', async () => {
  // A server that says HELLO and then nothing at all (no PONG): dead to the client's heartbeat.
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()))
  wss.on('connection', (ws) => ws.send(writeFrame(FrameType.Hello, 0, { v: 1, conn: 'silent', limits: { maxFrame: 1024 * 1024, maxValue: 65536 }, iceServers: [] })))
  const { port } = wss.address() as { port: number }
  const realNow = Date.now
  const r = resources()
  try {
    const channel = r.channel('clock', { url: `ws://127.0.0.1:${port}/`, heartbeat: { interval: 100, timeout: 100 }, reconnect: { minDelay: 60_000, maxDelay: 60_000 } })
    await until(() => channel.state === 'open', 2000, 'open')
    const stepped = realNow() - 3600_000
    const base = realNow()
    Date.now = () => stepped + (realNow() - base) // NTP steps the clock back one hour
    const t0 = performance.now()
    await until(() => channel.state === 'reconnecting', 2000, 'the dead server found')
    const ms = performance.now() - t0
    assert.ok(ms < 100 + 100 + 300, `found dead ${Math.round(ms)} ms after the step`)
  } finally {
    Date.now = realNow
    await r.close()
    for (const ws of wss.clients) ws.terminate()
    await new Promise<void>((resolve) => wss.close(() => resolve()))
  }
})

test('a server announcing a near-zero frame rate: frames wait, without a timer that overflows and spins', async () => {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()))
  const limits = { maxFrame: 1024 * 1024, maxValue: 65536, messagesPerSecond: 1e-9, messageBurst: 2 }
  const types: number[] = []
  wss.on('connection', (ws) => {
    ws.on('message', (data: Buffer) => { types.push(data[0]) })
    ws.send(writeFrame(FrameType.Hello, 0, { v: 1, conn: 'slow', limits, iceServers: [] }))
  })
  const { port } = wss.address() as { port: number }
  const warnings: string[] = []
  const onWarning = (w: Error): void => { warnings.push(w.name) }
  process.on('warning', onWarning)
  const r = resources()
  try {
    const channel = r.channel('slow', { url: `ws://127.0.0.1:${port}/`, reconnect: { minDelay: 60_000, maxDelay: 60_000 } })
    await until(() => channel.state === 'open', 2000, 'open')
    const echo = channel.echo()
    await until(() => types.includes(FrameType.Open), 2000, 'OPEN sent (it spends the one token)')
    echo.send('one')
    echo.send('two')
    await sleep(300)
    assert.equal(types.filter((t) => t === FrameType.Data), [], 'no DATA: the rate allows none yet')
    assert.equal(warnings.filter((w) => w === 'TimeoutOverflowWarning'), [], 'no timer overflow')
  } finally {
    process.off('warning', onWarning)
    await r.close()
    for (const ws of wss.clients) ws.terminate()
    await new Promise<void>((resolve) => wss.close(() => resolve()))
  }
})

test.run()

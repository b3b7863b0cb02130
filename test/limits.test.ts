// test/limits.test.ts — abuse limits of SPEC §7 against a real server: frames per second per
// connection (token bucket), connections per IP address, and the per-connection outbound bound (a
// subscriber that stops reading is cut off while the publisher and the other subscribers carry on).
// Each test crosses its limit and checks the coded answer, and that everyone else is still served.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import WebSocket from 'ws'
import { SignalChannel } from 'signalyard'
import { DEFAULTS, type LimitsOption, type Yard } from 'signalyard/server'
import { FrameType, SUBPROTOCOL } from '../src/protocol/frames.js'
import { rawClient, socketOf, type RawClient } from './raw-client.js'
import { collect, sleep, startYard, until, within } from './helpers.js'

async function withYard (limits: LimitsOption, body: (yard: Yard, raws: RawClient[]) => Promise<void>): Promise<void> {
  const yard = await startYard({ limits })
  const raws: RawClient[] = []
  try {
    await body(yard, raws)
  } finally {
    for (const r of raws) r.ws.terminate()
    await yard.close()
  }
}

const isError = (code: string) => (f: { type: number, meta: Record<string, unknown> | null }): boolean =>
  f.type === FrameType.Error && f.meta?.code === code

test('defaults are documented numbers', () => {
  assert.is(DEFAULTS.messagesPerSecond, 5000)
  assert.is(DEFAULTS.messageBurst, 10_000)
  assert.is(DEFAULTS.maxConnectionsPerIp, 1000)
  assert.is(DEFAULTS.maxOutbound, 8 * 1024 * 1024)
})

test('frames past the token bucket get ERROR rate-limited and are dropped; the connection and others go on', () =>
  withYard({ messagesPerSecond: 100, messageBurst: 50, maxBadFrames: 10_000 }, async (yard, raws) => {
    const flood = await rawClient(yard, raws)
    await flood.open(1, { ep: 'echo', ns: 'rate' })
    const other = SignalChannel('rate', `${yard.url}?c=other`)
    try {
      const echo = other.echo()
      await within(echo.ready(), 2000, 'other ready')
      const seen: unknown[] = []
      echo.on('data', (d) => { seen.push(d) })
      for (let i = 0; i < 200; i++) flood.send(FrameType.Data, 1, null, i)
      await flood.take(isError('rate-limited'), 2000, 'ERROR rate-limited')
      await sleep(200)
      const delivered = seen.length
      assert.ok(delivered >= 49 && delivered < 200, `${delivered} of 200 flooded frames went through (burst 50, 100/s)`)
      // the other client is served at once
      const own = collect(echo, 'data', 1, 2000)
      echo.send('mine')
      assert.equal((await own)[0][0], 'mine')
      // and after a second the flooder has tokens again
      await sleep(1000)
      flood.send(FrameType.Data, 1, null, 'after a pause')
      await until(() => seen.includes('after a pause'), 2000, 'the flooder is served again')
      assert.is(flood.ws.readyState, WebSocket.OPEN)
    } finally {
      other.close()
    }
  }))

test('connections past maxConnectionsPerIp are refused with HTTP 429; closing one makes room', () =>
  withYard({ maxConnectionsPerIp: 3 }, async (yard, raws) => {
    for (let i = 0; i < 3; i++) await rawClient(yard, raws)
    const status = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(yard.url, SUBPROTOCOL)
      ws.on('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); ws.terminate() })
      ws.on('open', () => { ws.terminate(); reject(new Error('the fourth connection was accepted')) })
      ws.on('error', () => {})
    })
    assert.is(status, 429)
    const closed = raws[0].closed
    raws[0].ws.close()
    await closed
    await until(() => yard.health().connections === 2, 2000, 'the server forgot the closed one')
    const again = await rawClient(yard, raws)
    assert.is(again.ws.readyState, WebSocket.OPEN)
  }))

test('a subscriber that stops reading is disconnected (slow-consumer); publisher and other subscribers carry on', () =>
  withYard({ maxOutbound: 256 * 1024 }, async (yard, raws) => {
    const stalled = await rawClient(yard, raws)
    await stalled.open(1, { ep: 'echo', ns: 'slow' })
    const reader = await rawClient(yard, raws)
    await reader.open(1, { ep: 'echo', ns: 'slow' })
    const publisher = await rawClient(yard, raws)
    await publisher.open(1, { ep: 'echo', ns: 'slow' })
    // the stalled client's TCP socket stops reading: the server's writes pile up
    socketOf(stalled.ws).pause()
    const payload = 'x'.repeat(4096)
    const total = 2000 // 8 MB, far past the 256 KiB bound
    let got = 0
    reader.ws.on('message', () => { got++ })
    for (let i = 0; i < total; i++) {
      publisher.send(FrameType.Data, 1, null, payload)
      if (i % 100 === 99) await sleep(5)
    }
    await until(() => yard.health().connections === 2, 5000, 'the stalled subscriber was disconnected')
    await until(() => got >= total, 5000, `the reader got every message (${got}/${total})`)
    assert.is(publisher.ws.readyState, WebSocket.OPEN)
    assert.is(reader.ws.readyState, WebSocket.OPEN)
  }))

test('streams and namespaces per connection: past either, OPEN is refused (CLOSED with the code); the rest is served', () =>
  withYard({ maxStreams: 4, maxNamespaces: 2 }, async (yard, raws) => {
    const c = await rawClient(yard, raws)
    for (let sid = 1; sid <= 3; sid++) assert.is((await c.open(sid, { ep: 'echo', ns: sid === 3 ? 'ns-b' : 'ns-a' })).type, FrameType.Opened)
    const third = await c.open(10, { ep: 'echo', ns: 'ns-c' })
    assert.equal([third.type, third.meta?.code], [FrameType.Closed, 'too-many-namespaces'])
    assert.is((await c.open(4, { ep: 'kv', ns: 'ns-a' })).type, FrameType.Opened, 'a known namespace is still fine')
    const fifth = await c.open(5, { ep: 'echo', ns: 'ns-a' })
    assert.equal([fifth.type, fifth.meta?.code], [FrameType.Closed, 'too-many-streams'])
    c.send(FrameType.Data, 1, null, 'still served')
    const echoed = await c.take((f) => f.type === FrameType.Event, 2000, 'the echo of an open stream')
    assert.is(new TextDecoder().decode(echoed.payload), 'still served')
  }))

test('a frame over maxFrame closes that socket with 1009; other connections are untouched', () =>
  withYard({ maxFrame: 64 * 1024 }, async (yard, raws) => {
    const big = await rawClient(yard, raws)
    const other = await rawClient(yard, raws)
    await other.open(1, { ep: 'echo', ns: 'big' })
    big.sendRaw(new Uint8Array(64 * 1024 + 1))
    assert.is((await within(big.closed, 2000, 'close')).code, 1009)
    other.send(FrameType.Data, 1, null, 'fine')
    await other.take((f) => f.type === FrameType.Event, 2000, 'the other connection is served')
  }))

test.run()

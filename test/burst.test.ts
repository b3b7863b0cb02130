// test/burst.test.ts — the client's worst legitimate bursts against the server's default limits
// (backlog 8 MiB per connection, 5,000 frames/s with bursts of 10,000), on both brokers: nothing
// is cut with `backlog-full` or `rate-limited`, everything arrives, in order.
// - An OPEN and 2,000 small DATA frames written at once: before the socket opened (one flush
//   after HELLO), and on an open socket before the stream's OPENED came back.
// - A full offline queue (at the client's default bound, in frames and in bytes) flushed after a
//   server restart on the same port, with every stream's OPEN re-sent first (on Redis, frames after
//   an OPEN wait in the backlog until the broker answers it).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { CLIENT_DEFAULTS, SignalChannel, SignalyardError, type Channel, type EchoStream } from 'signalyard'
import { BACKLOG_FRAME_COST, DEFAULTS as SERVER_DEFAULTS } from '../src/server/limits.js'
import type { Yard } from 'signalyard/server'
import { later, startYard, until, within } from './helpers.js'

const FAST = { minDelay: 20, maxDelay: 100 }

/** Everything that can tell a burst was cut: channel errors and reconnects after the first open. */
function watch (channel: Channel): { errors: string[], opens: () => number } {
  const errors: string[] = []
  let opens = 0
  // A refused attempt while the yard restarts is expected (connect-failed, then a retry), not a cut.
  channel.on('error', (err: SignalyardError) => { if (err.code !== 'connect-failed') errors.push(`${err.code}: ${err.message}`) })
  channel.on('state', (state) => { if (state === 'open') opens++ })
  return { errors, opens: () => opens }
}

/** The next `count` messages an echo stream receives, in order. */
function receive (echo: EchoStream, count: number, ms: number): Promise<unknown[]> {
  const got: unknown[] = []
  return within(new Promise((resolve) => {
    echo.on('data', (data) => {
      got.push(data)
      if (got.length === count) resolve(got)
    })
  }), ms, `${count} messages (got ${got.length})`)
}

test('the client\'s default bounds sit below the server\'s: a full offline queue fits the backlog, and with an OPEN per stream one burst', () => {
  const worstBacklog = CLIENT_DEFAULTS.maxQueuedBytes + CLIENT_DEFAULTS.maxQueued * BACKLOG_FRAME_COST
  assert.ok(worstBacklog <= SERVER_DEFAULTS.maxBacklog * 0.6, `${worstBacklog} bytes at most in a ${SERVER_DEFAULTS.maxBacklog}-byte backlog`)
  assert.ok(CLIENT_DEFAULTS.maxQueued + SERVER_DEFAULTS.maxStreams <= SERVER_DEFAULTS.messageBurst * 0.6, 'a full queue and an OPEN per stream: well within one burst')
})

test('an OPEN and 2,000 small DATA frames written before the socket opens: all delivered, in order, nothing cut', async () => {
  const yard = await startYard()
  const channel = SignalChannel('burst', { url: yard.url, reconnect: FAST })
  try {
    const seen = watch(channel)
    const echo = channel.echo()
    const got = later(receive(echo, 2000, 10_000))
    for (let i = 0; i < 2000; i++) echo.send(i)
    assert.equal(await got, Array.from({ length: 2000 }, (_, i) => i))
    assert.equal(seen.errors, [])
    assert.is(seen.opens(), 1, 'opened once, never cut off')
    assert.is(yard.health().connections, 1)
  } finally {
    channel.close()
    await yard.close()
  }
})

test('an OPEN and 2,000 small DATA frames written at once on an open socket: all delivered, in order, nothing cut', async () => {
  const yard = await startYard()
  const channel = SignalChannel('burst', { url: yard.url, reconnect: FAST })
  try {
    const seen = watch(channel)
    await within(channel.echo().ready(), 2000, 'socket open')
    const echo = channel.echo() // its OPEN and the 2,000 frames leave in the same tick
    const got = later(receive(echo, 2000, 10_000))
    for (let i = 0; i < 2000; i++) echo.send({ i })
    assert.equal(await got, Array.from({ length: 2000 }, (_, i) => ({ i })))
    assert.equal(seen.errors, [])
    assert.is(seen.opens(), 1, 'opened once, never cut off')
  } finally {
    channel.close()
    await yard.close()
  }
})

for (const corner of ['frames', 'bytes'] as const) {
  test(`a full offline queue (${corner} bound) flushed after a server restart: all delivered, in order, nothing cut`, async () => {
    let yard: Yard = await startYard()
    const { port } = yard
    const channel = SignalChannel('burst', { url: yard.url, reconnect: FAST })
    try {
      const echo = channel.echo()
      const idle = [channel.echo(), channel.echo(), channel.echo()] // more OPENs to re-send first
      await within(Promise.all([echo, ...idle].map((e) => e.ready())), 2000, 'open')
      await yard.close()
      await until(() => channel.state === 'reconnecting', 2000, 'reconnecting')
      const seen = watch(channel)
      // Fill the queue to the client's default bound.
      const payload = corner === 'frames' ? 'x' : 'y'.repeat(60 * 1024)
      let queued = 0
      for (;;) {
        try {
          echo.send(`${queued}:${payload}`)
          queued++
        } catch (err) {
          assert.is((err as SignalyardError).code, 'queue-full')
          break
        }
      }
      if (corner === 'frames') assert.is(queued, CLIENT_DEFAULTS.maxQueued, 'the frame bound was reached')
      else assert.ok(queued * payload.length > CLIENT_DEFAULTS.maxQueuedBytes * 0.95, `the byte bound was reached (${queued} frames)`)
      const got = later(receive(echo, queued, 20_000))
      yard = await startYard({ port })
      const messages = await got
      assert.equal(messages.map((m) => Number(String(m).split(':')[0])), Array.from({ length: queued }, (_, i) => i), `${queued} messages, in order`)
      assert.ok(messages.every((m) => String(m).endsWith(payload)), 'whole')
      assert.equal(seen.errors, [])
      assert.is(seen.opens(), 1, 'reopened once, never cut off after')
      assert.is(yard.health().connections, 1)
    } finally {
      channel.close()
      await yard.close()
    }
  })
}

test.run()

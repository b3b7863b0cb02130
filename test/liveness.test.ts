// test/liveness.test.ts — ping/pong liveness (SPEC §7, limits.pingInterval): the server pings every
// connection each interval and cuts off one that did not answer the previous ping, so a client
// whose network silently died (here: its TCP socket paused, so it reads nothing and answers
// nothing) is gone within 2 intervals, and its presence id then leaves through the grace period.
// A client that answers stays connected however many intervals pass.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { Socket } from 'node:net'
import { FrameType } from '../src/protocol/frames.js'
import { sleep, startYard, until } from './helpers.js'
import { rawClient, type RawClient } from './raw-client.js'

const PING = 100
const GRACE = 100

const join = async (c: RawClient, id: string): Promise<void> => {
  const f = await c.open(1, { ep: 'peers', ns: 'live', id, key: `owner-key-of-${id}-0123456789` })
  assert.is(f.type, FrameType.Opened, JSON.stringify(f.meta))
}

/** Stop reading the client's TCP socket: to the server it looks like a network that silently died. */
function freeze (c: RawClient): void {
  (c.ws as unknown as { _socket: Socket })._socket.pause()
}

test('a silent client is cut off within 2 ping intervals and its presence id leaves after the grace period', async () => {
  const yard = await startYard({ limits: { pingInterval: PING, peers: { grace: GRACE } } })
  const clients: RawClient[] = []
  try {
    const watcher = await rawClient(yard, clients)
    const silent = await rawClient(yard, clients)
    await join(watcher, 'watcher')
    await join(silent, 'silent')
    await sleep(PING * 2.5) // both have answered pings by now
    assert.is(yard.health().connections, 2, 'answering clients stay')

    const t0 = Date.now()
    freeze(silent)
    await until(() => yard.health().connections === 1, PING * 2 + 300, 'the silent client cut off')
    const cut = Date.now() - t0
    assert.ok(cut <= PING * 2 + 150, `cut off ${cut} ms after it went silent (ping interval ${PING} ms)`)
    const left = await watcher.take((f) => f.type === FrameType.Event && f.meta?.op === 'leave', GRACE + 1000, 'leave of the silent client')
    assert.is(left.meta?.id, 'silent')
    const ms = Date.now() - t0
    assert.ok(ms >= GRACE && ms <= PING * 2 + GRACE + 300, `leave ${ms} ms after it went silent`)
  } finally {
    for (const c of clients) c.ws.terminate()
    await yard.close()
  }
})

test('clients that answer pings (an idle one included) stay connected across many intervals and are served throughout', async () => {
  const yard = await startYard({ limits: { pingInterval: PING, peers: { grace: GRACE } } })
  const clients: RawClient[] = []
  try {
    const a = await rawClient(yard, clients)
    const b = await rawClient(yard, clients)
    await join(a, 'a')
    await join(b, 'b')
    // b sends nothing at all: only its automatic pongs keep it
    let pings = 0
    b.ws.on('ping', () => { pings++ })
    let closed = false
    b.ws.on('close', () => { closed = true })
    for (let round = 0; round < 8; round++) {
      await sleep(PING)
      a.send(FrameType.Request, 1, { op: 'update', req: round, meta: { round } })
      const reply = await a.take((f) => f.type === FrameType.Reply && f.meta?.req === round, 1000, `REPLY ${round}`)
      assert.is(reply.id, 1)
    }
    assert.ok(pings >= 5, `${pings} pings in ${8 * PING} ms`)
    assert.not.ok(closed, 'the idle client was never cut off')
    assert.is(yard.health().connections, 2)
    assert.not.ok(a.frames.some((f) => f.type === FrameType.Event && f.meta?.op === 'leave'), 'no leave for a live client')
    await until(() => b.frames.filter((f) => f.type === FrameType.Event && f.meta?.op === 'update').length === 8, 1000, 'the idle client hears every update')
  } finally {
    for (const c of clients) c.ws.terminate()
    await yard.close()
  }
})

test.run()

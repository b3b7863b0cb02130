// test/liveness.test.ts — ping/pong liveness (SPEC §7, limits.pingInterval): the server pings every
// connection each interval and cuts off one that did not answer the previous ping, so a client
// whose network silently died (here: its TCP socket paused, so it reads nothing and answers
// nothing) is gone within 2 intervals, and its presence id then leaves through the grace period.
// A client that answers stays connected however many intervals pass. The other way round, the
// client detects a dead server (a TCP proxy that goes silent in both directions while keeping the
// connection open) by its PING/PONG heartbeat and reconnects.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createServer as createTcpServer, connect as tcpConnect, type Server as TcpServer, type Socket } from 'node:net'
import { SignalChannel } from 'signalyard'
import { FrameType } from '../src/protocol/frames.js'
import { sleep, startYard, until, within } from './helpers.js'
import { rawClient, socketOf, type RawClient } from './raw-client.js'

const PING = 100
const GRACE = 100

const join = async (c: RawClient, id: string): Promise<void> => {
  const f = await c.open(1, { ep: 'peers', ns: 'live', id, key: `owner-key-of-${id}-0123456789` })
  assert.is(f.type, FrameType.Opened, JSON.stringify(f.meta))
}

/** Stop reading the client's TCP socket: to the server it looks like a network that silently died. */
function freeze (c: RawClient): void {
  socketOf(c.ws).pause()
}

test('a silent client is cut off within 2 ping intervals; its presence id, node id and relay pair are cleaned up', async () => {
  const yard = await startYard({ limits: { pingInterval: PING, peers: { grace: GRACE } } })
  const clients: RawClient[] = []
  try {
    const watcher = await rawClient(yard, clients)
    const silent = await rawClient(yard, clients)
    await join(watcher, 'watcher')
    await join(silent, 'silent')
    // the silent client also listens as a node and holds one side of a relay pair with the watcher
    assert.is((await watcher.open(2, { ep: 'signal', ns: 'live', id: 'watcher', key: 'owner-key-of-watcher-0123456789' })).type, FrameType.Opened)
    assert.is((await silent.open(2, { ep: 'signal', ns: 'live', id: 'silent', key: 'owner-key-of-silent-0123456789' })).type, FrameType.Opened)
    silent.send(FrameType.Open, 3, { ep: 'relay', ns: 'live', local: 's', remote: 'w' })
    assert.is((await watcher.open(3, { ep: 'relay', ns: 'live', local: 'w', remote: 's' })).type, FrameType.Opened)
    await sleep(PING * 2.5) // both have answered pings by now
    assert.is(yard.health().connections, 2, 'answering clients stay')

    const t0 = Date.now()
    freeze(silent)
    await until(() => yard.health().connections === 1, PING * 2 + 1000, 'the silent client cut off')
    const cut = Date.now() - t0
    assert.ok(cut <= PING * 2 + 500, `cut off ${cut} ms after it went silent (ping interval ${PING} ms)`)
    const pairClosed = await watcher.take((f) => f.type === FrameType.Closed && f.id === 3, 1000, 'the relay pair closed')
    assert.is(pairClosed.meta?.code, undefined, 'the other side went away: a plain close')
    const left = await watcher.take((f) => f.type === FrameType.Event && f.meta?.ep === 'peers' && f.meta?.op === 'leave', GRACE + 1000, 'leave of the silent client')
    assert.is(left.meta?.id, 'silent')
    const ms = Date.now() - t0
    assert.ok(ms >= GRACE && ms <= PING * 2 + GRACE + 1000, `leave ${ms} ms after it went silent`)
    await watcher.take((f) => f.type === FrameType.Event && f.meta?.ep === 'signal' && f.meta?.op === 'leave' && f.meta?.id === 'silent', 1000, 'the node id released')
    assert.is(((await yard.metrics()).match(/signalyard_relay_pairs (\d+)/) ?? [])[1], '0')
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

/** A TCP proxy to `port` on 127.0.0.1; freeze() makes every current connection silent (nothing forwarded, nothing closed). */
async function proxyTo (port: number): Promise<{ port: number, freeze: () => void, close: () => Promise<void> }> {
  const pairs: Array<[Socket, Socket]> = []
  const server: TcpServer = createTcpServer((client) => {
    const upstream = tcpConnect(port, '127.0.0.1')
    client.pipe(upstream).pipe(client)
    client.on('error', () => {})
    upstream.on('error', () => {})
    pairs.push([client, upstream])
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as { port: number }).port,
    freeze: () => {
      for (const [client, upstream] of pairs.splice(0)) {
        client.unpipe(upstream)
        upstream.unpipe(client)
        client.pause()
        upstream.pause()
        frozen.push(client, upstream)
      }
    },
    close: async () => {
      for (const socket of frozen.splice(0)) socket.destroy()
      for (const [a, b] of pairs.splice(0)) { a.destroy(); b.destroy() }
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}
const frozen: Socket[] = []

test('the client finds a silent server by its heartbeat and reconnects (within interval + timeout)', async () => {
  const yard = await startYard({ limits: { pingInterval: 60_000 } })
  const proxy = await proxyTo(yard.port)
  const channel = SignalChannel('live', { url: `ws://127.0.0.1:${proxy.port}/`, heartbeat: { interval: 100, timeout: 200 }, reconnect: { minDelay: 10, maxDelay: 20 } })
  try {
    const echo = channel.echo()
    await echo.ready()
    const states: string[] = []
    channel.on('state', (state) => states.push(state))
    await sleep(400) // idle but alive: PINGs are answered, nothing reconnects
    assert.equal(states, [], 'an idle, live connection is kept')
    const reopened = new Promise<void>((resolve) => echo.once('open', () => resolve()))
    const t0 = Date.now()
    proxy.freeze()
    await within(reopened, 3000, 'reconnect after the server went silent')
    const ms = Date.now() - t0
    assert.ok(ms < 100 + 200 + 300, `reconnected ${ms} ms after the server went silent`)
    const got = new Promise((resolve) => echo.once('data', resolve))
    echo.send('over the new connection')
    assert.is(await got, 'over the new connection')
  } finally {
    channel.close()
    await proxy.close()
    await yard.close()
  }
})

test.run()

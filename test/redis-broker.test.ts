// test/redis-broker.test.ts — the Redis broker between two yards in this process (each with its
// own broker, so each is a separate "server" to Redis): relay flow control across servers (a slow
// receiver holds its sender; Redis's output buffers stay small), presence joins racing across
// servers (every member sees every other once, in the right state), the record format, and what is
// left in Redis afterwards. Whole processes (SIGKILL, failover, Redis restarts) are in cluster.test.ts.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createHash, randomBytes } from 'node:crypto'
import { SignalChannel, type Channel } from 'signalyard'
import { createServer, redisBroker, type Broker, type Yard } from 'signalyard/server'
import { pack, unpack } from '../src/server/brokers/redis/lua.js'
import { FrameType } from '../src/protocol/frames.js'
import { HEADER_SIZE, Kind, writeFrame } from '../src/protocol/codec.js'
import { rawClient, socketOf, type RawClient } from './raw-client.js'
import { startRedis, type TestRedis } from './redis.js'
import { sleep, until, within } from './helpers.js'

let redis: TestRedis
test.before(async () => { redis = await startRedis() })
test.after(async () => { await redis.stop() })

/** Two yards, each on its own broker over the test Redis; closed (and checked clean) after `body`. */
async function twoServers (body: (a: Yard, b: Yard) => Promise<void>): Promise<void> {
  const brokers: Broker[] = [redisBroker({ url: redis.url }), redisBroker({ url: redis.url })]
  const yards = await Promise.all(brokers.map(async (broker) => await createServer({ port: 0, host: '127.0.0.1', broker })))
  try {
    await body(yards[0], yards[1])
  } finally {
    for (const yard of yards) await yard.close()
    for (const broker of brokers) await broker.close()
  }
  assert.equal(await redis.keys('signalyard:*'), [], 'nothing left in Redis once both servers closed')
}

/** The largest output buffer Redis holds for any client right now (CLIENT LIST omem), in bytes. */
async function redisOutputMemory (): Promise<number> {
  const list = await redis.command('CLIENT', 'LIST')
  let most = 0
  for (const m of list.matchAll(/omem=(\d+)/g)) most = Math.max(most, Number(m[1]))
  return most
}

test('records: pack/unpack keep binary fields, empty fields and colons intact', () => {
  const value = new Uint8Array([0, 58, 255, 10, 58, 49, 58])
  const fields = unpack(pack('', 'a:b', value, '12:34', 'ünï'))
  assert.equal(fields.map((f) => f.toString('latin1')), ['', 'a:b', Buffer.from(value).toString('latin1'), '12:34', Buffer.from('ünï').toString('latin1')])
})

test('relay across servers: a receiver that stops reading holds its sender (ACKs stop); Redis buffers stay under a few MiB; every byte arrives in order', () => twoServers(async (a, b) => {
  const raws: RawClient[] = []
  try {
    const sender = await rawClient(a, raws)
    const receiver = await rawClient(b, raws)
    sender.send(FrameType.Open, 1, { ep: 'relay', ns: 'pipe', local: 's', remote: 'r' })
    await receiver.open(1, { ep: 'relay', ns: 'pipe', local: 'r', remote: 's' })
    const opened = await sender.take((f) => f.type === FrameType.Opened, 2000, 'OPENED (sender)')
    const window = Number(opened.meta?.window)
    assert.ok(window > 0, 'OPENED announces a window')
    // The sender honours the window: it sends while less than `window` bytes are unacknowledged.
    let unacked = 0
    let acked: (() => void) | null = null
    sender.ws.on('message', (data: Buffer) => {
      if (data[0] !== FrameType.Ack) return
      unacked -= Number(JSON.parse(data.subarray(HEADER_SIZE, HEADER_SIZE + data.readUInt32BE(6)).toString()).bytes)
      acked?.()
    })
    const inbound = createHash('sha256')
    let received = 0
    receiver.ws.on('message', (data: Buffer) => {
      if (data[0] !== FrameType.Data) return
      received++
      inbound.update(data.subarray(HEADER_SIZE)) // DATA from the relay carries no meta
    })
    socketOf(receiver.ws).pause()
    const outbound = createHash('sha256')
    const chunks = 96 // 24 MiB of 256 KiB messages: 3 × the receiver's outbound bound
    let sent = 0
    const sending = (async () => {
      for (let i = 0; i < chunks; i++) {
        while (unacked >= window) await within(new Promise<void>((resolve) => { acked = resolve }), 15_000, 'an ACK')
        const chunk = randomBytes(256 * 1024)
        outbound.update(chunk)
        const frame = writeFrame(FrameType.Data, 1, null, { kind: Kind.Binary, bytes: chunk })
        unacked += frame.length
        sender.sendRaw(frame)
        sent++
      }
    })()
    sending.catch(() => {})
    let peak = 0
    const t0 = Date.now()
    while (Date.now() - t0 < 1500) {
      peak = Math.max(peak, await redisOutputMemory())
      await sleep(50)
    }
    assert.ok(sent < chunks / 2, `the sender is held back by the window (${sent} of ${chunks} sent)`)
    assert.ok(peak < 8 * 1024 * 1024, `Redis output buffers peaked at ${peak} bytes (bounded by the relay window)`)
    assert.is(receiver.ws.readyState, 1, 'the receiver was not cut off')
    socketOf(receiver.ws).resume()
    await sending
    await until(() => received === chunks, 15_000, `all ${chunks} messages delivered (${received} so far)`)
    assert.is(inbound.digest('hex'), outbound.digest('hex'), 'the same bytes, in order')
    console.log(`redis-broker: relay across servers, peak Redis output buffer ${(peak / 1024).toFixed(0)} KiB while the receiver stalled`)
  } finally {
    for (const c of raws) c.ws.terminate()
  }
}))

test('presence: 20 clients spread over two servers join at once; each sees the other 19 exactly once and nobody sees a leave', () => twoServers(async (a, b) => {
  const channels: Channel[] = []
  try {
    const clients = Array.from({ length: 20 }, (_, i) => {
      const channel = SignalChannel('crowd', { url: `${(i % 2 === 0 ? a : b).url}?c=${i}` })
      channels.push(channel)
      const peers = channel.createPeers()
      const seen: string[] = []
      peers.on('join', (m) => seen.push(`join ${String(m.id)}`))
      peers.on('leave', (m) => seen.push(`leave ${String(m.id)}`))
      return { peers, seen }
    })
    await within(Promise.all(clients.map(async ({ peers }, i) => await peers.join({ id: `p${i}`, n: i }))), 5000, 'all joined')
    await until(() => clients.every(({ peers }) => peers.list().length === 19), 3000, 'everyone lists the 19 others')
    await sleep(100)
    for (const [i, { peers, seen }] of clients.entries()) {
      const others = clients.map((_, j) => `p${j}`).filter((id) => id !== `p${i}`)
      assert.equal(peers.list().map((m) => m.id).sort(), others.sort())
      assert.equal(seen.filter((e) => e.startsWith('leave')), [], `p${i} saw no leave`)
      assert.is(new Set(seen).size, seen.length, `p${i} saw each join once: ${seen.join(', ')}`)
    }
  } finally {
    for (const channel of channels) channel.close()
  }
}))

test.run()

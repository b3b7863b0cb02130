// test/redis-review.test.ts — review of the Redis broker (issue 6): a stale claim handle never
// removes the newer owner's id across servers (the owner reclaims on another server while the old
// stream closes, or after its socket went away and its grace ran out on the first server).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createServer, redisBroker, type Broker, type Yard } from 'signalyard/server'
import { FrameType } from '../src/protocol/frames.js'
import { rawClient, type RawClient } from './raw-client.js'
import { startRedis, type TestRedis } from './redis.js'
import { sleep } from './helpers.js'

let redis: TestRedis
test.before(async () => { redis = await startRedis() })
test.after(async () => { await redis.stop() })

interface Node { yard: Yard, broker: Broker }

/** Each test runs under its own prefix, so what one leaves behind cannot fail another. */
let prefix = 'signalyard:'
test.before.each(() => { prefix = `review${Math.random().toString(36).slice(2, 8)}:` })

async function node (url: string, extra: { heartbeat?: number, deadAfter?: number } = {}): Promise<Node> {
  const broker = redisBroker({ url, prefix, ...extra })
  const yard = await createServer({ port: 0, host: '127.0.0.1', broker })
  return { yard, broker }
}

async function closeAll (nodes: Node[], raws: RawClient[]): Promise<void> {
  for (const c of raws) c.ws.terminate()
  for (const n of nodes) await n.yard.close()
  for (const n of nodes) await n.broker.close()
}

const peersOpen = (ns: string, id: string, key: string, meta: object = {}): object => ({ ep: 'peers', ns, id, key, meta })
const isEvent = (op: string, id: string) => (f: { type: number, meta: unknown }): boolean =>
  f.type === FrameType.Event && (f.meta as { op?: string }).op === op && (f.meta as { id?: string }).id === id

// ── 0. a stale claim handle never removes the newer owner's id (across processes) ──────────────

test('claims: the owner reclaiming on another server, then the old stream closing, leaves the id held (no leave, still taken)', async () => {
  const nodes: Node[] = []
  const raws: RawClient[] = []
  try {
    const a = await node(redis.url)
    nodes.push(a)
    const b = await node(redis.url)
    nodes.push(b)
    const watcher = await rawClient(b.yard, raws)
    assert.is((await watcher.open(1, peersOpen('own', 'w', 'key-w-333333-padding'))).type, FrameType.Opened)
    const old = await rawClient(a.yard, raws)
    assert.is((await old.open(1, peersOpen('own', 'x', 'key-x-333333-padding'))).type, FrameType.Opened)
    const renewed = await rawClient(b.yard, raws)
    assert.is((await renewed.open(1, peersOpen('own', 'x', 'key-x-333333-padding'))).type, FrameType.Opened)
    old.send(FrameType.Close, 1, null) // races the 'taken' notice on its way to server a
    const closed = await old.take((f) => f.type === FrameType.Closed && f.id === 1, 1000, 'CLOSED (old)').catch(() => null)
    if (closed !== null) assert.is((closed.meta as { code?: string }).code, 'peer-id-taken')
    await sleep(300)
    assert.not.ok(watcher.frames.some(isEvent('leave', 'x')), 'no leave for x: its owner holds it on server b')
    const intruder = await rawClient(a.yard, raws)
    const refused = await intruder.open(1, peersOpen('own', 'x', 'key-z-333333-padding'))
    assert.is(refused.type, FrameType.Closed)
    assert.is((refused.meta as { code: string }).code, 'peer-id-taken')
  } finally {
    await closeAll(nodes, raws)
  }
})

test('claims: a socket gone on one server (grace) and reclaimed on another keeps the id past the grace, with no leave', async () => {
  const nodes: Node[] = []
  const raws: RawClient[] = []
  try {
    const limits = { peers: { grace: 300 } }
    for (let i = 0; i < 2; i++) {
      const broker = redisBroker({ url: redis.url, prefix })
      nodes.push({ broker, yard: await createServer({ port: 0, host: '127.0.0.1', broker, limits }) })
    }
    const [a, b] = nodes
    const watcher = await rawClient(b.yard, raws)
    assert.is((await watcher.open(1, peersOpen('own', 'w', 'key-w-444444-padding'))).type, FrameType.Opened)
    const old = await rawClient(a.yard, raws)
    assert.is((await old.open(1, peersOpen('own', 'x', 'key-x-444444-padding'))).type, FrameType.Opened)
    old.ws.terminate() // gone: x is kept for the grace
    await sleep(100)
    const renewed = await rawClient(b.yard, raws)
    assert.is((await renewed.open(1, peersOpen('own', 'x', 'key-x-444444-padding'))).type, FrameType.Opened)
    await sleep(600) // past the grace server a started
    assert.not.ok(watcher.frames.some(isEvent('leave', 'x')), 'no leave for x')
    const intruder = await rawClient(a.yard, raws)
    const refused = await intruder.open(1, peersOpen('own', 'x', 'key-z-444444-padding'))
    assert.is((refused.meta as { code?: string }).code, 'peer-id-taken')
    renewed.send(FrameType.Close, 1, null)
    await watcher.take(isEvent('leave', 'x'), 1000, 'leave x once its owner closed')
  } finally {
    await closeAll(nodes, raws)
  }
})

test.run()

// test/redis-review.test.ts — review of the Redis broker (issue 6): what a client relies on when
// its server's connections to Redis are slow (a TCP proxy delays the subscriber or the command
// connection of one broker), when a process stalls past deadAfter and wakes up, and when every
// server closes while presence ids are in their grace period.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn } from 'node:child_process'
import { createServer as createTcpServer, createConnection, type Server as TcpServer, type Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import { createServer, redisBroker, type Broker, type Yard } from 'signalyard/server'
import { FrameType } from '../src/protocol/frames.js'
import { rawClient, type RawClient } from './raw-client.js'
import { startRedis, type TestRedis } from './redis.js'
import { sleep, until, within } from './helpers.js'

let redis: TestRedis
test.before(async () => { redis = await startRedis() })
test.after(async () => { await redis.stop() })

const root = fileURLToPath(new URL('..', import.meta.url))
const FIXTURE = fileURLToPath(new URL('./fixtures/cluster-server.mjs', import.meta.url))

/**
 * A TCP proxy in front of the test Redis that can delay what Redis sends to a broker's subscriber
 * connection (the one that sent SUBSCRIBE) or its command connection (the one that ran scripts),
 * keeping the bytes in order: network latency on one of the two connections.
 */
interface Proxy { url: string, delay: { sub: number, cmd: number }, close: () => Promise<void> }

async function startProxy (): Promise<Proxy> {
  const sockets = new Set<Socket>()
  const delay = { sub: 0, cmd: 0 }
  const server: TcpServer = createTcpServer((client) => {
    let role: 'sub' | 'cmd' | '' = ''
    const upstream = createConnection(redis.port, '127.0.0.1')
    sockets.add(client)
    sockets.add(upstream)
    client.on('data', (chunk: Buffer) => {
      const text = chunk.toString('latin1').toLowerCase()
      if (role === '' && text.includes('subscribe')) role = 'sub'
      else if (role === '' && text.includes('eval')) role = 'cmd'
      upstream.write(chunk)
    })
    let queue: Buffer[] = []
    upstream.on('data', (chunk: Buffer) => {
      const ms = role === '' ? 0 : delay[role]
      if (ms === 0 && queue.length === 0) return void client.write(chunk)
      queue.push(chunk)
      setTimeout(() => { const c = queue.shift(); if (c !== undefined && !client.destroyed) client.write(c) }, ms)
    })
    const end = (): void => { queue = []; client.destroy(); upstream.destroy(); sockets.delete(client); sockets.delete(upstream) }
    client.on('close', end)
    upstream.on('close', end)
    client.on('error', end)
    upstream.on('error', end)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  return {
    url: `redis://127.0.0.1:${port}`,
    delay,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}

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

/**
 * Two servers a and b; a watcher of namespace `own` on b; `x` claimed on a (`old`), then claimed
 * again by its owner on b (`renewed`). Keys differ per test (`tag`).
 */
async function reclaimAcross (nodes: Node[], raws: RawClient[], tag: string): Promise<{ a: Node, watcher: RawClient, old: RawClient }> {
  const a = await node(redis.url)
  nodes.push(a)
  const b = await node(redis.url)
  nodes.push(b)
  const watcher = await rawClient(b.yard, raws)
  assert.is((await watcher.open(1, peersOpen('own', 'w', `key-w-${tag}-padding`))).type, FrameType.Opened)
  const old = await rawClient(a.yard, raws)
  assert.is((await old.open(1, peersOpen('own', 'x', `key-x-${tag}-padding`))).type, FrameType.Opened)
  const renewed = await rawClient(b.yard, raws)
  assert.is((await renewed.open(1, peersOpen('own', 'x', `key-x-${tag}-padding`))).type, FrameType.Opened)
  return { a, watcher, old }
}

/** After a while: no leave for x reached the watcher, and x is still taken for anyone else (asked on a). */
async function stillHeld (a: Node, watcher: RawClient, raws: RawClient[], tag: string): Promise<void> {
  await sleep(300)
  assert.not.ok(watcher.frames.some(isEvent('leave', 'x')), 'no leave for x: its owner holds it on server b')
  const intruder = await rawClient(a.yard, raws)
  const refused = await intruder.open(1, peersOpen('own', 'x', `key-z-${tag}-padding`))
  assert.is(refused.type, FrameType.Closed)
  assert.is((refused.meta as { code: string }).code, 'peer-id-taken')
}

// ── 0. a stale claim handle never removes the newer owner's id (across processes) ──────────────

test('claims: the owner reclaiming on another server: the old stream gets CLOSED peer-id-taken; its socket closing after leaves the id held', async () => {
  const nodes: Node[] = []
  const raws: RawClient[] = []
  try {
    const { a, watcher, old } = await reclaimAcross(nodes, raws, '333333')
    // Server a hears from Redis that its stream lost the id, and tells the old holder.
    const closed = await old.take((f) => f.type === FrameType.Closed && f.id === 1, 1000, 'CLOSED at the old stream (server a)')
    assert.is((closed.meta as { code?: string }).code, 'peer-id-taken')
    old.ws.close() // the old connection going away afterwards releases nothing
    await old.closed
    await stillHeld(a, watcher, raws, '333333')
  } finally {
    await closeAll(nodes, raws)
  }
})

test('claims: the old stream\'s CLOSE racing the taken notice (a stale handle) leaves the id held (no leave, still taken)', async () => {
  const nodes: Node[] = []
  const raws: RawClient[] = []
  try {
    const { a, watcher, old } = await reclaimAcross(nodes, raws, '555555')
    // Sent at once: server a may release its (now stale) claim before the 'taken' notice arrives,
    // and the old stream may or may not see CLOSED; either way the new owner keeps the id.
    old.send(FrameType.Close, 1, null)
    await stillHeld(a, watcher, raws, '555555')
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

// ── 1. presence: events already reflected in OPENED must not follow it ──────────────────────────

test('presence: with a slow subscriber connection, a joiner is not sent events already reflected in its OPENED (no phantom join/leave)', async () => {
  const proxy = await startProxy()
  const nodes: Node[] = []
  const raws: RawClient[] = []
  try {
    const a = await node(proxy.url)
    nodes.push(a)
    const b = await node(redis.url)
    nodes.push(b)
    // a is subscribed to the room's presence events before anything happens
    const watcher = await rawClient(a.yard, raws)
    assert.is((await watcher.open(1, peersOpen('room', 'w', 'key-w-000000-padding'))).type, FrameType.Opened)
    // from now on, what Redis publishes reaches process a 300 ms late (its commands are not slowed)
    proxy.delay.sub = 300
    const x = await rawClient(b.yard, raws)
    assert.is((await x.open(1, peersOpen('room', 'x', 'key-x-000000-padding'))).type, FrameType.Opened)
    x.send(FrameType.Close, 1, null)
    await sleep(50) // x has joined and left (b is not slowed); a will hear it 300 ms late
    const y = await rawClient(a.yard, raws)
    const opened = await y.open(1, peersOpen('room', 'y', 'key-y-000000-padding'))
    assert.is(opened.type, FrameType.Opened)
    const listed = ((opened.meta as { peers: Array<{ id: string }> }).peers).map((p) => p.id).sort()
    assert.equal(listed, ['w', 'y'], 'OPENED reflects x having left')
    await sleep(700)
    const after = y.frames.filter((f) => f.type === FrameType.Event).map((f) => `${String((f.meta as { op: string }).op)} ${String((f.meta as { id: string }).id)}`)
    assert.equal(after, [], `events after OPENED that OPENED already reflected: ${after.join(', ')}`)
  } finally {
    proxy.delay.sub = 0
    await closeAll(nodes, raws)
    await proxy.close()
  }
})

// ── 2. relay: the peer closes before this side's open is answered ───────────────────────────────

test('relay: a side whose peer closed before its relayOpen answer arrived is not left registered (its sid can be reused)', async () => {
  const proxy = await startProxy()
  const nodes: Node[] = []
  const raws: RawClient[] = []
  try {
    const a = await node(redis.url)
    nodes.push(a)
    const b = await node(proxy.url)
    nodes.push(b)
    const ca = await rawClient(a.yard, raws)
    ca.send(FrameType.Open, 1, { ep: 'relay', ns: 'pipe', local: 'a', remote: 'b' })
    await sleep(100) // a's side is pending in Redis
    // b's command replies now arrive 300 ms late; its subscriber connection is not slowed
    proxy.delay.cmd = 300
    const cb = await rawClient(b.yard, raws)
    cb.send(FrameType.Open, 1, { ep: 'relay', ns: 'pipe', local: 'b', remote: 'a' })
    await ca.take((f) => f.type === FrameType.Opened && f.id === 1, 2000, 'OPENED (a)')
    ca.send(FrameType.Close, 1, null) // a leaves before b's process has its answer
    await cb.take((f) => f.type === FrameType.Closed && f.id === 1, 2000, 'CLOSED (b)')
    await sleep(600) // b's answer arrives
    proxy.delay.cmd = 0
    cb.frames.length = 0
    cb.send(FrameType.Open, 1, { ep: 'echo', ns: 'pipe' })
    const again = await cb.take((f) => f.id === 1, 2000, 'an answer to OPEN 1')
    assert.is(again.type, FrameType.Opened, `stream 1 is free again after its CLOSED; got ${JSON.stringify(again.meta)}`)
  } finally {
    proxy.delay.cmd = 0
    await closeAll(nodes, raws)
    await proxy.close()
  }
})

// ── 3. all servers close while presence ids are in their grace period ──────────────────────────

test('shutdown: two servers closed one after the other, each with presence clients connected, leave no key in Redis', async () => {
  const raws: RawClient[] = []
  const a = await node(redis.url)
  const b = await node(redis.url)
  const ca = await rawClient(a.yard, raws)
  const cb = await rawClient(b.yard, raws)
  assert.is((await ca.open(1, peersOpen('lobby', 'p', 'key-p-000000-padding'))).type, FrameType.Opened)
  assert.is((await cb.open(1, peersOpen('lobby', 'q', 'key-q-000000-padding'))).type, FrameType.Opened)
  // the usual shutdown of each process (the fixture's SIGTERM handler): yard, then broker
  await a.yard.close()
  await a.broker.close()
  await b.yard.close()
  await b.broker.close()
  for (const c of raws) c.ws.terminate()
  assert.equal(await redis.keys(`${prefix}*`), [], 'after all brokers closed cleanly no key is left')
})

// ── 4. a process that stalled past deadAfter and was reaped, then woke up ───────────────────────

test('liveness: a server stalled past deadAfter (reaped by the others) does not go on serving ids it no longer holds', async () => {
  prefix = 'signalyard:' // the fixture's
  const env: NodeJS.ProcessEnv = { ...process.env }
  const child = spawn(process.execPath, [FIXTURE, redis.url], { cwd: root, env, stdio: ['pipe', 'pipe', 'pipe'] })
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()))
  let out = ''
  child.stdout.on('data', (d) => { out += String(d) })
  child.stderr.on('data', (d) => { out += String(d) })
  const raws: RawClient[] = []
  const b = await node(redis.url, { heartbeat: 200, deadAfter: 1000 })
  try {
    await until(() => /^listening (ws:\/\/\S+)$/m.test(out), 8000, 'fixture listening')
    const url = (/^listening (ws:\/\/\S+)$/m.exec(out) as RegExpExecArray)[1]
    const holder = await rawClient({ url }, raws)
    assert.is((await holder.open(1, peersOpen('hall', 'x', 'key-x-111111-padding'))).type, FrameType.Opened)
    const watcher = await rawClient(b.yard, raws)
    assert.is((await watcher.open(1, peersOpen('hall', 'w', 'key-w-111111-padding'))).type, FrameType.Opened)
    child.kill('SIGSTOP') // a long GC pause, a VM pause: the process is alive but silent
    await watcher.take(isEvent('leave', 'x'), 4000, 'leave x (the stalled process was reaped)')
    child.kill('SIGCONT')
    await sleep(1000)
    const holderStillServed = holder.ws.readyState === 1 && !holder.frames.some((f) => f.type === FrameType.Closed && f.id === 1)
    const other = await rawClient(b.yard, raws)
    const answer = await other.open(1, peersOpen('hall', 'x', 'key-z-222222-padding'))
    // Either the woken process told its client (closed its socket or its stream, so it can
    // reclaim), or the id is still held and another key cannot take it.
    assert.ok(!holderStillServed || answer.type === FrameType.Closed,
      `x is claimed by another key (${answer.type === FrameType.Opened ? 'OPENED' : 'CLOSED'}) while its first holder still has its stream open on the woken server`)
  } finally {
    for (const c of raws) c.ws.terminate()
    child.kill('SIGCONT')
    child.kill('SIGTERM')
    await within(exited, 6000, 'fixture exits')
    await b.yard.close()
    await b.broker.close()
  }
})

test.run()

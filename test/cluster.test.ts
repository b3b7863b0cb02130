// test/cluster.test.ts — scale-out on Redis (issue 6): one real redis-server and three real server
// processes (test/fixtures/cluster-server.mjs, and the real CLI with --redis) act as one yard for
// clients talking to different processes: echo fan-out (each message once, per-sender order), KV
// state, snapshots, expiry (once per replica, not once per process) and contended writes, presence
// and id ownership, createNode over the relay and over WebRTC, a SIGKILLed process reaped by the
// survivors (its ids, relay sides and Redis keys), a Redis restart (clients come back, KV replicas
// resync to the lost state) and a clean shutdown that leaves no key behind.
//
// Each client gets its own WebSocket (`?c=N` on its URL), as separate apps would.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { EventEmitter } from 'eventemitter3'
import nodeDataChannel from 'node-datachannel'
import WebSocket from 'ws'
import { RTCPeerConnection as PolyfillPC } from 'node-datachannel/polyfill'
import {
  SignalChannel, SignalyardError,
  type Channel, type ChannelOptions, type PeerConnection, type PeerStream, type RTCPeerConnectionConstructor
} from 'signalyard'
import { DEFAULTS } from 'signalyard/server'
import { FrameType } from '../src/protocol/frames.js'
import type { RawFrame } from '../src/protocol/codec.js'
import { readyAll, sleep, until, within } from './helpers.js'
import { rawClient, type RawClient } from './raw-client.js'
import { startRedis, type TestRedis } from './redis.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const FIXTURE = fileURLToPath(new URL('./fixtures/cluster-server.mjs', import.meta.url))
const PREFIX = 'signalyard:'
/** The fixture's broker settings (cluster-server.mjs). */
const HEARTBEAT = 200
const DEAD_AFTER = 1000
const WebRTC = PolyfillPC as unknown as RTCPeerConnectionConstructor
/** Loopback only, and no STUN/TURN: node-datachannel gathers host candidates on 127.0.0.1. */
const RTC_CONFIG = { iceServers: [], bindAddress: '127.0.0.1' }
/** Quick reconnects, so a failover or a Redis blip takes tens of ms, not seconds. */
const FAST = { reconnect: { minDelay: 50, maxDelay: 250 } }

// ── processes ──

interface Server {
  name: string
  child: ChildProcess
  url: string
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  output: () => string
}

let redis: TestRedis
const servers: Server[] = []
const spawned: Server[] = []

/** Start one server process (the fixture, or the real CLI) and wait for its listening line. */
async function startServer (name: string, kind: 'fixture' | 'cli' = 'fixture'): Promise<Server> {
  const env: NodeJS.ProcessEnv = { ...process.env }
  for (const v of ['PORT', 'HOST', 'REDIS_URL']) delete env[v]
  const args = kind === 'fixture'
    ? [FIXTURE, redis.url]
    : ['dist/cli.js', '--port', '0', '--host', '127.0.0.1', '--redis', redis.url]
  const child = spawn(process.execPath, args, { cwd: root, env, stdio: ['pipe', 'pipe', 'pipe'], detached: true })
  let out = ''
  child.stdout?.on('data', (d) => { out += String(d) })
  child.stderr?.on('data', (d) => { out += String(d) })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }))
  })
  const server: Server = { name, child, url: '', exited, output: () => out }
  spawned.push(server)
  const line = kind === 'fixture' ? /^listening (ws:\/\/\S+)$/m : /^signalyard listening on (ws:\/\/\S+) \(bound to [^)]+\)$/m
  await until(() => {
    if (child.exitCode !== null) throw new Error(`${name} exited (${child.exitCode}) before listening:\n${out}`)
    const m = line.exec(out)
    if (m !== null) server.url = m[1]
    return m !== null
  }, 8000, `${name} listening (output so far: ${JSON.stringify(out)})`)
  return server
}

/** Three running processes: a fresh one takes the place of any that died (P1 after the SIGKILL test). */
async function threeRunning (): Promise<void> {
  for (let i = 0; i < servers.length; i++) {
    const s = servers[i]
    if (s.child.exitCode !== null || s.child.signalCode !== null) servers[i] = await startServer(`P${spawned.length + 1}`)
  }
}

/** SIGTERM and the exit code. */
async function stopServer (server: Server): Promise<number | null> {
  server.child.kill('SIGTERM')
  const { code, signal } = await within(server.exited, 6000, `${server.name} exits after SIGTERM`)
  assert.is(signal, null, `${server.name} exited by itself, not by ${String(signal)}:\n${server.output()}`)
  return code
}

// ── clients ──

let clientCount = 0

interface Clients {
  /** A channel on its own socket; `url` may be a list (failover). */
  channel: (ns: string, url: string | string[], extra?: Partial<ChannelOptions>) => Channel
}

/** Run a test body with clients that are all closed afterwards, pass or fail. */
async function withClients (body: (c: Clients) => Promise<void>): Promise<void> {
  const channels: Channel[] = []
  const channel: Clients['channel'] = (ns, url, extra = {}) => {
    const tag = `c=${++clientCount}`
    const urls = (Array.isArray(url) ? url : [url]).map((u) => `${u}${u.includes('?') ? '&' : '?'}${tag}`)
    const c = SignalChannel(ns, { url: urls, ...FAST, ...extra })
    channels.push(c)
    return c
  }
  try {
    await body({ channel })
  } finally {
    for (const c of channels) c.close()
  }
}

type Emitter = Pick<EventEmitter, 'on' | 'off'>

/** The next `event` whose arguments satisfy `pred`, or a rejection after `ms`. */
function nextWhere (emitter: Emitter, event: string, pred: (...args: any[]) => boolean, ms: number, what: string): Promise<any[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { emitter.off(event, on); reject(new Error(`${what}: no matching '${event}' within ${ms} ms`)) }, ms)
    const on = (...args: any[]): void => {
      if (!pred(...args)) return
      clearTimeout(timer)
      emitter.off(event, on)
      resolve(args)
    }
    emitter.on(event, on)
  })
}

/** Every first argument of `event` from now on. */
function record<T = unknown> (emitter: Emitter, event: string): T[] {
  const got: T[] = []
  emitter.on(event, (value: T) => { got.push(value) })
  return got
}

/** The HTTP status a WebSocket upgrade gets (101 when accepted; the socket is closed at once). */
function upgradeStatus (url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, 'signalyard.2')
    ws.once('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); ws.terminate() })
    ws.once('upgrade', () => { resolve(101); ws.terminate() })
    ws.once('error', (err) => reject(err))
  })
}

const failure = (p: Promise<unknown>): Promise<SignalyardError | null> => p.then(() => null, (err: SignalyardError) => err)

// ── Redis inspection ──

/** The strings of a RESP reply (array of bulk strings, or one bulk string / integer); nil entries skipped. */
function strings (reply: string): string[] {
  const lines = reply.split('\r\n')
  const out: string[] = []
  let i = 0
  const head = lines[i++]
  if (head.startsWith(':') || head.startsWith('+')) return [head.slice(1)]
  if (head.startsWith('$')) return head === '$-1' ? [] : [lines[i]]
  if (!head.startsWith('*')) throw new Error(`unexpected Redis reply ${JSON.stringify(reply)}`)
  const n = Number(head.slice(1))
  for (let k = 0; k < n; k++) {
    const len = lines[i++]
    if (len === '$-1') continue
    out.push(lines[i++])
  }
  return out
}

const redisStrings = async (...args: string[]): Promise<string[]> => strings(await redis.command(...args))

// ── setup ──

test.before(async () => {
  redis = await startRedis()
  servers.push(...await Promise.all(['P1', 'P2', 'P3'].map((name) => startServer(name))))
})

test.after(async () => {
  for (const s of spawned) {
    try { process.kill(-(s.child.pid as number), 'SIGKILL') } catch { /* gone already */ }
  }
  // within(): its timer keeps the loop alive while the (unref'd) redis-server child is stopped
  if (redis !== undefined) await within(redis.stop(), 3000, 'redis-server stops')
  // node-datachannel's native threads hold the event loop until its documented cleanup() runs.
  nodeDataChannel.cleanup()
})

// ── 1. echo ──

test('echo: a subscriber on each process gets every message of two publishers on two processes exactly once, in per-sender order', () => withClients(async ({ channel }) => {
  const ns = 'cluster-echo'
  const subs = servers.map((s) => channel(ns, s.url).echo())
  const pubA = channel(ns, servers[0].url).echo({ self: false })
  const pubB = channel(ns, servers[1].url).echo({ self: false })
  await readyAll(...subs, pubA, pubB)
  const got = subs.map((s) => {
    const list: Array<{ data: { s: string, n: number }, from: string }> = []
    s.on('data', (data, { from }) => { list.push({ data: data as { s: string, n: number }, from }) })
    return list
  })
  const fromB = record<{ s: string, n: number }>(pubA, 'data')
  const N = 300
  const started = Date.now()
  for (let n = 0; n < N; n++) {
    pubA.send({ s: 'A', n })
    pubB.send({ s: 'B', n })
  }
  await until(() => got.every((list) => list.length >= 2 * N) && fromB.length >= N, 5000, `${2 * N} messages on every subscriber`)
  const ms = Date.now() - started
  await sleep(300) // a duplicate (one delivery per process, say) would have come by now
  const all = Array.from({ length: N }, (_, n) => n)
  got.forEach((list, i) => {
    assert.is(list.length, 2 * N, `subscriber on ${servers[i].name}: each message once`)
    for (const [sender, stream] of [['A', pubA], ['B', pubB]] as const) {
      const mine = list.filter((m) => m.data.s === sender)
      assert.equal(mine.map((m) => m.data.n), all, `subscriber on ${servers[i].name}: ${sender}'s messages in order`)
      assert.ok(mine.every((m) => m.from === stream.id), `${sender}'s messages carry its stream id`)
    }
  })
  assert.is(fromB.length, N, 'a publisher (self: false) gets the other publisher\'s messages once, not its own')
  assert.equal(fromB.map((m) => m.n), all)
  console.log(`cluster: echo 2×${N} messages from 2 processes to subscribers on 3 processes in ${ms} ms`)
}))

// ── 2. kv ──

test('kv: writes, snapshots, expiry (one delete per replica) and 32 contended writers agree across processes', () => withClients(async ({ channel }) => {
  const ns = 'cluster-kv'
  const [rA, rB, rC] = servers.map((s) => channel(ns, s.url).kv())
  await readyAll(rA, rB, rC)
  await within(rA.set('color', 'red'), 2000, 'set on P1')
  await until(() => rB.get('color') === 'red' && rC.get('color') === 'red', 2000, 'replicas on P2 and P3 see the write')
  const late = channel(ns, servers[2].url).kv()
  await readyAll(late)
  assert.is(late.get('color'), 'red', 'a late joiner on P3 gets the snapshot')

  // expiry: exactly one expire per replica (wire-level, so a second expire of the same key by
  // another process is seen even though a replica would ignore it), within TTL + 1 s
  const raws: RawClient[] = []
  try {
    for (const s of servers) {
      const raw = await rawClient({ url: s.url }, raws)
      const answer = await raw.open(1, { ep: 'kv', ns })
      assert.is(answer.type, FrameType.Opened)
    }
    const isExpire = (f: RawFrame): boolean => f.type === FrameType.Event && f.meta?.op === 'expire' && f.meta?.key === 'short-lived'
    const replicas = [rA, rB, rC, late]
    const deletes = replicas.map((r) => {
      const list: string[] = []
      r.on('delete', (key, reason) => { if (key === 'short-lived') list.push(reason) })
      return list
    })
    const TTL = 300
    const setAt = Date.now()
    await within(rB.set('short-lived', { v: 1 }, { ttl: TTL }), 2000, 'set with ttl on P2')
    await until(() => replicas.every((r) => r.get('short-lived') !== undefined || deletes[replicas.indexOf(r)].length > 0), 1000, 'the key reached every replica')
    await until(() => deletes.every((d) => d.length >= 1), TTL + 1000, 'a delete on every replica within TTL + 1 s')
    const expiredAfter = Date.now() - setAt
    await sleep(500) // several sweep intervals of every process: a second expiry would be out by now
    deletes.forEach((d, i) => assert.equal(d, ['expired'], `replica ${i}: exactly one delete, reason 'expired'`))
    raws.forEach((raw, i) => {
      const expires = raw.frames.filter(isExpire)
      assert.is(expires.length, 1, `connection on ${servers[i].name} got ${expires.length} expire EVENTs for the key (one per yard, not per process)`)
    })
    assert.ok(expiredAfter >= TTL - 50, `not expired early (${expiredAfter} ms)`)
    assert.equal(await redisStrings('HEXISTS', `${PREFIX}kv:${ns}`, 'short-lived'), ['0'], 'the entry is gone from Redis')
    console.log(`cluster: ttl ${TTL} ms key expired on every replica ${expiredAfter} ms after set, one expire EVENT per connection`)
  } finally {
    for (const raw of raws) raw.ws.terminate()
  }

  // contention: 32 writers of one key spread over the 3 processes converge on one value
  const writers = Array.from({ length: 32 }, (_, i) => channel(ns, servers[i % 3].url).kv())
  await readyAll(...writers)
  await within(Promise.all(writers.map((w, i) => w.set('contended', `writer-${i}`))), 3000, '32 concurrent sets')
  const everyone = [rA, rB, rC, late, ...writers]
  await until(() => {
    const v = rA.get('contended')
    return v !== undefined && everyone.every((r) => r.get('contended') === v)
  }, 2000, 'every replica holds the same value')
  const winner = rA.get('contended')
  const fresh = channel(ns, servers[1].url).kv()
  await readyAll(fresh)
  assert.is(fresh.get('contended'), winner, 'a new replica agrees with the others')
  assert.ok(typeof winner === 'string' && /^writer-\d+$/.test(winner))
  console.log(`cluster: 32 contended writers on 3 processes converged on ${String(winner)}`)
}))

// ── 3. presence ──

test('presence: members, updates and leaves cross processes; an id held live on one process is peer-id-taken on another', () => withClients(async ({ channel }) => {
  const ns = 'cluster-peers'
  const [, p2, p3] = servers
  const obsB = channel(ns, p2.url).createPeers()
  const obsC = channel(ns, p3.url).createPeers()
  await within(Promise.all([obsB.join({ id: 'obs-b' }), obsC.join({ id: 'obs-c' })]), 2000, 'observers join')
  await until(() => obsB.list().some((m) => m.id === 'obs-c') && obsC.list().some((m) => m.id === 'obs-b'), 2000, 'observers see each other across processes')
  const leavesB = record<{ id: string }>(obsB, 'leave')
  const leavesC = record<{ id: string }>(obsC, 'leave')

  const alice = channel(ns, servers[0].url).createPeers()
  const joined = [obsB, obsC].map((o) => nextWhere(o, 'join', (m) => m.id === 'alice', 2000, 'alice joins'))
  await within(alice.join({ id: 'alice', color: 'red' }), 2000, 'alice joins on P1')
  for (const [m] of await Promise.all(joined)) assert.equal(m, { id: 'alice', color: 'red' })
  assert.equal(alice.list().map((m) => m.id).sort(), ['obs-b', 'obs-c'], 'alice\'s snapshot lists members of the other processes')

  const updated = [obsB, obsC].map((o) => nextWhere(o, 'update', (m) => m.id === 'alice', 2000, 'alice updates'))
  await within(alice.join({ id: 'alice', color: 'blue' }), 2000, 'update')
  for (const [m] of await Promise.all(updated)) assert.equal(m, { id: 'alice', color: 'blue' })

  for (const s of [p2, p3]) {
    const mallory = channel(ns, s.url).createPeers()
    const err = await within(failure(mallory.join({ id: 'alice', color: 'black' })), 2000, `mallory on ${s.name}`)
    assert.ok(err instanceof SignalyardError && err.code === 'peer-id-taken', `another owner on ${s.name}: ${String(err)}`)
  }
  await sleep(100)
  assert.equal([...leavesB, ...leavesC], [], 'the refused claims did not disturb alice')
  assert.ok(obsC.list().some((m) => m.id === 'alice' && m.color === 'blue'))

  const started = Date.now()
  const left = [obsB, obsC].map((o) => nextWhere(o, 'leave', (m) => m.id === 'alice', 1500, 'alice leaves'))
  alice.leave()
  await Promise.all(left)
  const leaveMs = Date.now() - started
  // the id is free across processes now
  const bob = channel(ns, p3.url).createPeers()
  const seen = nextWhere(obsB, 'join', (m) => m.id === 'alice', 2000, 'the new alice')
  await within(bob.join({ id: 'alice', color: 'green' }), 2000, 'the released id can be claimed on P3')
  assert.equal((await seen)[0], { id: 'alice', color: 'green' })
  console.log(`cluster: presence leave seen on other processes ${leaveMs} ms after leave()`)
}))

// ── 4. createNode ──

/** Two nodes on two processes connect, exchange data both ways, and a close reaches the other side. */
async function nodePair (c: Clients, ns: string, from: Server, to: Server, transport: 'relay' | 'webrtc'): Promise<void> {
  const extra: Partial<ChannelOptions> = transport === 'webrtc' ? { RTCPeerConnection: WebRTC, rtcConfig: RTC_CONFIG } : {}
  const incoming: PeerConnection[] = []
  const remoteStreams: PeerStream[] = []
  const a = c.channel(ns, from.url, extra).createNode()
  const b = c.channel(ns, to.url, extra).createNode((pc) => {
    incoming.push(pc)
    pc.on('connection', (s) => {
      remoteStreams.push(s)
      s.on('data', (d) => s.send(d))
    })
  })
  const ida = `${transport}-a`
  const idb = `${transport}-b`
  await within(Promise.all([a.listen(ida), b.listen(idb)]), 2000, 'listen')
  // the signal id is owned across processes
  const dup = c.channel(ns, to.url).createNode()
  const err = await within(failure(dup.listen(ida)), 2000, 'listen on a taken id')
  assert.ok(err instanceof SignalyardError && err.code === 'peer-id-taken', `listen on ${ida} from ${to.name}: ${String(err)}`)

  const started = Date.now()
  const pc = a.connect(idb)
  const chat = pc.createStream('chat')
  const echoes = record<unknown>(chat, 'data')
  const back: unknown[] = []
  pc.on('connection', (s) => s.on('data', (d) => back.push(d)))
  const messages: unknown[] = [{ n: 1 }, 'text ✓', new Uint8Array([0, 1, 2, 255]), [1, null]]
  for (const m of messages) chat.send(m)
  await within(pc.ready(), 5000, `${transport} pc.ready()`)
  const openMs = Date.now() - started
  // 'auto' opens on the relay (paired across the processes) and moves to WebRTC live
  assert.is(pc.transport, 'relay')
  await until(() => pc.transport === transport, 5000, `${transport} reached`)
  await until(() => echoes.length === messages.length, 3000, 'echoes from the other process')
  assert.equal(echoes, messages)
  await until(() => incoming.length === 1 && incoming[0].state === 'open', 2000, 'remote pc open')
  assert.is(incoming[0].peerId, ida)
  await until(() => incoming[0].transport === transport, 5000, `the remote side on ${transport}`)
  // the other direction: a stream the remote side opens
  const reverse = incoming[0].createStream('back')
  reverse.send('from b')
  reverse.send(new Uint8Array([9, 8, 7]))
  await until(() => back.length === 2, 3000, 'data from b')
  assert.equal(back, ['from b', new Uint8Array([9, 8, 7])])
  // a close on one side closes the other
  const closedAt = Date.now()
  const remoteClosed = new Promise<void>((resolve) => incoming[0].once('close', () => resolve()))
  pc.close()
  await within(remoteClosed, 2000, 'the remote pc closes')
  console.log(`cluster: ${transport} pair ${from.name}→${to.name} open in ${openMs} ms; close reached the other side in ${Date.now() - closedAt} ms`)
}

test('createNode between clients on different processes: relay, and WebRTC signalled across processes', () => withClients(async (c) => {
  await nodePair(c, 'cluster-mesh', servers[0], servers[1], 'relay')
  await nodePair(c, 'cluster-mesh', servers[1], servers[2], 'webrtc')
}))

// ── 5. a process dies ──

test('SIGKILL: the owner fails over and keeps its id; the survivors reap the dead process\'s ids, relay sides and keys in time', () => withClients(async ({ channel }) => {
  const ns = 'cluster-kill'
  const [p1, p2, p3] = servers
  const observer = channel(ns, p3.url).createPeers()
  await within(observer.join({ id: 'observer' }), 2000, 'observer joins on P3')
  const leaves = record<{ id: string }>(observer, 'leave')

  // the owner: a URL list, first P1 then P2
  const ownerChannel = channel(ns, [p1.url, p2.url])
  const states = record<string>(ownerChannel, 'state')
  const owner = ownerChannel.createPeers()
  const ownerErrors = record<SignalyardError>(owner, 'error')
  await within(owner.join({ id: 'owner', v: 1 }), 2000, 'owner joins on P1')
  // a peer that lives only on P1
  const victim = channel(ns, p1.url).createPeers()
  await within(victim.join({ id: 'victim' }), 2000, 'victim joins on P1')
  await until(() => ['owner', 'victim'].every((id) => observer.list().some((m) => m.id === id)), 2000, 'observer sees both')

  // relay sides on P1: a plain relay pair P1↔P2, and a node pair P1↔P3 over the relay
  const side1 = channel(ns, p1.url).relay({ local: 'k-one', remote: 'k-two' })
  const side2 = channel(ns, p2.url).relay({ local: 'k-two', remote: 'k-one' })
  await readyAll(side1, side2)
  const hello = nextWhere(side2, 'data', () => true, 2000, 'relay data')
  side1.send('across')
  assert.is((await hello)[0], 'across')
  const nodeOnP1 = channel(ns, p1.url).createNode()
  const nodeOnP3 = channel(ns, p3.url).createNode()
  await within(Promise.all([nodeOnP1.listen('dying-node'), nodeOnP3.listen('surviving-node')]), 2000, 'listen')
  const pc = nodeOnP1.connect('surviving-node')
  await within(pc.ready(), 3000, 'node pair open')
  assert.is(pc.transport, 'relay')
  await until(() => nodeOnP3.connections().length === 1 && nodeOnP3.connections()[0].state === 'open', 2000, 'P3 side open')
  const survivorPc = nodeOnP3.connections()[0]

  // which process id is P1's in Redis: the one whose id index holds the victim
  const pcKeys = await redis.keys(`${PREFIX}pc:*`)
  let deadPid = ''
  for (const key of pcKeys) {
    if ((await redisStrings('SMEMBERS', key)).some((m) => m.includes('victim'))) deadPid = key.slice(`${PREFIX}pc:`.length)
  }
  assert.ok(deadPid !== '', `P1's id index found among ${JSON.stringify(pcKeys)}`)
  assert.ok((await redis.keys(`${PREFIX}pr:*`)).some((k) => k.endsWith(deadPid)), 'P1 indexes relay sides')

  const bound = DEAD_AFTER + HEARTBEAT + DEFAULTS.peers.grace + 1000
  const killedAt = Date.now()
  const victimLeft = nextWhere(observer, 'leave', (m) => m.id === 'victim', bound, 'victim leaves')
  const side2Closed = new Promise<number>((resolve) => side2.once('close', () => resolve(Date.now())))
  const survivorClosed = new Promise<number>((resolve) => survivorPc.once('close', () => resolve(Date.now())))
  p1.child.kill('SIGKILL')
  await within(p1.exited, 2000, 'P1 dies')

  // the owner reconnects to P2 and reclaims its id at once
  await until(() => states.includes('reconnecting') && ownerChannel.state === 'open', 3000, 'owner reconnected to P2')
  const reconnectMs = Date.now() - killedAt
  const ownerUpdated = nextWhere(observer, 'update', (m) => m.id === 'owner', 2000, 'owner update')
  await within(owner.join({ id: 'owner', v: 2 }), 2000, 'the owner still holds its id (update accepted on P2)')
  assert.equal((await ownerUpdated)[0], { id: 'owner', v: 2 })

  await victimLeft
  const leaveMs = Date.now() - killedAt
  const [side2At, survivorAt] = await within(Promise.all([side2Closed, survivorClosed]), bound, 'relay sides of P1\'s partners close')
  await sleep(HEARTBEAT * 3) // a reap that wrongly took the reclaimed id would show by now
  assert.equal(leaves.map((m) => m.id), ['victim'], 'the observer saw the victim leave, and not the owner')
  assert.ok(observer.list().some((m) => m.id === 'owner' && m.v === 2), 'the owner is still present')
  assert.equal(ownerErrors.map((e) => e.code), [], 'the owner never got peer-id-taken')
  const intruder = channel(ns, p3.url).createPeers()
  const err = await within(failure(intruder.join({ id: 'owner' })), 2000, 'intruder')
  assert.ok(err instanceof SignalyardError && err.code === 'peer-id-taken', `the owner's id is held live: ${String(err)}`)
  const reclaimVictim = channel(ns, p2.url).createPeers()
  await within(reclaimVictim.join({ id: 'victim' }), 2000, 'the victim\'s id is free after the reap')

  // Redis holds nothing of the dead process
  await until(async () => {
    const keys = [...await redis.keys(`${PREFIX}pc:*`), ...await redis.keys(`${PREFIX}pr:*`)]
    return !keys.some((k) => k.includes(deadPid))
  }, 2000, 'the dead process\'s index keys removed')
  const relayKeys = await redis.keys(`${PREFIX}relay:*`)
  assert.ok(!relayKeys.some((k) => k.includes(ns)), `no relay side of the namespace left: ${JSON.stringify(relayKeys)}`)
  for (const key of await redis.keys(`${PREFIX}*`)) {
    if (key.includes(deadPid)) assert.unreachable(`key ${key} of the dead process left`)
  }
  assert.equal(await redisStrings('ZSCORE', `${PREFIX}procs`, deadPid), [], 'the dead process is out of the procs set')
  assert.ok(!(await redisStrings('HKEYS', `${PREFIX}id:signal:${ns}`)).includes('dying-node'), 'the dead node\'s signal id is gone')
  console.log(`cluster: after SIGKILL of P1 the owner was back on P2 in ${reconnectMs} ms; leave seen ${leaveMs} ms after SIGKILL; ` +
    `relay partners closed after ${side2At - killedAt} ms (plain) and ${survivorAt - killedAt} ms (node) (bound ${bound} ms)`)
}))

// ── 7. Redis restarts ──

test('Redis restart: clients reconnect, echo works across processes again, KV replicas resync to the lost (empty) state', () => withClients(async ({ channel }) => {
  await threeRunning()
  const ns = 'cluster-restart'
  const channels = servers.map((s) => channel(ns, s.url))
  const echoes = channels.map((c) => c.echo())
  const [k1, k2] = [channels[0].kv(), channels[1].kv()]
  await readyAll(...echoes, k1, k2)
  await within(k1.set('before', 'x', { ttl: 60_000 }), 2000, 'set before the restart')
  await until(() => k2.get('before') === 'x', 2000, 'replicated')
  const states = channels.map((c) => record<string>(c, 'state'))
  const reasons = channels.map((c) => {
    const list: string[] = []
    c.on('state', (_state, change) => { list.push(change.reason) })
    return list
  })
  const deleted = [k1, k2].map((k) => record<string>(k, 'delete'))

  const started = Date.now()
  const restarted = redis.restart(300)
  // while Redis is down: clients are dropped with 1012, and a new connection is refused with 503
  await until(() => states.every((s) => s.includes('reconnecting')), 2000, 'clients dropped when Redis went away')
  const status = await within(upgradeStatus(servers[1].url), 2000, 'a WebSocket upgrade while Redis is down')
  await within(restarted, 5000, 'redis restarted')
  assert.is(status, 503, 'a new connection is refused while Redis is down')
  reasons.forEach((r, i) => assert.ok(r.some((reason) => reason.includes('1012')), `client on ${servers[i].name} closed with 1012: ${JSON.stringify(r)}`))
  await until(() => channels.every((c, i) => states[i].includes('reconnecting') && c.state === 'open'), 8000, 'every client reconnected')
  await until(() => [...echoes, k1, k2].every((s) => s.state === 'open'), 3000, 'streams reopened')
  const backMs = Date.now() - started
  // the server's state is empty now: no replica keeps serving the lost key
  await until(() => !k1.has('before') && !k2.has('before'), 2000, 'replicas dropped the lost key')
  assert.equal(k1.keys(), [])
  assert.equal(k2.keys(), [])
  assert.ok(deleted.every((d) => d.includes('before')), 'a delete event for the lost key on each replica')
  const late = channels[2].kv()
  await readyAll(late)
  assert.equal(late.keys(), [], 'the server agrees: empty')

  // echo across processes again
  const got = echoes.map((e) => record<unknown>(e, 'data'))
  echoes[0].send('after the restart')
  echoes[2].send('from P3')
  await until(() => got.every((g) => g.length === 2), 3000, 'echo across processes after the restart')
  for (const g of got) assert.equal([...g].sort(), ['after the restart', 'from P3'])
  // KV works across processes again (short ttl: gone before the shutdown test)
  await within(k2.set('after', 1, { ttl: 300 }), 2000, 'set after the restart')
  await until(() => k1.get('after') === 1 && late.get('after') === 1, 2000, 'replicated after the restart')
  await until(() => !k1.has('after'), 2000, 'expired')
  console.log(`cluster: Redis down 300 ms; clients on 3 processes back and streams reopened ${backMs} ms after the restart began`)
}))

// ── 6. clean shutdown ──

test('clean shutdown: with clients gone and every process stopped by SIGTERM (exit 0), Redis holds no key of the prefix', async () => {
  await threeRunning()
  await withClients(async ({ channel }) => {
    const ns = 'cluster-shutdown'
    const peers = channel(ns, servers[0].url).createPeers()
    await within(peers.join({ id: 'leaving' }), 2000, 'join')
    const node = channel(ns, servers[1].url).createNode()
    await within(node.listen('listening-node'), 2000, 'listen')
    const r1 = channel(ns, servers[1].url).relay({ local: 's-a', remote: 's-b' })
    const r2 = channel(ns, servers[2].url).relay({ local: 's-b', remote: 's-a' })
    await readyAll(r1, r2)
    const kv = channel(ns, servers[2].url).kv()
    await readyAll(kv)
    const expired = nextWhere(kv, 'delete', (key) => key === 'brief', 1500, 'expiry')
    await within(kv.set('brief', 1, { ttl: 200 }), 2000, 'set')
    await expired
    assert.ok((await redis.keys(`${PREFIX}*`)).length > 0, 'the cluster keeps state in Redis while it runs')
  })
  await sleep(200) // the CLOSE frames reach the servers
  const codes = await Promise.all(servers.map((s) => stopServer(s)))
  assert.equal(codes, [0, 0, 0], `every process exits 0 after SIGTERM:\n${servers.map((s) => `${s.name}: ${s.output()}`).join('\n')}`)
  const left = await redis.keys(`${PREFIX}*`)
  assert.equal(left, [], `keys left in Redis: ${JSON.stringify(left)}`)
})

// ── the real CLI ──
//
// After the fixtures are gone, so that every process of this cluster runs the CLI's defaults
// (heartbeat 1000, deadAfter 5000): a reaper judges others by its own deadAfter, so a CLI process
// beating once a second next to fixtures with deadAfter 1000 would be a misconfigured cluster.

test('the real CLI (node dist/cli.js --redis): two CLI processes act as one yard; SIGTERM exits 0 and leaves no key', () => withClients(async ({ channel }) => {
  const [a, b] = await Promise.all([startServer('CLI-A', 'cli'), startServer('CLI-B', 'cli')])
  try {
    const ns = 'cluster-cli'
    const ea = channel(ns, a.url).echo()
    const eb = channel(ns, b.url).echo()
    const ka = channel(ns, a.url).kv()
    const kb = channel(ns, b.url).kv()
    await readyAll(ea, eb, ka, kb)
    const there = nextWhere(eb, 'data', (d) => d === 'a to b', 2000, 'echo A → B')
    const back = nextWhere(ea, 'data', (d) => d === 'b to a', 2000, 'echo B → A')
    ea.send('a to b')
    eb.send('b to a')
    await Promise.all([there, back])
    await within(kb.set('via', 'B', { ttl: 400 }), 2000, 'set on B')
    await until(() => ka.get('via') === 'B', 2000, 'A\'s replica sees it')
    const pa = channel(ns, a.url).createPeers()
    const pb = channel(ns, b.url).createPeers()
    const leaves = record<{ id: string }>(pa, 'leave')
    await within(Promise.all([pa.join({ id: 'on-a' }), pb.join({ id: 'on-b' })]), 2000, 'join')
    await until(() => pa.list().some((m) => m.id === 'on-b') && pb.list().some((m) => m.id === 'on-a'), 2000, 'members across the CLI processes')
    const mallory = channel(ns, a.url).createPeers()
    const err = await within(failure(mallory.join({ id: 'on-b' })), 2000, 'mallory')
    assert.ok(err instanceof SignalyardError && err.code === 'peer-id-taken', `B's member is held live: ${String(err)}`)
    // several heartbeats: nobody reaps a live process
    await sleep(1500)
    assert.equal(leaves.map((m) => m.id), [], 'nobody left')
    await until(() => !ka.has('via') && !kb.has('via'), 2000, 'the short-lived key expired')
    let pidB = ''
    for (const key of await redis.keys(`${PREFIX}pc:*`)) {
      if ((await redisStrings('SMEMBERS', key)).some((m) => m.includes('on-b'))) pidB = key.slice(`${PREFIX}pc:`.length)
    }
    assert.ok(pidB !== '', 'B indexes its ids in Redis')
    // SIGTERM B while a client is still on it: exit 0; its member leaves (after the grace its
    // socket gets, handed to A), and nothing of B stays in Redis
    const stoppedAt = Date.now()
    const left = nextWhere(pa, 'leave', (m) => m.id === 'on-b', DEFAULTS.peers.grace + 2000, 'B\'s member leaves')
    assert.is(await stopServer(b), 0, `CLI-B exits 0 after SIGTERM:\n${b.output()}`)
    await left
    const leftMs = Date.now() - stoppedAt
    assert.equal(await redisStrings('ZSCORE', `${PREFIX}procs`, pidB), [], 'B is out of the procs set')
    assert.ok(!(await redis.keys(`${PREFIX}*`)).some((k) => k.includes(pidB)), 'no key of B left')
    pa.leave()
    await sleep(100)
    assert.is(await stopServer(a), 0, `CLI-A exits 0 after SIGTERM:\n${a.output()}`)
    const keys = await redis.keys(`${PREFIX}*`)
    assert.equal(keys, [], `keys left in Redis after both CLI processes stopped: ${JSON.stringify(keys)}`)
    console.log(`cluster: CLI-B's member left ${leftMs} ms after its SIGTERM (grace ${DEFAULTS.peers.grace} ms)`)
  } finally {
    for (const s of [a, b]) {
      try { process.kill(-(s.child.pid as number), 'SIGKILL') } catch { /* stopped */ }
    }
  }
}))

test.run()

// bench/scenarios/10-redis-cost.mjs — what one operation costs Redis: round trips, commands (per
// command name), bytes in and out, and redis-server CPU, for signalyard on its Redis broker and for
// socket.io with @socket.io/redis-adapter, each as two server processes on one Redis (one yard:
// same url and prefix), so the paths between processes are taken.
//
// The scenario spawns its own redis-server (bench/lib/redis.mjs). Per operation it runs a batch of
// N operations between two snapshots of `INFO commandstats stats cpu` (after one CONFIG
// RESETSTAT), and divides the difference by N:
//   - commands per op: the commandstats calls (commands that scripts ran are counted too, by name);
//   - bytes in / out per op: total_net_input_bytes / total_net_output_bytes (in = what the servers
//     sent to Redis, out = replies and pub/sub messages Redis wrote to every subscribed process);
//   - Redis CPU-µs per op: used_cpu_user + used_cpu_sys.
// The probe's own INFO traffic is left out to the byte. What the servers do while idle (the Redis
// broker's heartbeats, every 1 s, and KV expiry sweeps, every 100 ms, per process) is measured
// over an idle window first and subtracted in proportion to each batch's duration.
// Round trips per op (commands a server sent, not counting those its scripts ran) come from a
// separate, smaller traced batch with MONITOR on (MONITOR costs Redis CPU and bytes, so it never
// runs during a measured batch): the commands of clients, not `lua`, minus the scripts seen while
// idle (the background).
//
// Clients are raw `ws` sockets speaking signalyard.2 (bench/lib/util.mjs frames), not the package's
// client: what Redis sees is decided by the frames the server gets, and raw frames make each
// operation exactly one frame (a createNode would add its handshake to a directed message; a kv
// replica its bookkeeping), with no client CPU in the way. socket.io uses socket.io-client.
//
// Operations (signalyard): echo publish (1 publisher on process A; subscribers on A and B); kv set
// of a new key and overwrite of an existing one (64-byte values; kv streams open on A and B);
// presence join and leave (joiners on A, in groups of GROUP, a peers stream watching on A and B);
// a directed signal message from an id on A to an id on B (DATA { to, app: 1 }, 256 bytes).
// socket.io: a room broadcast (the same fleet as echo) and an emit to one socket id held by the
// other process (`io.to(id)`, what the adapter does for a directed message).
//
// N is 2,000 (500 with --quick); REDIS_COST_OPS overrides it.
import { io as ioClient } from 'socket.io-client'
import WebSocket from 'ws'
import { diff, startRedis, sumDiffs } from '../lib/redis.mjs'
import { frame, sleep } from '../lib/util.mjs'

export const name = 'redis-cost'
export const title = 'Redis cost per operation: round trips, commands, bytes and Redis CPU (2 processes on one Redis)'

const PREFIX = 'bench-rcost:'
const SIO_PREFIX = 'bench-rcost-sio'
const SUBSCRIBERS_PER_PROCESS = 4
const PAYLOAD = 64
const SIGNAL_PAYLOAD = 256
/** Operations sent before waiting for them to land (bounded: the server's backlog is 1,024 frames). */
const CHUNK = 100
/** Presence joins in flight at once; the namespace holds up to this many joiners + 2 watchers. */
const GROUP = 20
const TRACE_OPS = 40
/** How long MONITOR watches the idle servers to learn their own scripts (heartbeats are 1 s apart). */
const BACKGROUND_MS = 2100
const WAIT_MS = 10_000
const OWNER_KEY = 'bench-redis-cost-owner-key-'

const T = { OPEN: 0x01, CLOSE: 0x02, DATA: 0x03, REQUEST: 0x04, HELLO: 0x10, OPENED: 0x11, CLOSED: 0x12, EVENT: 0x14, REPLY: 0x15, ERROR: 0x16 }

// ---- a raw signalyard.2 client: streams, requests and counts of what arrived --------------------

class Raw {
  constructor (ws) {
    this.ws = ws
    this.nextSid = 1
    this.nextReq = 1
    this.opens = new Map()
    this.requests = new Map()
    this.errors = []
    /** EVENTs by `ep` (and `ep:op` for kv and peers), DATA frames by stream id. */
    this.events = new Map()
    this.data = new Map()
    ws.on('message', (buf) => this.onFrame(buf))
  }

  static connect (url) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, ['signalyard.2'], { perMessageDeflate: false })
      ws.once('error', reject)
      ws.once('open', () => resolve(new Raw(ws)))
    })
  }

  count (map, key) { map.set(key, (map.get(key) ?? 0) + 1) }
  eventCount (key) { return this.events.get(key) ?? 0 }

  onFrame (buf) {
    const type = buf[0]
    const sid = buf.readUInt32BE(1)
    const metaLen = buf.readUInt32BE(6)
    if (type === T.DATA) return this.count(this.data, sid)
    const meta = metaLen > 0 ? JSON.parse(buf.toString('utf8', 10, 10 + metaLen)) : {}
    if (type === T.EVENT) {
      this.count(this.events, meta.ep)
      if (meta.op !== undefined) this.count(this.events, `${meta.ep}:${meta.op}`)
    } else if (type === T.OPENED || type === T.CLOSED) {
      const w = this.opens.get(sid)
      if (w === undefined) return
      this.opens.delete(sid)
      if (type === T.OPENED) w.resolve(sid)
      else w.reject(new Error(`OPEN ${w.ep} refused: ${JSON.stringify(meta)}`))
    } else if (type === T.REPLY || (type === T.ERROR && meta.req !== undefined)) {
      const w = this.requests.get(meta.req)
      if (w === undefined) return
      this.requests.delete(meta.req)
      if (type === T.REPLY) w.resolve(meta)
      else w.reject(new Error(`request refused: ${JSON.stringify(meta)}`))
    } else if (type === T.ERROR) {
      this.errors.push(meta)
    }
  }

  /** OPEN a stream; resolves with its sid on OPENED. */
  open (meta) {
    const sid = this.nextSid++
    return new Promise((resolve, reject) => {
      this.opens.set(sid, { resolve, reject, ep: meta.ep })
      this.ws.send(frame(T.OPEN, sid, 0, meta))
    })
  }

  close (sid) { this.ws.send(frame(T.CLOSE, sid, 0, null)) }
  send (type, sid, kind, meta, payload) { this.ws.send(frame(type, sid, kind, meta, payload)) }

  request (sid, meta, payload) {
    const req = this.nextReq++
    return new Promise((resolve, reject) => {
      this.requests.set(req, { resolve, reject })
      this.ws.send(frame(T.REQUEST, sid, 2, { ...meta, req }, payload))
    })
  }

  terminate () { this.ws.terminate() }
}

async function waitFor (test, what, ms = WAIT_MS) {
  const until = performance.now() + ms
  while (!test()) {
    if (performance.now() > until) throw new Error(`${what}: not within ${ms} ms`)
    await sleep(2)
  }
}

// ---- measuring: windows between probe snapshots, traced batches under MONITOR ------------------

/**
 * One server configuration's measurements. `window(label, ops, fn)` runs fn between two
 * snapshots and adds the difference to `label`; `trace(label, ops, fn)` runs fn with MONITOR on
 * and counts the clients' commands (round trips).
 */
class Meter {
  constructor (redis, probe) {
    this.redis = redis
    this.probe = probe
    this.buckets = new Map()
    this.idle = null
    this.background = new Set()
  }

  bucket (label) {
    let b = this.buckets.get(label)
    if (b === undefined) this.buckets.set(label, b = { label, ops: 0, diffs: [], traceOps: 0, trips: {} })
    return b
  }

  /**
   * The servers at rest: first the scripts they run by themselves (MONITOR over two heartbeats:
   * left out of the round trips), then, without MONITOR, for `ms`: the rates subtracted from
   * every window.
   */
  async rest (ms) {
    const monitor = await this.redis.monitor()
    await sleep(BACKGROUND_MS)
    monitor.close()
    for (const l of monitor.lines) if (l.source !== 'lua' && (l.name === 'evalsha' || l.name === 'eval')) this.background.add(l.args[0])
    await sleep(100)
    const a = await this.probe.snapshot()
    await sleep(ms)
    this.idle = diff(a, await this.probe.snapshot())
  }

  async window (label, ops, fn) {
    const a = await this.probe.snapshot()
    await fn()
    const b = await this.probe.snapshot()
    const bucket = this.bucket(label)
    bucket.ops += ops
    bucket.diffs.push(diff(a, b))
  }

  async trace (label, ops, fn) {
    const monitor = await this.redis.monitor()
    await fn()
    await sleep(20)
    monitor.close()
    const bucket = this.bucket(label)
    bucket.traceOps += ops
    for (const l of monitor.lines) {
      if (l.source === 'lua' || /^(info|config|monitor|client)$/.test(l.name)) continue
      if ((l.name === 'evalsha' || l.name === 'eval') && this.background.has(l.args[0])) continue
      bucket.trips[l.name] = (bucket.trips[l.name] ?? 0) + 1
    }
  }

  /** Per-op figures of a bucket, the idle rates subtracted. */
  result (label) {
    const b = this.bucket(label)
    const d = sumDiffs(b.diffs)
    const idle = this.idle
    const less = (value, rate) => value - (rate / idle.ms) * d.ms
    const calls = {}
    for (const name of new Set([...Object.keys(d.calls), ...Object.keys(idle.calls)])) {
      const n = less(d.calls[name] ?? 0, idle.calls[name] ?? 0) / b.ops
      if (Math.abs(n) >= 0.005) calls[name] = n
    }
    const trips = {}
    for (const [name, n] of Object.entries(b.trips)) trips[name] = n / b.traceOps
    return {
      label,
      ops: b.ops,
      ms: d.ms,
      calls,
      commands: Object.values(calls).reduce((a, n) => a + n, 0),
      trips,
      roundTrips: Object.values(trips).reduce((a, n) => a + n, 0),
      bytesIn: less(d.netIn, idle.netIn) / b.ops,
      bytesOut: less(d.netOut, idle.netOut) / b.ops,
      cpu: less(d.cpu, idle.cpu) / b.ops
    }
  }

  /** The idle rates per second (for the notes). */
  idleRates () {
    const s = this.idle.ms / 1000
    const commands = Object.values(this.idle.calls).reduce((a, n) => a + n, 0)
    return { commands: commands / s, bytesIn: this.idle.netIn / s, bytesOut: this.idle.netOut / s, cpu: this.idle.cpu / s }
  }
}

/** Run `total` operations `send(i)` in chunks of CHUNK, each chunk waited for with `landed(i)`. */
async function inChunks (total, send, landed, what) {
  for (let done = 0; done < total;) {
    const n = Math.min(CHUNK, total - done)
    const sent = []
    for (let i = 0; i < n; i++) sent.push(send(done + i))
    await Promise.all(sent)
    done += n
    await waitFor(() => landed(done), `${what}: ${done} of ${total}`)
  }
}

// ---- signalyard ---------------------------------------------------------------------------------

async function measureSignalyard (ctx, redis, meter, n) {
  const [a, b] = await Promise.all([0, 1].map(() => ctx.startServer('signalyard', { redis: redis.url, prefix: PREFIX })))
  const clients = []
  const connect = async (server, tag) => {
    const c = await Raw.connect(`${server.url}?c=${tag}`)
    clients.push(c)
    return c
  }
  try {
    // Echo: subscribers on both processes, the publisher on A (it receives its own copy too).
    const subs = await Promise.all(Array.from({ length: 2 * SUBSCRIBERS_PER_PROCESS }, (_v, i) => connect(i % 2 === 0 ? a : b, `s${i}`)))
    const publisher = await connect(a, 'pub')
    const echoSid = await publisher.open({ ep: 'echo', ns: 'rc-echo' })
    await Promise.all(subs.map((s) => s.open({ ep: 'echo', ns: 'rc-echo' })))
    // kv: the writer on A, a replica on A and on B.
    const writer = await connect(a, 'kv-writer')
    const kvSid = await writer.open({ ep: 'kv', ns: 'rc-kv' })
    const kvReplicas = [await connect(a, 'kv-a'), await connect(b, 'kv-b')]
    await Promise.all(kvReplicas.map((r) => r.open({ ep: 'kv', ns: 'rc-kv' })))
    // presence: a watcher on A and on B, joiners on A.
    const watchers = [await connect(a, 'peers-a'), await connect(b, 'peers-b')]
    await Promise.all(watchers.map((w, i) => w.open({ ep: 'peers', ns: 'rc-peers', id: `watcher-${i}`, key: `${OWNER_KEY}w${i}`, meta: { role: 'watcher' } })))
    const joiner = await connect(a, 'joiner')
    // signal: an id on A sends to an id on B.
    const sigA = await connect(a, 'sig-a')
    const sigB = await connect(b, 'sig-b')
    const sigSid = await sigA.open({ ep: 'signal', ns: 'rc-sig', id: 'node-a', key: `${OWNER_KEY}sa` })
    const sigBSid = await sigB.open({ ep: 'signal', ns: 'rc-sig', id: 'node-b', key: `${OWNER_KEY}sb` })

    const receivers = [...subs, publisher]
    const payload = Buffer.alloc(PAYLOAD, 0x61)
    const signalPayload = Buffer.alloc(SIGNAL_PAYLOAD, 0x62)
    // Every subscriber receives a probe first: both processes' Redis subscriptions are in place.
    let echoSent = 0
    const publish = () => { echoSent++; publisher.send(T.DATA, echoSid, 2, null, payload) }
    const echoLanded = () => receivers.every((r) => r.eventCount('echo') >= echoSent)
    publish()
    await waitFor(echoLanded, 'echo probe')

    const ops = {
      echo: (count) => inChunks(count, publish, echoLanded, 'echo'),
      kvSet: (count, keyOf) => {
        const base = kvReplicas.map((r) => r.eventCount('kv:set'))
        return inChunks(count, (i) => writer.request(kvSid, { op: 'set', key: keyOf(i), ttl: 600_000 }, payload),
          (done) => kvReplicas.every((r, j) => r.eventCount('kv:set') >= base[j] + done), 'kv set')
      },
      presence: async (count, label, window) => {
        for (let done = 0; done < count; done += GROUP) {
          const g = Math.min(GROUP, count - done)
          const joins = watchers.map((w) => w.eventCount('peers:join'))
          const leaves = watchers.map((w) => w.eventCount('peers:leave'))
          let sids = []
          await window(`${label}join`, g, async () => {
            sids = await Promise.all(Array.from({ length: g }, (_v, i) =>
              joiner.open({ ep: 'peers', ns: 'rc-peers', id: `joiner-${done + i}`, key: `${OWNER_KEY}j${done + i}`, meta: { n: done + i } })))
            await waitFor(() => watchers.every((w, j) => w.eventCount('peers:join') >= joins[j] + g), 'presence joins')
          })
          await window(`${label}leave`, g, async () => {
            for (const sid of sids) joiner.close(sid)
            await waitFor(() => watchers.every((w, j) => w.eventCount('peers:leave') >= leaves[j] + g), 'presence leaves')
          })
        }
      },
      signal: (count) => {
        const base = sigB.data.get(sigBSid) ?? 0
        return inChunks(count, () => sigA.send(T.DATA, sigSid, 2, { to: 'node-b', app: 1 }, signalPayload),
          (done) => (sigB.data.get(sigBSid) ?? 0) >= base + done, 'signal')
      }
    }

    // Warm-up: every script loaded (a first EVALSHA is answered NOSCRIPT and sent again as EVAL).
    await ops.echo(20)
    await ops.kvSet(20, (i) => `warm-${i}`)
    await ops.kvSet(20, (i) => `warm-${i}`)
    await ops.presence(GROUP, 'warm ', (_label, _n, fn) => fn())
    await ops.signal(20)
    if (sigA.errors.length > 0) throw new Error(`signal errors: ${JSON.stringify(sigA.errors.slice(0, 3))}`)
    await sleep(200)
    await meter.rest(ctx.quick ? 1500 : 3000)

    const traced = (label, fn) => meter.trace(label, TRACE_OPS, () => fn(TRACE_OPS))
    const measured = (label, fn) => meter.window(label, n, () => fn(n))
    await traced('echo publish', ops.echo)
    await measured('echo publish', ops.echo)
    await traced('kv set, new key', (k) => ops.kvSet(k, (i) => `trace-${i}`))
    await measured('kv set, new key', (k) => ops.kvSet(k, (i) => `key-${i}`))
    await traced('kv set, overwrite', (k) => ops.kvSet(k, (i) => `key-${i}`))
    await measured('kv set, overwrite', (k) => ops.kvSet(k, (i) => `key-${i}`))
    await ops.presence(TRACE_OPS, 'presence ', (label, g, fn) => meter.trace(label, g, fn))
    await ops.presence(n, 'presence ', (label, g, fn) => meter.window(label, g, fn))
    await traced('directed signal A → B', ops.signal)
    await measured('directed signal A → B', ops.signal)
    if (sigA.errors.length > 0 || joiner.errors.length > 0) throw new Error(`errors: ${JSON.stringify([...sigA.errors, ...joiner.errors].slice(0, 3))}`)
    return ['echo publish', 'kv set, new key', 'kv set, overwrite', 'presence join', 'presence leave', 'directed signal A → B'].map((l) => meter.result(l))
  } finally {
    for (const c of clients) c.terminate()
    await Promise.allSettled([a.stop(), b.stop()])
  }
}

// ---- socket.io with @socket.io/redis-adapter ----------------------------------------------------

function sioConnect (server, query, counts) {
  return new Promise((resolve, reject) => {
    const socket = ioClient(server.url, { transports: ['websocket'], forceNew: true, reconnection: false, query })
    socket.on('msg', () => { counts.set(socket, (counts.get(socket) ?? 0) + 1) })
    socket.once('connect', () => resolve(socket))
    socket.once('connect_error', reject)
  })
}

async function measureSocketio (ctx, redis, meter, n) {
  const [a, b] = await Promise.all([0, 1].map(() => ctx.startServer('socketio', { redis: redis.url, prefix: SIO_PREFIX })))
  const counts = new Map()
  const sockets = []
  try {
    const subs = await Promise.all(Array.from({ length: 2 * SUBSCRIBERS_PER_PROCESS }, (_v, i) => sioConnect(i % 2 === 0 ? a : b, { join: 'r' }, counts)))
    const publisher = await sioConnect(a, { join: 'r' }, counts)
    const target = await sioConnect(b, {}, counts)
    sockets.push(...subs, publisher, target)
    const receivers = [...subs, publisher]
    const data = 'a'.repeat(PAYLOAD)
    const signal = 'b'.repeat(SIGNAL_PAYLOAD)
    const got = (s) => counts.get(s) ?? 0
    // The adapter subscribes after the servers said ready: publish until one reached everyone.
    for (let tries = 0; ; tries++) {
      if (tries > 200) throw new Error('socket.io probe: no broadcast reached every subscriber')
      const before = receivers.map(got)
      publisher.emit('pub', 'r', data)
      await sleep(50)
      if (receivers.every((s, i) => got(s) > before[i])) break
    }
    await sleep(100)
    const base = new Map(receivers.map((s) => [s, got(s)]))
    let sent = 0
    const broadcast = () => { sent++; publisher.emit('pub', 'r', data) }
    const landed = () => receivers.every((s) => got(s) - base.get(s) >= sent)
    const ops = {
      broadcast: (count) => inChunks(count, broadcast, landed, 'socket.io broadcast'),
      direct: (count) => {
        const from = counts.get(target) ?? 0
        return inChunks(count, () => publisher.emit('pub', target.id, signal), (done) => (counts.get(target) ?? 0) >= from + done, 'socket.io direct')
      }
    }
    await ops.broadcast(20)
    await ops.direct(20)
    await sleep(200)
    await meter.rest(ctx.quick ? 1500 : 3000)
    await meter.trace('room broadcast', TRACE_OPS, () => ops.broadcast(TRACE_OPS))
    await meter.window('room broadcast', n, () => ops.broadcast(n))
    await meter.trace('emit to one socket id on B', TRACE_OPS, () => ops.direct(TRACE_OPS))
    await meter.window('emit to one socket id on B', n, () => ops.direct(n))
    return ['room broadcast', 'emit to one socket id on B'].map((l) => meter.result(l))
  } finally {
    for (const s of sockets) s.disconnect()
    await Promise.allSettled([a.stop(), b.stop()])
  }
}

// ---- the scenario -------------------------------------------------------------------------------

export async function run (ctx) {
  const n = Number(process.env.REDIS_COST_OPS ?? (ctx.quick ? 500 : 2000))
  const bound = ctx.deadline(ctx.quick ? 40_000 : 120_000)
  let redis = null
  let probe = null
  try {
    redis = await startRedis()
    const version = await redis.version()
    ctx.log(`redis-server ${version} ${redis.url} (pid ${redis.pid}) ready`)
    probe = await redis.probe()
    await probe.reset()
    const sy = new Meter(redis, probe)
    const t0 = performance.now()
    const syRows = await Promise.race([bound, measureSignalyard(ctx, redis, sy, n)])
    ctx.log(`signalyard: ${((performance.now() - t0) / 1000).toFixed(1)} s`)
    for (const r of syRows) ctx.log(`  ${r.label}: ${r.roundTrips.toFixed(2)} round trips, ${r.commands.toFixed(2)} commands, ${r.bytesIn.toFixed(0)} B in, ${r.bytesOut.toFixed(0)} B out, ${r.cpu.toFixed(2)} CPU-µs per op`)
    const sio = new Meter(redis, probe)
    const t1 = performance.now()
    const sioRows = await Promise.race([bound, measureSocketio(ctx, redis, sio, n)])
    ctx.log(`socket.io: ${((performance.now() - t1) / 1000).toFixed(1)} s`)
    for (const r of sioRows) ctx.log(`  ${r.label}: ${r.roundTrips.toFixed(2)} round trips, ${r.commands.toFixed(2)} commands, ${r.bytesIn.toFixed(0)} B in, ${r.bytesOut.toFixed(0)} B out, ${r.cpu.toFixed(2)} CPU-µs per op`)
    return report({ syRows, sioRows, sy: sy.idleRates(), sio: sio.idleRates(), n, version, quick: ctx.quick })
  } finally {
    bound.cancel?.()
    probe?.close()
    await redis?.stop()
  }
}

// ---- the table ----------------------------------------------------------------------------------

const num = (v) => (Math.abs(v - Math.round(v)) < 0.005 ? String(Math.round(v)) : v.toFixed(2))
const breakdown = (calls) => Object.entries(calls).sort((x, y) => y[1] - x[1] || x[0].localeCompare(y[0])).map(([k, v]) => `${k} ${num(v)}`).join(', ')

function report ({ syRows, sioRows, sy, sio, n, version, quick }) {
  const columns = ['operation', 'server', 'round trips / op', 'Redis commands / op', 'commands by name / op (scripts\' own included)', 'bytes in / op', 'bytes out / op', 'Redis CPU-µs / op']
  const row = (server) => (r) => [r.label, server, num(r.roundTrips) + (Object.keys(r.trips).length > 0 ? ` (${breakdown(r.trips)})` : ''), num(r.commands), breakdown(r.calls), Math.round(r.bytesIn), Math.round(r.bytesOut), r.cpu]
  const rows = [...syRows.map(row('signalyard, Redis broker')), ...sioRows.map(row('socket.io + redis-adapter'))]
  const description = 'What one operation costs the Redis that a yard runs on: two server processes (A and B) on one ' +
    `redis-server ${version} spawned by the scenario, measured with CONFIG RESETSTAT, then \`INFO commandstats stats cpu\` ` +
    `before and after a batch of ${n} operations of one kind (presence: joins and leaves in groups of ${GROUP}), divided by ${n}. ` +
    'Commands count what scripts ran too (by name); round trips are the commands a server sent (MONITOR over a separate ' +
    `batch of ${TRACE_OPS}). Bytes in = what the servers sent Redis; bytes out = replies and pub/sub messages to every ` +
    'subscribed process. The servers\' idle work (heartbeats, KV sweeps) is measured apart and subtracted.'
  const notes = [
    `Fleet: ${2 * SUBSCRIBERS_PER_PROCESS} subscribers (half on each process) + the publisher on A for echo and the socket.io room; ` +
      `payload ${PAYLOAD} bytes (echo, room broadcast, kv values), ${SIGNAL_PAYLOAD} bytes (directed messages). Redis work per publish does ` +
      'not grow with subscribers: each process subscribes once per topic (signalyard) or once per namespace pattern (socket.io), ' +
      'and frames the message for its own sockets.',
    `Presence: a watcher on A and on B, joiners on A in groups of ${GROUP} (the namespace holds 2 to ${GROUP + 2} members, so a ` +
      'join\'s member list is short); a leave is a CLOSE (released at once).',
    'Clients are raw ws sockets (signalyard.2) and socket.io-client: each operation is exactly one frame / emit; what Redis sees ' +
      'is decided by the server.',
    `Subtracted idle work, per second: signalyard pair ${sy.commands.toFixed(0)} commands, ${sy.bytesIn.toFixed(0)} B in, ` +
      `${sy.bytesOut.toFixed(0)} B out, ${(sy.cpu / 1e4).toFixed(2)} % of a core (heartbeats 1/s and KV sweeps 10/s per process); ` +
      `socket.io pair ${sio.commands.toFixed(0)} commands, ${(sio.cpu / 1e4).toFixed(2)} % of a core. Fractions of a command in the ` +
      'breakdown are what is left of that subtraction (the sweeps run on a timer), not real work.',
    `Redis CPU per op (INFO cpu: used_cpu_user + used_cpu_sys) is the noisiest figure (${quick ? 'quick mode: small batches; ' : ''}the idle CPU is subtracted, and other processes share the cores); the command and byte counts are exact up to the idle subtraction. ` +
      'A signalyard script costs Redis more than the commands it runs: most of its time is the Lua itself (building and parsing length-prefixed records).'
  ]
  return { description, columns, rows, notes }
}

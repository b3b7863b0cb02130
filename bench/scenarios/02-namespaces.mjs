// bench/scenarios/02-namespaces.mjs — many namespaces: 1,000 namespaces × 5 subscribers with
// join/leave churn while publishes go on, against signalyard echo and three baselines (raw ws
// pre-framed, raw ws naive, socket.io rooms), interleaved per step; then every subscriber leaves
// every namespace and the server's heap (after GC) is compared with the heap it had before, to show
// that empty namespaces leave no memory behind.
//
// Load: 1,000 sockets per server, each a member of 5 namespaces (namespace k starts with sockets
// k, k+200, k+400, … mod 1,000), all in this (the load generator's) process. Signalyard sockets are
// plain `ws` clients speaking signalyard.2 (one echo stream per membership: OPEN to join, CLOSE to
// leave, DATA to publish; EVENT payloads read without parsing their meta) to keep the generator
// light; the baselines use `ws` and `socket.io-client` with the protocols in the headers of
// bench/servers/ws-naive.mjs and socketio.mjs (join/leave/pub on rooms).
// Per tick: publishes at the step's rate, each from a random socket to one of its joined
// namespaces (every member gets it, the publisher included), and churn moves (a socket leaves one
// of its namespaces and joins another one it is not in, so namespaces empty and come back).
//
// Reach: a message counts as expected for each member that was joined (join acknowledged, leave not
// yet sent) when it was published, and as received when it arrives at a member whose acknowledged
// membership covered its send time. A leave that races a publish can legitimately lose a message,
// so reach under churn may sit a hair under 100 % for every server alike.
import { performance } from 'node:perf_hooks'
import WebSocket from 'ws'
import { io } from 'socket.io-client'
import { Reservoir, cpuDelta, fmtPercent, fmtRatio, ratio } from '../lib/stats.mjs'
import { inBatches, sleep, within } from '../lib/util.mjs'

export const name = 'namespaces'
export const title = 'Many namespaces: 1,000 namespaces × 5 subscribers with join/leave churn'

const NAMESPACES = 1000
const PER_NAMESPACE = 5
const SOCKETS = 1000
const KINDS = ['signalyard', 'ws-preframed', 'ws-naive', 'socketio']
const LABEL = { signalyard: 'signalyard echo', 'ws-preframed': 'ws pre-framed', 'ws-naive': 'ws naive', socketio: 'socket.io rooms' }
const CONNECT_BATCH = 100
const CONNECT_TIMEOUT = 20_000
const SETTLE_TIMEOUT = 5_000
const PAD = 'x'.repeat(24)
const PAD_BYTES = 20




/** Namespace k of generation `gen`: every generation uses names never used before. */
const nsName = (k, gen) => `ns-${k}.${gen}`
const nsIndex = (room) => parseInt(room.slice(3), 10)

// ---- membership bookkeeping, common to every server kind ----

/**
 * What the generator knows about one server's sockets and namespaces: for each socket the
 * namespaces it is in (joining or joined) with the intervals its membership was acknowledged, the
 * number of joined members per namespace, and the current step's counters.
 */
class Yard {
  constructor () {
    /** Members per namespace whose join was acknowledged and who have not sent leave. */
    this.joined = new Int32Array(NAMESPACES)
    /** Sockets in each namespace, joining or joined (for counting namespace lifetimes). */
    this.occupied = new Int32Array(NAMESPACES)
    this.lifetimes = 0
    this.joins = 0
    /** Generation of namespace names: joinAll() starts a new one. */
    this.gen = 0
    this.refused = 0
    this.step = null
  }

  /** A socket's bookkeeping record. */
  socket (index) {
    return { index, current: new Map(), recs: new Map() }
  }

  joining (c, k) {
    let rec = c.recs.get(k)
    if (rec === undefined) c.recs.set(k, rec = { state: 'joining', from: Infinity, to: -Infinity, prevFrom: Infinity, prevTo: -Infinity, sid: 0, name: '' })
    rec.state = 'joining'
    rec.name = nsName(k, this.gen)
    c.current.set(k, rec)
    if (this.occupied[k]++ === 0) this.lifetimes++
    this.joins++
    return rec
  }

  acked (c, k) {
    const rec = c.recs.get(k)
    if (rec === undefined || rec.state !== 'joining') return
    rec.state = 'joined'
    rec.prevFrom = rec.from
    rec.prevTo = rec.to
    rec.from = performance.now()
    rec.to = Infinity
    this.joined[k]++
  }

  leaving (c, k) {
    const rec = c.current.get(k)
    if (rec === undefined) return null
    c.current.delete(k)
    if (rec.state === 'joined') {
      rec.to = performance.now()
      this.joined[k]--
    }
    rec.state = 'left'
    this.occupied[k]--
    return rec
  }

  /** A message of namespace k sent at `sent` (generator clock) arrived at socket c. */
  received (c, k, sent) {
    const s = this.step
    if (s === null || sent < s.start || sent > s.end) return
    const rec = c.recs.get(k)
    if (rec === undefined) return
    if (!((rec.from <= sent && sent < rec.to) || (rec.prevFrom <= sent && sent < rec.prevTo))) { s.stray++; return }
    const now = performance.now()
    s.received++
    s.lastReceive = now
    s.latency.add(now - sent)
  }

  /** Counted at publish time: every member joined now should get it. */
  published (k) {
    if (this.step !== null) { this.step.expected += this.joined[k]; this.step.published++ }
  }
}

// ---- one fleet of sockets per server kind ----
// fleet = { sockets: [c], join(c, k), leave(c, k), publish(c, k), close() }, c from Yard.socket().

function signalyardFrame (type, sid, meta, payload) {
  const json = meta === null ? null : Buffer.from(JSON.stringify(meta))
  const metaLen = json?.length ?? 0
  const out = Buffer.allocUnsafe(10 + metaLen + (payload?.length ?? 0))
  out[0] = type
  out.writeUInt32BE(sid, 1)
  out[5] = payload === undefined ? 0 : 2
  out.writeUInt32BE(metaLen, 6)
  json?.copy(out, 10)
  payload?.copy(out, 10 + metaLen)
  return out
}

async function signalyardFleet (server, yard) {
  const sockets = await inBatches(SOCKETS, CONNECT_BATCH, (i) => new Promise((resolve, reject) => {
    const ws = new WebSocket(server.url, ['signalyard.2'], { perMessageDeflate: false })
    const c = yard.socket(i)
    c.ws = ws
    c.nextSid = 1
    c.bySid = new Map()
    ws.on('error', reject)
    ws.on('message', (data) => {
      const type = data[0]
      if (type === 0x14) { // EVENT: payload = f64 sent, u32 namespace, padding
        const at = 10 + data.readUInt32BE(6)
        return yard.received(c, data.readUInt32BE(at + 8), data.readDoubleBE(at))
      }
      if (type === 0x11) { // OPENED
        const k = c.bySid.get(data.readUInt32BE(1))
        if (k !== undefined) yard.acked(c, k)
        return
      }
      if (type === 0x12) { // CLOSED: an OPEN was refused
        const sid = data.readUInt32BE(1)
        const k = c.bySid.get(sid)
        if (k !== undefined && c.current.get(k)?.sid === sid) { yard.refused++; yard.leaving(c, k); c.bySid.delete(sid) }
      }
    })
    ws.once('open', () => { ws.off('error', reject); ws.on('error', () => {}); resolve(c) })
  }))
  return {
    sockets,
    join (c, k) {
      const rec = yard.joining(c, k)
      rec.sid = c.nextSid++
      c.bySid.set(rec.sid, k)
      c.ws.send(signalyardFrame(0x01, rec.sid, { ep: 'echo', ns: rec.name }))
    },
    leave (c, k) {
      const rec = yard.leaving(c, k)
      if (rec === null) return
      c.bySid.delete(rec.sid)
      c.ws.send(signalyardFrame(0x02, rec.sid, null))
    },
    publish (c, k) {
      const payload = Buffer.alloc(12 + PAD_BYTES)
      payload.writeDoubleBE(performance.now(), 0)
      payload.writeUInt32BE(k, 8)
      c.ws.send(signalyardFrame(0x03, c.current.get(k).sid, null, payload))
    },
    close () { for (const c of sockets) c.ws.terminate() }
  }
}

async function wsFleet (server, yard) {
  const sockets = await inBatches(SOCKETS, CONNECT_BATCH, (i) => new Promise((resolve, reject) => {
    const ws = new WebSocket(server.url, { perMessageDeflate: false })
    const c = yard.socket(i)
    c.ws = ws
    ws.on('error', reject)
    ws.on('message', (raw) => {
      const m = JSON.parse(String(raw))
      if (m.op === 'joined') return yard.acked(c, nsIndex(m.room))
      if (m.op === undefined && m.data !== undefined) yard.received(c, m.data.k, m.data.t)
    })
    ws.once('open', () => { ws.off('error', reject); ws.on('error', () => {}); resolve(c) })
  }))
  return {
    sockets,
    join (c, k) {
      c.ws.send(JSON.stringify({ op: 'join', room: yard.joining(c, k).name }))
    },
    leave (c, k) {
      const rec = yard.leaving(c, k)
      if (rec !== null) c.ws.send(JSON.stringify({ op: 'leave', room: rec.name }))
    },
    publish (c, k) {
      c.ws.send(JSON.stringify({ op: 'pub', room: c.current.get(k).name, data: { t: performance.now(), k, p: PAD } }))
    },
    close () { for (const c of sockets) c.ws.terminate() }
  }
}

async function socketioFleet (server, yard) {
  const sockets = await inBatches(SOCKETS, CONNECT_BATCH, (i) => new Promise((resolve, reject) => {
    const socket = io(server.url, { transports: ['websocket'], forceNew: true, reconnection: false, query: { s: String(i) } })
    const c = yard.socket(i)
    c.io = socket
    socket.on('msg', (m) => yard.received(c, m.data.k, m.data.t))
    socket.once('connect', () => resolve(c))
    socket.once('connect_error', reject)
  }))
  return {
    sockets,
    join (c, k) {
      const rec = yard.joining(c, k)
      const name = rec.name
      c.io.emit('join', name, () => { if (c.current.get(k) === rec && rec.name === name) yard.acked(c, k) })
    },
    leave (c, k) {
      const rec = yard.leaving(c, k)
      if (rec !== null) c.io.emit('leave', rec.name)
    },
    publish (c, k) {
      c.io.emit('pub', c.current.get(k).name, { t: performance.now(), k, p: PAD })
    },
    close () { for (const c of sockets) c.io.close() }
  }
}

const FLEETS = { signalyard: signalyardFleet, 'ws-preframed': wsFleet, 'ws-naive': wsFleet, socketio: socketioFleet }

// ---- driving a fleet ----

/**
 * Join the starting layout under fresh namespace names (a new generation): socket i is in
 * namespaces i, i+200, i+400, … (mod 1,000). Resolves when every join is acknowledged.
 */
async function joinAll (fleet, yard) {
  yard.gen++
  const stride = NAMESPACES / PER_NAMESPACE
  for (const c of fleet.sockets) {
    for (let j = 0; j < PER_NAMESPACE; j++) fleet.join(c, (c.index + j * stride) % NAMESPACES)
  }
  const want = SOCKETS * PER_NAMESPACE
  const until = performance.now() + SETTLE_TIMEOUT
  while (yard.joined.reduce((a, b) => a + b, 0) < want) {
    if (performance.now() > until) throw new Error(`joins not acknowledged within ${SETTLE_TIMEOUT} ms`)
    await sleep(10)
  }
}

function leaveAll (fleet) {
  for (const c of fleet.sockets) for (const k of [...c.current.keys()]) fleet.leave(c, k)
}

const pick = (list) => list[Math.floor(Math.random() * list.length)]

/** A random joined membership of a random socket, or null after a few misses. */
function randomMembership (fleet) {
  for (let tries = 0; tries < 8; tries++) {
    const c = pick(fleet.sockets)
    const joined = [...c.current].filter(([, rec]) => rec.state === 'joined')
    if (joined.length > 0) return [c, pick(joined)[0]]
  }
  return null
}

/** One churn move: a socket leaves one of its namespaces and joins one it is not in. */
function move (fleet) {
  const m = randomMembership(fleet)
  if (m === null) return
  const [c, from] = m
  let to
  do to = Math.floor(Math.random() * NAMESPACES); while (c.current.has(to))
  fleet.leave(c, from)
  fleet.join(c, to)
}

/** Publish at `rate`/s with `churn` moves/s for `seconds`; count until the drain bound. */
async function drive ({ server, fleet, yard, rate, churn, seconds, drainMs, measure = true }) {
  const before = await server.stats()
  const s = { start: performance.now(), end: Infinity, published: 0, expected: 0, received: 0, stray: 0, lastReceive: 0, latency: new Reservoir(20_000), moves: 0 }
  yard.step = s
  const total = Math.max(1, Math.round(rate * seconds))
  const totalMoves = Math.round(churn * seconds)
  let sent = 0
  await new Promise((resolve) => {
    const tick = () => {
      const elapsed = (performance.now() - s.start) / 1000
      const dueMoves = Math.min(totalMoves, Math.floor(elapsed * churn))
      while (s.moves < dueMoves) { move(fleet); s.moves++ }
      const due = Math.min(total, Math.floor(elapsed * rate) + 1)
      while (sent < due) {
        const m = randomMembership(fleet)
        if (m !== null) { yard.published(m[1]); fleet.publish(m[0], m[1]) }
        sent++
      }
      if (sent >= total) resolve()
      else setTimeout(tick, 2)
    }
    tick()
  })
  s.end = performance.now()
  const drainUntil = performance.now() + drainMs
  let last = -1
  let quietSince = performance.now()
  while (performance.now() < drainUntil) {
    await sleep(20)
    if (s.received >= s.expected) break
    if (s.received !== last) { last = s.received; quietSince = performance.now() } else if (performance.now() - quietSince > 300) break
  }
  const after = await server.stats()
  yard.step = null
  if (!measure) return null
  const cpu = cpuDelta(before.cpu, after.cpu)
  const { p50, p99 } = s.latency.percentiles([50, 99])
  const span = (s.lastReceive - s.start) / 1000
  return {
    published: s.published,
    expected: s.expected,
    received: s.received,
    stray: s.stray,
    moves: s.moves,
    deliveredPerSec: span > 0 ? s.received / span : NaN,
    reach: s.expected > 0 ? s.received / s.expected : NaN,
    p50,
    p99,
    cpu,
    cpuPerDelivery: s.received > 0 ? cpu / s.received : NaN
  }
}

/** Wait until the server says no namespace is left (stats extra), then GC it and read its memory. */
async function settledHeap (server) {
  const until = performance.now() + SETTLE_TIMEOUT
  let stats = await server.stats()
  while ((stats.extra?.namespaces ?? 0) > 0 && performance.now() < until) {
    await sleep(50)
    stats = await server.stats()
  }
  await sleep(100)
  return server.gc()
}

export async function run (ctx) {
  const rates = ctx.quick ? [2000] : [1000, 3000, 6000]
  const churn = ctx.quick ? 500 : 1000
  const seconds = ctx.quick ? 1 : 4
  const drainMs = ctx.quick ? 1000 : 3000
  const cycles = ctx.quick ? 6 : 10
  const servers = {}
  const fleets = {}
  const yards = {}
  const memory = {}
  try {
    const started = await Promise.all(KINDS.map((kind) => ctx.startServer(kind)))
    KINDS.forEach((kind, i) => { servers[kind] = started[i] })
    for (const kind of KINDS) {
      const yard = yards[kind] = new Yard()
      const t0 = Date.now()
      fleets[kind] = await within(FLEETS[kind](servers[kind], yard), CONNECT_TIMEOUT, `${kind}: connecting ${SOCKETS} sockets`)
      await joinAll(fleets[kind], yard)
      ctx.log(`${kind}: ${SOCKETS} sockets connected, ${SOCKETS * PER_NAMESPACE} memberships joined in ${Date.now() - t0} ms`)
      // Warm-up (not reported): every code path once (publish, churn, namespaces emptied and made),
      // then everyone leaves and the server's heap after GC is the baseline.
      await drive({ server: servers[kind], fleet: fleets[kind], yard, rate: rates[0], churn, seconds: 0.3, drainMs: 300, measure: false })
      leaveAll(fleets[kind])
      memory[kind] = { before: await settledHeap(servers[kind]) }
      yard.lifetimes = 0
      yard.joins = 0
      await joinAll(fleets[kind], yard)
    }
    const results = []
    for (const rate of rates) {
      for (const kind of KINDS) {
        const r = await drive({ server: servers[kind], fleet: fleets[kind], yard: yards[kind], rate, churn, seconds, drainMs })
        results.push({ rate, kind, ...r })
        ctx.log(`${rate} pub/s ${kind}: ${Math.round(r.deliveredPerSec)} delivered/s, reach ${fmtPercent(r.reach)}, p50 ${r.p50?.toFixed(1)} ms, p99 ${r.p99?.toFixed(1)} ms, ${r.cpuPerDelivery.toFixed(2)} CPU-µs/delivery, ${r.moves} moves`)
        await sleep(100)
      }
    }
    // Namespace turnover: everyone leaves, then `cycles` times joins 1,000 namespaces of never used
    // names and leaves them again; then the server is GC'd and compared with the baseline.
    for (const kind of KINDS) {
      const t0 = Date.now()
      const yard = yards[kind]
      leaveAll(fleets[kind])
      for (let i = 0; i < cycles; i++) {
        await joinAll(fleets[kind], yard)
        leaveAll(fleets[kind])
      }
      const after = await settledHeap(servers[kind])
      const m = memory[kind]
      m.after = after
      m.heapLeft = after.mem.heapUsed - m.before.mem.heapUsed
      m.namespacesLeft = after.extra?.namespaces
      m.lifetimes = yard.lifetimes
      m.joins = yard.joins
      m.refused = yard.refused
      ctx.log(`${kind}: after everyone left: heap ${m.heapLeft >= 0 ? '+' : ''}${m.heapLeft} B vs before, ${m.lifetimes} namespace lifetimes (${(m.heapLeft / m.lifetimes).toFixed(1)} B each), ${m.joins} joins, namespaces now ${m.namespacesLeft} (${Date.now() - t0} ms)`)
    }
    return report(results, memory, rates, { churn, seconds, cycles })
  } finally {
    for (const fleet of Object.values(fleets)) fleet.close()
    await Promise.allSettled(Object.values(servers).map((s) => s.stop()))
  }
}

// ---- the table, the ratios, the chart, the verdict ----

function report (results, memory, rates, { churn, seconds, cycles }) {
  const get = (rate, kind) => results.find((r) => r.rate === rate && r.kind === kind)
  const columns = ['publish rate', 'server', 'delivered/s', 'reach', 'p50 ms', 'p99 ms', 'server CPU-µs / delivery', 'signalyard ÷ this (CPU)', 'heap left after all left, B / namespace']
  const rows = []
  for (const rate of rates) {
    const sy = get(rate, 'signalyard')
    for (const kind of KINDS) {
      const r = get(rate, kind)
      rows.push([`${rate}/s`, LABEL[kind], r.deliveredPerSec, fmtPercent(r.reach), r.p50, r.p99, r.cpuPerDelivery, fmtRatio(ratio(sy.cpuPerDelivery, r.cpuPerDelivery)), ''])
    }
  }
  const overall = {}
  for (const kind of KINDS) {
    const mine = results.filter((r) => r.kind === kind)
    overall[kind] = mine.reduce((a, r) => a + r.cpu, 0) / Math.max(1, mine.reduce((a, r) => a + r.received, 0))
  }
  const perNs = (kind) => memory[kind].heapLeft / Math.max(1, memory[kind].lifetimes)
  for (const kind of KINDS) {
    rows.push(['whole run', LABEL[kind], '', '', '', '', overall[kind], kind === 'signalyard' ? '' : fmtRatio(ratio(overall.signalyard, overall[kind])), perNs(kind)])
  }
  const sy = memory.signalyard
  const signed = (n) => `${n >= 0 ? '+' : ''}${Math.round(n).toLocaleString('en-US')}`
  const noLeak = sy.namespacesLeft === 0 && perNs('signalyard') < 32
  const verdict = (ok) => (ok ? 'met' : 'MISSED')
  const notes = [
    `${SOCKETS} sockets per server, each in ${PER_NAMESPACE} of ${NAMESPACES} namespaces (${SOCKETS * PER_NAMESPACE} memberships); each step publishes for ${seconds} s from random members to one of their namespaces while ${churn} churn moves/s (leave one namespace, join another) go on; servers interleaved within each step.`,
    'Delivered/s counts copies received by members; the publisher is a member and gets its own copy from every server (signalyard echo, ws and socket.io rooms alike). CPU per delivery = server process CPU over the step ÷ copies received; "whole run" rows: CPU over every step ÷ every copy.',
    `Server CPU per delivery over the run: signalyard ${overall.signalyard.toFixed(2)} µs, pre-framed ${overall['ws-preframed'].toFixed(2)} µs, naive ${overall['ws-naive'].toFixed(2)} µs, socket.io ${overall.socketio.toFixed(2)} µs (signalyard ÷ pre-framed ${fmtRatio(ratio(overall.signalyard, overall['ws-preframed']))}, ÷ naive ${fmtRatio(ratio(overall.signalyard, overall['ws-naive']))}, ÷ socket.io ${fmtRatio(ratio(overall.signalyard, overall.socketio))}).`,
    `Empty namespaces leave no memory behind: after a warm-up, everyone left and the server was GC'd (stats IPC \`gc\`): that heap is the baseline. Then the measured steps, then ${cycles} cycles of joining 1,000 namespaces with never-used names and leaving them; everyone left, GC again. Signalyard: ${sy.lifetimes.toLocaleString('en-US')} namespaces lived and emptied (${sy.joins.toLocaleString('en-US')} joins), heap ${signed(sy.heapLeft)} B vs the baseline = ${perNs('signalyard').toFixed(1)} B per namespace, yard.health() namespaces ${sy.namespacesLeft} — ${verdict(noLeak)} (bound: 0 namespaces and < 32 B per namespace; ±100 KB of GC noise is ±${(100_000 / Math.max(1, sy.lifetimes)).toFixed(0)} B per namespace here). Baselines: ${KINDS.slice(1).map((k) => `${LABEL[k]} ${signed(memory[k].heapLeft)} B over ${memory[k].lifetimes.toLocaleString('en-US')} namespaces (${memory[k].namespacesLeft ?? '?'} rooms left)`).join('; ')}.`,
    'Signalyard sockets are plain `ws` clients speaking signalyard.2 with a 32-byte binary payload (send time, namespace, padding); the baselines carry ≈ 45 bytes of JSON data. Latency is measured in the load generator, which runs every socket of every server in one process, so its p99 includes the generator\'s own pauses.'
  ]
  const refused = KINDS.filter((k) => memory[k].refused > 0).map((k) => `${LABEL[k]} ${memory[k].refused}`)
  if (refused.length > 0) notes.push(`Refused joins: ${refused.join(', ')}.`)
  const chart = {
    title: 'Many namespaces (with churn): server CPU per delivered message',
    unit: 'CPU-µs / delivery',
    xLabel: 'published messages/s (× 5 members)',
    series: KINDS.map((kind) => ({ label: LABEL[kind], points: rates.map((rate) => [rate, get(rate, kind).cpuPerDelivery]) }))
  }
  return { columns, rows, notes, chart }
}

// bench/scenarios/01-fanout.mjs — fan-out: 1 publisher, 1,000 subscribers in one namespace, at
// stepped publish rates, against signalyard echo and three baselines (raw ws pre-framed, raw ws
// naive, socket.io rooms), interleaved per step.
//
// Every subscriber has its own socket in this (the load generator's) process: signalyard through
// the real client (SignalChannel from dist/node/index.js; a distinct URL per subscriber, `?s=N`,
// so no two share a socket), the baselines through `ws` and `socket.io-client`. The publisher is
// one more socket. Each message carries its step, its sequence number and the time it was sent
// (performance.now() of this process), so latency is measured here, send → receive.
//
// Per step and server: delivered messages/s (subscriber receipts ÷ time from the first publish
// to the last receipt), reach (receipts ÷ published × subscribers, counting only the step's own
// messages that arrived before the drain bound), p50/p99 latency, and server CPU-µs per delivery
// (process.cpuUsage() delta of the server process over the step, ÷ every copy it delivered:
// signalyard also echoes each message to the publisher's own stream, which is counted as a
// delivery but not in reach).
//
// Knobs for experiments and the smoke test (test/bench.test.ts), all optional: FANOUT_KINDS
// (comma list), FANOUT_RATES (comma list, msg/s), FANOUT_SECONDS (per step), FANOUT_SUBSCRIBERS.
import { performance } from 'node:perf_hooks'
import WebSocket from 'ws'
import { io } from 'socket.io-client'
import { SignalChannel } from '../../dist/node/index.js'
import { Reservoir, cpuDelta, fmtPercent, fmtRatio, median, ratio } from '../lib/stats.mjs'
import { inBatches, sendAtRate, settle, sleep, waitUntil, within } from '../lib/util.mjs'

export const name = 'fanout'
export const title = 'Fan-out: 1 publisher → 1,000 subscribers in one namespace'

const NS = 'fanout'
const SUBSCRIBERS = Number(process.env.FANOUT_SUBSCRIBERS ?? 1000)
const PAD = 'x'.repeat(64)
/** Server kinds in the order they run within each step; signalyard first. */
const KINDS = process.env.FANOUT_KINDS ? process.env.FANOUT_KINDS.split(',') : ['signalyard', 'ws-preframed', 'ws-naive', 'socketio']
const LABEL = { signalyard: 'signalyard echo', 'ws-preframed': 'ws pre-framed', 'ws-naive': 'ws naive', socketio: 'socket.io rooms' }
const CONNECT_BATCH = 100
const CONNECT_TIMEOUT = 20_000




/**
 * The receiving side of one step: counts the step's messages, samples latency. `k` is the step
 * number carried in every payload; anything else (a late message of an earlier step) is ignored.
 */
class Tally {
  constructor (k) {
    this.k = k
    this.received = 0
    this.self = 0
    this.firstSend = 0
    this.lastReceive = 0
    this.latency = new Reservoir(20_000)
  }

  take (data, self = false) {
    arrivals++
    if (data === null || typeof data !== 'object' || data.k !== this.k) return
    const now = performance.now()
    if (self) { this.self++; return }
    this.received++
    this.lastReceive = now
    this.latency.add(now - data.t)
  }
}

/** The current step's tally, shared by every client handler of every kind. */
let tally = new Tally(-1)
/** Every message any client received, of any step (to wait for stragglers between steps). */
let arrivals = 0

// ---- one client fleet per server kind: connect N subscribers + a publisher, publish, close ----

async function signalyardFleet (server, n) {
  const channels = []
  const open = async (url, onData) => {
    const channel = SignalChannel(NS, { url })
    channels.push(channel)
    const echo = channel.echo()
    echo.on('data', onData)
    await echo.ready()
    return echo
  }
  await inBatches(n, CONNECT_BATCH, (i) => open(`${server.url}?s=${i}`, (data) => tally.take(data)))
  const publisher = await open(`${server.url}?s=publisher`, (data) => tally.take(data, true))
  return {
    publish: (data) => publisher.send(data),
    close: () => { for (const c of channels) c.close() }
  }
}

function wsOpen (url) {
  const ws = new WebSocket(url, { perMessageDeflate: false })
  ws.on('error', () => {})
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws))
    ws.once('error', reject)
  })
}

async function wsFleet (server, n) {
  const sockets = await inBatches(n, CONNECT_BATCH, async (i) => {
    const ws = await wsOpen(`${server.url}?join=${NS}&s=${i}`)
    ws.on('message', (raw) => tally.take(JSON.parse(String(raw)).data))
    return ws
  })
  const publisher = await wsOpen(`${server.url}?s=publisher`)
  sockets.push(publisher)
  return {
    publish: (data) => publisher.send(JSON.stringify({ op: 'pub', room: NS, data })),
    close: () => { for (const ws of sockets) ws.terminate() }
  }
}

function ioOpen (url, query) {
  const socket = io(url, { transports: ['websocket'], forceNew: true, reconnection: false, query })
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket))
    socket.once('connect_error', reject)
  })
}

async function socketioFleet (server, n) {
  const sockets = await inBatches(n, CONNECT_BATCH, async (i) => {
    const socket = await ioOpen(server.url, { join: NS, s: String(i) })
    socket.on('msg', (m) => tally.take(m.data))
    return socket
  })
  const publisher = await ioOpen(server.url, { s: 'publisher' })
  sockets.push(publisher)
  return {
    publish: (data) => publisher.emit('pub', NS, data),
    close: () => { for (const s of sockets) s.close() }
  }
}

const FLEETS = { signalyard: signalyardFleet, 'ws-preframed': wsFleet, 'ws-naive': wsFleet, socketio: socketioFleet }

// ---- one step: publish at `rate` for `seconds`, drain, read the server's CPU ----

async function step ({ k, server, fleet, rate, seconds, drainMs, subscribers }) {
  tally = new Tally(k)
  const t = tally
  const before = await server.stats()
  const total = Math.max(1, Math.round(rate * seconds))
  const start = t.firstSend = performance.now()
  await sendAtRate(total, rate, (i) => fleet.publish({ k, s: i, t: performance.now(), p: PAD }))
  const expected = total * subscribers
  await waitUntil(() => t.received >= expected, drainMs)
  const after = await server.stats()
  const wall = performance.now() - start
  tally = new Tally(-1)
  await settle(() => arrivals)
  const cpu = cpuDelta(before.cpu, after.cpu)
  const deliveries = t.received + t.self
  const { p50, p99 } = t.latency.percentiles([50, 99])
  const span = (t.lastReceive - t.firstSend) / 1000
  return {
    published: total,
    received: t.received,
    deliveredPerSec: span > 0 ? t.received / span : NaN,
    reach: t.received / expected,
    p50,
    p99,
    cpuPerDelivery: deliveries > 0 ? cpu / deliveries : NaN,
    cpu,
    cpuShare: cpu / (wall * 1000),
    deliveries
  }
}

export async function run (ctx) {
  const rates = process.env.FANOUT_RATES ? process.env.FANOUT_RATES.split(',').map(Number) : ctx.quick ? [50, 150] : [25, 50, 100, 150, 200]
  const seconds = Number(process.env.FANOUT_SECONDS ?? (ctx.quick ? 1.5 : 4))
  const drainMs = ctx.quick ? 1500 : 3000
  const subscribers = SUBSCRIBERS
  const servers = {}
  const fleets = {}
  try {
    for (const kind of KINDS) {
      servers[kind] = await ctx.startServer(kind)
      const t0 = Date.now()
      fleets[kind] = await within(FLEETS[kind](servers[kind], subscribers), CONNECT_TIMEOUT, `${kind}: connecting ${subscribers} subscribers`)
      ctx.log(`${kind}: ${subscribers} subscribers + 1 publisher connected in ${Date.now() - t0} ms`)
    }
    // Warm-up (not reported): JIT, socket buffers and allocator pools of every process settle.
    let k = 0
    for (const kind of KINDS) await step({ k: k++, server: servers[kind], fleet: fleets[kind], rate: rates[0], seconds: 0.5, drainMs, subscribers })
    await sleep(200)
    const results = [] // { rate, kind, ...step }
    for (const rate of rates) {
      for (const kind of KINDS) {
        const r = await step({ k: k++, server: servers[kind], fleet: fleets[kind], rate, seconds, drainMs, subscribers })
        results.push({ rate, kind, ...r })
        ctx.log(`${rate} msg/s ${kind}: ${Math.round(r.deliveredPerSec)} delivered/s, reach ${fmtPercent(r.reach)}, p50 ${r.p50?.toFixed(1)} ms, p99 ${r.p99?.toFixed(1)} ms, ${r.cpuPerDelivery.toFixed(2)} CPU-µs/delivery`)
        await sleep(100)
      }
    }
    return report(results, rates, { subscribers, seconds })
  } finally {
    for (const fleet of Object.values(fleets)) fleet.close()
    await Promise.allSettled(Object.values(servers).map((s) => s.stop()))
  }
}

// ---- the table, the ratios, the chart, the verdict ----

/** What profiling the signalyard server found (docs/BENCHMARKS.md, "Findings"). */
const FINDINGS = [
  'Before the fix, signalyard used 1.3–1.6× the pre-framed ceiling\'s CPU per delivery (1.46× over a quick run). ' +
    '`--cpu-prof` of the server (SIGNALYARD_BENCH_PROF=1) showed no JavaScript hot spot: the time was in the per-socket ' +
    'write itself, `writev` at 12.5 % of the profile against the ceiling\'s `writeBuffer` at 9 % for the same deliveries. ' +
    'The hub handed each subscriber the encoded EVENT and each connection called `ws.send`, so every copy got its own ' +
    'WebSocket header (an allocation), a cork/uncork and a two-buffer `writev`.',
  'Fix (src/server/hub.ts, src/server/connection.ts): a broadcast is framed for WebSocket once — header and EVENT in one ' +
    'buffer — and each connection writes those same bytes to its TCP socket in one `write`. It is safe because the server ' +
    'never negotiates permessage-deflate, so ws writes its own frames whole and at once; a connection with an extension, or ' +
    'a ws without an exposed socket, falls back to `ws.send`. After it, signalyard\'s CPU per delivery is about 1.1–1.2× ' +
    'the ceiling\'s (was 1.3–1.6×). The rest is not in JavaScript either: both profiles are again the per-socket `write`, ' +
    'and signalyard\'s copies are larger (~160 bytes against ~125: a 10-byte frame header and `{ep, ns, from}` meta on ' +
    'every EVENT).',
  'Latency is measured in the load generator, which also decodes every copy for all subscribers on one core: the ' +
    'signalyard client (frame header, JSON meta, then the JSON payload, through an event emitter) costs more per message ' +
    'than a bare `JSON.parse`, so its p50/p99 rise first as the rate grows. Near saturation (~150–200 k deliveries/s here) ' +
    'the load generator, not the server, sets the latency of every kind.'
]

function report (results, rates, { subscribers, seconds }) {
  const get = (rate, kind) => results.find((r) => r.rate === rate && r.kind === kind)
  const columns = ['publish rate', 'server', 'delivered/s', 'reach', 'p50 ms', 'p99 ms', 'server CPU (1 core = 100 %)', 'server CPU-µs / delivery', 'signalyard ÷ this (CPU)']
  const rows = []
  for (const rate of rates) {
    const sy = get(rate, 'signalyard')
    for (const kind of KINDS) {
      const r = get(rate, kind)
      rows.push([`${rate}/s`, LABEL[kind], r.deliveredPerSec, fmtPercent(r.reach), r.p50, r.p99, fmtPercent(r.cpuShare), r.cpuPerDelivery, fmtRatio(ratio(sy?.cpuPerDelivery, r.cpuPerDelivery))])
    }
  }
  // Over the whole run: total CPU ÷ total deliveries per server (every rate weighs by its volume).
  const overall = {}
  for (const kind of KINDS) {
    const mine = results.filter((r) => r.kind === kind)
    overall[kind] = mine.reduce((a, r) => a + r.cpu, 0) / Math.max(1, mine.reduce((a, r) => a + r.deliveries, 0))
  }
  const vs = (kind) => ratio(overall.signalyard, overall[kind])
  const perStep = (kind) => median(rates.map((rate) => ratio(get(rate, 'signalyard')?.cpuPerDelivery, get(rate, kind).cpuPerDelivery)))
  for (const kind of KINDS.includes('signalyard') ? KINDS.filter((k) => k !== 'signalyard') : []) {
    rows.push(['all steps', `signalyard ÷ ${LABEL[kind]}`, '', '', '', '', '', fmtRatio(vs(kind)), `median of steps ${fmtRatio(perStep(kind))}`])
  }
  const verdict = (ok) => (ok ? 'met' : '**missed**')
  const has = (kind) => KINDS.includes(kind) && KINDS.includes('signalyard')
  const targets = []
  if (has('ws-preframed')) targets.push(`signalyard ≤ 1.25× pre-framed: ${fmtRatio(vs('ws-preframed'))}, ${verdict(vs('ws-preframed') <= 1.25)}`)
  if (has('ws-naive')) targets.push(`better than naive: ${fmtRatio(vs('ws-naive'))}, ${verdict(vs('ws-naive') < 1)}`)
  if (has('socketio')) targets.push(`better than socket.io: ${fmtRatio(vs('socketio'))}, ${verdict(vs('socketio') < 1)}`)
  const notes = [
    `${subscribers} subscribers + 1 publisher per server, each on its own socket in the load generator; ${seconds} s per step, the servers interleaved within each step (after one unreported warm-up step each); payload ≈ 100 bytes of JSON carrying its send time.`,
    `Server CPU per delivery over all steps (total CPU ÷ total deliveries): ${KINDS.map((kind) => `${LABEL[kind]} ${overall[kind].toFixed(2)} µs`).join(', ')}.`,
    ...(targets.length > 0 ? [`Targets: ${targets.join('; ')}.`] : []),
    ...FINDINGS
  ]
  const chart = {
    title: 'Fan-out: server CPU per delivered message',
    unit: 'CPU-µs / delivery',
    xLabel: 'published messages/s (× 1,000 subscribers)',
    series: KINDS.map((kind) => ({ label: LABEL[kind], points: rates.map((rate) => [rate, get(rate, kind).cpuPerDelivery]) }))
  }
  return { columns, rows, notes, chart }
}

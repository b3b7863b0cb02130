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
import { performance } from 'node:perf_hooks'
import WebSocket from 'ws'
import { io } from 'socket.io-client'
import { SignalChannel } from '../../dist/node/index.js'
import { Reservoir, cpuDelta, fmtPercent, fmtRatio, median, ratio } from '../lib/stats.mjs'

export const name = 'fanout'
export const title = 'Fan-out: 1 publisher → 1,000 subscribers in one namespace'

const NS = 'fanout'
const SUBSCRIBERS = 1000
const PAD = 'x'.repeat(64)
/** Server kinds in the order they run within each step; signalyard first. */
const KINDS = ['signalyard', 'ws-preframed', 'ws-naive', 'socketio']
const LABEL = { signalyard: 'signalyard echo', 'ws-preframed': 'ws pre-framed', 'ws-naive': 'ws naive', socketio: 'socket.io rooms' }
const CONNECT_BATCH = 100
const CONNECT_TIMEOUT = 20_000

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function within (promise, ms, what) {
  let timer
  const timeout = new Promise((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms) })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** Run `make(i)` for i in [0, n) at most `batch` at a time. */
async function inBatches (n, batch, make) {
  const out = []
  for (let i = 0; i < n; i += batch) {
    out.push(...await Promise.all(Array.from({ length: Math.min(batch, n - i) }, (_v, j) => make(i + j))))
  }
  return out
}

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
  let sent = 0
  const start = performance.now()
  t.firstSend = start
  await new Promise((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate) + 1)
      while (sent < due) fleet.publish({ k, s: sent++, t: performance.now(), p: PAD })
      if (sent >= total) resolve()
      else setTimeout(tick, 2)
    }
    tick()
  })
  const expected = total * subscribers
  const drainUntil = performance.now() + drainMs
  while (t.received < expected && performance.now() < drainUntil) await sleep(10)
  const after = await server.stats()
  tally = new Tally(-1)
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
    deliveries
  }
}

export async function run (ctx) {
  const rates = ctx.quick ? [50, 200] : [25, 100, 200, 400]
  const seconds = ctx.quick ? 1.5 : 4
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

function report (results, rates, { subscribers, seconds }) {
  const get = (rate, kind) => results.find((r) => r.rate === rate && r.kind === kind)
  const columns = ['publish rate', 'server', 'delivered/s', 'reach', 'p50 ms', 'p99 ms', 'server CPU-µs / delivery', 'signalyard ÷ this (CPU)']
  const rows = []
  for (const rate of rates) {
    const sy = get(rate, 'signalyard')
    for (const kind of KINDS) {
      const r = get(rate, kind)
      rows.push([`${rate}/s`, LABEL[kind], r.deliveredPerSec, fmtPercent(r.reach), r.p50, r.p99, r.cpuPerDelivery, fmtRatio(ratio(sy.cpuPerDelivery, r.cpuPerDelivery))])
    }
  }
  // Over the whole run: total CPU ÷ total deliveries per server (every rate weighs by its volume).
  const overall = {}
  for (const kind of KINDS) {
    const mine = results.filter((r) => r.kind === kind)
    overall[kind] = mine.reduce((a, r) => a + r.cpu, 0) / Math.max(1, mine.reduce((a, r) => a + r.deliveries, 0))
  }
  const vs = (kind) => ratio(overall.signalyard, overall[kind])
  const perStep = (kind) => median(rates.map((rate) => ratio(get(rate, 'signalyard').cpuPerDelivery, get(rate, kind).cpuPerDelivery)))
  for (const kind of KINDS.slice(1)) {
    rows.push(['all', `signalyard ÷ ${LABEL[kind]}`, '', '', '', '', fmtRatio(vs(kind)), `median of steps ${fmtRatio(perStep(kind))}`])
  }
  const verdict = (ok) => (ok ? 'met' : 'MISSED')
  const notes = [
    `${subscribers} subscribers + 1 publisher per server, each on its own socket in the load generator; ${seconds} s per step, servers interleaved within each step; payload ≈ 100 bytes of JSON with a send timestamp.`,
    `Server CPU per delivery over the whole run: signalyard ${overall.signalyard.toFixed(2)} µs, pre-framed ${overall['ws-preframed'].toFixed(2)} µs, naive ${overall['ws-naive'].toFixed(2)} µs, socket.io ${overall.socketio.toFixed(2)} µs.`,
    `Target signalyard ≤ 1.25× pre-framed: ${fmtRatio(vs('ws-preframed'))} — ${verdict(vs('ws-preframed') <= 1.25)}. Better than naive: ${fmtRatio(vs('ws-naive'))} — ${verdict(vs('ws-naive') < 1)}. Better than socket.io: ${fmtRatio(vs('socketio'))} — ${verdict(vs('socketio') < 1)}.`,
    'Latency is measured in the load generator, which also parses every copy for 1,000 subscribers: at the highest rates its own queueing dominates p99 for every server alike.'
  ]
  const chart = {
    title: 'Fan-out: server CPU per delivered message',
    unit: 'CPU-µs / delivery',
    xLabel: 'published messages/s (× 1,000 subscribers)',
    series: KINDS.map((kind) => ({ label: LABEL[kind], points: rates.map((rate) => [rate, get(rate, kind).cpuPerDelivery]) }))
  }
  return { columns, rows, notes, chart }
}

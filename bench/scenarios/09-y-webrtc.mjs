// bench/scenarios/09-y-webrtc.mjs — y-webrtc signalling fan-out: 1 publisher → 500 subscribers on
// one topic, at stepped publish rates, against signalyard's y-webrtc compat endpoint
// (`ws://…/y-webrtc` of a yard on the in-memory broker, bench/servers/signalyard.mjs) and against
// y-webrtc's own reference server (node_modules/y-webrtc/bin/server.js), interleaved per step.
//
// Both servers speak one protocol, so one client serves both: plain `ws` sockets in this (the
// load generator's) process send `{type:'subscribe',topics:[t]}` then `{type:'ping'}` (the pong
// shows the subscription is in place: a connection's frames are handled in order), and the
// publisher, itself subscribed as a y-webrtc peer is, sends `{type:'publish',topic:t,data}`.
// `data` is shaped like a y-webrtc ICE candidate signal (~300 bytes of JSON) and carries the step,
// a sequence number and its send time (performance.now() of this process); every subscriber —
// the publisher too — receives `{type:'publish',topic,data,clients}` and JSON.parses it.
//
// The reference server is started as a child process (`node --expose-gc server.js`, PORT = a free
// port) with a preload that changes two things around it and nothing in it: its `listen(port)`
// binds 127.0.0.1 instead of every interface, and SIGTERM exits through process.exit (so
// --cpu-prof writes its profile when SIGNALYARD_BENCH_PROF=1). It is killed when the scenario
// ends, however it ends (also from a process 'exit' hook, should the runner give up and exit).
//
// Per step and server: delivered messages/s (subscriber receipts ÷ time from the first publish
// to the last receipt), reach (receipts ÷ published × subscribers, the step's own messages that
// arrived before the drain bound), p50/p99 latency (send → receive here, every copy of the step,
// stragglers too), and server CPU-µs per delivery: the server process's utime + stime from
// /proc/<pid>/stat (all its threads; clock-tick resolution, 10 ms here) from the first publish
// until the step's stragglers stopped arriving, ÷ every copy of the step delivered by then (the
// publisher's own copy included, as in 01-fanout), so a server that fell behind is charged for
// the copies it did send, no more. Both servers are read the same way, from outside, so neither
// pays for being asked. The two alternate (A B, B A, …); a full run measures each rate twice per
// server (A B then B A) and sums the two into the row, so drift over a rate's steps weighs on both.
//
// Knobs for experiments and smoke runs, all optional: YWEBRTC_RATES (comma list, msg/s),
// YWEBRTC_SECONDS (per step), YWEBRTC_SUBSCRIBERS.
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { createConnection, createServer as createNetServer } from 'node:net'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import WebSocket from 'ws'
import { Reservoir, cpuDelta, fmt, fmtPercent, fmtRatio, median, percentiles, ratio } from '../lib/stats.mjs'
import { inBatches, sendAtRate, settle, sleep, waitUntil, within } from '../lib/util.mjs'

export const name = 'y-webrtc'
export const title = 'y-webrtc signalling: 1 publisher → 500 subscribers on one topic, compat endpoint vs the reference server'

const TOPIC = 'bench-room'
const SUBSCRIBERS = Number(process.env.YWEBRTC_SUBSCRIBERS ?? 500)
const CONNECT_BATCH = 100
const CONNECT_TIMEOUT = 20_000
const READY_TIMEOUT = 10_000
/** The issue's target: signalyard's CPU per delivery at most half the reference's. */
const TARGET = 0.5
const KINDS = ['signalyard', 'reference']
const LABEL = { signalyard: 'signalyard /y-webrtc', reference: 'y-webrtc bin/server.js' }

const root = fileURLToPath(new URL('../../', import.meta.url))
const REFERENCE_SERVER = `${root}node_modules/y-webrtc/bin/server.js`
/** Around the reference server, not in it: bind 127.0.0.1 only; exit cleanly on SIGTERM. */
const PRELOAD = `data:text/javascript,${encodeURIComponent(`
import http from 'node:http'
const listen = http.Server.prototype.listen
http.Server.prototype.listen = function (port, ...rest) {
  return rest.length === 0 ? listen.call(this, Number(port), '127.0.0.1') : listen.call(this, port, ...rest)
}
process.on('SIGTERM', () => process.exit(0))
`)}`

// ---- server CPU, read from outside --------------------------------------------------------------

/** µs per clock tick, the unit of /proc/<pid>/stat times (asked on first use: run.mjs imports every scenario). */
let tickUs = 0

/** utime and stime of process `pid` (every thread), in µs. */
function processCpu (pid) {
  tickUs ||= 1e6 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // Fields after "(comm)" start at field 3 (state); utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { user: Number(fields[11]) * tickUs, system: Number(fields[12]) * tickUs }
}

// ---- the reference server: a child process on a free port --------------------------------------

function freePort () {
  return new Promise((resolve, reject) => {
    const probe = createNetServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address()
      probe.close(() => resolve(port))
    })
  })
}

const canConnect = (port) => new Promise((resolve) => {
  const socket = createConnection(port, '127.0.0.1')
  socket.once('connect', () => { socket.destroy(); resolve(true) })
  socket.once('error', () => resolve(false))
})

async function startReference () {
  if (!existsSync(REFERENCE_SERVER)) throw new Error(`${REFERENCE_SERVER} is missing (devDependency y-webrtc; npm install)`)
  const port = await freePort()
  const execArgv = ['--expose-gc', '--import', PRELOAD]
  if (process.env.SIGNALYARD_BENCH_PROF === '1') {
    mkdirSync(`${root}bench/profiles`, { recursive: true })
    execArgv.push('--cpu-prof', `--cpu-prof-dir=${root}bench/profiles`, `--cpu-prof-name=y-webrtc-reference-${Date.now()}.cpuprofile`)
  }
  const child = spawn(process.execPath, [...execArgv, REFERENCE_SERVER], {
    env: { ...process.env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const alive = () => child.exitCode === null && child.signalCode === null
  const kill = () => { if (alive()) child.kill('SIGKILL') }
  process.once('exit', kill)
  const exited = new Promise((resolve) => child.once('exit', resolve))
  let out = ''
  const keep = (chunk) => { if (out.length < 10_000) out += chunk }
  child.stdout.on('data', keep)
  child.stderr.on('data', keep)
  try {
    const gone = new Promise((_resolve, reject) => {
      child.once('error', (error) => reject(new Error(`y-webrtc server: ${error.message}`)))
      child.once('exit', (code) => reject(new Error(`y-webrtc server exited (${code}): ${out.slice(-500)}`)))
    })
    gone.catch(() => {})
    const until = performance.now() + READY_TIMEOUT
    while (!await Promise.race([canConnect(port), gone])) {
      if (performance.now() > until) throw new Error(`y-webrtc server not listening in ${READY_TIMEOUT} ms: ${out.slice(-500)}`)
      await sleep(50)
    }
  } catch (error) {
    kill()
    process.off('exit', kill)
    throw error
  }
  return {
    url: `ws://127.0.0.1:${port}/`,
    pid: child.pid,
    stop: async () => {
      if (alive()) child.kill('SIGTERM')
      const killer = setTimeout(kill, 5000)
      await exited
      clearTimeout(killer)
      process.off('exit', kill)
    }
  }
}

// ---- what the subscribers receive ----------------------------------------------------------------

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

  take (data, self) {
    arrivals++
    if (data === null || typeof data !== 'object' || data.k !== this.k) return
    if (self) { this.self++; return }
    const now = performance.now()
    this.received++
    this.lastReceive = now
    this.latency.add(now - data.t)
  }
}

/** The current step's tally, shared by every socket of both servers. */
let tally = new Tally(-1)
/** Every publish any socket received, of any step (to wait for stragglers between steps). */
let arrivals = 0

// What a y-webrtc peer publishes most often while peers connect: an ICE candidate for one other
// peer (y-webrtc sends it to the whole room topic; receivers drop what is not addressed to them).
const FROM = '0c8e5a4e-3f0b-4d0e-9b8c-2f6a4f1e7d21'
const TO = '7b1d9c3a-52e4-4a7f-8d0c-6e9f1a2b3c4d'
const CANDIDATE = 'candidate:1467250027 1 udp 2122260223 192.168.1.23 46243 typ host generation 0'
const payload = (k, s) => ({
  to: TO,
  from: FROM,
  type: 'signal',
  signal: { type: 'candidate', candidate: { candidate: CANDIDATE, sdpMLineIndex: 0, sdpMid: '0' } },
  k,
  s,
  t: performance.now()
})

/**
 * A y-webrtc client socket subscribed to TOPIC: resolves once the server answered the ping sent
 * after the subscribe (so the subscription is in place).
 */
function subscriber (url, self) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false })
    let subscribed = false
    ws.on('error', (error) => { if (!subscribed) reject(error) })
    ws.on('message', (raw) => {
      const m = JSON.parse(String(raw))
      if (m.type === 'publish') tally.take(m.data, self)
      else if (m.type === 'pong' && !subscribed) { subscribed = true; resolve(ws) }
    })
    ws.once('open', () => {
      ws.send(JSON.stringify({ type: 'subscribe', topics: [TOPIC] }))
      ws.send(JSON.stringify({ type: 'ping' }))
    })
  })
}

/** N subscribers and a publisher (subscribed too, as every y-webrtc peer is) on `url`. */
async function fleet (url, n) {
  const sockets = await inBatches(n, CONNECT_BATCH, () => subscriber(url, false))
  const publisher = await subscriber(url, true)
  sockets.push(publisher)
  return {
    publish: (data) => publisher.send(JSON.stringify({ type: 'publish', topic: TOPIC, data })),
    close: () => { for (const ws of sockets) ws.terminate() }
  }
}

// ---- one step: publish at `rate` for `seconds`, drain, read the server's CPU --------------------

async function step ({ k, target, rate, seconds, drainMs, subscribers }) {
  tally = new Tally(k)
  const t = tally
  const cpu0 = processCpu(target.pid)
  const own0 = process.cpuUsage()
  const total = Math.max(1, Math.round(rate * seconds))
  const start = t.firstSend = performance.now()
  await sendAtRate(total, rate, (i) => target.fleet.publish(payload(k, i)))
  const expected = total * subscribers
  await waitUntil(() => t.received >= expected && t.self >= total, drainMs)
  // Rate, reach and load as of the drain bound ...
  const wall = performance.now() - start
  const atBound = processCpu(target.pid)
  const own = process.cpuUsage(own0)
  const { received, lastReceive } = t
  // ... CPU per delivery once the step's stragglers are in too: the server's CPU and the copies
  // it paid for then cover the same work, however far behind it was.
  await settle(() => arrivals)
  const cpu1 = processCpu(target.pid)
  tally = new Tally(-1)
  const cpu = cpuDelta(cpu0, cpu1)
  const deliveries = t.received + t.self
  const { p50, p99 } = t.latency.percentiles([50, 99])
  const samples = t.latency.samples().slice()
  const span = (lastReceive - t.firstSend) / 1000
  return {
    published: total,
    received,
    expected,
    samples,
    deliveredPerSec: span > 0 ? received / span : NaN,
    reach: received / expected,
    late: t.received - received,
    p50,
    p99,
    cpu,
    cpuShare: cpuDelta(cpu0, atBound) / (wall * 1000),
    cpuPerDelivery: deliveries > 0 ? cpu / deliveries : NaN,
    system: cpu1.system - cpu0.system,
    deliveries,
    generatorShare: (own.user + own.system) / (wall * 1000)
  }
}

/** The rounds of one rate and server as one row: CPU and copies summed, every latency sample kept. */
function combine (steps) {
  const sum = (field) => steps.reduce((a, r) => a + r[field], 0)
  const mean = (field) => sum(field) / steps.length
  const { p50, p99 } = percentiles(steps.flatMap((r) => Array.from(r.samples)), [50, 99])
  const cpu = sum('cpu')
  const deliveries = sum('deliveries')
  return {
    rounds: steps.length,
    published: sum('published'),
    received: sum('received'),
    deliveredPerSec: mean('deliveredPerSec'),
    reach: sum('received') / sum('expected'),
    late: sum('late'),
    p50,
    p99,
    cpu,
    cpuShare: mean('cpuShare'),
    cpuPerDelivery: deliveries > 0 ? cpu / deliveries : NaN,
    system: sum('system'),
    deliveries,
    generatorShare: Math.max(...steps.map((r) => r.generatorShare))
  }
}

export async function run (ctx) {
  const rates = process.env.YWEBRTC_RATES ? process.env.YWEBRTC_RATES.split(',').map(Number) : ctx.quick ? [50, 200] : [50, 100, 200]
  const seconds = Number(process.env.YWEBRTC_SECONDS ?? (ctx.quick ? 2 : 6))
  const drainMs = ctx.quick ? 1500 : 3000
  const rounds = ctx.quick ? 1 : 2
  const subscribers = SUBSCRIBERS
  const targets = {}
  let reference
  try {
    const yard = await ctx.startServer('signalyard')
    targets.signalyard = { pid: yard.pid, url: `ws://127.0.0.1:${yard.port}/y-webrtc` }
    reference = await startReference()
    targets.reference = { pid: reference.pid, url: reference.url }
    for (const kind of KINDS) {
      const t0 = Date.now()
      targets[kind].fleet = await within(fleet(targets[kind].url, subscribers), CONNECT_TIMEOUT, `${kind}: connecting ${subscribers} subscribers`)
      ctx.log(`${kind}: ${subscribers} subscribers + 1 publisher subscribed in ${Date.now() - t0} ms`)
    }
    ctx.log(`payload: ${JSON.stringify(payload(0, 0)).length} bytes of data`)
    // Warm-up (not reported): JIT, socket buffers and allocator pools of every process settle.
    let k = 0
    for (const kind of KINDS) await step({ k: k++, target: targets[kind], rate: rates[0], seconds: ctx.quick ? 0.5 : 1, drainMs, subscribers })
    await sleep(200)
    const steps = [] // { rate, kind, ...step }
    for (const [i, rate] of rates.entries()) {
      for (let round = 0; round < rounds; round++) {
        for (const kind of (i * rounds + round) % 2 === 0 ? KINDS : [...KINDS].reverse()) {
          const r = await step({ k: k++, target: targets[kind], rate, seconds, drainMs, subscribers })
          steps.push({ rate, kind, ...r })
          ctx.log(`${rate} msg/s ${kind}: ${Math.round(r.deliveredPerSec)} delivered/s, reach ${fmtPercent(r.reach)} (+${r.late} late), p50 ${r.p50?.toFixed(1)} ms, p99 ${r.p99?.toFixed(1)} ms, server ${fmtPercent(r.cpuShare)} of a core, ${r.cpuPerDelivery.toFixed(2)} CPU-µs/delivery (system ${fmtPercent(r.system / r.cpu)}); load generator ${fmtPercent(r.generatorShare)}`)
          await sleep(100)
        }
      }
    }
    const results = rates.flatMap((rate) => KINDS.map((kind) => ({ rate, kind, ...combine(steps.filter((r) => r.rate === rate && r.kind === kind)) })))
    return report(results, rates, { subscribers, seconds, rounds })
  } finally {
    for (const target of Object.values(targets)) target.fleet?.close()
    await reference?.stop()
  }
}

// ---- the table, the ratios, the chart, the verdict -----------------------------------------------

/** The installed y-webrtc's version (for the notes). */
function referenceVersion () {
  try {
    return JSON.parse(readFileSync(`${root}node_modules/y-webrtc/package.json`, 'utf8')).version
  } catch {
    return '?'
  }
}

/** The top step in a sentence: how much of a core each server needed there, and whether it kept up. */
function highest (sy, ref, rate, subscribers) {
  const one = (label, r) => `${label} used ${fmtPercent(r.cpuShare)} of a core and delivered ${fmt(r.deliveredPerSec)}/s at p50 ${fmt(r.p50)} ms`
  return `At ${rate} publishes/s (${fmt(rate * subscribers)} copies/s to subscribers): ${one('signalyard', sy)}; ${one('the reference', ref)}.`
}

/** What profiling both servers found (docs/BENCHMARKS.md, "Findings"). */
const FINDINGS = [
  'Where the time goes (`--cpu-prof` of both servers with SIGNALYARD_BENCH_PROF=1, and `perf record` of both processes): ' +
    'about 70 % of signalyard\'s server CPU is the kernel\'s, in the one `write()` per subscriber per message; most of ' +
    'the rest is Node\'s native write path under it (`StreamBase::WriteBuffer`, `uv_try_write`, a WriteWrap per write), ' +
    'and JavaScript is about 10 %: the hub\'s loop, `Flow.broadcast` (whose `ws.extensions` check is ws\'s ' +
    '`Object.keys(…).join()`, per copy: 1.2 % of the samples) and `Socket.write`. The compat endpoint itself ' +
    '(src/server/compat/y-webrtc.ts: parse, checks, one `JSON.stringify` per publish) is under 2 %. The reference spends ' +
    'about 47 % in the kernel for the same one write per copy (a `writev`), and most of the rest in `JSON.stringify` of ' +
    'the whole message once per subscriber, ws\'s framing and GC.',
  'So the kernel\'s part is a floor both servers pay alike per copy (see the kernel µs above): ≤ 0.5× the reference ' +
    'would need signalyard\'s whole cost per copy to fit in about what the reference spends in the kernel alone. About 40 % ' +
    'of either server\'s kernel time is the receiving socket\'s TCP processing (softirq, `tcp_v4_rcv`), which loopback ' +
    'charges to the sender; on a network the receiver\'s machine pays it. Fewer writes (one per socket for all that is ' +
    'due in an event-loop turn) would lower the floor only when several publishes meet in one turn, which one paced ' +
    'publisher does not do.',
  'CPU per copy is higher at the lower rates for both servers with the same profile shape (everything runs slower, no ' +
    'one part grows), and it moves by ±20 % between runs and whenever other work shares the 2 cores; the ratio of the ' +
    'two, measured in the same moments, moves much less.'
]

function report (results, rates, { subscribers, seconds, rounds }) {
  const get = (rate, kind) => results.find((r) => r.rate === rate && r.kind === kind)
  const stepRatio = (rate) => ratio(get(rate, 'signalyard').cpuPerDelivery, get(rate, 'reference').cpuPerDelivery)
  const columns = ['publish rate', 'server', 'delivered/s', 'reach', 'p50 ms', 'p99 ms', 'server CPU (1 core = 100 %)', 'server CPU-µs / delivery', 'signalyard ÷ reference (CPU)']
  const rows = []
  for (const rate of rates) {
    for (const kind of KINDS) {
      const r = get(rate, kind)
      rows.push([`${rate}/s`, LABEL[kind], r.deliveredPerSec, fmtPercent(r.reach), r.p50, r.p99, fmtPercent(r.cpuShare), r.cpuPerDelivery, kind === 'signalyard' ? fmtRatio(stepRatio(rate)) : ''])
    }
  }
  // Over the whole run: total CPU ÷ total deliveries per server (every rate weighs by its volume).
  const overall = {}
  const systemShare = {}
  for (const kind of KINDS) {
    const mine = results.filter((r) => r.kind === kind)
    const cpu = mine.reduce((a, r) => a + r.cpu, 0)
    overall[kind] = cpu / Math.max(1, mine.reduce((a, r) => a + r.deliveries, 0))
    systemShare[kind] = mine.reduce((a, r) => a + r.system, 0) / cpu
  }
  const all = ratio(overall.signalyard, overall.reference)
  const worst = Math.max(...rates.map(stepRatio))
  rows.push(['all steps', 'signalyard ÷ reference', '', '', '', '', '', fmtRatio(all), `median of steps ${fmtRatio(median(rates.map(stepRatio)))}`])
  const verdict = all <= TARGET && worst <= TARGET ? 'met' : '**missed**'
  const generator = Math.max(...results.map((r) => r.generatorShare))
  const notes = [
    `${subscribers} subscribers + 1 publisher (subscribed too) per server on one topic, each on its own raw \`ws\` socket in the load generator, the same client code for both servers; ${seconds} s per step, ${rounds === 1 ? 'one step per rate and server, the two servers in alternating order from rate to rate' : `${rounds} steps per rate and server in alternating order (A B, B A, …), summed into its row`} (after one unreported warm-up step each); \`data\` ≈ ${JSON.stringify(payload(0, 0)).length} bytes of JSON shaped like a y-webrtc ICE candidate signal, carrying its send time.`,
    `Server CPU is utime + stime of the server process from /proc/<pid>/stat (every thread), read from outside from the first publish of a step until its last copy arrived, the same way for both, ÷ every copy delivered (the publisher's own included; latency too counts copies that came after the drain bound, reach does not). Over all steps: ${KINDS.map((kind) => `${LABEL[kind]} ${overall[kind].toFixed(2)} µs, ${(overall[kind] * systemShare[kind]).toFixed(2)} µs of it in the kernel`).join('; ')}.`,
    `Target (issue 14): signalyard ≤ ${TARGET.toFixed(1)}× the reference server's CPU per delivery: ${fmtRatio(all)} over all steps, ${fmtRatio(worst)} at the worst step, ${verdict}.`,
    highest(get(rates[rates.length - 1], 'signalyard'), get(rates[rates.length - 1], 'reference'), rates[rates.length - 1], subscribers),
    `The reference server (y-webrtc ${referenceVersion()} \`bin/server.js\`, unmodified; a preload binds it to 127.0.0.1) sets \`clients\` on the parsed message and calls \`JSON.stringify\` and \`ws.send\` once per subscriber; signalyard encodes a publish once, frames it for WebSocket once in the hub, and writes the same bytes to every subscriber's TCP socket.`,
    `Latency is measured in the load generator, which JSON-parses every copy for all subscribers of both servers on one core (at most ${fmtPercent(generator)} of a core in any step here): near its limit it, not the server, sets the latency of both.`,
    ...FINDINGS
  ]
  const chart = {
    title: 'y-webrtc topic fan-out: server CPU per delivered message',
    unit: 'CPU-µs / delivery',
    xLabel: `published messages/s (× ${subscribers + 1} subscribers)`,
    series: KINDS.map((kind) => ({ label: LABEL[kind], points: rates.map((rate) => [rate, get(rate, kind).cpuPerDelivery]) }))
  }
  const description = 'The y-webrtc signalling protocol, as unmodified y-webrtc clients speak it, served by signalyard\'s ' +
    'compat endpoint (`/y-webrtc` of a yard on the in-memory broker) and by y-webrtc\'s own reference server ' +
    '(`bin/server.js`), with the same raw `ws` client code against both: one publisher on a room topic of 500 ' +
    `subscribers. Issue 14's target: signalyard ≤ ${TARGET.toFixed(1)}× the reference's server CPU per delivered copy.`
  return { description, columns, rows, notes, chart }
}

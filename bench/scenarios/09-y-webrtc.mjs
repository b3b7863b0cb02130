// bench/scenarios/09-y-webrtc.mjs — y-webrtc signalling fan-out: 1 publisher → 500 subscribers on
// one topic, at stepped publish rates, against three servers interleaved per step: signalyard's
// y-webrtc compat endpoint (`ws://…/y-webrtc` of a yard on the in-memory broker,
// bench/servers/signalyard.mjs), y-webrtc's own reference server (node_modules/y-webrtc/bin/
// server.js), and the floor (bench/servers/y-webrtc-floor.mjs: the same protocol with nothing
// around it, one `write` per copy: what any server pays that writes each copy as it comes).
//
// They speak one protocol, so one client serves all: plain `ws` sockets in this (the load
// generator's) process send `{type:'subscribe',topics:[t]}` then `{type:'ping'}` (the pong shows
// the subscription is in place: a connection's frames are handled in order), and the publisher,
// itself subscribed as a y-webrtc peer is, sends `{type:'publish',topic:t,data}`. `data` is shaped
// like a y-webrtc ICE candidate signal (~300 bytes of JSON) and carries the step, a sequence
// number and its send time (performance.now() of this process); every subscriber — the publisher
// too — receives `{type:'publish',topic,data,clients}` and JSON.parses it. A step publishes one
// message at a time (`R`/s, paced by a 2 ms timer) or in bursts (`R`/s in bursts of B: B
// publishes in one TCP write of the publisher's, as a y-webrtc peer's ICE candidates come).
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
// the copies it did send, no more. Every server is read the same way, from outside, so none pays
// for being asked. Their order alternates (A B C, C B A, …); a full run measures each step twice
// per server and sums the two into the row, so drift over a step weighs on all alike.
//
// Knobs for experiments and smoke runs, all optional: YWEBRTC_RATES (comma list of steps: `R`
// msg/s or `RxB` in bursts of B), YWEBRTC_SECONDS (per step), YWEBRTC_SUBSCRIBERS.
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { createConnection } from 'node:net'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import WebSocket from 'ws'
import { Reservoir, cpuDelta, fmt, fmtPercent, fmtRatio, median, percentiles, ratio } from '../lib/stats.mjs'
import { freePort, inBatches, sendAtRate, settle, sleep, waitUntil, within } from '../lib/util.mjs'

export const name = 'y-webrtc'
export const title = 'y-webrtc signalling: 1 publisher → 500 subscribers on one topic, compat endpoint vs the reference server'

const TOPIC = 'bench-room'
const SUBSCRIBERS = Number(process.env.YWEBRTC_SUBSCRIBERS ?? 500)
const CONNECT_BATCH = 100
const CONNECT_TIMEOUT = 20_000
const READY_TIMEOUT = 10_000
/** The issue's target: signalyard's CPU per delivery at most half the reference's. */
const TARGET = 0.5
const KINDS = ['signalyard', 'floor', 'reference']
const LABEL = { signalyard: 'signalyard /y-webrtc', floor: 'one write per copy (floor)', reference: 'y-webrtc bin/server.js' }
/** Publishes per burst in the burst steps: sent in one TCP write, so they reach the server in one read. */
const BURST = 10

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

/** The current step's tally, shared by every socket of every server. */
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
  const publish = (data) => publisher.send(JSON.stringify({ type: 'publish', topic: TOPIC, data }))
  return {
    publish,
    /** Several publishes in one write of the publisher's TCP socket (ws corks each frame; this the lot). */
    burst: (list) => {
      publisher._socket.cork()
      for (const data of list) publish(data)
      publisher._socket.uncork()
    },
    close: () => { for (const ws of sockets) ws.terminate() }
  }
}

// ---- one step: publish at `rate` for `seconds`, drain, read the server's CPU --------------------

async function step ({ k, target, rate, burst, seconds, drainMs, subscribers }) {
  tally = new Tally(k)
  const t = tally
  const cpu0 = processCpu(target.pid)
  const own0 = process.cpuUsage()
  const total = Math.max(1, Math.round(rate * seconds))
  const start = t.firstSend = performance.now()
  if (burst > 1) {
    await sendAtRate(Math.ceil(total / burst), rate / burst, (j) => {
      const list = []
      for (let i = j * burst; i < Math.min(total, (j + 1) * burst); i++) list.push(payload(k, i))
      target.fleet.burst(list)
    })
  } else {
    await sendAtRate(total, rate, (i) => target.fleet.publish(payload(k, i)))
  }
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
  // A rate step is `R` (R publishes/s, one at a time) or `RxB` (R publishes/s in bursts of B).
  const spec = process.env.YWEBRTC_RATES ?? (ctx.quick ? `50,200,200x${BURST}` : `50,100,200,100x${BURST},200x${BURST},400x${BURST}`)
  const rates = spec.split(',').map((word) => {
    const [rate, burst = 1] = word.split('x').map(Number)
    return { key: burst > 1 ? `${rate}/s in bursts of ${burst}` : `${rate}/s`, rate, burst }
  })
  const seconds = Number(process.env.YWEBRTC_SECONDS ?? (ctx.quick ? 2 : 6))
  const drainMs = ctx.quick ? 1500 : 3000
  const rounds = ctx.quick ? 1 : 2
  const subscribers = SUBSCRIBERS
  const targets = {}
  let reference
  try {
    const yard = await ctx.startServer('signalyard')
    targets.signalyard = { pid: yard.pid, url: `ws://127.0.0.1:${yard.port}/y-webrtc` }
    const floor = await ctx.startServer('y-webrtc-floor')
    targets.floor = { pid: floor.pid, url: floor.url }
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
    for (const kind of KINDS) await step({ k: k++, target: targets[kind], rate: rates[0].rate, burst: 1, seconds: ctx.quick ? 0.5 : 1, drainMs, subscribers })
    await sleep(200)
    const steps = [] // { key, kind, ...step }
    for (const [i, { key, rate, burst }] of rates.entries()) {
      for (let round = 0; round < rounds; round++) {
        for (const kind of (i * rounds + round) % 2 === 0 ? KINDS : [...KINDS].reverse()) {
          const r = await step({ k: k++, target: targets[kind], rate, burst, seconds, drainMs, subscribers })
          steps.push({ key, kind, ...r })
          ctx.log(`${key} ${kind}: ${Math.round(r.deliveredPerSec)} delivered/s, reach ${fmtPercent(r.reach)} (+${r.late} late), p50 ${r.p50?.toFixed(1)} ms, p99 ${r.p99?.toFixed(1)} ms, server ${fmtPercent(r.cpuShare)} of a core, ${r.cpuPerDelivery.toFixed(2)} CPU-µs/delivery (system ${fmtPercent(r.system / r.cpu)}); load generator ${fmtPercent(r.generatorShare)}`)
          await sleep(100)
        }
      }
    }
    const results = rates.flatMap(({ key, rate, burst }) => KINDS.map((kind) => ({ key, rate, burst, kind, ...combine(steps.filter((r) => r.key === key && r.kind === kind)) })))
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

/** A step in a sentence: how much of a core each server needed there, and whether it kept up. */
function highest (get, { key, rate }, subscribers) {
  const one = (kind) => {
    const r = get(key, kind)
    return `${LABEL[kind]} used ${fmtPercent(r.cpuShare)} of a core and delivered ${fmt(r.deliveredPerSec)}/s at p50 ${fmt(r.p50)} ms`
  }
  return `At ${key} (${fmt(rate * subscribers)} copies/s to subscribers): ${KINDS.map(one).join('; ')}.`
}

/** What profiling the servers found (docs/BENCHMARKS.md, "Findings"). */
const FINDINGS = [
  'Where the time goes (`--cpu-prof` of the three servers with SIGNALYARD_BENCH_PROF=1, 100/s paced): signalyard\'s ' +
    'profile is the floor\'s — the native write (`writeBuffer` 64 % of its busy samples, `writev` 6.5 %, against the ' +
    'floor\'s `writeBuffer` 76 %) and Node\'s stream code around it; JavaScript of its own (the hub\'s loop, ' +
    '`Flow.broadcast`, the end-of-turn flush, the compat endpoint\'s parse and one `JSON.stringify` per publish) is ' +
    'under 6 %. About two thirds of either one\'s CPU is the kernel\'s, in the `write()` per copy; about 40 % of that is ' +
    'the receiving socket\'s TCP processing (softirq, `tcp_v4_rcv`), which loopback charges to the sender (on a network ' +
    'the receiver\'s machine pays it). The reference spends about as much in the kernel per copy and as much again in ' +
    '`JSON.stringify` of the whole message once per subscriber, ws\'s framing per copy and GC.',
  'So with one publish per event-loop turn (the paced steps) no server that writes each copy as it comes can cost ' +
    'less than the floor, and at 50 and 100 publishes/s the floor alone is about half the reference or more: the ' +
    'target is below what one `write()` per copy costs on loopback there. Only fewer writes go lower: signalyard writes ' +
    'what is due to one socket within one turn in one `writev` (src/server/flow.ts), without holding a lone message ' +
    'back, so when publishes arrive together (a y-webrtc peer\'s ICE candidates and announce come in bursts) its copies ' +
    'cost a fraction of the floor\'s (the burst steps), and at 200/s paced, where the load generator\'s timer sometimes ' +
    'sends two publishes at once, it already goes under the floor.',
  'CPU per copy is higher at the lower rates for every server with the same profile shape (everything runs slower, no ' +
    'one part grows), and it moves by ±20 % between runs and whenever other work shares the 2 cores; the ratios, ' +
    'measured in the same moments, move much less.'
]

function report (results, rates, { subscribers, seconds, rounds }) {
  const get = (key, kind) => results.find((r) => r.key === key && r.kind === kind)
  const stepRatio = (key, kind = 'signalyard') => ratio(get(key, kind).cpuPerDelivery, get(key, 'reference').cpuPerDelivery)
  const columns = ['publish rate', 'server', 'delivered/s', 'reach', 'p50 ms', 'p99 ms', 'server CPU (1 core = 100 %)', 'server CPU-µs / delivery', '÷ reference (CPU)']
  const rows = []
  for (const { key } of rates) {
    for (const kind of KINDS) {
      const r = get(key, kind)
      rows.push([key, LABEL[kind], r.deliveredPerSec, fmtPercent(r.reach), r.p50, r.p99, fmtPercent(r.cpuShare), r.cpuPerDelivery, kind === 'reference' ? '' : fmtRatio(stepRatio(key, kind))])
    }
  }
  // Over the whole run: total CPU ÷ total deliveries per server (every step weighs by its volume).
  const overall = {}
  const systemShare = {}
  for (const kind of KINDS) {
    const mine = results.filter((r) => r.kind === kind)
    const cpu = mine.reduce((a, r) => a + r.cpu, 0)
    overall[kind] = cpu / Math.max(1, mine.reduce((a, r) => a + r.deliveries, 0))
    systemShare[kind] = mine.reduce((a, r) => a + r.system, 0) / cpu
  }
  const all = ratio(overall.signalyard, overall.reference)
  const keys = rates.map((r) => r.key)
  rows.push(['all steps', 'signalyard ÷ reference', '', '', '', '', '', fmtRatio(all), `median of steps ${fmtRatio(median(keys.map((key) => stepRatio(key))))}`])
  rows.push(['all steps', 'floor ÷ reference', '', '', '', '', '', fmtRatio(ratio(overall.floor, overall.reference)), `median of steps ${fmtRatio(median(keys.map((key) => stepRatio(key, 'floor'))))}`])
  // Steps over the target, each with the floor's ratio there (what one write per copy costs alone).
  const over = keys.filter((key) => stepRatio(key) > TARGET)
  const perStep = over.length === 0
    ? 'met at every step'
    : `over it at ${over.map((key) => `${key} (${fmtRatio(stepRatio(key))}; the floor ${fmtRatio(stepRatio(key, 'floor'))})`).join(', ')}, at or under it at every other step`
  const verdict = `${fmtRatio(all)} over all steps, ${all <= TARGET ? 'met' : '**missed**'}; per step: ${perStep}`
  const generator = Math.max(...results.map((r) => r.generatorShare))
  const notes = [
    `${subscribers} subscribers + 1 publisher (subscribed too) per server on one topic, each on its own raw \`ws\` socket in the load generator, the same client code for every server; ${seconds} s per step, ${rounds === 1 ? 'one step per rate and server, the servers in alternating order from rate to rate' : `${rounds} steps per rate and server in alternating order (A B C, C B A, …), summed into its row`} (after one unreported warm-up step each); \`data\` ≈ ${JSON.stringify(payload(0, 0)).length} bytes of JSON shaped like a y-webrtc ICE candidate signal, carrying its send time.`,
    `Server CPU is utime + stime of the server process from /proc/<pid>/stat (every thread), read from outside from the first publish of a step until its last copy arrived, the same way for every server, ÷ every copy delivered (the publisher's own included; latency too counts copies that came after the drain bound, reach does not). Over all steps: ${KINDS.map((kind) => `${LABEL[kind]} ${overall[kind].toFixed(2)} µs, ${(overall[kind] * systemShare[kind]).toFixed(2)} µs of it in the kernel`).join('; ')}.`,
    `Target (issue 14): signalyard ≤ ${TARGET.toFixed(1)}× the reference server's CPU per delivery: ${verdict}.`,
    `The floor (bench/servers/y-webrtc-floor.mjs) speaks the same protocol with nothing around it: each publish encoded and framed once and written to every subscriber's socket, one \`write\` per copy, no checks, no limits. It is what any server pays that writes each copy as it comes; signalyard writes what is due to one socket within one event-loop turn in one \`writev\`, so its copies cost less than the floor's only when several publishes arrive together (the burst steps: ${BURST} publishes in one TCP write of the publisher's, so in one read of the server's).`,
    highest(get, rates.filter((r) => r.burst === 1).at(-1) ?? rates.at(-1), subscribers),
    highest(get, rates.at(-1), subscribers),
    `The reference server (y-webrtc ${referenceVersion()} \`bin/server.js\`, unmodified; a preload binds it to 127.0.0.1) sets \`clients\` on the parsed message and calls \`JSON.stringify\` and \`ws.send\` once per subscriber; signalyard encodes a publish once, frames it for WebSocket once in the hub, and hands the same bytes to every subscriber's connection, which writes what is due to it at the end of the event-loop turn.`,
    `Latency is measured in the load generator, which JSON-parses every copy for all subscribers of every server on one core (at most ${fmtPercent(generator)} of a core in any step here): near its limit it, not the server, sets the latency of all.`,
    ...FINDINGS
  ]
  const chart = {
    title: 'y-webrtc topic fan-out: server CPU per delivered message',
    unit: 'CPU-µs / delivery',
    xLabel: `published messages/s (× ${subscribers + 1} subscribers)`,
    series: KINDS.map((kind) => ({ label: LABEL[kind], points: rates.map(({ key }) => [key.replace(' in bursts of ', '×'), get(key, kind).cpuPerDelivery]) }))
  }
  const description = 'The y-webrtc signalling protocol, as unmodified y-webrtc clients speak it, served by signalyard\'s ' +
    'compat endpoint (`/y-webrtc` of a yard on the in-memory broker) and by y-webrtc\'s own reference server ' +
    '(`bin/server.js`), with the same raw `ws` client code against both: one publisher on a room topic of 500 ' +
    `subscribers. Issue 14's target: signalyard ≤ ${TARGET.toFixed(1)}× the reference's server CPU per delivered copy.`
  return { description, columns, rows, notes, chart }
}

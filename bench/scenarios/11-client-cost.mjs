// bench/scenarios/11-client-cost.mjs — the client's own cost: CPU-µs per message a client
// receives, for signalyard's echo (JSON and binary payloads), kv updates and relay data, against
// socket.io-client (room broadcasts) and a raw `ws` client that only does JSON.parse, interleaved
// per step in the same run.
//
// The receiving clients run in processes of their own (bench/clients/receiver.mjs, one forked
// process per client kind, N subscriber sockets each), so the CPU read there — process.cpuUsage()
// of that process, user + system, over a step — is the client's alone: the servers run in their
// own processes (ctx.startServer) and the publishers here, in the load generator. Per step the
// publisher sends so that the receiver gets RATE messages/s, in bursts every TICK ms; the receiver
// counts every message whose callback got the decoded payload (and read one field of it), and
// reads its own CPU at the start of the step and inside the handler of the step's last message.
//
// Why bursts and few sockets (10 by default): every socket read costs the receiving process a
// fixed amount (here ~20 µs: system call, libuv, stream, WebSocket parser), and how many messages
// one read carries depends on how and when the server writes, not on the client. With 50-200
// sockets at a steady rate most reads carry one or two messages, the read dominates and the
// figures swing with the servers' timing (2× between rounds here). Bursts of ~150 messages per
// socket make every client's reads carry many messages; the table still shows reads per message.
//
// Publishers (this process): signalyard echo and kv: one SignalChannel socket publishing (echo
// send / kv.set of 64 keys in turn) to the namespace of the N receivers, so one send reaches N
// sockets; relay: N pairs aN → bN, the B sides in the receiver, the A sides on one raw socket here
// sending pre-encoded DATA frames round robin (one frame per received message, so the load
// generator stays cheap); socket.io: one socket emitting 'pub' to the room
// (bench/servers/socketio.mjs); raw ws: one socket publishing to the room of
// bench/servers/ws-preframed.mjs. The payload is the same object everywhere (~150 bytes of JSON;
// binary echo: a Uint8Array of the same length).
//
// Knobs, all optional: CLIENT_KINDS (comma list of echo-json, echo-binary, kv, relay, socketio,
// ws-json), CLIENT_SECONDS (per step), CLIENT_ROUNDS, CLIENT_RATE (messages/s each receiver
// gets), CLIENT_SOCKETS (subscriber sockets per receiver), CLIENT_TICK (ms between bursts; 2 is
// a steady rate). SIGNALYARD_BENCH_PROF=1 starts the receivers with --cpu-prof (profiles in
// bench/profiles/, client-<kind>-<time>.cpuprofile, written when the scenario ends; the servers
// get theirs from bench/lib/servers.mjs).
import { fork } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { performance } from 'node:perf_hooks'
import WebSocket from 'ws'
import { io } from 'socket.io-client'
import { SignalChannel } from '../../dist/node/index.js'
import { cpuDelta, fmtPercent, fmtRatio, median, ratio } from '../lib/stats.mjs'
import { frame, sleep, within } from '../lib/util.mjs'

export const name = 'client-cost'
export const title = 'Client cost: CPU per received message, in a receiving process of its own'

const bench = fileURLToPath(new URL('..', import.meta.url))
const ALL = ['echo-json', 'echo-binary', 'kv', 'relay', 'socketio', 'ws-json']
const KINDS = process.env.CLIENT_KINDS ? process.env.CLIENT_KINDS.split(',').map((k) => k.trim()).filter((k) => ALL.includes(k)) : ALL
const LABEL = {
  'echo-json': 'signalyard echo, JSON',
  'echo-binary': 'signalyard echo, binary',
  kv: 'signalyard kv update',
  relay: 'signalyard relay data',
  socketio: 'socket.io-client (room)',
  'ws-json': 'raw ws + JSON.parse'
}
const SERVER = { 'echo-json': 'signalyard', 'echo-binary': 'signalyard', kv: 'signalyard', relay: 'signalyard', socketio: 'socketio', 'ws-json': 'ws-preframed' }
const TARGET = 0.5
const KV_KEYS = 64
// signalyard.2 frame types and the JSON payload kind (docs/PROTOCOL.md), for the raw relay sender.
const OPEN = 0x01
const DATA = 0x03
const OPENED = 0x11
const CLOSED = 0x12
const ERROR = 0x16
const JSON_KIND = 1
const REQUEST_TIMEOUT = 10_000
const CONNECT_TIMEOUT = 20_000

const PAD = 'x'.repeat(100)
/** The payload: ~150 bytes of JSON; `s` is the field the receivers read. */
const payload = (i) => ({ s: i, t: Date.now(), from: 'publisher', p: PAD })
const PAYLOAD_BYTES = JSON.stringify(payload(123456)).length
const BYTES = new Uint8Array(PAYLOAD_BYTES).fill(0x5a)

// ---- the receiving processes ----

/** Receivers still running: killed if the runner exits while they are. */
const running = new Set()
process.on('exit', () => { for (const child of running) child.kill('SIGKILL') })

/** Fork bench/clients/receiver.mjs for one client kind; resolves once it is up. */
function forkReceiver (kind) {
  const execArgv = []
  if (process.env.SIGNALYARD_BENCH_PROF === '1') {
    const dir = `${bench}profiles`
    mkdirSync(dir, { recursive: true })
    execArgv.push('--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=client-${kind}-${Date.now()}.cpuprofile`)
  }
  const child = fork(`${bench}clients/receiver.mjs`, [JSON.stringify({ kind })], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  running.add(child)
  let nextId = 1
  const pending = new Map()
  let exited = false
  const exit = new Promise((resolve) => child.once('exit', () => {
    exited = true
    running.delete(child)
    for (const p of pending.values()) { clearTimeout(p.timer); p.reject(new Error(`${kind} receiver exited`)) }
    pending.clear()
    resolve()
  }))
  child.on('message', (msg) => {
    const p = pending.get(msg?.id)
    if (p === undefined) return
    pending.delete(msg.id)
    clearTimeout(p.timer)
    if (msg.error !== undefined) p.reject(new Error(`${kind} receiver: ${msg.error}`))
    else p.resolve(msg)
  })
  const request = (cmd, args = {}, ms = REQUEST_TIMEOUT) => new Promise((resolve, reject) => {
    if (exited) return reject(new Error(`${kind} receiver is not running`))
    const id = nextId++
    const timer = setTimeout(() => { pending.delete(id); reject(new Error(`${kind} receiver: no answer to ${cmd} within ${ms} ms`)) }, ms)
    pending.set(id, { resolve, reject, timer })
    child.send({ id, cmd, ...args })
  })
  const stop = async () => {
    if (!exited) child.send({ cmd: 'stop' })
    const killer = setTimeout(() => child.kill('SIGKILL'), 5000)
    await exit
    clearTimeout(killer)
  }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${kind} receiver not up in ${REQUEST_TIMEOUT} ms`)) }, REQUEST_TIMEOUT)
    child.on('message', function up (msg) {
      if (msg?.type !== 'ready') return
      child.off('message', up)
      clearTimeout(timer)
      resolve({ kind, pid: child.pid, request, stop })
    })
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`${kind} receiver exited (${code}) before it was up`)) })
  })
}

// ---- the publishers (this process), one per client kind ----

/**
 * Open the receiver's n subscribers and this side's publisher. Returns `send(i)` (one publish),
 * `fanout` (messages the receiver gets per send), `close()`, and optionally `cork()`/`uncork()`
 * (around each burst).
 */
const PUBLISHERS = {
  'echo-json': (server, receiver, n) => echoPublisher(server, receiver, n, 'cc-echo-json', payload),
  'echo-binary': (server, receiver, n) => echoPublisher(server, receiver, n, 'cc-echo-binary', () => BYTES),
  kv: async (server, receiver, n) => {
    const ns = 'cc-kv'
    await receiver.request('open', { url: server.url, ns, n }, CONNECT_TIMEOUT)
    const channel = SignalChannel(ns, { url: `${server.url}?s=writer` })
    const kv = channel.kv()
    await within(kv.ready(), 5000, 'kv writer ready')
    const failed = () => {}
    return { fanout: n, send: (i) => { kv.set(`k${i % KV_KEYS}`, payload(i)).catch(failed) }, close: () => channel.close() }
  },
  relay: async (server, receiver, n) => {
    // The A sides speak raw frames on one raw socket (pre-encoded DATA, no client library): the
    // load generator sends one frame per received message, so it is kept as cheap as it gets.
    const ns = 'cc-relay'
    const ws = await openRaw(`${server.url}?s=relay-a`, 'signalyard.2')
    let opened = 0
    let refused = null
    ws.on('message', (data) => {
      if (data[0] === OPENED) opened++
      else if (data[0] === CLOSED || data[0] === ERROR) refused ??= String(data.subarray(10, 10 + data.readUInt32BE(6)))
    })
    for (let i = 0; i < n; i++) ws.send(frame(OPEN, i + 1, 0, { ep: 'relay', ns, local: `a${i}`, remote: `b${i}` }))
    // Both sides must be open at once to pair: the A sides wait (relay.pendingTimeout, 30 s).
    await receiver.request('open', { url: server.url, ns, n }, CONNECT_TIMEOUT)
    const by = Date.now() + 5000
    while (opened < n && refused === null && Date.now() < by) await sleep(5)
    if (opened < n) throw new Error(`relay: ${opened} of ${n} A sides paired${refused === null ? '' : `, refused: ${refused}`}`)
    const frames = Array.from({ length: n }, (_v, i) => frame(DATA, i + 1, JSON_KIND, null, Buffer.from(JSON.stringify(payload(i)))))
    // A burst leaves in one write (as from a client that sends several messages in one turn).
    return { fanout: 1, send: (i) => { ws.send(frames[i % n]) }, cork: () => ws._socket.cork(), uncork: () => ws._socket.uncork(), close: () => ws.terminate() }
  },
  socketio: async (server, receiver, n) => {
    const ns = 'cc-room'
    await receiver.request('open', { url: server.url, ns, n }, CONNECT_TIMEOUT)
    const socket = io(server.url, { transports: ['websocket'], forceNew: true, reconnection: false, query: { s: 'publisher' } })
    await within(new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('connect_error', reject) }), 5000, 'socket.io publisher')
    return { fanout: n, send: (i) => { socket.emit('pub', ns, payload(i)) }, close: () => socket.close() }
  },
  'ws-json': async (server, receiver, n) => {
    const ns = 'cc-room'
    await receiver.request('open', { url: server.url, ns, n }, CONNECT_TIMEOUT)
    const ws = await openRaw(`${server.url}?s=publisher`)
    return { fanout: n, send: (i) => { ws.send(JSON.stringify({ op: 'pub', room: ns, data: payload(i) })) }, close: () => ws.terminate() }
  }
}

/** A raw `ws` socket, open. */
async function openRaw (url, protocol) {
  const ws = new WebSocket(url, protocol, { perMessageDeflate: false })
  ws.on('error', () => {})
  await within(new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) }), 5000, `connect ${url}`)
  return ws
}

async function echoPublisher (server, receiver, n, ns, data) {
  await receiver.request('open', { url: server.url, ns, n }, CONNECT_TIMEOUT)
  const channel = SignalChannel(ns, { url: `${server.url}?s=publisher-${ns}` })
  const echo = channel.echo({ self: false })
  await within(echo.ready(), 5000, 'echo publisher ready')
  return { fanout: n, send: (i) => { echo.send(data(i)) }, close: () => channel.close() }
}

// ---- one step: publish for `seconds` at `rate` received messages/s, read the receiver's CPU ----

/**
 * Call `publisher.send(i)` for i = 0 … total-1 at `rate` per second, in bursts every `tickMs`: all
 * the sends due by then at once.
 */
async function paced (total, rate, tickMs, publisher) {
  const start = performance.now()
  let sent = 0
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate) + 1)
    publisher.cork?.()
    while (sent < due) publisher.send(sent++)
    publisher.uncork?.()
    if (sent < total) await sleep(Math.max(tickMs, start + (sent / rate) * 1000 - performance.now()))
  }
}

async function step ({ receiver, publisher, rate, seconds, drainMs, tickMs }) {
  const sends = Math.max(1, Math.round((rate * seconds) / publisher.fanout))
  const expected = sends * publisher.fanout
  const start = await receiver.request('mark')
  const done = receiver.request('await', { goal: start.count + expected }, seconds * 1000 + drainMs + REQUEST_TIMEOUT)
  done.catch(() => {})
  await paced(sends, rate / publisher.fanout, tickMs, publisher)
  let end
  try {
    end = await within(done, drainMs, 'the step\'s last message')
  } catch {
    end = await receiver.request('mark') // short: measure what did arrive
  }
  const received = end.count - start.count
  const wall = (end.at - start.at) / 1000
  const cpu = cpuDelta(start.cpu, end.cpu)
  const readsPerMessage = (end.reads - start.reads) / received
  const user = end.cpu.user - start.cpu.user
  return { expected, received, wall, cpu, user, perSecond: received / wall, cpuPerMessage: cpu / received, userPerMessage: user / received, busy: cpu / 1e6 / wall, readsPerMessage }
}

/** Wait until the receiver's count stops moving (stragglers of a short step), at most 3 s. */
async function settle (receiver) {
  const until = performance.now() + 3000
  let last = -1
  for (;;) {
    const { count } = await receiver.request('mark')
    if (count === last || performance.now() > until) return
    last = count
    await sleep(100)
  }
}

export async function run (ctx) {
  const quick = ctx.quick
  const seconds = Number(process.env.CLIENT_SECONDS ?? (quick ? 0.5 : 1.5))
  const rounds = Number(process.env.CLIENT_ROUNDS ?? (quick ? 3 : 7))
  const rate = Number(process.env.CLIENT_RATE ?? 30_000)
  const sockets = Number(process.env.CLIENT_SOCKETS ?? 10)
  const tickMs = Number(process.env.CLIENT_TICK ?? 50)
  const warmSeconds = quick ? 0.3 : 1
  const drainMs = quick ? 2000 : 4000
  const servers = {}
  const receivers = {}
  const publishers = {}
  try {
    const kinds = [...new Set(KINDS.map((k) => SERVER[k]))]
    await Promise.all(kinds.map(async (kind) => { servers[kind] = await ctx.startServer(kind) }))
    await Promise.all(KINDS.map(async (kind) => { receivers[kind] = await forkReceiver(kind) }))
    for (const kind of KINDS) {
      const t0 = Date.now()
      publishers[kind] = await PUBLISHERS[kind](servers[SERVER[kind]], receivers[kind], sockets)
      ctx.log(`${kind}: ${sockets} subscriber sockets in process ${receivers[kind].pid} + 1 publisher here, in ${Date.now() - t0} ms`)
    }
    // Warm-up (not reported): JIT of every process, socket buffers.
    for (const kind of KINDS) {
      await step({ receiver: receivers[kind], publisher: publishers[kind], rate, seconds: warmSeconds, drainMs, tickMs })
      await settle(receivers[kind])
    }
    const results = [] // { round, kind, ...step }
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? KINDS : [...KINDS].reverse()
      for (const kind of order) {
        const r = await step({ receiver: receivers[kind], publisher: publishers[kind], rate, seconds, drainMs, tickMs })
        results.push({ round, kind, ...r })
        ctx.log(`round ${round + 1} ${kind}: ${Math.round(r.perSecond)} received/s, ${r.cpuPerMessage.toFixed(2)} client CPU-µs/message, busy ${fmtPercent(r.busy)}, ${r.readsPerMessage.toFixed(2)} reads/message, user ${fmtPercent(r.user / r.cpu)}` +
          (r.received < r.expected ? `, SHORT ${r.expected - r.received} of ${r.expected}` : ''))
        if (r.received < r.expected) await settle(receivers[kind])
      }
    }
    return report(results, { rounds, seconds, rate, sockets, tickMs })
  } finally {
    for (const p of Object.values(publishers)) {
      try { p.close() } catch {}
    }
    await Promise.allSettled(Object.values(receivers).map((r) => r.stop()))
    await Promise.allSettled(Object.values(servers).map((s) => s.stop()))
  }
}

// ---- the table ----

function report (results, { rounds, seconds, rate, sockets, tickMs }) {
  const of = (kind) => results.filter((r) => r.kind === kind)
  const at = (kind, round) => results.find((r) => r.kind === kind && r.round === round)
  /** Median over rounds of this kind's CPU per message ÷ the baseline's in the same round. */
  const vs = (kind, base) => KINDS.includes(base)
    ? median(Array.from({ length: rounds }, (_v, round) => ratio(at(kind, round)?.cpuPerMessage, at(base, round)?.cpuPerMessage)))
    : NaN
  const verdict = (ok) => (ok ? 'met' : '**missed**')
  const columns = ['client', 'server', 'received/s', 'reach', 'client busy (1 core = 100 %)', 'client CPU-µs / message', 'of which user',
    'socket reads / 100 messages', '÷ socket.io-client', '÷ raw ws', `target ≤ ${TARGET}× socket.io-client`]
  const rows = []
  const targets = []
  for (const kind of KINDS) {
    const mine = of(kind)
    const received = mine.reduce((a, r) => a + r.received, 0)
    const expected = mine.reduce((a, r) => a + r.expected, 0)
    const toIo = vs(kind, 'socketio')
    let target = '–'
    if ((kind === 'echo-json' || kind === 'echo-binary') && Number.isFinite(toIo)) {
      target = `${fmtRatio(toIo)}: ${verdict(toIo <= TARGET)}`
      targets.push(`${LABEL[kind]} ${fmtRatio(toIo)}, ${verdict(toIo <= TARGET)}`)
    }
    rows.push([
      LABEL[kind],
      SERVER[kind],
      median(mine.map((r) => r.perSecond)),
      fmtPercent(received / expected),
      fmtPercent(median(mine.map((r) => r.busy))),
      median(mine.map((r) => r.cpuPerMessage)),
      median(mine.map((r) => r.userPerMessage)),
      median(mine.map((r) => r.readsPerMessage * 100)),
      kind === 'socketio' ? '1×' : fmtRatio(toIo),
      kind === 'ws-json' ? '1×' : fmtRatio(vs(kind, 'ws-json')),
      target
    ])
  }
  const overall = KINDS.map((kind) => {
    const mine = of(kind)
    return `${LABEL[kind]} ${(mine.reduce((a, r) => a + r.cpu, 0) / Math.max(1, mine.reduce((a, r) => a + r.received, 0))).toFixed(2)} µs`
  })
  const notes = [
    `Each client kind runs in a receiving process of its own (bench/clients/receiver.mjs) with ${sockets} subscriber sockets ` +
      '(signalyard: the built package, `SignalChannel` from dist/node/index.js, one socket per subscriber); the servers and the publishers run in other processes. ' +
      `Each step the publisher sends so that the receiver gets ${rate.toLocaleString('en-US')} messages/s for ${seconds} s, in bursts every ${tickMs} ms; ` +
      'a message counts when the user callback has the decoded payload and has read one field of it (one byte of a binary payload). ' +
      'Client CPU = process.cpuUsage() (user + system) of the receiving process from the start of the step to the handler of its last message, ÷ messages received: ' +
      'everything that process spends to receive — the WebSocket library, the kernel\'s receive path, timers, GC.',
    `The kinds are interleaved (${rounds} rounds, the order reversed every other round, after one unreported warm-up step each). ` +
      'Figures are medians over rounds; ratios are the medians of per-round ratios of CPU per message (the steps of a round ran back to back).',
    `Payload: the same object everywhere, ${PAYLOAD_BYTES} bytes of JSON (\`{ s, t, from, p }\`); binary echo: a Uint8Array of ${PAYLOAD_BYTES} bytes. ` +
      'Echo, socket.io and raw ws: one publish reaches every subscriber socket; kv: one writer sets 64 keys in turn and every replica gets each update; ' +
      `relay: ${sockets} pairs, the receiver holding the B sides, the A sides on one raw socket of the load generator sending pre-encoded DATA frames round robin.`,
    'Every read of a socket costs the receiving process a fixed amount (the system call, libuv, the stream, the WebSocket parser), so "socket reads / 100 messages" matters: ' +
      'it depends on how and when the server writes, not on the client (a server that writes what a connection is due within one event-loop turn in one write ' +
      'delivers a burst in few reads; one that writes every message on its own, in many). ' +
      `Bursts and few sockets (${sockets}) keep the reads per message low so that the figures show the client's own work per message; ` +
      'with many sockets at a steady rate most reads carry one or two messages and the read, not the client, dominates. ' +
      `Reads per 100 messages in this run (median): ${KINDS.map((kind) => `${LABEL[kind]} ${median(of(kind).map((r) => r.readsPerMessage * 100)).toFixed(1)}`).join(', ')}.`,
    'The raw ws client is the least any JSON client over `ws` does: it parses each message and nothing else (no envelope, no dispatch, no event emitter).',
    `Client CPU per message over all rounds (total CPU ÷ total messages): ${overall.join(', ')}.`,
    ...(targets.length > 0 ? [`Target: client CPU per received echo message ≤ ${TARGET}× socket.io-client's: ${targets.join('; ')}.`] : [])
  ]
  return { columns, rows, notes }
}

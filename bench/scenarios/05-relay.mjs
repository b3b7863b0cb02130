// bench/scenarios/05-relay.mjs — relay throughput: one pair A → B through the server, for 1 KiB,
// 16 KiB and 256 KiB messages, signalyard's relay endpoint vs a raw `ws` forwarder
// (bench/servers/ws-forwarder.mjs), interleaved step by step in the same run.
//
// The load generator speaks raw frames on raw `ws` sockets for both servers, so its own cost is
// the same on both sides and stays small (2 cores: the generator and the server share the
// machine): for signalyard, A opens a relay stream with OPEN { ep: 'relay', ns, local, remote } and
// sends pre-encoded DATA frames (10-byte header + payload, kind binary); for the forwarder, the
// bare payload. Backpressure: A keeps at most WINDOW bytes in flight (sent and not yet received
// by B); every message B receives lets A send more. Figures: payload MB/s received by B, server
// CPU-µs per MB, and the ratio signalyard ÷ forwarder.
import WebSocket from 'ws'
import { cpuDelta, median, ratio, fmt, fmtRatio } from '../lib/stats.mjs'
import { frame, sleep } from '../lib/util.mjs'

export const name = 'relay'
export const title = 'Relay: A → B throughput vs a raw ws forwarder'

const SIZES = [1024, 16 * 1024, 256 * 1024]
/** Bytes A may have in flight (sent, not yet received by B). */
const WINDOW = 4 * 1024 * 1024
const TARGET = 0.9


/** Resolve with the first message `ws` receives that `test` accepts; reject after `ms`. */
function nextMessage (ws, test, ms, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { ws.off('message', on); reject(new Error(`no ${what} within ${ms} ms`)) }, ms)
    const on = (data, isBinary) => {
      if (!test(data, isBinary)) return
      clearTimeout(timer)
      ws.off('message', on)
      resolve(data)
    }
    ws.on('message', on)
  })
}

function open (url, protocol) {
  const ws = new WebSocket(url, protocol, { perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 })
  ws.binaryType = 'nodebuffer'
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { ws.terminate(); reject(new Error(`connect ${url}: timeout`)) }, 5000)
    ws.once('open', () => { clearTimeout(timer); resolve(ws) })
    ws.once('error', (err) => { clearTimeout(timer); reject(err) })
  })
}


/**
 * A connected pair for one server: `a` sends, `b` receives. `wrap(payload)` is what A writes for
 * one message; `overhead` the bytes B receives beyond the payload.
 */
async function signalyardPair (url) {
  const a = await open(url, 'signalyard.2')
  const b = await open(url, 'signalyard.2')
  const opened = (ws) => nextMessage(ws, (d) => d[0] === 0x11 || d[0] === 0x12, 5000, 'OPENED')
  const waitA = opened(a)
  const waitB = opened(b)
  a.send(frame(0x01, 1, 0, { ep: 'relay', ns: 'bench', local: 'A', remote: 'B' }))
  b.send(frame(0x01, 1, 0, { ep: 'relay', ns: 'bench', local: 'B', remote: 'A' }))
  const [ra, rb] = await Promise.all([waitA, waitB])
  if (ra[0] !== 0x11 || rb[0] !== 0x11) throw new Error('relay OPEN refused')
  return { a, b, wrap: (payload) => frame(0x03, 1, 2, null, payload), overhead: 10 }
}

async function forwarderPair (url) {
  const a = await open(`${url}?token=bench`)
  const pairedA = nextMessage(a, (d, bin) => !bin, 5000, 'paired')
  const b = await open(`${url}?token=bench`)
  const pairedB = nextMessage(b, (d, bin) => !bin, 5000, 'paired')
  await Promise.all([pairedA, pairedB])
  return { a, b, wrap: (payload) => payload, overhead: 0 }
}

/**
 * Push `size`-byte messages A → B for `ms`, at most WINDOW bytes in flight. Returns payload bytes
 * B received in the measured time and the server CPU used meanwhile.
 */
async function measure (server, pair, size, ms) {
  const message = pair.wrap(Buffer.alloc(size, 0x5a))
  const wire = size + pair.overhead
  let inFlight = 0
  let received = 0
  let running = true
  const pump = () => {
    while (running && inFlight + wire <= WINDOW) {
      inFlight += wire
      pair.a.send(message, { binary: true })
    }
  }
  const onMessage = (data) => {
    inFlight -= data.length
    received += data.length - pair.overhead
    pump()
  }
  pair.b.on('message', onMessage)
  pump()
  await sleep(Math.min(300, ms / 4)) // warm-up: the window fills, JIT settles
  const before = await server.stats()
  const own0 = process.cpuUsage()
  const r0 = received
  const t0 = process.hrtime.bigint()
  await sleep(ms)
  const after = await server.stats()
  const own = cpuDelta(own0, process.cpuUsage())
  const bytes = received - r0
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  running = false
  // drain what is in flight so the next step starts clean
  const drainBy = Date.now() + 5000
  while (inFlight > 0 && Date.now() < drainBy) await sleep(5)
  pair.b.off('message', onMessage)
  if (inFlight > 0) throw new Error(`${server.kind}: ${inFlight} bytes never arrived`)
  const cpu = cpuDelta(before.cpu, after.cpu)
  return { mbps: bytes / seconds / 1e6, cpuPerMB: cpu / (bytes / 1e6), cpuShare: cpu / 1e6 / seconds, genShare: own / 1e6 / seconds }
}

export async function run (ctx) {
  const stepMs = ctx.quick ? 350 : 1500
  const rounds = ctx.quick ? 4 : 8
  const yard = await ctx.startServer('signalyard', { limits: { maxFrame: 1024 * 1024 } })
  const fwd = await ctx.startServer('ws-forwarder')
  const servers = [
    { label: 'signalyard', server: yard, pair: await signalyardPair(yard.url) },
    { label: 'ws forwarder', server: fwd, pair: await forwarderPair(fwd.url) }
  ]
  const results = new Map() // `${label}/${size}` → [{ mbps, cpuPerMB }]
  try {
    for (const size of SIZES) {
      for (let r = 0; r < rounds; r++) {
        const order = r % 2 === 0 ? servers : [...servers].reverse()
        for (const s of order) {
          const m = await measure(s.server, s.pair, size, stepMs)
          const key = `${s.label}/${size}`
          if (!results.has(key)) results.set(key, [])
          results.get(key).push(m)
          ctx.log(`${s.label} ${size / 1024} KiB: ${m.mbps.toFixed(1)} MB/s, ${m.cpuPerMB.toFixed(0)} µs CPU/MB`)
        }
      }
    }
  } finally {
    for (const s of servers) { s.pair.a.terminate(); s.pair.b.terminate() }
    await yard.stop()
    await fwd.stop()
  }

  const rows = []
  const series = servers.map((s) => ({ label: s.label, points: [] }))
  const notes = []
  for (const size of SIZES) {
    const y = results.get(`signalyard/${size}`)
    const f = results.get(`ws forwarder/${size}`)
    const yMbps = median(y.map((m) => m.mbps))
    const fMbps = median(f.map((m) => m.mbps))
    const yCpu = median(y.map((m) => m.cpuPerMB))
    const fCpu = median(f.map((m) => m.cpuPerMB))
    // Steps of one round ran back to back: the ratio of each round cancels the machine's drift.
    const r = median(y.map((m, k) => ratio(m.mbps, f[k].mbps)))
    const cpuRatio = median(y.map((m, k) => ratio(m.cpuPerMB, f[k].cpuPerMB)))
    const busy = (ms) => `${(median(ms.map((m) => m.cpuShare)) * 100).toFixed(0)} %`
    const target = size >= 16 * 1024 ? (r >= TARGET ? 'met' : 'MISSED') : '–'
    rows.push([`${size / 1024} KiB`, fmt(yMbps, 1), fmt(fMbps, 1), fmtRatio(r), fmt(yCpu, 0), fmt(fCpu, 0), fmtRatio(cpuRatio),
      `${busy(y)} / ${busy(f)}`, `${(median([...y, ...f].map((m) => m.genShare)) * 100).toFixed(0)} %`, target])
    series[0].points.push([size / 1024, yMbps])
    series[1].points.push([size / 1024, fMbps])
    if (target === 'MISSED') notes.push(`${size / 1024} KiB: signalyard reached ${(r * 100).toFixed(0)} % of the forwarder's throughput, ${((TARGET - r) * 100).toFixed(0)} points under the ${TARGET}× target.`)
  }
  notes.unshift(
    `One A → B pair per server on 127.0.0.1, raw ws clients for both (signalyard: pre-encoded DATA frames on a relay stream, 10-byte header; forwarder: bare payload). ` +
    `At most ${WINDOW / 1024 / 1024} MiB in flight. Median of ${rounds} interleaved steps of ${stepMs} ms per size${ctx.quick ? ' (quick mode)' : ''}. ` +
    'MB/s counts payload bytes B received (10^6 bytes); CPU-µs/MB is server process CPU (user + system) per MB relayed. ' +
    'Ratios are the median of per-round ratios (each round runs both servers back to back). "busy" is CPU time ÷ wall time of one process (100 % = one core): ' +
    'when the generator (A and B in one process) is the busier one, MB/s is bounded by the generator and CPU-µs/MB is the fairer comparison.'
  )
  return {
    columns: ['message', 'signalyard MB/s', 'forwarder MB/s', 'ratio', 'signalyard CPU-µs/MB', 'forwarder CPU-µs/MB', 'CPU ratio', 'server busy (yard / fwd)', 'generator busy', 'target ≥ 0.9×'],
    rows,
    notes,
    chart: { title: 'Relay throughput A → B', unit: 'MB/s', xLabel: 'message KiB', series }
  }
}

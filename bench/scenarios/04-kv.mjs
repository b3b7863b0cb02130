// bench/scenarios/04-kv.mjs — the KV store: raw figures, no baseline server.
//
// 1. Set throughput: one client (the real KvStream of the built package) keeps N kv.set() calls in
//    flight (N workers, each awaiting its set before the next), N = 1, 16, 256. Sets/s and server
//    CPU-µs per set (the set, its REPLY and its EVENT to the writer's own subscribed stream).
// 2. Convergence: 32 clients, each on its own WebSocket (`?c=N` URLs), each with a kv replica of one
//    namespace; all 32 write the same 8 keys at once (each awaits its sets in turn). Convergence
//    time = from the last set() call any writer made until the last change any replica applied;
//    then every replica is checked against a fresh full sync (the server's state).
// 3. Expiry at 100k keys: a raw-protocol loader (pre-encoded REQUEST frames, 256 in flight) writes
//    10 namespaces × 10,000 keys (the default kv.maxKeys) with TTLs that make them expire over one
//    second. Server CPU is read over IPC: idle with no keys, idle with 100k live keys (the sweep's
//    overhead), and while they all expire (EVENT expire to the loader's subscribed streams).
import WebSocket from 'ws'
import { SignalChannel } from '../../dist/node/index.js'
import { cpuDelta, percentiles, fmt } from '../lib/stats.mjs'
import { frame, sleep, within } from '../lib/util.mjs'

export const name = 'kv'
export const title = 'KV: set throughput, convergence of 32 writers, expiry of 100k keys'

const now = () => performance.now()
/** Pause after a forced GC before reading idle CPU: concurrent sweeping runs on other threads. */
const GC_SETTLE = 300


async function until (test, ms, what) {
  const by = Date.now() + ms
  while (!test()) {
    if (Date.now() > by) throw new Error(`${what}: not within ${ms} ms`)
    await sleep(2)
  }
}

// ── 1. set throughput ──

async function setThroughput (ctx, yard, depths, ms) {
  const channel = SignalChannel('kv-throughput', { url: `${yard.url}?c=writer` })
  const rows = []
  try {
    const kv = channel.kv()
    await within(kv.ready(), 5000, 'kv ready')
    for (const depth of depths) {
      let running = true
      let done = 0
      const worker = async (w) => {
        for (let i = 0; running; i++) {
          await kv.set(`k${(w * 7919 + i) % 1000}`, { w, i })
          done++
        }
      }
      const workers = Array.from({ length: depth }, (_, w) => worker(w))
      await sleep(200) // warm-up
      const before = await yard.stats()
      const d0 = done
      const t0 = now()
      await sleep(ms)
      const after = await yard.stats()
      const sets = done - d0
      const seconds = (now() - t0) / 1000
      running = false
      await within(Promise.all(workers), 5000, 'set workers finish')
      const cpu = cpuDelta(before.cpu, after.cpu)
      rows.push({ depth, rate: sets / seconds, cpuPerSet: cpu / sets, cpuShare: cpu / 1e6 / seconds })
      ctx.log(`set pipeline ${depth}: ${(sets / seconds).toFixed(0)} sets/s, ${(cpu / sets).toFixed(1)} µs CPU/set`)
    }
  } finally {
    channel.close()
  }
  return rows
}

// ── 2. convergence of 32 writers ──

const stateOf = (kv) => JSON.stringify(Object.entries(kv.toJSON()).sort(([a], [b]) => (a < b ? -1 : 1)))

async function convergence (ctx, yard, { clients, keys, writes, rounds }) {
  const ns = 'kv-converge'
  const channels = []
  const samples = []
  let mismatches = 0
  let writeSeconds = 0
  try {
    const replicas = []
    const lastChange = new Float64Array(clients)
    for (let c = 0; c < clients; c++) {
      const channel = SignalChannel(ns, { url: `${yard.url}?c=conv${c}` })
      channels.push(channel)
      const kv = channel.kv()
      kv.on('update', () => { lastChange[c] = now() })
      kv.on('delete', () => { lastChange[c] = now() })
      replicas.push(kv)
    }
    await within(Promise.all(replicas.map((kv) => kv.ready())), 10_000, 'replicas ready')
    for (let r = 0; r < rounds; r++) {
      lastChange.fill(0)
      let lastWrite = 0
      const t0 = now()
      await within(Promise.all(replicas.map(async (kv, c) => {
        for (let j = 0; j < writes; j++) {
          lastWrite = Math.max(lastWrite, now())
          await kv.set(`key${(c + j) % keys}`, { c, j, r })
        }
      })), 20_000, 'writers finish')
      writeSeconds += (now() - t0) / 1000
      // Quiet: every replica equal, and nothing changed for a while.
      await until(() => {
        const first = stateOf(replicas[0])
        return replicas.every((kv) => stateOf(kv) === first) && now() - Math.max(...lastChange) > 20
      }, 5000, 'replicas agree')
      samples.push(Math.max(...lastChange) - lastWrite)
      // The server's state: a fresh replica's full sync.
      const check = SignalChannel(ns, { url: `${yard.url}?c=check${r}` })
      try {
        const kv = check.kv()
        await within(kv.ready(), 5000, 'check replica ready')
        if (stateOf(kv) !== stateOf(replicas[0])) mismatches++
      } finally {
        check.close()
      }
    }
  } finally {
    for (const channel of channels) channel.close()
  }
  const { p50, p99 } = percentiles(samples, [50, 99])
  const sets = clients * writes * rounds
  ctx.log(`convergence: p50 ${p50.toFixed(1)} ms, max ${Math.max(...samples).toFixed(1)} ms over ${rounds} rounds, ${mismatches} mismatches`)
  return { p50, p99, max: Math.max(...samples), mismatches, rounds, setsPerSecond: sets / writeSeconds }
}

// ── 3. expiry of 100k keys, raw protocol ──


function openRaw (url) {
  const ws = new WebSocket(url, 'signalyard.2', { perMessageDeflate: false })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { ws.terminate(); reject(new Error('connect: timeout')) }, 5000)
    ws.once('open', () => { clearTimeout(timer); resolve(ws) })
    ws.once('error', (err) => { clearTimeout(timer); reject(err) })
  })
}

const metaOf = (data) => {
  const len = data.readUInt32BE(6)
  return len === 0 ? {} : JSON.parse(data.subarray(10, 10 + len).toString())
}

async function expiry (ctx, yard, { namespaces, perNamespace, idleMs, spreadMs, estimate }) {
  const total = namespaces * perNamespace
  const ws = await openRaw(`${yard.url}?c=loader`)
  const counts = { onReply: null, opened: 0, replies: 0, errors: 0, expired: 0, firstExpire: 0, lastExpire: 0 }
  ws.on('message', (data) => {
    const type = data[0]
    if (type === 0x15) { counts.replies++; counts.onReply?.() }
    else if (type === 0x11) counts.opened++
    else if (type === 0x16 || type === 0x12) counts.errors++
    else if (type === 0x14 && data.includes('"expire"')) {
      if (counts.expired === 0) counts.firstExpire = now()
      counts.expired++
      counts.lastExpire = now()
    }
  })
  try {
    for (let n = 0; n < namespaces; n++) ws.send(frame(0x01, n + 1, 0, { ep: 'kv', ns: `kv-expiry-${n}` }))
    await until(() => counts.opened === namespaces, 5000, 'kv streams opened')

    // Idle with no keys.
    await sleep(200)
    const emptyGc = await yard.gc()
    await sleep(GC_SETTLE) // the collector's helper threads finish their share first
    const emptyBefore = await yard.stats()
    const e0 = now()
    await sleep(idleMs)
    const emptyAfter = await yard.stats()
    const idleEmpty = cpuDelta(emptyBefore.cpu, emptyAfter.cpu) / ((now() - e0) / 1000)

    // Load: 100k sets, 256 in flight; key i expires at expireAt + i/total × spreadMs.
    const value = Buffer.alloc(16, 0x61)
    const loadStart = Date.now()
    // `estimate` (sets/s) is a low guess from step 1, so that the keys outlive the load.
    const expireAt = loadStart + Math.ceil(total / estimate * 1000) + GC_SETTLE + idleMs + 600
    const loadCpu0 = (await yard.stats()).cpu
    const t0 = now()
    let sent = 0
    const window = 256
    const pump = () => {
      while (sent < total && sent - counts.replies < window) {
        const ns = sent % namespaces
        const ttl = Math.max(1, Math.round(expireAt + (sent / total) * spreadMs - Date.now()))
        ws.send(frame(0x04, ns + 1, 2, { op: 'set', req: sent + 1, key: `key-${sent}`, ttl }, value))
        sent++
      }
    }
    counts.onReply = pump
    pump()
    await until(() => counts.replies >= total || counts.errors > 0, 60_000, `${total} sets answered`)
    counts.onReply = null
    if (counts.errors > 0) throw new Error(`the server refused ${counts.errors} sets`)
    const loadSeconds = (now() - t0) / 1000
    const loadCpu = cpuDelta(loadCpu0, (await yard.stats()).cpu)
    ctx.log(`loaded ${total} keys in ${loadSeconds.toFixed(2)} s (${(total / loadSeconds).toFixed(0)} sets/s)`)

    // Idle with 100k live keys.
    const liveGc = await yard.gc()
    await sleep(GC_SETTLE)
    const liveBefore = await yard.stats()
    const idleLeft = expireAt - Date.now() - 150
    if (idleLeft < 200) throw new Error(`loading took too long (${loadSeconds.toFixed(1)} s): no time left to measure idle`)
    const l0 = now()
    await sleep(Math.min(idleMs, idleLeft))
    const liveAfter = await yard.stats()
    const idleLive = cpuDelta(liveBefore.cpu, liveAfter.cpu) / ((now() - l0) / 1000)
    const bytesPerKey = (liveGc.mem.heapUsed - emptyGc.mem.heapUsed) / total

    // Expiry: from just before the first key is due until the loader saw every expire EVENT.
    await sleep(Math.max(0, expireAt - Date.now() - 100))
    const x0 = now()
    const expBefore = await yard.stats()
    await until(() => counts.expired >= total, spreadMs + 10_000, `${total} keys expired`)
    const expAfter = await yard.stats()
    const expSeconds = (now() - x0) / 1000
    const expCpu = cpuDelta(expBefore.cpu, expAfter.cpu)
    const net = expCpu - idleEmpty * expSeconds
    ctx.log(`expired ${total} keys: ${(expCpu / total).toFixed(2)} µs CPU/key gross, ${(net / total).toFixed(2)} net; idle ${idleEmpty.toFixed(0)} → ${idleLive.toFixed(0)} µs/s with keys`)
    return {
      total,
      loadRate: total / loadSeconds,
      loadCpuPerSet: loadCpu / total,
      idleEmpty,
      idleLive,
      bytesPerKey,
      grossPerKey: expCpu / total,
      netPerKey: net / total,
      expireSpan: counts.lastExpire - counts.firstExpire
    }
  } finally {
    ws.terminate()
  }
}

export async function run (ctx) {
  const quick = ctx.quick
  const yard = await ctx.startServer('signalyard')
  try {
    const depths = [1, 16, 256]
    const sets = await setThroughput(ctx, yard, depths, quick ? 700 : 3000)
    const conv = await convergence(ctx, yard, { clients: 32, keys: 8, writes: quick ? 10 : 25, rounds: quick ? 5 : 20 })
    const exp = await expiry(ctx, yard, { namespaces: 10, perNamespace: 10_000, idleMs: quick ? 700 : 3000, spreadMs: 1000, estimate: Math.max(5000, 0.6 * Math.max(...sets.map((s) => s.rate))) })
    const rows = [
      ...sets.map((s) => [`set throughput, ${s.depth} in flight`, `${fmt(s.rate, 0)} sets/s`, fmt(s.cpuPerSet, 1), `server busy ${(s.cpuShare * 100).toFixed(0)} % of a core`]),
      ['convergence, 32 writers × 8 shared keys', `p50 ${fmt(conv.p50, 1)} ms, max ${fmt(conv.max, 1)} ms`, '–',
        `${conv.rounds} rounds; ${fmt(conv.setsPerSecond, 0)} sets/s aggregate; ${conv.mismatches === 0 ? 'every replica equal to the server' : `${conv.mismatches} rounds DIFFERED from the server`}`],
      [`load ${exp.total.toLocaleString('en-US')} keys (raw frames, 256 in flight)`, `${fmt(exp.loadRate, 0)} sets/s`, fmt(exp.loadCpuPerSet, 1), `heap ${fmt(exp.bytesPerKey, 0)} B per live key (16-byte values)`],
      [`expiry of ${exp.total.toLocaleString('en-US')} keys over ~1 s`, `${fmt(exp.expireSpan, 0)} ms first → last expire EVENT`, fmt(exp.netPerKey, 2), `gross ${fmt(exp.grossPerKey, 2)} µs/key incl. idle; one subscribed connection gets the EVENTs`],
      [`idle with ${exp.total.toLocaleString('en-US')} live keys`, `${fmt(exp.idleLive, 0)} CPU-µs/s`, '–', `vs ${fmt(exp.idleEmpty, 0)} CPU-µs/s with no keys: sweep overhead ${fmt(exp.idleLive - exp.idleEmpty, 0)} µs/s`]
    ]
    return {
      columns: ['test', 'result', 'server CPU-µs per op', 'detail'],
      rows,
      notes: [
        'Set throughput uses the package\'s KvStream (kv.set awaited by N workers); each set is also broadcast to the writer\'s own replica. ' +
        `Steps of ${quick ? 700 : 3000} ms${quick ? ' (quick mode)' : ''}.`,
        'Convergence: 32 sockets in one generator process; time from the last set() call until the last change applied by any replica (includes the generator\'s own event handling for 32 replicas). ' +
        `Each round: every writer sets ${quick ? 10 : 25} values in turn.`,
        'Expiry: 10 namespaces × 10,000 keys (default kv.maxKeys), sweep every 100 ms (default). "net" CPU per key subtracts the idle CPU rate over the expiry window; idle CPU includes the 10 s ping timer.'
      ],
      chart: {
        title: 'KV set throughput by pipeline depth',
        unit: 'sets/s',
        xLabel: 'sets in flight',
        series: [{ label: 'signalyard', points: sets.map((s) => [s.depth, s.rate]) }]
      }
    }
  } finally {
    await yard.stop()
  }
}

// bench/scenarios/03-idle.mjs — idle connections: what one open socket costs the server.
//
// For each size (1k, 5k, 10k; quick mode 1k and 5k) and, interleaved, each server (signalyard,
// then the raw-ws baseline bench/servers/ws-idle.mjs): start a fresh server process, GC it and
// read its memory (the baseline), open N sockets, let each signalyard socket open one echo and one
// kv stream (namespaces shared by rooms of 10 sockets), wait until every stream is OPENED (or every
// baseline socket got its "hi"), GC the server again and read its memory. Per connection:
// (after − before) ÷ N for heapUsed and RSS. Target: signalyard ≤ raw ws + 1 KiB per connection.
//
// The sockets are held by generator child processes (this file forked with --idle-generator),
// at most PER_GENERATOR sockets each, so no process needs more file descriptors than that; the
// generators speak the signalyard.2 protocol with plain `ws` clients (OPEN frames built here), not
// the signalyard client, to stay light.
import { execFileSync, fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export const name = 'idle'
export const title = 'Idle connections: server memory per open socket (1 echo + 1 kv stream each)'

const PER_GENERATOR = 5000
const ROOM = 10
const CONNECT_CONCURRENCY = 200
const KIB = 1024
/** Fewer sockets than this give per-connection figures too noisy to judge the target on. */
const JUDGE_FROM = 5000
/** RSS is judged only with this many sockets (the full run): below, its noise exceeds the target. */
const RSS_JUDGE_AT = 10000

// ---------------------------------------------------------------- generator child process

if (process.argv[2] === '--idle-generator') runGenerator()

function runGenerator () {
  process.on('message', async (msg) => {
    if (msg?.cmd !== 'open') return
    const { WebSocket } = await import('ws')
    const sockets = []
    let ready = 0
    let failed = 0
    const openOne = (i) => new Promise((resolve) => {
      const signalyard = msg.kind === 'signalyard'
      const ws = new WebSocket(msg.url, signalyard ? ['signalyard.2'] : [], { perMessageDeflate: false })
      sockets.push(ws)
      let opened = 0
      let settled = false
      const settle = (ok) => {
        if (settled) return
        settled = true
        if (ok) ready++
        else failed++
        resolve()
      }
      ws.on('error', () => settle(false))
      ws.on('close', () => settle(false))
      ws.on('open', () => {
        if (!signalyard) return
        const ns = `idle-${Math.floor((msg.offset + i) / ROOM)}`
        ws.send(openFrame(1, { ep: 'echo', ns }))
        ws.send(openFrame(2, { ep: 'kv', ns }))
      })
      ws.on('message', (data) => {
        if (!signalyard) return settle(true) // the baseline's "hi"
        const type = data[0]
        if (type === 0x11 && ++opened === 2) settle(true) // OPENED
        if (type === 0x12) settle(false) // CLOSED: refused
      })
    })
    let next = 0
    const worker = async () => {
      while (next < msg.count) await openOne(next++)
    }
    await Promise.all(Array.from({ length: Math.min(CONNECT_CONCURRENCY, msg.count) }, worker))
    process.send({ type: 'ready', ready, failed })
    process.on('message', (m) => {
      if (m?.cmd !== 'close') return
      for (const ws of sockets) ws.terminate()
      process.exit(0)
    })
  })
  process.on('disconnect', () => process.exit(0))
}

/** A signalyard.2 OPEN frame (docs/PROTOCOL.md: u8 type, u32 id, u8 kind, u32 metaLen, meta). */
function openFrame (sid, meta) {
  const json = Buffer.from(JSON.stringify(meta))
  const out = Buffer.alloc(10 + json.length)
  out[0] = 0x01
  out.writeUInt32BE(sid, 1)
  out[5] = 0
  out.writeUInt32BE(json.length, 6)
  json.copy(out, 10)
  return out
}

// ---------------------------------------------------------------- the scenario

/** Open `count` sockets to `server` from generator children; resolves with them once all settled. */
async function openSockets (server, count, timeoutMs) {
  const here = fileURLToPath(import.meta.url)
  const children = []
  const results = []
  for (let offset = 0; offset < count; offset += PER_GENERATOR) {
    const n = Math.min(PER_GENERATOR, count - offset)
    const child = fork(here, ['--idle-generator'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    children.push(child)
    results.push(new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`idle: ${n} sockets not open in ${timeoutMs} ms`)), timeoutMs)
      child.once('message', (m) => { clearTimeout(timer); resolve(m) })
      child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`idle generator exited (${code})`)) })
    }))
    child.send({ cmd: 'open', url: server.url, kind: server.kind, count: n, offset })
  }
  const close = async () => {
    await Promise.all(children.map((child) => new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve()
      const killer = setTimeout(() => child.kill('SIGKILL'), 5000)
      child.once('exit', () => { clearTimeout(killer); resolve() })
      try { child.send({ cmd: 'close' }) } catch { child.kill('SIGKILL') }
    })))
  }
  try {
    const done = await Promise.all(results)
    return {
      ready: done.reduce((n, r) => n + r.ready, 0),
      failed: done.reduce((n, r) => n + r.failed, 0),
      close
    }
  } catch (err) {
    await close()
    throw err
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** One measurement: a fresh server of `kind`, N sockets, memory before and after (both after GC). */
async function measure (ctx, kind, count) {
  const server = await ctx.startServer(kind)
  try {
    await sleep(100)
    const before = await server.gc()
    const t0 = performance.now()
    // Two halves: the second half's cost is the marginal cost of a connection, free of what a
    // server pays once however many it holds (a young generation grown by the setup's garbage).
    const half = Math.floor(count / 2)
    const firstHalf = await openSockets(server, half, 60_000)
    let secondHalf = null
    try {
      await sleep(300)
      const mid = await server.gc()
      secondHalf = await openSockets(server, count - half, 60_000)
      const openMs = performance.now() - t0
      await sleep(300)
      const after = await server.gc()
      const per = (field) => (after.mem[field] - before.mem[field]) / count
      const marginal = (field) => (after.mem[field] - mid.mem[field]) / (count - half)
      return {
        kind,
        count,
        ready: firstHalf.ready + secondHalf.ready,
        failed: firstHalf.failed + secondHalf.failed,
        openMs,
        heap: per('heapUsed'),
        rss: per('rss'),
        external: per('external'),
        heapMarginal: marginal('heapUsed'),
        rssMarginal: marginal('rss'),
        extra: after.extra
      }
    } finally {
      await secondHalf?.close()
      await firstHalf.close()
    }
  } finally {
    await server.stop()
  }
}

/** The soft file-descriptor limit of processes this one starts (children inherit it). */
function fdLimit () {
  try {
    return Number(execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim())
  } catch {
    return NaN
  }
}

const fmt = (n) => Math.round(n).toLocaleString('en-US')

export async function run (ctx) {
  const sizes = ctx.quick ? [1000, 5000] : [1000, 5000, 10000]
  const kinds = ['signalyard', 'ws-idle']
  const limit = fdLimit()
  const notes = []
  if (Number.isFinite(limit) && limit < Math.max(...sizes) + 64) {
    notes.push(`the soft fd limit (${limit}) is below ${Math.max(...sizes)} + 64: the server process cannot hold every socket; raise \`ulimit -n\``)
  }
  const results = []
  for (const count of sizes) {
    for (const kind of kinds) {
      const r = await measure(ctx, kind, count)
      ctx.log(`idle ${kind} ${count}: ready ${r.ready}/${count} in ${Math.round(r.openMs)} ms, heap ${fmt(r.heap)} B/conn (marginal ${fmt(r.heapMarginal)}), rss ${fmt(r.rss)} B/conn (marginal ${fmt(r.rssMarginal)}), external ${fmt(r.external)} B/conn`)
      results.push(r)
    }
  }
  const rows = []
  const verdicts = []
  for (const count of sizes) {
    const sy = results.find((r) => r.kind === 'signalyard' && r.count === count)
    const ws = results.find((r) => r.kind === 'ws-idle' && r.count === count)
    const heapOver = sy.heapMarginal - ws.heapMarginal
    const rssOver = sy.rssMarginal - ws.rssMarginal
    // Judged where one connection's cost stands out of the noise: heap (average and marginal)
    // from 5k sockets on, RSS at the largest size only (page-granular, it swings by KiBs per
    // connection at small counts, the baseline's own included).
    const judged = count >= JUDGE_FROM
    const largest = count >= RSS_JUDGE_AT
    const met = sy.ready === count && sy.heap - ws.heap <= KIB && heapOver <= KIB && (!largest || rssOver <= KIB)
    verdicts.push(judged ? met : null)
    const signed = (n) => `${n >= 0 ? '+' : ''}${fmt(n)}`
    rows.push([fmt(count), 'signalyard', `${fmt(sy.ready)}/${fmt(count)}`, fmt(sy.heap), fmt(sy.rss), fmt(sy.heapMarginal), fmt(sy.rssMarginal),
      signed(heapOver), signed(rssOver), judged ? (met ? 'met' : 'MISSED') : 'not judged'])
    rows.push([fmt(count), 'raw ws (idle)', `${fmt(ws.ready)}/${fmt(count)}`, fmt(ws.heap), fmt(ws.rss), fmt(ws.heapMarginal), fmt(ws.rssMarginal), '', '', ''])
    if (sy.extra?.connections !== undefined && sy.extra.connections !== count) {
      notes.push(`signalyard reported ${sy.extra.connections} connections at ${count} sockets`)
    }
  }
  const biggest = results.find((r) => r.kind === 'signalyard' && r.count === Math.max(...sizes))
  notes.push(
    'Average per connection = (server memory after N sockets − memory of the fresh server) ÷ N. Marginal per connection = (memory after N − memory after the first N/2) ÷ (N/2): what one more connection costs, without what the process pays once (its young generation grows with the setup\'s garbage and keeps its pages: that shows in the average RSS, less so as N grows). All read after global.gc() in the server process (stats IPC `gc`); a fresh server process per row, the two servers interleaved per size.',
    `Target: signalyard ≤ raw ws + 1 KiB per connection — judged from ${fmt(JUDGE_FROM)} sockets on, on the heap (average and marginal) and, at ${fmt(RSS_JUDGE_AT)} sockets (full run only), the marginal RSS: ${verdicts.every((v) => v !== false) ? 'met' : 'missed at ' + sizes.filter((_, i) => verdicts[i] === false).map(fmt).join(', ')}. At 1,000 sockets the per-connection figures move by ±0.5 KiB (heap) and several KiB (RSS) from run to run, the baseline's too, so that row is reported, not judged.`,
    `${fmt(biggest.ready)} of ${fmt(biggest.count)} signalyard sockets held by one server process (${biggest.extra?.namespaces ?? '?'} namespaces, ${ROOM} sockets per namespace, each socket with one echo and one kv stream in its namespace).`,
    'Clients are plain `ws` sockets speaking signalyard.2 (two OPEN frames each, then silence), held by generator child processes of at most 5,000 sockets each; the baseline server holds its sockets and does nothing (bench/servers/ws-idle.mjs).',
    'RSS is the resident set of the server process: it includes memory the allocator keeps after GC, so it is noisier than heap.',
    'Before the fix, signalyard used +2.9 KiB of heap per connection over raw ws (1.7 KiB for the connection, 0.8 KiB per echo stream, 0.6 KiB per kv stream): three Maps, a dispatch table of four closures and four socket-listener closures per connection, closures and an eagerly built EVENT meta per stream. Fix (src/server/connection.ts, server.ts, endpoints/echo.ts, endpoints/kv.ts): listeners and dispatch table shared by every connection (the socket points to its connection), no per-connection endpoint and namespace maps (namespaces are counted from the streams when a stream opens), the backlog made only when a frame has to wait, echo and kv streams as classes, the echo meta built on the first publish. After it: +0.7–0.9 KiB.'
  )
  if (ctx.quick) notes.push('Quick mode: 1k and 5k sockets only; the full run adds 10k.')
  return {
    columns: ['sockets', 'server', 'open', 'heap B/conn (avg)', 'RSS B/conn (avg)', 'heap marginal', 'RSS marginal', 'heap − ws (marginal)', 'RSS − ws (marginal)', '≤ ws + 1 KiB'],
    rows,
    notes,
    chart: {
      title: 'Idle: server heap per connection',
      unit: 'bytes per connection',
      series: [
        { label: 'signalyard heap', points: results.filter((r) => r.kind === 'signalyard').map((r) => [r.count, Math.round(r.heap)]) },
        { label: 'raw ws heap', points: results.filter((r) => r.kind === 'ws-idle').map((r) => [r.count, Math.round(r.heap)]) },
        { label: 'signalyard RSS', points: results.filter((r) => r.kind === 'signalyard').map((r) => [r.count, Math.round(r.rss)]) },
        { label: 'raw ws RSS', points: results.filter((r) => r.kind === 'ws-idle').map((r) => [r.count, Math.round(r.rss)]) }
      ]
    }
  }
}


// bench/lib/redis.mjs — a redis-server of the scenario's own, and what the scenarios read from it.
//
// startRedis() spawns `redis-server --port P --bind 127.0.0.1 --save '' --appendonly no` on a free
// port (ready on "Ready to accept connections") and kills it when asked, or from a process 'exit'
// hook (a runner that gives up on a scenario and exits leaves none behind). It answers one-shot
// commands over a fresh raw socket (cpu(), version(), keys()), and opens two kinds of long-lived
// connections for measuring:
//
//   probe()    one connection that takes snapshots: `INFO commandstats stats cpu` in one command,
//              parsed into per-command calls, the net byte counters and the CPU. A delta between
//              two snapshots leaves out the probe's own traffic (its INFO replies and requests are
//              counted here to the byte, and the `info` / `config|…` commands are dropped).
//   monitor()  a MONITOR connection: every command Redis runs, each as { source, name, args },
//              source `lua` for the commands a script ran, else the client's address.
//
// No dependency: RESP is spoken by hand (the replies read here are +, -, :, $ and *).
import { spawn } from 'node:child_process'
import { createConnection } from 'node:net'
import { freePort } from './util.mjs'

const READY_TIMEOUT = 5_000
const REPLY_TIMEOUT = 5_000

/** A command as RESP (an array of bulk strings). */
export function encodeCommand (args) {
  return Buffer.from(`*${args.length}\r\n${args.map((p) => `$${Buffer.byteLength(String(p))}\r\n${p}\r\n`).join('')}`)
}

/** One command over a fresh connection (RESP array, then QUIT); the raw reply text. */
export function redisCommand (port, args, timeoutMs = 3000) {
  return new Promise((resolve, reject) => {
    const socket = createConnection(port, '127.0.0.1')
    let reply = ''
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`redis ${args[0]}: no answer in ${timeoutMs} ms`)) }, timeoutMs)
    socket.setEncoding('utf8')
    socket.on('data', (d) => { reply += d })
    socket.on('end', () => { clearTimeout(timer); resolve(reply) })
    socket.on('error', (error) => { clearTimeout(timer); reject(error) })
    socket.write(Buffer.concat([encodeCommand(args), encodeCommand(['QUIT'])]))
  })
}

/** A number field (`name:value`) of an INFO reply. */
function infoField (info, name) {
  const m = new RegExp(`^${name}:([0-9.]+)`, 'm').exec(info)
  if (m === null) throw new Error(`redis INFO without ${name}: ${info.slice(0, 200)}`)
  return Number(m[1])
}

/** redis-server's own CPU time in µs (user + system, all its threads), from an INFO cpu reply. */
const cpuOf = (info) => Math.round((infoField(info, 'used_cpu_user') + infoField(info, 'used_cpu_sys')) * 1e6)

/** redis-server's own CPU time in µs (user + system, all its threads), from INFO cpu. */
export async function redisCpu (port) {
  return cpuOf(await redisCommand(port, ['INFO', 'cpu']))
}

export async function startRedis () {
  const port = await freePort()
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] })
  const alive = () => child.exitCode === null && child.signalCode === null
  const kill = () => { if (alive()) child.kill('SIGKILL') }
  process.once('exit', kill)
  const exited = new Promise((resolve) => child.once('exit', resolve))
  let out = ''
  try {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server not ready in ${READY_TIMEOUT} ms: ${out.slice(-500)}`)), READY_TIMEOUT)
      child.stdout.on('data', (chunk) => {
        if (out.length < 10_000) out += chunk
        if (out.includes('Ready to accept connections')) { clearTimeout(timer); resolve() }
      })
      child.stderr.on('data', (chunk) => { if (out.length < 10_000) out += chunk })
      child.once('error', (error) => { clearTimeout(timer); reject(new Error(`redis-server: ${error.message}`)) })
      child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`redis-server exited (${code}): ${out.slice(-500)}`)) })
    })
  } catch (error) {
    kill()
    process.off('exit', kill)
    throw error
  }
  const opened = new Set()
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    pid: child.pid,
    cpu: () => redisCpu(port),
    version: async () => /^redis_version:(\S+)/m.exec(await redisCommand(port, ['INFO', 'server']))?.[1] ?? '?',
    keys: async (pattern) => {
      const reply = await redisCommand(port, ['KEYS', pattern])
      return Number(/^\*(\d+)/.exec(reply)?.[1] ?? NaN)
    },
    probe: async () => track(opened, await openProbe(port)),
    monitor: async () => track(opened, await openMonitor(port)),
    stop: async () => {
      for (const c of opened) c.close()
      kill()
      await exited
      process.off('exit', kill)
    }
  }
}

function track (set, conn) {
  set.add(conn)
  const close = conn.close
  conn.close = () => { set.delete(conn); close() }
  return conn
}

// ---- RESP replies ----------------------------------------------------------------------------

/** The reply at `buf[at…]`: { value, end } or null when it is not complete yet. */
function parseReply (buf, at = 0) {
  const eol = buf.indexOf('\r\n', at)
  if (eol < 0) return null
  const type = String.fromCharCode(buf[at])
  const line = buf.toString('latin1', at + 1, eol)
  if (type === '+') return { value: line, end: eol + 2 }
  if (type === '-') return { value: new Error(line), end: eol + 2 }
  if (type === ':') return { value: Number(line), end: eol + 2 }
  if (type === '$') {
    const n = Number(line)
    if (n < 0) return { value: null, end: eol + 2 }
    if (buf.length < eol + 2 + n + 2) return null
    return { value: buf.subarray(eol + 2, eol + 2 + n), end: eol + 2 + n + 2 }
  }
  if (type === '*') {
    const n = Number(line)
    const items = []
    let pos = eol + 2
    for (let i = 0; i < n; i++) {
      const item = parseReply(buf, pos)
      if (item === null) return null
      items.push(item.value)
      pos = item.end
    }
    return { value: items, end: pos }
  }
  throw new Error(`unexpected RESP reply type ${JSON.stringify(type)}`)
}

/** A raw connection: `command(args)` → { value, bytesIn (its request), bytesOut (its reply) }. */
function openConnection (port) {
  return new Promise((resolve, reject) => {
    const socket = createConnection(port, '127.0.0.1')
    socket.setNoDelay(true)
    let buf = Buffer.alloc(0)
    const waiting = []
    socket.on('data', (chunk) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
      for (;;) {
        if (waiting.length === 0 || buf.length === 0) return
        const reply = parseReply(buf)
        if (reply === null) return
        const w = waiting.shift()
        clearTimeout(w.timer)
        w.resolve({ value: reply.value, bytesIn: w.bytesIn, bytesOut: reply.end })
        buf = buf.subarray(reply.end)
      }
    })
    socket.once('connect', () => resolve({
      socket,
      command: (args) => new Promise((resolve, reject) => {
        const request = encodeCommand(args)
        const timer = setTimeout(() => reject(new Error(`redis ${args[0]}: no answer in ${REPLY_TIMEOUT} ms`)), REPLY_TIMEOUT)
        waiting.push({ resolve, reject, timer, bytesIn: request.length })
        socket.write(request)
      }),
      close: () => socket.destroy()
    }))
    socket.once('error', reject)
  })
}

// ---- probe: snapshots of commandstats, byte counters and CPU ----------------------------------

/** Commands of the probe itself (left out of every delta). */
const OWN = /^(info|config\|.*|client\|.*|monitor)$/

/**
 * A snapshot: { at (performance.now()), calls: { name: n }, usec: { name: µs }, netIn, netOut,
 * cpu (µs) }. `own` is what the probe's own INFO requests and replies added to the byte counters
 * since the previous snapshot (taken into account by `diff`).
 */
async function openProbe (port) {
  const conn = await openConnection(port)
  let lastReplyBytes = 0
  const snapshot = async () => {
    const { value, bytesIn, bytesOut } = await conn.command(['INFO', 'commandstats', 'stats', 'cpu'])
    const info = value.toString('latin1')
    const calls = {}
    const usec = {}
    for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
      if (OWN.test(m[1])) continue
      calls[m[1]] = Number(m[2])
      usec[m[1]] = Number(m[3])
    }
    // Counted in this snapshot: its own request (read before INFO ran) and the previous reply
    // (written after the previous INFO ran); its own reply only in the next one.
    const own = { in: bytesIn, out: lastReplyBytes }
    lastReplyBytes = bytesOut
    return {
      at: performance.now(),
      calls,
      usec,
      netIn: infoField(info, 'total_net_input_bytes'),
      netOut: infoField(info, 'total_net_output_bytes'),
      cpu: cpuOf(info),
      own
    }
  }
  return {
    snapshot,
    /** CONFIG RESETSTAT (zeroes commandstats and the byte counters), then a first snapshot. */
    reset: async () => {
      await conn.command(['CONFIG', 'RESETSTAT'])
      lastReplyBytes = 0 // the counters restarted after the previous reply was written
      return snapshot()
    },
    close: conn.close
  }
}

/**
 * What happened between snapshots `a` and `b` (taken in that order by one probe): { ms, calls,
 * usec, netIn, netOut, cpu }, the probe's own traffic left out.
 */
export function diff (a, b) {
  const calls = {}
  const usec = {}
  for (const name of new Set([...Object.keys(a.calls), ...Object.keys(b.calls)])) {
    const n = (b.calls[name] ?? 0) - (a.calls[name] ?? 0)
    if (n !== 0) { calls[name] = n; usec[name] = (b.usec[name] ?? 0) - (a.usec[name] ?? 0) }
  }
  return {
    ms: b.at - a.at,
    calls,
    usec,
    netIn: b.netIn - a.netIn - b.own.in,
    netOut: b.netOut - a.netOut - b.own.out,
    cpu: b.cpu - a.cpu
  }
}

/** The sum of deltas (several windows of one measurement). */
export function sumDiffs (list) {
  const out = { ms: 0, calls: {}, usec: {}, netIn: 0, netOut: 0, cpu: 0 }
  for (const d of list) {
    out.ms += d.ms
    out.netIn += d.netIn
    out.netOut += d.netOut
    out.cpu += d.cpu
    for (const [name, n] of Object.entries(d.calls)) out.calls[name] = (out.calls[name] ?? 0) + n
    for (const [name, n] of Object.entries(d.usec)) out.usec[name] = (out.usec[name] ?? 0) + n
  }
  return out
}

// ---- MONITOR ----------------------------------------------------------------------------------

/** One MONITOR line: `+<time> [<db> <source>] "<cmd>" "<arg>" …`. */
const MONITOR_LINE = /^\+[0-9.]+ \[\d+ ([^\]]+)\] (.*)$/

/** MONITOR's quoted arguments, unescaped only as far as needed here (names and short args). */
function monitorArgs (text) {
  const args = []
  for (const m of text.matchAll(/"((?:[^"\\]|\\.)*)"/g)) args.push(m[1])
  return args
}

/**
 * A MONITOR connection: `lines` collects { source, name, args } for every command Redis runs
 * from now on (`source` 'lua' inside a script); `clear()` empties it; its own traffic is the
 * MONITOR feed, so open it only where bytes and CPU are not being measured.
 */
async function openMonitor (port) {
  const socket = createConnection(port, '127.0.0.1')
  await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  const lines = []
  let rest = ''
  let started = false
  let resolveStarted
  const ready = new Promise((resolve) => { resolveStarted = resolve })
  socket.setEncoding('latin1')
  socket.on('data', (chunk) => {
    rest += chunk
    let eol
    while ((eol = rest.indexOf('\r\n')) >= 0) {
      const line = rest.slice(0, eol)
      rest = rest.slice(eol + 2)
      if (!started) { started = true; resolveStarted(); continue } // +OK
      const m = MONITOR_LINE.exec(line)
      if (m === null) continue
      const args = monitorArgs(m[2])
      lines.push({ source: m[1], name: (args[0] ?? '').toLowerCase(), args: args.slice(1) })
    }
  })
  socket.on('error', () => {})
  socket.write(encodeCommand(['MONITOR']))
  await ready
  return {
    lines,
    /** This connection's address as MONITOR shows it (its own commands come from there). */
    address: `${socket.localAddress}:${socket.localPort}`,
    clear: () => { lines.length = 0 },
    close: () => socket.destroy()
  }
}

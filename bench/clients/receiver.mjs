// bench/clients/receiver.mjs — a process that only receives: N subscriber sockets of one client
// kind, forked by bench/scenarios/11-client-cost.mjs with IPC, so that its process.cpuUsage() is
// the client's own cost (no server, no publisher in this process).
//
// Kinds (argv[2] is a JSON { kind }):
//   echo-json, echo-binary   signalyard echo streams (SignalChannel from dist/node/index.js, one
//                            socket per subscriber: `?s=N`), 'data' events
//   kv                       signalyard kv replicas, 'update' events
//   relay                    signalyard relay streams, the B side of pairs aN → bN, 'data' events
//   socketio                 socket.io-client sockets in a room of bench/servers/socketio.mjs, 'msg'
//   ws-json                  raw `ws` sockets of bench/servers/ws-preframed.mjs (`?join=room`),
//                            JSON.parse of every message and nothing else
// Every handler counts the message and touches the decoded payload (one field of the object, one
// byte of binary), into a sink reported with every mark so the work cannot be optimised away.
//
// IPC (parent → this process; every request has an `id`, answered with the same `id`):
//   { cmd: 'open', url, ns, n }   open n subscribers and wait until each is ready → { ok: true }
//   { cmd: 'mark' }               → { count, cpu: process.cpuUsage(), at: performance.now(),
//                                 reads: read system calls so far (Linux, /proc/self/io syscr;
//                                 NaN elsewhere), sink }; drops a pending 'await'
//   { cmd: 'await', goal }        answered like mark at the moment the count reaches `goal`
//                                 (read inside the handler of that message, not by polling)
//   { cmd: 'stop' }               close every socket and exit (a --cpu-prof profile is written then)
// Any failure is answered as { error }. Exits when the parent disconnects.
import { readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'

const { kind } = JSON.parse(process.argv[2] ?? '{}')
const CONNECT_BATCH = 50

let count = 0
let sink = 0
/** The pending 'await' request: answered when count reaches goal. */
let goal = Infinity
let goalId = 0

/** Read system calls so far (Linux: /proc/self/io `syscr`), NaN elsewhere. */
function reads () {
  try {
    return Number(/^syscr: (\d+)$/m.exec(readFileSync('/proc/self/io', 'latin1'))?.[1] ?? NaN)
  } catch {
    return NaN
  }
}

const mark = (id) => ({ id, count, cpu: process.cpuUsage(), at: performance.now(), reads: reads(), sink })

/** Answer the parent, unless it is gone (then this process is on its way out). */
const answer = (msg) => { if (process.connected) process.send(msg) }

function reached () {
  const msg = mark(goalId)
  goal = Infinity
  goalId = 0
  answer(msg)
}

// One handler per payload shape: each counts, touches one field, checks the goal.
const onObject = (data) => { sink += data.s; if (++count === goal) reached() }
const onBytes = (data) => { sink += data[0]; if (++count === goal) reached() }
const onKv = (_key, value) => { sink += value.s; if (++count === goal) reached() }
const onRoomMessage = (msg) => { sink += msg.data.s; if (++count === goal) reached() }
// (`raw` is a Buffer: JSON.parse reads it as its UTF-8 text, as JSON.parse(String(raw)) would)
const onRaw = (raw) => { const msg = JSON.parse(raw); sink += msg.data.s; if (++count === goal) reached() }

const closers = []

async function inBatches (n, make) {
  for (let i = 0; i < n; i += CONNECT_BATCH) {
    await Promise.all(Array.from({ length: Math.min(CONNECT_BATCH, n - i) }, (_v, j) => make(i + j)))
  }
}

async function openSignalyard (url, ns, n, stream) {
  const { SignalChannel } = await import('../../dist/node/index.js')
  await inBatches(n, async (i) => {
    const channel = SignalChannel(ns, { url: `${url}?s=${i}` })
    closers.push(() => channel.close())
    await stream(channel, i).ready()
  })
}

const OPEN = {
  'echo-json': (url, ns, n) => openSignalyard(url, ns, n, (ch) => ch.echo().on('data', onObject)),
  'echo-binary': (url, ns, n) => openSignalyard(url, ns, n, (ch) => ch.echo().on('data', onBytes)),
  kv: (url, ns, n) => openSignalyard(url, ns, n, (ch) => ch.kv().on('update', onKv)),
  relay: (url, ns, n) => openSignalyard(url, ns, n, (ch, i) => ch.relay({ local: `b${i}`, remote: `a${i}` }).on('data', onObject)),
  socketio: async (url, ns, n) => {
    const { io } = await import('socket.io-client')
    await inBatches(n, (i) => new Promise((resolve, reject) => {
      const socket = io(url, { transports: ['websocket'], forceNew: true, reconnection: false, query: { join: ns, s: String(i) } })
      closers.push(() => socket.close())
      socket.on('msg', onRoomMessage)
      socket.once('connect', resolve)
      socket.once('connect_error', reject)
    }))
  },
  'ws-json': async (url, ns, n) => {
    const { default: WebSocket } = await import('ws')
    await inBatches(n, (i) => new Promise((resolve, reject) => {
      const ws = new WebSocket(`${url}?join=${encodeURIComponent(ns)}&s=${i}`, { perMessageDeflate: false })
      closers.push(() => ws.terminate())
      ws.on('message', onRaw)
      ws.on('error', () => {})
      ws.once('open', resolve)
      ws.once('error', reject)
    }))
  }
}

function stop () {
  for (const close of closers) {
    try { close() } catch {}
  }
  // A moment for the closes to go out; exiting normally writes a --cpu-prof profile.
  setTimeout(() => process.exit(0), 100).unref()
  setTimeout(() => process.exit(0), 1000)
}

process.on('message', async (msg) => {
  const { id, cmd } = msg ?? {}
  try {
    if (cmd === 'open') {
      if (OPEN[kind] === undefined) throw new Error(`unknown client kind ${kind}`)
      await OPEN[kind](msg.url, msg.ns, msg.n)
      answer({ id, ok: true })
    } else if (cmd === 'mark') {
      goal = Infinity // an 'await' the parent gave up on
      answer(mark(id))
    } else if (cmd === 'await') {
      if (count >= msg.goal) answer(mark(id))
      else { goal = msg.goal; goalId = id }
    } else if (cmd === 'stop') {
      stop()
    }
  } catch (error) {
    answer({ id, error: String(error?.stack ?? error) })
  }
})
process.on('disconnect', stop)
process.send({ type: 'ready' })

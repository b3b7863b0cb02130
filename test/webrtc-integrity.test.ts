// test/webrtc-integrity.test.ts — the first messages on a fresh WebRTC connection arrive whole and
// in order, however late the accepting side takes its data channel.
//
// node-datachannel (libdatachannel 0.24.5) delivers an accepted channel's queued messages from two
// native threads at once when they arrived before its JS side took the channel: `onMessage` flushes
// the queue on the JS thread while the SCTP thread flushes new arrivals, so two messages can swap.
// On a peer connection that moved one mux fragment into a later message: the right number of
// bytes, the wrong bytes (the file-transfer example's SHA-256 mismatch). The WebRTC pipe now holds
// the initiator's frames after READY until the acceptor says it has taken its channel.
//
// - The acceptor runs in its own process (as on another machine), and its JS thread is busy for
//   100 ms when its RTCPeerConnection connects, so the initiator's first megabyte is on its way
//   before the acceptor's 'datachannel' runs. Every word of message n is n: the acceptor reports
//   any message of the wrong length or content. Without the hold, about 1 round in 3 failed here.
// (An older acceptor, which never says it took its channel: test/integrity.test.ts.)
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import nodeDataChannel from 'node-datachannel'
import { RTCPeerConnection as PolyfillPC } from 'node-datachannel/polyfill'
import { SignalChannel, type Channel, type PeerStream, type RTCPeerConnectionConstructor } from 'signalyard'
import { startYard, within } from './helpers.js'

const WebRTC = PolyfillPC as unknown as RTCPeerConnectionConstructor
const LOOPBACK = { bindAddress: '127.0.0.1' }
const root = fileURLToPath(new URL('..', import.meta.url))
const ROUNDS = Number(process.env.WEBRTC_INTEGRITY_ROUNDS ?? 16)
const MESSAGES = 64
const SIZE = 64 * 1024

/** Message n: SIZE bytes, every 32-bit word n. */
function message (n: number): Uint8Array {
  const out = new Uint8Array(SIZE)
  const view = new DataView(out.buffer)
  for (let at = 0; at < SIZE; at += 4) view.setUint32(at, n)
  return out
}

/**
 * The acceptor process: listens as `bob`, stalls its JS thread for `stall` ms when its pc
 * connects, checks every message of stream 'x' and prints one JSON line when `{ end: true }` comes.
 */
const ACCEPTOR = `
import { RTCPeerConnection as Base } from 'node-datachannel/polyfill'
import { SignalChannel } from 'signalyard'
const [url, ns, stall] = process.argv.slice(1)
class Stalling extends Base {
  constructor (config) {
    super(config)
    this.addEventListener('connectionstatechange', () => {
      if (this.connectionState !== 'connected') return
      const end = performance.now() + Number(stall)
      while (performance.now() < end);
    })
  }
}
const channel = SignalChannel(ns, { url, RTCPeerConnection: Stalling, rtcConfig: { bindAddress: '127.0.0.1' } })
const node = channel.createNode(undefined, { transport: 'webrtc' })
node.on('connection', (pc) => pc.on('connection', (stream) => {
  let n = 0
  const bad = []
  stream.on('data', (d) => {
    if (!(d instanceof Uint8Array)) {
      console.log(JSON.stringify({ n, bad, transport: pc.transport }))
      channel.close()
      setTimeout(() => process.exit(0), 100)
      return
    }
    const v = new DataView(d.buffer, d.byteOffset, d.byteLength)
    let ok = d.length === ${SIZE}
    for (let at = 0; ok && at < d.length; at += 4) ok = v.getUint32(at) === n
    if (!ok) bad.push(\`#\${n}: \${d.length} bytes, first word \${v.getUint32(0)}, last \${v.getUint32(d.length - 4)}\`)
    n++
  })
}))
await node.listen('bob')
console.log('listening')
`

/** One round: a fresh acceptor process, 64 messages of 64 KiB from a fresh initiator; the acceptor's report. */
async function round (url: string, i: number): Promise<{ n: number, bad: string[], transport: string }> {
  const ns = `webrtc integrity ${i} ${Math.random()}`
  const child = spawn(process.execPath, ['--input-type=module', '-e', ACCEPTOR, `${url}?c=bob`, ns, '100'], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  const listening = new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('listening')) resolve() }))
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()))
  // node-datachannel can freeze a whole process: the deadline is kept from out here.
  const kill = setTimeout(() => child.kill('SIGKILL'), 15_000)
  let channel: Channel | null = null
  try {
    await within(listening, 10_000, 'the acceptor process listens')
    channel = SignalChannel(ns, { url: `${url}?c=alice`, rtcConfig: LOOPBACK, RTCPeerConnection: WebRTC })
    const node = channel.createNode(undefined, { transport: 'webrtc' })
    await within(node.listen('alice'), 2000, 'listen(alice)')
    const pc = node.connect('bob')
    const stream = pc.createStream('x')
    for (let n = 0; n < MESSAGES; n++) if (!stream.send(message(n))) await drained(stream)
    stream.send({ end: true })
    await within(exited, 14_000, 'the acceptor process reports')
    const line = out.split('\n').find((l) => l.startsWith('{'))
    assert.ok(line !== undefined, `round ${i}: the acceptor reported nothing`)
    return JSON.parse(line)
  } finally {
    clearTimeout(kill)
    child.kill('SIGKILL')
    channel?.close()
  }
}

function drained (stream: PeerStream): Promise<void> {
  return within(new Promise<void>((resolve) => stream.once('drain', () => resolve())), 10_000, "'drain'")
}

test(`webrtc: the first megabytes reach an acceptor that takes its channel late, whole and in order (${ROUNDS} rounds)`, async () => {
  const yard = await startYard()
  try {
    const failed: string[] = []
    for (let i = 0; i < ROUNDS; i++) {
      const r = await round(yard.url, i)
      assert.is(r.transport, 'webrtc')
      assert.is(r.n, MESSAGES, `round ${i}: messages received`)
      if (r.bad.length > 0) failed.push(`round ${i}: ${r.bad.length} wrong (${r.bad.slice(0, 3).join('; ')})`)
    }
    assert.equal(failed, [], `rounds with wrong messages:\n${failed.join('\n')}`)
  } finally {
    await yard.close()
  }
})

// node-datachannel's native threads hold the event loop until its cleanup() runs.
test.after(() => { nodeDataChannel.cleanup() })
test.run()

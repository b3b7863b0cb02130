// examples/channel — a mesh of peers (signal-channel's "channel" example): presence + peer connections.
//
// N peers (default 4) join one room with `channel.mesh({ id })`, which composes presence
// (createPeers) and peer connections (createNode) under one id: every pair connects once (the peer
// with the LOWER id dials), and the room says 'peer' when a connection opens. Then every peer
// sends a greeting to every other one with `room.send(text, { to })`, and each received greeting
// ('data') is printed:
//
//   transport: webrtc (node-datachannel)
//   peer-2 got "hello peer-2, this is peer-1" from peer-1 over webrtc
//   ...                                                    (one line per greeting, any order)
//   mesh of 4: 12/12 greetings over webrtc
//
// WebRTC in Node comes from the optional node-datachannel package (a devDependency here). Without
// it, or with --relay, the connections go through the server's relay instead — same code, same
// streams; the first line says which.
//
// Run it from the repository root (after `npm install`, which builds dist/):
//
//   node examples/channel/index.mjs            # 4 peers
//   node examples/channel/index.mjs 6 --relay  # 6 peers, through the relay
//
// It starts its own server on 127.0.0.1 (a free port). Set SIGNALYARD_URL=ws://host:port/ to use
// a server that is already running instead (for example one started with `npx signalyard`).
// Each peer has its own WebSocket (as if each were its own process or browser).
import { randomUUID } from 'node:crypto'
import { SignalChannel } from 'signalyard'
import { createServer } from 'signalyard/server'

// Every peer runs on this machine, where WebRTC opens in milliseconds: if it has not within 3 s
// (the default is 10 s, for real networks), fall back to the relay rather than wait.
const CONNECT_TIMEOUT = 3000
const args = process.argv.slice(2)
const count = Number(args.find((a) => /^\d+$/.test(a)) ?? 4)
if (!(count >= 2 && count <= 50)) fail('the number of peers is 2..50')
const forceRelay = args.includes('--relay')

// WebRTC for Node, when installed. Loopback only: this demo runs every peer on this machine.
let RTCPeerConnection
if (!forceRelay) {
  try {
    RTCPeerConnection = (await import('node-datachannel/polyfill')).RTCPeerConnection
  } catch {
    // not installed: the nodes have no WebRTC and use the relay
  }
}
console.log(RTCPeerConnection ? 'transport: webrtc (node-datachannel)'
  : `transport: relay (${forceRelay ? '--relay' : 'node-datachannel is not installed'})`)

const yard = process.env.SIGNALYARD_URL ? null : await createServer({ port: 0, host: '127.0.0.1' })
const url = process.env.SIGNALYARD_URL || yard.url
const giveUp = setTimeout(() => fail(`only ${received}/${expected} greetings within 10 s`), 10_000)

// A namespace of its own, so that runs sharing a server never meet.
const namespace = `mesh example ${randomUUID()}`
const width = String(count).length
const ids = Array.from({ length: count }, (_, i) => `peer-${String(i + 1).padStart(width, '0')}`)
const expected = count * (count - 1)
let received = 0
const transports = new Set()
let allGreeted
const done = new Promise((resolve) => { allGreeted = resolve })

const channels = await Promise.all(ids.map((id, i) => startPeer(id, i)))
await done

console.log(`mesh of ${count}: ${received}/${expected} greetings over ${[...transports].sort().join('+')}`)
clearTimeout(giveUp)
for (const channel of channels) channel.close()
await yard?.close()

/** One peer: its own socket and a room (channel.mesh: presence + a node under one id). */
async function startPeer (id, i) {
  // A distinct URL string gets a distinct WebSocket (the same string shares one per process).
  const peerUrl = new URL(url)
  peerUrl.searchParams.set('peer', String(i + 1))
  const channel = SignalChannel(namespace, {
    url: peerUrl.href,
    RTCPeerConnection,
    rtcConfig: { bindAddress: '127.0.0.1' }
  })
  const room = channel.mesh({ id, connectTimeout: CONNECT_TIMEOUT })
  room.on('error', (err) => fail(`${id}: ${err.code}: ${err.message}`))
  // Once per other member, when the connection to it opens (whichever side dialled).
  room.on('peer', (pc) => {
    pc.on('close', (err) => { if (err && received < expected) fail(`${id} ↔ ${pc.peerId}: ${err.code}: ${err.message}`) })
    // transport 'auto' opens the pc on the relay at once and moves it to WebRTC when ICE connects.
    // The greeting waits for the move only so that the lines show where the pair settled: an app
    // need not wait (nothing sent is lost in the move).
    settled(pc).then(() => room.send(`hello ${pc.peerId}, this is ${id}`, { to: pc.peerId }))
  })
  room.on('data', (text, { from }) => {
    const transport = room.peers().find((p) => p.id === from)?.pc?.transport
    transports.add(transport)
    console.log(`${id} got ${JSON.stringify(text)} from ${from} over ${transport}`)
    if (++received === expected) allGreeted()
  })
  await room.ready()
  return channel
}

/** Resolves once `pc` is on WebRTC, or when it will not be (no WebRTC here, or not within the timeout). */
function settled (pc) {
  return new Promise((resolve) => {
    if (!RTCPeerConnection || pc.transport === 'webrtc') return resolve()
    const timer = setTimeout(resolve, CONNECT_TIMEOUT + 500)
    pc.on('transport', (transport) => { if (transport === 'webrtc') { clearTimeout(timer); resolve() } })
  })
}

function fail (why) {
  console.error(`channel example: ${why}`)
  process.exit(1)
}

// examples/star — hub and spokes: one node in the middle, N spokes (default 5) connected to it.
//
// The hub listens under the id "hub"; each spoke listens under its own id and connects to "hub".
// When every spoke is connected, the hub broadcasts one message on a 'news' stream to each of
// them; each spoke prints it and answers on that same stream, and the hub prints the answers:
//
//   transport: webrtc (node-datachannel)
//   hub: spoke-3 connected over webrtc                (one per spoke)
//   spoke-3 got "news for everyone (5 spokes)" from hub   (one per spoke)
//   hub got "spoke-3 read the news" from spoke-3     (one per spoke)
//   star of 5 spokes: broadcast reached 5/5, 5/5 answers over webrtc
//
// (the middle lines interleave in whatever order things happen).
//
// Spokes talk only to the hub (no spoke-to-spoke connections): N connections instead of a mesh's
// N(N+1)/2. WebRTC in Node comes from the optional node-datachannel package (a devDependency here);
// without it, or with --relay, everything goes through the server's relay instead.
//
// Run it from the repository root (after `npm install`, which builds dist/):
//
//   node examples/star/index.mjs             # 5 spokes
//   node examples/star/index.mjs 8 --relay   # 8 spokes, through the relay
//
// It starts its own server on 127.0.0.1 (a free port). Set SIGNALYARD_URL=ws://host:port/ to use
// a server that is already running instead (for example one started with `npx signalyard`).
import { randomUUID } from 'node:crypto'
import { SignalChannel } from 'signalyard'
import { createServer } from 'signalyard/server'

// Every peer runs on this machine, where WebRTC opens in milliseconds: if it has not within 3 s
// (the default is 10 s, for real networks), fall back to the relay rather than wait.
const CONNECT_TIMEOUT = 3000
const args = process.argv.slice(2)
const count = Number(args.find((a) => /^\d+$/.test(a)) ?? 5)
if (!(count >= 1 && count <= 100)) fail('the number of spokes is 1..100')
const forceRelay = args.includes('--relay')

let RTCPeerConnection
if (!forceRelay) {
  try {
    RTCPeerConnection = (await import('node-datachannel/polyfill')).RTCPeerConnection
  } catch {
    // not installed: no WebRTC, the relay carries everything
  }
}
console.log(RTCPeerConnection ? 'transport: webrtc (node-datachannel)'
  : `transport: relay (${forceRelay ? '--relay' : 'node-datachannel is not installed'})`)

const yard = process.env.SIGNALYARD_URL ? null : await createServer({ port: 0, host: '127.0.0.1' })
const url = process.env.SIGNALYARD_URL || yard.url
const namespace = `star example ${randomUUID()}` // runs sharing a server never meet
const giveUp = setTimeout(() => fail(`${connected}/${count} spokes connected, ${reached}/${count} got the news, ${answers}/${count} answered within 10 s`), 10_000)

let connected = 0
let reached = 0
let answers = 0
const transports = new Set()
const channels = []

/** A channel with its own WebSocket (a distinct URL string), as if each node ran elsewhere. */
function channelFor (who) {
  const u = new URL(url)
  u.searchParams.set('node', who)
  const channel = SignalChannel(namespace, { url: u.href, RTCPeerConnection, rtcConfig: { bindAddress: '127.0.0.1' } })
  channels.push(channel)
  return channel
}

// ── the hub ──
const hub = channelFor('hub').createNode(undefined, { connectTimeout: CONNECT_TIMEOUT })
hub.on('error', (err) => fail(`hub: ${err.code}: ${err.message}`))
let allAnswered
const answered = new Promise((resolve) => { allAnswered = resolve })
const spokes = [] // the hub's connections to its spokes, open
hub.on('connection', (pc) => {
  // transport 'auto' opens the pc on the relay at once and moves it to WebRTC when ICE connects:
  // the hub counts a spoke once it is on the path it settles on (an app need not wait for that).
  pc.on('open', () => settled(pc).then(() => {
    console.log(`hub: ${pc.peerId} connected over ${pc.transport}`)
    transports.add(pc.transport)
    spokes.push(pc)
    if (++connected === count) broadcast()
  }))
  pc.on('close', (err) => { if (err && answers < count) fail(`hub ↔ ${pc.peerId}: ${err.code}: ${err.message}`) })
})
await hub.listen('hub')

function broadcast () {
  for (const pc of spokes) {
    const news = pc.createStream('news')
    news.on('data', (answer) => {
      console.log(`hub got ${JSON.stringify(answer)} from ${pc.peerId}`)
      if (++answers === count) allAnswered()
    })
    news.send(`news for everyone (${count} spokes)`)
  }
}

// ── the spokes ──
const width = String(count).length
await Promise.all(Array.from({ length: count }, async (_, i) => {
  const id = `spoke-${String(i + 1).padStart(width, '0')}`
  const node = channelFor(id).createNode(undefined, { connectTimeout: CONNECT_TIMEOUT })
  node.on('error', (err) => fail(`${id}: ${err.code}: ${err.message}`))
  await node.listen(id)
  const pc = node.connect('hub')
  pc.on('connection', (news) => {
    news.on('data', (text) => {
      console.log(`${id} got ${JSON.stringify(text)} from ${pc.peerId}`)
      reached++
      news.send(`${id} read the news`)
    })
  })
}))

await answered
console.log(`star of ${count} spokes: broadcast reached ${reached}/${count}, ${answers}/${count} answers over ${[...transports].sort().join('+')}`)
clearTimeout(giveUp)
for (const channel of channels) channel.close()
await yard?.close()

/** Resolves once `pc` is on WebRTC, or when it will not be (no WebRTC here, or not within the timeout). */
function settled (pc) {
  return new Promise((resolve) => {
    if (!RTCPeerConnection || pc.transport === 'webrtc') return resolve()
    const timer = setTimeout(resolve, CONNECT_TIMEOUT + 500)
    pc.on('transport', (transport) => { if (transport === 'webrtc') { clearTimeout(timer); resolve() } })
  })
}

function fail (why) {
  console.error(`star example: ${why}`)
  process.exit(1)
}

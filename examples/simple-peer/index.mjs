// examples/simple-peer — signalyard as the signalling layer of another WebRTC library.
//
// simple-peer (https://github.com/feross/simple-peer) makes WebRTC connections but leaves it to
// the app to carry its signals (offer, answer, ICE candidates) to the other side. Here two Node
// peers carry them with signalyard's directed messages: each claims a random id in a namespace
// (`node.listen()`), every simple-peer 'signal' goes to the other with `node.send(id, signal)`,
// and every 'message' (its `from` set by the server) is fed to `peer.signal()`. Once simple-peer's
// own data channel is up, the two greet each other over it and it prints:
//
//   simple-peer connected: <id> ⇄ <id>
//   <id> got: hello over simple-peer's own data channel
//   signals carried by signalyard: N
//
// Run it from the repository root (after `npm install`; it needs the devDependencies simple-peer
// and @roamhq/wrtc, the WebRTC implementation simple-peer uses in Node — in a browser it uses the
// built-in one and needs neither):
//
//   node examples/simple-peer/index.mjs
//
// It starts its own server on 127.0.0.1 (a free port). Set SIGNALYARD_URL=ws://host:port/ to use
// a server that is already running instead.
import wrtc from '@roamhq/wrtc'
import Peer from 'simple-peer'
import { SignalChannel } from 'signalyard'
import { createServer } from 'signalyard/server'

const yard = process.env.SIGNALYARD_URL ? null : await createServer({ port: 0, host: '127.0.0.1' })
const url = process.env.SIGNALYARD_URL || yard.url
const giveUp = setTimeout(() => fail('simple-peer did not connect within 10 s'), 10_000)

let signals = 0

/**
 * One side: a signalyard node (its id random) carrying the signals of one simple-peer instance to
 * the node listening on `remote`. simple-peer starts signalling at once; what it says before the
 * other side's id is known (`wire(remote)`) waits here.
 */
async function side (initiator) {
  const channel = SignalChannel('simple-peer-demo', { url })
  const node = channel.createNode()
  const id = await node.listen()
  const peer = new Peer({ initiator, wrtc, config: { iceServers: [] } })
  let remote = null
  const early = []
  const send = (signal) => {
    signals++
    node.send(remote, signal)
  }
  peer.on('signal', (signal) => remote === null ? early.push(signal) : send(signal))
  node.on('message', (signal) => peer.signal(signal))
  node.on('error', (err) => fail(`signalling: ${err.code} ${err.message}`))
  peer.on('error', (err) => fail(`simple-peer: ${err.message}`))
  const wire = (id) => {
    remote = id
    for (const signal of early.splice(0)) send(signal)
  }
  return { id, channel, peer, wire }
}

const a = await side(true)
const b = await side(false)
a.wire(b.id)
b.wire(a.id)

const connected = (s) => new Promise((resolve) => s.peer.once('connect', resolve))
await Promise.all([connected(a), connected(b)])
console.log(`simple-peer connected: ${a.id} ⇄ ${b.id}`)
const got = new Promise((resolve) => b.peer.once('data', (data) => resolve(String(data))))
a.peer.send("hello over simple-peer's own data channel")
console.log(`${b.id} got: ${await got}`)
console.log(`signals carried by signalyard: ${signals}`)
await finish(0)

async function finish (code) {
  clearTimeout(giveUp)
  for (const s of [a, b]) {
    s?.peer.destroy()
    s?.channel.close()
  }
  await yard?.close()
  process.exit(code)
}

function fail (message) {
  console.error(message)
  process.exit(1)
}

// bench/servers/ws-forwarder.mjs — the relay baseline: a raw `ws` server that pairs two sockets and
// forwards every message of one, verbatim, to the other. No framing of its own, no stream ids, no
// pre-pair buffering policy beyond holding messages in memory: the least a relay can do.
//
// Wire protocol:
// - Connect to `ws://127.0.0.1:<port>/?token=<t>` (any path). The first socket with a token waits;
//   the second with the same token pairs with it; a third is closed with 1008.
// - On pairing the server sends the text message `paired` to both sockets.
// - Every message (binary or text) one side sends after that reaches the other side as the same
//   bytes with the same binary flag. Messages a side sends before pairing are held and delivered
//   once it pairs.
// - When either socket closes, the other is closed (1000) and the token is free again.
// Compression is off (perMessageDeflate: false). Options: none.
import { WebSocketServer } from 'ws'
import { serveControl } from '../lib/servers.mjs'

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 })
await new Promise((resolve) => wss.once('listening', resolve))
const { port } = wss.address()

/** token → the socket waiting for its partner */
const waiting = new Map()
let pairs = 0
let forwarded = 0

wss.on('connection', (ws, req) => {
  const token = new URL(req.url ?? '/', 'http://x').searchParams.get('token') ?? ''
  let peer = null
  let held = []
  ws.on('message', (data, isBinary) => {
    if (peer === null) { held.push([data, isBinary]); return }
    forwarded++
    peer.send(data, { binary: isBinary })
  })
  ws.on('error', () => {})
  const pairWith = (other) => {
    peer = other
    ws.send('paired')
    for (const [data, isBinary] of held) peer.send(data, { binary: isBinary })
    held = []
  }
  ws.on('close', () => {
    if (waiting.get(token)?.ws === ws) waiting.delete(token)
    if (peer !== null && peer.readyState <= 1) peer.close(1000)
  })
  const first = waiting.get(token)
  if (first === undefined) {
    waiting.set(token, { ws, pairWith })
    return
  }
  waiting.delete(token)
  if (first.ws.readyState !== 1) { ws.close(1008); return }
  pairs++
  first.pairWith(ws)
  pairWith(first.ws)
})

serveControl({
  port,
  url: `ws://127.0.0.1:${port}/`,
  extra: () => ({ connections: wss.clients.size, pairs, forwarded }),
  stop: () => new Promise((resolve) => {
    for (const ws of wss.clients) ws.terminate()
    wss.close(() => resolve())
  })
})

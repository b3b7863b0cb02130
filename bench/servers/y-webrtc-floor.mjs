// bench/servers/y-webrtc-floor.mjs — the floor of y-webrtc fan-out for a server that writes once
// per copy: y-webrtc's signalling protocol (subscribe / unsubscribe / publish / ping, as
// node_modules/y-webrtc/bin/server.js answers them) with nothing around it, each publish encoded
// once (`clients` set as the reference sets it), framed once (ws's `Sender.frame`) and written as
// the same bytes to every subscriber's TCP socket: one `socket.write` per copy and nothing else.
// No checks, no limits, no auth: not a server to run, the cost any one-write-per-copy server pays.
//
// Writing to `ws._socket` bypasses ws's Sender; safe here as in ws-preframed.mjs (compression is
// off, so the Sender never holds a frame back). Sockets that are not OPEN are skipped.
import { createServer } from 'node:http'
import { Sender, WebSocket, WebSocketServer } from 'ws'
import { Rooms, listenWithControl } from '../lib/rooms.mjs'

/** One unmasked text frame, header and payload in one buffer. */
function frameOnce (text) {
  const list = Sender.frame(Buffer.from(text), { fin: true, opcode: 1, mask: false, readOnly: false, rsv1: false })
  return list.length === 1 ? list[0] : Buffer.concat(list)
}

const http = createServer((_req, res) => res.writeHead(200, { 'Content-Type': 'text/plain' }).end('okay'))
const wss = new WebSocketServer({ server: http, perMessageDeflate: false, clientTracking: true })
const topics = new Rooms()
wss.on('connection', (ws) => {
  ws.on('message', (raw) => {
    let msg
    try { msg = JSON.parse(raw) } catch { return }
    if (msg === null || typeof msg !== 'object') return
    if (msg.type === 'subscribe' || msg.type === 'unsubscribe') {
      for (const topic of Array.isArray(msg.topics) ? msg.topics : []) {
        if (typeof topic !== 'string') continue
        if (msg.type === 'subscribe') topics.join(topic, ws)
        else topics.leave(topic, ws)
      }
    } else if (msg.type === 'publish' && typeof msg.topic === 'string') {
      const members = topics.members(msg.topic)
      if (members === undefined) return
      msg.clients = members.size
      const bytes = frameOnce(JSON.stringify(msg))
      for (const member of members) {
        if (member.readyState === WebSocket.OPEN) member._socket.write(bytes)
      }
    } else if (msg.type === 'ping') {
      ws.send('{"type":"pong"}')
    }
  })
  ws.on('close', () => topics.leaveAll(ws))
  ws.on('error', () => {})
})
listenWithControl(http, wss, topics)

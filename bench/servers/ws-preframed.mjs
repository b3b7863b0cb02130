// bench/servers/ws-preframed.mjs — baseline and practical ceiling: a raw `ws` pub/sub server that
// encodes each publish once, frames it once (`Sender.frame` of ws, header and payload joined
// into one buffer) and writes those same bytes to every member's TCP socket. Per subscriber it
// costs one `socket.write` and nothing else.
//
// Writing to `ws._socket` bypasses ws's Sender; that is safe here because compression is off, so
// the Sender never holds a frame back (it writes each frame synchronously, whole). Sockets that
// are not OPEN are skipped.
//
// Wire protocol: the same as ws-naive.mjs (text frames, JSON):
//   connect to ws://127.0.0.1:<port>/?join=r1,r2   joins those rooms at once (optional)
//   → {"op":"join","room":"r"}          ← {"op":"joined","room":"r"}
//   → {"op":"leave","room":"r"}         ← {"op":"left","room":"r"}
//   → {"op":"pub","room":"r","data":X}  every member of r (the sender too, if a member) gets
//                                       {"room":"r","data":X}
// stats `extra`: { connections, namespaces } (namespaces = rooms with members).
import { createServer } from 'node:http'
import { Sender, WebSocket, WebSocketServer } from 'ws'
import { serveControl } from '../lib/servers.mjs'
import { Rooms } from '../lib/rooms.mjs'

const http = createServer((_req, res) => res.writeHead(426).end())
const wss = new WebSocketServer({ server: http, perMessageDeflate: false, clientTracking: true })
const rooms = new Rooms()

/** One unmasked text frame, header and payload in one buffer. */
function frameOnce (text) {
  const list = Sender.frame(Buffer.from(text), { fin: true, opcode: 1, mask: false, readOnly: false, rsv1: false })
  return list.length === 1 ? list[0] : Buffer.concat(list)
}

wss.on('connection', (ws, req) => {
  for (const room of Rooms.fromUrl(req.url)) rooms.join(room, ws)
  ws.on('message', (raw, isBinary) => {
    let msg
    try { msg = JSON.parse(isBinary ? raw.toString() : raw) } catch { return }
    if (msg === null || typeof msg !== 'object' || typeof msg.room !== 'string') return
    if (msg.op === 'pub') {
      const members = rooms.members(msg.room)
      if (members === undefined) return
      const bytes = frameOnce(JSON.stringify({ room: msg.room, data: msg.data }))
      for (const member of members) {
        if (member.readyState === WebSocket.OPEN) member._socket.write(bytes)
      }
    } else if (msg.op === 'join') {
      rooms.join(msg.room, ws)
      ws.send(JSON.stringify({ op: 'joined', room: msg.room }))
    } else if (msg.op === 'leave') {
      rooms.leave(msg.room, ws)
      ws.send(JSON.stringify({ op: 'left', room: msg.room }))
    }
  })
  ws.on('close', () => rooms.leaveAll(ws))
  ws.on('error', () => {})
})

http.listen(0, '127.0.0.1', () => {
  const { port } = http.address()
  serveControl({
    port,
    url: `ws://127.0.0.1:${port}/`,
    extra: () => ({ connections: wss.clients.size, namespaces: rooms.size }),
    stop: () => new Promise((resolve) => {
      for (const ws of wss.clients) ws.terminate()
      wss.close()
      http.close(() => resolve())
    })
  })
})

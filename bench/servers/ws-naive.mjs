// bench/servers/ws-naive.mjs — baseline: a raw `ws` pub/sub server written the obvious way, each
// subscriber gets its own `JSON.stringify` and `ws.send` (what a hand-rolled server usually does).
//
// Wire protocol (text frames, JSON), shared with ws-preframed.mjs:
//   connect to ws://127.0.0.1:<port>/?join=r1,r2   joins those rooms at once (optional)
//   → {"op":"join","room":"r"}          ← {"op":"joined","room":"r"}
//   → {"op":"leave","room":"r"}         ← {"op":"left","room":"r"}
//   → {"op":"pub","room":"r","data":X}  every member of r (the sender too, if a member) gets
//                                       {"room":"r","data":X}
// A room is deleted with its last member. Options: none. Compression off.
// stats `extra`: { connections, namespaces } (namespaces = rooms with members).
import { createServer } from 'node:http'
import { WebSocketServer } from 'ws'
import { serveControl } from '../lib/servers.mjs'
import { Rooms } from '../lib/rooms.mjs'

const http = createServer((_req, res) => res.writeHead(426).end())
const wss = new WebSocketServer({ server: http, perMessageDeflate: false, clientTracking: true })
const rooms = new Rooms()

wss.on('connection', (ws, req) => {
  for (const room of Rooms.fromUrl(req.url)) rooms.join(room, ws)
  ws.on('message', (raw, isBinary) => {
    let msg
    try { msg = JSON.parse(isBinary ? raw.toString() : raw) } catch { return }
    if (msg === null || typeof msg !== 'object' || typeof msg.room !== 'string') return
    if (msg.op === 'pub') {
      const members = rooms.members(msg.room)
      if (members === undefined) return
      for (const member of members) member.send(JSON.stringify({ room: msg.room, data: msg.data }))
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

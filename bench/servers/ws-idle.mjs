// bench/servers/ws-idle.mjs — raw `ws` baseline for the idle-connections scenario: a WebSocketServer
// that holds its sockets and does nothing else, the least any WebSocket server can keep per
// connection. Options: none.
//
// Wire protocol: on connect the server sends one text message "hi" (as signalyard sends HELLO, so
// the client knows the server accepted it); any message a client sends is echoed back as is.
// Listens on 127.0.0.1, port 0, compression off.
import { WebSocketServer } from 'ws'
import { serveControl } from '../lib/servers.mjs'

const sockets = new Set()
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, clientTracking: false })
wss.on('connection', (ws) => {
  sockets.add(ws)
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
  ws.on('close', () => sockets.delete(ws))
  ws.on('error', () => {})
  ws.send('hi')
})
await new Promise((resolve) => wss.once('listening', resolve))
const { port } = wss.address()
serveControl({
  port,
  url: `ws://127.0.0.1:${port}/`,
  extra: () => ({ connections: sockets.size }),
  stop: () => new Promise((resolve) => {
    for (const ws of sockets) ws.terminate()
    wss.close(() => resolve())
  })
})

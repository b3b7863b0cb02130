// bench/servers/socketio.mjs — baseline: socket.io rooms, what most users would pick instead.
// WebSocket transport only (no polling), compression off (perMessageDeflate and httpCompression).
// socket.io's in-memory adapter already encodes a room broadcast once (and pre-frames it for ws).
//
// Protocol (socket.io events on the default namespace "/"):
//   connect with query { join: 'r1,r2' }   joins those rooms at once (optional)
//   emit('join', room, ack)                joins; ack() when done
//   emit('leave', room, ack)               leaves; ack() when done
//   emit('pub', room, data)                io.to(room).emit('msg', { room, data }): every member
//                                          (the sender too, if a member) gets it
// stats `extra`: { connections, namespaces } (namespaces = rooms with members, not counting the
// room socket.io keeps for each socket's own id).
//
// Options (JSON in argv[2], all optional): { redis: 'redis://…', prefix } installs
// @socket.io/redis-adapter on two ioredis connections (publish, subscribe), so every process given
// the same url and prefix (the adapter's `key`, default 'socket.io') shares its rooms; the
// 'ready' message waits until both connections are ready. Without `redis`, the in-memory adapter.
import { createServer } from 'node:http'
import { Server } from 'socket.io'
import { serveControl, serverOptions } from '../lib/servers.mjs'

const options = serverOptions()
const http = createServer()
const io = new Server(http, {
  transports: ['websocket'],
  perMessageDeflate: false,
  httpCompression: false,
  serveClient: false
})

/** The adapter's Redis connections (closed on stop), when options.redis is set. */
const redisClients = []
if (options.redis !== undefined) {
  const [{ createAdapter }, { Redis }] = await Promise.all([import('@socket.io/redis-adapter'), import('ioredis')])
  const pub = new Redis(options.redis)
  const sub = pub.duplicate()
  redisClients.push(pub, sub)
  await Promise.all(redisClients.map((c) => (c.status === 'ready' ? null : new Promise((resolve, reject) => {
    c.once('ready', resolve)
    c.once('error', reject)
  }))))
  io.adapter(createAdapter(pub, sub, options.prefix !== undefined ? { key: options.prefix } : {}))
}

io.on('connection', (socket) => {
  const join = socket.handshake.query.join
  if (typeof join === 'string' && join !== '') socket.join(join.split(',').filter(Boolean))
  socket.on('join', (room, ack) => {
    socket.join(room)
    if (typeof ack === 'function') ack()
  })
  socket.on('leave', (room, ack) => {
    socket.leave(room)
    if (typeof ack === 'function') ack()
  })
  socket.on('pub', (room, data) => {
    io.to(room).emit('msg', { room, data })
  })
})

function roomCount () {
  const adapter = io.of('/').adapter
  let n = 0
  for (const room of adapter.rooms.keys()) if (!adapter.sids.has(room)) n++
  return n
}

http.listen(0, '127.0.0.1', () => {
  const { port } = http.address()
  serveControl({
    port,
    url: `http://127.0.0.1:${port}`,
    extra: () => ({ connections: io.engine.clientsCount, namespaces: roomCount() }),
    stop: async () => {
      await new Promise((resolve) => { io.close(() => resolve()) })
      await Promise.all(redisClients.map((c) => c.quit().catch(() => c.disconnect())))
    }
  })
})

// bench/lib/rooms.mjs — room membership for the raw ws baselines (bench/servers/ws-*.mjs):
// room → Set of sockets, and socket → Set of its rooms, so a closing socket leaves every room and
// an emptied room is deleted.

export class Rooms {
  constructor () {
    /** @type {Map<string, Set<any>>} */
    this.byRoom = new Map()
    /** @type {Map<any, Set<string>>} */
    this.bySocket = new Map()
  }

  /** Rooms named in `?join=a,b` of a request URL. */
  static fromUrl (url) {
    const join = new URL(url ?? '/', 'http://localhost').searchParams.get('join')
    return join ? join.split(',').filter(Boolean) : []
  }

  /** Number of rooms with at least one member. */
  get size () { return this.byRoom.size }

  members (room) { return this.byRoom.get(room) }

  join (room, socket) {
    let members = this.byRoom.get(room)
    if (members === undefined) this.byRoom.set(room, members = new Set())
    members.add(socket)
    let mine = this.bySocket.get(socket)
    if (mine === undefined) this.bySocket.set(socket, mine = new Set())
    mine.add(room)
  }

  leave (room, socket) {
    const members = this.byRoom.get(room)
    if (members !== undefined) {
      members.delete(socket)
      if (members.size === 0) this.byRoom.delete(room)
    }
    const mine = this.bySocket.get(socket)
    if (mine !== undefined) {
      mine.delete(room)
      if (mine.size === 0) this.bySocket.delete(socket)
    }
  }

  leaveAll (socket) {
    for (const room of [...(this.bySocket.get(socket) ?? [])]) this.leave(room, socket)
  }
}

/**
 * The raw ws pub/sub baseline server (protocol in bench/servers/ws-naive.mjs): rooms, join/leave
 * acknowledgements and the control channel; `publish(members, room, data)` is the one thing the
 * baselines do differently.
 */
export async function serveRooms (publish) {
  const [{ createServer }, { WebSocketServer }] = await Promise.all([import('node:http'), import('ws')])
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
        if (members !== undefined) publish(members, msg.room, msg.data)
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
  listenWithControl(http, wss, rooms)
}

/**
 * Listen on 127.0.0.1 (a free port) and answer the runner's control channel (stats with the
 * connections and rooms, stop: terminate every socket and close): the tail of every raw ws baseline.
 */
export function listenWithControl (http, wss, rooms) {
  http.listen(0, '127.0.0.1', async () => {
    const { serveControl } = await import('./servers.mjs')
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
}

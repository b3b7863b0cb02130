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

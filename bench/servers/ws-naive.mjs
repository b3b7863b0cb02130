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
import { serveRooms } from '../lib/rooms.mjs'

await serveRooms((members, room, data) => {
  for (const member of members) member.send(JSON.stringify({ room, data }))
})

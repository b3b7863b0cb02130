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
import { Sender, WebSocket } from 'ws'
import { serveRooms } from '../lib/rooms.mjs'

/** One unmasked text frame, header and payload in one buffer. */
function frameOnce (text) {
  const list = Sender.frame(Buffer.from(text), { fin: true, opcode: 1, mask: false, readOnly: false, rsv1: false })
  return list.length === 1 ? list[0] : Buffer.concat(list)
}

await serveRooms((members, room, data) => {
  const bytes = frameOnce(JSON.stringify({ room, data }))
  for (const member of members) {
    if (member.readyState === WebSocket.OPEN) member._socket.write(bytes)
  }
})

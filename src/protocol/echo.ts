/**
 * The echo endpoint on the wire: namespace broadcast.
 *
 *   client → server  OPEN  { ep: "echo", ns }
 *   server → client  OPENED { id }                      id: the stream's global id ("conn.sid")
 *   client → server  DATA  + payload                    published to the namespace
 *   server → client  EVENT { ep: "echo", ns, from } + the same kind and payload, to every
 *                    connection with an echo stream in ns (the sender's included); `from` is the
 *                    sender stream's id, set by the server.
 *
 * The EVENT is encoded once per publish and the same bytes go to every receiver; its meta is
 * encoded once per sender (echoEventMeta) so a publish only copies bytes.
 */
import { FrameType, writeFrameWith, type EncodedPayload, type RawFrame } from './codec.js'
import type { EndpointWire } from './check.js'

/** OPEN of an echo stream. */
export interface OpenEcho { type: 'open', sid: number, ep: 'echo', ns: string }

export const echoWire: EndpointWire<OpenEcho> = {
  open: (sid, ns) => ({ type: 'open', sid, ep: 'echo', ns }),
  requests: {}
}

const encoder = /* @__PURE__ */ new TextEncoder()

/** The meta bytes of an echo EVENT for one sender, computed once, when it first publishes. */
export function echoEventMeta (ns: string, from: string): Uint8Array {
  return encoder.encode(JSON.stringify({ ep: 'echo', ns, from }))
}

/** Frame one echo publish; `meta` comes from echoEventMeta. */
export function writeEchoEvent (meta: Uint8Array, payload: EncodedPayload): Uint8Array {
  return writeFrameWith(FrameType.Event, 0, meta, payload)
}

/** The sender of an echo EVENT (`from`, as a string whatever came); the payload is the frame's. */
export function readEchoFrom (frame: RawFrame): string {
  return String(frame.meta?.from)
}

/**
 * Mux frames: how one peer connection carries many named streams over a single pipe (a WebRTC
 * data channel or a relay stream). Layout of one pipe message (docs/PROTOCOL.md, "Mux frames"):
 *
 *   u8 op | u32 stream (big-endian) | u8 kind | payload
 *
 * OPEN carries the stream's label (UTF-8); DATA the last or only fragment of a message and MORE a
 * fragment that more follow; CLOSE ends one stream; READY (stream 0) tells the acceptor that the
 * initiator chose this pipe; BYE (stream 0) ends the connection.
 */

export const MuxOp = { Open: 1, Data: 2, More: 3, Close: 4, Ready: 5, Bye: 6 } as const
export type MuxOp = typeof MuxOp[keyof typeof MuxOp]

export const MUX_HEADER = 6

/** The `kind` byte of a BYE whose sender's node is leaving (the other side closes with `peer-left`). */
export const BYE_LEFT = 1

export interface MuxFrame { op: MuxOp, stream: number, kind: number, payload: Uint8Array }

/** Write one mux frame. */
export function writeMux (op: MuxOp, stream: number, kind = 0, payload?: Uint8Array): Uint8Array {
  const out = new Uint8Array(MUX_HEADER + (payload?.length ?? 0))
  out[0] = op
  new DataView(out.buffer).setUint32(1, stream)
  out[5] = kind
  if (payload !== undefined) out.set(payload, MUX_HEADER)
  return out
}

/** Read one mux frame; anything malformed is null. */
export function readMux (bytes: Uint8Array): MuxFrame | null {
  if (bytes.length < MUX_HEADER) return null
  const op = bytes[0]
  if (op < MuxOp.Open || op > MuxOp.Bye) return null
  const kind = bytes[5]
  if (kind > 3) return null
  const stream = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(1)
  return { op: op as MuxOp, stream, kind, payload: bytes.subarray(MUX_HEADER) }
}

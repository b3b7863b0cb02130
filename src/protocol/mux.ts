/**
 * Mux frames: how one peer connection carries many named streams over a single pipe (a WebRTC
 * data channel or a relay stream). Layout of one pipe message (docs/PROTOCOL.md, "Mux frames"):
 *
 *   u8 op | u32 stream (big-endian) | u8 kind | [u32 seq] | payload
 *
 * OPEN carries the stream's label (UTF-8); DATA the last or only fragment of a message and MORE a
 * fragment that more follow; CLOSE ends one stream; READY (stream 0) tells the acceptor that the
 * initiator chose this pipe; BYE (stream 0) ends the connection.
 *
 * A connection that can move between the relay and WebRTC (`mv` in the handshake) numbers its
 * stream frames (OPEN, DATA, MORE, CLOSE): `seq` counts them from 1 per direction, modulo 2^32,
 * so the receiver drops what it already has and a sender can send again what a dying path lost.
 * Its control frames (stream 0, no seq) are MOVE and MOVED (payload u32 generation: this side's
 * stream frames go to the WebRTC path of that generation from now on / the peer's MOVE was read),
 * ACK (u32 seq: the last stream frame read) and RESUME (u32 generation, u32 seq: that WebRTC path
 * is given up; the last stream frame read). See client/mover.ts.
 *
 * On the relay, when both sides said `bt` in the handshake, one relay message may carry several
 * small mux frames (the server counts and paces relay messages, not mux frames):
 *
 *   u8 MUX_BATCH (11) | { u16 length (big-endian) | one mux frame }…
 */

export const MuxOp = { Open: 1, Data: 2, More: 3, Close: 4, Ready: 5, Bye: 6, Move: 7, Moved: 8, Ack: 9, Resume: 10 } as const
export type MuxOp = typeof MuxOp[keyof typeof MuxOp]

export const MUX_HEADER = 6

/** The first byte of a relay message that carries a batch of mux frames (not a mux op). */
export const MUX_BATCH = 11
/** Only frames shorter than this go into a batch (u16 lengths; bigger frames go alone, uncopied). */
export const BATCH_FRAME_MAX = 4096

/** One relay message carrying `frames` (each shorter than BATCH_FRAME_MAX); `bytes`: the sum of their lengths. */
export function writeBatch (frames: Uint8Array[], bytes: number): Uint8Array {
  const out = new Uint8Array(1 + 2 * frames.length + bytes)
  out[0] = MUX_BATCH
  let at = 1
  for (const f of frames) {
    out[at] = f.length >>> 8
    out[at + 1] = f.length & 0xff
    out.set(f, at + 2)
    at += 2 + f.length
  }
  return out
}

/** The mux frames of a batch message (views into `bytes`), or null when it is malformed. */
export function readBatch (bytes: Uint8Array): Uint8Array[] | null {
  const frames: Uint8Array[] = []
  let at = 1
  while (at < bytes.length) {
    if (at + 2 > bytes.length) return null
    const length = (bytes[at] << 8) | bytes[at + 1]
    at += 2
    if (length === 0 || at + length > bytes.length) return null
    frames.push(bytes.subarray(at, at + length))
    at += length
  }
  return frames.length > 0 ? frames : null
}

/** The `kind` byte of a BYE whose sender's node is leaving (the other side closes with `peer-left`). */
export const BYE_LEFT = 1

export interface MuxFrame {
  op: MuxOp
  stream: number
  kind: number
  /** A stream frame's number on a sequenced connection (else 0). */
  seq: number
  payload: Uint8Array
}

/** Whether `op` is a stream frame (numbered on a sequenced connection). */
export function isStreamOp (op: MuxOp): boolean {
  return op <= MuxOp.Close
}

/** Write one mux frame; `seq` (a stream frame on a sequenced connection) goes after the header. */
export function writeMux (op: MuxOp, stream: number, kind = 0, payload?: Uint8Array, seq?: number): Uint8Array {
  const at = seq === undefined ? MUX_HEADER : MUX_HEADER + 4
  const out = new Uint8Array(at + (payload?.length ?? 0))
  const view = new DataView(out.buffer)
  out[0] = op
  view.setUint32(1, stream)
  out[5] = kind
  if (seq !== undefined) view.setUint32(MUX_HEADER, seq >>> 0)
  if (payload !== undefined) out.set(payload, at)
  return out
}

/** A control frame of a sequenced connection: MOVE/MOVED (generation), ACK (seq), RESUME (generation, seq). */
export function writeControl (op: MuxOp, a: number, b?: number): Uint8Array {
  const words = new Uint8Array(b === undefined ? 4 : 8)
  const view = new DataView(words.buffer)
  view.setUint32(0, a >>> 0)
  if (b !== undefined) view.setUint32(4, b >>> 0)
  return writeMux(op, 0, 0, words)
}

/** The u32 words of a control frame's payload, or null when it is too short. */
export function controlWords (payload: Uint8Array, count: 1 | 2): number[] | null {
  if (payload.length < 4 * count) return null
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength)
  return count === 1 ? [view.getUint32(0)] : [view.getUint32(0), view.getUint32(4)]
}

/** Read one mux frame (`sequenced`: stream frames carry a seq); anything malformed is null. */
export function readMux (bytes: Uint8Array, sequenced = false): MuxFrame | null {
  if (bytes.length < MUX_HEADER) return null
  const op = bytes[0]
  if (op < MuxOp.Open || op > (sequenced ? MuxOp.Resume : MuxOp.Bye)) return null
  const kind = bytes[5]
  if (kind > 3) return null
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const stream = view.getUint32(1)
  if (!sequenced || !isStreamOp(op as MuxOp)) return { op: op as MuxOp, stream, kind, seq: 0, payload: bytes.subarray(MUX_HEADER) }
  if (bytes.length < MUX_HEADER + 4) return null
  return { op: op as MuxOp, stream, kind, seq: view.getUint32(MUX_HEADER), payload: bytes.subarray(MUX_HEADER + 4) }
}

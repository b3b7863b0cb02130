/**
 * The signalyard.2 frame codec, shared by client and server.
 *
 * Every WebSocket message is one binary frame:
 *
 *   offset  size  field
 *   0       1     type      frame type (FrameType below)
 *   1       4     id        u32 big-endian: the stream id, or 0 for connection-level frames
 *   5       1     kind      payload kind: 0 none, 1 JSON text, 2 binary, 3 UTF-8 string
 *   6       4     metaLen   u32 big-endian: length of the meta section
 *   10      metaLen meta    UTF-8 JSON object with the frame's fields (absent when metaLen is 0)
 *   10+metaLen ... payload  the application payload, opaque to the server
 *
 * Binary payloads travel as they are (no base64). A frame is encoded once and the same bytes can be
 * written to any number of sockets. `writeFrame`/`readFrame` are the symmetric pair.
 */

export const HEADER_SIZE = 10

/** Frame types (docs/PROTOCOL.md, "Frame types"). 0x0_: client → server; 0x1_: server → client. */
export const FrameType = {
  Open: 0x01,
  Close: 0x02,
  Data: 0x03,
  Request: 0x04,
  Ping: 0x05,
  Hello: 0x10,
  Opened: 0x11,
  Closed: 0x12,
  Event: 0x14,
  Reply: 0x15,
  Error: 0x16,
  Pong: 0x17,
  /** Relay flow control: `{ bytes }` of the stream's DATA the server has passed on. */
  Ack: 0x18,
  /** Fresh `{ iceServers }` for the connection (TURN credentials renewed before they expire). */
  Ice: 0x19
} as const

/**
 * Deepest nesting of arrays and objects accepted in a frame's meta (the meta object itself is
 * depth 1). Checked on the raw bytes before JSON.parse, so no recursive work ever sees a deeper
 * value: JSON.stringify of a 5,000-deep object throws a RangeError (stack overflow).
 */
export const MAX_META_DEPTH = 32

/** How the payload bytes are to be read. */
export const Kind = { None: 0, Json: 1, Binary: 2, Text: 3 } as const
export type Kind = typeof Kind[keyof typeof Kind]

/** A decoded frame before its meta is checked: the shape every frame has. */
export interface RawFrame {
  type: number
  id: number
  kind: number
  /** Parsed meta object, or null when the frame had none. */
  meta: Record<string, unknown> | null
  payload: Uint8Array
  /** The whole frame as received (relay forwards it after rewriting the id in place). */
  bytes: Uint8Array
}

/** An application payload ready to be framed. */
export interface EncodedPayload { kind: Kind, bytes: Uint8Array }

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })
const EMPTY = new Uint8Array(0)

/** Encode a frame. `meta` may be null; `payload` defaults to none. */
export function writeFrame (type: number, id: number, meta: object | null, payload?: EncodedPayload): Uint8Array {
  return writeFrameWith(type, id, meta === null ? EMPTY : encoder.encode(JSON.stringify(meta)), payload)
}

/**
 * Encode a frame whose meta is already JSON bytes (made once and reused: an echo sender's EVENT
 * meta). The only place a header is written.
 */
export function writeFrameWith (type: number, id: number, meta: Uint8Array, payload?: EncodedPayload): Uint8Array {
  const body = payload?.bytes ?? EMPTY
  const out = new Uint8Array(HEADER_SIZE + meta.length + body.length)
  const view = new DataView(out.buffer)
  out[0] = type
  view.setUint32(1, id >>> 0)
  out[5] = payload?.kind ?? Kind.None
  view.setUint32(6, meta.length)
  out.set(meta, HEADER_SIZE)
  out.set(body, HEADER_SIZE + meta.length)
  return out
}

/** The stream id of an encoded frame (bytes 1..4; 0 for anything shorter). No allocation: hot paths call it. */
export function frameId (frame: Uint8Array): number {
  return frame.length < 5 ? 0 : u32(frame, 1)
}

/** A big-endian u32 of `bytes` at `at` (no DataView: the receive paths call this per frame). */
function u32 (bytes: Uint8Array, at: number): number {
  return ((bytes[at] << 24) >>> 0) + (bytes[at + 1] << 16) + (bytes[at + 2] << 8) + bytes[at + 3]
}

/** The length of a frame's meta section (its header's bytes 6..9); 0 for anything shorter than a header. */
export function metaLength (frame: Uint8Array): number {
  return frame.length < HEADER_SIZE ? 0 : u32(frame, 6)
}

/**
 * Decode a frame. Returns null for anything that is not a well-formed frame: short header, meta
 * length past the end, meta that is not a JSON object, unknown payload kind. Never throws.
 * `knownMeta`: the frame's meta bytes are known to be those of an earlier frame whose parsed meta
 * this is (the client's EVENT memo, frames.ts): it is used as it is, not parsed again.
 */
export function readFrame (bytes: Uint8Array, knownMeta?: Record<string, unknown>): RawFrame | null {
  if (bytes.length < HEADER_SIZE) return null
  const type = bytes[0]
  const id = u32(bytes, 1)
  const kind = bytes[5]
  const metaLen = u32(bytes, 6)
  if (kind > Kind.Text || HEADER_SIZE + metaLen > bytes.length) return null
  let meta: Record<string, unknown> | null = null
  if (knownMeta !== undefined) meta = knownMeta
  else if (metaLen > 0) {
    if (jsonDepth(bytes, HEADER_SIZE, HEADER_SIZE + metaLen) > MAX_META_DEPTH) return null
    try {
      const parsed: unknown = JSON.parse(decoder.decode(view(bytes, HEADER_SIZE, metaLen)))
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return null
      meta = parsed as Record<string, unknown>
    } catch {
      return null
    }
  }
  return { type, id, kind, meta, payload: view(bytes, HEADER_SIZE + metaLen, bytes.length - HEADER_SIZE - metaLen), bytes }
}

/**
 * `length` bytes of `bytes` from `start`, as a plain Uint8Array over the same memory. Not
 * `subarray`: on a Node Buffer (what `ws` hands over) that makes another Buffer, several times dearer.
 */
function view (bytes: Uint8Array, start: number, length: number): Uint8Array {
  return new Uint8Array(bytes.buffer, bytes.byteOffset + start, length)
}

/**
 * The deepest nesting of `[`/`{` in JSON text bytes[start, end), skipping string contents; a
 * flat loop, so it cannot overflow the stack however deep the input. Stops early (returning
 * MAX_META_DEPTH + 1) once past the bound.
 */
export function jsonDepth (bytes: Uint8Array, start: number, end: number): number {
  let depth = 0
  let deepest = 0
  let inString = false
  for (let i = start; i < end; i++) {
    const c = bytes[i]
    if (inString) {
      if (c === 0x5c) i++ // backslash: skip the escaped byte
      else if (c === 0x22) inString = false
    } else if (c === 0x22) {
      inString = true
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > deepest && (deepest = depth) > MAX_META_DEPTH) return deepest
    } else if (c === 0x5d || c === 0x7d) {
      depth--
    }
  }
  return deepest
}

/**
 * Overwrite the stream id of an encoded frame in place (relay forwarding: no copy), and its type
 * when given (a broadcast EVENT handed to one stream as DATA).
 */
export function rewriteId (frame: Uint8Array, id: number, type?: number): void {
  new DataView(frame.buffer, frame.byteOffset, frame.byteLength).setUint32(1, id >>> 0)
  if (type !== undefined) frame[0] = type
}

/** The payload kind and bytes of an encoded frame, without decoding its meta. */
export function framePayload (frame: Uint8Array): EncodedPayload {
  const metaLen = metaLength(frame)
  return { kind: frame[5] as Kind, bytes: frame.subarray(HEADER_SIZE + metaLen) }
}

/**
 * Turn an application value into payload bytes: Uint8Array/ArrayBuffer/views travel as binary,
 * strings as UTF-8, `undefined` as no payload, anything else as JSON. Throws a TypeError for values
 * JSON cannot encode (BigInt, cycles).
 */
export function encodePayload (data: unknown): EncodedPayload {
  if (data instanceof Uint8Array) return { kind: Kind.Binary, bytes: data }
  if (data instanceof ArrayBuffer) return { kind: Kind.Binary, bytes: new Uint8Array(data) }
  if (ArrayBuffer.isView(data)) return { kind: Kind.Binary, bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) }
  if (typeof data === 'string') return { kind: Kind.Text, bytes: encoder.encode(data) }
  if (data === undefined) return { kind: Kind.None, bytes: EMPTY }
  const json = JSON.stringify(data)
  if (json === undefined) throw new TypeError('payload cannot be encoded as JSON')
  return { kind: Kind.Json, bytes: encoder.encode(json) }
}

/**
 * Read payload bytes back into a value: binary comes back as a Uint8Array copy (it owns its
 * buffer), text as a string, JSON parsed. Throws on malformed JSON or UTF-8.
 */
export function decodePayload (kind: number, bytes: Uint8Array): unknown {
  switch (kind) {
    case Kind.Binary: return new Uint8Array(bytes) // a copy, and a plain Uint8Array even when the frame came in a Node Buffer
    case Kind.Text: return decoder.decode(bytes)
    case Kind.Json: return JSON.parse(decoder.decode(bytes))
    default: return undefined
  }
}

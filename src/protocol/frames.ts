/**
 * The frames of signalyard.2 as typed values, both ways, and the one table of endpoints every list
 * derives from.
 *
 * Client → server: OPEN, CLOSE, DATA, REQUEST, PING (`ClientFrame`). Server → client: HELLO,
 * OPENED, CLOSED, DATA, EVENT, REPLY, ERROR, PONG, ACK (`ServerFrame`). The byte layout is in
 * codec.ts; what each endpoint puts in OPEN, REQUEST, OPENED, DATA and EVENT is in its own file
 * (echo.ts, kv.ts, relay.ts, peers.ts, signal.ts); field by field: docs/PROTOCOL.md. Parsers
 * return a typed frame or a `{ error }` naming the code to answer with; they never throw.
 */
import { FrameType, HEADER_SIZE, metaLength, readFrame, writeFrame, type RawFrame } from './codec.js'
import { bad, isName, isUint, NAME_MAX, quote, type FrameError, type JsonObject } from './check.js'
import { echoWire, type OpenEcho } from './echo.js'
import { kvWire, type KvRequest, type OpenKv } from './kv.js'
import { peersWire, type OpenPeers, type PeersRequest } from './peers.js'
import { relayWire, type OpenRelay } from './relay.js'
import { signalWire, type OpenSignal } from './signal.js'

export { FrameType } from './codec.js'
export { isName, isWellFormed, NAME_MAX, OWNER_KEY_MAX, OWNER_KEY_MIN, type FrameError, type JsonObject } from './check.js'
export { RELAY_PRE_OPEN_WINDOW } from './relay.js'
export type { OpenEcho, OpenKv, OpenRelay, OpenPeers, OpenSignal, KvRequest, PeersRequest }
export type { KvSetRequest, KvDeleteRequest } from './kv.js'
export type { PeersUpdateRequest } from './peers.js'

/** WebSocket subprotocol; bump the number on incompatible changes. */
export const SUBPROTOCOL = 'signalyard.2'

/**
 * A client with a token offers a second subprotocol, this prefix + the token in base64url (browsers
 * cannot set headers on a WebSocket; a subprotocol stays out of URLs and access logs).
 */
export const AUTH_PROTOCOL_PREFIX = 'signalyard.auth.'

/** Close codes of a permanent refusal: the client does not reconnect after them. */
export const CLOSE_UNAUTHORIZED = 4401
export const CLOSE_FORBIDDEN = 4403

/** Highest stream id a client may open (2³²−1 is reserved; 0 is the connection). */
export const MAX_SID = 0xfffffffe

/**
 * THE table of endpoints: name → how it reads OPEN and REQUEST. `ENDPOINTS`, `Endpoint`,
 * `OpenFrame`, `AnyRequest` and `REQUEST_OPS` derive from it; the server's handler table
 * (src/server/endpoints/index.ts) is typed by it, so an endpoint added here does not compile
 * until the server handles it. Adding one: docs/ARCHITECTURE.md.
 */
const WIRES = { echo: echoWire, kv: kvWire, relay: relayWire, peers: peersWire, signal: signalWire }

/** The endpoints a stream can open. */
export type Endpoint = keyof typeof WIRES
// The tables below are built by calls marked pure, so a bundle that never parses client frames (a
// browser) drops them and the parsers with them.
export const ENDPOINTS: readonly Endpoint[] = /* @__PURE__ */ Object.freeze(/* @__PURE__ */ Object.keys(WIRES) as Endpoint[])

type Parsed<T> = Exclude<T, FrameError>
/** A checked OPEN of endpoint E. */
export type OpenOf<E extends Endpoint> = Parsed<ReturnType<typeof WIRES[E]['open']>>
export type OpenFrame = { [E in Endpoint]: OpenOf<E> }[Endpoint]
/** Every REQUEST a client may send, whatever its stream's endpoint. */
export type AnyRequest = { [E in Endpoint]: Parsed<ReturnType<typeof WIRES[E]['requests'][string]>> }[Endpoint]

export interface CloseFrame { type: 'close', sid: number }
/** Client liveness: the server answers PONG at once. */
export interface PingFrame { type: 'ping', sid: 0 }
export interface DataFrame { type: 'data', sid: number, raw: RawFrame }
export type ClientFrame = OpenFrame | CloseFrame | DataFrame | AnyRequest | PingFrame

/**
 * The request ops each endpoint takes. A REQUEST whose op is not its stream's gets ERROR
 * `bad-request` with its `req`; the stream's handler only ever sees its own ops.
 */
export const REQUEST_OPS = /* @__PURE__ */ (() => Object.fromEntries(ENDPOINTS.map((ep) => [ep, Object.keys(WIRES[ep].requests)])))() as unknown as
  { readonly [E in Endpoint]: ReadonlyArray<AnyRequest['op']> }

/** Request parsers of every endpoint, by op (a Map: an op named like an Object.prototype member is unknown). */
const requestParsers = /* @__PURE__ */ (() => new Map(ENDPOINTS.flatMap((ep) => Object.entries(WIRES[ep].requests))))()

const isEndpoint = (ep: unknown): ep is Endpoint => typeof ep === 'string' && Object.prototype.hasOwnProperty.call(WIRES, ep)

function parseOpen (f: RawFrame): OpenFrame | FrameError {
  const m = f.meta ?? {}
  const sid = f.id
  let parsed: OpenFrame | FrameError
  if (sid === 0 || sid > MAX_SID) parsed = bad(sid, `stream ids are 1 … ${MAX_SID}`)
  else if (!isName(m.ns)) parsed = bad(sid, `ns must be a string of 1..${NAME_MAX} characters`)
  else if (!isEndpoint(m.ep)) return { error: 'unknown-endpoint', message: `unknown endpoint ${quote(m.ep)}`, sid, open: true }
  else parsed = (WIRES[m.ep].open as (sid: number, ns: string, m: JsonObject) => OpenFrame | FrameError)(sid, m.ns, m)
  return 'error' in parsed ? { ...parsed, open: true } : parsed
}

function parseRequest (f: RawFrame): AnyRequest | FrameError {
  const m = f.meta ?? {}
  if (!isUint(m.req)) return bad(f.id, 'req must be a non-negative integer')
  const parser = typeof m.op === 'string' ? requestParsers.get(m.op) : undefined
  if (parser === undefined) return bad(f.id, `unknown op ${quote(m.op)}`, m.req)
  return parser(f.id, m.req, m, f)
}

/** Client frame parsers, keyed by frame type. */
const clientParsers: Record<number, (f: RawFrame) => ClientFrame | FrameError> = /* @__PURE__ */ (() => ({
  [FrameType.Open]: parseOpen,
  [FrameType.Close]: (f: RawFrame): CloseFrame => ({ type: 'close', sid: f.id }),
  [FrameType.Data]: (f: RawFrame): DataFrame => ({ type: 'data', sid: f.id, raw: f }),
  [FrameType.Request]: parseRequest,
  [FrameType.Ping]: (): PingFrame => ({ type: 'ping', sid: 0 })
}))()

/** Parse bytes a client sent into a typed frame, or a FrameError saying why not. */
export function parseClientFrame (bytes: Uint8Array): ClientFrame | FrameError {
  const raw = readFrame(bytes)
  if (raw === null) return { error: 'bad-frame', message: 'malformed frame', sid: 0 }
  const parser = clientParsers[raw.type]
  if (parser === undefined) return { error: 'unknown-frame', message: `unknown frame type ${raw.type}`, sid: raw.id }
  return parser(raw)
}

export function isFrameError (f: object): f is FrameError {
  return 'error' in f
}

/** HELLO: the connection's greeting (docs/PROTOCOL.md, "Connection"); read by the socket. */
export interface HelloFrame { type: 'hello', meta: JsonObject }
/** OPENED, CLOSED, REPLY, ERROR, ACK and DATA of one stream: the endpoint's file reads the meta. */
export interface StreamFrame<T extends 'opened' | 'closed' | 'reply' | 'error' | 'ack' | 'data'> { type: T, sid: number, meta: JsonObject, raw: RawFrame }
/** EVENT: a broadcast, addressed by endpoint and namespace (`topic` is `ep:ns`), not by stream. */
export interface EventFrame { type: 'event', topic: string, raw: RawFrame }
export interface PongFrame { type: 'pong' }
/** ICE: the connection's iceServers anew (fresh TURN credentials); read like HELLO's. */
export interface IceFrame { type: 'ice', meta: JsonObject }
/** A frame type this client does not know (a newer server's): ignored, not an error. */
export interface UnknownFrame { type: 'unknown', frameType: number }
export type ServerFrame = HelloFrame | PongFrame | IceFrame | EventFrame | UnknownFrame |
  StreamFrame<'opened'> | StreamFrame<'closed'> | StreamFrame<'reply'> | StreamFrame<'error'> | StreamFrame<'ack'> | StreamFrame<'data'>
export type ServerStreamFrame = Extract<ServerFrame, { sid: number }>

/** The meta of a frame that has none (DATA and ACK often): one shared, frozen object, not one per frame. */
const NO_META: JsonObject = Object.freeze({})

const streamFrame = <T extends ServerStreamFrame['type']>(type: T) => (f: RawFrame): StreamFrame<T> => ({ type, sid: f.id, meta: f.meta ?? NO_META, raw: f })

/** Server frame parsers, keyed by frame type. */
const serverParsers: Record<number, (f: RawFrame) => ServerFrame> = {
  [FrameType.Hello]: (f) => ({ type: 'hello', meta: f.meta ?? NO_META }),
  [FrameType.Pong]: () => ({ type: 'pong' }),
  [FrameType.Ice]: (f) => ({ type: 'ice', meta: f.meta ?? NO_META }),
  [FrameType.Event]: (f) => ({ type: 'event', topic: `${String(f.meta?.ep)}:${String(f.meta?.ns)}`, raw: f }),
  [FrameType.Opened]: streamFrame('opened'),
  [FrameType.Closed]: streamFrame('closed'),
  [FrameType.Reply]: streamFrame('reply'),
  [FrameType.Error]: streamFrame('error'),
  [FrameType.Ack]: streamFrame('ack'),
  [FrameType.Data]: streamFrame('data')
}

/**
 * The last echo EVENT meta one client connection parsed, kept so that the next EVENT with the same
 * meta bytes is not parsed again. The server encodes an echo EVENT's meta once per sender
 * (`{ ep, ns, from }`), so a subscriber's EVENTs from one sender all carry the same bytes: for them
 * a receive is a byte comparison instead of UTF-8 decoding, a depth scan and JSON.parse. Only echo
 * metas are kept: echo reads `from` and never hands the meta to the app, so one object may serve
 * every such frame (kv and presence EVENTs differ anyway, and their metas reach the app).
 */
export interface EventMemo { bytes: Uint8Array | null, meta: JsonObject, topic: string }

/** A memo for one connection (parseServerFrame). */
export function eventMemo (): EventMemo {
  return { bytes: null, meta: NO_META, topic: '' }
}

/** Is `frame` an EVENT whose meta bytes are the memo's? */
function remembered (frame: Uint8Array, memo: EventMemo): boolean {
  const known = memo.bytes
  if (known === null || frame[0] !== FrameType.Event || metaLength(frame) !== known.length) return false
  for (let i = 0, at = HEADER_SIZE; i < known.length; i++, at++) if (frame[at] !== known[i]) return false
  return true
}

/**
 * Parse bytes the server sent into a typed frame; null for anything malformed. `memo`: the
 * connection's EventMemo (the client's socket passes one; see EventMemo).
 */
export function parseServerFrame (bytes: Uint8Array, memo?: EventMemo): ServerFrame | null {
  if (memo !== undefined && remembered(bytes, memo)) {
    const raw = readFrame(bytes, memo.meta)
    return raw === null ? null : { type: 'event', topic: memo.topic, raw }
  }
  const raw = readFrame(bytes)
  if (raw === null) return null
  const parser = serverParsers[raw.type]
  if (parser === undefined) return { type: 'unknown', frameType: raw.type }
  const frame = parser(raw)
  if (memo !== undefined && frame.type === 'event' && raw.meta?.ep === 'echo') {
    memo.bytes = bytes.slice(HEADER_SIZE, HEADER_SIZE + metaLength(bytes))
    memo.meta = raw.meta
    memo.topic = frame.topic
  }
  return frame
}

/** An ICE frame: the connection's iceServers anew. */
export function writeIce (iceServers: object[]): Uint8Array {
  return writeFrame(FrameType.Ice, 0, { iceServers })
}

/**
 * Frame types and the typed unions both sides parse untrusted frames into.
 *
 * Client → server: OPEN, CLOSE, DATA, REQUEST. Server → client: HELLO, OPENED, CLOSED, DATA, EVENT,
 * REPLY, ERROR. Field by field description: docs/PROTOCOL.md. Parsers return a typed frame or a
 * `{ error }` naming the code to answer with; they never throw.
 */
import { readFrame, type RawFrame } from './codec.js'
import type { ErrorCode } from './errors.js'

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
  Ack: 0x18
} as const

/**
 * Bytes of DATA a client may send on a relay stream before its OPENED (which announces the
 * stream's `window`); the server's window is never smaller.
 */
export const RELAY_PRE_OPEN_WINDOW = 64 * 1024

/** The endpoints a stream can open. */
export const ENDPOINTS = ['echo', 'kv', 'relay', 'peers', 'signal'] as const
export type Endpoint = typeof ENDPOINTS[number]

/** Highest stream id a client may open (2³²−1 is reserved; 0 is the connection). */
export const MAX_SID = 0xfffffffe

/** Longest namespace, KV key, relay token or peer id, in UTF-16 code units. */
export const NAME_MAX = 256

/** Shortest and longest owner key of a peers/signal id, in UTF-16 code units. */
export const OWNER_KEY_MIN = 16
export const OWNER_KEY_MAX = 128

export interface OpenEcho { type: 'open', sid: number, ep: 'echo', ns: string }
export interface OpenKv { type: 'open', sid: number, ep: 'kv', ns: string, since: { epoch: string, seq: number } | null }
export interface OpenRelay { type: 'open', sid: number, ep: 'relay', ns: string, local: string, remote: string }
/** A JSON object as it came off the wire (presence meta). */
export type JsonObject = Record<string, unknown>
/**
 * Claim a presence id. `meta` is `{}` when the client sent none; `metaSize` is the byte length of
 * its JSON encoding, which the endpoint checks against `peers.maxMeta` (parsers know no limits).
 */
export interface OpenPeers { type: 'open', sid: number, ep: 'peers', ns: string, id: string, key: string, meta: JsonObject, metaSize: number }
/** Claim a signal id (directed messages to it reach this stream). */
export interface OpenSignal { type: 'open', sid: number, ep: 'signal', ns: string, id: string, key: string }
export type OpenFrame = OpenEcho | OpenKv | OpenRelay | OpenPeers | OpenSignal
export interface CloseFrame { type: 'close', sid: number }
/** Client liveness: the server answers PONG at once. */
export interface PingFrame { type: 'ping', sid: 0 }
export interface DataFrame { type: 'data', sid: number, raw: RawFrame }
export interface KvSetRequest { type: 'request', sid: number, req: number, op: 'set', key: string, ttl: number | null, raw: RawFrame }
export interface KvDeleteRequest { type: 'request', sid: number, req: number, op: 'delete', key: string }
/** A presence member's new meta; `metaSize` as in OpenPeers. */
export interface PeersUpdateRequest { type: 'request', sid: number, req: number, op: 'update', meta: JsonObject, metaSize: number }
/** The requests of a kv stream. */
export type KvRequest = KvSetRequest | KvDeleteRequest
/**
 * The requests of a kv stream, under the name src/server/endpoints/kv.ts imports. Every request
 * a client may send is `AnyRequest`.
 */
export type RequestFrame = KvRequest
/** The requests of a peers stream. */
export type PeersRequest = PeersUpdateRequest
/** Every REQUEST a client may send, whatever its stream's endpoint. */
export type AnyRequest = KvRequest | PeersRequest
export type ClientFrame = OpenFrame | CloseFrame | DataFrame | AnyRequest | PingFrame

/**
 * The request ops each endpoint takes. A REQUEST whose op is not its stream's gets ERROR
 * `bad-request` with its `req`; the stream's handler only ever sees its own ops.
 */
export const REQUEST_OPS: { readonly [E in Endpoint]: ReadonlyArray<AnyRequest['op']> } = {
  echo: [],
  kv: ['set', 'delete'],
  relay: [],
  peers: ['update'],
  signal: []
}

/** What a parser says about a frame it rejects: the code, and the stream/request it concerned. */
export interface FrameError {
  error: ErrorCode
  message: string
  sid: number
  req?: number
  /** The rejected frame was an OPEN: the answer is CLOSED (the stream does not exist), not ERROR. */
  open?: true
}

/**
 * Whether `s` is well-formed UTF-16: every surrogate is half of a pair (what
 * String.prototype.isWellFormed, missing in Node 20, checks). A lone surrogate has no UTF-8
 * encoding: Redis would store `x\uD800` and `x\uDFFF` both as `x\uFFFD`, one name for two.
 *
 * @example
 * isWellFormed('a\uD83D\uDE00') // true
 * isWellFormed('a\uD800')        // false
 */
export function isWellFormed (s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0xd800 || c > 0xdfff) continue
    if (c > 0xdbff) return false
    const d = s.charCodeAt(++i)
    if (!(d >= 0xdc00 && d <= 0xdfff)) return false
  }
  return true
}

/**
 * A namespace, key, token or peer id: a well-formed string (no lone surrogate) of 1 … NAME_MAX
 * UTF-16 code units.
 */
export const isName = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= NAME_MAX && isWellFormed(v)
const isOwnerKey = (v: unknown): v is string => typeof v === 'string' && v.length >= OWNER_KEY_MIN && v.length <= OWNER_KEY_MAX && isWellFormed(v)
const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v)
const utf8 = new TextEncoder()
/** Bytes of `value`'s JSON encoding. */
const jsonSize = (value: JsonObject): number => utf8.encode(JSON.stringify(value)).length
const isUint = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= Number.MAX_SAFE_INTEGER
const bad = (sid: number, message: string, req?: number): FrameError => ({ error: 'bad-request', message, sid, req })

type Parser = (f: RawFrame) => ClientFrame | FrameError

/**
 * A client's value quoted in an error message, cut to 40 characters: an answer never carries back
 * more than a few bytes of what was sent (a 1 MiB endpoint name is not echoed to its sender).
 */
function quote (value: unknown): string {
  const text = typeof value === 'string' ? value : typeof value
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text)
}

function parseOpen (f: RawFrame): OpenFrame | FrameError {
  const parsed = checkOpen(f)
  return 'error' in parsed ? { ...parsed, open: true } : parsed
}

function checkOpen (f: RawFrame): OpenFrame | FrameError {
  const m = f.meta ?? {}
  const sid = f.id
  if (sid === 0 || sid > MAX_SID) return bad(sid, `stream ids are 1 … ${MAX_SID}`)
  if (!isName(m.ns)) return bad(sid, `ns must be a string of 1..${NAME_MAX} characters`)
  switch (m.ep) {
    case 'echo':
      return { type: 'open', sid, ep: 'echo', ns: m.ns }
    case 'kv': {
      if (m.epoch === undefined && m.seq === undefined) return { type: 'open', sid, ep: 'kv', ns: m.ns, since: null }
      if (typeof m.epoch !== 'string' || m.epoch.length > 64 || !isUint(m.seq)) return bad(sid, 'epoch must be a string and seq an integer')
      return { type: 'open', sid, ep: 'kv', ns: m.ns, since: { epoch: m.epoch, seq: m.seq } }
    }
    case 'relay':
      if (!isName(m.local) || !isName(m.remote)) return bad(sid, `local and remote must be strings of 1..${NAME_MAX} characters`)
      if (m.local === m.remote) return bad(sid, 'local and remote must differ')
      return { type: 'open', sid, ep: 'relay', ns: m.ns, local: m.local, remote: m.remote }
    case 'peers':
    case 'signal': {
      if (!isName(m.id)) return bad(sid, `id must be a string of 1..${NAME_MAX} characters`)
      if (!isOwnerKey(m.key)) return bad(sid, `key must be a string of ${OWNER_KEY_MIN}..${OWNER_KEY_MAX} characters`)
      if (m.ep === 'signal') return { type: 'open', sid, ep: 'signal', ns: m.ns, id: m.id, key: m.key }
      const meta = m.meta === undefined ? {} : m.meta
      if (!isObject(meta)) return bad(sid, 'meta must be a JSON object')
      return { type: 'open', sid, ep: 'peers', ns: m.ns, id: m.id, key: m.key, meta, metaSize: jsonSize(meta) }
    }
    default:
      return { error: 'unknown-endpoint', message: `unknown endpoint ${quote(m.ep)}`, sid }
  }
}

type RequestParser = (f: RawFrame, m: JsonObject, req: number) => AnyRequest | FrameError
const keyError = (sid: number, req: number): FrameError => bad(sid, `key must be a string of 1..${NAME_MAX} characters`, req)

/** Request parsers, keyed by op (a Map: an op named like an Object.prototype member is unknown). */
const requestParsers = new Map<unknown, RequestParser>([
  ['set', (f, m, req) => {
    if (!isName(m.key)) return keyError(f.id, req)
    if (m.ttl !== undefined && (!isUint(m.ttl) || m.ttl === 0)) return bad(f.id, 'ttl must be a positive integer of milliseconds', req)
    return { type: 'request', sid: f.id, req, op: 'set', key: m.key, ttl: m.ttl ?? null, raw: f }
  }],
  ['delete', (f, m, req) => isName(m.key) ? { type: 'request', sid: f.id, req, op: 'delete', key: m.key } : keyError(f.id, req)],
  ['update', (f, m, req) => {
    const meta = m.meta === undefined ? {} : m.meta
    if (!isObject(meta)) return bad(f.id, 'meta must be a JSON object', req)
    return { type: 'request', sid: f.id, req, op: 'update', meta, metaSize: jsonSize(meta) }
  }]
])

function parseRequest (f: RawFrame): AnyRequest | FrameError {
  const m = f.meta ?? {}
  if (!isUint(m.req)) return bad(f.id, 'req must be a non-negative integer')
  const parser = requestParsers.get(m.op)
  if (parser === undefined) return bad(f.id, `unknown op ${quote(m.op)}`, m.req)
  return parser(f, m, m.req)
}

/** Client frame parsers, keyed by frame type. */
const clientParsers: Record<number, Parser> = {
  [FrameType.Open]: parseOpen,
  [FrameType.Close]: (f) => ({ type: 'close', sid: f.id }),
  [FrameType.Data]: (f) => ({ type: 'data', sid: f.id, raw: f }),
  [FrameType.Request]: parseRequest,
  [FrameType.Ping]: () => ({ type: 'ping', sid: 0 })
}

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

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
export const SUBPROTOCOL = 'signalyard.1'

export const FrameType = {
  Open: 0x01,
  Close: 0x02,
  Data: 0x03,
  Request: 0x04,
  Hello: 0x10,
  Opened: 0x11,
  Closed: 0x12,
  Event: 0x14,
  Reply: 0x15,
  Error: 0x16
} as const

/** The endpoints a stream can open. */
export const ENDPOINTS = ['echo', 'kv', 'relay'] as const
export type Endpoint = typeof ENDPOINTS[number]

/** Longest namespace, KV key or relay token, in UTF-16 code units. */
export const NAME_MAX = 256

export interface OpenEcho { type: 'open', sid: number, ep: 'echo', ns: string }
export interface OpenKv { type: 'open', sid: number, ep: 'kv', ns: string, since: { epoch: string, seq: number } | null }
export interface OpenRelay { type: 'open', sid: number, ep: 'relay', ns: string, local: string, remote: string }
export type OpenFrame = OpenEcho | OpenKv | OpenRelay
export interface CloseFrame { type: 'close', sid: number }
export interface DataFrame { type: 'data', sid: number, raw: RawFrame }
export interface KvSetRequest { type: 'request', sid: number, req: number, op: 'set', key: string, ttl: number | null, raw: RawFrame }
export interface KvDeleteRequest { type: 'request', sid: number, req: number, op: 'delete', key: string }
export type RequestFrame = KvSetRequest | KvDeleteRequest
export type ClientFrame = OpenFrame | CloseFrame | DataFrame | RequestFrame

/** What a parser says about a frame it rejects: the code, and the stream/request it concerned. */
export interface FrameError {
  error: ErrorCode
  message: string
  sid: number
  req?: number
  /** The rejected frame was an OPEN: the answer is CLOSED (the stream does not exist), not ERROR. */
  open?: true
}

const isName = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= NAME_MAX
const isUint = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= Number.MAX_SAFE_INTEGER
const bad = (sid: number, message: string, req?: number): FrameError => ({ error: 'bad-request', message, sid, req })

type Parser = (f: RawFrame) => ClientFrame | FrameError

function parseOpen (f: RawFrame): OpenFrame | FrameError {
  const parsed = checkOpen(f)
  return 'error' in parsed ? { ...parsed, open: true } : parsed
}

function checkOpen (f: RawFrame): OpenFrame | FrameError {
  const m = f.meta ?? {}
  const sid = f.id
  if (sid === 0) return bad(sid, 'stream id 0 is reserved')
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
    default:
      return { error: 'unknown-endpoint', message: `unknown endpoint ${JSON.stringify(m.ep)}`, sid }
  }
}

function parseRequest (f: RawFrame): RequestFrame | FrameError {
  const m = f.meta ?? {}
  const sid = f.id
  if (!isUint(m.req)) return bad(sid, 'req must be a non-negative integer')
  const req = m.req
  if (!isName(m.key)) return bad(sid, `key must be a string of 1..${NAME_MAX} characters`, req)
  if (m.op === 'set') {
    if (m.ttl !== undefined && (!isUint(m.ttl) || m.ttl === 0)) return bad(sid, 'ttl must be a positive integer of milliseconds', req)
    return { type: 'request', sid, req, op: 'set', key: m.key, ttl: m.ttl ?? null, raw: f }
  }
  if (m.op === 'delete') return { type: 'request', sid, req, op: 'delete', key: m.key }
  return bad(sid, `unknown op ${JSON.stringify(m.op)}`, req)
}

/** Client frame parsers, keyed by frame type. */
const clientParsers: Record<number, Parser> = {
  [FrameType.Open]: parseOpen,
  [FrameType.Close]: (f) => ({ type: 'close', sid: f.id }),
  [FrameType.Data]: (f) => ({ type: 'data', sid: f.id, raw: f }),
  [FrameType.Request]: parseRequest
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

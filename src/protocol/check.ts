/**
 * What the protocol's parsers share: the checks on names, owner keys, integers and JSON objects,
 * and the `FrameError` a parser returns for a frame it rejects. Parsers never throw and know no
 * configured limits (the server's endpoints check those); they only say whether a frame is
 * well-formed.
 */
import type { RawFrame } from './codec.js'
import type { ErrorCode } from './errors.js'

/** Longest namespace, KV key, relay token or peer id, in UTF-16 code units. */
export const NAME_MAX = 256

/** Shortest and longest owner key of a peers/signal id, in UTF-16 code units. */
export const OWNER_KEY_MIN = 16
export const OWNER_KEY_MAX = 128

/** A JSON object as it came off the wire (a frame's meta, presence meta). */
export type JsonObject = Record<string, unknown>

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
/** An owner key: a well-formed string of OWNER_KEY_MIN … OWNER_KEY_MAX code units. */
export const isOwnerKey = (v: unknown): v is string => typeof v === 'string' && v.length >= OWNER_KEY_MIN && v.length <= OWNER_KEY_MAX && isWellFormed(v)
export const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v)
/** A non-negative safe integer. */
export const isUint = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= Number.MAX_SAFE_INTEGER

const utf8 = /* @__PURE__ */ new TextEncoder()
/** Bytes of `value`'s JSON encoding. */
export const jsonSize = (value: JsonObject): number => utf8.encode(JSON.stringify(value)).length

/** A `bad-request` rejection of stream `sid` (of request `req`, when it concerned one). */
export const bad = (sid: number, message: string, req?: number): FrameError => ({ error: 'bad-request', message, sid, req })

/** The rejection of a name field: `what` must be a name. */
export const badName = (sid: number, what: string, req?: number): FrameError =>
  bad(sid, `${what} must be a string of 1..${NAME_MAX} characters`, req)

/**
 * A client's value quoted in an error message, cut to 40 characters: an answer never carries back
 * more than a few bytes of what was sent (a 1 MiB endpoint name is not echoed to its sender).
 */
export function quote (value: unknown): string {
  const text = typeof value === 'string' ? value : typeof value
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text)
}

/** A presence meta from the wire: `{}` when absent, null when not a JSON object. */
export function metaObject (value: unknown): JsonObject | null {
  const meta = value === undefined ? {} : value
  return isObject(meta) ? meta : null
}

/**
 * How one endpoint reads what a client sends it: the fields of its OPEN (after `ep` and `ns`,
 * which frames.ts checks for every endpoint) and its REQUESTs by op. Each endpoint's file in
 * src/protocol/ exports one; frames.ts puts them in the one table every list derives from.
 */
export interface EndpointWire<O, R = never> {
  open: (sid: number, ns: string, meta: JsonObject) => O | FrameError
  requests: { readonly [op: string]: (sid: number, req: number, meta: JsonObject, raw: RawFrame) => R | FrameError }
}

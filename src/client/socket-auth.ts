/**
 * Who the client's socket is and how the server takes it (docs/PROTOCOL.md, "Connection"): the
 * token, asked before every connection and carried as a second WebSocket subprotocol
 * (`signalyard.auth.<base64url>`), which also decides which socket a channel shares; the
 * server's HELLO with its limits and ICE servers; and the close codes that refuse a client for
 * good (4401 unauthorized, 4403 forbidden).
 */
import { SignalyardError } from '../protocol/errors.js'
import { AUTH_PROTOCOL_PREFIX, CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED, SUBPROTOCOL } from '../protocol/frames.js'

/** The `token` option: a string, or a function (possibly async) asked before every connection. */
export type TokenOption = string | (() => string | null | Promise<string | null>)

/** What HELLO says about the server. */
export interface Hello {
  v: number
  conn: string
  /** The server's limits; `messagesPerSecond`/`messageBurst` are its per-connection frame rate (Infinity: none stated). */
  limits: { maxFrame: number, maxValue: number, maxMeta?: number, messagesPerSecond: number, messageBurst: number }
  iceServers: unknown[]
}

/** The token for the next connection (a function is asked now; it may be async, or throw: a rejection). */
export function resolveToken (token: TokenOption): Promise<string | null | undefined> {
  return new Promise((resolve) => resolve(typeof token === 'function' ? token() : token))
}

/** The subprotocols a WebSocket asks for: ours, plus the token when there is one. */
export function subprotocols (token: string | null): string | string[] {
  return token === null ? SUBPROTOCOL : [SUBPROTOCOL, AUTH_PROTOCOL_PREFIX + base64url(token)]
}

/** Read HELLO's meta; a limit the server does not state is `maxFrame` (the client's default), unbounded or unknown. */
export function readHello (meta: Record<string, unknown>, maxFrame: number): Hello {
  const limits = meta.limits as Partial<Hello['limits']> | undefined
  return {
    v: Number(meta.v),
    conn: String(meta.conn),
    limits: {
      maxFrame: typeof limits?.maxFrame === 'number' ? limits.maxFrame : maxFrame,
      maxValue: typeof limits?.maxValue === 'number' ? limits.maxValue : Infinity,
      maxMeta: typeof limits?.maxMeta === 'number' ? limits.maxMeta : undefined,
      // A server that announces no rate (an older one) is not paced.
      messagesPerSecond: positive(limits?.messagesPerSecond) ?? Infinity,
      messageBurst: positive(limits?.messageBurst) ?? Infinity
    },
    iceServers: Array.isArray(meta.iceServers) ? meta.iceServers : []
  }
}

function positive (n: unknown): number | undefined {
  return typeof n === 'number' && n > 0 ? n : undefined
}

/** The error of a close code that refuses the client for good, or null for any other code. */
export function refusal (code: number, reason: string): SignalyardError | null {
  if (code !== CLOSE_UNAUTHORIZED && code !== CLOSE_FORBIDDEN) return null
  return new SignalyardError(code === CLOSE_UNAUTHORIZED ? 'unauthorized' : 'forbidden', reason === '' ? undefined : reason)
}

/** Token functions by identity: the same function object is the same identity, another is another. */
const tokenFunctions = new WeakMap<object, number>()
let nextTokenFunction = 1

/**
 * The registry key of a socket: its URLs and its token. Channels share a socket only when both
 * match: a token string by value, a token function by identity (the same function object), no
 * token only with no token. One socket, one identity.
 */
export function socketKey (urls: string[], token: TokenOption | undefined): string {
  let who = '-'
  if (typeof token === 'string') who = `s${token}`
  else if (typeof token === 'function') {
    let n = tokenFunctions.get(token)
    if (n === undefined) tokenFunctions.set(token, n = nextTokenFunction++)
    who = `f${n}`
  }
  return `${urls.join(' ')}\u0000${who}`
}

/** base64url of a string's UTF-8 bytes (browsers and Node alike). */
function base64url (text: string): string {
  let binary = ''
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte)
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

/**
 * Who the client's socket is and how the server takes it (docs/PROTOCOL.md, "Connection"): the
 * token, asked before every connection and carried as a second WebSocket subprotocol
 * (`signalyard.auth.<base64url>`), which also decides which socket a channel shares; the
 * server's HELLO with its limits and ICE servers; the close codes that refuse a client for good
 * (4401 unauthorized, 4403 forbidden); and why an attempt that never got HELLO failed (refused,
 * host not found, TLS, an HTTP answer, a close), told as well as the runtime lets us know.
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

/** Why a connection attempt failed, in one word: the `reason` of a {@link ConnectError}. */
export type ConnectReason = 'refused' | 'dns' | 'tls' | 'http' | 'unreachable' | 'reset' | 'closed' | 'bad-url' | 'unknown'

/**
 * A connection-level error that says why the client could not connect: `connect-failed` (the
 * client retries with backoff), or `unauthorized` / `forbidden` from a 4401 / 4403 close (final).
 * `cause` holds the runtime's own error when it gave one (Node); browsers give none.
 *
 * @example
 * channel.on('error', (err) => {
 *   if (err.code === 'connect-failed') console.warn((err as ConnectError).reason, err.message)
 * })
 */
export interface ConnectError extends SignalyardError {
  /** The server URL of the attempt, without its query, fragment or credentials. */
  readonly url: string
  readonly reason: ConnectReason
  /** The runtime's error code: 'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', … */
  readonly causeCode?: string
  /** The HTTP status the server (or a proxy) answered instead of upgrading to WebSocket. */
  readonly status?: number
  /** The WebSocket close code when the server closed the connection before accepting it (4401, 4403, 1013, …). */
  readonly closeCode?: number
}

/** What one connection attempt saw before it closed without the server's HELLO. */
export interface Attempt {
  url: string
  /** What the WebSocket's 'error' event carried (an ErrorEvent whose `error` is the cause in Node; nothing useful in browsers). */
  error: unknown
  /** The HTTP answer to a refused upgrade (Node's `ws` only: see watchHttpAnswer). */
  http: HttpAnswer | null
  /** The upgrade succeeded (onopen ran). */
  opened: boolean
}

/** An HTTP answer instead of a WebSocket upgrade; `body` is its first line when it was short plain text. */
export interface HttpAnswer { status: number, statusText: string, body: string }

/** The error of a close code that refuses the client for good, or null for any other code. */
export function refusal (code: number, reason: string, url: string): ConnectError | null {
  if (code !== CLOSE_UNAUTHORIZED && code !== CLOSE_FORBIDDEN) return null
  const name = code === CLOSE_UNAUTHORIZED ? 'unauthorized' : 'forbidden'
  // The server's reason starts with the code ("forbidden: origin not allowed"): say it once.
  const said = reason.replace(/^(unauthorized|forbidden)\b:?\s*/, '')
  // ERROR_CODES' words for the two codes, written here so the socket does not bundle the whole table.
  const why = said !== '' ? said : code === CLOSE_UNAUTHORIZED ? 'authentication failed' : 'not authorized for this namespace or endpoint'
  return connectError(name, `${name} (${code}): ${why} at ${url}; not reconnecting`, { url, reason: 'closed', closeCode: code })
}

/**
 * The `connect-failed` error of an attempt that closed (close `code`/`reason`) before the server's
 * HELLO. `node`: the Node diagnostics when the Node entry installed them (see NODE_DIAGNOSTICS).
 */
export function connectFailure (attempt: Attempt, code: number, reason: string, node: Diagnostics | null): ConnectError {
  const { url } = attempt
  const fail = (kind: ConnectReason, why: string, detail: Partial<ConnectError> = {}): ConnectError =>
    connectError('connect-failed', `cannot connect to ${url}: ${why}`, { url, reason: kind, ...detail })
  const error = (attempt.error as { error?: unknown } | null)?.error ?? attempt.error
  const cause = error instanceof Error ? error : undefined
  const known = node?.explain(attempt, cause)
  if (known !== undefined) return fail(known.kind, known.why, { cause, causeCode: known.code, status: known.status })
  if (cause !== undefined) return fail('unknown', cause.message, { cause })
  const closed = `${code}${reason === '' ? '' : ` ${reason}`}`
  if (attempt.opened) return fail('closed', `the server closed the connection before accepting it (${closed})`, { closeCode: code })
  // A browser's WebSocket hides why on purpose (only 1006, no detail): say what it can be, not a guess.
  return fail('unknown', `the connection closed before opening (${closed}): refused, host not found, unreachable, TLS, ` +
    'an HTTP error or a proxy; the WebSocket API does not say which', { closeCode: code })
}

/** The constructor threw (a malformed URL, a blocked port, ws:// from an https page): retried like any failure. */
export function badUrl (url: string, err: unknown): ConnectError {
  return connectError('connect-failed', `cannot connect to ${url}: ${(err as Error)?.message ?? String(err)}`, { url, reason: 'bad-url', cause: err })
}

/** A URL fit for an error message: no query, fragment or credentials (apps put secrets there). */
export function shownUrl (url: string): string {
  return url.replace(/[?#].*/, '').replace(/\/\/[^/]*@/, '//')
}

/** The one error class with the detail as fields (those known: no `status: undefined` in a log). */
function connectError (code: 'connect-failed' | 'unauthorized' | 'forbidden', message: string, detail: Partial<ConnectError>): ConnectError {
  const error = new SignalyardError(code, message) as unknown as Record<string, unknown>
  for (const [key, value] of Object.entries(detail)) if (value !== undefined) error[key] = value
  return error as unknown as ConnectError
}

/**
 * What only Node can tell (runtime errors with codes, `ws`'s HTTP answers): installed by the Node
 * entry (setDefaultWebSocket), so that browser bundles, where none of it applies, leave it out.
 */
export interface Diagnostics {
  /**
   * The attempt's HTTP answer, or its runtime error (`cause`), as a reason, a sentence naming the
   * cause, the error's code and the HTTP status; undefined when neither says anything.
   */
  explain: (attempt: Attempt, cause: Error | undefined) => { kind: ConnectReason, why: string, code?: string, status?: number } | undefined
  /** Read the HTTP answer to a refused upgrade (Node's `ws`). */
  watch: (ws: object, seen: (answer: HttpAnswer) => void) => void
}

/** What Node puts on a failed connect's error (and on AggregateError's: one per address tried). */
type Cause = Error & { code?: unknown, address?: unknown, port?: unknown, hostname?: unknown, reason?: unknown, errors?: unknown, cause?: unknown }

const DNS = /^(ENOTFOUND|EAI_)/
const UNREACHABLE = /^(EHOSTUNREACH|EHOSTDOWN|ENETUNREACH|ENETDOWN|ETIMEDOUT|EADDRNOTAVAIL)$/
const RESET = /^(ECONNRESET|EPIPE|ECONNABORTED)$/
const TLS = /^ERR_(TLS|SSL)_|CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)/

const explain: Diagnostics['explain'] = ({ url, http }, error: Cause | undefined) => {
  if (http !== null) {
    const status = `HTTP ${http.status}${http.statusText === '' ? '' : ` ${http.statusText}`}`
    return { kind: 'http', why: `the server answered ${status}, not a WebSocket upgrade${http.body === '' ? '' : `: ${http.body}`}`, status: http.status }
  }
  if (error === undefined) return undefined
  // undici (fetch, Node's global WebSocket) wraps the system error as `cause`.
  const inner = error.code === undefined && error.cause instanceof Error ? error.cause as Cause : error
  const code = typeof inner.code === 'string' ? inner.code : ''
  const first = Array.isArray(inner.errors) && inner.errors[0] instanceof Error ? inner.errors[0] as Cause : inner
  const where = typeof first.address === 'string' ? `${first.address}:${String(first.port)}` : hostPort(url)
  const said = (kind: ConnectReason, why: string, status?: number) => ({ kind, why, code: code === '' ? undefined : code, status })
  if (code === 'ECONNREFUSED') return said('refused', `connection refused by ${where} (ECONNREFUSED)`)
  if (DNS.test(code)) {
    const host = typeof inner.hostname === 'string' ? inner.hostname : new URL(url).hostname
    return said('dns', `host not found: ${host} (${code}${code === 'EAI_AGAIN' ? ': the resolver did not answer' : ''})`)
  }
  if (UNREACHABLE.test(code)) return said('unreachable', `${code === 'ETIMEDOUT' ? 'no answer from' : 'cannot reach'} ${where} (${code})`)
  // OpenSSL's own words ("wrong version number") sit in the message of EPROTO errors.
  const ssl = /SSL routines:[^:]*:([^:]+)/.exec(inner.message)?.[1]
  if (TLS.test(code) || ssl !== undefined) return said('tls', `TLS: ${typeof inner.reason === 'string' ? inner.reason : ssl ?? inner.message} (${code})`)
  if (RESET.test(code)) return said('reset', `the connection to ${where} was reset before the WebSocket opened (${code}: ${inner.message})`)
  // ws without an 'unexpected-response' listener (see watchHttpAnswer) says only this.
  const status = /^Unexpected server response: (\d+)/.exec(inner.message)?.[1]
  if (status !== undefined) return said('http', `the server answered HTTP ${status}, not a WebSocket upgrade`, Number(status))
  return said('unknown', code === '' ? inner.message : `${inner.message} (${code})`)
}

/** host:port of a ws(s) URL, the port filled in. */
function hostPort (url: string): string {
  const u = new URL(url)
  return `${u.hostname}:${u.port === '' ? (u.protocol === 'wss:' ? 443 : 80) : u.port}`
}

/** The parts of Node's `ws` client (and of its HTTP response) watchHttpAnswer uses. */
interface NodeWs { on: (event: string, listener: (req: unknown, res: NodeResponse) => void) => unknown, terminate: () => void }
interface NodeResponse {
  statusCode?: number
  statusMessage?: string
  headers: Record<string, unknown>
  on: (event: string, listener: (chunk?: unknown) => void) => unknown
}

/** Bytes of a refusal's body read at most, and how long to wait for them. */
const BODY_MAX = 300
const BODY_WAIT_MS = 1000

/**
 * Node's `ws` hands an HTTP answer to a refused upgrade to an 'unexpected-response' listener
 * (browsers show it to no script): note its status and, when it is short plain text, its first
 * line (the signalyard server says why there: `too-many-connections: …`), then end the attempt as
 * `ws` would have without the listener (error, then close 1006). Other WebSockets are left alone.
 */
const watchHttpAnswer: Diagnostics['watch'] = (ws, seen) => {
  const node = ws as Partial<NodeWs>
  if (typeof node.on !== 'function' || typeof node.terminate !== 'function') return
  const terminate = node.terminate.bind(ws)
  node.on('unexpected-response', (_req, res) => {
    let body = ''
    let done = false
    const finish = (): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      seen({ status: res.statusCode ?? 0, statusText: res.statusMessage ?? '', body: body.split(/\r?\n/)[0].slice(0, BODY_MAX).trim() })
      terminate()
    }
    const timer = setTimeout(finish, BODY_WAIT_MS)
    ;(timer as { unref?: () => void }).unref?.()
    if (!/^text\/plain\b/i.test(String(res.headers['content-type'] ?? ''))) return finish()
    res.on('data', (chunk) => { body += String(chunk); if (body.length >= BODY_MAX) finish() })
    res.on('end', finish)
    res.on('close', finish) // cut off mid-body: what came is enough
  })
}

/** The Node diagnostics (see Diagnostics). */
export const NODE_DIAGNOSTICS: Diagnostics = { explain, watch: watchHttpAnswer }

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

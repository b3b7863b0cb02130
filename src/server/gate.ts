/**
 * The gate between a TCP connection and an admitted client: who may start a WebSocket handshake,
 * how long a socket may stay unadmitted, and authentication.
 *
 * TCP connections are counted per IP address, half-open handshakes included (on the server's own
 * HTTP server when accepted, on an attached server at the upgrade request) and released when the
 * socket closes; sockets not yet admitted hold one of the server's pendingUpgrades budget. One
 * sweep for every pending socket (no timer per socket) cuts off a handshake that takes longer
 * than limits.handshakeTimeout, and an authenticate() that takes longer than limits.authTimeout.
 */
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { AUTH_PROTOCOL_PREFIX } from '../protocol/frames.js'
import { CloseCode, type ServerContext } from './context.js'
import type { ServerOptions } from './server.js'

/** What the gate admits: a native connection, or a compat one (src/server/compat/). */
export interface Admitted {
  readonly id: string
  admit: (identity: unknown) => void
  close: (code: number, reason: string) => void
}

/** A socket as the gate sees it: net.Socket keeps the peer's address, even after it closed. */
type Counted = Duplex & { remoteAddress?: string }

export class Gate {
  /** TCP connections per IP address. */
  private readonly perIp = new Map<string, number>()
  /**
   * Sockets not yet admitted, with their deadline (ms, monotonic): the handshake's
   * (limits.handshakeTimeout from the accept), then authenticate()'s (limits.authTimeout; `conn`
   * set, so the client is told why).
   */
  private readonly pending = new Map<Duplex, { deadline: number, conn?: Admitted }>()
  private readonly sweep: ReturnType<typeof setInterval>
  /** A counted socket closed: release its IP's count (one function for every socket). */
  private readonly release: (this: Counted) => void

  constructor (private readonly ctx: ServerContext) {
    const gate = this
    this.release = function (this: Counted) { gate.released(this) }
    const { handshakeTimeout, authTimeout } = ctx.limits
    this.sweep = setInterval(() => this.expire(), Math.min(1000, handshakeTimeout, authTimeout))
    this.sweep.unref()
  }

  /** Count a new socket against its IP and the pending-upgrades budget; false (refused, answered) if it does not fit. */
  count (socket: Duplex, ip: string): boolean {
    const { limits, budgets, metrics } = this.ctx
    if ((this.perIp.get(ip) ?? 0) >= limits.maxConnectionsPerIp) {
      metrics.refused('too-many-connections')
      refuseUpgrade(socket, 429, `too-many-connections: at most ${limits.maxConnectionsPerIp} connections per IP address`)
      return false
    }
    if (!budgets.pendingUpgrades.take(1)) {
      metrics.refused('quota-exceeded')
      refuseUpgrade(socket, 503, 'quota-exceeded: too many connections are being set up; try again shortly')
      return false
    }
    this.pending.set(socket, { deadline: performance.now() + limits.handshakeTimeout })
    this.perIp.set(ip, (this.perIp.get(ip) ?? 0) + 1)
    socket.on('close', this.release)
    return true
  }

  /**
   * Admit `conn`, accepted on `socket` for `req`: at once without `authenticate`, else once it
   * returns an identity (within limits.authTimeout); a refusal closes the connection (4401
   * `unauthorized`). `welcome` runs on admission, before any frame that waited is served.
   * `token` is the client's (by default from the subprotocol; compat endpoints read a query).
   */
  admit (
    conn: Admitted, socket: Duplex, req: IncomingMessage,
    authenticate: ServerOptions['authenticate'],
    welcome: (identity: unknown) => void,
    token = tokenOf(req),
  ): void {
    const admit = (identity: unknown): void => {
      this.admitted(socket)
      welcome(identity)
      conn.admit(identity)
    }
    if (authenticate === undefined) return admit(null)
    if (this.pending.has(socket)) this.pending.set(socket, { deadline: performance.now() + this.ctx.limits.authTimeout, conn })
    new Promise((resolve) => resolve(authenticate(req, token))).then(admit, (err: unknown) => {
      this.ctx.metrics.refused('unauthorized')
      // The app's message may quote the token: it stays in the server's log (token masked),
      // and the client gets the code alone.
      this.ctx.log('info', 'connection refused by authenticate', { conn: conn.id, error: redact(String(err), token) })
      conn.close(CloseCode.Unauthorized, 'unauthorized')
    })
  }

  /** The socket finished its handshake and authentication (or closed): no longer pending. */
  admitted (socket: Duplex): void {
    if (this.pending.delete(socket)) this.ctx.budgets.pendingUpgrades.give(1)
  }

  /** Stop the sweep (the server is closing). */
  close (): void {
    clearInterval(this.sweep)
  }

  private released (socket: Counted): void {
    this.admitted(socket)
    // net.Socket keeps the peer's address once read (count read it): still there after close.
    const ip = socket.remoteAddress ?? ''
    const n = (this.perIp.get(ip) ?? 1) - 1
    if (n <= 0) this.perIp.delete(ip)
    else this.perIp.set(ip, n)
  }

  /** Cut off the pending sockets past their deadline. */
  private expire (): void {
    const t = performance.now()
    for (const [socket, { deadline, conn }] of this.pending) {
      if (deadline > t) continue
      this.admitted(socket)
      this.ctx.metrics.refused('handshake-timeout')
      if (conn === undefined) socket.destroy()
      else conn.close(CloseCode.TryAgainLater, 'handshake-timeout: authentication took too long')
    }
  }
}

/** The client's token: the subprotocol `signalyard.auth.<base64url of the token>`, if offered. */
function tokenOf (req: IncomingMessage): string | null {
  const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim())
  const entry = offered.find((p) => p.startsWith(AUTH_PROTOCOL_PREFIX))
  if (entry === undefined) return null
  try {
    return Buffer.from(entry.slice(AUTH_PROTOCOL_PREFIX.length), 'base64url').toString('utf8')
  } catch {
    return null
  }
}

/** `text` with every occurrence of the token masked (an app's error message may quote it). */
function redact (text: string, token: string | null): string {
  return token === null || token.length < 4 ? text : text.split(token).join('[token]')
}

/** Answer an HTTP status on a raw socket and close it (once; a socket answered already is left alone). */
export function refuseUpgrade (socket: Duplex, status: number, message: string): void {
  if (socket.writableEnded || socket.destroyed) return
  // Detached from the HTTP server (upgrade) the socket has no error listener of its own; a client
  // resetting it now must not become an uncaught 'error'.
  socket.on('error', ignore)
  socket.end(`HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Bad Request'}\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(message)}\r\n\r\n${message}`)
}

function ignore (): void {}

const STATUS_TEXT: Record<number, string> = { 404: 'Not Found', 429: 'Too Many Requests', 503: 'Service Unavailable' }

/**
 * createServer: an HTTP server (its own, or one the app already has) that upgrades WebSocket
 * requests on `path` speaking subprotocol signalyard.2, answers GET /healthz, and hands each
 * socket to a Connection wired to the endpoints and the broker. One interval pings every
 * connection and cuts off those that did not answer the previous ping (liveness).
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { AddressInfo } from 'node:net'
import { timingSafeEqual } from 'node:crypto'
import { WebSocketServer, type WebSocket } from 'ws'
import { nanoid } from 'nanoid'
import { writeFrame } from '../protocol/codec.js'
import { AUTH_PROTOCOL_PREFIX, FrameType, SUBPROTOCOL, type Endpoint } from '../protocol/frames.js'
import { memoryBroker } from './brokers/memory.js'
import type { Broker } from './brokers/types.js'
import { Connection } from './connection.js'
import { CloseCode, type ServerContext } from './context.js'
import { makeBudgets } from './budget.js'
import { Hub } from './hub.js'
import { Metrics } from './metrics.js'
import { resolveLimits, type Limits, type LimitsOption } from './limits.js'
import { toLogger, type LoggerOption } from './logger.js'

export interface ServerOptions {
  /** Port to listen on (default: env PORT, else 3000; 0 picks a free one). Ignored with `server`. */
  port?: number
  /** Interface to listen on (default: all). Ignored with `server`. */
  host?: string
  /** Attach to this existing HTTP server instead of creating one; the app keeps listening and closing it. */
  server?: Server
  /** URL path of the WebSocket endpoint (default '/'). */
  path?: string
  /** Where namespace state lives (default: memoryBroker()). A broker passed in is not closed by yard.close(). */
  broker?: Broker
  /** Limits over DEFAULTS (see README, "Server options"). */
  limits?: LimitsOption
  /** ICE servers handed to clients for WebRTC (createNode). */
  iceServers?: Array<{ urls: string | string[], username?: string, credential?: string }>
  /** Structured logs: a function (level, message, fields) or a console-like object. Silent by default. */
  logger?: LoggerOption
  /**
   * Who is connecting: called once per connection with the HTTP upgrade request and the client's
   * `token` option (null without one); return an identity (any value), or throw to refuse the
   * connection (close 4401 `unauthorized`; the client stops reconnecting).
   */
  authenticate?: (request: IncomingMessage, token: string | null) => unknown
  /** May this identity open a stream of `endpoint` in `namespace`? false → CLOSED `forbidden`. */
  authorize?: (identity: unknown, namespace: string, endpoint: Endpoint) => boolean | Promise<boolean>
  /** Allowed values of the Origin header (browsers send it); others are closed with 4403 `forbidden`. */
  origins?: string[]
  /**
   * Where GET /metrics is served. By default on the client port, to anyone. `token`: only to
   * requests with `Authorization: Bearer <token>` (others get 401). `port` (and `host`, default
   * 127.0.0.1): on a separate HTTP server of its own (with /healthz), and no longer on the client
   * port. `false`: not served at all (`yard.metrics()` still renders it).
   */
  metrics?: false | { token?: string, port?: number, host?: string }
}

/** `status` is 'unavailable' while the broker has lost its backing store (Redis): /healthz answers 503 then. */
export interface Health { status: 'ok' | 'unavailable', connections: number, namespaces: number }

/** A running signalyard server. */
export interface Yard {
  /** The WebSocket URL clients connect to, e.g. 'ws://127.0.0.1:3000/'. */
  readonly url: string
  /** The address the server listens on as the OS reports it, e.g. '0.0.0.0:3000' or '[::]:3000'. */
  readonly address: string
  /** The URL of the separate metrics server (the `metrics.port` option), else null. */
  readonly metricsUrl: string | null
  /** The port it listens on. */
  readonly port: number
  /** The HTTP server (its own or the one it was attached to). */
  readonly server: Server
  /** The limits in force. */
  readonly limits: Limits
  /** What GET /healthz answers. */
  health: () => Health
  /** What GET /metrics answers (Prometheus text): serve it from the app's own route when attached. */
  metrics: () => Promise<string>
  /**
   * Close every client socket with 1001 (a client that does not finish the close handshake within
   * CLOSE_GRACE ms is cut off), stop listening (own server only), release the broker it made.
   */
  close: () => Promise<void>
}

/** How long close() waits for clients to answer the 1001 close frame before cutting their sockets. */
const CLOSE_GRACE = 1000

/**
 * Start a signalyard server.
 *
 * @example
 * import { createServer } from 'signalyard/server'
 * const yard = await createServer({ port: 3000 })
 * console.log(yard.url)          // ws://127.0.0.1:3000/
 * await yard.close()
 *
 * @example
 * // attached to an app's own HTTP server, at a path
 * const yard = await createServer({ server: httpServer, path: '/yard' })
 */
export async function createServer (options: ServerOptions = {}): Promise<Yard> {
  const limits = resolveLimits(options.limits)
  const log = toLogger(options.logger)
  const budgets = makeBudgets(limits.total)
  const broker = options.broker ?? memoryBroker({ sweepInterval: limits.kv.sweepInterval, kvBudget: budgets.kv })
  try {
    await broker.ready?.()
  } catch (err) {
    if (options.broker === undefined) await broker.close()
    throw err
  }
  const metrics = new Metrics()
  const ctx: ServerContext = {
    broker, hub: new Hub(broker, metrics), limits, log, metrics, budgets, authorize: options.authorize, namespaces: new Map(),
    forget: (conn) => { connections.delete(conn) }
  }
  const path = normalisePath(options.path ?? '/')
  const connections = new Set<Connection>()
  /** Every accepted socket until it has fully closed (close() waits for them, then cuts the rest). */
  const sockets = new Set<WebSocket>()
  const hello = { v: 1, limits: { maxFrame: limits.maxFrame, maxValue: limits.kv.maxValue, maxMeta: limits.peers.maxMeta }, iceServers: options.iceServers ?? [] }
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: limits.maxFrame,
    perMessageDeflate: false,
    clientTracking: false,
    handleProtocols: (protocols) => protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false
  })

  // O(1): both counts are kept up to date as connections and streams come and go.
  const health = (): Health =>
    ({ status: available ? 'ok' : 'unavailable', connections: connections.size, namespaces: ctx.namespaces.size })

  const renderMetrics = async (): Promise<string> => {
    const { connections, namespaces } = health()
    const stats = await broker.stats()
    // The KV budget is the yard's: a broker that keeps it elsewhere (Redis) reports its use.
    const kv = stats.kvBytes === undefined ? budgets.kv : { name: budgets.kv.name, limit: budgets.kv.limit, used: stats.kvBytes }
    return metrics.render({ connections, namespaces, ...stats }, [budgets.backlog, budgets.relay, kv, budgets.pendingUpgrades])
  }

  const metricsOption = options.metrics ?? {}
  const metricsToken = metricsOption === false || metricsOption.token === undefined ? null : Buffer.from(`Bearer ${metricsOption.token}`)
  /** GET /healthz and GET /metrics; true when it answered. */
  const serveOps = (req: IncomingMessage, res: ServerResponse, withMetrics: boolean): boolean => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    if (req.method === 'GET' && url.pathname === '/healthz') {
      res.writeHead(available ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(health()))
      return true
    }
    if (!withMetrics || req.method !== 'GET' || url.pathname !== '/metrics') return false
    if (metricsToken !== null && !sameBytes(Buffer.from(req.headers.authorization ?? ''), metricsToken)) {
      res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer' }).end('unauthorized\n')
      return true
    }
    void renderMetrics().then(
      (text) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(text),
      (err: unknown) => {
        log('error', 'metrics failed', { error: String(err) })
        res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n')
      })
    return true
  }
  const metricsHere = metricsOption !== false && metricsOption.port === undefined
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    if (serveOps(req, res, metricsHere)) return
    const url = new URL(req.url ?? '/', 'http://localhost')
    const upgradeHere = url.pathname === path
    res.writeHead(upgradeHere ? 426 : 404, { 'content-type': 'text/plain' })
      .end(upgradeHere ? `signalyard: connect with a WebSocket speaking subprotocol ${SUBPROTOCOL}\n` : 'not found\n')
  }

  // Shared by every socket: nothing is allocated per connection for its bookkeeping.
  function forgetSocket (this: WebSocket): void {
    sockets.delete(this)
  }
  /**
   * TCP connections per IP address, half-open handshakes included: on the server's own HTTP
   * server they are counted when accepted (on an attached server, at the upgrade request), and
   * released when the TCP socket closes.
   */
  const perIp = new Map<string, number>()
  /**
   * Sockets not yet admitted, with their deadline (ms, monotonic): the handshake's
   * (limits.handshakeTimeout from the accept), then authenticate()'s (limits.authTimeout; `conn`
   * set, so the client is told why).
   */
  const pending = new Map<Duplex, { deadline: number, conn?: Connection }>()
  /** A counted socket closed: release its IP's count (one function for every socket). */
  function releaseSocket (this: Duplex & { remoteAddress?: string }): void {
    admitted(this)
    // net.Socket keeps the peer's address once read (countSocket read it): still there after close.
    const ip = this.remoteAddress ?? ''
    const n = (perIp.get(ip) ?? 1) - 1
    if (n <= 0) perIp.delete(ip)
    else perIp.set(ip, n)
  }
  /** Count a new socket against its IP and the pending-upgrades budget; false (refused, answered) if it does not fit. */
  const countSocket = (socket: Duplex, ip: string): boolean => {
    if ((perIp.get(ip) ?? 0) >= limits.maxConnectionsPerIp) {
      metrics.refused('too-many-connections')
      refuseUpgrade(socket, 429, `too-many-connections: at most ${limits.maxConnectionsPerIp} connections per IP address`)
      return false
    }
    if (!budgets.pendingUpgrades.take(1)) {
      metrics.refused('quota-exceeded')
      refuseUpgrade(socket, 503, 'quota-exceeded: too many connections are being set up; try again shortly')
      return false
    }
    pending.set(socket, { deadline: performance.now() + limits.handshakeTimeout })
    perIp.set(ip, (perIp.get(ip) ?? 0) + 1)
    socket.on('close', releaseSocket)
    return true
  }
  /** The socket finished its handshake and authentication (or closed): no longer pending. */
  const admitted = (socket: Duplex): void => {
    if (pending.delete(socket)) budgets.pendingUpgrades.give(1)
  }
  const onConnection = (socket: Duplex & { remoteAddress?: string }): void => {
    countSocket(socket, socket.remoteAddress ?? '')
  }
  // One sweep for every pending socket (no timer per socket): a handshake or an authenticate()
  // that takes longer than its bound is cut off.
  const handshakeSweep = setInterval(() => {
    const t = performance.now()
    for (const [socket, { deadline, conn }] of pending) {
      if (deadline > t) continue
      admitted(socket)
      metrics.refused('handshake-timeout')
      if (conn === undefined) socket.destroy()
      else conn.close(CloseCode.TryAgainLater, 'handshake-timeout: authentication took too long')
    }
  }, Math.min(1000, limits.handshakeTimeout, limits.authTimeout))
  handshakeSweep.unref()

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    if (normalisePath(url.pathname) !== path) {
      // Another upgrade listener on an attached server may want it; if we are alone, refuse.
      if (server.listenerCount('upgrade') <= 1) refuseUpgrade(socket, 404, 'not found')
      return
    }
    const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim())
    if (!offered.includes(SUBPROTOCOL)) return refuseUpgrade(socket, 400, `expected WebSocket subprotocol ${SUBPROTOCOL}`)
    if (!available) {
      metrics.refused('unavailable')
      return refuseUpgrade(socket, 503, 'unavailable: the server lost its broker; try again shortly')
    }
    // An attached server's sockets are counted here (the app's own HTTP traffic is not ours to count).
    if (socket.writableEnded || socket.destroyed) return // refused when it connected
    if (!owned && !countSocket(socket, req.socket.remoteAddress ?? '')) return
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (closing !== null) return ws.close(CloseCode.GoingAway, 'server-closing')
      sockets.add(ws)
      watchFragments(ws)
      ws.on('close', forgetSocket)
      const origin = req.headers.origin
      if (options.origins !== undefined && origin !== undefined && !options.origins.includes(origin)) {
        metrics.refused('forbidden')
        return ws.close(CloseCode.Forbidden, 'forbidden: origin not allowed')
      }
      // Frames that arrive while authenticate() runs wait in the connection's backlog.
      const conn = new Connection(nanoid(10), ws, ctx)
      connections.add(conn)
      const admit = (identity: unknown): void => {
        admitted(socket)
        conn.send(encodeHello(conn.id, hello))
        conn.admit(identity)
      }
      if (options.authenticate === undefined) return admit(null)
      const authenticate = options.authenticate
      if (pending.has(socket)) pending.set(socket, { deadline: performance.now() + limits.authTimeout, conn })
      const token = tokenOf(req)
      new Promise((resolve) => resolve(authenticate(req, token))).then(admit, (err: unknown) => {
        metrics.refused('unauthorized')
        // The app's message may quote the token: it stays in the server's log (token masked),
        // and the client gets the code alone.
        log('info', 'connection refused by authenticate', { conn: conn.id, error: redact(String(err), token) })
        conn.close(CloseCode.Unauthorized, 'unauthorized')
      })
    })
  }

  // A broker that lost its store (Redis) may have lost state these sockets rely on: close them
  // (clients reconnect and resync) and refuse new ones until it is back.
  let available = true
  const unwatch = broker.watch?.((up, reason) => {
    available = up
    log(up ? 'info' : 'warn', up ? 'broker available' : 'broker unavailable: closing connections', { reason })
    if (!up) for (const conn of connections) conn.close(CloseCode.ServiceRestart, 'broker-unavailable')
  })

  // Liveness: one timer for all connections; a silent socket is gone within 2 intervals.
  const heartbeat = setInterval(() => {
    for (const conn of connections) conn.heartbeat()
  }, limits.pingInterval)
  heartbeat.unref()

  const owned = options.server === undefined
  // Our own server bounds how long a request's headers may take (half-open handshakes), and checks
  // often enough for the bound to mean something (Node checks every 30 s by default).
  const server = options.server ?? createHttpServer({
    headersTimeout: limits.handshakeTimeout,
    requestTimeout: limits.handshakeTimeout,
    connectionsCheckingInterval: Math.min(1000, limits.handshakeTimeout)
  }, onRequest)
  server.on('upgrade', onUpgrade)
  if (owned) server.on('connection', onConnection)
  if (owned) {
    try {
      await listen(server, options.port ?? portFromEnv(), options.host)
    } catch (err) {
      clearInterval(heartbeat)
      clearInterval(handshakeSweep)
      unwatch?.()
      server.off('upgrade', onUpgrade)
      if (options.broker === undefined) await broker.close()
      throw err
    }
  }
  let metricsServer: Server | null = null
  if (metricsOption !== false && metricsOption.port !== undefined) {
    metricsServer = createHttpServer((req, res) => {
      if (!serveOps(req, res, true)) res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n')
    })
    try {
      await listen(metricsServer, metricsOption.port, metricsOption.host ?? '127.0.0.1')
    } catch (err) {
      clearInterval(heartbeat)
      clearInterval(handshakeSweep)
      unwatch?.()
      server.off('upgrade', onUpgrade)
      if (owned) await new Promise((resolve) => server.close(resolve))
      if (options.broker === undefined) await broker.close()
      throw err
    }
  }
  // Read at access time: an app may attach before its own server listens.
  const address = (): AddressInfo | null => {
    const a = server.address()
    return a !== null && typeof a === 'object' ? a : null
  }
  let closing: Promise<void> | null = null

  return {
    get url () { return `ws://${urlHost(owned ? options.host : address()?.address)}:${address()?.port ?? 0}${path}` },
    get port () { return address()?.port ?? 0 },
    get address () {
      const a = address()
      return a === null ? '' : `${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`
    },
    get metricsUrl () {
      const a = metricsServer?.address()
      return a !== null && a !== undefined && typeof a === 'object' ? `http://${urlHost(a.address)}:${a.port}/metrics` : null
    },
    server,
    limits,
    health,
    metrics: renderMetrics,
    close: () => closing ??= (async () => {
      clearInterval(heartbeat)
      clearInterval(handshakeSweep)
      unwatch?.()
      server.off('upgrade', onUpgrade)
      server.off('connection', onConnection)
      if (metricsServer !== null) {
        const m = metricsServer
        await new Promise((resolve) => { m.close(resolve); m.closeAllConnections() })
      }
      for (const conn of connections) conn.close(CloseCode.GoingAway, 'server-closing')
      const stopped = owned
        ? new Promise<void>((resolve) => {
          server.close(() => resolve())
          server.closeAllConnections()
        })
        : Promise.resolve()
      await closeSockets(sockets, CLOSE_GRACE)
      await stopped
      wss.close()
      if (options.broker === undefined) await broker.close()
    })()
  }
}

/** Wait for `sockets` to finish closing, up to `grace` ms; then terminate those still open. */
async function closeSockets (sockets: Set<WebSocket>, grace: number): Promise<void> {
  if (sockets.size === 0) return
  await new Promise<void>((resolve) => {
    const timer = setTimeout(done, grace)
    function done (): void {
      clearTimeout(timer)
      for (const ws of sockets) ws.off('close', check)
      resolve()
    }
    // Each socket's own 'close' listener (added at accept) has removed it from the set by now.
    function check (): void {
      if (sockets.size === 0) done()
    }
    for (const ws of sockets) ws.on('close', check)
    check()
  })
  for (const ws of sockets) ws.terminate()
}

function encodeHello (conn: string, hello: object): Uint8Array {
  return writeFrame(FrameType.Hello, 0, { ...hello, conn })
}

function normalisePath (path: string): string {
  const withSlash = path.startsWith('/') ? path : `/${path}`
  return withSlash.length > 1 && withSlash.endsWith('/') ? withSlash.slice(0, -1) : withSlash
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

/** Answer an HTTP status on a raw socket and close it (once; a socket answered already is left alone). */
function refuseUpgrade (socket: Duplex, status: number, message: string): void {
  if (socket.writableEnded || socket.destroyed) return
  // Detached from the HTTP server (upgrade) the socket has no error listener of its own; a client
  // resetting it now must not become an uncaught 'error'.
  socket.on('error', ignore)
  socket.end(`HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Bad Request'}\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(message)}\r\n\r\n${message}`)
}

/**
 * Fragments of one WebSocket message a client may send. ws bounds a fragmented message's bytes
 * (maxPayload = limits.maxFrame) but not its pieces, and each piece is a Buffer of its own (~100
 * bytes of bookkeeping for a 1-byte fragment): without a count, 1 MiB of 1-byte fragments holds
 * tens of MiB. No browser or ws client fragments a signalyard frame this finely.
 */
export const MAX_FRAGMENTS = 1024
/** The part of ws's Receiver (a Writable it feeds every chunk of the socket) the check uses. */
interface Receiver {
  _write: (chunk: Buffer, encoding: string, cb: (err?: Error | null) => void) => void
  _fragments?: unknown[]
  [key: symbol]: unknown
}
/** ws keeps the WebSocket on its Receiver under a symbol described 'websocket' (found once). */
let wsKey: symbol | undefined
/**
 * ws's Receiver `_write`, then the check: a message in more than MAX_FRAGMENTS pieces so far
 * closes the socket (1008). One function for every socket, set on its receiver: nothing is
 * allocated per connection. ws parses a chunk synchronously, so the count is current here.
 */
function guardedWrite (this: Receiver, chunk: Buffer, encoding: string, cb: (err?: Error | null) => void): void {
  ;(Object.getPrototypeOf(this) as Receiver)._write.call(this, chunk, encoding, cb)
  if ((this._fragments?.length ?? 0) <= MAX_FRAGMENTS) return
  wsKey ??= Object.getOwnPropertySymbols(this).find((k) => k.description === 'websocket')
  const ws = wsKey === undefined ? undefined : this[wsKey] as WebSocket | undefined
  this._fragments = []
  if (ws === undefined) return
  ws.close(CloseCode.Policy, 'too-many-fragments')
  ws.terminate()
}
/** Bound the fragments of each message on this socket (when ws's internals look as expected). */
function watchFragments (ws: WebSocket): void {
  const receiver = (ws as unknown as { _receiver?: Receiver })._receiver
  if (receiver === undefined || typeof receiver._write !== 'function' || !Array.isArray(receiver._fragments)) return
  receiver._write = guardedWrite
}


function ignore (): void {}

const STATUS_TEXT: Record<number, string> = { 404: 'Not Found', 429: 'Too Many Requests', 503: 'Service Unavailable' }

/** Equal bytes, compared in constant time for equal lengths (a metrics token). */
function sameBytes (a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b)
}

/** `text` with every occurrence of the token masked (an app's error message may quote it). */
function redact (text: string, token: string | null): string {
  return token === null || token.length < 4 ? text : text.split(token).join('[token]')
}

/** A port number from text: decimal digits only (Number() would take ' 80', '0x50', '8e1'); null if not one. */
export function parsePort (text: string): number | null {
  const port = /^[0-9]{1,5}$/.test(text) ? Number(text) : NaN
  return port >= 0 && port <= 65535 ? port : null
}

function portFromEnv (): number {
  const env = process.env.PORT
  if (env === undefined || env === '') return 3000
  const port = parsePort(env)
  if (port === null) throw new TypeError(`PORT must be a port number, got ${JSON.stringify(env)}`)
  return port
}

function listen (server: Server, port: number, host: string | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err)
    server.once('error', onError)
    server.listen(port, host, () => {
      server.off('error', onError)
      resolve()
    })
  })
}

function urlHost (host: string | undefined): string {
  if (host === undefined || host === '' || host === '0.0.0.0' || host === '::') return '127.0.0.1'
  return host.includes(':') ? `[${host}]` : host
}

/**
 * createServer: an HTTP server (its own, or one the app already has) that upgrades WebSocket
 * requests on `path` speaking subprotocol signalyard.2, answers GET /healthz, and hands each
 * socket to a Connection wired to the endpoints and the broker. One interval pings every
 * connection and cuts off those that did not answer the previous ping (liveness).
 *
 * This file wires the parts together and owns the yard's lifetime (listen, close); per-IP counts,
 * handshake deadlines and authentication live in gate.ts, the HTTP routes in http.ts.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http'
import type { Duplex } from 'node:stream'
import type { AddressInfo } from 'node:net'
import { WebSocketServer, type WebSocket } from 'ws'
import { nanoid } from 'nanoid'
import { writeFrame } from '../protocol/codec.js'
import { FrameType, SUBPROTOCOL, writeIce, type Endpoint } from '../protocol/frames.js'
import { memoryBroker } from './brokers/memory.js'
import type { Broker } from './brokers/types.js'
import { Connection } from './connection.js'
import { CloseCode, type ServerContext } from './context.js'
import { makeBudgets } from './budget.js'
import { Gate, refuseUpgrade } from './gate.js'
import { Hub } from './hub.js'
import { checkTurn, hostOf, Ice, IceRefresher, type IceServer, type TurnOptions } from './ice.js'
import { startStun } from './stun.js'
import { listen, listenMetrics, normalisePath, opsRoutes, portFromEnv, urlHost, yardRoutes } from './http.js'
import { Metrics } from './metrics.js'
import { resolveLimits, type Limits, type LimitsOption } from './limits.js'
import { toLogger, type LoggerOption } from './logger.js'
import { closeSockets, watchFragments } from './socket.js'
import { Compat, type CompatOptions } from './compat/index.js'
import type { CompatEndpoint } from './metrics.js'
import { kvOf, peersOf, Presence, publish, type PeerMeta, type YardKv } from './api.js'

export { parsePort } from './http.js'

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
  /** ICE servers handed to clients for WebRTC (createNode), before the yard's own STUN and TURN. */
  iceServers?: IceServer[]
  /**
   * TURN (coturn with `use-auth-secret`): every connection gets credentials for `urls`, minted from
   * `secret` and valid `ttl` seconds (default 86400), renewed at half their life (docs/TURN.md).
   */
  turn?: TurnOptions
  /** Host name clients are told to use for the yard's STUN (default: the Host they connected to). */
  publicHost?: string
  /**
   * Answer STUN Binding requests on this UDP port (3478 is the usual one; 0 picks a free port,
   * see `yard.stunPort`) and on `host` (default: the yard's `host`, else all interfaces), at most
   * `answersPerSecond` answers per second in all (default 2,000).
   */
  stun?: { port: number, host?: string, answersPerSecond?: number }
  /** Structured logs: a function (level, message, fields) or a console-like object. Silent by default. */
  logger?: LoggerOption
  /**
   * Who is connecting: called once per connection with the HTTP upgrade request and the client's
   * `token` option (null without one); return an identity (any value), or throw to refuse the
   * connection (close 4401 `unauthorized`; the client stops reconnecting).
   */
  authenticate?: (request: IncomingMessage, token: string | null) => unknown
  /** May this identity open a stream of `endpoint` in `namespace`? false → CLOSED `forbidden`. */
  authorize?: (identity: unknown, namespace: string, endpoint: Endpoint | CompatEndpoint) => boolean | Promise<boolean>
  /** Allowed values of the Origin header (browsers send it); others are closed with 4403 `forbidden`. */
  origins?: string[]
  /**
   * Other libraries' signalling protocols on this yard (SPEC §10): `yWebrtc` (y-webrtc clients,
   * default at `/y-webrtc`). `{ yWebrtc: false }` switches one off; `{ yWebrtc: { path } }` moves it.
   */
  compat?: CompatOptions
  /**
   * Where GET /metrics is served. By default on the client port, to anyone. `token`: only to
   * requests with `Authorization: Bearer <token>` (others get 401). `port` (and `host`, default
   * 127.0.0.1): on a separate HTTP server of its own (with /healthz), and no longer on the client
   * port. `false`: not served at all (`yard.metrics()` still renders it).
   */
  metrics?: false | { token?: string, port?: number, host?: string }
  /**
   * A presence member joined through this server: called once per member id (a reconnect within
   * `peers.grace` is not a new join), with `{ id, ...meta }`. Each server of a Redis yard reports
   * the joins made through its own connections. What it throws or rejects with is logged.
   */
  onJoin?: (namespace: string, member: PeerMeta) => void | Promise<void>
  /**
   * A member that joined through this server left: at once when it left or closed, `peers.grace`
   * after its socket went away (unless it came back meanwhile), and at the latest on yard.close().
   * `member` carries its latest meta. Exactly one per onJoin.
   */
  onLeave?: (namespace: string, member: PeerMeta) => void | Promise<void>
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
  /** The UDP port of its STUN responder; null when it has none. */
  readonly stunPort: number | null
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
   * Send `data` (JSON, a string or bytes) to every echo stream of `namespace` in the yard (every
   * server on the broker), as clients' `'data'` with `from` 'server'. Resolves once the broker took
   * it; rejects with `bad-request` (namespace, unencodable data) or `payload-too-large` (maxFrame).
   *
   * @example
   * await yard.publish('room-1', { type: 'notice', text: 'closing in 5 min' })
   */
  publish: (namespace: string, data: unknown) => Promise<void>
  /**
   * The KV store of `namespace`, the one clients replicate: `set` / `delete` reach every replica.
   * Throws `bad-request` for a bad namespace.
   *
   * @example
   * const kv = yard.kv<{ score: number }>('game-7')
   * await kv.set('alice', { score: 3 }, { ttl: 60_000 })
   * await kv.get('alice')   // { score: 3 }
   */
  kv: <V = unknown>(namespace: string) => YardKv<V>
  /**
   * The presence members of `namespace` in the whole yard, `[{ id, ...meta }]` (a member whose
   * socket just went away stays listed for `peers.grace`, as clients see it).
   *
   * @example
   * const online = await yard.peers('lobby')   // [{ id: 'alice', name: 'Alice' }, …]
   */
  peers: (namespace: string) => Promise<PeerMeta[]>
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
  if (options.turn !== undefined) checkTurn(options.turn)
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
  const stun = options.stun === undefined
    ? null
    : await startStun({ port: options.stun.port, host: options.stun.host ?? options.host, answersPerSecond: options.stun.answersPerSecond, onAnswered: () => metrics.stunAnswered++, onDropped: () => metrics.stunDropped++ })
      .catch(async (err: unknown) => {
        if (options.broker === undefined) await broker.close()
        throw err
      })
  // The join/leave hooks watch the claims the endpoints make (api.ts): only when asked for.
  const presence = options.onJoin === undefined && options.onLeave === undefined
    ? null
    : new Presence({ onJoin: options.onJoin, onLeave: options.onLeave }, log)
  const ctx: ServerContext = {
    broker: presence?.wrap(broker) ?? broker, hub: new Hub(broker, metrics), limits, log, metrics, budgets, authorize: options.authorize, namespaces: new Map(),
    forget: (conn) => {
      connections.delete(conn)
      refresher?.forget(conn)
    }
  }
  const path = normalisePath(options.path ?? '/')
  const connections = new Set<Connection>()
  const compat = new Compat(ctx, options.compat, path)
  /** Every accepted socket until it has fully closed (close() waits for them, then cuts the rest). */
  const sockets = new Set<WebSocket>()
  const hello = {
    v: 1,
    limits: {
      maxFrame: limits.maxFrame,
      maxValue: limits.kv.maxValue,
      maxMeta: limits.peers.maxMeta,
      messagesPerSecond: limits.messagesPerSecond,
      messageBurst: limits.messageBurst
    }
  }
  const ice = new Ice({ iceServers: options.iceServers, stunPort: stun?.port, publicHost: options.publicHost, turn: options.turn }, () => metrics.minted())
  const refresher = ice.refreshes ? new IceRefresher<Connection>(ice, writeIce) : null
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: limits.maxFrame,
    perMessageDeflate: false,
    clientTracking: false,
    handleProtocols: (protocols) => protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false
  })

  // O(1): both counts are kept up to date as connections and streams come and go.
  const health = (): Health =>
    ({ status: available ? 'ok' : 'unavailable', connections: connections.size + compat.size, namespaces: ctx.namespaces.size })

  const renderMetrics = async (): Promise<string> => {
    const { connections, namespaces } = health()
    const stats = await broker.stats()
    // The KV budget is the yard's: a broker that keeps it elsewhere (Redis) reports its use.
    const kv = stats.kvBytes === undefined ? budgets.kv : { name: budgets.kv.name, limit: budgets.kv.limit, used: stats.kvBytes }
    return metrics.render({ connections, namespaces, ...stats }, [budgets.backlog, budgets.relay, kv, budgets.pendingUpgrades])
  }

  const metricsOption = options.metrics ?? {}
  const serveOps = opsRoutes({ health, metrics: renderMetrics, log, metricsToken: metricsOption === false ? null : metricsOption.token ?? null })
  const metricsHere = metricsOption !== false && metricsOption.port === undefined

  // Shared by every socket: nothing is allocated per connection for its bookkeeping.
  function forgetSocket (this: WebSocket): void {
    sockets.delete(this)
  }
  const gate = new Gate(ctx)
  const onConnection = (socket: Duplex & { remoteAddress?: string }): void => {
    gate.count(socket, socket.remoteAddress ?? '')
  }

  /** The checks every accepted WebSocket gets (closing, Origin), and its tracking; false when it was closed. */
  const accepted = (ws: WebSocket, req: IncomingMessage): boolean => {
    if (closing !== null) {
      ws.close(CloseCode.GoingAway, 'server-closing')
      return false
    }
    sockets.add(ws)
    ws.on('close', forgetSocket)
    const origin = req.headers.origin
    if (options.origins !== undefined && origin !== undefined && !options.origins.includes(origin)) {
      metrics.refused('forbidden')
      ws.close(CloseCode.Forbidden, 'forbidden: origin not allowed')
      return false
    }
    return true
  }

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    if (compat.handles(url.pathname)) {
      if (!available) {
        metrics.refused('unavailable')
        return refuseUpgrade(socket, 503, 'unavailable: the server lost its broker; try again shortly')
      }
      if (socket.writableEnded || socket.destroyed) return
      if (!owned && !gate.count(socket, req.socket.remoteAddress ?? '')) return
      return compat.upgrade(req, socket, head, gate, options, (ws) => accepted(ws, req))
    }
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
    if (!owned && !gate.count(socket, req.socket.remoteAddress ?? '')) return
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (!accepted(ws, req)) return
      watchFragments(ws)
      // Frames that arrive while authenticate() runs wait in the connection's backlog.
      const conn = new Connection(nanoid(10), ws, ctx)
      connections.add(conn)
      gate.admit(conn, socket, req, options.authenticate, (identity) => {
        const host = hostOf(req.headers.host)
        conn.send(writeFrame(FrameType.Hello, 0, { ...hello, iceServers: ice.for(host, identity, conn.id), conn: conn.id }))
        refresher?.add(conn, host, identity)
      })
    })
  }

  // A broker that lost its store (Redis) may have lost state these sockets rely on: close them
  // (clients reconnect and resync) and refuse new ones until it is back.
  let available = true
  const unwatch = broker.watch?.((up, reason) => {
    available = up
    log(up ? 'info' : 'warn', up ? 'broker available' : 'broker unavailable: closing connections', { reason })
    if (!up) {
      for (const conn of connections) conn.close(CloseCode.ServiceRestart, 'broker-unavailable')
      compat.closeAll(CloseCode.ServiceRestart, 'broker-unavailable')
    }
  })

  // Liveness: one timer for all connections; a silent socket is gone within 2 intervals.
  const heartbeat = setInterval(() => {
    for (const conn of connections) conn.heartbeat()
    compat.heartbeat()
  }, limits.pingInterval)
  heartbeat.unref()

  const owned = options.server === undefined
  // Our own server bounds how long a request's headers may take (half-open handshakes), and checks
  // often enough for the bound to mean something (Node checks every 30 s by default).
  const server = options.server ?? createHttpServer({
    headersTimeout: limits.handshakeTimeout,
    requestTimeout: limits.handshakeTimeout,
    connectionsCheckingInterval: Math.min(1000, limits.handshakeTimeout)
  }, yardRoutes(serveOps, metricsHere, path, (req, res) => compat.http(req, res)))
  server.on('upgrade', onUpgrade)
  if (owned) server.on('connection', onConnection)
  /** Stop the timers and listeners started above (on close, or when listening failed). */
  const stop = (): void => {
    clearInterval(heartbeat)
    refresher?.close()
    void stun?.close()
    gate.close()
    unwatch?.()
    server.off('upgrade', onUpgrade)
  }
  if (owned) {
    try {
      await listen(server, options.port ?? portFromEnv(), options.host)
    } catch (err) {
      stop()
      if (options.broker === undefined) await broker.close()
      throw err
    }
  }
  let metricsServer: Server | null = null
  if (metricsOption !== false && metricsOption.port !== undefined) {
    try {
      metricsServer = await listenMetrics(serveOps, metricsOption.port, metricsOption.host ?? '127.0.0.1')
    } catch (err) {
      stop()
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
    get stunPort () { return stun?.port ?? null },
    get metricsUrl () {
      const a = metricsServer?.address()
      return a !== null && a !== undefined && typeof a === 'object' ? `http://${urlHost(a.address)}:${a.port}/metrics` : null
    },
    server,
    limits,
    health,
    metrics: renderMetrics,
    publish: (namespace, data) => publish(ctx, namespace, data),
    kv: (namespace) => kvOf(ctx, namespace),
    peers: (namespace) => peersOf(ctx, namespace),
    close: () => closing ??= (async () => {
      stop()
      server.off('connection', onConnection)
      if (metricsServer !== null) {
        const m = metricsServer
        await new Promise((resolve) => { m.close(resolve); m.closeAllConnections() })
      }
      for (const conn of connections) conn.close(CloseCode.GoingAway, 'server-closing')
      compat.closeAll(CloseCode.GoingAway, 'server-closing')
      const stopped = owned
        ? new Promise<void>((resolve) => {
          server.close(() => resolve())
          server.closeAllConnections()
        })
        : Promise.resolve()
      await closeSockets(sockets, CLOSE_GRACE)
      await stopped
      await stun?.close()
      wss.close()
      presence?.close()
      if (options.broker === undefined) await broker.close()
    })()
  }
}


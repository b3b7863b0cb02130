/**
 * The compat endpoints (SPEC §10): other libraries' signalling protocols on the same yard, so
 * their unmodified clients can use it — y-webrtc (y-webrtc.ts) and PeerJS (peerjs.ts). Each has its own path on
 * the yard's HTTP server; its WebSockets go through the same gate as the native ones (connections
 * per IP, pending handshakes, `authenticate` with the token from a `token` query parameter, the
 * Origin check) and are bounded by the same limits; they are counted under their own endpoint in
 * `/metrics`, pinged on the same heartbeat and closed with the yard.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { randomUUID } from 'node:crypto'
import { nanoid } from 'nanoid'
import { WebSocketServer, type WebSocket } from 'ws'
import type { ServerContext } from '../context.js'
import { refuseUpgrade, type Gate } from '../gate.js'
import { normalisePath } from '../http.js'
import type { ServerOptions } from '../server.js'
import { watchFragments } from '../socket.js'
import { PeerjsConnection } from './peerjs.js'
import { YWebrtcConnection } from './y-webrtc.js'

/** The `compat` server option: each endpoint's path, or false to switch it off. */
export interface CompatOptions {
  /** y-webrtc's signalling protocol (default on, at `/y-webrtc`). */
  yWebrtc?: { path?: string } | false
  /**
   * PeerJS's (default on, at `/peerjs`: clients use `path: '/peerjs'`). `key`: the PeerJS key
   * clients must give (default 'peerjs', as peerjs-server's); `discovery`: answer
   * `GET {path}/{key}/peers` (off by default, as peerjs-server's `allow_discovery`).
   */
  peerjs?: { path?: string, key?: string, discovery?: boolean } | false
}

/** What `GET {peerjs path}/` answers (peerjs-server answers its app description there). */
const PEERJS_INFO = JSON.stringify({
  name: 'signalyard',
  description: 'A signalyard server speaking the PeerJS signalling protocol (see signalyard\'s README).',
  website: 'https://github.com/signalyard/signalyard'
})

/** The compat endpoints of one yard. */
export class Compat {
  private readonly yWebrtc: string | null
  /** The PeerJS HTTP path, its WebSocket path (`{path}/peerjs`), its key and whether discovery is on. */
  private readonly peerjs: { path: string, ws: string, key: string, discovery: boolean } | null
  private readonly connections = new Set<YWebrtcConnection | PeerjsConnection>()
  private readonly wss: WebSocketServer

  constructor (private readonly ctx: ServerContext, options: CompatOptions = {}, nativePath: string) {
    const y = options.yWebrtc
    this.yWebrtc = y === false ? null : normalisePath(y?.path ?? '/y-webrtc')
    if (this.yWebrtc === nativePath) throw new TypeError(`compat.yWebrtc.path ${this.yWebrtc} is the yard's own path`)
    const p = options.peerjs
    if (p === false) {
      this.peerjs = null
    } else {
      const path = normalisePath(p?.path ?? '/peerjs')
      const ws = normalisePath(`${path === '/' ? '' : path}/peerjs`)
      if (ws === nativePath || ws === this.yWebrtc) throw new TypeError(`compat.peerjs's WebSocket path ${ws} is taken`)
      this.peerjs = { path, ws, key: p?.key ?? 'peerjs', discovery: p?.discovery === true }
    }
    // A y-webrtc frame is one signalling message: bounded like a native signal message.
    this.wss = new WebSocketServer({ noServer: true, maxPayload: ctx.limits.peers.maxSignal, perMessageDeflate: false, clientTracking: false })
  }

  /** Open compat connections. */
  get size (): number { return this.connections.size }

  /** Whether `pathname` is one of the compat endpoints. */
  handles (pathname: string): boolean {
    const path = normalisePath(pathname)
    return path === this.yWebrtc || path === this.peerjs?.ws
  }

  /** Plain HTTP on a compat path, answered as the reference server does (y-webrtc: 200 `okay`); false elsewhere. */
  http (req: IncomingMessage, res: ServerResponse): boolean {
    const url = new URL(req.url ?? '/', 'http://localhost')
    const path = normalisePath(url.pathname)
    if (path === this.yWebrtc) {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('okay')
      return true
    }
    return this.peerjs !== null && this.peerjsHttp(req, res, path)
  }

  /**
   * peerjs-server's HTTP routes, with its CORS header (PeerJS pages are often served elsewhere):
   * `GET {path}/` the server's description, `GET {path}/{key}/id` a fresh random id, `GET
   * {path}/{key}/peers` the ids held through this process when discovery is on (401 when off).
   */
  private peerjsHttp (req: IncomingMessage, res: ServerResponse, path: string): boolean {
    const { path: base, key, discovery } = this.peerjs as NonNullable<Compat['peerjs']>
    const prefix = base === '/' ? '' : base
    const cors = { 'access-control-allow-origin': '*' }
    const route = path === base ? 'info' : path === `${prefix}/${key}/id` ? 'id' : path === `${prefix}/${key}/peers` ? 'peers' : null
    if (route === null) return false
    if (req.method !== 'GET') {
      res.writeHead(405, { ...cors, allow: 'GET', 'content-type': 'text/plain' }).end('method not allowed\n')
      return true
    }
    if (route === 'info') res.writeHead(200, { ...cors, 'content-type': 'application/json' }).end(PEERJS_INFO)
    else if (route === 'id') res.writeHead(200, { ...cors, 'content-type': 'text/html; charset=utf-8' }).end(randomUUID())
    else if (!discovery) res.writeHead(401, { ...cors, 'content-type': 'text/plain' }).end('Unauthorized')
    else {
      const ids = [...this.connections].flatMap((c) => c instanceof PeerjsConnection && c.peerId !== null ? [c.peerId] : [])
      res.writeHead(200, { ...cors, 'content-type': 'application/json' }).end(JSON.stringify(ids))
    }
    return true
  }

  /**
   * A WebSocket upgrade on a compat path, already counted by the gate. `accept` lets the server
   * apply its own checks (closing, Origin) to the socket and track it.
   */
  upgrade (req: IncomingMessage, socket: Duplex, head: Buffer, gate: Gate, options: ServerOptions, accept: (ws: WebSocket) => boolean): void {
    const authenticate = options.authenticate
    if (authenticate === undefined) return this.accepted(req, socket, head, gate, accept, null)
    // authenticate() runs before the upgrade here: a refusal is HTTP 401, which these clients back
    // off from. (y-webrtc's client reconnects at once, ~70 times a second, after a socket that
    // opened and was closed 4401.) The gate's handshake deadline bounds a slow authenticate.
    const token = new URL(req.url ?? '/', 'http://localhost').searchParams.get('token')
    new Promise((resolve) => resolve(authenticate(req, token))).then(
      (identity) => { if (!socket.destroyed) this.accepted(req, socket, head, gate, accept, { identity }) },
      (err: unknown) => {
        this.ctx.metrics.refused('unauthorized')
        this.ctx.log('info', 'connection refused by authenticate', { path: new URL(req.url ?? '/', 'http://localhost').pathname, error: token === null ? String(err) : String(err).split(token).join('***') })
        refuseUpgrade(socket, 401, 'unauthorized')
      })
  }

  /** Upgrade and start the connection; `authenticated`: the identity authenticate() gave (null: none is asked). */
  private accepted (req: IncomingMessage, socket: Duplex, head: Buffer, gate: Gate, accept: (ws: WebSocket) => boolean, authenticated: { identity: unknown } | null): void {
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      if (!accept(ws)) return
      watchFragments(ws)
      const url = new URL(req.url ?? '/', 'http://localhost')
      const query = url.searchParams
      const gone = (c: YWebrtcConnection | PeerjsConnection): void => { this.connections.delete(c) }
      const conn = normalisePath(url.pathname) === this.yWebrtc
        ? new YWebrtcConnection(nanoid(10), ws, this.ctx, gone)
        : new PeerjsConnection(nanoid(10), ws, this.ctx, { key: query.get('key'), id: query.get('id'), token: query.get('token') }, new Set([this.peerjs?.key ?? 'peerjs']), gone)
      this.connections.add(conn)
      gate.admit(conn, socket, req, authenticated === null ? undefined : () => authenticated.identity, () => {})
    })
  }

  /** One liveness tick for every compat connection. */
  heartbeat (): void {
    for (const conn of this.connections) conn.heartbeat()
  }

  /** Close every compat connection (the yard is closing, or lost its broker). */
  closeAll (code: number, reason: string): void {
    for (const conn of this.connections) conn.close(code, reason)
  }
}

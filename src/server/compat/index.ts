/**
 * The compat endpoints (SPEC §10): other libraries' signalling protocols on the same yard, so
 * their unmodified clients can use it — y-webrtc today (y-webrtc.ts). Each has its own path on
 * the yard's HTTP server; its WebSockets go through the same gate as the native ones (connections
 * per IP, pending handshakes, `authenticate` with the token from a `token` query parameter, the
 * Origin check) and are bounded by the same limits; they are counted under their own endpoint in
 * `/metrics`, pinged on the same heartbeat and closed with the yard.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { nanoid } from 'nanoid'
import { WebSocketServer, type WebSocket } from 'ws'
import type { ServerContext } from '../context.js'
import type { Gate } from '../gate.js'
import { normalisePath } from '../http.js'
import type { ServerOptions } from '../server.js'
import { watchFragments } from '../socket.js'
import { YWebrtcConnection } from './y-webrtc.js'

/** The `compat` server option: each endpoint's path, or false to switch it off. */
export interface CompatOptions {
  /** y-webrtc's signalling protocol (default on, at `/y-webrtc`). */
  yWebrtc?: { path?: string } | false
}

/** The compat endpoints of one yard. */
export class Compat {
  private readonly yWebrtc: string | null
  private readonly connections = new Set<YWebrtcConnection>()
  private readonly wss: WebSocketServer

  constructor (private readonly ctx: ServerContext, options: CompatOptions = {}, nativePath: string) {
    const y = options.yWebrtc
    this.yWebrtc = y === false ? null : normalisePath(y?.path ?? '/y-webrtc')
    if (this.yWebrtc === nativePath) throw new TypeError(`compat.yWebrtc.path ${this.yWebrtc} is the yard's own path`)
    // A y-webrtc frame is one signalling message: bounded like a native signal message.
    this.wss = new WebSocketServer({ noServer: true, maxPayload: ctx.limits.peers.maxSignal, perMessageDeflate: false, clientTracking: false })
  }

  /** Open compat connections. */
  get size (): number { return this.connections.size }

  /** Whether `pathname` is one of the compat endpoints. */
  handles (pathname: string): boolean {
    return this.yWebrtc !== null && normalisePath(pathname) === this.yWebrtc
  }

  /** Plain HTTP on a compat path, answered as the reference server does (y-webrtc: 200 `okay`); false elsewhere. */
  http (req: IncomingMessage, res: ServerResponse): boolean {
    const url = new URL(req.url ?? '/', 'http://localhost')
    if (!this.handles(url.pathname)) return false
    res.writeHead(200, { 'content-type': 'text/plain' }).end('okay')
    return true
  }

  /**
   * A WebSocket upgrade on a compat path, already counted by the gate. `accept` lets the server
   * apply its own checks (closing, Origin) to the socket and track it.
   */
  upgrade (req: IncomingMessage, socket: Duplex, head: Buffer, gate: Gate, options: ServerOptions, accept: (ws: WebSocket) => boolean): void {
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      if (!accept(ws)) return
      watchFragments(ws)
      const conn = new YWebrtcConnection(nanoid(10), ws, this.ctx, (c) => this.connections.delete(c))
      this.connections.add(conn)
      const token = new URL(req.url ?? '/', 'http://localhost').searchParams.get('token')
      gate.admit(conn, socket, req, options.authenticate, () => {}, token)
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

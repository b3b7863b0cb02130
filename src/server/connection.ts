/**
 * One client WebSocket on the server: parses every frame into a typed union, dispatches it through
 * a table keyed by frame type, and keeps the connection's streams. Frames are handled in order;
 * when a handler answers with a Promise (a broker round trip), later frames wait in a bounded
 * backlog. A bad frame is answered with a coded ERROR frame and the connection goes on serving;
 * only repeated abuse closes it (1008, abuse.ts). Nothing a client sends can throw out of here.
 *
 * The rest of a connection lives next door: how fast bytes go each way (flow.ts, which Connection
 * extends), the socket's listeners (socket.ts), opening a stream (open.ts).
 */
import type { WebSocket } from 'ws'
import { frameId, writeFrame } from '../protocol/codec.js'
import { SignalyardError, type ErrorCode } from '../protocol/errors.js'
import {
  FrameType, REQUEST_OPS, isFrameError, parseClientFrame,
  type AnyRequest, type ClientFrame, type CloseFrame, type DataFrame, type Endpoint, type FrameError
} from '../protocol/frames.js'
import { ABUSIVE_OPENS, countBad } from './abuse.js'
import { Backlog } from './backlog.js'
import { CloseCode, type ServerContext, type ServerStream, type StreamEnd } from './context.js'
import { Flow } from './flow.js'
import type { Subscriber } from './hub.js'
import { open } from './open.js'
import { attach, byteLength, toBytes, type SocketOwner } from './socket.js'

/**
 * One client connection. It is kept lean because an idle server holds thousands: the socket's
 * listeners and the dispatch table are shared by every connection (they find theirs through the
 * socket), the backlog exists only while a frame waits, and namespaces are counted from the streams.
 */
export class Connection extends Flow implements Subscriber, SocketOwner {
  readonly streams = new Map<number, ServerStream>()
  /** Frames waiting (made only while a frame waits: idle connections are many). */
  private backlog: Backlog | null = null
  /** Waiting for authenticate() or for an OPEN's answer: frames wait in the backlog. */
  private blocked = true
  /** DATA and REQUEST frames whose broker call has not settled (Redis: a round trip each). */
  private inFlight = 0

  constructor (id: string, ws: WebSocket, ctx: ServerContext) {
    super(id, ws, ctx)
    attach(ws, this)
  }

  /** The public id of stream `sid` of this connection, as clients see it (`<conn>.<sid>`). */
  streamId (sid: number): string {
    return `${this.id}.${sid}`
  }

  /** A WebSocket message (through the shared listener). */
  message (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void {
    this.touch()
    if (!this.take()) {
      this.ctx.metrics.received('connection', byteLength(data))
      this.ctx.metrics.refused('rate-limited')
      const message = `at most ${this.ctx.limits.messagesPerSecond} frames per second; this one was dropped`
      // A relay stream is reliable: one that lost a frame ends, on both sides, rather than carry on with a gap.
      const bytes = isBinary ? toBytes(data) : null
      const sid = bytes !== null && bytes[0] === FrameType.Data ? frameId(bytes) : 0
      const stream = sid === 0 ? undefined : this.streams.get(sid)
      if (stream?.abort !== undefined) stream.abort(new SignalyardError('rate-limited', message))
      else this.error(0, 'rate-limited', message)
      return countBad(this)
    }
    if (!isBinary) return this.reject({ error: 'bad-frame', message: 'text frames are not part of signalyard.2', sid: 0 })
    this.receive(toBytes(data))
  }

  /** Frames wait in the backlog: see `blocked` and `inFlight`. */
  private get busy (): boolean {
    return this.blocked || this.inFlight >= MAX_IN_FLIGHT
  }

  /** What authenticate() returned for this connection (null without authenticate). */
  get identity (): unknown { return identities.get(this) ?? null }

  /** authenticate() accepted the connection: serve the frames that waited. */
  admit (identity: unknown): void {
    if (identity !== null && identity !== undefined) identities.set(this, identity)
    this.unblock()
  }

  private unblock (): void {
    this.blocked = false
    this.drain()
  }

  private drain (): void {
    while (!this.busy && this.backlog !== null && this.backlog.size > 0 && !this.closed) {
      this.handle(this.backlog.shift() as Uint8Array)
    }
    if (this.backlog?.size === 0) this.backlog = null
  }

  /**
   * The last-resort guard: something threw out of a socket callback. That is a bug in the server,
   * never the client's doing: it is logged, the client gets ERROR `internal-error`, and the
   * connection (and the process) goes on serving.
   */
  internalError (where: string, err: unknown): void {
    this.ctx.metrics.refused('internal-error')
    this.ctx.log('error', 'internal error in a socket callback', { conn: this.id, where, error: err instanceof Error ? err.stack ?? err.message : String(err) })
    try {
      this.error(0, 'internal-error', 'the server failed while handling a frame')
    } catch {
      // the socket cannot take it either: the close that follows tears the connection down
    }
  }

  /** A socket error (the close that follows tears the connection down). */
  socketError (err: Error): void {
    this.ctx.log('warn', 'socket error', { conn: this.id, error: err.message })
  }

  /** Tell the client its stream is open. */
  opened (sid: number, meta: object): void {
    this.send(writeFrame(FrameType.Opened, sid, meta))
  }

  /** Answer a request. */
  reply (sid: number, meta: { req: number } & Record<string, unknown>): void {
    this.send(writeFrame(FrameType.Reply, sid, meta))
  }

  /**
   * A coded, non-fatal error about a stream (sid) or the connection (sid 0); `fields` adds meta
   * such as the `req` it answers or the `to` of a directed message.
   */
  error (sid: number, code: ErrorCode, message: string, fields: { req?: number, [field: string]: unknown } = {}): void {
    // JSON drops a `req: undefined`.
    this.send(writeFrame(FrameType.Error, sid, { ...fields, code, message }))
  }

  /**
   * Refuse OPEN `sid`: CLOSED with `code` (the stream never opened), counted in the metrics. Only
   * a refusal the client could have known to avoid counts against it (ABUSIVE_OPENS); a relay
   * partner that closed meanwhile, an id taken or a full budget is nobody's abuse.
   */
  refuse (sid: number, code: ErrorCode, message: string): void {
    this.ctx.metrics.refused(code)
    if (ABUSIVE_OPENS.has(code)) countBad(this)
    this.sendClosed(sid, { code, message })
  }

  /** The server ends a stream: CLOSED, with the reason when it is an error. */
  endStream (sid: number, reason?: SignalyardError): void {
    const stream = this.streams.get(sid)
    if (stream !== undefined) this.forget(sid, stream, 'closed')
    this.sendClosed(sid, reason === undefined ? {} : { code: reason.code, message: reason.message })
  }

  /** The one place CLOSED frames are written. */
  private sendClosed (sid: number, reason: { code?: ErrorCode, message?: string }): void {
    this.send(writeFrame(FrameType.Closed, sid, reason))
  }

  /**
   * A frame arrived: handled now, or kept in the backlog while the connection is busy. A client
   * that fills its backlog (limits.maxBacklog) is not following the protocol: 1008 `backlog-full`;
   * when every backlog together fills the server's budget, the connection that cannot add is
   * closed with 1013 `quota-exceeded` (try again later).
   */
  private receive (bytes: Uint8Array): void {
    if (this.closed) return
    if (!this.busy) return this.handle(bytes)
    const refused = (this.backlog ??= new Backlog(this.ctx.budgets.backlog)).push(bytes, this.ctx.limits.maxBacklog)
    if (refused === null) return
    this.ctx.metrics.refused(refused)
    if (refused === 'backlog-full') return this.shut(CloseCode.Policy, 'backlog-full')
    this.ctx.log('warn', 'server-wide backlog budget full: connection closed', { conn: this.id })
    this.shut(CloseCode.TryAgainLater, 'quota-exceeded')
  }

  /** Close the socket and read nothing more from it (what waited is dropped and its bytes given back). */
  private shut (code: number, reason: string): void {
    this.dropBacklog()
    this.closed = true
    this.close(code, reason)
  }

  private dropBacklog (): void {
    this.backlog?.drop()
    this.backlog = null
  }

  private handle (bytes: Uint8Array): void {
    const frame = parseClientFrame(bytes)
    if (isFrameError(frame)) {
      this.ctx.metrics.received('connection', bytes.length)
      return this.reject(frame)
    }
    this.ctx.metrics.received(frame.type === 'open' ? frame.ep : this.streams.get(frame.sid)?.ep ?? 'connection', bytes.length)
    let result: void | Promise<void>
    try {
      result = (dispatch[frame.type] as (conn: Connection, frame: ClientFrame) => void | Promise<void>)(this, frame)
    } catch (err) {
      return this.failed(frame, err)
    }
    if (!(result instanceof Promise)) return
    if (frame.type === 'open') {
      // Later frames may be for this stream: they wait until it is registered.
      this.blocked = true
      result.catch((err) => this.failed(frame, err)).finally(() => this.unblock())
      return
    }
    // A DATA or REQUEST frame has made its broker call already (in order: the broker keeps it);
    // the frames after it need not wait for the answer, up to MAX_IN_FLIGHT of them.
    this.inFlight++
    result.catch((err) => this.failed(frame, err)).finally(() => {
      if (this.inFlight-- === MAX_IN_FLIGHT && !this.blocked) this.drain()
    })
  }

  closeStream (frame: CloseFrame): void {
    const stream = this.streams.get(frame.sid)
    if (stream !== undefined) this.forget(frame.sid, stream, 'closed')
  }

  data (frame: DataFrame): void | Promise<void> {
    const stream = this.streams.get(frame.sid)
    if (stream === undefined) {
      // In flight when the server ended the stream: expected, not abuse.
      if (this.relayEndedLately(frame.sid)) return
      return this.reject({ error: 'unknown-stream', message: `stream ${frame.sid} is not open`, sid: frame.sid })
    }
    if (stream.data === undefined) return this.reject({ error: 'bad-request', message: 'this endpoint takes no DATA frames', sid: frame.sid })
    return stream.data(frame)
  }

  request (frame: AnyRequest): void | Promise<void> {
    const stream = this.streams.get(frame.sid)
    if (stream === undefined) return this.reject({ error: 'unknown-stream', message: `stream ${frame.sid} is not open`, sid: frame.sid, req: frame.req })
    const ep = stream.ep
    if (stream.request === undefined || ep === undefined || !REQUEST_OPS[ep].includes(frame.op)) {
      const message = `${ep ?? 'this'} streams take no ${JSON.stringify(frame.op)} requests`
      return this.reject({ error: 'bad-request', message, sid: frame.sid, req: frame.req })
    }
    return stream.request(frame)
  }

  /** An endpoint opened stream `sid`: its frames go to it from now on (a socket closed meanwhile: it ends as `gone`). */
  register (ep: Endpoint, sid: number, stream: ServerStream): void {
    if (this.closed) return stream.close('gone')
    stream.ep = ep
    this.streams.set(sid, stream)
    const namespaces = this.ctx.namespaces
    namespaces.set(stream.ns, (namespaces.get(stream.ns) ?? 0) + 1)
  }

  private forget (sid: number, stream: ServerStream, end: StreamEnd): void {
    this.streams.delete(sid)
    const namespaces = this.ctx.namespaces
    const n = (namespaces.get(stream.ns) ?? 1) - 1
    if (n <= 0) namespaces.delete(stream.ns)
    else namespaces.set(stream.ns, n)
    try {
      stream.close(end)
    } catch (err) {
      this.ctx.log('error', 'stream failed to close', { conn: this.id, error: String(err) })
    }
  }

  /** A handler threw: coded errors go back to the client, anything else is logged as internal. */
  private failed (frame: ClientFrame, err: unknown): void {
    const req = frame.type === 'request' ? frame.req : undefined
    this.ctx.metrics.refused(err instanceof SignalyardError ? err.code : 'internal-error')
    if (err instanceof SignalyardError) return this.error(frame.sid, err.code, err.message, { req })
    this.ctx.log('error', 'handler failed', { conn: this.id, frame: frame.type, error: String(err) })
    this.error(frame.sid, 'internal-error', 'the server failed while handling the frame', { req })
  }

  /** A frame the client should not have sent: a coded answer (CLOSED for an OPEN, else ERROR), counted as bad. */
  reject (e: FrameError): void {
    this.ctx.metrics.refused(e.error)
    if (e.open === true) this.sendClosed(e.sid, { code: e.error, message: e.message })
    else this.error(e.sid, e.error, e.message, { req: e.req })
    countBad(this)
  }

  /** The socket closed: end every stream (as `gone`) and leave the server's table. */
  teardown (): void {
    // Safe to run twice (a second run finds nothing left), so no flag is kept for it.
    this.dropBacklog()
    this.closed = true
    for (const [sid, stream] of this.streams) this.forget(sid, stream, 'gone')
    this.ctx.forget(this)
  }
}

/** Identities from authenticate(), kept aside: most servers have none, and idle connections are many. */
const identities = new WeakMap<Connection, unknown>()

/** DATA / REQUEST frames of one connection waiting on the broker before the rest wait in the backlog. */
const MAX_IN_FLIGHT = 256

/** The dispatch table, keyed by parsed frame type, shared by every connection. */
const dispatch: { [T in ClientFrame['type']]: (conn: Connection, frame: Extract<ClientFrame, { type: T }>) => void | Promise<void> } = {
  open: (conn, frame) => open(conn, frame),
  close: (conn, frame) => conn.closeStream(frame),
  data: (conn, frame) => conn.data(frame),
  request: (conn, frame) => conn.request(frame),
  ping: (conn) => conn.send(PONG)
}

/** The answer to PING: always the same bytes. */
const PONG = writeFrame(FrameType.Pong, 0, null)

/**
 * One client WebSocket on the server: parses every frame into a typed union, dispatches it through
 * a table keyed by frame type, and keeps the connection's streams. Frames are handled in order;
 * when a handler answers with a Promise (a broker round trip), later frames wait in a bounded
 * backlog. A bad frame is answered with a coded ERROR frame and the connection goes on serving;
 * only repeated abuse closes it (1008). Nothing a client sends can throw out of here.
 */
import type { WebSocket } from 'ws'
import { writeFrame } from '../protocol/codec.js'
import { SignalyardError, type ErrorCode } from '../protocol/errors.js'
import {
  CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED, FrameType, REQUEST_OPS, isFrameError, parseClientFrame,
  type AnyRequest, type ClientFrame, type CloseFrame, type DataFrame, type Endpoint, type FrameError, type OpenFrame
} from '../protocol/frames.js'
import type { Broker } from './brokers/types.js'
import type { Budgets } from './budget.js'
import { BACKLOG_FRAME_COST } from './limits.js'
import type { Broadcast, Hub, Subscriber } from './hub.js'
import type { Limits } from './limits.js'
import type { Logger } from './logger.js'
import type { Metrics } from './metrics.js'

/**
 * Why a stream ended: `closed` by the client's CLOSE or by the server (CLOSED), or `gone` because
 * its socket went away without closing it (peers/signal keep their id for `peers.grace` then).
 */
export type StreamEnd = 'closed' | 'gone'

/** What a stream's endpoint keeps on the server; the connection routes frames to it. */
export interface ServerStream {
  readonly ns: string
  /** Set by the connection when the stream opens: requests of another endpoint are refused. */
  ep?: Endpoint
  data?: (frame: DataFrame) => void | Promise<void>
  /**
   * A REQUEST. The connection passes only requests whose op belongs to the stream's endpoint
   * (REQUEST_OPS), so a handler may declare its endpoint's requests alone (method syntax allows
   * that narrower parameter).
   */
  request? (frame: AnyRequest): void | Promise<void>
  /** Release what the stream holds (`end` absent: `closed`); the connection has already forgotten it. */
  close: (end?: StreamEnd) => void
}

/** Everything an endpoint may use. */
export interface ServerContext {
  readonly broker: Broker
  readonly hub: Hub
  readonly limits: Limits
  readonly log: Logger
  readonly metrics: Metrics
  /** Open streams per namespace on this server (so /healthz counts namespaces in O(1)). */
  readonly namespaces: Map<string, number>
  /** Server-wide budgets (limits.total): take before holding bytes, give back when letting go. */
  readonly budgets: Budgets
  /** The endpoint handlers, by name. */
  readonly endpoints: Endpoints
  /** The connection closed: the server drops it from its table. */
  readonly forget: (conn: Connection) => void
  /** The server's authorize option: may this identity open a stream of `endpoint` in `namespace`? */
  readonly authorize?: (identity: unknown, namespace: string, endpoint: Endpoint) => boolean | Promise<boolean>
}

export type OpenHandler<F extends OpenFrame = OpenFrame> =
  (ctx: ServerContext, conn: Connection, frame: F) => ServerStream | Promise<ServerStream>

export type Endpoints = { [E in OpenFrame['ep']]: OpenHandler<Extract<OpenFrame, { ep: E }>> }

/** WebSocket close codes the server uses. */
export const CloseCode = { GoingAway: 1001, Policy: 1008, TooBig: 1009, Internal: 1011, ServiceRestart: 1012, TryAgainLater: 1013, Unauthorized: CLOSE_UNAUTHORIZED, Forbidden: CLOSE_FORBIDDEN } as const

/**
 * One client connection. It is kept lean because an idle server holds thousands: the socket's
 * listeners and the dispatch table are shared by every connection (they find theirs through the
 * socket), the backlog exists only while a frame waits, and namespaces are counted from the streams.
 */
export class Connection implements Subscriber {
  readonly streams = new Map<number, ServerStream>()
  /** Frames waiting, and their cost in bytes (made only while a frame waits: idle connections are many). */
  private backlog: Backlog | null = null
  /** Waiting for authenticate() or for an OPEN's answer: frames wait in the backlog. */
  private blocked = true
  /** DATA and REQUEST frames whose broker call has not settled (Redis: a round trip each). */
  private inFlight = 0
  private closed = false
  /** Something arrived (a pong or a frame) since the last liveness ping. */
  private alive = true
  /** Token bucket of incoming frames (limits.messagesPerSecond, limits.messageBurst). */
  private tokens: number
  private refilled = now()
  /** Closing because the client does not read what it is sent. */
  private shedding = false

  constructor (
    readonly id: string,
    private readonly ws: WebSocket,
    readonly ctx: ServerContext,
  ) {
    this.tokens = ctx.limits.messageBurst * 1000
    ;(ws as Owned)[CONNECTION] = this
    ws.on('message', socketMessage)
    ws.on('pong', socketPong)
    ws.on('close', socketClose)
    ws.on('error', socketError)
  }

  /** A WebSocket message (through the shared listener). */
  message (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void {
    this.alive = true
    if (!this.take()) {
      this.ctx.metrics.received('connection', byteLength(data))
      this.ctx.metrics.refused('rate-limited')
      this.error(0, 'rate-limited', `at most ${this.ctx.limits.messagesPerSecond} frames per second; this one was dropped`)
      return this.countBad()
    }
    if (!isBinary) return this.reject({ error: 'bad-frame', message: 'text frames are not part of signalyard.2', sid: 0 })
    this.receive(toBytes(data))
  }

  /** One token for an incoming frame, refilling the bucket for the time since the last one. */
  private take (): boolean {
    const { messagesPerSecond, messageBurst } = this.ctx.limits
    // Integers (milli-tokens, ms since the module loaded) stay small integers in V8: no boxed
    // doubles per connection.
    // Monotonic: a wall clock stepped back (NTP) must not starve the bucket. A tick that went
    // backwards anyway (it cannot with performance.now) refills nothing.
    const t = now()
    this.tokens = Math.min(messageBurst * 1000, this.tokens + Math.max(0, t - this.refilled) * messagesPerSecond)
    this.refilled = t
    if (this.tokens < 1000) return false
    this.tokens -= 1000
    return true
  }

  /**
   * After a write: a client that does not read lets bytes pile up here. Past limits.maxOutbound
   * it is closed (1008 slow-consumer) and cut off a second later if it cannot even take the close.
   */
  private checkOutbound (): void {
    if (this.shedding || this.ws.bufferedAmount <= this.ctx.limits.maxOutbound) return
    this.shedding = true
    this.ctx.metrics.refused('slow-consumer')
    this.ctx.log('warn', 'slow consumer disconnected', { conn: this.id, buffered: this.ws.bufferedAmount })
    this.ws.close(CloseCode.Policy, 'slow-consumer')
    setTimeout(() => this.ws.terminate(), 1000).unref()
  }

  /**
   * For a relay writing to this connection: null while its write queue is short, else a promise
   * that resolves once the queue drains (or the socket closes). Relay streams queue their frames
   * meanwhile (each in its own bounded queue), so a fast sender slows to its receiver's pace
   * instead of getting the receiver disconnected as a slow consumer.
   */
  drained (): Promise<void> | null {
    return this.closed ? null : this.writable(Math.min(RELAY_HIGH_WATER, this.ctx.limits.maxOutbound / 4))
  }

  /**
   * Null while at most `highWater` bytes wait to be written to this socket, else a promise that
   * resolves once they drained (or the socket closed). One promise per connection, whoever waits
   * (relay streams, paced snapshots), so waiting adds no listener per waiter.
   */
  private writable (highWater: number): Promise<void> | null {
    if (this.ws.bufferedAmount <= highWater) return null
    const socket = rawSocket(this.ws)
    if (socket === null) return null
    let drain = drains.get(this)
    if (drain === undefined) {
      drain = new Promise<void>((resolve) => {
        const done = (): void => {
          drains.delete(this)
          socket.off('drain', done)
          socket.off('close', done)
          resolve()
        }
        socket.on('drain', done)
        socket.on('close', done)
      })
      drains.set(this, drain)
    }
    return drain
  }

  /** Relay flow-control state, kept aside (most connections never relay). */
  private relayState (): RelayState {
    let state = relayStates.get(this)
    if (state === undefined) relayStates.set(this, state = { bytes: 0, ended: null, next: 0 })
    return state
  }

  /**
   * Hold `bytes` more for this connection's relay streams (before pairing, or waiting to be
   * written to it): false, with nothing held, past limits.relay.maxBufferedPerConnection or the
   * server's relay budget. Give them back with relayRelease.
   */
  relayHold (bytes: number): boolean {
    const state = this.relayState()
    if (this.closed || state.bytes + bytes > this.ctx.limits.relay.maxBufferedPerConnection) return false
    if (!this.ctx.budgets.relay.take(bytes)) return false
    state.bytes += bytes
    return true
  }

  /** Give back relay bytes held with relayHold. */
  relayRelease (bytes: number): void {
    const state = relayStates.get(this)
    if (state === undefined || bytes <= 0) return
    state.bytes -= bytes
    this.ctx.budgets.relay.give(bytes)
  }

  /**
   * The server ended relay stream `sid`: DATA the client sent before it learnt so (in flight)
   * is dropped silently instead of counting as bad frames. The last RECENTLY_ENDED ids are kept.
   */
  relayEnded (sid: number): void {
    const state = this.relayState()
    const ended = state.ended ??= []
    if (ended.length < RECENTLY_ENDED) ended.push(sid)
    else ended[state.next] = sid
    state.next = (state.next + 1) % RECENTLY_ENDED
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
    while (!this.busy && this.backlog !== null && this.backlog.length > 0 && !this.closed) {
      const bytes = this.backlog.shift() as Uint8Array
      const cost = bytes.length + BACKLOG_FRAME_COST
      this.backlog.bytes -= cost
      this.ctx.budgets.backlog.give(cost)
      this.handle(bytes)
    }
    if (this.backlog?.length === 0) this.backlog = null
  }

  /** A pong, or anything else showing the peer is alive. */
  touch (): void {
    this.alive = true
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

  /** Write a finished frame (the same bytes may go to many connections). */
  send (frame: Uint8Array): void {
    if (this.closed || this.shedding) return
    this.ws.send(frame)
    // Frames of a stream count for its endpoint (a stream not registered yet: `connection`).
    this.ctx.metrics.sent(this.streams.get(frameId(frame))?.ep ?? 'connection', frame.length)
    this.checkOutbound()
  }

  /**
   * Write a broadcast: the message framed once for every receiver goes straight to the TCP socket
   * (one write, no per-socket framing). This is safe only because nothing was negotiated on the
   * socket (no extension, so no permessage-deflate): ws then writes each of its own frames whole
   * and at once, never queued, so ours cannot land inside or ahead of one of them. Otherwise, or
   * when ws does not expose its socket, the frame goes through ws.send.
   */
  broadcast (message: Broadcast): void {
    if (this.closed || this.shedding) return
    // Extensions are settled by the upgrade; with none (no permessage-deflate) the finished message
    // can go to the TCP socket directly.
    const raw = this.ws.extensions === '' && this.ws.readyState === OPEN ? rawSocket(this.ws) : null
    if (raw !== null) raw.write(message.wire)
    else this.ws.send(message.frame)
    this.checkOutbound() // (the hub counts broadcasts for the metrics, once per publish)
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

  /** The server ends a stream: CLOSED, with the reason when it is an error. */
  endStream (sid: number, reason?: SignalyardError): void {
    const stream = this.streams.get(sid)
    if (stream !== undefined) this.forget(sid, stream, 'closed')
    this.send(writeFrame(FrameType.Closed, sid, reason === undefined ? {} : { code: reason.code, message: reason.message }))
  }

  /** Close the socket with a code and a reason the client can read. */
  close (code: number, reason: string): void {
    this.ws.close(code, reason)
  }

  /**
   * One liveness tick (the server calls it every `pingInterval` ms): a socket that sent nothing,
   * not even a pong, since the previous tick is cut off (its streams end as `gone`); else ping it.
   */
  heartbeat (): void {
    if (this.closed) return
    if (!this.alive) return this.ws.terminate()
    this.alive = false
    try {
      this.ws.ping()
    } catch {
      // not open yet or closing: the next tick decides
    }
  }

  /**
   * A frame arrived: handled now, or kept in the backlog while the connection is busy. The backlog
   * is bounded in bytes per connection (limits.maxBacklog: past it the client is not following the
   * protocol, 1008 `backlog-full`) and server-wide (budgets.backlog: when every backlog together
   * is full, the connection that cannot add is closed with 1013 `quota-exceeded`, try again later).
   */
  private receive (bytes: Uint8Array): void {
    if (this.closed) return
    if (!this.busy) return this.handle(bytes)
    const cost = bytes.length + BACKLOG_FRAME_COST
    if ((this.backlog?.bytes ?? 0) + cost > this.ctx.limits.maxBacklog) {
      this.ctx.metrics.refused('backlog-full')
      return this.shut(CloseCode.Policy, 'backlog-full')
    }
    if (!this.ctx.budgets.backlog.take(cost)) {
      this.ctx.metrics.refused('quota-exceeded')
      this.ctx.log('warn', 'server-wide backlog budget full: connection closed', { conn: this.id })
      return this.shut(CloseCode.TryAgainLater, 'quota-exceeded')
    }
    const backlog = this.backlog ??= Object.assign([], { bytes: 0 })
    backlog.push(bytes)
    backlog.bytes += cost
  }

  /** Close the socket and read nothing more from it (what waited is dropped and its bytes given back). */
  private shut (code: number, reason: string): void {
    this.dropBacklog()
    this.closed = true
    this.close(code, reason)
  }

  private dropBacklog (): void {
    if (this.backlog !== null) this.ctx.budgets.backlog.give(this.backlog.bytes)
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
      if (relayStates.get(this)?.ended?.includes(frame.sid) === true) return
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

  /** How many namespaces the open streams use, and whether `ns` is one of them. */
  private namespaceUse (ns: string): { count: number, has: boolean } {
    const seen = new Set<string>()
    for (const stream of this.streams.values()) seen.add(stream.ns)
    return { count: seen.size, has: seen.has(ns) }
  }

  open (frame: OpenFrame): void | Promise<void> {
    const authorize = this.ctx.authorize
    if (authorize === undefined) return this.openStream(frame)
    const refuse = (): void => {
      this.ctx.metrics.refused('forbidden')
      this.send(writeFrame(FrameType.Closed, frame.sid, { code: 'forbidden', message: `not authorized for ${frame.ep} in this namespace` }))
    }
    const decide = (allowed: boolean): void | Promise<void> => allowed === true ? this.openStream(frame) : refuse()
    let allowed: boolean | Promise<boolean>
    try {
      allowed = authorize(this.identity, frame.ns, frame.ep)
    } catch (err) {
      this.ctx.log('error', 'authorize threw', { conn: this.id, error: String(err) })
      return refuse()
    }
    if (!(allowed instanceof Promise)) return decide(allowed)
    return allowed.then(decide, (err: unknown) => {
      this.ctx.log('error', 'authorize failed', { conn: this.id, error: String(err) })
      refuse()
    })
  }

  private openStream (frame: OpenFrame): void | Promise<void> {
    const { sid, ns } = frame
    const refuse = (code: ErrorCode, message: string): void => {
      this.ctx.metrics.refused(code)
      // Only a refusal the client could have known to avoid counts against it; a relay partner
      // that closed meanwhile, an id taken or a full budget is nobody's abuse.
      if (ABUSIVE_OPENS.has(code)) this.countBad()
      this.send(writeFrame(FrameType.Closed, sid, { code, message }))
    }
    // A duplicate id must not look like a close of the stream that holds it: ERROR, not CLOSED.
    if (this.streams.has(sid)) return this.reject({ error: 'stream-exists', message: `stream ${sid} is open already`, sid })
    if (this.streams.size >= this.ctx.limits.maxStreams) return refuse('too-many-streams', `at most ${this.ctx.limits.maxStreams} streams per connection`)
    // Counted from the streams (at most maxStreams of them): no per-connection namespace table.
    const use = this.namespaceUse(ns)
    if (!use.has && use.count >= this.ctx.limits.maxNamespaces) {
      return refuse('too-many-namespaces', `at most ${this.ctx.limits.maxNamespaces} namespaces per connection`)
    }
    const register = (stream: ServerStream): void => {
      if (this.closed) return stream.close('gone')
      stream.ep = frame.ep
      this.streams.set(sid, stream)
      const namespaces = this.ctx.namespaces
      namespaces.set(stream.ns, (namespaces.get(stream.ns) ?? 0) + 1)
    }
    const onError = (err: unknown): void => {
      if (err instanceof SignalyardError) return refuse(err.code, err.message)
      this.ctx.log('error', 'endpoint failed to open a stream', { conn: this.id, ep: frame.ep, error: String(err) })
      refuse('internal-error', 'the server failed to open the stream')
    }
    try {
      const opening = (this.ctx.endpoints[frame.ep] as OpenHandler)(this.ctx, this, frame)
      if (opening instanceof Promise) return opening.then(register, onError)
      register(opening)
    } catch (err) {
      onError(err)
    }
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

  private reject (e: FrameError): void {
    this.ctx.metrics.refused(e.error)
    if (e.open === true) this.send(writeFrame(FrameType.Closed, e.sid, { code: e.error, message: e.message }))
    else this.error(e.sid, e.error, e.message, { req: e.req })
    this.countBad()
  }

  /** Count a rejected frame; too many in one window closes the connection. */
  private countBad (): void {
    const t = now()
    // Kept aside: most connections never send a bad frame.
    let bad = badFrames.get(this)
    if (bad === undefined) badFrames.set(this, bad = { count: 0, since: t })
    if (t - bad.since > this.ctx.limits.badFrameWindow) {
      bad.since = t
      bad.count = 0
    }
    if (++bad.count === this.ctx.limits.maxBadFrames + 1) {
      this.ctx.metrics.refused('too-many-bad-frames')
      this.close(CloseCode.Policy, 'too-many-bad-frames')
    }
  }

  /** The socket closed: end every stream (as `gone`) and leave the server's table. */
  teardown (): void {
    // Safe to run twice (a second run finds nothing left), so no flag is kept for it.
    this.dropBacklog()
    this.closed = true
    for (const [sid, stream] of this.streams) this.forget(sid, stream, 'gone')
    this.ctx.forget(this)
  }

  /**
   * Work done for this connection a part at a time (a paced kv or peers snapshot) asks this
   * between parts: false once the socket closed or is being cut off as a slow consumer (stop);
   * a promise while more than `highWater` bytes wait to be written to it (resolved once they
   * drained below it, or the socket closed); true when the next part may go now.
   */
  paced (highWater: number): boolean | Promise<boolean> {
    if (this.closed || this.shedding) return false
    return this.writable(highWater)?.then(() => !this.closed && !this.shedding) ?? true
  }
}

/** OPEN refusals that count as bad frames: limits the client was told (HELLO, docs) and crossed anyway. */
const ABUSIVE_OPENS: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['too-many-streams', 'too-many-namespaces', 'payload-too-large', 'bad-request'])

/** Frames waiting to be handled, with their cost in bytes (lengths + BACKLOG_FRAME_COST each). */
type Backlog = Uint8Array[] & { bytes: number }

/** Rejected frames of a connection in the current window (limits.badFrameWindow). */
const badFrames = new WeakMap<Connection, { count: number, since: number }>()

/**
 * A connection's relay side state: bytes held for its relay streams (relayHold) and the ids of
 * relay streams the server ended lately (a ring of RECENTLY_ENDED, `next` the slot to overwrite).
 */
interface RelayState { bytes: number, ended: number[] | null, next: number }

/** The promise of a connection's socket draining, while something waits for it (Connection.writable). */
const drains = new WeakMap<Connection, Promise<void>>()
const relayStates = new WeakMap<Connection, RelayState>()

/** Identities from authenticate(), kept aside: most servers have none, and idle connections are many. */
const identities = new WeakMap<Connection, unknown>()

/** DATA / REQUEST frames of one connection waiting on the broker before the rest wait in the backlog. */
const MAX_IN_FLIGHT = 256

/**
 * Milliseconds on the monotonic clock, as a small integer (V8 keeps it unboxed): every duration on
 * the server is measured with it, never with the wall clock, which NTP may step back.
 */
const now = (): number => Math.floor(performance.now())

/** WebSocket.OPEN */
const OPEN = 1

/** The dispatch table, keyed by parsed frame type, shared by every connection. */
const dispatch: { [T in ClientFrame['type']]: (conn: Connection, frame: Extract<ClientFrame, { type: T }>) => void | Promise<void> } = {
  open: (conn, frame) => conn.open(frame),
  close: (conn, frame) => conn.closeStream(frame),
  data: (conn, frame) => conn.data(frame),
  request: (conn, frame) => conn.request(frame),
  ping: (conn) => conn.send(PONG)
}

/** The answer to PING: always the same bytes. */
const PONG = writeFrame(FrameType.Pong, 0, null)

/** Where a socket keeps its connection, so one set of listeners serves every socket. */
const CONNECTION = Symbol('signalyard.connection')
type Owned = WebSocket & { [CONNECTION]?: Connection }
function socketMessage (this: Owned, data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void {
  const conn = this[CONNECTION]
  try {
    conn?.message(data, isBinary)
  } catch (err) {
    conn?.internalError('message', err)
  }
}
function socketPong (this: Owned): void { this[CONNECTION]?.touch() }
function socketClose (this: Owned): void {
  const conn = this[CONNECTION]
  try {
    conn?.teardown()
  } catch (err) {
    conn?.internalError('close', err)
  }
}
function socketError (this: Owned, err: Error): void { this[CONNECTION]?.socketError(err) }

/** The part of net.Socket the connection uses. */
interface RawSocket {
  write: (bytes: Uint8Array) => boolean
  on: (event: 'drain' | 'close', listener: () => void) => unknown
  off: (event: 'drain' | 'close', listener: () => void) => unknown
}

/** The net.Socket a ws WebSocket writes to (ws keeps it as `_socket`), or null when it has none. */
function rawSocket (ws: WebSocket): RawSocket | null {
  const socket = (ws as unknown as { _socket?: { write?: unknown } })._socket
  return socket !== undefined && socket !== null && typeof socket.write === 'function'
    ? socket as RawSocket
    : null
}

/** Queued bytes past which relay frames wait in their stream's queue (or maxOutbound / 4 when that is less). */
const RELAY_HIGH_WATER = 1024 * 1024

/** Relay stream ids ended by the server that a connection remembers (their late DATA is dropped silently). */
const RECENTLY_ENDED = 64

/** The stream id of a finished frame (bytes 1..4). */
function frameId (frame: Uint8Array): number {
  return frame.length < 5 ? 0 : ((frame[1] << 24) >>> 0) + (frame[2] << 16) + (frame[3] << 8) + frame[4]
}

function byteLength (data: Buffer | ArrayBuffer | Buffer[]): number {
  return Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : data.byteLength
}

function toBytes (data: Buffer | ArrayBuffer | Buffer[]): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data)
  if (data instanceof ArrayBuffer) return new Uint8Array(data)
  return data
}

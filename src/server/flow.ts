/**
 * Flow control of one client connection: how fast bytes may go each way, and whether the other
 * end is there at all. The write path with its outbound bound (a client that does not read what
 * it is sent is shed as a slow consumer), the one drain promise relay streams and paced snapshots
 * wait on, the relay bytes held for the connection's relay streams, the token bucket of incoming
 * frames, and liveness (a socket silent for two pings is cut off).
 *
 * Connection extends Flow, so this state lives on the connection object itself (no object per
 * connection), and what most connections never use (a drain promise, relay state) is kept aside
 * in WeakMaps: an idle connection pays for neither.
 */
import type { WebSocket } from 'ws'
import { frameId } from '../protocol/codec.js'
import type { Endpoint } from '../protocol/frames.js'
import { CloseCode, type ServerContext } from './context.js'
import type { Broadcast } from './hub.js'
import { OPEN, rawSocket, wsHeader, wsMessage, type RawSocket } from './socket.js'

export abstract class Flow {
  /** The connection's open streams (Connection keeps them): a frame sent counts for its stream's endpoint. */
  abstract readonly streams: ReadonlyMap<number, { ep?: Endpoint }>
  /** The socket closed, or is being closed by the server: nothing more is read from it or written to it. */
  protected closed = false
  /** Closing because the client does not read what it is sent. */
  private shedding = false
  /** Token bucket of incoming frames, in milli-tokens (limits.messagesPerSecond, limits.messageBurst). */
  private tokens: number
  private refilled = now()
  /** Something arrived (a pong or a frame) since the last liveness ping. */
  private alive = true
  /** The TCP socket messages go to directly (null: through ws), found on the first write. */
  private raw: RawSocket | null | undefined = undefined
  /** Bytes due to the socket at the end of this event-loop turn (see `due`): one array, or several. */
  private out: Uint8Array | Uint8Array[] | null = null
  /** Bytes of `out`: they count toward what waits for the socket (see `writable`). */
  private dueBytes = 0

  constructor (
    readonly id: string,
    protected readonly ws: WebSocket,
    readonly ctx: ServerContext,
  ) {
    this.tokens = ctx.limits.messageBurst * 1000
  }

  /** One token for an incoming frame, refilling the bucket for the time since the last one. */
  protected take (): boolean {
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

  /** Write a finished frame (the same bytes may go to many connections). */
  send (frame: Uint8Array): void {
    if (this.closed || this.shedding) return
    // Frames of a stream count for its endpoint (a stream not registered yet: `connection`).
    this.ctx.metrics.sent(this.streams.get(frameId(frame))?.ep ?? 'connection', frame.length)
    this.write(frame, false)
  }

  /** Write a text message (the compat endpoints' JSON): a string, or its UTF-8 bytes. */
  protected sendText (text: string | Uint8Array): void {
    if (this.closed || this.shedding) return
    this.write(typeof text === 'string' ? Buffer.from(text) : text, true)
  }

  /** One message, framed here when it can go to the TCP socket directly (see `due`), else through ws. */
  private write (payload: Uint8Array, text: boolean): void {
    if (this.direct() === null) {
      this.ws.send(payload, { binary: !text })
      this.checkOutbound()
      return
    }
    // A small message is copied behind its header: one buffer costs less than a two-piece writev.
    if (payload.length <= SMALL_MESSAGE) return this.due(wsMessage(payload, text))
    this.due(wsHeader(payload.length, text))
    this.due(payload)
  }

  /**
   * Write a broadcast: the message framed once for every receiver goes straight to the TCP socket
   * (no per-socket framing). When ws does not expose its socket, or something was negotiated on
   * it, the frame goes through ws.send.
   */
  broadcast (message: Broadcast): void {
    if (this.closed || this.shedding) return
    if (this.direct() !== null) this.due(message.wire)
    else {
      this.ws.send(message.frame, { binary: !message.text })
      this.checkOutbound()
    }
    // (the hub counts broadcasts for the metrics, once per publish)
  }

  /**
   * The TCP socket this connection's messages go to directly, or null (through ws.send). Direct
   * writes are safe only because nothing was negotiated on the socket (no extension, so no
   * permessage-deflate): ws then writes each of its own frames (pings, pongs, the close) whole
   * and at once, never queued, so ours cannot land inside one of them. Looked up once: ws's
   * `extensions` getter builds a string on every read.
   */
  private direct (): RawSocket | null {
    if (this.raw === undefined) this.raw = this.ws.extensions === '' ? rawSocket(this.ws) : null
    return this.ws.readyState === OPEN ? this.raw : null
  }

  /**
   * Bytes for the TCP socket, written when the JavaScript of the current event-loop turn is done,
   * its promise continuations included (see flushAfterMicrotasks): what is due to one connection
   * within one turn — the copies of several publishes that came in one read, the EVENT of a kv
   * set and its REPLY sent after an `await` — leaves in one write (one `writev`), and a lone
   * message waits for nothing but the code that sent it.
   */
  private due (bytes: Uint8Array): void {
    this.dueBytes += bytes.length
    const out = this.out
    if (out === null) {
      this.out = bytes
      dueFlows.push(this)
      if (!flushing) {
        flushing = true
        queueMicrotask(flushAfterMicrotasks)
      }
    } else if (Array.isArray(out)) out.push(bytes)
    else this.out = [out, bytes]
  }

  /** Write what is due (see `due`) now. */
  flush (): void {
    const out = this.out
    if (out === null) return
    this.out = null
    this.dueBytes = 0
    // Closed meanwhile (or closing: after a close frame nothing more may follow): dropped, as a
    // ws.send after the close would have been.
    const raw = this.closed || this.shedding ? null : this.direct()
    if (raw === null) return
    if (Array.isArray(out)) {
      raw.cork()
      for (const bytes of out) raw.write(bytes)
      raw.uncork()
      if (raw.writableLength > 0) this.checkOutbound()
    } else if (!raw.write(out)) {
      // (written whole, or queued below the socket's high-water mark: nothing to check)
      this.checkOutbound()
    }
  }

  /** A pong, or anything else showing the peer is alive. */
  touch (): void {
    this.alive = true
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

  /** Close the socket with a code and a reason the client can read. */
  close (code: number, reason: string): void {
    this.flush() // what was sent before the close goes before it
    this.ws.close(code, reason)
  }

  /**
   * After a write: a client that does not read lets bytes pile up here. Past limits.maxOutbound
   * it is closed (1008 slow-consumer) and cut off a second later if it cannot even take the close.
   */
  protected checkOutbound (): void {
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
   * Work done for this connection a part at a time (a paced kv or peers snapshot) asks this
   * between parts: false once the socket closed or is being cut off as a slow consumer (stop);
   * a promise while more than `highWater` bytes wait to be written to it (resolved once they
   * drained below it, or the socket closed); true when the next part may go now.
   */
  paced (highWater: number): boolean | Promise<boolean> {
    if (this.closed || this.shedding) return false
    return this.writable(highWater)?.then(() => !this.closed && !this.shedding) ?? true
  }

  /**
   * Null while at most `highWater` bytes wait to be written to this socket, else a promise that
   * resolves once they drained (or the socket closed). One promise per connection, whoever waits
   * (relay streams, paced snapshots), so waiting adds no listener per waiter.
   */
  private writable (highWater: number): Promise<void> | null {
    // What is due this turn counts without being written now: a relay asks before every frame,
    // and a flush each time would write each frame on its own instead of one write per turn.
    if (this.ws.bufferedAmount + this.dueBytes <= highWater) return null
    this.flush() // (to drain, what is due must be in the socket's queue)
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

  /** Whether relay stream `sid` is one the server ended lately (see relayEnded). */
  protected relayEndedLately (sid: number): boolean {
    return relayStates.get(this)?.ended?.includes(sid) === true
  }
}

/**
 * A connection's relay side state: bytes held for its relay streams (relayHold) and the ids of
 * relay streams the server ended lately (a ring of RECENTLY_ENDED, `next` the slot to overwrite).
 */
interface RelayState { bytes: number, ended: number[] | null, next: number }

/** The promise of a connection's socket draining, while something waits for it (Flow.writable). */
const drains = new WeakMap<Flow, Promise<void>>()
const relayStates = new WeakMap<Flow, RelayState>()

/** Connections with bytes due at the end of this event-loop turn, and whether their flush is scheduled. */
/** Payloads up to this size are copied behind their WebSocket header (Flow#write). */
const SMALL_MESSAGE = 2048
let dueFlows: Flow[] = []
let flushing = false

/**
 * Scheduled as a microtask when the first bytes of a turn are due: it queues flushDue with
 * process.nextTick, and Node runs a tick queued from a microtask only once the microtask queue is
 * empty — after every promise continuation the turn set off, however long the chain.
 */
function flushAfterMicrotasks (): void {
  process.nextTick(flushDue)
}

/** Write what every connection has due (once per turn that wrote anything). */
function flushDue (): void {
  // Flushes run no application code, but a list swapped out first cannot be appended to meanwhile.
  const flows = dueFlows
  dueFlows = []
  flushing = false
  for (const flow of flows) flow.flush()
}

/** Queued bytes past which relay frames wait in their stream's queue (or maxOutbound / 4 when that is less). */
const RELAY_HIGH_WATER = 1024 * 1024

/** Relay stream ids ended by the server that a connection remembers (their late DATA is dropped silently). */
const RECENTLY_ENDED = 64

/**
 * Milliseconds on the monotonic clock, as a small integer (V8 keeps it unboxed): every duration on
 * the server is measured with it, never with the wall clock, which NTP may step back.
 */
export const now = (): number => Math.floor(performance.now())

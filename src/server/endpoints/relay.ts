/**
 * relay: pairs two streams of one namespace that present mirrored tokens ({local: a, remote: b}
 * and {local: b, remote: a}), whichever comes first, then forwards DATA frames between them and
 * no one else. A forwarded frame is the received buffer with its stream id rewritten in place.
 *
 * Before pairing, what the stream sends is held (up to `relay.prePairBuffer` bytes) and delivered
 * once paired; a side left unmatched for `relay.pendingTimeout` is closed with `relay-timeout`.
 *
 * Flow control is per stream, never per socket (no socket is ever paused for a relay):
 * - Receiving: a frame from the other side is written to this socket at once while its write
 *   queue is short; else it waits in this stream's queue (bytes held against the connection's
 *   bound and the server's relay budget) until the socket drains. Once written it is acknowledged
 *   to the sender's side (coalesced per tick).
 * - Sending: OPENED announces the stream's `window`; every acknowledgement comes back to the
 *   client as an ACK frame `{ bytes }`. A client keeps at most `window` bytes (plus one frame)
 *   unacknowledged; one that sends past `relay.maxInFlight` gets the stream closed
 *   (`relay-overflow`). Bytes in flight with no acknowledgement for `relay.stallTimeout` close the
 *   pair on both sides (`relay-stalled`): the receiver does not read.
 */
import { rewriteId } from '../../protocol/codec.js'
import { SignalyardError, type ErrorCode } from '../../protocol/errors.js'
import type { DataFrame } from '../../protocol/frames.js'
import { RELAY_PRE_OPEN_WINDOW, relayOpenedMeta, writeRelayAck, type OpenRelay } from '../../protocol/relay.js'
import type { RelayLink, RelayOpened, RelaySink } from '../brokers/types.js'
import type { Connection } from '../connection.js'
import type { OpenHandler, ServerStream } from '../context.js'
import type { Limits } from '../limits.js'

type Timer = ReturnType<typeof setTimeout>

/** One relay stream. A class, not closures: an idle server holds thousands of streams. */
class RelayStream implements ServerStream {
  /** What the broker calls (the other side's frames, acks, arrival and close). */
  readonly side: RelaySink = new RelaySide(this)
  private link: RelayLink | null = null
  private peerArrived = false
  private paired = false
  private ended = false
  /** The broker has not answered relayOpen yet: the stream is not registered, so it cannot end yet. */
  private opening = true
  private endReason: SignalyardError | null = null
  /** Unmatched for relay.pendingTimeout: relay-timeout. */
  private readonly timer: Timer

  /** What this side sent before pairing (held here, counted in `held`). */
  private outbound: Uint8Array[] = []
  private outboundBytes = 0
  /** Bytes this client sent on the stream that the other side has not passed on yet. */
  private inFlight = 0
  /** When inFlight last moved forward (or became non-zero), performance.now(). */
  private progress = 0
  private stallTimer: Timer | null = null

  /** Frames from the other side waiting to be written to this socket (counted in `held`). */
  private inbound: Uint8Array[] = []
  private waiting = false
  /**
   * The other side closed (without an error) while frames it sent wait in `inbound` for this
   * client's socket: they are written first, then this side closes (bounded by stallTimeout).
   */
  private draining = false
  /** Bytes written to this socket and not yet acknowledged to the sender (sent once per tick). */
  private unacked = 0
  private ackScheduled = false

  /** Bytes held with conn.relayHold (pre-pair outbound + inbound queue). */
  private held = 0
  /** The bytes a client may keep unacknowledged, announced in OPENED. */
  private readonly window: number
  /** A client that keeps to the window (plus one frame) is never cut off, whatever is configured. */
  private readonly maxInFlight: number

  constructor (private readonly conn: Connection, private readonly sid: number, readonly ns: string, local: string, remote: string) {
    const { limits } = this
    const { pendingTimeout } = limits.relay
    this.window = Math.max(limits.relay.window, RELAY_PRE_OPEN_WINDOW)
    this.maxInFlight = Math.max(limits.relay.maxInFlight, this.window + limits.maxFrame)
    this.timer = setTimeout(() => {
      this.end(new SignalyardError('relay-timeout', `no relay stream paired with ${local} → ${remote} within ${pendingTimeout} ms`))
    }, pendingTimeout)
  }

  private get limits (): Limits { return this.conn.ctx.limits }

  /** The broker answered relayOpen: the stream, or the reason it ended meanwhile (thrown). */
  start (opened: RelayOpened): RelayStream {
    this.opening = false
    if (this.endReason !== null) {
      opened.link.close()
      throw this.endReason
    }
    this.link = opened.link
    if (opened.paired) this.peerArrived = true
    this.maybePair()
    return this
  }

  /** relayOpen failed: only the pending timeout was set up yet. */
  abandon (): void {
    clearTimeout(this.timer)
  }

  /** DATA from this client: forwarded once paired, held before. */
  data ({ raw }: DataFrame): void {
    if (this.ended || this.draining) return // (the other side is gone: nobody to pass it on to)
    const bytes = raw.bytes.length
    if (this.paired && this.link !== null) {
      if (this.inFlight + bytes > this.maxInFlight) {
        return this.fail(new SignalyardError('relay-overflow', `more than ${this.maxInFlight} bytes sent without waiting for ACKs (window ${this.window})`))
      }
      this.sent(bytes)
      this.link.send(raw.bytes)
      return
    }
    const { prePairBuffer } = this.limits.relay
    if (this.outboundBytes + bytes > prePairBuffer) {
      return this.fail(new SignalyardError('payload-too-large', `more than ${prePairBuffer} bytes sent before pairing`))
    }
    if (!this.hold(bytes)) return this.fail(this.quota())
    this.outboundBytes += bytes
    this.outbound.push(raw.bytes)
    this.sent(bytes)
  }

  close (): void {
    this.ended = true
    this.cleanup()
    this.link?.close()
  }

  /** The connection ends this stream (a frame of it was rate-limited): both sides get the code. */
  abort (error: SignalyardError): void {
    this.end(error)
  }

  /** The other side arrived. */
  partnerArrived (): void {
    this.peerArrived = true
    this.maybePair()
  }

  /** The other side passed on `bytes` of this client's frames: tell the client (ACK). */
  acked (bytes: number): void {
    if (this.ended) return
    this.inFlight = Math.max(0, this.inFlight - bytes)
    this.progress = performance.now()
    this.conn.send(writeRelayAck(this.sid, bytes))
  }

  /** The other side closed (with its error code, if it ended on one). */
  partnerClosed (code?: ErrorCode): void {
    this.link = null
    if (code === undefined && this.paired && this.inbound.length > 0 && !this.ended) {
      // A close on purpose comes after the closer's last frame: what this client has not been
      // written yet still is, as a WebSocket or TCP close would deliver it.
      this.draining = true
      if (this.stallTimer !== null) clearTimeout(this.stallTimer)
      this.stallTimer = setTimeout(() => this.end(), this.limits.relay.stallTimeout)
      if (!this.waiting) this.flush()
      return
    }
    this.end(code === undefined ? undefined : new SignalyardError(code, `the other side ended: ${code}`))
  }

  /** A frame from the other side: written now while the socket keeps up, else queued. */
  receive (frame: Uint8Array): void {
    if (this.ended) return
    if (this.paired && this.inbound.length === 0 && this.conn.drained() === null) return this.write(frame)
    if (!this.hold(frame.length)) return this.fail(this.quota())
    this.inbound.push(frame)
    if (this.paired && !this.waiting) this.flush()
  }

  /** Acknowledge what was written this tick to the sender's side. */
  flushAck (): void {
    this.ackScheduled = false
    const bytes = this.unacked
    this.unacked = 0
    if (!this.ended && bytes > 0) this.link?.ack(bytes)
  }

  private hold (bytes: number): boolean {
    if (!this.conn.relayHold(bytes)) return false
    this.held += bytes
    return true
  }

  private release (bytes: number): void {
    this.held -= bytes
    this.conn.relayRelease(bytes)
  }

  private quota (): SignalyardError {
    return new SignalyardError('quota-exceeded', `relay buffers are full (${this.limits.relay.maxBufferedPerConnection} bytes per connection, or the server's relay budget)`)
  }

  /** This side found a bound crossed: count the refusal (/metrics) and end the pair with its code. */
  private fail (error: SignalyardError): void {
    this.conn.ctx.metrics.refused(error.code)
    this.end(error)
  }

  private write (frame: Uint8Array): void {
    rewriteId(frame, this.sid)
    this.conn.send(frame)
    this.unacked += frame.length
    if (!this.ackScheduled) {
      this.ackScheduled = true
      setImmediate(flushAck, this)
    }
  }

  /** Write queued frames while the socket keeps up; else wait for it to drain. */
  private flush (): void {
    this.waiting = false
    while (!this.ended && this.inbound.length > 0) {
      const behind = this.conn.drained()
      if (behind !== null) {
        this.waiting = true
        void behind.then(() => this.flush())
        return
      }
      const frame = this.inbound.shift() as Uint8Array
      this.release(frame.length)
      this.write(frame)
    }
    if (this.draining && !this.ended) this.end()
  }

  private stalled (): void {
    this.stallTimer = null
    if (this.ended || this.inFlight <= 0) return
    const { stallTimeout } = this.limits.relay
    const idle = performance.now() - this.progress
    if (idle < stallTimeout) {
      this.stallTimer = setTimeout(() => this.stalled(), stallTimeout - idle)
      return
    }
    this.fail(new SignalyardError('relay-stalled', `no byte passed on for ${stallTimeout} ms: the other side does not read`))
  }

  /** This client sent `bytes` more (watch for a stall). */
  private sent (bytes: number): void {
    if (this.inFlight === 0) this.progress = performance.now()
    this.inFlight += bytes
    if (this.stallTimer === null && this.paired) this.stallTimer = setTimeout(() => this.stalled(), this.limits.relay.stallTimeout)
  }

  private end (reason?: SignalyardError): void {
    if (this.ended) return
    this.ended = true
    this.cleanup()
    if (this.opening) {
      // The peer closed (or the timeout hit) before the broker answered: refuse the OPEN then.
      this.endReason = reason ?? new SignalyardError('stream-closed', 'the other side closed before this one was open')
      return
    }
    this.link?.close(reason?.code)
    this.conn.endStream(this.sid, reason)
    this.conn.relayEnded(this.sid)
  }

  /** Let go of everything the stream holds (timers, queues, bytes). */
  private cleanup (): void {
    clearTimeout(this.timer)
    if (this.stallTimer !== null) clearTimeout(this.stallTimer)
    this.stallTimer = null
    this.outbound = []
    this.inbound = []
    this.release(this.held)
  }

  private maybePair (): void {
    if (this.paired || this.ended || this.link === null || !this.peerArrived) return
    this.paired = true
    clearTimeout(this.timer)
    this.conn.opened(this.sid, relayOpenedMeta(this.conn.streamId(this.sid), this.window))
    const early = this.outbound
    this.outbound = []
    this.release(this.outboundBytes)
    this.outboundBytes = 0
    for (const frame of early) {
      // The other side may end while taking them (its buffers are full): stop then.
      if (this.ended || this.link === null) return
      this.link.send(frame)
    }
    if (this.inFlight > 0) this.stallTimer = setTimeout(() => this.stalled(), this.limits.relay.stallTimeout)
    this.flush()
  }
}

/** Shared by every stream (setImmediate passes the stream): no closure per tick. */
function flushAck (stream: RelayStream): void { stream.flushAck() }

/** A stream's side as the broker sees it: its own object, since the stream's `data` takes the client's frames. */
class RelaySide implements RelaySink {
  constructor (private readonly stream: RelayStream) {}
  paired (): void { this.stream.partnerArrived() }
  data (frame: Uint8Array): void { this.stream.receive(frame) }
  acked (bytes: number): void { this.stream.acked(bytes) }
  closed (code?: ErrorCode): void { this.stream.partnerClosed(code) }
}

export const openRelay: OpenHandler<OpenRelay> = (ctx, conn, { sid, ns, local, remote }) => {
  const stream = new RelayStream(conn, sid, ns, local, remote)
  try {
    const opened = ctx.broker.relayOpen(ns, local, remote, stream.side)
    if (opened instanceof Promise) return opened.then((o) => stream.start(o), (err) => { stream.abandon(); throw err })
    return stream.start(opened)
  } catch (err) {
    stream.abandon()
    throw err
  }
}

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
import { rewriteId, writeFrame } from '../../protocol/codec.js'
import { SignalyardError, type ErrorCode } from '../../protocol/errors.js'
import { FrameType, RELAY_PRE_OPEN_WINDOW, type OpenRelay } from '../../protocol/frames.js'
import type { RelayLink, RelaySink } from '../brokers/types.js'
import type { OpenHandler, ServerStream } from '../connection.js'

export const openRelay: OpenHandler<OpenRelay> = (ctx, conn, { sid, ns, local, remote }) => {
  const { limits } = ctx
  const window = Math.max(limits.relay.window, RELAY_PRE_OPEN_WINDOW)
  // A client that keeps to the window (plus one frame) is never cut off, whatever is configured.
  const maxInFlight = Math.max(limits.relay.maxInFlight, window + limits.maxFrame)
  let link: RelayLink | null = null
  let peerArrived = false
  let paired = false
  let ended = false
  /** The broker has not answered relayOpen yet: the stream is not registered, so it cannot end yet. */
  let opening = true
  let endReason: SignalyardError | null = null

  /** What this side sent before pairing (held here, counted in `held`). */
  let outbound: Uint8Array[] = []
  let outboundBytes = 0
  /** Bytes this client sent on the stream that the other side has not passed on yet. */
  let inFlight = 0
  /** When inFlight last moved forward (or became non-zero), performance.now(). */
  let progress = 0
  let stallTimer: ReturnType<typeof setTimeout> | null = null

  /** Frames from the other side waiting to be written to this socket (counted in `held`). */
  let inbound: Uint8Array[] = []
  let waiting = false
  /** Bytes written to this socket and not yet acknowledged to the sender (sent once per tick). */
  let unacked = 0
  let ackScheduled = false

  /** Bytes held with conn.relayHold (pre-pair outbound + inbound queue). */
  let held = 0
  const hold = (bytes: number): boolean => {
    if (!conn.relayHold(bytes)) return false
    held += bytes
    return true
  }
  const release = (bytes: number): void => {
    held -= bytes
    conn.relayRelease(bytes)
  }
  const quota = (): SignalyardError =>
    new SignalyardError('quota-exceeded', `relay buffers are full (${limits.relay.maxBufferedPerConnection} bytes per connection, or the server's relay budget)`)
  /** This side found a bound crossed: count the refusal (/metrics) and end the pair with its code. */
  const fail = (error: SignalyardError): void => {
    ctx.metrics.refused(error.code)
    end(error)
  }

  const flushAck = (): void => {
    ackScheduled = false
    const bytes = unacked
    unacked = 0
    if (!ended && bytes > 0) link?.ack(bytes)
  }
  const write = (frame: Uint8Array): void => {
    rewriteId(frame, sid)
    conn.send(frame)
    unacked += frame.length
    if (!ackScheduled) {
      ackScheduled = true
      setImmediate(flushAck)
    }
  }
  /** Write queued frames while the socket keeps up; else wait for it to drain. */
  const flush = (): void => {
    waiting = false
    while (!ended && inbound.length > 0) {
      const behind = conn.drained()
      if (behind !== null) {
        waiting = true
        void behind.then(flush)
        return
      }
      const frame = inbound.shift() as Uint8Array
      release(frame.length)
      write(frame)
    }
  }
  const receive = (frame: Uint8Array): void => {
    if (ended) return
    if (paired && inbound.length === 0 && conn.drained() === null) return write(frame)
    if (!hold(frame.length)) return fail(quota())
    inbound.push(frame)
    if (paired && !waiting) flush()
  }

  const stalled = (): void => {
    stallTimer = null
    if (ended || inFlight <= 0) return
    const idle = performance.now() - progress
    if (idle < limits.relay.stallTimeout) {
      stallTimer = setTimeout(stalled, limits.relay.stallTimeout - idle)
      return
    }
    fail(new SignalyardError('relay-stalled', `no byte passed on for ${limits.relay.stallTimeout} ms: the other side does not read`))
  }
  /** This client sent `bytes` more (watch for a stall). */
  const sent = (bytes: number): void => {
    if (inFlight === 0) progress = performance.now()
    inFlight += bytes
    if (stallTimer === null && paired) stallTimer = setTimeout(stalled, limits.relay.stallTimeout)
  }

  const end = (reason?: SignalyardError): void => {
    if (ended) return
    ended = true
    cleanup()
    if (opening) {
      // The peer closed (or the timeout hit) before the broker answered: refuse the OPEN then.
      endReason = reason ?? new SignalyardError('stream-closed', 'the other side closed before this one was open')
      return
    }
    link?.close(reason?.code)
    conn.endStream(sid, reason)
    conn.relayEnded(sid)
  }
  /** Let go of everything the stream holds (timers, queues, bytes). */
  const cleanup = (): void => {
    clearTimeout(timer)
    if (stallTimer !== null) clearTimeout(stallTimer)
    stallTimer = null
    outbound = []
    inbound = []
    release(held)
  }
  const maybePair = (): void => {
    if (paired || ended || link === null || !peerArrived) return
    paired = true
    clearTimeout(timer)
    conn.opened(sid, { id: `${conn.id}.${sid}`, window })
    const early = outbound
    outbound = []
    release(outboundBytes)
    outboundBytes = 0
    for (const frame of early) {
      // The other side may end while taking them (its buffers are full): stop then.
      if (ended || link === null) return
      link.send(frame)
    }
    if (inFlight > 0) stallTimer = setTimeout(stalled, limits.relay.stallTimeout)
    flush()
  }
  const sink: RelaySink = {
    paired: () => { peerArrived = true; maybePair() },
    data: receive,
    acked: (bytes) => {
      if (ended) return
      inFlight = Math.max(0, inFlight - bytes)
      progress = performance.now()
      conn.send(writeFrame(FrameType.Ack, sid, { bytes }))
    },
    closed: (code?: ErrorCode) => {
      link = null
      end(code === undefined ? undefined : new SignalyardError(code, `the other side ended: ${code}`))
    }
  }
  const timer = setTimeout(() => {
    end(new SignalyardError('relay-timeout', `no relay stream paired with ${local} → ${remote} within ${limits.relay.pendingTimeout} ms`))
  }, limits.relay.pendingTimeout)

  const stream: ServerStream = {
    ns,
    data: ({ raw }) => {
      if (ended) return
      const bytes = raw.bytes.length
      if (paired && link !== null) {
        if (inFlight + bytes > maxInFlight) {
          return fail(new SignalyardError('relay-overflow', `more than ${maxInFlight} bytes sent without waiting for ACKs (window ${window})`))
        }
        sent(bytes)
        link.send(raw.bytes)
        return
      }
      if (outboundBytes + bytes > limits.relay.prePairBuffer) {
        return fail(new SignalyardError('payload-too-large', `more than ${limits.relay.prePairBuffer} bytes sent before pairing`))
      }
      if (!hold(bytes)) return fail(quota())
      outboundBytes += bytes
      outbound.push(raw.bytes)
      sent(bytes)
    },
    close: () => {
      ended = true
      cleanup()
      link?.close()
    }
  }
  const start = (opened: { link: RelayLink, paired: boolean }): ServerStream => {
    opening = false
    if (endReason !== null) {
      opened.link.close()
      throw endReason
    }
    link = opened.link
    if (opened.paired) peerArrived = true
    maybePair()
    return stream
  }
  try {
    const opened = ctx.broker.relayOpen(ns, local, remote, sink)
    if (opened instanceof Promise) return opened.then(start, (err) => { clearTimeout(timer); throw err })
    return start(opened)
  } catch (err) {
    clearTimeout(timer)
    throw err
  }
}

/**
 * relay: pairs two streams of one namespace that present mirrored tokens ({local: a, remote: b}
 * and {local: b, remote: a}), whichever comes first, then forwards DATA frames between them and
 * no one else. A forwarded frame is the received buffer with its stream id rewritten in place.
 *
 * Before pairing, what the stream sends is held (up to `relay.prePairBuffer` bytes) and delivered
 * once paired; a side left unmatched for `relay.pendingTimeout` is closed with `relay-timeout`.
 */
import { rewriteId } from '../../protocol/codec.js'
import { SignalyardError } from '../../protocol/errors.js'
import type { OpenRelay } from '../../protocol/frames.js'
import type { RelayLink, RelaySink } from '../brokers/types.js'
import type { OpenHandler, ServerStream } from '../connection.js'

export const openRelay: OpenHandler<OpenRelay> = (ctx, conn, { sid, ns, local, remote }) => {
  const { limits } = ctx
  let link: RelayLink | null = null
  let peerArrived = false
  let paired = false
  let ended = false
  /** The broker has not answered relayOpen yet: the stream is not registered, so it cannot end yet. */
  let opening = true
  let endReason: SignalyardError | null = null
  /** What this side sent before pairing, and what the peer sent before this side knew it was paired. */
  let outbound: Uint8Array[] = []
  let outboundBytes = 0
  let inbound: Uint8Array[] = []

  const deliver = (frame: Uint8Array): Promise<void> | null => {
    rewriteId(frame, sid)
    conn.send(frame)
    return conn.drained()
  }
  const end = (reason?: SignalyardError): void => {
    if (ended) return
    ended = true
    clearTimeout(timer)
    outbound = []
    inbound = []
    if (opening) {
      // The peer closed (or the timeout hit) before the broker answered: refuse the OPEN then.
      endReason = reason ?? new SignalyardError('stream-closed', 'the other side closed before this one was open')
      return
    }
    link?.close()
    conn.endStream(sid, reason)
  }
  const maybePair = (): void => {
    if (paired || ended || link === null || !peerArrived) return
    paired = true
    clearTimeout(timer)
    conn.opened(sid, { id: `${conn.id}.${sid}` })
    for (const frame of inbound) deliver(frame)
    for (const frame of outbound) link.send(frame)
    inbound = []
    outbound = []
  }
  const sink: RelaySink = {
    paired: () => { peerArrived = true; maybePair() },
    data: (frame) => {
      if (paired) return deliver(frame)
      inbound.push(frame)
      return null
    },
    closed: () => { link = null; end() }
  }
  const timer = setTimeout(() => {
    end(new SignalyardError('relay-timeout', `no relay stream paired with ${local} → ${remote} within ${limits.relay.pendingTimeout} ms`))
  }, limits.relay.pendingTimeout)

  const stream: ServerStream = {
    ns,
    data: ({ raw }) => {
      if (paired && link !== null) {
        // The receiver is behind: read nothing more from this socket until it catches up.
        const behind = link.send(raw.bytes)
        if (behind !== null) conn.hold(behind)
        return
      }
      outboundBytes += raw.bytes.length
      if (outboundBytes > limits.relay.prePairBuffer) {
        return end(new SignalyardError('payload-too-large', `more than ${limits.relay.prePairBuffer} bytes sent before pairing`))
      }
      outbound.push(raw.bytes)
    },
    close: () => {
      ended = true
      clearTimeout(timer)
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

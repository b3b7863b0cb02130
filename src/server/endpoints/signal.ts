/**
 * signal: directed messages between claimed ids (what createNode's handshake travels over). OPEN
 * claims an id in the namespace's signal space for an owner key; DATA `{ to }` is framed once as
 * DATA `{ from }` (the sender's claimed id, set here, so no one can pose as another id) and handed
 * to the broker, which gives it to the one stream holding `to`, and to no one else. The connection
 * is subscribed to the namespace's signal events (EVENT leave when an id is released).
 */
import { rewriteId, writeFrame, type EncodedPayload } from '../../protocol/codec.js'
import { SignalyardError } from '../../protocol/errors.js'
import { FrameType, isName, NAME_MAX, type DataFrame, type OpenSignal } from '../../protocol/frames.js'
import { topicOf, type Claimed, type ClaimSink } from '../brokers/types.js'
import type { OpenHandler, ServerStream } from '../connection.js'

export const openSignal: OpenHandler<OpenSignal> = async (ctx, conn, { sid, ns, id, key }) => {
  const { limits, broker, hub } = ctx
  const topic = topicOf('signal', ns)
  let open = false
  let taken = false
  /** Messages that reached the id before OPENED was sent (a broker answering late), sent after it. */
  let early: Uint8Array[] = []
  const deliver = (frame: Uint8Array): void => {
    rewriteId(frame, sid)
    conn.send(frame)
  }
  const sink: ClaimSink = {
    data: (frame) => {
      if (open) deliver(frame)
      else early.push(frame)
    },
    taken: () => {
      taken = true
      if (open) conn.endStream(sid, new SignalyardError('peer-id-taken', `${id} was claimed again by its owner elsewhere`))
    }
  }
  let claimed: Claimed
  await hub.subscribe(topic, conn)
  try {
    claimed = await broker.claim({ space: 'signal', ns, id, key, meta: null, maxPeers: limits.peers.maxPeers }, sink)
  } catch (err) {
    hub.unsubscribe(topic, conn)
    throw err
  }
  const { claim } = claimed

  const undeliverable = (to: string): void => {
    conn.error(sid, 'unknown-peer', `no client holds ${JSON.stringify(to)} in this namespace`, { to })
  }
  const stream: ServerStream = {
    ns,
    data: ({ raw }: DataFrame) => {
      const to = raw.meta?.to
      if (!isName(to)) throw new SignalyardError('bad-request', `to must be a string of 1..${NAME_MAX} characters`)
      if (raw.payload.length > limits.peers.maxSignal) {
        throw new SignalyardError('payload-too-large', `signal messages are limited to ${limits.peers.maxSignal} bytes`)
      }
      const payload = { kind: raw.kind, bytes: raw.payload } as EncodedPayload
      const delivered = broker.direct(ns, to, writeFrame(FrameType.Data, 0, { from: id }, payload))
      if (delivered instanceof Promise) return delivered.then((ok) => { if (!ok) undeliverable(to) })
      if (!delivered) undeliverable(to)
    },
    close: (end) => {
      hub.unsubscribe(topic, conn)
      claim.release(end === 'gone' ? limits.peers.grace : 0)
    }
  }
  if (taken) {
    stream.close('closed')
    throw new SignalyardError('peer-id-taken', `${id} was claimed again by its owner elsewhere`)
  }
  open = true
  conn.opened(sid, { id: `${conn.id}.${sid}` })
  for (const frame of early) deliver(frame)
  early = []
  return stream
}

/**
 * peers: presence. OPEN claims an id in the namespace's presence space for an owner key and
 * answers with every member; the broker publishes EVENT join / update / leave to the namespace.
 * The connection is subscribed to those events before the claim, so no change falls between the
 * member list and the events. CLOSE releases the id at once; a socket that went away keeps it for
 * `peers.grace` ms, so its owner can reconnect and reclaim it without a leave.
 */
import { SignalyardError } from '../../protocol/errors.js'
import type { OpenPeers, PeersRequest } from '../../protocol/frames.js'
import { topicOf, type Claimed, type ClaimSink } from '../brokers/types.js'
import type { OpenHandler, ServerStream } from '../connection.js'

export const openPeers: OpenHandler<OpenPeers> = async (ctx, conn, { sid, ns, id, key, meta, metaSize }) => {
  const { limits, broker, hub } = ctx
  const tooLarge = (): SignalyardError => new SignalyardError('payload-too-large', `presence meta is limited to ${limits.peers.maxMeta} bytes`)
  if (metaSize > limits.peers.maxMeta) throw tooLarge()
  const topic = topicOf('peers', ns)
  let open = false
  let taken = false
  const sink: ClaimSink = {
    data: () => {},
    taken: () => {
      taken = true
      if (open) conn.endStream(sid, new SignalyardError('peer-id-taken', `${id} was claimed again by its owner elsewhere`))
    }
  }
  let claimed: Claimed
  await hub.subscribe(topic, conn)
  try {
    claimed = await broker.claim({ space: 'peers', ns, id, key, meta, maxPeers: limits.peers.maxPeers }, sink)
  } catch (err) {
    hub.unsubscribe(topic, conn)
    throw err
  }
  const { claim, members } = claimed
  const stream: ServerStream = {
    ns,
    request: async (frame: PeersRequest) => {
      if (frame.metaSize > limits.peers.maxMeta) throw tooLarge()
      await claim.update(frame.meta)
      conn.reply(sid, { req: frame.req })
    },
    close: (end) => {
      hub.unsubscribe(topic, conn)
      claim.release(end === 'gone' ? limits.peers.grace : 0)
    }
  }
  if (taken) {
    // The owner claimed the id again (another connection) while this claim was in flight.
    stream.close('closed')
    throw new SignalyardError('peer-id-taken', `${id} was claimed again by its owner elsewhere`)
  }
  open = true
  conn.opened(sid, { id: `${conn.id}.${sid}`, peers: members })
  return stream
}

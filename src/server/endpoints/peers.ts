/**
 * peers: presence. OPEN claims an id in the namespace's presence space for an owner key and
 * answers with every member; the broker publishes EVENT join / update / leave to the namespace.
 * CLOSE releases the id at once; a socket that went away keeps it for `peers.grace` ms, so its
 * owner can reconnect and reclaim it without a leave (see claim.ts).
 */
import { SignalyardError } from '../../protocol/errors.js'
import type { OpenPeers, PeersRequest } from '../../protocol/frames.js'
import type { OpenHandler, ServerStream } from '../connection.js'
import { holdClaim } from './claim.js'

export const openPeers: OpenHandler<OpenPeers> = async (ctx, conn, { sid, ns, id, key, meta, metaSize }) => {
  const { maxMeta } = ctx.limits.peers
  const tooLarge = (): SignalyardError => new SignalyardError('payload-too-large', `presence meta is limited to ${maxMeta} bytes`)
  if (metaSize > maxMeta) throw tooLarge()
  const held = await holdClaim(ctx, conn, { space: 'peers', sid, ns, id, key, meta })
  const stream: ServerStream = {
    ns,
    request: async (frame: PeersRequest) => {
      if (frame.metaSize > maxMeta) throw tooLarge()
      await held.claim.update(frame.meta)
      conn.reply(sid, { req: frame.req })
    },
    close: (end = 'closed') => held.close(end)
  }
  held.open({ id: `${conn.id}.${sid}`, peers: held.members })
  return stream
}

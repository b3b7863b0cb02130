/**
 * peers: presence. OPEN claims an id in the namespace's presence space for an owner key and
 * answers with every member, a page at a time paced by the asker (pace.ts): DATA `{ peers }`
 * pages and the changes since (DATA `{ op, id, meta }`), then OPENED with the last page. The
 * broker publishes EVENT join / update / leave to the namespace.
 * CLOSE releases the id at once; a socket that went away keeps it for `peers.grace` ms, so its
 * owner can reconnect and reclaim it without a leave (see claim.ts).
 */
import { SignalyardError } from '../../protocol/errors.js'
import type { OpenPeers, PeersRequest } from '../../protocol/frames.js'
import type { OpenHandler, ServerStream } from '../connection.js'
import { holdClaim } from './claim.js'
import { PAGE_BYTES, pace } from './pace.js'

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
  try {
    // Each page is sent as soon as it is read (its place among the events); the last goes in OPENED.
    for await (const { members, last } of held.claim.members(PAGE_BYTES)) {
      if (last) {
        held.open({ id: `${conn.id}.${sid}`, peers: members })
        return stream
      }
      held.page(members)
      if (!await pace(conn)) return stream
    }
  } catch (err) {
    held.close('closed')
    throw err
  }
  // The claim went stale (its owner claimed the id again elsewhere) before the list was read.
  held.open({ id: `${conn.id}.${sid}`, peers: [] })
  return stream
}

/**
 * peers: presence. OPEN claims an id in the namespace's presence space for an owner key and
 * answers with every member, a page at a time paced by the asker (pace.ts): DATA `{ peers }`
 * pages and the changes since (DATA `{ op, id, meta }`), then OPENED with the last page. The
 * broker publishes EVENT join / update / leave to the namespace.
 * CLOSE releases the id at once; a socket that went away keeps it for `peers.grace` ms, so its
 * owner can reconnect and reclaim it without a leave (see claim.ts).
 */
import { SignalyardError } from '../../protocol/errors.js'
import { peersOpenedMeta, type OpenPeers, type PeersRequest } from '../../protocol/peers.js'
import type { Connection } from '../connection.js'
import type { OpenHandler, ServerStream, StreamEnd } from '../context.js'
import { holdClaim, type HeldClaim } from './claim.js'
import { PAGE_BYTES, pace } from './pace.js'

/** One peers stream: a claimed presence id whose meta the client may update. */
class PeersStream implements ServerStream {
  constructor (
    private readonly conn: Connection,
    private readonly sid: number,
    readonly ns: string,
    private readonly held: HeldClaim,
  ) {}

  async request (frame: PeersRequest): Promise<void> {
    if (frame.metaSize > this.conn.ctx.limits.peers.maxMeta) throw metaTooLarge(this.conn.ctx.limits.peers.maxMeta)
    await this.held.claim.update(frame.meta)
    this.conn.reply(this.sid, { req: frame.req })
  }

  close (end: StreamEnd = 'closed'): void {
    this.held.close(end)
  }
}

const metaTooLarge = (maxMeta: number): SignalyardError =>
  new SignalyardError('payload-too-large', `presence meta is limited to ${maxMeta} bytes`)

export const openPeers: OpenHandler<OpenPeers> = async (ctx, conn, { sid, ns, id, key, meta, metaSize }) => {
  if (metaSize > ctx.limits.peers.maxMeta) throw metaTooLarge(ctx.limits.peers.maxMeta)
  const held = await holdClaim(ctx, conn, { space: 'peers', sid, ns, id, key, meta })
  const stream = new PeersStream(conn, sid, ns, held)
  try {
    // Each page is sent as soon as it is read (its place among the events); the last goes in OPENED.
    for await (const { members, last } of held.claim.members(PAGE_BYTES)) {
      if (last) {
        held.open(peersOpenedMeta(conn.streamId(sid), members))
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
  held.open(peersOpenedMeta(conn.streamId(sid), []))
  return stream
}

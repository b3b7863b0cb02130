/**
 * What the peers and signal endpoints share: claiming an id for an owner key in one of the
 * namespace's id spaces. The connection is subscribed to the space's events before the claim, so
 * nothing falls between the claim's answer and the events. The owner reclaiming the id from another
 * stream ends this one (`peer-id-taken`); a socket that went away releases the id after the grace.
 */
import { rewriteId } from '../../protocol/codec.js'
import { SignalyardError } from '../../protocol/errors.js'
import { topicOf, type Claim, type ClaimSpace } from '../brokers/types.js'
import type { Connection, ServerContext, StreamEnd } from '../connection.js'
import type { Broadcast, Subscriber } from '../hub.js'

export interface ClaimRequest { space: ClaimSpace, sid: number, ns: string, id: string, key: string, meta: object | null }

export interface HeldClaim {
  claim: Claim
  members: Array<{ id: string, meta: object }>
  /** Send OPENED with `meta` (and any directed frames that arrived before it). */
  open: (meta: object) => void
  /** Unsubscribe and release: at once on CLOSE, after the grace when the socket went away. */
  close: (end: StreamEnd) => void
}

const takenError = (id: string): SignalyardError =>
  new SignalyardError('peer-id-taken', `${id} was claimed again by its owner elsewhere`)

export async function holdClaim (ctx: ServerContext, conn: Connection, { space, sid, ns, id, key, meta }: ClaimRequest): Promise<HeldClaim> {
  const { limits, broker, hub } = ctx
  const topic = topicOf(space, ns)
  let opened = false
  let taken = false
  /**
   * The space's events for this stream: dropped until the claim took its place (members reflect
   * them), held from then until OPENED is sent, passed on after it. So the client, which applies
   * events only once open, sees each change exactly once whatever way the broker delivers them.
   */
  let placed = false
  let held: Broadcast[] = []
  const events: Subscriber = {
    broadcast: (message) => {
      if (opened) conn.broadcast(message)
      else if (placed) held.push(message)
    }
  }
  /** Directed frames that reached the id before OPENED was sent (a broker answering late). */
  let early: Uint8Array[] = []
  const deliver = (frame: Uint8Array): void => {
    rewriteId(frame, sid)
    conn.send(frame)
  }
  await hub.subscribe(topic, events)
  let claimed
  try {
    claimed = await broker.claim({ space, ns, id, key, meta, maxPeers: limits.peers.maxPeers }, {
      data: (frame) => { if (opened) deliver(frame); else early.push(frame) },
      taken: () => {
        taken = true
        if (opened) conn.endStream(sid, takenError(id))
      },
      placed: () => { placed = true }
    })
  } catch (err) {
    hub.unsubscribe(topic, events)
    throw err
  }
  placed = true
  const { claim, members } = claimed
  const close = (end: StreamEnd): void => {
    held = []
    hub.unsubscribe(topic, events)
    claim.release(end === 'gone' ? limits.peers.grace : 0)
  }
  return {
    claim,
    members,
    close,
    open: (openedMeta) => {
      if (taken) {
        // The owner claimed the id again (another connection) while this claim was in flight.
        close('closed')
        throw takenError(id)
      }
      opened = true
      conn.opened(sid, openedMeta)
      for (const frame of early) deliver(frame)
      for (const message of held) conn.broadcast(message)
      early = []
      held = []
    }
  }
}

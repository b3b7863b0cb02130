/**
 * What the peers and signal endpoints share: claiming an id for an owner key in one of the
 * namespace's id spaces. The connection is subscribed to the space's events before the claim, so
 * nothing falls between the claim's answer and the events. The owner reclaiming the id from another
 * stream ends this one (`peer-id-taken`); a socket that went away releases the id after the grace.
 */
import { FrameType, rewriteId } from '../../protocol/codec.js'
import { SignalyardError } from '../../protocol/errors.js'
import { writePeersPage } from '../../protocol/peers.js'
import { topicOf, type Claim, type ClaimSpace, type BrokerMember } from '../brokers/types.js'
import type { Connection } from '../connection.js'
import type { ServerContext, StreamEnd } from '../context.js'
import type { Broadcast, Subscriber } from '../hub.js'

export interface HoldRequest { space: ClaimSpace, sid: number, ns: string, id: string, key: string, meta: object | null }

export interface HeldClaim {
  claim: Claim
  /** Send a page of the member list (DATA `{ peers }`) and the events held behind it. */
  page: (members: BrokerMember[]) => void
  /** Send OPENED with `meta` (and any directed frames and events that arrived before it). */
  open: (meta: object) => void
  /** Unsubscribe and release: at once on CLOSE, after the grace when the socket went away. */
  close: (end: StreamEnd) => void
}

const takenError = (id: string): SignalyardError =>
  new SignalyardError('peer-id-taken', `${id} was claimed again by its owner elsewhere`)

/**
 * A broadcast EVENT as a DATA frame of one stream: a copy, since every receiver shares the
 * broadcast's bytes (`new Uint8Array(view)` copies; a Buffer's `slice()` would not).
 */
function asData (message: Broadcast, sid: number): Uint8Array {
  const frame = new Uint8Array(message.frame)
  rewriteId(frame, sid, FrameType.Data)
  return frame
}

export async function holdClaim (ctx: ServerContext, conn: Connection, { space, sid, ns, id, key, meta }: HoldRequest): Promise<HeldClaim> {
  const { limits, broker, hub } = ctx
  const topic = topicOf(space, ns)
  let opened = false
  let taken = false
  /**
   * The space's events for this stream: dropped until the claim took its place (what is read from
   * the space after it reflects them), then passed on in order. A peers stream gets them before
   * OPENED as DATA frames, between the pages of the member list, each page in its place (events
   * that came after a page was read wait until it is sent); a signal stream gets them after
   * OPENED. So the client, which applies pages and events in the order they come, sees each
   * change exactly once whatever way the broker delivers them.
   */
  let placed = false
  let held: Broadcast[] | null = space === 'signal' ? [] : null
  const events: Subscriber = {
    broadcast: (message) => {
      if (opened) conn.broadcast(message)
      else if (!placed) return
      else if (held !== null) held.push(message)
      else conn.send(asData(message, sid))
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
      // The claim's place (first call, brokers that make it), then each page's: hold the events
      // that follow until the page is sent.
      placed: () => {
        if (!placed) placed = true
        else if (!opened) held ??= []
      }
    })
  } catch (err) {
    hub.unsubscribe(topic, events)
    throw err
  }
  placed = true
  const { claim } = claimed
  /** Who receives the space's events: this stream until OPENED, then its connection (see open). */
  let subscriber: Subscriber = events
  let closed = false
  const close = (end: StreamEnd): void => {
    if (closed) return
    closed = true
    held = null
    hub.unsubscribe(topic, subscriber)
    claim.release(end === 'gone' ? limits.peers.grace : 0)
  }
  return {
    claim,
    close,
    page: (members) => {
      conn.send(writePeersPage(sid, members))
      const behind = held ?? []
      held = null
      for (const message of behind) conn.send(asData(message, sid))
    },
    open: (openedMeta) => {
      if (taken) {
        // The owner claimed the id again (another connection) while this claim was in flight.
        close('closed')
        throw takenError(id)
      }
      opened = true
      // From now on the events go to the connection as they are: subscribed as the connection,
      // which receives each EVENT once however many streams it has in the space (the topic
      // exists, so both calls take effect at once and nothing falls between them).
      void hub.subscribe(topic, conn)
      hub.unsubscribe(topic, events)
      subscriber = conn
      conn.opened(sid, openedMeta)
      for (const frame of early) deliver(frame)
      for (const message of held ?? []) conn.broadcast(message)
      early = []
      held = null
    }
  }
}

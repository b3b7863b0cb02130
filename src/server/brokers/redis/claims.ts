/**
 * Presence and signal ids on Redis: records in a hash per namespace and space (`id:<space>:<ns>`),
 * owned by a token of the process holding the stream. Scripts claim, update and release them and
 * publish the space's events in the same step; the claiming process learns its place among those
 * events from markers on its inbox. A presence claim reads the first page of the members in the
 * same script (one round trip for a join). Directed frames reach the holder's process through its
 * inbox.
 */
import { writePeersEvent } from '../../../protocol/peers.js'
import { writeSignalLeave } from '../../../protocol/signal.js'
import { topicOf, type Broker, type Claim, type ClaimSink, type ClaimSpace, type BrokerMember, type MemberPage } from '../types.js'
import { coded, ignore, type Context } from './context.js'
import { CLAIM_SCRIPTS } from './claims.lua.js'
import type { Inbox } from './inbox.js'
import { INBOX } from './keys.js'
import { pack, toBuffer } from './lua.js'

/** An id this process holds (or held: during its grace period `sink` is null). */
interface Held {
  readonly space: ClaimSpace
  sink: ClaimSink | null
  timer: ReturnType<typeof setTimeout> | null
  /** Waits for markers (INBOX.marker: the claim's, then one per update or page), oldest first. */
  markers: Array<() => void>
}

/** A wait for the next marker a script publishes to this process for `h`'s token. */
const marker = (h: Held): Promise<void> => new Promise((resolve) => h.markers.push(resolve))

/**
 * Bytes of meta in the first page of members a presence claim reads with the claim: the server's
 * page (PAGE_BYTES in endpoints/pace.ts), which is what the peers endpoint asks `members` for.
 */
const FIRST_PAGE_BYTES = 64 * 1024

/** The members of a syMembers reply (cursor, then id/meta pairs). */
function membersOf (reply: Buffer[]): BrokerMember[] {
  const members: BrokerMember[] = []
  for (let i = 1; i + 1 < reply.length; i += 2) members.push({ id: reply[i].toString(), meta: JSON.parse(reply[i + 1].toString()) as object })
  return members
}

/** The ids this process holds, by token. */
export class Claims {
  private readonly run
  private readonly held = new Map<string, Held>()
  /** Live ids per space (stats() is O(1)). */
  readonly live: Record<ClaimSpace, number> = { peers: 0, signal: 0 }

  constructor (private readonly ctx: Context, inbox: Inbox) {
    this.run = ctx.define(CLAIM_SCRIPTS)
    inbox.on(INBOX.signal, (token, frame) => this.held.get(token)?.sink?.data(frame))
    inbox.on(INBOX.marker, (token, body) => {
      const h = this.held.get(token)
      // One marker may stand for several places in a row (body: how many; '' is one): a claim's
      // and that of the first page it read.
      for (let n = body.length === 0 ? 1 : Number(body.toString()); n > 0; n--) {
        h?.sink?.placed?.()
        h?.markers.shift()?.()
      }
    })
    inbox.on(INBOX.taken, (token) => {
      const h = this.held.get(token)
      if (h === undefined || h.sink === null) return
      const sink = h.sink
      this.held.delete(token)
      this.live[h.space]--
      for (const resolve of h.markers.splice(0)) resolve()
      sink.taken()
    })
  }

  /** Ids held, in their grace period included (for tables()). */
  get size (): number { return this.held.size }

  /** Broker.claim: claim an id for a stream (its token is a new address of this process). */
  claim: Broker['claim'] = async ({ space, ns, id, key, meta, maxPeers }, sink) => {
    const { ctx, run, held, live } = this
    const token = ctx.nextAddr()
    const member: BrokerMember = { id, meta: meta ?? {} }
    const leaveFrame = (m: BrokerMember): Buffer => toBuffer(space === 'peers' ? writePeersEvent(ns, 'leave', m) : writeSignalLeave(ns, id))
    const ids = ctx.keys.ids(space, ns)
    const topic = ctx.keys.topic(topicOf(space, ns))
    const ref = pack(space, ns, id)
    const index = ctx.keys.claimIndex(ctx.pid)
    const inbox = ctx.keys.inbox(ctx.pid)
    const h: Held = { space, sink, timer: null, markers: [] }
    // The answer comes on the command connection, the events and the marker on the subscriber
    // one: answer only once both arrived, so the answer is never taken for the claim's place.
    const placed = marker(h)
    // A presence claim reads the first page of the members too; its place is the claim's (one
    // marker stands for both).
    const pageBytes = space === 'peers' ? FIRST_PAGE_BYTES : 0
    const pagePlaced = pageBytes > 0 ? marker(h) : null
    held.set(token, h)
    live[space]++
    let reply: Buffer[]
    try {
      reply = await run.syClaim(ids, topic, index, id, key, token, JSON.stringify(member.meta), leaveFrame(member),
        space === 'peers' ? toBuffer(writePeersEvent(ns, 'join', member)) : '', maxPeers, ref, ctx.keys.prefix, pageBytes) as Buffer[]
    } catch (err) {
      held.delete(token)
      live[space]--
      throw coded(err)
    }
    await placed
    /** The first page of the members, read with the claim: what `members` yields first. */
    let firstPage: { cursor: string, members: BrokerMember[] } | null = pageBytes > 0 ? { cursor: reply[0].toString(), members: membersOf(reply) } : null
    let released = false
    const handle: Claim = {
      async update (next) {
        if (released || held.get(token) !== h) return
        const m = { id, meta: next }
        // Answered once the update's own event reached this process (as with the memory broker).
        const marked = marker(h)
        await run.syUpdate(ids, topic, inbox, id, token, JSON.stringify(next), leaveFrame(m), toBuffer(writePeersEvent(ns, 'update', m)))
        await marked
      },
      release (graceMs) {
        if (released) return
        released = true
        if (held.get(token) !== h) return
        h.sink = null
        live[space]--
        for (const resolve of h.markers.splice(0)) resolve()
        if (graceMs <= 0) held.delete(token)
        run.syRelease(ids, topic, index, id, token, graceMs, ref, 'release').catch(ignore)
        if (graceMs <= 0) return
        h.timer = setTimeout(() => {
          held.delete(token)
          run.syRelease(ids, topic, index, id, token, 0, ref, 'expire').catch(ignore)
        }, graceMs)
        h.timer.unref?.()
      },
      async * members (pageBytes): AsyncGenerator<MemberPage, void, void> {
        let cursor = '0'
        const first = firstPage
        firstPage = null
        if (first !== null) {
          if (released || held.get(token) !== h) return
          await pagePlaced
          cursor = first.cursor
          yield { members: first.members, last: cursor === '0' }
          if (cursor === '0') return
        }
        do {
          if (released || held.get(token) !== h) return
          // The page's marker calls the sink's placed() (its place among the events) and ends this wait.
          const marked = marker(h)
          const reply = await run.syMembers(ids, inbox, cursor, pageBytes, token) as Buffer[]
          await marked
          cursor = reply[0].toString()
          yield { members: membersOf(reply), last: cursor === '0' }
        } while (cursor !== '0')
      }
    }
    return { claim: handle }
  }

  /** Broker.members: the same pages without a claim (no marker: they take no place among the events). */
  async * members (space: ClaimSpace, ns: string, pageBytes: number): AsyncGenerator<MemberPage, void, void> {
    const { ctx, run } = this
    let cursor = '0'
    do {
      const reply = await run.syMembers(ctx.keys.ids(space, ns), ctx.keys.inbox(ctx.pid), cursor, pageBytes, '') as Buffer[]
      cursor = reply[0].toString()
      yield { members: membersOf(reply), last: cursor === '0' }
    } while (cursor !== '0')
  }

  /** Broker.direct: a directed frame to the holder of a signal id, here or through its process's inbox. */
  direct: Broker['direct'] = async (ns, to, frame) => {
    const reply = await this.run.syDirect(this.ctx.keys.ids('signal', ns), to, toBuffer(frame), this.ctx.keys.prefix, this.ctx.pid)
    if (Buffer.isBuffer(reply)) {
      this.held.get(reply.toString())?.sink?.data(frame)
      return true
    }
    return Number(reply) === 1
  }

  /** Stop the grace timers (the broker is closing). */
  stopTimers (): void {
    for (const h of this.held.values()) if (h.timer !== null) clearTimeout(h.timer)
  }

  /** Forget every id (the broker closed). */
  forget (): void {
    this.held.clear()
    this.live.peers = this.live.signal = 0
  }

  /** Forget every id and end the waits for markers (Redis was lost: they will not come). */
  drop (): void {
    this.stopTimers()
    for (const h of this.held.values()) for (const resolve of h.markers.splice(0)) resolve()
    this.forget()
  }
}

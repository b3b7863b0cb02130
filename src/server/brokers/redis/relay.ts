/**
 * Relay sides on Redis. Each side claims its token pair in a key of its own
 * (`relay:<[ns, local, remote]>`) and pairs with the mirrored key's side in one script. Traffic
 * between two sides of this process goes straight from one sink to the other; for a side in
 * another process it goes through that process's inbox (INBOX.data and INBOX.ack). The relay
 * endpoint flow-controls each stream end to end (the receiving process acknowledges what it wrote
 * to its socket, and the sender never has more than its window in flight), so Redis's output
 * buffers stay small without any socket being paused.
 */
import type { ErrorCode } from '../../../protocol/errors.js'
import type { Broker, RelayLink, RelaySink } from '../types.js'
import { coded, ignore, type Context } from './context.js'
import type { Inbox } from './inbox.js'
import { INBOX } from './keys.js'
import { RELAY_SCRIPTS } from './relay.lua.js'

/** A relay side held by this process. */
interface Side {
  readonly addr: string
  readonly sink: RelaySink
  /** The other side's address; '' while pending. */
  peer: string
  closed: boolean
}

/** The relay sides this process holds, by address. */
export class Relay {
  private readonly run
  private readonly sides = new Map<string, Side>()
  /** Paired relay sides, one per pair (stats() is O(1)). */
  pairs = 0

  constructor (private readonly ctx: Context, private readonly inbox: Inbox) {
    this.run = ctx.define(RELAY_SCRIPTS)
    inbox.on(INBOX.data, (addr, frame) => this.open(addr)?.sink.data(frame))
    inbox.on(INBOX.ack, (addr, bytes) => this.open(addr)?.sink.acked(Number(bytes.toString())))
    inbox.on(INBOX.paired, (addr, peer) => {
      const side = this.open(addr)
      if (side === undefined || side.peer !== '') return
      this.setPeer(side, peer.toString())
      side.sink.paired()
    })
    inbox.on(INBOX.closed, (addr, reason) => {
      const side = this.open(addr)
      if (side !== undefined) this.closeLocal(side, reason.length === 0 ? undefined : reason.toString() as ErrorCode)
    })
  }

  /** Sides held (for tables()). */
  get size (): number { return this.sides.size }

  /** The side at `addr` unless it is gone or closed. */
  private open (addr: string): Side | undefined {
    const side = this.sides.get(addr)
    return side === undefined || side.closed ? undefined : side
  }

  /** Broker.relayOpen: claim the token pair and pair with the mirrored side if it waits. */
  relayOpen: Broker['relayOpen'] = async (ns, local, remote, sink) => {
    const { ctx, run, sides, inbox } = this
    const addr = ctx.nextAddr()
    const key = ctx.keys.relay(ns, local, remote)
    const index = ctx.keys.relayIndex(ctx.pid)
    const side: Side = { addr, sink, peer: '', closed: false }
    sides.set(addr, side)
    let peer: string
    try {
      peer = String(await run.syRelayOpen(key, ctx.keys.relay(ns, remote, local), index, addr, ctx.keys.prefix, ctx.pid))
    } catch (err) {
      sides.delete(addr)
      throw coded(err)
    }
    if (peer !== '') {
      this.setPeer(side, peer)
      const other = ctx.isLocal(peer) ? sides.get(peer) : undefined
      if (other !== undefined && other.peer === '') {
        this.setPeer(other, addr)
        other.sink.paired()
      }
    }
    const link: RelayLink = {
      send (frame) {
        if (side.closed || side.peer === '') return
        if (ctx.isLocal(side.peer)) sides.get(side.peer)?.sink.data(frame)
        else inbox.send(side.peer, INBOX.data, frame)
      },
      ack (bytes) {
        if (side.closed || side.peer === '') return
        if (ctx.isLocal(side.peer)) sides.get(side.peer)?.sink.acked(bytes)
        else inbox.send(side.peer, INBOX.ack, String(bytes))
      },
      close: (reason) => {
        if (!this.drop(side)) return
        run.syRelayClose(key, index, addr, ctx.keys.prefix, ctx.pid, reason ?? '').then((reply) => {
          const other = sides.get(String(reply))
          if (other !== undefined) this.closeLocal(other, reason)
        }, ignore)
      }
    }
    return { link, paired: peer !== '' }
  }

  /** Forget a side of this process (false when it was gone already). */
  private drop (side: Side): boolean {
    if (side.closed) return false
    side.closed = true
    this.pairs -= this.pairOf(side)
    this.sides.delete(side.addr)
    return true
  }

  /** 1 when `side` counts as a relay pair in stats (each pair counted once, on one side). */
  private pairOf (side: Side): number {
    return side.peer !== '' && (!this.ctx.isLocal(side.peer) || side.addr < side.peer) ? 1 : 0
  }

  /** Set a side's peer, keeping the pair count. */
  private setPeer (side: Side, peer: string): void {
    this.pairs -= this.pairOf(side)
    side.peer = peer
    this.pairs += this.pairOf(side)
  }

  /** A side of this process ends because its peer did (or Redis was lost). */
  private closeLocal (side: Side, reason?: ErrorCode): void {
    if (this.drop(side)) side.sink.closed(reason)
  }

  /** End every side (Redis was lost, or the broker closed). */
  closeAll (): void {
    for (const side of [...this.sides.values()]) this.closeLocal(side)
  }
}

/**
 * The in-memory broker: the default, for a single server process. Topics are a Map of handlers,
 * KV state is the pure KvModel swept by one interval, relay pairing is a Map of token sides, and
 * peers/signal ids are a Map of holders per space and namespace (a grace period is one timer per
 * released id, cleared by a reclaim or by close()).
 */
import { KvModel } from '../../kv/model.js'
import type { Budget } from '../budget.js'
import { writeKvEvent } from '../../protocol/kv.js'
import { writePeersEvent } from '../../protocol/peers.js'
import { writeSignalLeave } from '../../protocol/signal.js'
import { SignalyardError, type ErrorCode } from '../../protocol/errors.js'
import {
  topicOf,
  type Broker, type Claim, type BrokerClaimRequest, type ClaimSink, type ClaimSpace, type Claimed, type MemberPage, type RelayLink, type RelayOpened,
  type RelaySink, type TopicHandler
} from './types.js'

export interface MemoryBrokerOptions {
  /** How often expired keys are swept, in ms (default 100). */
  sweepInterval?: number
  /** Clock in ms; monotonic by default. */
  now?: () => number
  /**
   * The server's KV budget (ctx.budgets.kv, limits.total.kv): the broker keeps it equal to the
   * bytes its KV state holds (so /metrics shows them) and refuses writes past its limit. createServer
   * passes it to the broker it makes; without it only each set's `maxTotal` bounds the state.
   */
  kvBudget?: Budget
}

interface Side { key: string, sink: RelaySink, peer: Side | null, closed: boolean }

const sideKey = (ns: string, local: string, remote: string): string => JSON.stringify([ns, local, remote])

/** An id held in a namespace's space: by a live stream (`sink`), or in its grace period (`timer`). */
interface Holder {
  readonly id: string
  readonly key: string
  meta: object
  /** Length of meta's JSON (what a member costs in a page of Claim.members). */
  size: number
  /** The stream that holds the id now; null during the grace period. */
  sink: ClaimSink | null
  /** The handle of the latest claim; older handles are stale. */
  current: Claim | null
  timer: ReturnType<typeof setTimeout> | null
}

/**
 * Create the in-memory broker (what createServer uses when given no broker).
 *
 * @example
 * const yard = await createServer({ port: 0, broker: memoryBroker({ sweepInterval: 50 }) })
 */
export function memoryBroker (options: MemoryBrokerOptions = {}): Broker {
  const now = options.now ?? (() => performance.now())
  const topics = new Map<string, Set<TopicHandler>>()
  const model = new KvModel({ resolution: Math.min(100, options.sweepInterval ?? 100) })
  const kvBudget = options.kvBudget
  /** The model's bytes as last given to kvBudget. */
  let budgeted = 0
  /** Bring kvBudget to the model's bytes after a change. */
  const account = (): void => {
    if (kvBudget === undefined) return
    const delta = model.bytes - budgeted
    budgeted = model.bytes
    if (delta > 0) kvBudget.take(delta)
    else if (delta < 0) kvBudget.give(-delta)
  }
  const sides = new Map<string, Side>()
  let pairs = 0
  /** space → ns → id → holder; an emptied namespace is deleted. Maps, so any string is an ordinary id. */
  const claims: Record<ClaimSpace, Map<string, Map<string, Holder>>> = { peers: new Map(), signal: new Map() }
  /** Ids held per space, kept as they come and go (stats() is O(1)). */
  const held: Record<ClaimSpace, number> = { peers: 0, signal: 0 }

  const publish = (topic: string, message: Uint8Array): void => {
    const handlers = topics.get(topic)
    if (handlers !== undefined) for (const handler of handlers) handler(message)
  }
  const sweep = setInterval(() => {
    const changes = model.sweep(now())
    if (changes.length > 0) account()
    for (const change of changes) publish(topicOf('kv', change.ns), writeKvEvent(change))
  }, options.sweepInterval ?? 100)
  sweep.unref?.()

  const release = (side: Side, reason?: ErrorCode): void => {
    if (side.closed) return
    side.closed = true
    sides.delete(side.key)
    const peer = side.peer
    if (peer === null) return
    pairs--
    side.peer = null
    peer.peer = null
    peer.closed = true
    sides.delete(peer.key)
    peer.sink.closed(reason)
  }

  /** Remove a holder and publish its leave. */
  const remove = (space: ClaimSpace, ns: string, holder: Holder): void => {
    if (holder.timer !== null) clearTimeout(holder.timer)
    holder.timer = null
    const ids = claims[space].get(ns)
    if (ids?.get(holder.id) !== holder) return
    ids.delete(holder.id)
    held[space]--
    if (ids.size === 0) claims[space].delete(ns)
    if (space === 'peers') publish(topicOf('peers', ns), writePeersEvent(ns, 'leave', holder))
    else publish(topicOf('signal', ns), writeSignalLeave(ns, holder.id))
  }

  /** A handle on `holder` for one claim; it does nothing once a newer claim replaced it. */
  const handle = (space: ClaimSpace, ns: string, holder: Holder): Claim => {
    let released = false
    const claim: Claim = {
      update (meta) {
        if (released || holder.current !== claim) return
        holder.meta = meta
        holder.size = JSON.stringify(meta).length
        publish(topicOf('peers', ns), writePeersEvent(ns, 'update', holder))
      },
      * members (pageBytes): Generator<MemberPage, void, void> {
        const ids = claims[space].get(ns)
        if (ids === undefined) return yield { members: [], last: true }
        // Walks the live table. One member is read ahead to know whether a page is the last; it
        // is taken again, as it is then, when its page is read (skipped if it left meanwhile).
        const walk = ids.values()
        let ahead = walk.next()
        for (;;) {
          if (holder.current !== claim) return
          const members = []
          let bytes = 0
          while (ahead.done !== true && bytes < pageBytes) {
            const h = ahead.value
            if (ids.get(h.id) === h) {
              members.push({ id: h.id, meta: h.meta })
              bytes += h.size + h.id.length
            }
            ahead = walk.next()
          }
          holder.sink?.placed?.()
          const last = ahead.done === true
          yield { members, last }
          if (last) return
        }
      },
      release (graceMs) {
        if (released || holder.current !== claim) return
        released = true
        holder.sink = null
        if (graceMs > 0) {
          holder.timer = setTimeout(() => remove(space, ns, holder), graceMs)
          holder.timer.unref?.()
        } else {
          remove(space, ns, holder)
        }
      }
    }
    return claim
  }

  const claim = ({ space, ns, id, key, meta, maxPeers }: BrokerClaimRequest, sink: ClaimSink): Claimed => {
    let ids = claims[space].get(ns)
    let holder = ids?.get(id)
    if (holder !== undefined && holder.key !== key) throw new SignalyardError('peer-id-taken', `${id} is held by another client`)
    if (holder === undefined && (ids?.size ?? 0) >= maxPeers) {
      throw new SignalyardError('too-many-peers', `the namespace holds ${maxPeers} ids already`)
    }
    if (ids === undefined) claims[space].set(ns, ids = new Map())
    const previous = holder?.sink ?? null
    if (holder === undefined) {
      holder = { id, key, meta: meta ?? {}, size: JSON.stringify(meta ?? {}).length, sink, current: null, timer: null }
      ids.set(id, holder)
      held[space]++
    } else {
      if (holder.timer !== null) clearTimeout(holder.timer)
      holder.timer = null
      holder.sink = sink
      holder.meta = meta ?? {}
      holder.size = JSON.stringify(holder.meta).length
    }
    const current = holder.current = handle(space, ns, holder)
    previous?.taken()
    if (space === 'peers') publish(topicOf('peers', ns), writePeersEvent(ns, 'join', holder))
    return { claim: current }
  }

  return {
    subscribe (topic, handler) {
      let handlers = topics.get(topic)
      if (handlers === undefined) topics.set(topic, handlers = new Set())
      handlers.add(handler)
    },
    unsubscribe (topic, handler) {
      const handlers = topics.get(topic)
      handlers?.delete(handler)
      if (handlers?.size === 0) topics.delete(topic)
    },
    publish,

    kvSet ({ ns, key, kind, value, ttl, maxKeys, maxBytes, maxTotal }) {
      const total = Math.min(maxTotal, kvBudget?.limit ?? Infinity)
      const change = model.set(ns, key, kind, value, ttl, now(), { maxKeys, maxBytes, maxTotal: total })
      account()
      publish(topicOf('kv', ns), writeKvEvent(change))
      return change
    },
    kvDelete (ns, key) {
      const change = model.delete(ns, key)
      if (change !== null) {
        account()
        publish(topicOf('kv', ns), writeKvEvent(change))
      }
      return change
    },
    kvSnapshot (ns, since) { return model.snapshot(ns, since, now()) },
    kvScan (ns, since, pageBytes) { return model.pages(ns, since, now, pageBytes) },
    kvGet (ns, key) {
      const entry = model.get(ns, key, now())
      return entry === undefined ? null : { kind: entry.kind, value: entry.value, ttl: entry.expiresAt - now() }
    },

    relayOpen (ns, local, remote, sink): RelayOpened {
      const key = sideKey(ns, local, remote)
      if (sides.has(key)) throw new SignalyardError('relay-token-in-use', `relay tokens ${local} → ${remote} are in use`)
      const side: Side = { key, sink, peer: null, closed: false }
      sides.set(key, side)
      const waiting = sides.get(sideKey(ns, remote, local))
      if (waiting !== undefined && waiting !== side && waiting.peer === null) {
        side.peer = waiting
        waiting.peer = side
        pairs++
        waiting.sink.paired()
      }
      const link: RelayLink = {
        send (frame) { side.peer?.sink.data(frame) },
        ack (bytes) { side.peer?.sink.acked(bytes) },
        close (reason) { release(side, reason) }
      }
      return { link, paired: side.peer !== null }
    },

    claim,
    * members (space, ns, pageBytes): Generator<MemberPage, void, void> {
      // A copy of the table at the call: a reader that pauses between pages never sees it change under it.
      const all = [...claims[space].get(ns)?.values() ?? []]
      let i = 0
      do {
        const members = []
        for (let bytes = 0; i < all.length && bytes < pageBytes; i++) {
          members.push({ id: all[i].id, meta: all[i].meta })
          bytes += all[i].size + all[i].id.length
        }
        yield { members, last: i >= all.length }
      } while (i < all.length)
    },
    direct (ns, to, frame) {
      const holder = claims.signal.get(ns)?.get(to)
      if (holder === undefined) return false
      holder.sink?.data(frame)
      return true
    },

    stats () { return { kvKeys: model.size, kvBytes: model.bytes, relayPairs: pairs, peers: held.peers, signals: held.signal } },
    close () {
      clearInterval(sweep)
      kvBudget?.give(budgeted)
      budgeted = 0
      for (const space of [claims.peers, claims.signal]) {
        for (const ids of space.values()) for (const holder of ids.values()) if (holder.timer !== null) clearTimeout(holder.timer)
        space.clear()
      }
      held.peers = held.signal = 0
      topics.clear()
      for (const side of [...sides.values()]) release(side)
    },

    tables () {
      return { topics: topics.size, relaySides: sides.size, kvNamespaces: model.namespaceCount, peersNamespaces: claims.peers.size, signalNamespaces: claims.signal.size }
    }
  }
}

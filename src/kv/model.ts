/**
 * The expiring key-value model: pure state, no I/O, no timers (the caller passes `now` and calls
 * `sweep` from one interval). This is the server's source of truth for every namespace.
 *
 * - Writes are ordered by the model: each namespace has a counter `seq`; every set, delete and
 *   expiry takes the next value. Replicas keep the highest seq they saw per key, so they converge
 *   on the server's order whatever the clients' clocks say.
 * - Every entry expires. Entries sit in a timing wheel of `resolution`-wide slots; `sweep(now)`
 *   visits only the slots that came due since the last sweep, so its cost is the number of
 *   expired entries, not the number of keys. Overwriting moves an entry to its new slot.
 * - A namespace's state lives only while it holds keys. Its `epoch` is random per incarnation:
 *   a replica that presents another epoch (server restarted, namespace emptied) gets everything.
 */
import { nanoid } from 'nanoid'
import { SignalyardError } from '../protocol/errors.js'

export interface KvEntry {
  readonly ns: string
  readonly key: string
  readonly kind: number
  readonly value: Uint8Array
  readonly seq: number
  readonly expiresAt: number
}

/** One change, as broadcast to replicas. `ttl` is the time left in ms (replicas use their own clock). */
export type KvChange =
  | { op: 'set', ns: string, epoch: string, key: string, seq: number, kind: number, value: Uint8Array, ttl: number }
  | { op: 'delete' | 'expire', ns: string, epoch: string, key: string, seq: number }

export interface KvSnapshot {
  epoch: string
  seq: number
  /** Entries newer than the replica's seq (all entries when its epoch differs), as set changes. */
  changes: KvChange[]
  /** Every live key, so the replica can drop the ones that went away. */
  keys: string[]
}

interface Namespace { epoch: string, seq: number, entries: Map<string, KvEntry> }

export interface KvModelOptions {
  /** Width of one wheel slot in ms: expiry happens at most this long after its time (plus the sweep interval). */
  resolution?: number
  /** Makes a namespace epoch; random by default. */
  epoch?: () => string
}

export class KvModel {
  private readonly namespaces = new Map<string, Namespace>()
  private readonly wheel = new Map<number, Set<KvEntry>>()
  private readonly resolution: number
  private readonly makeEpoch: () => string
  private swept = -1
  private total = 0

  constructor (options: KvModelOptions = {}) {
    this.resolution = options.resolution ?? 100
    this.makeEpoch = options.epoch ?? (() => nanoid(12))
  }

  /** Number of keys across all namespaces. */
  get size (): number { return this.total }

  /** Number of namespaces holding keys. */
  get namespaceCount (): number { return this.namespaces.size }

  /** Keys held by one namespace. */
  count (ns: string): number { return this.namespaces.get(ns)?.entries.size ?? 0 }

  get (ns: string, key: string, now: number): KvEntry | undefined {
    const entry = this.namespaces.get(ns)?.entries.get(key)
    return entry !== undefined && entry.expiresAt > now ? entry : undefined
  }

  /**
   * Write a key; it lives `ttl` ms from `now`. Throws `too-many-keys` when a new key would take the
   * namespace past `maxKeys`.
   */
  set (ns: string, key: string, kind: number, value: Uint8Array, ttl: number, now: number, maxKeys = Infinity): KvChange {
    let space = this.namespaces.get(ns)
    const previous = space?.entries.get(key)
    if (previous === undefined && (space?.entries.size ?? 0) >= maxKeys) {
      throw new SignalyardError('too-many-keys', `namespace holds ${maxKeys} keys already`)
    }
    if (space === undefined) {
      space = { epoch: this.makeEpoch(), seq: 0, entries: new Map() }
      this.namespaces.set(ns, space)
    }
    if (previous !== undefined) this.unschedule(previous)
    else this.total++
    const entry: KvEntry = { ns, key, kind, value, seq: ++space.seq, expiresAt: now + ttl }
    space.entries.set(key, entry)
    this.schedule(entry)
    return { op: 'set', ns, epoch: space.epoch, key, seq: entry.seq, kind, value, ttl }
  }

  /** Remove a key; null when it was not there. */
  delete (ns: string, key: string): KvChange | null {
    const space = this.namespaces.get(ns)
    const entry = space?.entries.get(key)
    if (space === undefined || entry === undefined) return null
    this.unschedule(entry)
    return this.remove(space, entry, 'delete')
  }

  /** Expire every entry whose time has come; returns the changes to broadcast. */
  sweep (now: number): KvChange[] {
    const due = Math.floor(now / this.resolution)
    const changes: KvChange[] = []
    const expireSlot = (slot: number): void => {
      const entries = this.wheel.get(slot)
      if (entries === undefined) return
      this.wheel.delete(slot)
      for (const entry of entries) {
        const space = this.namespaces.get(entry.ns)
        if (space !== undefined) changes.push(this.remove(space, entry, 'expire'))
      }
    }
    if (this.swept < 0 || due - this.swept > this.wheel.size) {
      // The first sweep (any slot may be due already) or a long pause (visiting every slot in
      // between would cost more than visiting the wheel): look at the slots the wheel holds.
      for (const slot of [...this.wheel.keys()]) if (slot <= due) expireSlot(slot)
    } else {
      for (let slot = this.swept + 1; slot <= due; slot++) expireSlot(slot)
    }
    this.swept = Math.max(this.swept, due)
    return changes
  }

  /**
   * What a replica needs to catch up. With the current epoch it gets only entries newer than its
   * seq; otherwise it gets every entry. Expired-but-unswept entries are left out.
   */
  snapshot (ns: string, since: { epoch: string, seq: number } | null, now: number): KvSnapshot {
    const space = this.namespaces.get(ns)
    if (space === undefined) return { epoch: '', seq: 0, changes: [], keys: [] }
    const { epoch } = space
    const from = since !== null && since.epoch === epoch ? since.seq : 0
    const changes: KvChange[] = []
    const keys: string[] = []
    for (const { key, seq, kind, value, expiresAt } of space.entries.values()) {
      if (expiresAt <= now) continue
      keys.push(key)
      if (seq > from) changes.push({ op: 'set', ns, epoch, key, seq, kind, value, ttl: Math.max(1, Math.round(expiresAt - now)) })
    }
    return { epoch, seq: space.seq, changes, keys }
  }

  private remove (space: Namespace, entry: KvEntry, op: 'delete' | 'expire'): KvChange {
    space.entries.delete(entry.key)
    this.total--
    const seq = ++space.seq
    if (space.entries.size === 0) this.namespaces.delete(entry.ns)
    return { op, ns: entry.ns, epoch: space.epoch, key: entry.key, seq }
  }

  private slotOf (entry: KvEntry): number {
    return Math.ceil(entry.expiresAt / this.resolution)
  }

  private schedule (entry: KvEntry): void {
    const slot = this.slotOf(entry)
    let entries = this.wheel.get(slot)
    if (entries === undefined) this.wheel.set(slot, entries = new Set())
    entries.add(entry)
  }

  private unschedule (entry: KvEntry): void {
    const slot = this.slotOf(entry)
    const entries = this.wheel.get(slot)
    if (entries === undefined) return
    entries.delete(entry)
    if (entries.size === 0) this.wheel.delete(slot)
  }
}

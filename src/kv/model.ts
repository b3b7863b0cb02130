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
 * - Every entry costs `kvEntryBytes` (key and value bytes plus KV_ENTRY_COST); the model keeps the
 *   sum per namespace and in all, so a write can be refused past a namespace's or the yard's bound.
 * - A snapshot can be read in pages (`pages`), so a big namespace is sent a bounded part at a time.
 */
import { nanoid } from 'nanoid'
import { SignalyardError } from '../protocol/errors.js'
import type { KvChange } from '../protocol/kv.js'

export interface KvEntry {
  readonly ns: string
  readonly key: string
  readonly kind: number
  readonly value: Uint8Array
  readonly seq: number
  readonly expiresAt: number
}

export type { KvChange }

export interface KvSnapshot {
  epoch: string
  seq: number
  /** Entries newer than the replica's seq (all entries when its epoch differs), as set changes. */
  changes: KvChange[]
  /** Every live key, so the replica can drop the ones that went away. */
  keys: string[]
}

/** One page of a namespace read a part at a time (see KvModel.pages and Broker.kvScan). */
export interface KvPage {
  /** The namespace's epoch and seq when the page was read ('' and 0: it held nothing). */
  epoch: string
  seq: number
  /** The page's entries newer than the replica's seq (all of them when its epoch differs), as set changes. */
  changes: KvChange[]
  /** The page's live keys. */
  keys: string[]
}

/** Bounds on a write (absent: unbounded). */
export interface KvBounds {
  /** Keys one namespace may hold (`too-many-keys`). */
  maxKeys?: number
  /** Bytes (kvEntryBytes) one namespace may hold (`quota-exceeded`). */
  maxBytes?: number
  /** Bytes all namespaces together may hold (`quota-exceeded`). */
  maxTotal?: number
}

/**
 * What an entry costs beyond its key's and value's bytes, about what the in-memory broker holds
 * for it (its record object, its slots in the namespace map and the expiry wheel, the value's
 * array header) and its writer's ledger entry: so the bounds hold for a flood of tiny keys too.
 */
export const KV_ENTRY_COST = 256

const utf8 = new TextEncoder()

/**
 * The bytes an entry counts against the KV bounds: its key (UTF-8) and value bytes plus
 * KV_ENTRY_COST. The Redis broker's scripts count the same way.
 *
 * @example
 * kvEntryBytes('k', new Uint8Array(10)) // 75
 */
export function kvEntryBytes (key: string, valueBytes: number): number {
  let n = key.length
  // UTF-8 length without encoding ASCII-only keys (the common case)
  for (let i = 0; i < key.length; i++) {
    if (key.charCodeAt(i) > 0x7f) { n = utf8.encode(key).length; break }
  }
  return n + valueBytes + KV_ENTRY_COST
}

interface Namespace { epoch: string, seq: number, bytes: number, entries: Map<string, KvEntry> }

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
  private totalBytes = 0

  constructor (options: KvModelOptions = {}) {
    this.resolution = options.resolution ?? 100
    this.makeEpoch = options.epoch ?? (() => nanoid(12))
  }

  /** Number of keys across all namespaces. */
  get size (): number { return this.total }

  /** Bytes (kvEntryBytes) held across all namespaces. */
  get bytes (): number { return this.totalBytes }

  /** Bytes held by one namespace. */
  bytesOf (ns: string): number { return this.namespaces.get(ns)?.bytes ?? 0 }

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
   * namespace past `bounds.maxKeys`, `quota-exceeded` when the write would take the namespace past
   * `bounds.maxBytes` or the model past `bounds.maxTotal` (an overwrite counts its growth only).
   */
  set (ns: string, key: string, kind: number, value: Uint8Array, ttl: number, now: number, bounds: KvBounds = {}): KvChange {
    const { maxKeys = Infinity, maxBytes = Infinity, maxTotal = Infinity } = bounds
    let space = this.namespaces.get(ns)
    const previous = space?.entries.get(key)
    if (previous === undefined && (space?.entries.size ?? 0) >= maxKeys) {
      throw new SignalyardError('too-many-keys', `namespace holds ${maxKeys} keys already`)
    }
    const size = kvEntryBytes(key, value.length)
    const growth = size - (previous === undefined ? 0 : kvEntryBytes(key, previous.value.length))
    if (growth > 0 && (space?.bytes ?? 0) + growth > maxBytes) {
      throw new SignalyardError('quota-exceeded', `the namespace may hold ${maxBytes} bytes of keys and values`)
    }
    if (growth > 0 && this.totalBytes + growth > maxTotal) {
      throw new SignalyardError('quota-exceeded', 'the server holds as many KV bytes as it may')
    }
    if (space === undefined) {
      space = { epoch: this.makeEpoch(), seq: 0, bytes: 0, entries: new Map() }
      this.namespaces.set(ns, space)
    }
    if (previous !== undefined) this.unschedule(previous)
    else this.total++
    space.bytes += growth
    this.totalBytes += growth
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

  /**
   * The snapshot of `ns` a page at a time: each page holds entries of about `pageBytes` bytes
   * (at least one entry), read when it is asked for (`clock()` then), so a caller can send one page,
   * let other work run, and ask for the next. The pages walk the namespace's live entry table:
   * an entry changed before its turn is read as it is then, one deleted before its turn is not
   * read, one added meanwhile comes last. Only the namespace as it was at the first page is
   * walked; when it empties (and a new epoch begins) the pages end. The first page is there even
   * for an empty namespace (epoch '').
   */
  * pages (ns: string, since: { epoch: string, seq: number } | null, clock: () => number, pageBytes: number): Generator<KvPage, void, void> {
    const space = this.namespaces.get(ns)
    if (space === undefined) {
      yield { epoch: '', seq: 0, changes: [], keys: [] }
      return
    }
    const { epoch } = space
    const from = since !== null && since.epoch === epoch ? since.seq : 0
    const entries = space.entries.values()
    let done = false
    while (!done) {
      const now = clock()
      const changes: KvChange[] = []
      const keys: string[] = []
      let bytes = 0
      while (bytes < pageBytes) {
        const next = entries.next()
        if (next.done === true) { done = true; break }
        const { key, seq, kind, value, expiresAt } = next.value
        if (expiresAt <= now) continue
        keys.push(key)
        bytes += kvEntryBytes(key, 0)
        if (seq > from) {
          changes.push({ op: 'set', ns, epoch, key, seq, kind, value, ttl: Math.max(1, Math.round(expiresAt - now)) })
          bytes += value.length
        }
      }
      const current = this.namespaces.get(ns)
      yield { epoch: current?.epoch ?? '', seq: current?.seq ?? 0, changes, keys }
    }
  }

  private remove (space: Namespace, entry: KvEntry, op: 'delete' | 'expire'): KvChange {
    space.entries.delete(entry.key)
    const size = kvEntryBytes(entry.key, entry.value.length)
    space.bytes -= size
    this.totalBytes -= size
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

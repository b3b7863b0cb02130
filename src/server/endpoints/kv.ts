/**
 * kv: the expiring key-value store. OPEN subscribes the connection to the namespace's changes and
 * then sends the snapshot a page at a time, paced by the asker (pace.ts): per page, EVENT frames
 * for the entries the replica lacks and DATA `{ keys }` for the page's live keys; the last page's
 * keys come in OPENED with the epoch and seq, so the replica holds the server's state when
 * ready() resolves. Requests `set` and `delete` are answered with REPLY (seq) after the broker has
 * ordered and published them; a set is refused (`quota-exceeded`) past the namespace's, the
 * yard's or the connection's KV bytes (kv.maxBytes, total.kv, kv.maxOwnedBytes).
 */
import { kvEntryBytes, type KvPage } from '../../kv/model.js'
import { kvOpenedMeta, kvReplyMeta, writeKvEvent, writeKvKeys, type OpenKv, type KvRequest } from '../../protocol/kv.js'
import { SignalyardError } from '../../protocol/errors.js'
import { topicOf } from '../brokers/types.js'
import type { Connection } from '../connection.js'
import type { OpenHandler, ServerContext, ServerStream } from '../context.js'
import { PAGE_BYTES, pace } from './pace.js'

/**
 * The live keys one connection wrote (kv.maxOwnedBytes): bytes per key until the key's expiry,
 * until the connection deletes or overwrites it, or until the connection goes. Deadlines sit in
 * SLOT-wide slots visited as they come due (no timer per key, no scan of every key); the current
 * slot is looked at again until it has passed, so a key counts no longer than its TTL. It holds one
 * record per live key a connection wrote, so it is kept small: records are grouped by namespace and
 * share the key strings the store holds (no id string made per key).
 */
class Ledger {
  /** Bytes owned, plus those of sets still waiting for the broker. */
  bytes = 0
  private readonly owned = new Map<string, Map<string, Owned>>()
  private readonly slots = new Map<number, Set<Owned>>()
  private swept = -1

  /** Bytes `key` of `ns` counts now (0 when not owned). */
  of (ns: string, key: string): number { return this.owned.get(ns)?.get(key)?.bytes ?? 0 }

  /** Own `key` of `ns` with `bytes` until `until` (monotonic ms), replacing what it counted. */
  hold (ns: string, key: string, bytes: number, until: number): void {
    this.release(ns, key)
    const record: Owned = { ns, key, bytes, until }
    let keys = this.owned.get(ns)
    if (keys === undefined) this.owned.set(ns, keys = new Map())
    keys.set(key, record)
    const slot = Math.floor(until / SLOT)
    const records = this.slots.get(slot)
    if (records === undefined) this.slots.set(slot, new Set([record]))
    else records.add(record)
    this.bytes += bytes
  }

  /** Stop counting `key` of `ns`. */
  release (ns: string, key: string): void {
    const keys = this.owned.get(ns)
    const record = keys?.get(key)
    if (keys === undefined || record === undefined) return
    keys.delete(key)
    if (keys.size === 0) this.owned.delete(ns)
    this.bytes -= record.bytes
    const slot = Math.floor(record.until / SLOT)
    const records = this.slots.get(slot)
    records?.delete(record)
    if (records?.size === 0) this.slots.delete(slot)
  }

  /** Let go of the keys whose deadline has come by `now`. */
  expire (now: number): void {
    const due = Math.floor(now / SLOT)
    const visit = (slot: number): void => {
      const records = this.slots.get(slot)
      if (records === undefined) return
      for (const record of records) if (record.until <= now) this.release(record.ns, record.key)
    }
    if (this.swept < 0 || due - this.swept > this.slots.size) {
      for (const slot of [...this.slots.keys()]) if (slot <= due) visit(slot)
    } else {
      for (let slot = this.swept + 1; slot <= due; slot++) visit(slot)
    }
    this.swept = Math.max(this.swept, due - 1)
  }
}

/** What a ledger keeps for one key it counts. */
interface Owned { readonly ns: string, readonly key: string, readonly bytes: number, readonly until: number }

/** Width of a ledger slot, in ms. */
const SLOT = 100

/** Ledgers of the connections that wrote keys, kept aside (most connections never write). */
const ledgers = new WeakMap<Connection, Ledger>()

/** One kv stream. A class, not closures: an idle server holds thousands of these. */
class KvStream implements ServerStream {
  constructor (private readonly conn: Connection, private readonly sid: number, readonly ns: string) {}

  private get ctx (): ServerContext { return this.conn.ctx }

  async request (frame: KvRequest): Promise<void> {
    const { ctx: { broker, limits, budgets }, conn, sid, ns } = this
    if (frame.op === 'delete') {
      const change = await broker.kvDelete(ns, frame.key)
      ledgers.get(conn)?.release(ns, frame.key)
      return conn.reply(sid, kvReplyMeta(frame.req, change?.seq ?? null, change?.epoch ?? null))
    }
    const { kind, payload } = frame.raw
    if (payload.length > limits.kv.maxValue) {
      throw new SignalyardError('payload-too-large', `KV values are limited to ${limits.kv.maxValue} bytes`)
    }
    const ttl = Math.min(frame.ttl ?? limits.kv.defaultTtl, limits.kv.maxTtl)
    const size = kvEntryBytes(frame.key, payload.length)
    let ledger = ledgers.get(conn)
    if (ledger === undefined) ledgers.set(conn, ledger = new Ledger())
    ledger.expire(performance.now())
    // Held while the broker answers, so sets in flight together cannot pass the bound together.
    const growth = Math.max(0, size - ledger.of(ns, frame.key))
    if (growth > 0 && ledger.bytes + growth > limits.kv.maxOwnedBytes) {
      throw new SignalyardError('quota-exceeded', `one connection may own ${limits.kv.maxOwnedBytes} bytes of live KV keys`)
    }
    ledger.bytes += growth
    // The value must outlive this frame's buffer: copy it out of the received message (the
    // payload may be a Buffer, whose slice() is a view, not a copy).
    const value = new Uint8Array(payload)
    const start = performance.now()
    let change
    try {
      change = await broker.kvSet({
        ns, key: frame.key, kind, value, ttl,
        maxKeys: limits.kv.maxKeys, maxBytes: limits.kv.maxBytes, maxTotal: budgets.kv.limit
      })
    } finally {
      ledger.bytes -= growth
    }
    ledger.hold(ns, frame.key, size, start + ttl)
    conn.reply(sid, kvReplyMeta(frame.req, change.seq, change.epoch, ttl))
  }

  close (): void {
    this.ctx.hub.unsubscribe(topicOf('kv', this.ns), this.conn)
  }
}

export const openKv: OpenHandler<OpenKv> = async (ctx, conn, { sid, ns, since }) => {
  await ctx.hub.subscribe(topicOf('kv', ns), conn)
  const stream = new KvStream(conn, sid, ns)
  try {
    let first: KvPage | null = null
    let last: KvPage | null = null
    for await (const page of ctx.broker.kvScan(ns, since, PAGE_BYTES)) {
      // The keys of the page before go now; the last page's go in OPENED.
      if (last !== null) {
        if (!await pace(conn)) return stream
        if (last.keys.length > 0) conn.send(writeKvKeys(sid, last.keys))
      }
      first ??= page
      last = page
      for (const change of page.changes) conn.send(writeKvEvent(change))
    }
    if (first === null || last === null) throw new Error('kvScan gave no page')
    // Consistent as of the first page (changes since came as EVENTs); if the namespace was emptied
    // meanwhile, its new incarnation came whole as EVENTs, so the replica starts it from seq 0.
    const { epoch, seq } = first.epoch === last.epoch ? first : { epoch: last.epoch, seq: 0 }
    conn.opened(sid, kvOpenedMeta(conn.streamId(sid), epoch, seq, last.keys))
  } catch (err) {
    stream.close()
    throw err
  }
  return stream
}

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
import { writeFrame } from '../../protocol/codec.js'
import { writeKvEvent } from '../../protocol/events.js'
import { SignalyardError } from '../../protocol/errors.js'
import { FrameType, type OpenKv, type RequestFrame } from '../../protocol/frames.js'
import { topicOf } from '../brokers/types.js'
import type { Connection, OpenHandler, ServerContext, ServerStream } from '../connection.js'
import { PAGE_BYTES, pace } from './pace.js'

/**
 * The live keys one connection wrote (kv.maxOwnedBytes): bytes per key until the key's expiry,
 * until the connection deletes or overwrites it, or until the connection goes. Deadlines sit in
 * SLOT-wide slots visited as they come due (no timer per key, no scan of every key); the current
 * slot is looked at again until it has passed, so a key counts no longer than its TTL.
 */
class Ledger {
  /** Bytes owned, plus those of sets still waiting for the broker. */
  bytes = 0
  private readonly owned = new Map<string, { bytes: number, slot: number, until: number }>()
  private readonly slots = new Map<number, Set<string>>()
  private swept = -1

  /** Bytes `id` counts now (0 when not owned). */
  of (id: string): number { return this.owned.get(id)?.bytes ?? 0 }

  /** Own `id` with `bytes` until `until` (monotonic ms), replacing what it counted. */
  hold (id: string, bytes: number, until: number): void {
    this.release(id)
    const slot = Math.floor(until / SLOT)
    this.owned.set(id, { bytes, slot, until })
    let ids = this.slots.get(slot)
    if (ids === undefined) this.slots.set(slot, ids = new Set())
    ids.add(id)
    this.bytes += bytes
  }

  /** Stop counting `id`. */
  release (id: string): void {
    const entry = this.owned.get(id)
    if (entry === undefined) return
    this.owned.delete(id)
    this.bytes -= entry.bytes
    const ids = this.slots.get(entry.slot)
    ids?.delete(id)
    if (ids?.size === 0) this.slots.delete(entry.slot)
  }

  /** Drop the keys whose time has passed by `now`. */
  expire (now: number): void {
    const due = Math.floor(now / SLOT)
    const visit = (slot: number): void => {
      const ids = this.slots.get(slot)
      if (ids === undefined) return
      for (const id of ids) if ((this.owned.get(id)?.until ?? Infinity) <= now) this.release(id)
    }
    if (this.swept < 0 || due - this.swept > this.slots.size) {
      for (const slot of [...this.slots.keys()]) if (slot <= due) visit(slot)
    } else {
      for (let slot = this.swept + 1; slot <= due; slot++) visit(slot)
    }
    this.swept = Math.max(this.swept, due - 1)
  }
}

/** Width of a ledger slot, in ms. */
const SLOT = 100

/** Ledgers of the connections that wrote keys, kept aside (most connections never write). */
const ledgers = new WeakMap<Connection, Ledger>()

/** One kv stream. A class, not closures: an idle server holds thousands of these. */
class KvStream implements ServerStream {
  constructor (private readonly conn: Connection, private readonly sid: number, readonly ns: string) {}

  private get ctx (): ServerContext { return this.conn.ctx }

  /** The ledger's name for a key of this namespace. */
  private owned (key: string): string { return `${this.ns.length}:${this.ns}${key}` }

  async request (frame: RequestFrame): Promise<void> {
    const { ctx: { broker, limits, budgets }, conn, sid, ns } = this
    if (frame.op === 'delete') {
      const change = await broker.kvDelete(ns, frame.key)
      ledgers.get(conn)?.release(this.owned(frame.key))
      return conn.reply(sid, { req: frame.req, seq: change?.seq ?? null, epoch: change?.epoch ?? null })
    }
    const { kind, payload } = frame.raw
    if (payload.length > limits.kv.maxValue) {
      throw new SignalyardError('payload-too-large', `KV values are limited to ${limits.kv.maxValue} bytes`)
    }
    const ttl = Math.min(frame.ttl ?? limits.kv.defaultTtl, limits.kv.maxTtl)
    const id = this.owned(frame.key)
    const size = kvEntryBytes(frame.key, payload.length)
    let ledger = ledgers.get(conn)
    if (ledger === undefined) ledgers.set(conn, ledger = new Ledger())
    ledger.expire(performance.now())
    // Held while the broker answers, so sets in flight together cannot pass the bound together.
    const growth = Math.max(0, size - ledger.of(id))
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
    ledger.hold(id, size, start + ttl)
    conn.reply(sid, { req: frame.req, seq: change.seq, epoch: change.epoch, ttl })
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
        if (last.keys.length > 0) conn.send(writeFrame(FrameType.Data, sid, { keys: last.keys }))
      }
      first ??= page
      last = page
      for (const change of page.changes) conn.send(writeKvEvent(change))
    }
    if (first === null || last === null) throw new Error('kvScan gave no page')
    // Consistent as of the first page (changes since came as EVENTs); if the namespace was emptied
    // meanwhile, its new incarnation came whole as EVENTs, so the replica starts it from seq 0.
    const { epoch, seq } = first.epoch === last.epoch ? first : { epoch: last.epoch, seq: 0 }
    conn.opened(sid, { id: `${conn.id}.${sid}`, epoch, seq, keys: last.keys })
  } catch (err) {
    stream.close()
    throw err
  }
  return stream
}

/**
 * kv: a local replica of a namespace's expiring key-value state.
 *
 * The server orders every write (seq per namespace, epoch per incarnation); the replica keeps the
 * seq it saw per key and applies a change only when it is newer, so every replica converges on the
 * server's state whatever the clocks say. After a reconnect it presents { epoch, seq } and gets
 * only what it lacks plus the list of live keys; keys that went away while it was offline are
 * deleted ('expired' when their time had come by the replica's own clock, else 'deleted').
 *
 * A big namespace's snapshot comes in pages before OPENED (EVENT sets, DATA `{ keys }`), while
 * live changes keep coming: the replica collects the pages' keys and remembers the deletes it saw
 * meanwhile, so an older snapshot entry never brings back a key deleted since.
 * Deadlines use the monotonic clock (performance.now()): a wall-clock step changes nothing.
 */
import type { RawFrame } from '../protocol/codec.js'
import { encodePayload, writeFrame } from '../protocol/codec.js'
import { readKvEvent, readKvKeys, readKvOpened, readKvReply } from '../protocol/kv.js'
import { SignalyardError } from '../protocol/errors.js'
import { FrameType, NAME_MAX, isName } from '../protocol/frames.js'
import { errorFromMeta, type YardSocket } from './socket.js'
import { Requests, Stream, type StreamEvents, type Waiting, UNDECODABLE } from './stream.js'

export type DeleteReason = 'deleted' | 'expired'

export interface KvEvents<V = unknown> extends StreamEvents {
  /** A key was set (by anyone, this replica included). */
  update: [key: string, value: V]
  /** A key went away. */
  delete: [key: string, reason: DeleteReason]
  /** The replica holds the server's state (first sync and every resync). */
  sync: []
}

interface Entry { value: unknown, seq: number, epoch: string, deadline: number }
interface Pending extends Waiting { frame: Uint8Array, sent: boolean, key: string, value?: unknown }

/** Grace, in ms, for telling an expiry from a delete by the replica's own clock at resync. */
const EXPIRY_SLACK = 1000

/**
 * A KV replica (from `channel.kv()`).
 *
 * @example
 * const kv = channel.kv()
 * kv.on('update', (key, value) => console.log(key, value))
 * kv.on('delete', (key, reason) => console.log(key, reason))   // 'deleted' | 'expired'
 * await kv.ready()                  // holds the namespace's current state
 * await kv.set('cursor', { x: 1 }, { ttl: 10_000 })
 * kv.get('cursor')                  // { x: 1 }
 */
export class KvStream<V = unknown> extends Stream<KvEvents<V>> {
  private readonly entries = new Map<string, Entry>()
  private epoch = ''
  private seq = 0
  private readonly pending = new Requests<Pending>()
  /** While opening: the live keys the snapshot's pages listed so far. */
  private listed = new Set<string>()
  /** While opening: deletes seen for keys the replica did not hold (newer than any snapshot entry of theirs). */
  private tombs = new Map<string, { seq: number, epoch: string }>()

  constructor (socket: YardSocket, namespace: string) {
    super(socket, namespace, 'kv')
    this.attach()
  }

  /** The value of a key, or undefined. */
  get (key: string): V | undefined { return this.entries.get(key)?.value as V | undefined }
  has (key: string): boolean { return this.entries.has(key) }
  keys (): string[] { return [...this.entries.keys()] }
  /** The replica as a plain object (`__proto__` and friends are ordinary keys). */
  toJSON (): Record<string, V> {
    return Object.fromEntries([...this.entries].map(([key, e]) => [key, e.value])) as Record<string, V>
  }

  /**
   * Write a key; resolves once the server accepted (and ordered) it. `ttl` in ms defaults to the
   * server's kv.defaultTtl and is capped at kv.maxTtl. Writing a key again refreshes its TTL.
   */
  set (key: string, value: V, options: { ttl?: number } = {}): Promise<void> {
    const { ttl } = options
    if (ttl !== undefined && (!Number.isInteger(ttl) || ttl <= 0)) {
      return Promise.reject(new SignalyardError('bad-request', 'ttl must be a positive integer of milliseconds'))
    }
    return this.request({ op: 'set', key, ...(ttl === undefined ? {} : { ttl }) }, key, value, true)
  }

  /** Delete a key; resolves once the server applied it (also when the key did not exist). */
  delete (key: string): Promise<void> {
    return this.request({ op: 'delete', key }, key, undefined, false)
  }

  private request (meta: { op: string, key: string, ttl?: number }, key: string, value: unknown, withValue: boolean): Promise<void> {
    if (this.state === 'closed') return Promise.reject(new SignalyardError('stream-closed', 'kv stream is closed'))
    if (!isName(key)) {
      return Promise.reject(new SignalyardError('bad-request', `key must be a well-formed string of 1..${NAME_MAX} characters`))
    }
    const req = this.pending.number()
    let frame: Uint8Array
    try {
      frame = writeFrame(FrameType.Request, this.sid, { ...meta, req }, withValue ? encodePayload(value) : undefined)
    } catch (err) {
      return Promise.reject(new SignalyardError('bad-request', `cannot encode value: ${(err as Error).message}`))
    }
    return new Promise((resolve, reject) => {
      const pending: Pending = { resolve, reject, frame, sent: false, key, value }
      try {
        pending.sent = this.socket.send(this.sid, frame)
      } catch (err) {
        reject(err as SignalyardError)
        return
      }
      this.pending.add(req, pending)
    })
  }

  protected override openMeta (): object {
    this.listed = new Set()
    this.tombs = new Map()
    return this.epoch === '' ? {} : { epoch: this.epoch, seq: this.seq }
  }

  override socketOpened (): void {
    super.socketOpened()
    // Requests that were on the wire when the socket died go again, before anything queued later.
    for (const p of this.pending.values()) {
      if (p.sent) this.socket.control(p.frame)
      else p.sent = true // still in the socket's queue, which is flushed next
    }
  }

  protected override opened (meta: Record<string, unknown>): void {
    const { epoch, seq } = readKvOpened(meta)
    const live = this.listed
    for (const key of readKvKeys(meta)) live.add(key)
    this.listed = new Set()
    this.tombs = new Map()
    const now = performance.now()
    for (const [key, entry] of this.entries) {
      if (live.has(key) || (entry.epoch === epoch && entry.seq > seq)) continue
      this.entries.delete(key)
      this.emit('delete', key, entry.deadline <= now + EXPIRY_SLACK ? 'expired' : 'deleted')
    }
    this.epoch = epoch
    this.seq = seq
    this.emit('sync')
    super.opened(meta)
  }

  /** A page of the snapshot's live keys (DATA `{ keys }` before OPENED). */
  protected override data (frame: RawFrame): void {
    if (this.state !== 'opening') return
    for (const key of readKvKeys(frame.meta)) this.listed.add(key)
  }

  /** @internal */
  override event (frame: RawFrame): void {
    if (this.state === 'closed') return
    const change = readKvEvent(frame)
    if (change === null) return
    if (change.op === 'set') {
      const value = this.decode(frame.kind, frame.payload)
      if (value !== UNDECODABLE) this.applySet(change.key, value, change.seq, change.epoch, change.ttl)
    } else {
      this.applyDelete(change.key, change.seq, change.epoch, change.op === 'expire' ? 'expired' : 'deleted')
    }
  }

  protected override reply (meta: Record<string, unknown>): void {
    const p = this.pending.take(meta)
    if (p === undefined) return
    // The broadcast of our own write may come after the reply (a broker across processes):
    // apply it now so the replica shows the write when set() resolves.
    const change = readKvReply(meta)
    if (change !== null) {
      if (change.ttl !== null) this.applySet(p.key, p.value, change.seq, change.epoch, change.ttl)
      else this.applyDelete(p.key, change.seq, change.epoch, 'deleted')
    }
    p.resolve()
  }

  protected override failedRequest (meta: Record<string, unknown>): void {
    const p = this.pending.take(meta)
    if (p === undefined) return super.failedRequest(meta)
    p.reject(errorFromMeta(meta))
  }

  protected override finish (error?: SignalyardError): void {
    const pending = this.pending.drain()
    super.finish(error)
    for (const p of pending) p.reject(error ?? new SignalyardError('stream-closed', 'kv stream closed before the server answered'))
  }

  private newer (key: string, seq: number, epoch: string): boolean {
    const entry = this.entries.get(key)
    return entry === undefined || entry.epoch !== epoch || entry.seq < seq
  }

  private applySet (key: string, value: unknown, seq: number, epoch: string, ttl: number): void {
    this.advance(seq, epoch)
    if (!this.newer(key, seq, epoch)) return
    const tomb = this.tombs.get(key)
    if (tomb !== undefined && tomb.epoch === epoch && tomb.seq > seq) return
    this.entries.set(key, { value, seq, epoch, deadline: performance.now() + (Number.isFinite(ttl) ? ttl : 0) })
    this.emit('update', key, value as V)
  }

  private applyDelete (key: string, seq: number, epoch: string, reason: 'deleted' | 'expired'): void {
    const entry = this.entries.get(key)
    this.advance(seq, epoch)
    if (this.state === 'opening' && (entry === undefined || entry.epoch !== epoch || entry.seq < seq)) {
      const tomb = this.tombs.get(key)
      if (tomb === undefined || tomb.epoch !== epoch || tomb.seq < seq) this.tombs.set(key, { seq, epoch })
    }
    if (entry === undefined || (entry.epoch === epoch && entry.seq >= seq)) return
    this.entries.delete(key)
    this.emit('delete', key, reason)
  }

  /**
   * Move the replica's catch-up point forward over contiguous changes of its epoch. The first
   * change of a new incarnation (seq 1: the namespace was empty, or the replica joined it empty)
   * starts the count in that epoch, so a later resync asks only for what came after.
   */
  private advance (seq: number, epoch: string): void {
    if (epoch === this.epoch) {
      if (seq === this.seq + 1) this.seq = seq
    } else if (seq === 1) {
      this.epoch = epoch
      this.seq = 1
    }
  }
}

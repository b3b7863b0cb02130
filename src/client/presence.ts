/**
 * createPeers: presence in a namespace. A client joins under an id it owns (proved by a random
 * owner key it presents again after every reconnect, so it reclaims its id at once) and sees the
 * other members come, change and go. The member list is resynced after each reconnect and the
 * differences become 'join' / 'update' / 'leave' events, so a blip is invisible when nothing changed.
 *
 * The list comes in pages before OPENED (DATA `{ peers }`, the last page in OPENED), with the
 * changes made meanwhile in between (DATA `{ op, id, meta }`): the stream applies both in the order
 * they come to the list it is building, and diffs the result against what it knew at OPENED.
 */
import { EventEmitter } from 'eventemitter3'
import { nanoid } from 'nanoid'
import { writeFrame, type RawFrame } from '../protocol/codec.js'
import { SignalyardError } from '../protocol/errors.js'
import { FrameType, NAME_MAX, isName } from '../protocol/frames.js'
import { readPresenceChange, readPresencePage, type PresenceMember } from '../protocol/peers.js'
import { errorFromMeta, type YardSocket } from './socket.js'
import { Requests, Stream, type StreamEvents, type Waiting } from './stream.js'

/** A member's presence record: its id and whatever meta it joined with. */
export type PeerMeta = { id: string } & Record<string, unknown>

export interface PeersEvents {
  /** A peer appeared (also fired for each peer already present when you join). */
  join: [meta: PeerMeta]
  /** A peer joined again with new meta. */
  update: [meta: PeerMeta]
  /** A peer left (or its connection died). */
  leave: [meta: PeerMeta]
  /** A coded error, for example `peer-id-taken` when the id was claimed by its owner elsewhere. */
  error: [error: SignalyardError]
}

interface KnownPeer { meta: PeerMeta, json: string }

/**
 * The peers stream itself; Peers drives it. It keeps two metas: `wanted` (the latest the app asked
 * for, carried by the next OPEN) and `meta` (what the server accepted, shown as `self`). A refused
 * update rolls `wanted` back, so a later reconnect never re-sends a meta the server refused.
 */
class PresenceStream extends Stream<StreamEvents> {
  private readonly requests = new Requests<Waiting & { meta: Meta }>()
  private wanted: Meta
  /** The meta the last OPEN carried. */
  private sent: Meta | null = null
  /** While opening: the member list being built from pages and changes, by id. */
  private listing = new Map<string, PresenceMember>()

  constructor (
    socket: YardSocket, namespace: string,
    readonly peerId: string, private readonly key: string, public meta: Meta,
    private readonly owner: Peers
  ) {
    super(socket, namespace, 'peers')
    this.wanted = meta
    this.attach()
  }

  protected override openMeta (): object {
    this.listing = new Map()
    this.sent = this.wanted
    return { id: this.peerId, key: this.key, meta: this.wanted.value }
  }

  protected override opened (meta: Record<string, unknown>): void {
    if (this.sent !== null) this.meta = this.sent
    this.list(readPresencePage(meta))
    const members = [...this.listing.values()]
    this.listing = new Map()
    this.owner.snapshot(members)
    super.opened(meta)
  }

  /** Before OPENED: a page of the member list, or a change made since the pages began. */
  protected override data (frame: RawFrame): void {
    if (this.state !== 'opening') return
    const m = frame.meta ?? {}
    const page = readPresencePage(m)
    if (page !== null) return this.list(page)
    const change = readPresenceChange(m)
    if (change === null) return
    if (change.op === 'leave') this.listing.delete(change.id)
    else this.listing.set(change.id, change)
  }

  private list (page: PresenceMember[] | null): void {
    for (const member of page ?? []) this.listing.set(member.id, member)
  }

  /** @internal */
  override event (frame: RawFrame): void {
    if (this.state !== 'open') return
    this.owner.change(frame.meta ?? {})
  }

  /**
   * Change the meta: a REQUEST update when open. While opening, it waits for OPENED and sends the
   * update only if the OPEN that got through carried an older meta.
   */
  update (meta: Meta): Promise<void> {
    this.wanted = meta
    if (this.state === 'open') return this.request(meta)
    return this.nextOpen().then(() => this.meta.json === this.wanted.json ? undefined : this.request(this.wanted))
  }

  /** The next OPENED (ready() resolves at once once the stream ever opened). */
  private nextOpen (): Promise<void> {
    if (this.state === 'closed') return this.ready()
    return new Promise((resolve, reject) => {
      const opened = (): void => { this.off('close', closed); resolve() }
      const closed = (error?: SignalyardError): void => {
        this.off('open', opened)
        reject(error ?? new SignalyardError('stream-closed', 'left before the update was sent'))
      }
      this.once('open', opened)
      this.once('close', closed)
    })
  }

  private request (meta: Meta): Promise<void> {
    if (this.state === 'closed') return Promise.reject(new SignalyardError('stream-closed', 'left before the update was sent'))
    const req = this.requests.number()
    return new Promise((resolve, reject) => {
      this.requests.add(req, { meta, resolve, reject })
      this.socket.control(writeFrame(FrameType.Request, this.sid, { op: 'update', req, meta: meta.value }))
    })
  }

  override socketDown (): void {
    super.socketDown()
    // The next OPEN carries `wanted`: its OPENED answers these requests.
    for (const r of this.requests.drain()) this.nextOpen().then(r.resolve, r.reject)
  }

  protected override reply (meta: Record<string, unknown>): void {
    const r = this.requests.take(meta)
    if (r === undefined) return
    this.meta = r.meta
    r.resolve()
  }

  protected override failedRequest (meta: Record<string, unknown>): void {
    const r = this.requests.take(meta)
    if (r === undefined) return super.failedRequest(meta)
    if (this.wanted === r.meta) this.wanted = this.meta
    r.reject(errorFromMeta(meta))
  }

  protected override finish (error?: SignalyardError): void {
    const requests = this.requests.drain()
    super.finish(error)
    for (const r of requests) r.reject(error ?? new SignalyardError('stream-closed', 'left before the server answered'))
  }
}

/** A meta object with its JSON encoding (compared, and measured against the server's limit). */
interface Meta { value: Record<string, unknown>, json: string }

/**
 * Presence in one namespace (from `channel.createPeers()`).
 *
 * @example
 * const peers = channel.createPeers()
 * peers.on('join', (p) => console.log('hello', p.id)).on('leave', (p) => console.log('bye', p.id))
 * await peers.join({ id: 'alice', name: 'Alice' })
 * peers.list()   // the others, e.g. [{ id: 'bob', name: 'Bob' }]
 */
export class Peers extends EventEmitter<PeersEvents> {
  private stream: PresenceStream | null = null
  private readonly members = new Map<string, KnownPeer>()
  private readonly key = nanoid(24)
  private closed = false

  constructor (private readonly socket: YardSocket, readonly namespace: string) {
    super()
  }

  /** Your own presence record while joined, else null. */
  get self (): PeerMeta | null {
    const s = this.stream
    return s === null ? null : { ...s.meta.value, id: s.peerId }
  }

  /** The remote peers present now. */
  list (): PeerMeta[] {
    return [...this.members.values()].map((m) => m.meta)
  }

  /**
   * Join under `meta.id` (1..256 characters) with the rest of `meta` as your presence record;
   * resolves with the id once the server accepted it, rejects with `peer-id-taken` when another
   * client owns the id. Without `id`: the id you joined under, or a random one (21 characters of
   * nanoid) the first time. Joining again with the same id updates your meta ('update' for the
   * others); with another id it leaves the old one first.
   *
   * @example
   * const id = await peers.join({ name: 'Ada' })   // a random id
   * await peers.join({ name: 'Ada L.' })          // the same id, meta updated
   */
  join (meta: { id?: string } & Record<string, unknown> = {}): Promise<string> {
    const id = meta?.id === undefined ? this.stream?.peerId ?? nanoid() : meta.id
    const promise = this.doJoin({ ...meta, id }).then(() => id)
    promise.catch(() => {}) // an unawaited join must not crash the process; the error also goes to 'error'
    return promise
  }

  private doJoin (meta: { id: unknown } & Record<string, unknown>): Promise<void> {
    if (this.closed) return Promise.reject(new SignalyardError('channel-closed', 'the channel is closed'))
    const id = meta?.id
    if (!isName(id)) {
      return Promise.reject(new SignalyardError('bad-request', `peer id must be a well-formed string of 1..${NAME_MAX} characters`))
    }
    const { id: _, ...rest } = meta
    let json: string
    try {
      json = JSON.stringify(rest)
    } catch (err) {
      return Promise.reject(new SignalyardError('bad-request', `meta does not encode as JSON: ${(err as Error).message}`))
    }
    const bytes = new TextEncoder().encode(json).length
    const limit = this.socket.hello?.limits.maxMeta ?? this.socket.maxFrame / 2
    if (bytes > limit) {
      return Promise.reject(new SignalyardError('payload-too-large', `meta of ${bytes} bytes is over the server's ${limit}-byte limit`))
    }
    const record: Meta = { value: JSON.parse(json) as Record<string, unknown>, json }
    const current = this.stream
    if (current !== null && current.peerId === id && current.state !== 'closed') return current.update(record)
    this.dropStream()
    const stream = new PresenceStream(this.socket, this.namespace, id, this.key, record, this)
    this.stream = stream
    stream.on('error', (err) => this.emit('error', err))
    stream.on('close', () => {
      if (this.stream === stream) this.stream = null
    })
    return stream.ready()
  }

  /** Leave: the others get 'leave' within a second. Your list empties. */
  leave (): void {
    this.dropStream()
    this.members.clear()
  }

  /** Leave and stop (the channel calls this when it closes). */
  close (): void {
    this.leave()
    this.closed = true
  }

  private dropStream (): void {
    const stream = this.stream
    this.stream = null
    stream?.close()
  }

  /** @internal OPENED's member list: diff it against what we knew. */
  snapshot (list: PresenceMember[]): void {
    const seen = new Set<string>()
    for (const entry of list) {
      const parsed = known(entry)
      if (parsed.meta.id === this.stream?.peerId) continue
      seen.add(parsed.meta.id)
      this.upsert(parsed)
    }
    for (const [id, member] of this.members) {
      if (seen.has(id)) continue
      this.members.delete(id)
      this.emit('leave', member.meta)
    }
  }

  /** @internal A presence EVENT. */
  change (m: Record<string, unknown>): void {
    const change = readPresenceChange(m)
    if (change === null) return
    const parsed = known(change)
    if (parsed.meta.id === this.stream?.peerId) return
    if (change.op === 'leave') {
      const member = this.members.get(parsed.meta.id)
      if (member === undefined) return
      this.members.delete(parsed.meta.id)
      this.emit('leave', member.meta)
    } else {
      this.upsert(parsed)
    }
  }

  private upsert (member: KnownPeer): void {
    const known = this.members.get(member.meta.id)
    if (known !== undefined && known.json === member.json) return
    this.members.set(member.meta.id, member)
    this.emit(known === undefined ? 'join' : 'update', member.meta)
  }
}

/** A member as the presence list keeps it: the meta the app sees (with its id) and its JSON. */
function known ({ id, meta }: PresenceMember): KnownPeer {
  return { meta: { ...meta, id }, json: JSON.stringify(meta) }
}

/**
 * channel.mesh(): a room in one call. Presence (createPeers) and peer connections (createNode)
 * under one id in the channel's namespace, composed the way the signal-channel README composes
 * them by hand: every member announces itself on presence once its node listens, and of each pair
 * the side with the lower id dials. The room keeps one connection per member while the member is
 * there (a dial that fails is tried again, backing off), says 'join' when a member appears,
 * 'peer' when its connection opens and 'leave' when it leaves — each exactly once per stay — and
 * carries `room.send` messages on a stream of its own on each connection.
 */
import { EventEmitter } from 'eventemitter3'
import { nanoid } from 'nanoid'
import { SignalyardError } from '../protocol/errors.js'
import type { PeerConnection } from './peer-connection.js'
import type { NodeOptions, PeerNode } from './peer-node.js'
import type { PeerStream } from './peer-stream.js'
import type { PeerMeta, Peers } from './presence.js'

/** The label of the stream each side opens on a connection for `room.send` (reserved). */
export const ROOM_STREAM = 'signalyard.room'

/** How long a connection from an id that is not on presence is kept, waiting for its record, in ms. */
const UNLISTED_MS = 10_000
/** First retry of a failed dial, in ms; doubles up to RETRY_MAX_MS while the member stays. */
const RETRY_MS = 500
const RETRY_MAX_MS = 30_000

export interface MeshOptions extends NodeOptions {
  /** Your id in the room (presence and node alike); default: a random one (nanoid). */
  id?: string
  /** Your presence record: what the others get with 'peer' and in `room.peers()`. */
  meta?: Record<string, unknown>
}

export interface MeshEvents<T = unknown> {
  /** A member appeared on presence (once per stay; also for those already there when you join). */
  join: [meta: PeerMeta]
  /** A member's connection opened (once per stay; again only if its client restarted under the same id). */
  peer: [pc: PeerConnection, meta: PeerMeta]
  /** A member that had a 'join' left (once per stay). */
  leave: [meta: PeerMeta]
  /** A `room.send` message from a member; `from` is its id. */
  data: [data: T, info: { from: string }]
  /** A coded error (e.g. `peer-id-taken` when joining failed). */
  error: [error: SignalyardError]
  /** The room was left (`room.leave()`, or the channel closed). */
  close: []
}

/** A member of the room as `room.peers()` lists it. */
export interface RoomPeer {
  id: string
  /** Its presence record (`{ id, ...meta }`). */
  meta: PeerMeta
  /** Its connection, once there is one (it may still be connecting: `pc.state`). */
  pc: PeerConnection | null
}

/** What the room knows of one member. */
interface Member {
  meta: PeerMeta
  pc: PeerConnection | null
  /** The stream this side sends `room.send` messages on. */
  out: PeerStream | null
  /** 'peer' was emitted for the current stay. */
  announced: boolean
  /** The pc 'peer' was emitted with (a later pc is announced again). */
  announcedPc: PeerConnection | null
  retry: ReturnType<typeof setTimeout> | null
  backoff: number
  /** On presence ('join' was emitted); false for a connection that came before the record. */
  listed: boolean
  /** Closes the connection of a member that never shows on presence (UNLISTED_MS). */
  unlistedTimer: ReturnType<typeof setTimeout> | null
}

/**
 * A room: everyone in it connected to everyone (from `channel.mesh()`).
 *
 * @example
 * const room = channel.mesh({ meta: { name: 'Ada' } })
 * room.on('join', (meta) => console.log(meta.name, 'is here'))
 * room.on('peer', (pc, meta) => console.log(meta.name, 'connected over', pc.transport))
 * room.on('data', (msg, { from }) => console.log(from, msg))
 * room.on('leave', (meta) => console.log(meta.name, 'left'))
 * await room.ready()
 * room.send({ text: 'hi all' })          // to every connected member
 * room.send('psst', { to: someId })      // to one
 * room.leave()
 */
export class Room<T = unknown> extends EventEmitter<MeshEvents<T>> {
  /** Your id in the room. */
  readonly id: string
  private readonly members = new Map<string, Member>()
  private readonly joined: Promise<void>
  private closed = false

  constructor (
    private readonly node: PeerNode,
    private readonly presence: Peers,
    options: MeshOptions,
  ) {
    super()
    this.id = options.id ?? nanoid()
    node.on('connection', (pc) => this.incoming(pc))
    node.on('error', (err) => this.emit('error', err))
    presence.on('error', (err) => this.emit('error', err))
    presence.on('join', (meta) => this.member(meta))
    presence.on('update', (meta) => this.member(meta))
    presence.on('leave', (meta) => this.gone(meta))
    // Listen first, then announce: whoever sees us on presence can dial us at once.
    this.joined = node.listen(this.id)
      .then(async () => { await presence.join({ ...options.meta, id: this.id }) })
    this.joined.catch((err: SignalyardError) => {
      this.emit('error', err)
      this.leave()
    })
  }

  /** Resolves once you are in the room (listening and on presence); rejects if joining failed. */
  ready (): Promise<void> {
    return this.joined
  }

  /** The other members on presence now, with their connection (null until there is one). */
  peers (): RoomPeer[] {
    return [...this.members.entries()].filter(([, m]) => m.listed).map(([id, m]) => ({ id, meta: m.meta, pc: m.pc }))
  }

  /**
   * Send `data` to every member with a connection (or to `to` alone), in order per member, over
   * the room's own stream on each connection: held while a connection is still opening, not sent
   * to members that have no connection yet. Returns how many members it went to.
   */
  send (data: T, options: { to?: string } = {}): number {
    if (this.closed) throw new SignalyardError('channel-closed', 'the room was left')
    const targets = options.to === undefined ? [...this.members.values()].filter((m) => m.listed) : [this.members.get(options.to)]
    if (options.to !== undefined && targets[0]?.listed !== true) throw new SignalyardError('unknown-peer', `no member ${JSON.stringify(options.to)} in the room`)
    let sent = 0
    for (const m of targets) {
      if (m?.pc == null || m.pc.state === 'closed') continue
      m.out ??= m.pc.createStream(ROOM_STREAM)
      m.out.send(data)
      sent++
    }
    return sent
  }

  /** The same as leave() (the channel calls it when it closes). */
  close (): void {
    this.leave()
  }

  /** Leave the room: off presence, every connection closed, the node closed. */
  leave (): void {
    if (this.closed) return
    this.closed = true
    for (const m of this.members.values()) this.stopTimers(m)
    this.members.clear()
    this.presence.leave()
    this.presence.close()
    this.node.close()
    this.emit('close')
  }

  /** A member appeared or changed: dial it if ours is the lower id and there is no connection. */
  private member (meta: PeerMeta): void {
    if (this.closed || meta.id === this.id) return
    let m = this.members.get(meta.id)
    if (m === undefined) {
      m = newMember(meta)
      this.members.set(meta.id, m)
    } else {
      m.meta = meta
    }
    if (!m.listed) {
      m.listed = true
      if (m.unlistedTimer !== null) clearTimeout(m.unlistedTimer)
      m.unlistedTimer = null
      this.emit('join', meta)
      if (this.closed) return
    }
    if (m.pc?.state === 'open') this.announce(meta.id, m)
    else if (m.pc === null && this.id < meta.id) this.dial(meta.id, m)
  }

  private dial (id: string, m: Member): void {
    if (this.closed || m.pc !== null || m.retry !== null) return
    let pc: PeerConnection
    try {
      pc = this.node.connect(id)
    } catch (err) {
      this.emit('error', err as SignalyardError)
      return
    }
    this.adopt(id, m, pc)
  }

  /** A connection another member dialled (the higher id's side). */
  private incoming (pc: PeerConnection): void {
    if (this.closed) return
    const id = pc.peerId
    let m = this.members.get(id)
    if (m === undefined) {
      // It dialled before its presence record reached us: known once presence says so (or
      // dropped, if it never does: a node in this namespace that is not in the room).
      const member = m = newMember({ id })
      this.members.set(id, member)
      member.unlistedTimer = setTimeout(() => {
        if (this.members.get(id) !== member || member.listed) return
        this.members.delete(id)
        member.pc?.close()
      }, UNLISTED_MS)
    }
    this.adopt(id, m, pc)
  }

  private adopt (id: string, m: Member, pc: PeerConnection): void {
    m.pc = pc
    m.out = null
    pc.on('connection', (stream) => {
      if (stream.label !== ROOM_STREAM) return
      stream.on('data', (data) => { if (!this.closed) this.emit('data', data as T, { from: id }) })
    })
    pc.on('open', () => this.announce(id, m))
    pc.on('close', () => {
      if (m.pc !== pc) return
      m.pc = null
      m.out = null
      if (this.closed || this.members.get(id) !== m) return
      // The member is still here: the lower id dials again, backing off.
      if (this.id < id && m.listed) {
        m.retry = setTimeout(() => { m.retry = null; this.dial(id, m) }, m.backoff)
        m.backoff = Math.min(m.backoff * 2, RETRY_MAX_MS)
      }
    })
    if (pc.state === 'open') this.announce(id, m)
  }

  /** 'peer' once the connection is open and the member is on presence, once per connection. */
  private announce (id: string, m: Member): void {
    if (this.closed || m.pc === null || m.pc.state !== 'open' || !m.listed) return
    if (m.announced && m.announcedPc === m.pc) return
    m.announced = true
    m.announcedPc = m.pc
    m.backoff = RETRY_MS
    this.emit('peer', m.pc, m.meta)
  }

  private gone (meta: PeerMeta): void {
    const m = this.members.get(meta.id)
    if (m === undefined) return
    this.members.delete(meta.id)
    this.stopTimers(m)
    m.pc?.close()
    if (m.listed && !this.closed) this.emit('leave', m.meta)
  }

  private stopTimers (m: Member): void {
    if (m.retry !== null) clearTimeout(m.retry)
    if (m.unlistedTimer !== null) clearTimeout(m.unlistedTimer)
    m.retry = m.unlistedTimer = null
  }
}

function newMember (meta: PeerMeta): Member {
  return { meta, pc: null, out: null, announced: false, announcedPc: null, retry: null, backoff: RETRY_MS, listed: false, unlistedTimer: null }
}

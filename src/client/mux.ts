/**
 * The mux of a peer connection: any number of named streams over one pipe (docs/PROTOCOL.md,
 * "Mux frames"). It owns all stream state: the stream table and numbering (odd for the
 * initiator, even for the acceptor), the outgoing queue cut into fragments under the pipe's
 * high-water mark with 'drain' for the streams that waited, and the reassembly of incoming
 * fragments within the message limits. It never holds a pipe: it writes to whatever pipe its
 * host says is current, so a connection can hand it from one transport to another.
 */
import { decodePayload, encodePayload, Kind } from '../protocol/codec.js'
import { SignalyardError } from '../protocol/errors.js'
import { MuxOp, writeControl, writeMux, type MuxFrame } from '../protocol/mux.js'
import { Fifo } from './fifo.js'
import { ACK_DELAY_MS, ACK_EVERY, Ledger } from './ledger.js'
import { PeerStream, type StreamHost } from './peer-stream.js'
import { PIPE_HIGH_WATER, PIPE_LOW_WATER, type Pipe } from './transports/pipe.js'
import { SIDE_CHANNEL_PREFIX, type RTCDataChannelLike, type RTCPeerConnectionLike } from './transports/webrtc.js'

/** Largest message a stream sends or accepts, in bytes. */
export const MAX_MESSAGE = 16 * 1024 * 1024
/** Bytes a connection holds for its streams before `send()` throws `queue-full`. */
export const MAX_QUEUED = 32 * 1024 * 1024
/** Streams the peer may have open on one connection. */
export const MAX_STREAMS = 1024
/** A stream's `send()` returns false from this many buffered bytes on. */
export const HIGH_WATER_MARK = 1024 * 1024
/**
 * What a queued message costs beyond its payload when the mux bounds its queue (MAX_QUEUED) and
 * decides when a stream must wait (HIGH_WATER_MARK, 'drain'): its memory, roughly. Without it a
 * stream of 1-byte messages could queue a million of them under the byte limits.
 */
export const MESSAGE_COST = 64
/**
 * Largest message an unreliable stream sends on its own data channel (one SCTP message every
 * WebRTC stack takes whole); a larger one goes the reliable way, through the mux.
 */
export const SIDE_MAX = 16 * 1024
/** Bytes an unreliable stream's channel may hold; past it messages are dropped (they may be lost anyway). */
export const SIDE_HIGH_WATER = 256 * 1024
/** Side channels the peer opened before the OPEN of their stream arrived, held at most. */
const SIDE_EARLY_MAX = 64

/** How an unreliable stream's messages travel on WebRTC (RTCDataChannelInit's fields). */
export interface Unreliable { ordered: boolean, maxRetransmits?: number, maxPacketLifeTime?: number }

/** What a mux needs from its connection (the way `PipeHandlers` serve a pipe's owner). */
export interface MuxHost {
  /** The pipe frames go to now, or null while none is open: frames wait in order meanwhile. */
  pipe: () => Pipe | null
  /** Hand one frame to that pipe; false when the pipe broke (the host has dealt with it). */
  send: (frame: Uint8Array) => boolean
  /** The peer opened a stream. */
  accepted: (stream: PeerStream) => void
  /** The peer went past a limit: the connection ends with this error. */
  violation: (error: SignalyardError) => void
  /** Flushing after close (see `flush`), and everything queued is on the pipe now. */
  flushed: () => void
  /** Send a control frame (ACK) on a sequenced connection, on whichever pipe can take it. */
  control: (frame: Uint8Array) => void
  /** The RTCPeerConnection that carries the connection now, or null when it is not on WebRTC. */
  rtc: () => RTCPeerConnectionLike | null
}

/**
 * One stream as the mux sees it: its number, its bytes waiting in the queue, whether it owes a
 * 'drain', and the fragments of the message coming in. Only the mux writes these; the stream
 * reads them through `StreamHost`.
 */
class Lane implements StreamHost {
  readonly stream: PeerStream
  queued = 0
  /** Messages of this stream in the queue. */
  waiting = 0
  needDrain = false
  parts: Uint8Array[] = []
  partsBytes = 0
  /** The stream's own data channel (unreliable streams, on WebRTC), and the RTCPeerConnection it is on. */
  side: RTCDataChannelLike | null = null
  sideRtc: RTCPeerConnectionLike | null = null

  constructor (private readonly mux: Mux, public id: number, label: string, readonly unreliable: Unreliable | null = null) {
    this.stream = new PeerStream(this, label)
  }

  get isOpen (): boolean { return this.mux.isOpen }
  get bufferedAmount (): number { return this.queued + (this.stream.state === 'closed' ? 0 : this.mux.pipeBuffered) }
  /** `bufferedAmount` plus what its waiting messages cost: what flow control looks at. */
  get load (): number { return this.bufferedAmount + this.waiting * MESSAGE_COST }
  write (data: unknown): boolean { return this.mux.write(this, data) }
  close (): void { this.mux.closeStream(this) }
}

interface Outgoing { lane: Lane, op: MuxOp, kind: number, bytes: Uint8Array, offset: number }

/** The streams of one peer connection and their bytes in both directions. */
export class Mux {
  /** waiting: the connection is not open yet (frames are held); flushing: closed, sending what is queued. */
  private state: 'waiting' | 'open' | 'flushing' | 'closed' = 'waiting'
  private readonly lanes = new Map<number, Lane>()
  private nextId: number
  private readonly queue = new Fifo<Outgoing>()
  private queuedBytes = 0
  /** Bytes of unfinished incoming messages, all streams together (bounded by MAX_QUEUED). */
  private partialBytes = 0
  /** A sequenced connection's numbering and unacknowledged frames (see `sequence`), else null. */
  ledger: Ledger | null = null
  private ackTimer: ReturnType<typeof setTimeout> | null = null

  constructor (private readonly host: MuxHost, initiator: boolean) {
    this.nextId = initiator ? 1 : 2
  }

  get isOpen (): boolean { return this.state === 'open' }
  get flushing (): boolean { return this.state === 'flushing' }
  /** Bytes the current pipe holds (shared by every stream). */
  get pipeBuffered (): number { return this.host.pipe()?.bufferedAmount ?? 0 }

  /**
   * A new local stream; OPEN goes to the peer ahead of its data. `unreliable`: on WebRTC its
   * messages go on a data channel of its own with those options (see sendSide).
   */
  createStream (label: string, unreliable: Unreliable | null = null): PeerStream {
    const lane = new Lane(this, this.nextId, label, unreliable)
    this.nextId += 2
    this.lanes.set(lane.id, lane)
    this.enqueue({ lane, op: MuxOp.Open, kind: Kind.Text, bytes: new TextEncoder().encode(label), offset: 0 })
    if (unreliable !== null) this.sideChannel(lane) // on WebRTC now: its channel opens while the OPEN travels
    return lane.stream
  }

  /** Number stream frames from now on (both sides agreed to move between paths; before any frame flows). */
  sequence (): void {
    this.ledger = new Ledger()
  }

  /** The connection opened: streams may send from now on. */
  open (): void {
    if (this.state === 'waiting') this.state = 'open'
  }

  /** After the connection's 'open' event: the streams made before it get theirs, and what waited goes out. */
  announce (): void {
    for (const lane of [...this.lanes.values()]) lane.stream.opened()
    this.pump()
  }

  /** This side turned out to be the acceptor (glare): its streams take even numbers. */
  becomeAcceptor (): void {
    this.nextId = 2
    const lanes = [...this.lanes.values()]
    // Frames of streams already closed never reached the peer: drop them rather than send them
    // under numbers that now belong to the peer's streams.
    const live = new Set(lanes)
    this.queue.retain((out) => live.has(out.lane))
    this.queuedBytes = 0
    for (const out of this.queue) this.queuedBytes += out.bytes.length - out.offset + MESSAGE_COST
    this.lanes.clear()
    for (const lane of lanes) {
      lane.id = this.nextId
      this.nextId += 2
      this.lanes.set(lane.id, lane)
    }
  }

  /** The connection closed: no stream sends any more, but what is queued still goes, then `host.flushed()`. */
  flush (): void {
    this.state = 'flushing'
    this.pump()
  }

  /** Forget whatever is still queued; nothing more goes out. */
  drop (): void {
    this.state = 'closed'
    for (const channel of this.early.values()) { try { channel.close() } catch {} }
    this.early.clear()
    this.queue.clear()
    this.queuedBytes = 0
    if (this.ackTimer !== null) clearTimeout(this.ackTimer)
    this.ackTimer = null
  }

  /** End every stream here (no frame is sent); `error` says why when not on purpose. */
  end (error?: SignalyardError): void {
    if (this.state !== 'flushing') this.state = 'closed'
    const lanes = [...this.lanes.values()]
    for (const lane of lanes) this.release(lane)
    for (const lane of lanes) lane.stream.finish(error)
  }

  /** Queue a message of `lane`'s stream; false when its stream should wait for 'drain'. */
  write (lane: Lane, data: unknown): boolean {
    let payload
    try {
      payload = encodePayload(data)
    } catch (err) {
      throw new SignalyardError('bad-request', `cannot encode payload: ${(err as Error).message}`)
    }
    if (payload.bytes.length > MAX_MESSAGE) throw new SignalyardError('payload-too-large', `a message is at most ${MAX_MESSAGE} bytes`)
    if ((lane.unreliable !== null || lane.side !== null) && this.sendSide(lane, payload.kind, payload.bytes)) return true
    if (this.queuedBytes + payload.bytes.length + MESSAGE_COST > MAX_QUEUED) {
      throw new SignalyardError('queue-full', `the connection holds ${this.queuedBytes} bytes already; wait for 'drain'`)
    }
    // send() copies, like WebSocket and RTCDataChannel: the app may reuse its buffer as soon as
    // send() returns. Binary goes out without a copy when the pipe takes it whole now; whatever
    // is still queued after the pump (pipe full, or not open yet) is copied before returning.
    const out: Outgoing = { lane, op: MuxOp.Data, kind: payload.kind, bytes: payload.bytes, offset: 0 }
    this.enqueue(out)
    if (payload.kind === Kind.Binary && this.queue.last() === out) out.bytes = new Uint8Array(out.bytes) // a copy (a Node Buffer's own slice() is a view)
    if (lane.load < HIGH_WATER_MARK) return true
    lane.needDrain = true
    return false
  }

  /** The app closed `lane`'s stream: CLOSE goes after what it sent. */
  closeStream (lane: Lane): void {
    this.release(lane)
    if (this.state === 'waiting' || this.state === 'open') this.enqueue({ lane, op: MuxOp.Close, kind: 0, bytes: new Uint8Array(0), offset: 0 })
  }

  /** Hand fragments to the pipe while it is below its high-water mark. */
  pump (): void {
    const pipe = this.host.pipe()
    if (pipe === null || (this.state !== 'open' && this.state !== 'flushing')) return
    const ledger = this.ledger
    while (ledger?.owed === true && pipe.bufferedAmount < PIPE_HIGH_WATER) {
      const frame = ledger.takeAgain(pipe.transport === 'webrtc')
      if (frame !== undefined) this.host.send(frame)
      if (this.host.pipe() !== pipe) return
    }
    while (this.queue.length > 0 && pipe.bufferedAmount < PIPE_HIGH_WATER && ledger?.full !== true) {
      const out = this.queue.peek() as Outgoing
      const data = out.op === MuxOp.Data
      const end = data ? Math.min(out.offset + pipe.chunk, out.bytes.length) : out.bytes.length
      const last = end === out.bytes.length
      const op = data && !last ? MuxOp.More : out.op
      const payload = data ? out.bytes.subarray(out.offset, end) : out.bytes
      let sent: boolean
      if (ledger === null) {
        sent = this.host.send(writeMux(op, out.lane.id, out.kind, payload))
      } else {
        // Numbered and kept before it is sent: a frame a broken pipe did not take is sent again
        // after the move, never written twice under two numbers.
        const seq = ledger.next()
        const frame = writeMux(op, out.lane.id, out.kind, payload, seq)
        ledger.keep(seq, frame, pipe.transport === 'webrtc')
        this.host.send(frame)
        sent = true
      }
      if (!sent) return
      if (data) out.lane.queued -= end - out.offset
      this.queuedBytes -= end - out.offset
      out.offset = end
      if (last) {
        this.queue.shift()
        this.queuedBytes -= MESSAGE_COST
        if (data) out.lane.waiting--
      }
      if (this.host.pipe() !== pipe) break // the send broke the pipe, and the connection moved
    }
    for (const lane of this.lanes.values()) {
      // At or below the pipe's low-water mark: a pipe reports 'drain' when it falls to that mark,
      // so a strict comparison could miss the only event there will be.
      if (lane.needDrain && lane.load <= PIPE_LOW_WATER) {
        lane.needDrain = false
        lane.stream.emit('drain')
      }
    }
    if (this.queue.length === 0 && this.state === 'flushing') this.host.flushed()
  }

  /** A stream frame from the peer (OPEN, DATA, MORE, CLOSE). */
  receive ({ op, stream: n, kind, seq, payload }: MuxFrame): void {
    const ledger = this.ledger
    if (ledger !== null) {
      const arrival = ledger.arrive(seq)
      if (arrival === 'old') return
      if (arrival === 'gap') return this.host.violation(new SignalyardError('bad-frame', `the peer skipped from stream frame ${ledger.read} to ${seq}`))
      ledger.unacked += payload.length + 10
      if (ledger.unacked >= ACK_EVERY) this.ack()
      else if (this.ackTimer === null) this.ackTimer = setTimeout(() => this.ack(), ACK_DELAY_MS)
    }
    switch (op) {
      case MuxOp.Open: {
        // The peer's streams have the other parity; a reused number is ignored.
        if (n % 2 === this.nextId % 2 || this.lanes.has(n)) return
        if (this.lanes.size >= MAX_STREAMS) {
          return this.host.violation(new SignalyardError('too-many-streams', `the peer opened more than ${MAX_STREAMS} streams`))
        }
        const lane = new Lane(this, n, new TextDecoder().decode(payload))
        this.lanes.set(n, lane)
        const early = this.early.get(n)
        if (early !== undefined) {
          this.early.delete(n)
          this.attachSide(lane, early, null)
        }
        return this.host.accepted(lane.stream)
      }
      case MuxOp.Close: {
        const lane = this.lanes.get(n)
        if (lane === undefined) return
        this.release(lane)
        return lane.stream.finish()
      }
      case MuxOp.More:
      case MuxOp.Data: {
        const lane = this.lanes.get(n)
        if (lane !== undefined) this.fragment(lane, op === MuxOp.Data, kind, payload)
      }
    }
  }

  /** Acknowledge what was read (sequenced connections). */
  private ack (): void {
    if (this.ackTimer !== null) clearTimeout(this.ackTimer)
    this.ackTimer = null
    const ledger = this.ledger as Ledger
    if (ledger.unacked === 0 || this.state === 'closed') return
    ledger.unacked = 0
    this.host.control(writeControl(MuxOp.Ack, ledger.read))
  }

  private fragment (lane: Lane, last: boolean, kind: number, payload: Uint8Array): void {
    if (lane.partsBytes + payload.length > MAX_MESSAGE || this.partialBytes + payload.length > MAX_QUEUED) {
      return this.host.violation(new SignalyardError('payload-too-large', `the peer sent over ${MAX_MESSAGE} bytes in one message, or ${MAX_QUEUED} in unfinished ones`))
    }
    if (!last) {
      lane.parts.push(new Uint8Array(payload))
      lane.partsBytes += payload.length
      this.partialBytes += payload.length
      return
    }
    this.partialBytes -= lane.partsBytes
    const whole = lane.parts.length === 0 ? payload : join([...lane.parts, payload], lane.partsBytes + payload.length)
    lane.parts = []
    lane.partsBytes = 0
    let value: unknown
    try {
      value = decodePayload(kind, whole)
    } catch {
      return void lane.stream.emit('error', new SignalyardError('bad-frame', 'the peer sent a payload that does not decode'))
    }
    lane.stream.emit('data', value)
  }

  private enqueue (out: Outgoing): void {
    this.queue.push(out)
    this.queuedBytes += out.bytes.length + MESSAGE_COST
    if (out.op === MuxOp.Data) {
      out.lane.queued += out.bytes.length
      out.lane.waiting++
    }
    if (this.state === 'open') this.pump()
  }

  /**
   * An unreliable stream's message on WebRTC: on the stream's own data channel (made here, by the
   * side that created the stream, on the RTCPeerConnection carrying the pair now, again after a
   * move to another one), as one message `[kind, ...payload]`. False when it must go through the
   * mux instead: not on WebRTC, the channel not open yet, or the message over SIDE_MAX. A message
   * the channel has no room for (SIDE_HIGH_WATER) is dropped: such a stream may lose messages.
   */
  private sendSide (lane: Lane, kind: number, bytes: Uint8Array): boolean {
    if (this.state !== 'open' || bytes.length + 1 > SIDE_MAX) return false
    const rtc = this.sideChannel(lane)
    if (rtc === null) return false
    const channel = lane.side
    // (a channel the peer made is used while it is open: its RTCPeerConnection is the pair's, or closing)
    if (channel?.readyState !== 'open' || (lane.unreliable !== null && lane.sideRtc !== rtc)) return false
    if (channel.bufferedAmount > SIDE_HIGH_WATER) return true
    const message = new Uint8Array(bytes.length + 1)
    message[0] = kind
    message.set(bytes, 1)
    try {
      channel.send(message)
    } catch {
      return false
    }
    return true
  }

  /**
   * The RTCPeerConnection carrying the pair now (null: not on WebRTC), with the stream's own
   * channel on it when this side created the stream (made here on first need).
   */
  private sideChannel (lane: Lane): RTCPeerConnectionLike | null {
    const rtc = this.state === 'open' ? this.host.rtc() : null
    if (rtc === null || lane.unreliable === null || lane.sideRtc === rtc) return rtc
    this.closeSide(lane)
    try {
      this.attachSide(lane, rtc.createDataChannel(`${SIDE_CHANNEL_PREFIX}${lane.id}`, { ...lane.unreliable }), rtc)
    } catch {
      lane.sideRtc = rtc // this RTCPeerConnection cannot make one: the mux carries the stream
    }
    return rtc
  }

  /** Side channels that came before their stream's OPEN (bounded), by stream number. */
  private readonly early = new Map<number, RTCDataChannelLike>()

  /** A stream's own data channel the peer opened (its label names the stream). */
  adoptSide (channel: RTCDataChannelLike): void {
    const n = Number((channel.label ?? '').slice(SIDE_CHANNEL_PREFIX.length))
    // Only the creator of a stream makes its channel: a number of ours, or no number, is refused.
    if (!Number.isInteger(n) || n <= 0 || n % 2 === this.nextId % 2 || this.state === 'closed') return void channel.close()
    const lane = this.lanes.get(n)
    if (lane !== undefined) return this.attachSide(lane, channel, null)
    if (this.early.size >= SIDE_EARLY_MAX) return void channel.close()
    this.early.get(n)?.close()
    this.early.set(n, channel)
  }

  private attachSide (lane: Lane, channel: RTCDataChannelLike, rtc: RTCPeerConnectionLike | null): void {
    if (lane.side !== channel) this.closeSide(lane)
    lane.side = channel
    lane.sideRtc = rtc
    channel.binaryType = 'arraybuffer'
    channel.onmessage = (ev) => {
      if (lane.side !== channel || !this.lanes.has(lane.id)) return
      const data = ev.data
      const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : null
      if (bytes === null || bytes.length < 1 || bytes.length > SIDE_MAX) return // not one of ours: dropped, as a lost message would be
      let value: unknown
      try {
        value = decodePayload(bytes[0], bytes.subarray(1))
      } catch {
        return
      }
      lane.stream.emit('data', value)
    }
    channel.onclose = () => { if (lane.side === channel) { lane.side = null; lane.sideRtc = null } }
  }

  private closeSide (lane: Lane): void {
    const channel = lane.side
    lane.side = null
    lane.sideRtc = null
    if (channel === null) return
    channel.onmessage = channel.onclose = null
    try { channel.close() } catch {}
  }

  /** Take a stream out of the table with its unfinished message. */
  private release (lane: Lane): void {
    this.closeSide(lane)
    this.partialBytes -= lane.partsBytes
    lane.parts = []
    lane.partsBytes = 0
    this.lanes.delete(lane.id)
  }
}

function join (parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total)
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

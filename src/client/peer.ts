/**
 * A peer connection between two nodes of a namespace: the handshake over directed signalling
 * (docs/PROTOCOL.md, "Peer connections"), the choice of transport (WebRTC, or the server relay when
 * either side lacks WebRTC or ICE does not connect within `connectTimeout`), and the mux that
 * carries any number of named streams over that one pipe with fragmentation and backpressure.
 */
import { EventEmitter } from 'eventemitter3'
import { decodePayload, encodePayload, Kind } from '../protocol/codec.js'
import { SignalyardError, type ErrorCode } from '../protocol/errors.js'
import { MuxOp, readMux, writeMux } from '../protocol/mux.js'
import { PeerStream, type StreamHost } from './peer-stream.js'
import { PIPE_HIGH_WATER, PIPE_LOW_WATER, type Pipe, type PipeHandlers } from './transports/pipe.js'
import { RelayPipe, type OpenRelay } from './transports/relay.js'
import { WebRtcPipe, type RTCPeerConnectionConstructor, type RtcSignal } from './transports/webrtc.js'

export type Transport = 'webrtc' | 'relay'
export type TransportOption = 'auto' | Transport

/** A handshake message (JSON payload of signal DATA). */
export type PeerSignal =
  | { t: 'hello', c: string, rtc: boolean }
  | { t: 'accept', c: string, tr: Transport }
  | { t: 'refuse', c: string, code: string, message?: string }
  | { t: 'fallback', c: string }
  | { t: 'bye', c: string, left?: boolean }
  | ({ c: string } & RtcSignal)

/** What a connection needs from its node. */
export interface PeerHost {
  readonly transport: TransportOption
  readonly connectTimeout: number
  /** The WebRTC constructor and configuration, or null when this node cannot or may not use WebRTC. */
  rtc: () => { Ctor: RTCPeerConnectionConstructor, config: object } | null
  signal: (to: string, msg: PeerSignal) => void
  openRelay: OpenRelay
  forget: (pc: PeerConnection) => void
}

export interface PeerConnectionEvents {
  /** The connection is open; `pc.transport` says over what. */
  open: []
  /** The other side created a stream. */
  connection: [stream: PeerStream]
  /** The connection ended; `error` says why when it was not closed on purpose. */
  close: [error?: SignalyardError]
  error: [error: SignalyardError]
}

/** Largest message a stream sends or accepts, in bytes. */
export const MAX_MESSAGE = 16 * 1024 * 1024
/** Bytes a connection holds for its streams before `send()` throws `queue-full`. */
export const MAX_QUEUED = 32 * 1024 * 1024
/** Streams the peer may have open on one connection. */
export const MAX_STREAMS = 1024
/** How long a closing connection waits for its transport to flush. */
const LINGER_MS = 2000
/** The `kind` byte of a BYE whose sender's node is leaving (the other side closes with `peer-left`). */
const BYE_LEFT = 1

interface Outgoing { stream: PeerStream, op: MuxOp, kind: number, bytes: Uint8Array, offset: number }

/**
 * A connection to one peer (from `node.connect(id)`, or the node's 'connection' event).
 *
 * @example
 * const pc = node.connect('bob')
 * pc.on('open', () => console.log('over', pc.transport))   // 'webrtc' or 'relay'
 * const chat = pc.createStream('chat')
 * chat.send('hi')                                           // held until open
 * pc.on('connection', (stream) => stream.on('data', console.log))
 */
export class PeerConnection extends EventEmitter<PeerConnectionEvents> implements StreamHost {
  state: 'connecting' | 'open' | 'closed' = 'connecting'
  /** The transport in use once open. */
  transport: Transport | null = null
  private pipe: Pipe | null = null
  private pipeOpen = false
  private pipeGen = 0
  /** Closed, but still flushing what was sent before close() to the peer. */
  private lingering = false
  private readonly streams = new Map<number, PeerStream>()
  private nextStream: number
  private queue: Outgoing[] = []
  private queuedBytes = 0
  /** Bytes of unfinished incoming messages, all streams together (bounded by MAX_QUEUED). */
  private partialBytes = 0
  private timer: ReturnType<typeof setTimeout> | null = null
  private waiters: Array<{ resolve: () => void, reject: (err: SignalyardError) => void }> = []
  private failure: SignalyardError | null = null
  /** This side closes because its node is leaving: the BYE says so. */
  private leaving = false

  constructor (
    private readonly host: PeerHost, readonly peerId: string,
    /** This side connected (true) or was connected to. */
    public initiator: boolean, public cid: string
  ) {
    super()
    this.nextStream = initiator ? 1 : 2
  }

  get isOpen (): boolean { return this.state === 'open' }
  get pipeBuffered (): number { return this.pipeOpen ? (this.pipe?.bufferedAmount ?? 0) : 0 }

  /** Resolves once the connection is open; rejects with the coded reason if it closes first. */
  ready (): Promise<void> {
    if (this.state === 'open') return Promise.resolve()
    if (this.failure !== null) return Promise.reject(this.failure)
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }))
  }

  /** A new stream; the other side gets 'connection'(stream) with the same label. */
  createStream (label = 'default'): PeerStream {
    if (this.state === 'closed') throw new SignalyardError('stream-closed', 'the peer connection is closed')
    if (typeof label !== 'string') throw new SignalyardError('bad-request', 'a stream label is a string')
    const stream = new PeerStream(this, this.nextStream, label)
    this.nextStream += 2
    this.streams.set(stream.id, stream)
    this.enqueue({ stream, op: MuxOp.Open, kind: Kind.Text, bytes: new TextEncoder().encode(label), offset: 0 })
    return stream
  }

  /** Close the connection and every stream on both sides; what was sent is flushed first. */
  close (): void {
    this.end(undefined, true)
  }

  /** Close because this node is leaving (node.close(), channel.close()): the peer sees `peer-left`. */
  leave (): void {
    this.leaving = true
    this.end(undefined, true)
  }

  // ---- handshake (driven by the node) ----

  /** Initiator: ask the peer for a connection. */
  start (): void {
    this.host.signal(this.peerId, { t: 'hello', c: this.cid, rtc: this.host.rtc() !== null })
    this.arm(this.host.connectTimeout, 'the peer did not answer')
  }

  /** Acceptor (also a glare loser adopting the peer's connection id): decide the transport. */
  accept (cid: string, remoteRtc: boolean): void {
    this.initiator = false
    this.cid = cid
    this.nextStream = 2
    this.renumberStreams()
    const rtc = this.host.rtc() !== null
    if (this.host.transport === 'webrtc' && !(rtc && remoteRtc)) {
      this.host.signal(this.peerId, { t: 'refuse', c: cid, code: 'webrtc-unavailable', message: 'WebRTC is required here' })
      return this.end(new SignalyardError('webrtc-unavailable', 'WebRTC was required but one side has no RTCPeerConnection'), false)
    }
    // The RTCPeerConnection is made before answering: if it cannot be, this pair uses the relay.
    const webrtc = rtc && remoteRtc && this.useWebRtc()
    if (!webrtc && this.host.transport === 'webrtc') {
      this.host.signal(this.peerId, { t: 'refuse', c: cid, code: 'webrtc-unavailable', message: 'cannot create an RTCPeerConnection' })
      return this.end(new SignalyardError('webrtc-unavailable', 'cannot create an RTCPeerConnection'), false)
    }
    this.host.signal(this.peerId, { t: 'accept', c: cid, tr: webrtc ? 'webrtc' : 'relay' })
    if (!webrtc) return this.useRelay()
    // The initiator decides: READY over the channel, or 'fallback'. Give it two timeouts.
    this.arm(this.host.connectTimeout * 2, 'the WebRTC handshake did not finish')
  }

  /** A handshake message for this connection id. */
  handle (msg: PeerSignal): void {
    if (this.state === 'closed') return
    switch (msg.t) {
      case 'accept':
        if (!this.initiator || this.pipe !== null) return
        if (msg.tr === 'webrtc' && this.host.rtc() !== null) {
          if (!this.useWebRtc()) return this.fallback()
          return this.arm(this.host.connectTimeout, 'WebRTC did not connect in time', () => this.fallback())
        }
        if (this.host.transport === 'webrtc') {
          return this.end(new SignalyardError('webrtc-unavailable', 'the peer cannot use WebRTC'), true)
        }
        return this.useRelay()
      case 'refuse':
        return this.end(new SignalyardError(codeOf(msg.code), msg.message ?? 'the peer refused the connection'), false)
      case 'fallback':
        if (this.initiator || this.state === 'open') return
        return this.useRelay()
      case 'bye':
        return this.end(msg.left === true ? peerLeft(this.peerId) : undefined, false)
      case 'sdp':
      case 'ice':
        if (this.pipe instanceof WebRtcPipe) this.pipe.receive(msg)
    }
  }

  /** The node lost the peer (it left the namespace, or nobody holds its id). */
  lost (error: SignalyardError): void {
    this.end(error, false)
  }

  // ---- transports ----

  /** Handlers bound to one pipe generation: a replaced or dropped pipe's events are ignored. */
  private handlers (): PipeHandlers {
    const gen = ++this.pipeGen
    const live = (): boolean => gen === this.pipeGen && this.state !== 'closed'
    return {
      open: () => { if (live()) this.pipeOpened() },
      message: (bytes) => {
        if (live()) return this.receive(bytes)
        // Closed and lingering after our BYE: the peer's own BYE means it is done too.
        if (gen === this.pipeGen && bytes[0] === MuxOp.Bye) this.dropPipe()
      },
      drain: () => { if (gen === this.pipeGen) this.pump() },
      close: (error) => {
        if (gen !== this.pipeGen) return
        if (this.state === 'closed') { // the peer closed after our BYE, or the pipe died while we flushed
          this.lingering = false
          this.queue = []
          this.queuedBytes = 0
          return this.dropPipe()
        }
        this.pipeClosed(error)
      }
    }
  }

  /** Start the WebRTC pipe; false when the RTCPeerConnection cannot be made (e.g. a bad rtcConfig). */
  private useWebRtc (): boolean {
    const rtc = this.host.rtc()
    if (rtc === null) return false
    try {
      this.setPipe((on) => new WebRtcPipe(rtc.Ctor, rtc.config, this.initiator, (m) => this.host.signal(this.peerId, { ...m, c: this.cid }), on))
      return true
    } catch (err) {
      this.emit('error', new SignalyardError('connection-closed', `cannot create an RTCPeerConnection: ${String(err)}`))
      return false
    }
  }

  private useRelay (): void {
    this.disarm()
    this.setPipe((on) => new RelayPipe(this.host.openRelay, this.cid, this.initiator, on))
  }

  private setPipe (make: (on: PipeHandlers) => Pipe): void {
    this.dropPipe()
    this.pipe = make(this.handlers())
  }

  /** Close the current pipe (if any) and ignore whatever it still reports. */
  private dropPipe (): void {
    const pipe = this.pipe
    this.pipe = null
    this.pipeOpen = false
    this.pipeGen++
    if (this.state === 'closed') this.disarm()
    pipe?.close()
  }

  /** Initiator, WebRTC did not open in time or failed: tell the peer and use the relay. */
  private fallback (): void {
    if (this.state !== 'connecting') return
    this.dropPipe()
    if (this.host.transport === 'webrtc') {
      return this.end(new SignalyardError('connect-timeout', `WebRTC did not connect within ${this.host.connectTimeout} ms`), true)
    }
    this.host.signal(this.peerId, { t: 'fallback', c: this.cid })
    this.useRelay()
  }

  private pipeOpened (): void {
    const pipe = this.pipe as Pipe
    this.pipeOpen = true
    if (pipe.transport === 'webrtc') {
      // The acceptor waits for READY: the initiator alone decides between this channel and the relay.
      // READY may have come first (the channel's 'open' event can trail its first message): then
      // what waited for this pipe goes now.
      if (!this.initiator) return this.pump()
      if (!this.sendRaw(writeMux(MuxOp.Ready, 0))) return
    }
    this.opened()
  }

  private pipeClosed (error?: SignalyardError): void {
    const webrtc = this.pipe?.transport === 'webrtc'
    this.dropPipe()
    // ICE failed before opening: the initiator falls back at once; the acceptor waits for its word.
    if (this.state === 'connecting' && webrtc) {
      if (this.initiator) this.fallback()
      return
    }
    // The pipe is gone: tell the peer over signalling, in case its side did not notice.
    this.end(error ?? new SignalyardError('connection-closed', 'the transport closed'), true)
  }

  private opened (): void {
    if (this.state !== 'connecting') return
    this.disarm()
    this.state = 'open'
    this.transport = (this.pipe as Pipe).transport
    for (const w of this.waiters.splice(0)) w.resolve()
    this.emit('open')
    for (const stream of [...this.streams.values()]) stream.opened()
    this.pump()
  }

  // ---- mux ----

  write (stream: PeerStream, data: unknown): void {
    let payload
    try {
      payload = encodePayload(data)
    } catch (err) {
      throw new SignalyardError('bad-request', `cannot encode payload: ${(err as Error).message}`)
    }
    if (payload.bytes.length > MAX_MESSAGE) throw new SignalyardError('payload-too-large', `a message is at most ${MAX_MESSAGE} bytes`)
    if (this.queuedBytes + payload.bytes.length > MAX_QUEUED) {
      throw new SignalyardError('queue-full', `the connection holds ${this.queuedBytes} bytes already; wait for 'drain'`)
    }
    // send() copies, like WebSocket and RTCDataChannel: the app may reuse its buffer as soon as
    // send() returns. Binary goes out without a copy when the pipe takes it whole now; whatever
    // is still queued after the pump (pipe full, or not open yet) is copied before returning.
    const out: Outgoing = { stream, op: MuxOp.Data, kind: payload.kind, bytes: payload.bytes, offset: 0 }
    this.enqueue(out)
    if (payload.kind === Kind.Binary && this.queue[this.queue.length - 1] === out) out.bytes = out.bytes.slice()
  }

  closeStream (stream: PeerStream): void {
    this.partialBytes -= stream.partsBytes
    this.streams.delete(stream.id)
    if (this.state !== 'closed') this.enqueue({ stream, op: MuxOp.Close, kind: 0, bytes: new Uint8Array(0), offset: 0 })
  }

  private enqueue (out: Outgoing): void {
    this.queue.push(out)
    this.queuedBytes += out.bytes.length
    if (out.op === MuxOp.Data) out.stream.queued += out.bytes.length
    if (this.state === 'open') this.pump()
  }

  /** Hand fragments to the pipe while it is below its high-water mark. */
  private pump (): void {
    const pipe = this.pipe
    if (pipe === null || !this.pipeOpen || (this.state !== 'open' && !this.lingering)) return
    while (this.queue.length > 0 && pipe.bufferedAmount < PIPE_HIGH_WATER) {
      const out = this.queue[0]
      if (out.op !== MuxOp.Data) {
        if (!this.sendRaw(writeMux(out.op, out.stream.id, out.kind, out.bytes))) return
        this.queue.shift()
        this.queuedBytes -= out.bytes.length
        continue
      }
      const end = Math.min(out.offset + pipe.chunk, out.bytes.length)
      const last = end === out.bytes.length
      if (!this.sendRaw(writeMux(last ? MuxOp.Data : MuxOp.More, out.stream.id, out.kind, out.bytes.subarray(out.offset, end)))) return
      out.stream.queued -= end - out.offset
      this.queuedBytes -= end - out.offset
      out.offset = end
      if (last) this.queue.shift()
    }
    for (const stream of this.streams.values()) {
      // At or below the pipe's low-water mark: a pipe reports 'drain' when it falls to that mark,
      // so a strict comparison could miss the only event there will be.
      if (stream.needDrain && stream.bufferedAmount <= PIPE_LOW_WATER) {
        stream.needDrain = false
        stream.emit('drain')
      }
    }
    if (this.queue.length === 0 && this.lingering) this.flushed(pipe)
  }

  private sendRaw (bytes: Uint8Array): boolean {
    try {
      (this.pipe as Pipe).send(bytes)
      return true
    } catch (err) {
      this.pipeClosed(err instanceof SignalyardError ? err : new SignalyardError('connection-closed', String(err)))
      return false
    }
  }

  private receive (bytes: Uint8Array): void {
    const frame = readMux(bytes)
    if (frame === null) return void this.emit('error', new SignalyardError('bad-frame', 'the peer sent a malformed mux frame'))
    const { op, stream: n, kind, payload } = frame
    switch (op) {
      case MuxOp.Ready:
        if (!this.initiator) this.opened()
        return
      case MuxOp.Bye:
        return this.end(kind === BYE_LEFT ? peerLeft(this.peerId) : undefined, false)
      case MuxOp.Open: {
        // The peer's streams have the other parity; a reused number is ignored.
        if ((n % 2 === 1) !== !this.initiator || this.streams.has(n)) return
        if (this.streams.size >= MAX_STREAMS) {
          return this.end(new SignalyardError('too-many-streams', `the peer opened more than ${MAX_STREAMS} streams`), true)
        }
        const stream = new PeerStream(this, n, new TextDecoder().decode(payload))
        this.streams.set(n, stream)
        return void this.emit('connection', stream)
      }
      case MuxOp.Close: {
        const stream = this.streams.get(n)
        if (stream === undefined) return
        this.partialBytes -= stream.partsBytes
        stream.finish()
        this.streams.delete(n)
        return
      }
      case MuxOp.More:
      case MuxOp.Data: {
        const stream = this.streams.get(n)
        if (stream === undefined) return
        if (stream.partsBytes + payload.length > MAX_MESSAGE || this.partialBytes + payload.length > MAX_QUEUED) {
          return this.end(new SignalyardError('payload-too-large', `the peer sent over ${MAX_MESSAGE} bytes in one message, or ${MAX_QUEUED} in unfinished ones`), true)
        }
        if (op === MuxOp.More) {
          stream.parts.push(payload.slice())
          stream.partsBytes += payload.length
          this.partialBytes += payload.length
          return
        }
        this.partialBytes -= stream.partsBytes
        const whole = stream.parts.length === 0 ? payload : join([...stream.parts, payload], stream.partsBytes + payload.length)
        stream.parts = []
        stream.partsBytes = 0
        let value: unknown
        try {
          value = decodePayload(kind, whole)
        } catch {
          return void stream.emit('error', new SignalyardError('bad-frame', 'the peer sent a payload that does not decode'))
        }
        stream.emit('data', value)
      }
    }
  }

  /** Streams made while we thought we were the initiator get the acceptor's parity. */
  private renumberStreams (): void {
    const streams = [...this.streams.values()]
    // Frames of streams already closed never reached the peer: drop them rather than send them
    // under numbers that now belong to the peer's streams.
    const live = new Set(streams)
    this.queue = this.queue.filter((out) => live.has(out.stream))
    this.queuedBytes = this.queue.reduce((sum, out) => sum + out.bytes.length - out.offset, 0)
    this.streams.clear()
    for (const stream of streams) {
      const id = this.nextStream
      this.nextStream += 2
      ;(stream as { id: number }).id = id
      this.streams.set(id, stream)
    }
  }

  // ---- timers and the end ----

  private arm (ms: number, message: string, onTimeout?: () => void): void {
    this.disarm()
    this.timer = setTimeout(() => {
      this.timer = null
      if (onTimeout !== undefined) return onTimeout()
      if (this.state === 'connecting') {
        this.end(new SignalyardError('connect-timeout', message), true)
      }
    }, ms)
  }

  private disarm (): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
  }

  /**
   * Close here; `notify` tells the peer (BYE after what is queued, or `bye` over signalling when
   * no transport is open). An open transport lingers until it has flushed, then closes.
   */
  private end (error: SignalyardError | undefined, notify: boolean): void {
    if (this.state === 'closed') return
    const wasOpen = this.state === 'open'
    this.state = 'closed'
    this.disarm()
    this.failure = error ?? new SignalyardError('stream-closed', 'the peer connection closed before it opened')
    for (const w of this.waiters.splice(0)) w.reject(this.failure)
    if (notify && wasOpen && this.pipe !== null && this.pipeOpen) {
      this.lingering = true
      this.timer = setTimeout(() => this.flushed(this.pipe), LINGER_MS)
      this.pump()
    } else if (notify && !this.initiator && this.pipe?.transport === 'webrtc') {
      // An acceptor not open yet (no READY seen) whose initiator may be open already (its end of
      // the channel can open first): closing the RTCPeerConnection now would reach the initiator
      // before the signalled bye and read as a transport failure. Say bye (over the channel too
      // when it is open here) and let the peer close the pipe; it is dropped after the linger
      // time at the latest.
      this.host.signal(this.peerId, this.byeSignal())
      if (this.pipeOpen) this.sendRaw(writeMux(MuxOp.Bye, 0, this.leaving ? BYE_LEFT : 0))
      this.queue = []
      this.queuedBytes = 0
      if (this.pipe !== null) this.timer = setTimeout(() => this.dropPipe(), LINGER_MS)
    } else {
      if (notify) this.host.signal(this.peerId, this.byeSignal())
      this.dropPipe()
      this.queue = []
      this.queuedBytes = 0
    }
    const streams = [...this.streams.values()]
    this.streams.clear()
    for (const stream of streams) stream.finish(error)
    this.host.forget(this)
    if (error !== undefined) this.emit('error', error)
    this.emit('close', error)
  }

  private byeSignal (): PeerSignal {
    return this.leaving ? { t: 'bye', c: this.cid, left: true } : { t: 'bye', c: this.cid }
  }

  /**
   * Lingering close: everything queued went out (or time is up). Say BYE. The relay keeps frame
   * order through the server, so it closes at once; a data channel waits for the peer to close
   * (it does when BYE arrives), bounded by the linger time.
   */
  private flushed (pipe: Pipe | null): void {
    if (!this.lingering) return
    this.lingering = false
    this.disarm()
    this.queue = []
    this.queuedBytes = 0
    if (pipe === null || pipe !== this.pipe) return
    if (!this.sendRaw(writeMux(MuxOp.Bye, 0, this.leaving ? BYE_LEFT : 0)) || pipe.transport === 'relay') return this.dropPipe()
    this.timer = setTimeout(() => this.dropPipe(), LINGER_MS)
  }
}

function join (parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total)
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

function peerLeft (id: string): SignalyardError {
  return new SignalyardError('peer-left', `peer ${id} left`)
}

function codeOf (code: string): ErrorCode {
  return code === 'webrtc-unavailable' || code === 'connect-timeout' ? code : 'connection-closed'
}

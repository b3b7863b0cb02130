/**
 * A peer connection between two nodes of a namespace: the handshake over directed signalling
 * (docs/PROTOCOL.md, "Peer connections"; messages in protocol/handshake.ts), the choice of
 * transport, the pipes and the timers. With `transport: 'auto'` on both sides (and WebRTC on both)
 * the connection opens on the server relay at once and its Mover (mover.ts) moves it to WebRTC
 * live, and back when that path dies; 'webrtc' and 'relay' force one pipe. The streams and their
 * bytes live in the connection's Mux (mux.ts), which writes to whatever pipe is current here.
 */
import { EventEmitter } from 'eventemitter3'
import { SignalyardError } from '../protocol/errors.js'
import { chooseTransport, type HandshakeMessage, type HelloMessage, type Transport } from '../protocol/handshake.js'
import { BYE_LEFT, MuxOp, readMux, writeMux } from '../protocol/mux.js'
import { Legs } from './legs.js'
import { Mux, type Unreliable } from './mux.js'
import { PathWatch, type PeerPath } from './path.js'
import type { PeerStream } from './peer-stream.js'
import type { Pipe } from './transports/pipe.js'
import type { PeerConnectionEvents, PeerHost } from './peer-host.js'

export type { Transport } from '../protocol/handshake.js'
export type { PeerConnectionEvents, PeerHost, TransportOption } from './peer-host.js'

/** How long a closing connection waits for its transport to flush. */
const LINGER_MS = 2000

/**
 * A connection to one peer (from `node.connect(id)`, or the node's 'connection' event).
 *
 * @example
 * const pc = node.connect('bob')
 * pc.on('open', () => console.log('over', pc.transport))   // 'relay' first with 'auto'
 * pc.on('transport', (t) => console.log('now over', t))    // 'webrtc' once ICE connects
 * const chat = pc.createStream('chat')
 * chat.send('hi')                                           // held until open
 * pc.on('connection', (stream) => stream.on('data', console.log))
 * pc.addTrack(camera, localStream)                          // media: see addTrack
 */
export class PeerConnection extends EventEmitter<PeerConnectionEvents> {
  private phase: 'connecting' | 'open' | 'closed' = 'connecting'
  private carrier: Transport | null = null
  /** 'connecting' until 'open', then 'open' until 'close'. */
  get state (): 'connecting' | 'open' | 'closed' { return this.phase }
  /** The transport in use once open (it changes when the connection moves: see 'transport'). */
  get transport (): Transport | null { return this.carrier }
  /** What carries the connection: the relay or WebRTC pipe, the mover, the media RTCPeerConnection. */
  private readonly legs: Legs
  private readonly mux: Mux
  private timer: ReturnType<typeof setTimeout> | null = null
  private waiters: Array<{ resolve: () => void, reject: (err: SignalyardError) => void }> = []
  private failure: SignalyardError | null = null
  /** This side closes because its node is leaving: the BYE says so. */
  private leaving = false
  /** Both sides read batched relay messages (`bt` in the handshake). */
  private batch = false
  /** The transport this connection settled on was reported. */
  private reported = false
  private readonly watch = new PathWatch(
    () => this.state === 'open' && this.transport !== null ? { transport: this.transport, rtc: this.transport === 'webrtc' ? this.legs.webrtc()?.rtc ?? null : null } : null,
    (path) => this.emit('path', path)
  )

  constructor (
    private readonly host: PeerHost, readonly peerId: string,
    /** @internal This side connected (true) or was connected to. */
    public initiator: boolean,
    /** @internal The connection's id (the handshake's `c`). */
    public cid: string
  ) {
    super()
    this.legs = new Legs(host, {
      peerId,
      cid: () => this.cid,
      initiator: () => this.initiator,
      closed: () => this.state === 'closed',
      open: () => this.pipeOpened(),
      message: (bytes) => this.received(bytes),
      drain: () => this.mux.pump(),
      close: (error) => this.pipeClosed(error),
      pump: () => this.mux.pump(),
      moved: () => this.moved(),
      neverOpened: () => this.settled('relay'),
      lost: (error) => this.end(error, true),
      track: (track, streams, transceiver) => { if (this.state !== 'closed') this.emit('track', track as MediaStreamTrack, streams as MediaStream[], transceiver as RTCRtpTransceiver) },
      error: (error) => this.emit('error', error),
      side: (channel) => this.mux.adoptSide(channel)
    })
    this.mux = new Mux({
      pipe: () => this.legs.framePipe,
      send: (frame) => this.sendRaw(frame),
      accepted: (stream) => this.emit('connection', stream),
      violation: (error) => this.end(error, true),
      flushed: () => this.flushed(),
      control: (frame) => { const pipe = this.legs.mover?.controlPipe; if (pipe != null) this.sendRaw(frame, pipe) },
      rtc: () => this.state === 'open' && this.transport === 'webrtc' ? this.legs.webrtc()?.session.pc ?? null : null
    }, initiator)
  }

  /** The current pipe (open or still opening), or null. */
  private get pipe (): Pipe | null { return this.legs.pipe }

  /**
   * Which path carries this connection: `{ transport }` on the relay; on WebRTC also the selected
   * candidate pair (`local`/`remote` candidate types, `protocol`, `rtt` in ms). Null until open;
   * `'path'` fires when it changes (the RTT alone does not fire it).
   * @example
   * pc.on('path', (p) => console.log(p.transport, p.local, p.remote, p.protocol)) // 'webrtc' 'srflx' 'srflx' 'udp'
   */
  get path (): PeerPath | null { return this.state === 'closed' ? null : this.watch.path }

  /** Resolves once the connection is open; rejects with the coded reason if it closes first. */
  ready (): Promise<void> {
    if (this.state === 'open') return Promise.resolve()
    if (this.failure !== null) return Promise.reject(this.failure)
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }))
  }

  /**
   * The underlying RTCPeerConnection while there is one (null on the relay alone): a read-only
   * escape hatch for `getStats()`, `getSenders()`, `sender.replaceTrack()`, `setParameters()`.
   * Do not create data channels named `signalyard…` or close it: the connection owns it.
   * @example
   * const stats = await pc.rtc?.getStats()
   */
  get rtc (): RTCPeerConnection | null { return this.legs.rtc as RTCPeerConnection | null }

  /**
   * Send a media track to the peer; renegotiation follows by itself (perfect negotiation, from
   * either side, any number of times). A track added before WebRTC connects is negotiated with it.
   * The other side gets `'track'`. Throws `media-needs-webrtc` when this connection can never
   * have WebRTC (transport 'relay', or a side without RTCPeerConnection), `media-unsupported` when
   * a side's RTCPeerConnection has no media (node-datachannel's polyfill).
   * @example
   * const media = await navigator.mediaDevices.getUserMedia({ video: true, audio: true })
   * for (const track of media.getTracks()) pc.addTrack(track, media)
   * pc.on('track', (track, [stream]) => { video.srcObject = stream })
   */
  addTrack (track: MediaStreamTrack, ...streams: MediaStream[]): RTCRtpSender {
    if (this.state === 'closed') throw new SignalyardError('stream-closed', 'the peer connection is closed')
    return this.legs.media.addTrack(track, streams) as RTCRtpSender
  }

  /**
   * Stop sending a track added with `addTrack`; the other side's stream fires `'removetrack'` and
   * the track is muted there.
   * @example
   * const sender = pc.addTrack(screen, media)
   * pc.removeTrack(sender)
   */
  removeTrack (sender: RTCRtpSender): void {
    if (this.state === 'closed') throw new SignalyardError('stream-closed', 'the peer connection is closed')
    this.legs.media.removeTrack(sender)
  }

  /**
   * A new stream; the other side gets 'connection'(stream) with the same label. Streams are
   * ordered and reliable. With `{ ordered: false }` and/or `maxRetransmits` / `maxPacketLifeTime`
   * (RTCDataChannelInit's meaning) the stream is unreliable on WebRTC: its messages of up to 16 KiB
   * go on a data channel of its own with those options, both ways, and may arrive out of order or
   * not at all (games, live positions); on the relay, and for larger messages, they stay reliable
   * and ordered.
   *
   * @example
   * const positions = pc.createStream('pos', { ordered: false, maxRetransmits: 0 })
   * setInterval(() => positions.send({ x, y }), 50)   // a lost update is replaced by the next
   */
  createStream<T = unknown> (label = 'default', options: StreamOptions = {}): PeerStream<T> {
    if (this.state === 'closed') throw new SignalyardError('stream-closed', 'the peer connection is closed')
    if (typeof label !== 'string') throw new SignalyardError('bad-request', 'a stream label is a string')
    return this.mux.createStream(label, unreliableOf(options)) as PeerStream<T>
  }

  /** Close the connection and every stream on both sides; what was sent is flushed first. */
  close (): void {
    this.end(undefined, true)
  }

  /** @internal Close because this node is leaving (node.close(), channel.close()): the peer sees `peer-left`. */
  leave (): void {
    this.leaving = true
    this.end(undefined, true)
  }

  /** @internal Initiator: ask the peer for a connection. */
  start (): void {
    const rtc = this.host.rtc() !== null
    this.host.handshake(this.peerId, {
      t: 'hello', c: this.cid, rtc, bt: true, ...(rtc && this.host.transport === 'auto' ? { mv: true } : {}), ...(this.legs.media.capable() ? { md: true } : {})
    })
    this.arm(this.host.connectTimeout, 'the peer did not answer')
  }

  /**
   * @internal
   * Acceptor (also a glare loser adopting the peer's connection id): decide the transport. Both
   * 'auto' with WebRTC: the relay now and the live move; WebRTC alone when either side forces it.
   */
  accept (hello: HelloMessage): void {
    const cid = hello.c
    this.initiator = false
    this.cid = cid
    this.batch = hello.bt === true
    this.mux.becomeAcceptor()
    const choice = chooseTransport(this.host.transport, this.host.rtc() !== null, hello.rtc, hello.mv === true)
    const md = (choice === 'move' || choice === 'webrtc') && hello.md === true && this.legs.media.capable()
    this.legs.media.decide(md, hello.rtc, choice === 'move' || choice === 'webrtc')
    if (choice === 'refuse') return this.refuse('WebRTC is required here', 'WebRTC was required but one side has no RTCPeerConnection')
    if (choice === 'move') {
      // The relay first; the RTCPeerConnection is made when the initiator's offer comes (mover.ts).
      const moves = this.movable()
      this.host.handshake(this.peerId, { t: 'accept', c: cid, tr: 'relay', ...(moves ? { mv: true } : {}), ...(this.batch ? { bt: true } : {}), ...(md ? { md: true } : {}) })
      return this.useRelay()
    }
    const webrtc = choice === 'webrtc' && this.legs.useWebRtc()
    if (!webrtc && this.host.transport === 'webrtc') return this.refuse('cannot create an RTCPeerConnection', 'cannot create an RTCPeerConnection')
    this.host.handshake(this.peerId, webrtc ? { t: 'accept', c: cid, tr: 'webrtc', rd: true, ...(md ? { md: true } : {}) } : { t: 'accept', c: cid, tr: 'relay', ...(this.batch ? { bt: true } : {}) })
    if (!webrtc) return this.useRelay()
    // The initiator decides: READY over the channel, or a bye. Give it two timeouts.
    this.arm(this.host.connectTimeout * 2, 'the WebRTC handshake did not finish')
  }

  /** Acceptor: no connection without WebRTC here; say why to the peer (`told`) and to the app. */
  private refuse (told: string, why: string): void {
    this.host.handshake(this.peerId, { t: 'refuse', c: this.cid, code: 'webrtc-unavailable', message: told })
    this.end(new SignalyardError('webrtc-unavailable', why), false)
  }

  /** @internal A handshake message for this connection id. */
  handle (msg: HandshakeMessage): void {
    if (this.state === 'closed') return
    switch (msg.t) {
      case 'accept':
        if (!this.initiator || this.pipe !== null) return
        this.legs.media.decide(msg.md === true && this.legs.media.capable(), true, msg.tr === 'webrtc' || msg.mv === true)
        if (msg.tr === 'webrtc' && this.host.rtc() !== null) {
          if (!this.legs.useWebRtc(msg.rd === true)) return this.timedOut()
          return this.arm(this.host.connectTimeout, 'WebRTC did not connect in time', () => this.timedOut())
        }
        if (this.host.transport === 'webrtc') {
          return this.end(new SignalyardError('webrtc-unavailable', 'the peer cannot use WebRTC'), true)
        }
        this.batch = msg.bt === true
        if (msg.mv === true) this.movable() // its first attempt starts once the relay is open
        return this.useRelay()
      case 'refuse':
        return this.end(new SignalyardError(msg.code, msg.message ?? 'the peer refused the connection'), false)
      case 'bye':
        return this.end(msg.left === true ? peerLeft(this.peerId) : undefined, false)
      case 'sdp':
      case 'ice':
        return this.legs.signal(msg)
    }
  }

  /** @internal The node lost the peer (it left the namespace, or nobody holds its id). */
  lost (error: SignalyardError): void {
    this.end(error, false)
  }

  private useRelay (): void {
    this.disarm()
    this.legs.useRelay(this.batch)
  }

  /** Both sides move: number the mux frames and make the mover (true when this side has WebRTC). */
  private movable (): boolean {
    if (this.host.rtc() === null) return false
    this.mux.sequence()
    return this.legs.movable(this.mux.ledger as NonNullable<Mux['ledger']>)
  }

  /** The mover moved this side's frames: tell the app. */
  private moved (): void {
    const transport = this.legs.moving
    if (this.state !== 'open' || transport === null || transport === this.transport) return
    this.carrier = transport
    this.emit('transport', transport)
    this.watch.update()
    if (transport === 'webrtc') this.settled('webrtc')
  }

  /** Once per connection, by its initiator: the transport it settled on, for the server's metrics. */
  private settled (transport: Transport): void {
    if (this.reported || !this.initiator) return
    this.reported = true
    this.host.settled(transport)
  }

  /** Close the pipes (if any); once closed, nothing is left to wait for. */
  private dropPipe (): void {
    this.legs.drop(this.state === 'closed')
    if (this.state === 'closed') this.disarm()
  }

  /** WebRTC was forced (here or by the peer) and did not open in time, or failed. */
  private timedOut (): void {
    if (this.state !== 'connecting') return
    this.end(new SignalyardError('connect-timeout', `WebRTC did not connect within ${this.host.connectTimeout} ms`), true)
  }

  private pipeOpened (): void {
    if (this.state === 'closed') return
    if ((this.pipe as Pipe).transport === 'webrtc') {
      // The acceptor waits for READY: the initiator alone decides between this channel and the relay.
      // READY may have come first (the channel's 'open' event can trail its first message): then
      // what waited for this pipe goes now.
      if (!this.initiator) return this.mux.pump()
      if (!this.sendRaw(writeMux(MuxOp.Ready, 0))) return
    }
    this.opened()
  }

  private pipeClosed (error?: SignalyardError): void {
    if (this.state === 'closed') { // the peer closed after our BYE, or the pipe died while we flushed
      this.mux.drop()
      return this.dropPipe()
    }
    // The relay went away while the frames go over WebRTC: carry on there (without a way back).
    if (this.legs.mover?.transport === 'webrtc' && this.pipe?.transport === 'relay') return this.legs.slot.drop()
    const webrtc = this.pipe?.transport === 'webrtc'
    this.dropPipe()
    // ICE failed before opening: the initiator says so at once; the acceptor waits for its word.
    if (this.state === 'connecting' && webrtc) {
      if (this.initiator) this.timedOut()
      return
    }
    // The pipe is gone: tell the peer over signalling, in case its side did not notice.
    this.end(error ?? new SignalyardError('connection-closed', 'the transport closed'), true)
  }

  private opened (): void {
    if (this.state !== 'connecting') return
    this.disarm()
    this.phase = 'open'
    this.carrier = (this.pipe as Pipe).transport
    this.mux.open()
    for (const w of this.waiters.splice(0)) w.resolve()
    this.emit('open')
    this.watch.update()
    if (this.legs.mover === null) this.settled(this.carrier as Transport)
    this.mux.announce()
    this.legs.mover?.relayOpened()
  }

  /** Send on `pipe` (by default where stream frames go now); false when that pipe broke (dealt with here). */
  private sendRaw (bytes: Uint8Array, pipe = this.legs.mover?.pipe ?? this.pipe): boolean {
    try {
      (pipe as Pipe).send(bytes)
      return true
    } catch (err) {
      const error = err instanceof SignalyardError ? err : new SignalyardError('connection-closed', String(err))
      if (this.legs.mover !== null && pipe?.transport === 'webrtc') this.legs.mover.giveUp(error.message)
      else this.pipeClosed(error)
      return false
    }
  }

  /** A message on the pipe: READY and BYE are the connection's, the rest the streams'. */
  private received (bytes: Uint8Array): void {
    if (this.state === 'closed') {
      // Closed and lingering after our BYE: the peer's own BYE means it is done too.
      if (bytes[0] === MuxOp.Bye) return this.dropPipe()
      // Still flushing: a move under way completes (MOVED, RESUME, ACK), so what it holds goes out.
      if (this.legs.mover !== null && this.mux.flushing && bytes[0] >= MuxOp.Move) {
        const frame = readMux(bytes, true)
        if (frame !== null) this.legs.mover.control(frame)
      }
      return
    }
    const frame = readMux(bytes, this.legs.mover !== null)
    if (frame === null) return void this.emit('error', new SignalyardError('bad-frame', 'the peer sent a malformed mux frame'))
    if (frame.op === MuxOp.Ready) return this.initiator || this.legs.mover !== null ? undefined : this.opened()
    if (frame.op === MuxOp.Bye) return this.end(frame.kind === BYE_LEFT ? peerLeft(this.peerId) : undefined, false)
    if (frame.op >= MuxOp.Move) return this.legs.mover?.control(frame)
    this.mux.receive(frame)
  }

  /** One connection timer at a time: on expiry, `onTimeout`, else a connection still connecting fails. */
  private arm (ms: number, message: string, onTimeout?: () => void): void {
    this.disarm()
    this.timer = setTimeout(() => {
      this.timer = null
      if (onTimeout !== undefined) return onTimeout()
      if (this.state === 'connecting') this.end(new SignalyardError('connect-timeout', message), true)
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
    this.phase = 'closed'
    this.disarm()
    this.legs.mover?.stop(true)
    this.watch.stop()
    this.failure = error ?? new SignalyardError('stream-closed', 'the peer connection closed before it opened')
    for (const w of this.waiters.splice(0)) w.reject(this.failure)
    if (notify && wasOpen && (this.legs.mover?.controlPipe ?? this.legs.slot.open) !== null) {
      this.timer = setTimeout(() => this.flushed(), LINGER_MS)
      this.mux.flush()
    } else if (notify && !this.initiator && this.pipe?.transport === 'webrtc') {
      // An acceptor not open yet (no READY seen) whose initiator may be open already (its end of
      // the channel can open first): closing the RTCPeerConnection now would reach the initiator
      // before the signalled bye and read as a transport failure. Say bye (over the channel too
      // when it is open here) and let the peer close the pipe; it is dropped after the linger
      // time at the latest.
      this.host.handshake(this.peerId, this.byeMessage())
      if (this.legs.slot.open !== null) this.sendRaw(writeMux(MuxOp.Bye, 0, this.leaving ? BYE_LEFT : 0))
      this.mux.drop()
      if (this.pipe !== null) this.timer = setTimeout(() => this.dropPipe(), LINGER_MS)
    } else {
      if (notify) this.host.handshake(this.peerId, this.byeMessage())
      this.dropPipe()
      this.mux.drop()
    }
    this.mux.end(error)
    this.host.forget(this)
    if (error !== undefined) this.emit('error', error)
    this.emit('close', error)
  }

  private byeMessage (): HandshakeMessage {
    return this.leaving ? { t: 'bye', c: this.cid, left: true } : { t: 'bye', c: this.cid }
  }

  /**
   * Lingering close: everything queued went out (or time is up). Say BYE. The relay keeps frame
   * order through the server, so it closes at once; a data channel waits for the peer to close
   * (it does when BYE arrives), bounded by the linger time.
   */
  private flushed (): void {
    if (!this.mux.flushing) return
    this.disarm()
    this.mux.drop()
    // BYE goes after the frames, on their pipe (or any left when they were held at the end).
    const pipe = this.legs.mover !== null ? this.legs.mover.pipe ?? this.legs.mover.controlPipe : this.pipe
    if (pipe === null) return this.dropPipe()
    if (!this.sendRaw(writeMux(MuxOp.Bye, 0, this.leaving ? BYE_LEFT : 0), pipe) || pipe.transport === 'relay') return this.dropPipe()
    this.timer = setTimeout(() => this.dropPipe(), LINGER_MS)
  }
}

function peerLeft (id: string): SignalyardError {
  return new SignalyardError('peer-left', `peer ${id} left`)
}

/** Options of `pc.createStream` (see there). */
export interface StreamOptions {
  /** false: messages may arrive out of order (WebRTC only). */
  ordered?: boolean
  /** Retransmissions of a lost message at most (WebRTC only); 0: never resent. */
  maxRetransmits?: number
  /** Milliseconds a lost message is resent for at most (WebRTC only). */
  maxPacketLifeTime?: number
}

/** The data-channel options of an unreliable stream, or null for an ordered, reliable one; throws on bad options. */
function unreliableOf (options: StreamOptions | undefined): Unreliable | null {
  if (options === undefined || options === null) return null
  if (typeof options !== 'object') throw new SignalyardError('bad-request', 'stream options are an object')
  const { ordered = true, maxRetransmits, maxPacketLifeTime } = options
  const count = (v: unknown): boolean => v === undefined || (Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 65535)
  if (typeof ordered !== 'boolean' || !count(maxRetransmits) || !count(maxPacketLifeTime)) {
    throw new SignalyardError('bad-request', 'ordered is a boolean; maxRetransmits and maxPacketLifeTime integers 0..65535')
  }
  if (maxRetransmits !== undefined && maxPacketLifeTime !== undefined) throw new SignalyardError('bad-request', 'maxRetransmits and maxPacketLifeTime cannot both be set')
  if (ordered && maxRetransmits === undefined && maxPacketLifeTime === undefined) return null
  return { ordered, ...(maxRetransmits !== undefined ? { maxRetransmits } : {}), ...(maxPacketLifeTime !== undefined ? { maxPacketLifeTime } : {}) }
}

/**
 * The legs of a peer connection: what carries it. A slot with the relay pipe (or the one pipe of
 * a connection that does not move), the Mover running WebRTC attempts beside the relay (both sides
 * 'auto'), and the Media part with the pair's own RTCPeerConnection (both sides renegotiate).
 * PeerConnection (peer-connection.ts) keeps the handshake, the state, the timers and the mux; it
 * asks its legs where frames go and hands them the WebRTC signalling and data channels to route.
 */
import { SignalyardError } from '../protocol/errors.js'
import type { RtcMessage, Transport } from '../protocol/handshake.js'
import { Media } from './media.js'
import { Mover } from './mover.js'
import type { Ledger } from './ledger.js'
import type { PeerHost } from './peer-host.js'
import type { Pipe, PipeHandlers } from './transports/pipe.js'
import { RelayPipe } from './transports/relay.js'
import { RtcSession } from './transports/rtc-session.js'
import { PipeSlot } from './transports/slot.js'
import { DATA_CHANNEL_LABEL, WebRtcPipe, isSideChannel, type RTCDataChannelLike } from './transports/webrtc.js'

/** What the legs need from their connection. */
export interface LegsOwner extends PipeHandlers {
  readonly peerId: string
  readonly cid: () => string
  readonly initiator: () => boolean
  readonly closed: () => boolean
  /** The mover moved this side's frames, or gave WebRTC up for good ('relay'). */
  moved: () => void
  neverOpened: () => void
  /** The WebRTC path died with no relay to go back to. */
  lost: (error: SignalyardError) => void
  track: (track: unknown, streams: readonly unknown[], transceiver: unknown) => void
  error: (error: SignalyardError) => void
  /** Frames may go out again. */
  pump: () => void
  /** A stream's own data channel the peer opened (an unreliable stream's). */
  side: (channel: RTCDataChannelLike) => void
}

export class Legs {
  /** The relay pipe, or the one pipe of a connection that does not move. */
  readonly slot: PipeSlot
  /** The live move between the relay and WebRTC (both sides 'auto'), else null. */
  mover: Mover | null = null
  /** The RTCPeerConnection the pair keeps for its media, when both sides renegotiate. */
  readonly media: Media

  constructor (private readonly host: PeerHost, private readonly owner: LegsOwner) {
    this.slot = new PipeSlot(owner)
    this.media = new Media({
      transport: () => host.transport,
      rtc: () => host.rtc(),
      polite: () => (host.id() ?? '') > owner.peerId,
      initiator: owner.initiator,
      signal: (m) => host.handshake(owner.peerId, { ...m, c: owner.cid() }),
      track: owner.track,
      channel: (channel) => this.channel(channel),
      error: owner.error
    })
  }

  /** The slot's pipe (open or still opening), or null. */
  get pipe (): Pipe | null { return this.slot.current }

  /** Where stream frames go now (null while they are held). */
  get framePipe (): Pipe | null { return this.mover !== null ? this.mover.pipe : this.slot.open }

  /** The underlying RTCPeerConnection: the media one, else the current WebRTC pipe's. */
  get rtc (): object | null {
    const session = this.media.session ?? (this.slot.current instanceof WebRtcPipe ? this.slot.current.session : null) ?? this.webrtc()?.session
    return session?.pc ?? null
  }

  /** The open WebRTC pipe carrying this side's frames, if any. */
  webrtc (): WebRtcPipe | null {
    const pipe = this.mover !== null ? this.mover.webrtc : this.slot.open
    return pipe instanceof WebRtcPipe ? pipe : null
  }

  /**
   * Start the WebRTC pipe; false when the RTCPeerConnection cannot be made (e.g. a bad rtcConfig).
   * `announced`: (initiator) the acceptor said it sends READY once it has taken its channel.
   */
  useWebRtc (announced = false): boolean {
    const rtc = this.host.rtc()
    if (rtc === null) return false
    try {
      const shared = this.media.shared ? this.media.open() : null
      const signal = (m: RtcMessage): void => this.host.handshake(this.owner.peerId, { ...m, c: this.owner.cid() })
      const session = shared ?? new RtcSession(rtc.Ctor, rtc.config, false, false, this.owner.initiator, signal)
      const initiator = this.owner.initiator()
      this.slot.use((on) => new WebRtcPipe(session, initiator, on, { announced, owns: shared === null, recoverMs: this.host.connectTimeout, onSide: this.owner.side }))
      return true
    } catch (err) {
      this.owner.error(new SignalyardError('connection-closed', `cannot create an RTCPeerConnection: ${String(err)}`))
      return false
    }
  }

  useRelay (batch: boolean): void {
    this.slot.use((on) => new RelayPipe(this.host.openRelay, this.owner.cid(), this.owner.initiator(), on, batch))
  }

  /** Both sides move: make the mover over `ledger` (false when this side has no WebRTC). */
  movable (ledger: Ledger): boolean {
    if (this.host.rtc() === null) return false
    this.mover = new Mover({
      initiator: this.owner.initiator(),
      connectTimeout: this.host.connectTimeout,
      ledger,
      rtc: this.host.rtc,
      session: () => this.sharedSession(),
      signal: (m, g) => this.host.handshake(this.owner.peerId, { ...m, c: this.owner.cid(), g }),
      relay: () => this.slot.open,
      message: this.owner.message,
      pump: this.owner.pump,
      changed: this.owner.moved,
      neverOpened: this.owner.neverOpened,
      lost: this.owner.lost,
      error: this.owner.error,
      side: this.owner.side
    })
    return true
  }

  /** The transport the mover carries this side's frames on, if it moves. */
  get moving (): Transport | null { return this.mover?.transport ?? null }

  /** An sdp or ice message from the peer. */
  signal (msg: RtcMessage & { g?: number }): void {
    // With md, the pair's own RTCPeerConnection speaks without `g`; a moving pair's later
    // attempts (each on an RTCPeerConnection of its own) with it.
    if (this.media.shared && msg.g === undefined) this.sharedSession()?.receive(msg)
    else if (this.mover !== null) this.mover.signal(msg, msg.g ?? 1)
    else if (this.slot.current instanceof WebRtcPipe) this.slot.current.session.receive(msg)
  }

  /** Close the pipes (`ended`: and the media RTCPeerConnection: the connection is over). */
  drop (ended: boolean): void {
    this.slot.drop()
    this.mover?.stop()
    if (ended) this.media.close()
  }

  /** The session both sides renegotiate on (made on first use), or null. */
  private sharedSession (): RtcSession | null {
    if (!this.media.shared) return null
    try {
      return this.media.open()
    } catch (err) {
      this.owner.error(new SignalyardError('connection-closed', `cannot create an RTCPeerConnection: ${String(err)}`))
      return null
    }
  }

  /** A data channel the peer opened on the shared session: a WebRTC attempt's (its label says which), or the app's own. */
  private channel (channel: RTCDataChannelLike): void {
    const label = channel.label ?? ''
    if (isSideChannel(channel) && !this.owner.closed()) return this.owner.side(channel)
    if (this.owner.closed() || (label !== DATA_CHANNEL_LABEL && !label.startsWith(`${DATA_CHANNEL_LABEL}:`))) return
    if (this.mover !== null) {
      const g = Number(label.slice(DATA_CHANNEL_LABEL.length + 1))
      if (Number.isInteger(g) && g >= 1) return this.mover.adopt(channel, g)
    } else if (!this.owner.initiator() && this.slot.current instanceof WebRtcPipe) {
      return this.slot.current.adopt(channel)
    }
    try { channel.close() } catch {}
  }
}

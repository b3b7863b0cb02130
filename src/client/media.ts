/**
 * Media on a peer connection (SPEC §9): when both sides' RTCPeerConnections can renegotiate (both
 * said `md` in the handshake), the connection has one RtcSession for its whole life, negotiated
 * with the W3C perfect-negotiation pattern (rtc-session.ts). Tracks are added to it at any time
 * from either side; the data channels of the WebRTC attempts (mover.ts) are made on it too, so an
 * `RTCRtpSender` stays valid when the data path moves or ICE restarts.
 *
 * A track added before the handshake has decided makes the session at once (the sender is real);
 * what it wants to say to the peer is held until the handshake says both sides renegotiate, and
 * if it says they do not, the tracks cannot go: the app gets `media-needs-webrtc` or
 * `media-unsupported` as an error event and the session closes.
 */
import { SignalyardError } from '../protocol/errors.js'
import type { RtcMessage } from '../protocol/handshake.js'
import { canRenegotiate, RtcSession } from './transports/rtc-session.js'
import type { TransportOption } from './peer-host.js'
import type { RTCDataChannelLike, RTCPeerConnectionConstructor } from './transports/webrtc.js'

/** What the media part needs from its connection. */
export interface MediaHost {
  /** The node's transport option ('relay': never WebRTC). */
  transport: () => TransportOption
  rtc: () => { Ctor: RTCPeerConnectionConstructor, config: object } | null
  /** This side yields when offers cross (fixed for the pair: see PeerConnection). */
  polite: () => boolean
  /** This side started the connection. */
  initiator: () => boolean
  signal: (msg: RtcMessage) => void
  track: (track: unknown, streams: readonly unknown[], transceiver: unknown) => void
  /** A data channel the peer opened on the session. */
  channel: (channel: RTCDataChannelLike) => void
  error: (error: SignalyardError) => void
}

/** An RTCPeerConnection carrying tracks that stays `disconnected` this long restarts ICE ('failed' does at once). */
export const ICE_RESTART_AFTER_MS = 2000

export class Media {
  /** Null until the handshake says; then whether both sides renegotiate. */
  private both: boolean | null = null
  /** Why there is no media (the handshake said no). */
  private why: SignalyardError | null = null
  private current: RtcSession | null = null
  private closed = false
  private restartTimer: ReturnType<typeof setTimeout> | null = null

  constructor (private readonly host: MediaHost) {}

  /** This side's RTCPeerConnection can carry media and renegotiate. */
  capable (): boolean {
    const rtc = this.host.rtc()
    return rtc !== null && canRenegotiate(rtc.Ctor)
  }

  /** Both sides renegotiate: the connection's session is used for its data channels too. */
  get shared (): boolean { return this.both === true }

  /** The session if it exists. */
  get session (): RtcSession | null { return this.current }

  /** The session, made now if the pair may have one (null when it may not, or it cannot be made). */
  open (): RtcSession | null {
    if (this.current !== null || this.closed || this.both === false || !this.capable()) return this.current
    const rtc = this.host.rtc() as NonNullable<ReturnType<MediaHost['rtc']>>
    const session = new RtcSession(rtc.Ctor, rtc.config, true, this.host.polite(), this.host.initiator, (m) => this.host.signal(m), this.both === null)
    session.onTrack = (track, streams, transceiver) => this.host.track(track, streams, transceiver)
    session.onChannel = (channel) => this.host.channel(channel)
    session.onFailure = (error) => this.host.error(error)
    session.watch(() => this.iceChanged())
    this.current = session
    return session
  }

  /**
   * The handshake decided whether `both` sides renegotiate; if not, why there is no media: the peer
   * has no RTCPeerConnection (`peerRtc`), the pair is on the relay for good (not `webrtc`), or the
   * peer's RTCPeerConnection has no media.
   */
  decide (both: boolean, peerRtc: boolean, webrtc: boolean): void {
    if (this.both !== null) return
    this.both = both
    if (both) return this.current?.release()
    const why = !peerRtc || !webrtc
      ? new SignalyardError('media-needs-webrtc', !peerRtc ? 'the peer has no RTCPeerConnection' : 'the peer\'s transport is \'relay\': no WebRTC, no media')
      : new SignalyardError('media-unsupported', 'the peer\'s RTCPeerConnection cannot carry media (node-datachannel\'s polyfill)')
    this.why = why
    if (this.current === null) return
    this.host.error(why) // tracks were added early and cannot go
    this.current.close()
    this.current = null
  }

  /** Why this side cannot carry media, whatever the peer; null when it can. */
  private refusal (): SignalyardError | null {
    if (this.host.transport() === 'relay') return new SignalyardError('media-needs-webrtc', 'this node\'s transport is \'relay\': no WebRTC, no media')
    if (this.host.rtc() === null) return new SignalyardError('media-needs-webrtc', 'this side has no RTCPeerConnection (pass one to createNode in Node)')
    if (!this.capable()) return new SignalyardError('media-unsupported', 'this side\'s RTCPeerConnection has no media tracks (node-datachannel\'s polyfill has none: use @roamhq/wrtc or a browser)')
    return null
  }

  /** `pc.addTrack`: the sender, or a coded error when this pair cannot carry media. */
  addTrack (track: unknown, streams: unknown[]): unknown {
    const reason = this.refusal() ?? this.why
    if (reason !== null) throw reason
    let session: RtcSession | null
    try {
      session = this.open()
    } catch (err) {
      throw new SignalyardError('connection-closed', `cannot create an RTCPeerConnection: ${String(err)}`)
    }
    if (session === null) throw new SignalyardError('stream-closed', 'the peer connection is closed')
    return (session.pc.addTrack as (track: unknown, ...streams: unknown[]) => unknown)(track, ...streams)
  }

  /** `pc.removeTrack`. */
  removeTrack (sender: unknown): void {
    if (this.current === null) throw new SignalyardError('bad-request', 'this sender is not on this peer connection')
    ;(this.current.pc.removeTrack as (sender: unknown) => void)(sender)
  }

  /**
   * Perfect negotiation's `restartIce` on failure, for the media: when the RTCPeerConnection has
   * transceivers and ICE failed (or stayed disconnected for ICE_RESTART_AFTER_MS), restart ICE on
   * it (either side may; crossed offers resolve as any others). The data of a moving pair does not
   * wait for this: it has its own retries (mover.ts).
   */
  private iceChanged (): void {
    const session = this.current
    if (session === null) return
    const state = session.connectionState
    if (state !== 'failed' && state !== 'disconnected') {
      if (this.restartTimer !== null) clearTimeout(this.restartTimer)
      this.restartTimer = null
      return
    }
    const transceivers = (session.pc as { getTransceivers?: () => unknown[] }).getTransceivers?.() ?? []
    if (transceivers.length === 0 || this.restartTimer !== null) return
    const restart = (): void => {
      this.restartTimer = null
      if (this.current === session && (session.connectionState === 'failed' || session.connectionState === 'disconnected')) session.restartIce()
    }
    // The impolite side restarts; the polite one only if that did not happen in time (both at
    // once would cross their offers, and the polite side's rollback costs its video send stream).
    const polite = this.host.polite()
    if (state === 'failed' && !polite) return restart()
    this.restartTimer = setTimeout(restart, polite ? 3 * ICE_RESTART_AFTER_MS : ICE_RESTART_AFTER_MS)
  }

  close (): void {
    if (this.restartTimer !== null) clearTimeout(this.restartTimer)
    this.restartTimer = null
    this.closed = true
    this.current?.close()
    this.current = null
  }
}

/**
 * The live move of a peer connection between the server relay and WebRTC (`transport: 'auto'`,
 * docs/PROTOCOL.md "Moving between paths"). The connection opens on the relay at once; the mover
 * runs WebRTC attempts beside it (generations 1, 2, …; the initiator starts each one, the acceptor
 * follows the offers) and moves each direction of the stream frames separately:
 *
 * - Up: when this side's WebRTC pipe opens, it sends MOVE(g) as its last frame on the relay and
 *   holds its frames; the peer, having read everything before that MOVE, answers MOVED(g) on the
 *   WebRTC pipe; from then on this side's frames go there. Nothing is reordered: the peer reads the
 *   relay up to MOVE before it lets any frame come the other way.
 * - Down: when the WebRTC path dies (its pipe closes or fails, ICE reports `disconnected`, no ACK
 *   for STALL_MS, or the peer says so), this side drops it, sends RESUME(g, last frame read) on
 *   the relay, and, if its frames were on WebRTC, holds them until the peer's RESUME says what it
 *   read; the frames after that which went on WebRTC are sent again on the relay (ledger.ts), and
 *   the receiver drops the duplicates by their numbers. Nothing is lost.
 * - Then the initiator tries again with a fresh RTCPeerConnection (new ICE credentials, the
 *   freshest TURN credentials) after RETRY_FIRST_MS, doubling up to RETRY_MAX_MS, as long as WebRTC
 *   once worked for this pair; a pair whose first MAX_UNOPENED_ATTEMPTS attempts never opened
 *   stays on the relay.
 * - When both sides renegotiate (`md`), attempt 1 is a data channel labelled `signalyard:1` on the
 *   connection's own RTCPeerConnection (media.ts), so a pair that never loses its path has one
 *   RTCPeerConnection for data and media. Retries are not made on it: an ICE restart keeps the
 *   SCTP association, whose retransmission timer, backed off during the outage, held back every
 *   byte (the new channel's included) for seconds after the path was back (NAT lab, case 6, on
 *   @roamhq/wrtc); a fresh RTCPeerConnection has none of that. The media one restarts ICE by
 *   itself (media.ts).
 *
 * The relay comes first: the initiator's first attempt starts once the relay is open and what
 * waited for it has gone out, and the acceptor makes its RTCPeerConnection when the first offer
 * comes (constructing one costs a process ~13 ms the first time in node-datachannel: not in
 * front of the first byte).
 */
import { SignalyardError } from '../protocol/errors.js'
import type { RtcMessage, Transport } from '../protocol/handshake.js'
import { controlWords, MuxOp, writeControl, type MuxFrame } from '../protocol/mux.js'
import type { Ledger } from './ledger.js'
import type { Pipe } from './transports/pipe.js'
import { RtcSession } from './transports/rtc-session.js'
import { PipeSlot } from './transports/slot.js'
import { DATA_CHANNEL_LABEL, WebRtcPipe, type RTCDataChannelLike, type RTCPeerConnectionConstructor } from './transports/webrtc.js'

/** The first retry after a WebRTC path died, and the longest wait between retries. */
export const RETRY_FIRST_MS = 1000
export const RETRY_MAX_MS = 30_000
/** A WebRTC path with frames waiting for an ACK and no ACK progress for this long is given up. */
export const STALL_MS = 3000
/**
 * WebRTC attempts in a row that never opened, after which a pair stays on the relay. One is not
 * enough: libjuice (node-datachannel) can hang an ICE attempt through a symmetric NAT (about one
 * in five there, one in twenty through TURN in the NAT lab), and a fresh attempt does not.
 */
export const MAX_UNOPENED_ATTEMPTS = 3
/**
 * Acceptor: an offer of a newer attempt is taken at most this often. A reference initiator waits
 * at least RETRY_FIRST_MS between attempts; a peer sending offers of ever higher generations
 * faster would otherwise make this side build an RTCPeerConnection per message.
 */
export const MIN_ATTEMPT_GAP_MS = 500

/** What a mover needs from its connection. */
export interface MoverHost {
  readonly initiator: boolean
  readonly connectTimeout: number
  readonly ledger: Ledger
  rtc: () => { Ctor: RTCPeerConnectionConstructor, config: object } | null
  /** The connection's own session when both sides renegotiate (made on first use), else null. */
  session: () => RtcSession | null
  /** Send an sdp/ice message of generation `g` to the peer over signalling (a session of its own per attempt). */
  signal: (msg: RtcMessage, g: number) => void
  /** The relay pipe while it is open, else null. */
  relay: () => Pipe | null
  /** A frame read on the WebRTC pipe. */
  message: (bytes: Uint8Array) => void
  /** Frames may go out again (the mux pumps). */
  pump: () => void
  /** `transport` changed. */
  changed: () => void
  /** The first WebRTC attempt was given up without ever opening: the pair stays on the relay. */
  neverOpened: () => void
  /** The WebRTC path died and there is no relay to go back to. */
  lost: (error: SignalyardError) => void
  error: (error: SignalyardError) => void
  /** A stream's own data channel the peer opened on an attempt's session. */
  side: (channel: RTCDataChannelLike) => void
}

export class Mover {
  /** The generation of the current (or last) WebRTC attempt; 0 before the first. */
  private gen = 0
  private readonly slot: PipeSlot
  /** Where this side's stream frames go: held while moving up, or while resuming after a move down. */
  private out: 'relay' | 'moving' | 'webrtc' | 'resuming' = 'relay'
  /** The peer's MOVE arrived before this side's pipe opened: MOVED goes once it does. */
  private owedMoved = false
  /** Acceptor on a shared session: the MOVE of attempt 1, whose data channel has not come yet. */
  private earlyMove = 0
  /** The last generation this side gave up (its RESUME went out), and the last the peer gave up. */
  private resumed = 0
  private peerResumed = 0
  private everOpened = false
  /** The current attempt's pipe opened. */
  private genOpened = false
  /** Attempts given up in a row that never opened. */
  private unopened = 0
  private failures = 0
  /** When this side last made an RTCPeerConnection (performance.now()). */
  private madeAt = -Infinity
  private timer: ReturnType<typeof setTimeout> | null = null
  private retryTimer: ReturnType<typeof setTimeout> | null = null
  private stallTimer: ReturnType<typeof setInterval> | null = null
  private stopped = false
  /** The connection is closing and flushing: no new attempt, but a move under way still completes. */
  private closing = false

  constructor (private readonly host: MoverHost) {
    this.slot = new PipeSlot({
      open: () => this.rtcOpened(),
      message: (bytes) => this.host.message(bytes),
      drain: () => this.host.pump(),
      close: (error) => this.giveUp(error?.message ?? 'the WebRTC path closed')
    })
  }

  /** The transport that carries this side's stream frames now. */
  get transport (): Transport { return this.out === 'webrtc' ? 'webrtc' : 'relay' }

  /** The pipe stream frames go to now; null while they are held (moving up, or resuming). */
  get pipe (): Pipe | null {
    if (this.out === 'webrtc') return this.slot.open
    return this.out === 'relay' ? this.host.relay() : null
  }

  /** The open WebRTC pipe, if any. */
  get webrtc (): Pipe | null { return this.slot.open }

  /** A pipe for control frames: the WebRTC pipe when it is open, else the relay. */
  get controlPipe (): Pipe | null { return this.slot.open ?? this.host.relay() }

  /** Initiator: a new WebRTC attempt (the first once the relay is open, later ones after one was given up). */
  attempt (): void {
    this.retryTimer = null
    if (this.stopped || this.closing) return
    this.gen++
    this.make(true)
  }

  /**
   * The relay opened (the connection did). Initiator: the first attempt starts a macrotask later,
   * once the frames that waited for the relay have gone out.
   */
  relayOpened (): void {
    if (this.stopped || this.closing) return
    if (this.host.initiator && this.gen === 0 && this.retryTimer === null) this.retryTimer = setTimeout(() => this.attempt(), 0)
    if (this.out === 'relay' && this.slot.open !== null) this.moveUp()
  }

  /** An sdp/ice message of generation `g` from the peer. */
  signal (msg: RtcMessage, g: number): void {
    if (this.stopped || this.closing || g < this.gen || (g > this.gen && this.host.initiator)) return
    if (g > this.gen) { // the initiator's next attempt: this side's current one (if any) is over
      if (performance.now() - this.madeAt < MIN_ATTEMPT_GAP_MS) return
      this.giveUp('the peer started a new WebRTC attempt')
      this.gen = g
      if (!this.make(false)) return
    }
    const pipe = this.slot.current
    if (pipe instanceof WebRtcPipe) pipe.session.receive(msg)
  }

  /**
   * Acceptor on a shared session: the data channel the initiator opened on it for attempt `g` (its
   * label); only attempt 1 is made there, anything else is closed.
   */
  adopt (channel: RTCDataChannelLike, g: number): void {
    const session = this.host.session()
    if (this.stopped || this.closing || this.host.initiator || session === null || g !== 1 || this.gen !== 0) {
      try { channel.close() } catch {}
      return
    }
    this.gen = 1
    this.madeAt = performance.now()
    this.slot.use((on) => {
      const pipe = new WebRtcPipe(session, false, on, { fragile: true })
      pipe.adopt(channel)
      return pipe
    })
    if (this.earlyMove === 1) this.owedMoved = true
    this.genOpened = false
    this.arm(() => this.giveUp('WebRTC did not connect in time'))
  }

  /** A MOVE, MOVED, ACK or RESUME frame from the peer (on either pipe). */
  control (frame: MuxFrame): void {
    if (this.stopped) return
    const words = controlWords(frame.payload, frame.op === MuxOp.Resume ? 2 : 1)
    if (words === null) return this.host.error(new SignalyardError('bad-frame', 'the peer sent a short control frame'))
    const [a, b] = words
    switch (frame.op) {
      case MuxOp.Ack:
        this.host.ledger.acked(a)
        return this.host.pump()
      case MuxOp.Move:
        // On a shared session the acceptor learns attempt 1 from its data channel, which may come after its MOVE.
        if (a === 1 && this.gen === 0 && !this.host.initiator && this.host.session() !== null) this.earlyMove = 1
        if (a !== this.gen || this.resumed === a) return
        if (this.slot.open !== null) this.sendOn(this.slot.open, writeControl(MuxOp.Moved, a))
        else this.owedMoved = true
        return
      case MuxOp.Moved:
        if (a !== this.gen || this.out !== 'moving') return
        this.disarm()
        this.out = 'webrtc'
        this.stallTimer = setInterval(() => this.checkStall(), STALL_MS / 3)
        this.host.changed()
        return this.host.pump()
      case MuxOp.Resume:
        if (a > this.peerResumed) this.peerResumed = a
        // What the peer lost is queued first: giving up below lets frames flow again, and new
        // ones must not overtake it (the peer would see a gap).
        this.host.ledger.resendAfter(b)
        if (a === this.gen) this.giveUp('the peer gave up the WebRTC path')
        if (this.out === 'resuming' && this.peerResumed >= this.resumed) this.resume()
        return this.host.pump()
    }
  }

  /**
   * The connection ends: no more attempts. `keepPipe`: it is closing and flushes first — the
   * WebRTC pipe stays (what it still reads goes to the connection, a BYE can go out on it) and a
   * move under way completes (MOVED, RESUME), so frames held for it still go out; a later `stop()`
   * ends everything.
   */
  stop (keepPipe = false): void {
    if (keepPipe) this.closing = true
    else this.stopped = true
    this.disarm()
    if (this.retryTimer !== null) clearTimeout(this.retryTimer)
    this.retryTimer = null
    if (!keepPipe) this.slot.drop()
  }

  /**
   * Start attempt `gen`: the first on the shared session when there is one (initiator only: its
   * data channel), every other on a session of its own.
   */
  private make (initiator: boolean): boolean {
    const rtc = this.host.rtc()
    if (rtc === null) return false
    const g = this.gen
    this.madeAt = performance.now()
    try {
      const shared = g === 1 && initiator ? this.host.session() : null
      if (shared !== null) {
        this.slot.use((on) => new WebRtcPipe(shared, true, on, { label: `${DATA_CHANNEL_LABEL}:${g}`, announced: true, fragile: true }))
      } else {
        const session = new RtcSession(rtc.Ctor, rtc.config, false, false, () => initiator, (m) => this.host.signal(m, g))
        this.slot.use((on) => new WebRtcPipe(session, initiator, on, { announced: true, fragile: true, owns: true, onSide: this.host.side }))
      }
    } catch (err) {
      this.host.error(new SignalyardError('connection-closed', `cannot create an RTCPeerConnection: ${String(err)}`))
      this.giveUp('cannot create an RTCPeerConnection')
      return false
    }
    this.genOpened = false
    this.arm(() => this.giveUp('WebRTC did not connect in time'))
    return true
  }

  private rtcOpened (): void {
    if (this.stopped || this.closing) return
    this.disarm()
    this.earlyMove = 0
    this.everOpened = true
    this.genOpened = true
    this.unopened = 0
    this.failures = 0
    const pipe = this.slot.open as Pipe
    if (this.owedMoved) {
      this.owedMoved = false
      this.sendOn(pipe, writeControl(MuxOp.Moved, this.gen))
    }
    if (this.out === 'relay') this.moveUp()
  }

  /** This side's frames go to the WebRTC pipe once the peer has read the relay up to MOVE. */
  private moveUp (): void {
    const relay = this.host.relay()
    if (relay === null || this.slot.open === null) return
    this.out = 'moving'
    // No timer: MOVE may wait behind a long relay backlog. If the peer's side of this attempt
    // never opens, its own attempt timer gives the attempt up (RESUME); if the path dies, its close does.
    this.sendOn(relay, writeControl(MuxOp.Move, this.gen))
  }

  /** The peer's RESUME arrived after this side's: frames go on the relay, and up again when WebRTC is back. */
  private resume (): void {
    this.out = 'relay'
    if (this.slot.open !== null) this.moveUp()
  }

  /** Give up the current WebRTC attempt or path (once per generation): back to the relay, RESUME to the peer. */
  giveUp (reason: string): void {
    if (this.stopped) return
    this.disarm()
    this.slot.drop()
    this.owedMoved = false
    const g = this.gen
    if (g === 0 || this.resumed >= g) return
    this.resumed = g
    if (!this.genOpened) this.unopened++
    const again = this.everOpened || this.unopened < MAX_UNOPENED_ATTEMPTS
    if (!again) this.host.neverOpened()
    const wasRtc = this.out === 'webrtc'
    const relay = this.host.relay()
    if (relay === null) {
      if (wasRtc) this.host.lost(new SignalyardError('connection-closed', `${reason}, and the relay is gone`))
      return
    }
    this.sendOn(relay, writeControl(MuxOp.Resume, g, this.host.ledger.read))
    // Frames that went on WebRTC wait for the peer's RESUME (what it read); else they go on at once.
    this.out = wasRtc && this.peerResumed < g ? 'resuming' : 'relay'
    if (wasRtc) this.host.changed()
    if (this.host.initiator && again && !this.closing) {
      const wait = Math.min(RETRY_FIRST_MS * 2 ** this.failures, RETRY_MAX_MS)
      this.failures++
      this.retryTimer = setTimeout(() => this.attempt(), wait)
    }
    this.host.pump()
  }

  private checkStall (): void {
    if (this.out === 'webrtc' && this.host.ledger.rtcWait(performance.now()) > STALL_MS) {
      this.giveUp(`no acknowledgement on the WebRTC path for ${STALL_MS} ms`)
    }
  }

  private sendOn (pipe: Pipe, frame: Uint8Array): void {
    try {
      pipe.send(frame)
    } catch {} // a pipe that cannot send reports its close
  }

  /** The one timer of an attempt; the stall check stops with it. */
  private arm (onTimeout: () => void): void {
    this.disarm()
    this.timer = setTimeout(() => { this.timer = null; onTimeout() }, this.host.connectTimeout)
  }

  private disarm (): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    if (this.stallTimer !== null) clearInterval(this.stallTimer)
    this.stallTimer = null
  }
}

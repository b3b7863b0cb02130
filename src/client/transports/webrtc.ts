/**
 * The WebRTC pipe: one ordered, reliable data channel on an RTCPeerConnection the app provides
 * (the browser's global, or e.g. `node-datachannel/polyfill` in Node), negotiated by an RtcSession
 * (rtc-session.ts): the pipe's own, or the connection's when both sides renegotiate. The initiator
 * creates the channel. Nothing here throws or leaves a promise unhandled: a failure becomes
 * `close(error)`, and a pipe that owns its session closes it, so no RTCPeerConnection outlives it.
 *
 * Order on the accepted channel: node-datachannel (libdatachannel 0.24) hands an accepted
 * channel's early messages to JS from two native threads at once when they arrived before the JS
 * side took the channel (its `onMessage` flushes the queue on the JS thread while the SCTP thread
 * flushes new arrivals), and two messages can swap: a fragment lands in the wrong message. So the
 * acceptor says when its channel is taken (a READY frame of its own, which an initiator of any
 * version ignores), and the initiator sends nothing after its own READY until it hears it.
 */
import { SignalyardError } from '../../protocol/errors.js'
import type { IceCandidate } from '../../protocol/handshake.js'
import { MUX_HEADER, MuxOp, writeMux } from '../../protocol/mux.js'
import { PIPE_LOW_WATER, type Pipe, type PipeHandlers } from './pipe.js'
import type { RtcSession } from './rtc-session.js'

/** The parts of the W3C RTCPeerConnection the pipe uses. */
export interface RTCPeerConnectionLike {
  createDataChannel: (label: string, init?: { ordered?: boolean, maxRetransmits?: number, maxPacketLifeTime?: number }) => RTCDataChannelLike
  createOffer: () => Promise<{ type: string, sdp?: string }>
  createAnswer: () => Promise<{ type: string, sdp?: string }>
  setLocalDescription: (d: { type: string, sdp?: string }) => Promise<void>
  setRemoteDescription: (d: { type: string, sdp?: string }) => Promise<void>
  addIceCandidate: (c: IceCandidate) => Promise<void>
  readonly localDescription: { type: string, sdp?: string } | null
  readonly signalingState: string
  readonly connectionState?: string
  onicecandidate: ((ev: { candidate: IceCandidate | null }) => void) | null
  ondatachannel: ((ev: { channel: RTCDataChannelLike }) => void) | null
  onconnectionstatechange: ((ev: unknown) => void) | null
  /** Media and renegotiation (absent or throwing in node-datachannel's polyfill). */
  onnegotiationneeded?: ((ev: unknown) => void) | null
  ontrack?: ((ev: { track: unknown, streams?: readonly unknown[], transceiver?: unknown }) => void) | null
  restartIce?: () => void
  addTrack?: (track: unknown, ...streams: unknown[]) => unknown
  removeTrack?: (sender: unknown) => void
  close: () => void
}

export interface RTCDataChannelLike {
  readonly label?: string
  binaryType: string
  readonly readyState: string
  readonly bufferedAmount: number
  bufferedAmountLowThreshold: number
  onopen: ((ev: unknown) => void) | null
  onclose: ((ev: unknown) => void) | null
  onerror: ((ev: unknown) => void) | null
  onmessage: ((ev: { data: unknown }) => void) | null
  onbufferedamountlow: ((ev: unknown) => void) | null
  send: (data: Uint8Array) => void
  close: () => void
}

export type RTCPeerConnectionConstructor = new (config?: object) => RTCPeerConnectionLike

export const DATA_CHANNEL_LABEL = 'signalyard'
/**
 * Label prefix of a stream's own data channel (an unreliable stream's: `signalyard.u:<stream>`),
 * made by the side that created the stream on whichever RTCPeerConnection carries the pair.
 */
export const SIDE_CHANNEL_PREFIX = 'signalyard.u:'
/** Whether a data channel the peer opened is a stream's own (see SIDE_CHANNEL_PREFIX). */
export const isSideChannel = (channel: RTCDataChannelLike): boolean => channel.label?.startsWith(SIDE_CHANNEL_PREFIX) === true
/**
 * How long an initiator holds its frames for the READY of an acceptor that did not announce one
 * (`accept` without `rd`: an older acceptor, which never sends it; its first frame, if any,
 * releases the frames too), and for one that did (ANNOUNCED_GRACE_MS: a READY that never comes
 * must not leave the pair open and silent for ever).
 */
const ATTACH_GRACE_MS = 1000
const ANNOUNCED_GRACE_MS = 5000
/** How long a closing pipe waits for its data channel's close before closing the connection. */
const CLOSE_GRACE_MS = 1000

/** How a WebRTC pipe is set up. */
export interface WebRtcPipeOptions {
  /** The label of the data channel this side creates (initiator). */
  label?: string
  /** Initiator: the acceptor announced its READY (`accept` with `rd`): hold for it up to ANNOUNCED_GRACE_MS. */
  announced?: boolean
  /** ICE `disconnected` counts as a failure (a connection that can move back to the relay at once). */
  fragile?: boolean
  /**
   * The session is the pipe's own (once mode): it closes with the pipe, and the acceptor takes the
   * first channel the peer opens. Otherwise the session is the connection's (perfect negotiation),
   * outlives the pipe, and the acceptor's channel is handed over with `adopt`.
   */
  owns?: boolean
  /** How long a non-fragile pipe on a renegotiating session waits for an ICE restart to recover. */
  recoverMs?: number
  /** A stream's own data channel the peer opened on the pipe's own session (see SIDE_CHANNEL_PREFIX). */
  onSide?: (channel: RTCDataChannelLike) => void
}

/** A pipe over one data channel of an RtcSession (its own, or the connection's). */
export class WebRtcPipe implements Pipe {
  readonly transport = 'webrtc'
  readonly chunk = 16 * 1024
  private channel: RTCDataChannelLike | null = null
  private closed = false
  /**
   * Initiator, whether the acceptor has taken its channel (see the header): 'first' until READY
   * went out, then 'holding' (frames wait in `unsent`) until the acceptor's READY or any frame of
   * its own, or `ATTACH_GRACE_MS`; 'taken' from then on.
   */
  private accepted: 'first' | 'holding' | 'taken' = 'first'
  private unsent: Uint8Array[] = []
  private unsentBytes = 0
  private graceTimer: ReturnType<typeof setTimeout> | null = null
  /** A renegotiating session restarting ICE after a failure: the pipe fails if it does not recover in time. */
  private recoverTimer: ReturnType<typeof setTimeout> | null = null
  /** Acceptor: its READY went out. */
  private readySent = false
  private readonly unwatch: () => void

  constructor (
    readonly session: RtcSession, private readonly initiator: boolean,
    private readonly on: PipeHandlers, private readonly options: WebRtcPipeOptions = {}
  ) {
    this.unwatch = session.watch(() => this.stateChanged())
    if (options.owns === true) {
      session.onFailure = (error) => this.fail(`cannot negotiate: ${error.message}`)
      // The acceptor adopts the peer's pipe channel; a stream's own channel goes to its stream.
      session.onChannel = (channel) => {
        if (isSideChannel(channel)) options.onSide?.(channel)
        else if (!initiator) this.adopt(channel)
        else channel.close()
      }
    }
    if (initiator) this.create()
  }

  /** Initiator: the data channel (and, once mode, the offer). */
  private create (): void {
    try {
      this.attach(this.session.pc.createDataChannel(this.options.label ?? DATA_CHANNEL_LABEL, { ordered: true }))
      if (!this.session.renegotiate) this.session.offer() // a renegotiating session offers when it is told negotiation is needed
    } catch (err) {
      this.close() // no RTCPeerConnection outlives a pipe that failed to start
      throw err
    }
  }

  private stateChanged (): void {
    if (this.closed) return
    const state = this.session.connectionState
    if (state === 'connected' && this.recoverTimer !== null) {
      clearTimeout(this.recoverTimer)
      this.recoverTimer = null
    }
    if (state === 'failed' && this.options.fragile !== true && this.session.renegotiate && this.options.recoverMs !== undefined) {
      // Perfect negotiation: restart ICE and give the path a chance to come back (the data
      // channel's SCTP association survives an ICE restart).
      if (this.recoverTimer !== null) return
      this.session.restartIce()
      this.recoverTimer = setTimeout(() => this.fail('the WebRTC connection failed and an ICE restart did not bring it back'), this.options.recoverMs)
      return
    }
    if (state === 'failed' || (this.options.fragile === true && state === 'disconnected')) this.fail(`the WebRTC connection ${state === 'failed' ? 'failed' : 'was interrupted'}`)
  }

  get bufferedAmount (): number { return (this.channel?.bufferedAmount ?? 0) + this.unsentBytes }

  /** The RTCPeerConnection (read-only use: its stats, for `pc.path`). */
  get rtc (): object { return this.session.pc }

  /** Acceptor: the peer's data channel for this pipe. */
  adopt (channel: RTCDataChannelLike): void {
    if (this.channel === null && !this.closed) this.attach(channel)
    else channel.close()
  }

  send (bytes: Uint8Array): void {
    if (this.channel?.readyState !== 'open') throw new SignalyardError('stream-closed', 'the data channel is not open')
    if (this.initiator && this.accepted === 'holding') {
      this.unsent.push(bytes) // frames are the pipe's once sent: no copy
      this.unsentBytes += bytes.length
      return
    }
    this.channel.send(bytes)
    // The first frame is READY: alone, it cannot swap with another message; the next ones could.
    if (this.initiator && this.accepted === 'first') {
      this.accepted = 'holding'
      this.graceTimer = setTimeout(() => this.taken(), this.options.announced === true ? ANNOUNCED_GRACE_MS : ATTACH_GRACE_MS)
    }
  }

  /** Initiator: the acceptor has its channel (or is too old to say so): what was held goes out, in order. */
  private taken (): void {
    if (this.graceTimer !== null) clearTimeout(this.graceTimer)
    this.graceTimer = null
    const wasHolding = this.accepted === 'holding'
    this.accepted = 'taken'
    if (!wasHolding || this.closed) return
    const unsent = this.unsent
    this.unsent = []
    this.unsentBytes = 0
    try {
      for (const bytes of unsent) (this.channel as RTCDataChannelLike).send(bytes)
    } catch (err) {
      return this.fail(`cannot send on the data channel: ${String(err)}`)
    }
    if (this.bufferedAmount <= PIPE_LOW_WATER) this.on.drain()
  }

  /**
   * Acceptor: tell the initiator that this channel is taken (once, as soon as it is open). The
   * READY goes one macrotask later: Chromium, over TURN, could take a send made inside the
   * channel's 'open' (or 'datachannel') event without ever putting it on the wire (3 pairs in 130
   * in the NAT lab; none in 150 with the delay).
   */
  private announce (): void {
    if (this.initiator || this.readySent || this.channel?.readyState !== 'open') return
    this.readySent = true
    setTimeout(() => {
      if (this.closed || this.channel?.readyState !== 'open') return
      try {
        this.channel.send(writeMux(MuxOp.Ready, 0))
      } catch {} // a channel that cannot send closes, and says so
    }, 0)
  }

  private attach (channel: RTCDataChannelLike): void {
    this.channel = channel
    channel.binaryType = 'arraybuffer'
    channel.bufferedAmountLowThreshold = PIPE_LOW_WATER
    channel.onopen = () => {
      if (this.closed) return
      this.announce()
      this.on.open()
    }
    channel.onmessage = (ev) => {
      if (this.closed) return
      const bytes = toBytes(ev.data)
      if (bytes === null) return
      if (this.initiator) {
        if (this.accepted !== 'taken') this.taken() // the acceptor sent this after it took its channel
        if (this.closed) return
        if (bytes.length === MUX_HEADER && bytes[0] === MuxOp.Ready) return // the acceptor's READY is the pipe's
      }
      this.on.message(bytes)
    }
    channel.onbufferedamountlow = () => { if (!this.closed) this.on.drain() }
    channel.onclose = () => this.fail('the data channel closed')
    channel.onerror = () => {}
    this.announce() // an accepted channel is usually open already
  }

  private fail (message: string): void {
    if (this.closed) return
    this.close()
    this.on.close(new SignalyardError('connection-closed', message))
  }

  close (): void {
    if (this.closed) return
    this.closed = true
    this.unwatch()
    if (this.graceTimer !== null) clearTimeout(this.graceTimer)
    if (this.recoverTimer !== null) clearTimeout(this.recoverTimer)
    this.graceTimer = this.recoverTimer = null
    this.unsent = []
    this.unsentBytes = 0
    const channel = this.channel
    if (channel !== null) {
      channel.onopen = channel.onmessage = channel.onbufferedamountlow = null
      try { channel.close() } catch {}
    }
    if (this.options.owns !== true) {
      if (channel !== null) channel.onclose = null
      return // the connection's session lives on
    }
    // The connection is closed after its channel has closed (or CLOSE_GRACE_MS): node-datachannel's
    // polyfill closes a channel natively on a later turn, and a channel whose connection closed first
    // (natively, on another thread) can miss its own close and then hold the Node process open for
    // ever (about 1 run in 100 of examples/star under load). Browsers do not mind either order.
    const session = this.session
    if (channel === null) return session.close()
    const closeSession = (): void => { clearTimeout(timer); channel.onclose = null; session.close() }
    const timer = setTimeout(closeSession, CLOSE_GRACE_MS)
    channel.onclose = closeSession
  }
}

/**
 * The server's iceServers as `Ctor` needs them. node-datachannel's polyfill (recognised by its
 * non-standard `selectedCandidatePair`) turns a TURN entry into `turn:<username>:<credential>@host`,
 * so the `:` in a TURN REST username (`<expiry>:<user>`) and any `@`, `/` or `:` in the base64
 * credential would break the URL: it gets them URI-encoded. Every other implementation (browsers,
 * @roamhq/wrtc) takes them as they are.
 */
export function iceServersFor (Ctor: RTCPeerConnectionConstructor, servers: unknown[]): unknown[] {
  const proto = (Ctor as { prototype?: { selectedCandidatePair?: unknown } }).prototype
  if (typeof proto?.selectedCandidatePair !== 'function') return servers
  return servers.map((server) => {
    const s = server as { username?: unknown, credential?: unknown }
    if (typeof s !== 'object' || s === null || typeof s.username !== 'string' || typeof s.credential !== 'string') return server
    return { ...s, username: encodeURIComponent(s.username), credential: encodeURIComponent(s.credential) }
  })
}

function toBytes (data: unknown): Uint8Array | null {
  if (data instanceof ArrayBuffer) return new Uint8Array(data)
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  return null
}

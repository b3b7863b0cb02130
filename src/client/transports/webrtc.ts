/**
 * The WebRTC pipe: one ordered, reliable data channel on an RTCPeerConnection the app provides
 * (the browser's global, or e.g. `node-datachannel/polyfill` in Node). The initiator creates the
 * channel and the offer; candidates trickle both ways through directed signalling. Nothing here
 * throws or leaves a promise unhandled: a failure becomes `close(error)` and the connection is
 * closed, so no RTCPeerConnection outlives its pipe.
 *
 * Order on the accepted channel: node-datachannel (libdatachannel 0.24) hands an accepted
 * channel's early messages to JS from two native threads at once when they arrived before the JS
 * side took the channel (its `onMessage` flushes the queue on the JS thread while the SCTP thread
 * flushes new arrivals), and two messages can swap: a fragment lands in the wrong message. So the
 * acceptor says when its channel is taken (a READY frame of its own, which an initiator of any
 * version ignores), and the initiator sends nothing after its own READY until it hears it.
 */
import { SignalyardError } from '../../protocol/errors.js'
import type { IceCandidate, RtcMessage } from '../../protocol/handshake.js'
import { MUX_HEADER, MuxOp, writeMux } from '../../protocol/mux.js'
import { PIPE_LOW_WATER, type Pipe, type PipeHandlers } from './pipe.js'

/** The parts of the W3C RTCPeerConnection the pipe uses. */
export interface RTCPeerConnectionLike {
  createDataChannel: (label: string, init?: { ordered?: boolean }) => RTCDataChannelLike
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
  close: () => void
}

export interface RTCDataChannelLike {
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

/** Candidates held while the remote description is not set yet. */
const MAX_EARLY_CANDIDATES = 64
export const DATA_CHANNEL_LABEL = 'signalyard'
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

export class WebRtcPipe implements Pipe {
  readonly transport = 'webrtc'
  readonly chunk = 16 * 1024
  private readonly pc: RTCPeerConnectionLike
  private channel: RTCDataChannelLike | null = null
  private early: IceCandidate[] = []
  /** The initiator's own candidates, sent once the answer is applied. */
  private held: IceCandidate[] = []
  /** Tracked here: implementations disagree on what `remoteDescription` holds before it is set. */
  private remoteSet = false
  private remoteSetting = false
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
  /** Acceptor: its READY went out. */
  private readySent = false

  constructor (
    Ctor: RTCPeerConnectionConstructor, config: object, private readonly initiator: boolean,
    private readonly sendRtc: (msg: RtcMessage) => void, private readonly on: PipeHandlers,
    /** Initiator: the acceptor announced its READY (`accept` with `rd`): hold for it up to ANNOUNCED_GRACE_MS. */
    private readonly announced = false,
    /** ICE `disconnected` counts as a failure (a connection that can move back to the relay at once). */
    private readonly fragile = false
  ) {
    this.pc = new Ctor(config)
    try {
      this.setUp()
    } catch (err) {
      this.close() // no RTCPeerConnection outlives a pipe that failed to start
      throw err
    }
  }

  private setUp (): void {
    this.pc.onicecandidate = (ev) => {
      const c = ev.candidate
      if (c === null || c === undefined || this.closed || typeof c.candidate !== 'string' || c.candidate === '') return
      const candidate = { candidate: c.candidate, sdpMid: c.sdpMid ?? null, sdpMLineIndex: c.sdpMLineIndex ?? null }
      // The initiator holds its candidates until the answer is applied: an acceptor that started
      // its checks before the initiator could answer them waits for a retransmission (about 1 s).
      if (this.initiator && !this.remoteSet) this.held.push(candidate)
      else this.sendRtc({ t: 'ice', d: candidate })
    }
    this.pc.onconnectionstatechange = () => {
      const state = this.pc.connectionState
      if (state === 'failed' || (this.fragile && state === 'disconnected')) this.fail(`the WebRTC connection ${state === 'failed' ? 'failed' : 'was interrupted'}`)
    }
    if (this.initiator) {
      this.attach(this.pc.createDataChannel(DATA_CHANNEL_LABEL, { ordered: true }))
      this.pc.createOffer()
        .then(async (offer) => {
          await this.pc.setLocalDescription(offer)
          const local = this.pc.localDescription ?? offer
          // Candidates travel by trickle only (see `held`), not inside the offer.
          if (!this.closed) this.sendRtc({ t: 'sdp', d: { type: local.type, sdp: withoutCandidates(local.sdp ?? '') } })
        })
        .catch((err: unknown) => this.fail(`cannot create an offer: ${String(err)}`))
    } else {
      this.pc.ondatachannel = (ev) => {
        if (this.channel === null && !this.closed) this.attach(ev.channel)
        else ev.channel.close()
      }
    }
  }

  get bufferedAmount (): number { return (this.channel?.bufferedAmount ?? 0) + this.unsentBytes }

  /** The RTCPeerConnection (read-only use: its stats, for `pc.path`). */
  get rtc (): object { return this.pc }

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
      this.graceTimer = setTimeout(() => this.taken(), this.announced ? ANNOUNCED_GRACE_MS : ATTACH_GRACE_MS)
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

  /** Apply an sdp or ice message from the peer. Stale or duplicate ones are ignored. */
  receive (msg: RtcMessage): void {
    if (this.closed) return
    if (msg.t === 'sdp') return this.description(msg.d)
    if (!this.remoteSet) {
      if (this.early.length < MAX_EARLY_CANDIDATES) this.early.push(msg.d)
      return
    }
    this.pc.addIceCandidate(msg.d).catch(() => {}) // a candidate that does not apply is not fatal
  }

  private description (d: { type: string, sdp: string }): void {
    const expected = this.initiator ? 'answer' : 'offer'
    const state = this.pc.signalingState
    // A duplicate answer, or an offer when we are the offerer: ignored.
    if (d.type !== expected || this.remoteSetting || (this.initiator && state !== 'have-local-offer')) return
    this.remoteSetting = true
    // One retry: libdatachannel sometimes refuses an answer that arrives while its ICE transport
    // is still being set up, and takes the same answer a moment later.
    this.pc.setRemoteDescription({ type: d.type, sdp: d.sdp })
      .catch(async () => {
        await new Promise((resolve) => setTimeout(resolve, 50))
        if (!this.closed) await this.pc.setRemoteDescription({ type: d.type, sdp: d.sdp })
      })
      .then(async () => {
        this.remoteSet = true
        const held = this.held
        this.held = []
        for (const c of held) this.sendRtc({ t: 'ice', d: c })
        const early = this.early
        this.early = []
        for (const c of early) await this.pc.addIceCandidate(c).catch(() => {})
        if (this.initiator || this.closed) return
        const answer = await this.pc.createAnswer()
        await this.pc.setLocalDescription(answer)
        const local = this.pc.localDescription ?? answer
        if (!this.closed) this.sendRtc({ t: 'sdp', d: { type: local.type, sdp: local.sdp ?? '' } })
      })
      .catch((err: unknown) => this.fail(`cannot apply the remote description: ${String(err)}`))
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
    this.early = []
    if (this.graceTimer !== null) clearTimeout(this.graceTimer)
    this.graceTimer = null
    this.unsent = []
    this.unsentBytes = 0
    const channel = this.channel
    if (channel !== null) {
      channel.onopen = channel.onmessage = channel.onbufferedamountlow = null
      try { channel.close() } catch {}
    }
    this.pc.onicecandidate = this.pc.ondatachannel = this.pc.onconnectionstatechange = null
    // The connection is closed after its channel has closed (or CLOSE_GRACE_MS): node-datachannel's
    // polyfill closes a channel natively on a later turn, and a channel whose connection closed first
    // (natively, on another thread) can miss its own close and then hold the Node process open for
    // ever (about 1 run in 100 of examples/star under load). Browsers do not mind either order.
    const pc = this.pc
    if (channel === null) {
      try { pc.close() } catch {}
      return
    }
    const closePc = (): void => { clearTimeout(timer); channel.onclose = null; try { pc.close() } catch {} }
    const timer = setTimeout(closePc, CLOSE_GRACE_MS)
    channel.onclose = closePc
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

function withoutCandidates (sdp: string): string {
  return sdp.split('\r\n').filter((line) => !line.startsWith('a=candidate:') && line !== 'a=end-of-candidates').join('\r\n')
}

function toBytes (data: unknown): Uint8Array | null {
  if (data instanceof ArrayBuffer) return new Uint8Array(data)
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  return null
}

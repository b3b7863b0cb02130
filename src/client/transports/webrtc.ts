/**
 * The WebRTC pipe: one ordered, reliable data channel on an RTCPeerConnection the app provides
 * (the browser's global, or e.g. `node-datachannel/polyfill` in Node). The initiator creates the
 * channel and the offer; candidates trickle both ways through directed signalling. Nothing here
 * throws or leaves a promise unhandled: a failure becomes `close(error)` and the connection is
 * closed, so no RTCPeerConnection outlives its pipe.
 */
import { SignalyardError } from '../../protocol/errors.js'
import type { IceCandidate, RtcSignal } from '../../protocol/handshake.js'
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

  constructor (
    Ctor: RTCPeerConnectionConstructor, config: object, private readonly initiator: boolean,
    private readonly signal: (msg: RtcSignal) => void, private readonly on: PipeHandlers
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
      else this.signal({ t: 'ice', d: candidate })
    }
    this.pc.onconnectionstatechange = () => {
      if (this.pc.connectionState === 'failed') this.fail('the WebRTC connection failed')
    }
    if (this.initiator) {
      this.attach(this.pc.createDataChannel(DATA_CHANNEL_LABEL, { ordered: true }))
      this.pc.createOffer()
        .then(async (offer) => {
          await this.pc.setLocalDescription(offer)
          const local = this.pc.localDescription ?? offer
          // Candidates travel by trickle only (see `held`), not inside the offer.
          if (!this.closed) this.signal({ t: 'sdp', d: { type: local.type, sdp: withoutCandidates(local.sdp ?? '') } })
        })
        .catch((err: unknown) => this.fail(`cannot create an offer: ${String(err)}`))
    } else {
      this.pc.ondatachannel = (ev) => {
        if (this.channel === null && !this.closed) this.attach(ev.channel)
        else ev.channel.close()
      }
    }
  }

  get bufferedAmount (): number { return this.channel?.bufferedAmount ?? 0 }

  send (bytes: Uint8Array): void {
    if (this.channel?.readyState !== 'open') throw new SignalyardError('stream-closed', 'the data channel is not open')
    this.channel.send(bytes)
  }

  /** Apply an sdp or ice message from the peer. Stale or duplicate ones are ignored. */
  receive (msg: RtcSignal): void {
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
        for (const c of held) this.signal({ t: 'ice', d: c })
        const early = this.early
        this.early = []
        for (const c of early) await this.pc.addIceCandidate(c).catch(() => {})
        if (this.initiator || this.closed) return
        const answer = await this.pc.createAnswer()
        await this.pc.setLocalDescription(answer)
        const local = this.pc.localDescription ?? answer
        if (!this.closed) this.signal({ t: 'sdp', d: { type: local.type, sdp: local.sdp ?? '' } })
      })
      .catch((err: unknown) => this.fail(`cannot apply the remote description: ${String(err)}`))
  }

  private attach (channel: RTCDataChannelLike): void {
    this.channel = channel
    channel.binaryType = 'arraybuffer'
    channel.bufferedAmountLowThreshold = PIPE_LOW_WATER
    channel.onopen = () => { if (!this.closed) this.on.open() }
    channel.onmessage = (ev) => {
      if (this.closed) return
      const bytes = toBytes(ev.data)
      if (bytes !== null) this.on.message(bytes)
    }
    channel.onbufferedamountlow = () => { if (!this.closed) this.on.drain() }
    channel.onclose = () => this.fail('the data channel closed')
    channel.onerror = () => {}
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
    const channel = this.channel
    if (channel !== null) {
      channel.onopen = channel.onmessage = channel.onbufferedamountlow = channel.onclose = null
      try { channel.close() } catch {}
    }
    this.pc.onicecandidate = this.pc.ondatachannel = this.pc.onconnectionstatechange = null
    try { this.pc.close() } catch {}
  }
}

function withoutCandidates (sdp: string): string {
  return sdp.split('\r\n').filter((line) => !line.startsWith('a=candidate:') && line !== 'a=end-of-candidates').join('\r\n')
}

function toBytes (data: unknown): Uint8Array | null {
  if (data instanceof ArrayBuffer) return new Uint8Array(data)
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  return null
}

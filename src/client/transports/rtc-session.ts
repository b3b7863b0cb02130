/**
 * One RTCPeerConnection and its offer/answer exchange over directed signalling. Two ways to run:
 *
 * - Once (`renegotiate: false`): the initiator offers once (`offer()`), the acceptor answers, and
 *   every later description is ignored. For a pair where one side cannot renegotiate (e.g.
 *   node-datachannel's polyfill, which has no tracks and no ICE restart); its data channel pipe
 *   owns the session and a new WebRTC attempt makes a new session.
 * - Perfect negotiation (`renegotiate: true`, both sides said `md` in the handshake): the W3C
 *   pattern. Either side offers whenever its RTCPeerConnection says negotiation is needed (a track
 *   added or removed, a data channel, `restartIce()`); the roles are fixed: the polite side rolls
 *   its own offer back when the two offers cross, the impolite side ignores the peer's. The session
 *   lives as long as the peer connection: media senders stay valid across WebRTC attempts.
 *
 * Every operation on the RTCPeerConnection (create/set descriptions, add candidates) runs in one
 * queue, one at a time, so a decision read from `signalingState` still holds when it is acted on.
 * The explicit forms (`createOffer` + `setLocalDescription(offer)`, an explicit rollback) are used:
 * @roamhq/wrtc has neither the argument-less `setLocalDescription()` nor the implicit rollback.
 *
 * Candidates travel by trickle only (an offer is sent without them), and this side holds its own
 * until a remote description has been applied: a peer that started its checks before it could
 * answer them waits for a retransmission (about 1 s). Remote candidates that come before the
 * remote description wait for it (at most MAX_EARLY_CANDIDATES).
 */
import { SignalyardError } from '../../protocol/errors.js'
import { MAX_SDP_PARTS, SDP_PART, type IceCandidate, type RtcMessage } from '../../protocol/handshake.js'
import type { RTCDataChannelLike, RTCPeerConnectionConstructor, RTCPeerConnectionLike } from './webrtc.js'

/** Candidates held while the remote description is not set yet. */
const MAX_EARLY_CANDIDATES = 64
/** Messages held while the handshake has not said whether the peer renegotiates (see `release`). */
const MAX_HELD_MESSAGES = 256
/** Queued operations (remote descriptions and candidates) beyond which remote input is dropped. */
const MAX_QUEUED_OPS = 256

/** Whether `Ctor` can carry media and renegotiate (node-datachannel's polyfill throws on both). */
export function canRenegotiate (Ctor: RTCPeerConnectionConstructor): boolean {
  const proto = (Ctor as { prototype?: Record<string, unknown> }).prototype
  if (proto === undefined) return false
  // node-datachannel's polyfill is recognised by its non-standard `selectedCandidatePair`.
  return typeof proto.addTrack === 'function' && typeof proto.restartIce === 'function' &&
    typeof proto.selectedCandidatePair !== 'function'
}

export class RtcSession {
  readonly pc: RTCPeerConnectionLike
  private queue: Promise<void> = Promise.resolve()
  private queued = 0
  /** A remote description was applied at least once. */
  private remoteSet = false
  private early: IceCandidate[] = []
  /** This side's candidates, sent once a remote description is applied. */
  private own: IceCandidate[] = []
  /** Messages held until `release()` (null once released). */
  private held: RtcMessage[] | null
  private closed = false
  private readonly watchers = new Set<() => void>()
  /** The parts of a long description read so far (see SDP_PART). */
  private parts: { type: string, count: number, slices: string[] } | null = null
  /** A data channel the peer opened. */
  onChannel: ((channel: RTCDataChannelLike) => void) | null = null
  /** A remote track (perfect negotiation only). */
  onTrack: ((track: unknown, streams: readonly unknown[], transceiver: unknown) => void) | null = null
  /** An offer/answer step failed. */
  onFailure: ((error: SignalyardError) => void) | null = null

  constructor (
    Ctor: RTCPeerConnectionConstructor, config: object,
    readonly renegotiate: boolean,
    /** Perfect negotiation: this side yields when offers cross. */
    private readonly polite: boolean,
    /** Whether this side started the peer connection (the first offer is the initiator's; a glare loser adopts the peer's). */
    private readonly initiator: () => boolean,
    /** Send an sdp or ice message to the peer. */
    private readonly signal: (msg: RtcMessage) => void,
    /** Hold outgoing messages until `release()` (the handshake has not decided the mode yet). */
    hold = false
  ) {
    this.held = hold ? [] : null
    this.pc = new Ctor(config)
    try {
      this.setUp()
    } catch (err) {
      this.close()
      throw err
    }
  }

  private setUp (): void {
    const pc = this.pc
    pc.onicecandidate = (ev) => {
      const c = ev.candidate
      if (c === null || c === undefined || this.closed || typeof c.candidate !== 'string' || c.candidate === '') return
      const candidate = { candidate: c.candidate, sdpMid: c.sdpMid ?? null, sdpMLineIndex: c.sdpMLineIndex ?? null }
      if (!this.remoteSet) this.own.push(candidate)
      else this.send({ t: 'ice', d: candidate })
    }
    pc.onconnectionstatechange = () => { for (const watcher of this.watchers) watcher() }
    pc.ondatachannel = (ev) => {
      if (!this.closed) this.onChannel?.(ev.channel)
    }
    if (!this.renegotiate) return
    pc.onnegotiationneeded = () => this.run(async () => await this.negotiate())
    pc.ontrack = (ev) => { if (!this.closed) this.onTrack?.(ev.track, ev.streams ?? [], ev.transceiver) }
  }

  get connectionState (): string { return this.pc.connectionState ?? 'new' }

  /** Call `watcher` on every change of the connection state; returns the way to stop. */
  watch (watcher: () => void): () => void {
    this.watchers.add(watcher)
    return () => this.watchers.delete(watcher)
  }

  /** Once mode: the initiator's one offer (after its data channel is created). */
  offer (): void {
    this.run(async () => await this.negotiate())
  }

  /** Perfect negotiation: start an ICE restart (a new offer follows). */
  restartIce (): void {
    if (this.closed || !this.renegotiate) return
    try {
      this.pc.restartIce?.()
    } catch {}
  }

  /** The handshake decided: held messages go out. */
  release (): void {
    const held = this.held
    this.held = null
    for (const msg of held ?? []) this.signal(msg)
  }

  /** An sdp or ice message from the peer. */
  receive (msg: RtcMessage): void {
    if (this.closed || this.queued >= MAX_QUEUED_OPS) return
    if (msg.t === 'sdp') {
      const d = msg.pn === undefined ? msg.d : this.part(msg.d, msg.pi ?? 0, msg.pn)
      if (d !== null) this.run(async () => await this.describe(d))
      return
    }
    if (!this.remoteSet) {
      if (this.early.length < MAX_EARLY_CANDIDATES) this.early.push(msg.d)
      return
    }
    // A candidate that does not apply (an ignored offer's, an old ICE generation's) is not fatal.
    this.run(async () => { await this.pc.addIceCandidate(msg.d).catch(() => {}) })
  }

  /** One part of a long description: the whole once its last part is in, else null. Parts out of order drop it. */
  private part (d: { type: string, sdp: string }, index: number, count: number): { type: string, sdp: string } | null {
    if (index === 0) this.parts = { type: d.type, count, slices: [] }
    const parts = this.parts
    if (parts === null || parts.type !== d.type || parts.count !== count || parts.slices.length !== index || d.sdp.length > SDP_PART) {
      this.parts = null
      return null
    }
    parts.slices.push(d.sdp)
    if (parts.slices.length < count) return null
    this.parts = null
    return { type: d.type, sdp: parts.slices.join('') }
  }

  close (): void {
    if (this.closed) return
    this.closed = true
    this.early = []
    this.own = []
    this.held = null
    this.watchers.clear()
    this.onChannel = this.onTrack = this.onFailure = null
    const pc = this.pc
    pc.onicecandidate = pc.ondatachannel = pc.onconnectionstatechange = null
    pc.onnegotiationneeded = pc.ontrack = null
    try { pc.close() } catch {}
  }

  private send (msg: RtcMessage): void {
    if (this.closed) return
    if (msg.t === 'sdp' && msg.d.sdp.length > SDP_PART) {
      const { type, sdp } = msg.d
      const count = Math.ceil(sdp.length / SDP_PART)
      if (count > MAX_SDP_PARTS) return this.onFailure?.(new SignalyardError('payload-too-large', `a session description of ${sdp.length} characters is over ${MAX_SDP_PARTS} parts`))
      for (let i = 0; i < count; i++) this.send({ t: 'sdp', d: { type, sdp: sdp.slice(i * SDP_PART, (i + 1) * SDP_PART) }, pi: i, pn: count })
      return
    }
    if (this.held === null) return this.signal(msg)
    if (this.held.length < MAX_HELD_MESSAGES) this.held.push(msg)
  }

  private run (op: () => Promise<void>): void {
    this.queued++
    this.queue = this.queue.then(async () => {
      if (!this.closed) await op()
    }).catch((err: unknown) => {
      if (!this.closed) this.onFailure?.(new SignalyardError('connection-closed', String(err)))
    }).finally(() => { this.queued-- })
  }

  /** Make and send an offer, unless the signalling state is busy (negotiation is asked for again once stable). */
  private async negotiate (): Promise<void> {
    // Once mode skips the checks: libdatachannel may take its offer as the local description
    // inside createOffer (its signalling state is then 'have-local-offer' already).
    if (this.renegotiate && this.pc.signalingState !== 'stable') return
    // The acceptor does not make the first offer: the initiator always does (its data channel), and
    // tracks this side added meanwhile ride on that offer's m-lines in the answer. Offers crossing
    // at the very start made Chromium's polite side roll back transceivers it had made with
    // addTrack, and the video that then came in on them never reached a <video> (the track stayed
    // muted, 0×0, while getStats counted frames decoded).
    if (this.renegotiate && !this.initiator() && !this.remoteSet) return
    const offer = await this.pc.createOffer()
    if (this.closed || (this.renegotiate && this.pc.signalingState !== 'stable')) return
    await this.pc.setLocalDescription(offer)
    const local = this.pc.localDescription ?? offer
    this.send({ t: 'sdp', d: { type: local.type, sdp: withoutCandidates(local.sdp ?? '') } })
  }

  /** Apply the peer's offer or answer (answering an offer). */
  private async describe (d: { type: string, sdp: string }): Promise<void> {
    // Once mode: one remote description, then nothing more.
    if (!this.renegotiate && this.remoteSet) return
    const state = this.pc.signalingState
    if (d.type === 'answer' && state !== 'have-local-offer') return // stale or duplicate
    const collision = d.type === 'offer' && state !== 'stable'
    if (collision && (!this.polite || !this.renegotiate)) return // the impolite side's offer wins
    if (collision) await this.pc.setLocalDescription({ type: 'rollback' })
    try {
      await this.pc.setRemoteDescription(d)
    } catch {
      // One retry: libdatachannel sometimes refuses an answer that arrives while its ICE
      // transport is still being set up, and takes the same answer a moment later.
      await new Promise((resolve) => setTimeout(resolve, 50))
      if (this.closed) return
      await this.pc.setRemoteDescription(d)
    }
    if (!this.remoteSet) {
      this.remoteSet = true
      const own = this.own
      this.own = []
      for (const c of own) this.send({ t: 'ice', d: c })
      const early = this.early
      this.early = []
      for (const c of early) await this.pc.addIceCandidate(c).catch(() => {})
    }
    if (d.type !== 'offer' || this.closed) return
    const answer = await this.pc.createAnswer()
    await this.pc.setLocalDescription(answer)
    const local = this.pc.localDescription ?? answer
    this.send({ t: 'sdp', d: { type: local.type, sdp: local.sdp ?? '' } })
  }
}

function withoutCandidates (sdp: string): string {
  return sdp.split('\r\n').filter((line) => !line.startsWith('a=candidate:') && line !== 'a=end-of-candidates').join('\r\n')
}

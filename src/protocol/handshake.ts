/**
 * The peer handshake: how two nodes agree on a connection and its transport before any mux frame
 * flows (docs/PROTOCOL.md, "Handshake"). Each message is a JSON object, the payload of one signal
 * DATA frame addressed to the peer (`meta.to`; the server stamps `meta.from`). Every message names
 * its connection `c`: the random id (8..64 of `[A-Za-z0-9_-]`) chosen by the side that connects,
 * also the secret half of the relay tokens.
 *
 *   { t: 'hello', c, rtc, mv?, bt?, md? }  initiator → acceptor: wants a connection; `rtc` (boolean): it
 *                                 can and may use WebRTC; `mv: true`: its transport is 'auto', so it
 *                                 can open on the relay and move to WebRTC live (client/mover.ts);
 *                                 `bt: true`: it reads batched relay messages (see mux.ts);
 *                                 `md: true`: its RTCPeerConnection renegotiates (tracks, ICE restart)
 *   { t: 'accept', c, tr, rd?, mv?, bt?, md? }  acceptor → initiator: `tr` is 'webrtc' or 'relay', the
 *                                 acceptor's choice of transport; `rd: true`: it will send READY on
 *                                 the data channel once it has taken it (the initiator waits for that
 *                                 READY before sending anything after its own; see
 *                                 transports/webrtc.ts); `mv: true` (with 'relay'): open on the
 *                                 relay now, number the mux frames and move to WebRTC when it connects;
 *                                 `bt: true` (answering a hello with `bt`): both sides may batch
 *                                 small mux frames into one relay message from now on; `md: true`
 *                                 (answering a hello with `md`, WebRTC chosen or `mv`): both sides
 *                                 renegotiate: one RTCPeerConnection for the connection's life,
 *                                 perfect negotiation (client/media.ts), and each WebRTC attempt of a
 *                                 moving connection is a data channel labelled `signalyard:<g>` on it
 *   { t: 'refuse', c, code, message? }  acceptor → initiator: no connection; `code` is an error code
 *                                 ('webrtc-unavailable', 'connect-timeout'; anything else reads as
 *                                 'connection-closed'), `message` a human text (cut to 200 chars)
 *   { t: 'bye', c, left? }        either side: the connection is closed; `left: true` when the
 *                                 sender's node is leaving (the receiver closes with `peer-left`)
 *   { t: 'sdp', c, g?, d: { type, sdp } }  either side: the offer (initiator) or answer (acceptor);
 *                                 with `md`, an offer or answer from either side at any time;
 *                                 `type` is 'offer' or 'answer', `sdp` the description text; `g`: the
 *                                 WebRTC attempt (1, 2, …) of a connection that moves without `md`,
 *                                 else absent. A description longer than SDP_PART characters (many
 *                                 tracks) goes in `pn` messages (at most MAX_SDP_PARTS), part `pi`
 *                                 (0-based) each carrying the next slice of `sdp`, in order
 *   { t: 'ice', c, g?, d: { candidate, sdpMid, sdpMLineIndex } }  either side: one trickled ICE
 *                                 candidate (`sdpMid` string or null, `sdpMLineIndex` number or null)
 *
 * Written with `writeHandshake`, read with `readHandshake`: untrusted input becomes one of these
 * typed messages or null, never an exception.
 */
import { encodePayload, type EncodedPayload } from './codec.js'

/** A peer connection's transport. */
export type Transport = 'webrtc' | 'relay'

/** The codes a `refuse` carries, as read. */
export type RefuseCode = 'webrtc-unavailable' | 'connect-timeout' | 'connection-closed'

/** An ICE candidate as the W3C API and the `ice` message carry it. */
export interface IceCandidate { candidate?: string, sdpMid?: string | null, sdpMLineIndex?: number | null }

/** The WebRTC part of the handshake (what a WebRTC pipe sends and receives), without `c`. */
export type RtcMessage = { t: 'sdp', d: { type: string, sdp: string }, pi?: number, pn?: number } | { t: 'ice', d: IceCandidate }

/** The longest slice of a description in one sdp message (the server's default signal limit is 64 KiB). */
export const SDP_PART = 30_000
/** The most parts one description may come in (960,000 characters of SDP). */
export const MAX_SDP_PARTS = 32

/** The initiator's first message. */
export interface HelloMessage { t: 'hello', c: string, rtc: boolean, mv?: true, bt?: true, md?: true }

/** One handshake message. */
export type HandshakeMessage =
  | HelloMessage
  | { t: 'accept', c: string, tr: Transport, rd?: true, mv?: true, bt?: true, md?: true }
  | { t: 'refuse', c: string, code: RefuseCode, message?: string }
  | { t: 'bye', c: string, left?: boolean }
  | ({ c: string, g?: number } & RtcMessage)

/**
 * The acceptor's choice of transport (docs/PROTOCOL.md, "Handshake"), from its own transport
 * option and WebRTC (`rtc`) and the initiator's hello: 'move' (both 'auto' with WebRTC: the relay
 * now, WebRTC live), 'webrtc' alone (both have it and either forces it), 'relay', or 'refuse'
 * (this side forces WebRTC and one side has none).
 */
export function chooseTransport (option: 'auto' | Transport, rtc: boolean, remoteRtc: boolean, remoteMv: boolean): 'move' | 'webrtc' | 'relay' | 'refuse' {
  const both = rtc && remoteRtc
  if (option === 'webrtc') return both ? 'webrtc' : 'refuse'
  if (!both) return 'relay'
  return remoteMv && option === 'auto' ? 'move' : 'webrtc'
}

/** The connection id's alphabet and length. */
const CID = /^[\w-]{8,64}$/
/** A refusal's text is cut to this many characters. */
const MAX_REFUSE_MESSAGE = 200

/** The payload of the signal DATA frame that carries `msg`. */
export function writeHandshake (msg: HandshakeMessage): EncodedPayload {
  return encodePayload(msg)
}

/** Read a decoded signal payload from a peer: a handshake message, or null for anything else. */
export function readHandshake (value: unknown): HandshakeMessage | null {
  if (typeof value !== 'object' || value === null) return null
  const m = value as Record<string, unknown>
  const c = m.c
  if (typeof c !== 'string' || !CID.test(c)) return null
  switch (m.t) {
    case 'hello': {
      const hello: HandshakeMessage = { t: 'hello', c, rtc: m.rtc === true }
      if (m.mv === true) hello.mv = true
      if (m.bt === true) hello.bt = true
      if (m.md === true) hello.md = true
      return hello
    }
    case 'accept': {
      if (m.tr !== 'webrtc' && m.tr !== 'relay') return null
      const accept: HandshakeMessage = { t: 'accept', c, tr: m.tr }
      if (m.rd === true) accept.rd = true
      if (m.mv === true && m.tr === 'relay') accept.mv = true
      if (m.bt === true) accept.bt = true
      if (m.md === true && (m.tr === 'webrtc' || accept.mv === true)) accept.md = true
      return accept
    }
    case 'refuse': return {
      t: 'refuse',
      c,
      code: m.code === 'webrtc-unavailable' || m.code === 'connect-timeout' ? m.code : 'connection-closed',
      message: typeof m.message === 'string' ? m.message.slice(0, MAX_REFUSE_MESSAGE) : undefined
    }
    case 'bye': return m.left === true ? { t: 'bye', c, left: true } : { t: 'bye', c }
    case 'sdp': {
      const d = m.d as Record<string, unknown> | null
      if (typeof d !== 'object' || d === null || (d.type !== 'offer' && d.type !== 'answer') || typeof d.sdp !== 'string') return null
      const sdp: { c: string } & RtcMessage = { t: 'sdp', c, d: { type: d.type, sdp: d.sdp } }
      if (m.pn !== undefined || m.pi !== undefined) {
        const { pi, pn } = m
        if (!Number.isInteger(pn) || !Number.isInteger(pi) || (pn as number) < 2 || (pn as number) > MAX_SDP_PARTS || (pi as number) < 0 || (pi as number) >= (pn as number)) return null
        sdp.pi = pi as number
        sdp.pn = pn as number
      }
      return withGeneration(sdp, m.g)
    }
    case 'ice': {
      const d = m.d as Record<string, unknown> | null
      if (typeof d !== 'object' || d === null || typeof d.candidate !== 'string') return null
      return withGeneration({
        t: 'ice',
        c,
        d: {
          candidate: d.candidate,
          sdpMid: typeof d.sdpMid === 'string' ? d.sdpMid : null,
          sdpMLineIndex: typeof d.sdpMLineIndex === 'number' ? d.sdpMLineIndex : null
        }
      }, m.g)
    }
    default: return null
  }
}

/** The largest attempt number `g` read. */
const MAX_GENERATION = 0x7fffffff

/** An sdp/ice message with its attempt number when `g` is one (a positive integer), else without. */
function withGeneration (msg: { c: string } & RtcMessage, g: unknown): HandshakeMessage {
  return Number.isInteger(g) && (g as number) >= 1 && (g as number) <= MAX_GENERATION ? { ...msg, g: g as number } : msg
}

/**
 * The signal endpoint on the wire: directed messages between claimed ids of a namespace (what
 * createNode's handshake, protocol/handshake.ts, travels over; docs/PROTOCOL.md, "signal").
 *
 *   client → server  OPEN   { ep: "signal", ns, id, key }   claim `id` (same rules as peers)
 *   server → client  OPENED { id }
 *   client → server  DATA   { to, app? } + payload         to the one stream holding `to`
 *   server → client  DATA   { from, app? } + the same payload   `from`: the sender's claimed id, set by the server
 *   server → client  ERROR  { code: "unknown-peer", message, to, app? }   no one holds `to`
 *
 * `app: 1` marks an application's message (node.send), which the server carries like any other;
 * without it the payload is createNode's handshake.
 *   server → client  EVENT  { ep: "signal", ns, op: "leave", id }   an id was released
 *   client → server  REQUEST { op: "settled", req, tr }   a peer connection this id started settled
 *                                                          on transport `tr` ("webrtc" | "relay"):
 *                                                          counted in /metrics; REPLY { req }
 */
import { FrameType, writeFrame, type EncodedPayload, type Kind, type RawFrame } from './codec.js'
import { bad, isName, type EndpointWire } from './check.js'
import { readClaim } from './peers.js'

/** Claim a signal id (directed messages to it reach this stream). */
export interface OpenSignal { type: 'open', sid: number, ep: 'signal', ns: string, id: string, key: string }

/** A pc settled on a transport (for /metrics). */
export interface SignalSettledRequest { type: 'request', sid: number, req: number, op: 'settled', tr: 'webrtc' | 'relay' }
export type SignalRequest = SignalSettledRequest

export const signalWire: EndpointWire<OpenSignal, SignalRequest> = {
  open: (sid, ns, m) => {
    const claim = readClaim(sid, m)
    return 'error' in claim ? claim : { type: 'open', sid, ep: 'signal', ns, id: claim.id, key: claim.key }
  },
  requests: {
    settled: (sid, req, m) =>
      m.tr === 'webrtc' || m.tr === 'relay' ? { type: 'request', sid, req, op: 'settled', tr: m.tr } : bad(sid, "tr must be 'webrtc' or 'relay'", req)
  }
}

/** The REQUEST telling the server that a peer connection settled on `tr`. */
export function writeSignalSettled (sid: number, req: number, tr: 'webrtc' | 'relay'): Uint8Array {
  return writeFrame(FrameType.Request, sid, { op: 'settled', req, tr })
}

/** A client's directed message: DATA `{ to }` on its signal stream (`app`: an application's message). */
export function writeSignalTo (sid: number, to: string, payload: EncodedPayload, app = false): Uint8Array {
  return writeFrame(FrameType.Data, sid, app ? { to, app: 1 } : { to }, payload)
}

/**
 * The addressee and payload of a client's directed message; `to` is null when it is not a name,
 * `app` whether it is an application's message.
 */
export function readSignalTo (frame: RawFrame): { to: string | null, app: boolean, payload: EncodedPayload } {
  const to = frame.meta?.to
  return { to: isName(to) ? to : null, app: frame.meta?.app === 1, payload: { kind: frame.kind as Kind, bytes: frame.payload } }
}

/** The delivered message: DATA `{ from }` (and `app: 1`), its stream id set by whoever delivers it. */
export function writeSignalFrom (from: string, payload: EncodedPayload, app = false): Uint8Array {
  return writeFrame(FrameType.Data, 0, app ? { from, app: 1 } : { from }, payload)
}

/** The sender of a delivered message; null when missing. */
export function readSignalFrom (frame: RawFrame): string | null {
  const from = frame.meta?.from
  return typeof from === 'string' ? from : null
}

/** The EVENT every broker publishes on the namespace's signal topic when an id is released. */
export function writeSignalLeave (ns: string, id: string): Uint8Array {
  return writeFrame(FrameType.Event, 0, { ep: 'signal', ns, op: 'leave', id })
}

/** The id a signal EVENT says left; null for anything else. */
export function readSignalLeave (frame: RawFrame): string | null {
  const m = frame.meta
  return m?.op === 'leave' && typeof m.id === 'string' ? m.id : null
}

/**
 * The two faces of a peer connection: what it needs from its node (`PeerHost`: the transport
 * option, WebRTC, signalling, the relay) and the events it gives the app.
 */
import type { SignalyardError } from '../protocol/errors.js'
import type { HandshakeMessage, Transport } from '../protocol/handshake.js'
import type { PeerConnection } from './peer-connection.js'
import type { PeerStream } from './peer-stream.js'
import type { PeerPath } from './path.js'
import type { RelayOpener } from './transports/relay.js'
import type { RTCPeerConnectionConstructor } from './transports/webrtc.js'

export type TransportOption = 'auto' | Transport

/** What a connection needs from its node. */
export interface PeerHost {
  /** The id this node listens on (the pair's roles in perfect negotiation come from the two ids). */
  id: () => string | null
  readonly transport: TransportOption
  readonly connectTimeout: number
  /** The WebRTC constructor and configuration, or null when this node cannot or may not use WebRTC. */
  rtc: () => { Ctor: RTCPeerConnectionConstructor, config: object } | null
  /** Send a handshake message to peer `to` (DATA on the node's signal stream). */
  handshake: (to: string, msg: HandshakeMessage) => void
  openRelay: RelayOpener
  /** The connection (started here) settled on `transport`: tell the server, for its metrics. */
  settled: (transport: Transport) => void
  forget: (pc: PeerConnection) => void
}

export interface PeerConnectionEvents {
  /** The connection is open; `pc.transport` says over what. */
  open: []
  /** `pc.transport` changed: the connection moved to WebRTC, or back to the relay. */
  transport: [transport: Transport]
  /** `pc.path` changed: the transport, or on WebRTC the selected candidate pair. */
  path: [path: PeerPath]
  /** The other side created a stream. */
  connection: [stream: PeerStream]
  /** A media track from the other side (`addTrack` there), once per track. */
  track: [track: MediaStreamTrack, streams: readonly MediaStream[], transceiver: RTCRtpTransceiver]
  /** The connection ended; `error` says why when it was not closed on purpose. */
  close: [error?: SignalyardError]
  error: [error: SignalyardError]
}

/**
 * `signalyard`: the isomorphic client. This module never imports a runtime: it uses the global
 * WebSocket, or the constructor passed as the `WebSocket` option (the Node entry defaults it to `ws`).
 *
 * @example
 * import { SignalChannel } from 'signalyard'
 * const channel = SignalChannel('room-42', 'ws://127.0.0.1:3000')
 * const kv = channel.kv()
 * await kv.set('hello', 'world')
 *
 * @example
 * // Tree-shakable: a bundler keeps only the stream functions the app imports.
 * import { createChannel, openEcho } from 'signalyard'
 * const chat = openEcho(createChannel('room-42', 'ws://127.0.0.1:3000'))
 */
export { SignalChannel, Channel, createChannel, ChannelCore, openEcho, openKv, openRelay, createPeers, createNode, joinMesh } from './client/channel.js'
export type { ChannelOptions, ChannelEvents } from './client/channel.js'
export { EchoStream } from './client/echo.js'
export type { EchoOptions, EchoEvents } from './client/echo.js'
export { KvStream } from './client/kv.js'
export type { KvEvents, DeleteReason } from './client/kv.js'
export { RelayStream } from './client/relay-stream.js'
export type { RelayOptions, RelayEvents } from './client/relay-stream.js'
export { Peers } from './client/presence.js'
export type { PeerMeta, PeersEvents } from './client/presence.js'
export { Room, ROOM_STREAM } from './client/mesh.js'
export type { MeshOptions, MeshEvents, RoomPeer } from './client/mesh.js'
export { PeerNode, NODE_DEFAULTS } from './client/peer-node.js'
export type { NodeOptions, NodeEvents } from './client/peer-node.js'
export { PeerConnection } from './client/peer-connection.js'
export type { PeerConnectionEvents, StreamOptions, Transport, TransportOption } from './client/peer-connection.js'
export type { PeerPath, CandidateType } from './client/path.js'
export { PeerStream } from './client/peer-stream.js'
export { toWebStreams, MAX_BUFFERED } from './client/web-streams.js'
export type { WebStreams, WebStreamOptions, MessageStream } from './client/web-streams.js'
export type { PeerStreamEvents } from './client/peer-stream.js'
export type { RTCPeerConnectionConstructor, RTCPeerConnectionLike, RTCDataChannelLike } from './client/transports/webrtc.js'
export { Stream } from './client/stream.js'
export type { StreamEvents, StreamState } from './client/stream.js'
export type { ConnectError, ConnectReason, SocketState, StateChange, WebSocketConstructor, WebSocketLike } from './client/socket.js'
export { CLIENT_DEFAULTS } from './client/defaults.js'
export type { ClientTunables } from './client/defaults.js'
export { SignalyardError, ERROR_CODES } from './protocol/errors.js'
export type { ErrorCode } from './protocol/errors.js'

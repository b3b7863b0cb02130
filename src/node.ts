/**
 * The Node entry of `signalyard`: the same client, with `ws` as the WebSocket when the runtime
 * has no global one (Node 20). Browser bundles use src/index.ts and never load `ws`.
 *
 * @example
 * import { SignalChannel } from 'signalyard'
 * const echo = SignalChannel('room', 'ws://127.0.0.1:3000').echo()
 */
import WebSocket from 'ws'
import { setDefaultWebSocket, type WebSocketConstructor } from './client/socket.js'

setDefaultWebSocket(WebSocket as unknown as WebSocketConstructor)

export * from './index.js'

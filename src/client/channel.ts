/**
 * SignalChannel: a namespace on a signalyard server. Every channel and stream of the realm that
 * uses the same URL and token shares one WebSocket; the channel owns the streams it made and closes them
 * with itself.
 */
import { EventEmitter } from 'eventemitter3'
import { SignalyardError } from '../protocol/errors.js'
import { NAME_MAX } from '../protocol/frames.js'
import { CLIENT_DEFAULTS, type ClientTunables } from './defaults.js'
import { EchoStream, type EchoOptions } from './echo.js'
import { KvStream } from './kv.js'
import { Room, type MeshOptions } from './mesh.js'
import { PeerNode, type NodeOptions } from './peer-node.js'
import type { PeerConnection } from './peer-connection.js'
import { Peers } from './presence.js'
import { RelayStream, type RelayOptions } from './relay-stream.js'
import { acquireSocket, type SocketState, type StateChange, type TokenOption, type WebSocketConstructor, type YardSocket } from './socket.js'
import type { Stream } from './stream.js'
import type { RTCPeerConnectionConstructor } from './transports/webrtc.js'

export interface ChannelOptions {
  /**
   * Server URL, or a list of URLs of servers sharing one yard (the client fails over between them).
   * Default in a browser: the page's own origin.
   */
  url?: string | string[]
  /** WebSocket constructor (default: the global one; in Node, `ws`). */
  WebSocket?: WebSocketConstructor
  /**
   * Sent to the server's `authenticate` (a string, or a function — possibly async — asked before
   * every connection). Channels share a socket only when they use the same URL *and* the same
   * token: a string by value, a function by identity (pass the same function object to share;
   * two different functions get two sockets even if they return the same token).
   */
  token?: TokenOption
  /** RTCPeerConnection constructor for createNode (default: the global one; in Node, pass e.g. node-datachannel/polyfill's). */
  RTCPeerConnection?: RTCPeerConnectionConstructor
  /** RTCPeerConnection configuration, merged over the server's iceServers. */
  rtcConfig?: object
  /** Reconnect backoff: ceilings in ms (full jitter below them). */
  reconnect?: Partial<ClientTunables['reconnect']>
  /** Dead-server detection: PING after `interval` ms of silence, reconnect if nothing comes within `timeout` ms. */
  heartbeat?: Partial<ClientTunables['heartbeat']>
  /** Offline queue bounds (frames, bytes). */
  maxQueued?: number
  maxQueuedBytes?: number
}

export interface ChannelEvents {
  /** The socket's state changed: connecting → open → reconnecting → open … → closed. */
  state: [state: SocketState, change: StateChange]
  /**
   * A connection-level error: from the server (for example a bad frame), `connect-failed` for every
   * attempt that could not connect (the message says why; the channel keeps retrying), and
   * `unauthorized` / `forbidden` when the server refused the token or the origin (final).
   */
  error: [error: SignalyardError]
}

/**
 * A namespace on a signalyard server (from `SignalChannel()`).
 *
 * @example
 * const channel = SignalChannel('room-42', 'ws://127.0.0.1:3000')
 * channel.on('state', (state) => console.log(state))   // 'open', 'reconnecting', …
 * const echo = channel.echo()
 * channel.close()
 */
export class Channel extends EventEmitter<ChannelEvents> {
  readonly namespace: string
  private readonly socket: YardSocket
  private readonly streams = new Set<Stream<any>>()
  private readonly owned = new Set<{ close: () => void }>()
  private readonly options: ChannelOptions
  private closed = false
  private readonly forwardState = (state: SocketState, change: StateChange): void => { this.emit('state', state, change) }
  private readonly forwardError = (error: SignalyardError): void => { this.emit('error', error) }

  constructor (namespace: string, options: ChannelOptions) {
    super()
    if (typeof namespace !== 'string' || namespace.length === 0 || namespace.length > NAME_MAX) {
      throw new SignalyardError('bad-request', `namespace must be a string of 1..${NAME_MAX} characters`)
    }
    this.namespace = namespace
    this.options = options
    const tunables: ClientTunables = {
      ...CLIENT_DEFAULTS,
      reconnect: { ...CLIENT_DEFAULTS.reconnect, ...options.reconnect },
      maxQueued: options.maxQueued ?? CLIENT_DEFAULTS.maxQueued,
      maxQueuedBytes: options.maxQueuedBytes ?? CLIENT_DEFAULTS.maxQueuedBytes,
      heartbeat: { ...CLIENT_DEFAULTS.heartbeat, ...options.heartbeat }
    }
    this.socket = acquireSocket(resolveUrls(options.url), tunables, options.WebSocket, options.token)
    this.socket.on('state', this.forwardState)
    this.socket.on('error', this.forwardError)
  }

  /** The shared socket's state. */
  get state (): SocketState { return this.closed ? 'closed' : this.socket.state }

  /**
   * A broadcast stream in this namespace (see EchoStream); `T` types its messages.
   *
   * @example
   * const chat = channel.echo<{ text: string }>()
   * chat.on('data', (msg) => console.log(msg.text))
   */
  echo<T = unknown> (options?: EchoOptions): EchoStream<T> {
    return this.track(new EchoStream<T>(this.socket, this.namespace, this.check(options ?? {})))
  }

  /**
   * A replica of this namespace's expiring key-value state (see KvStream); `V` types its values.
   *
   * @example
   * const scores = channel.kv<number>()
   * await scores.set('ada', 3)
   */
  kv<V = unknown> (): KvStream<V> {
    this.check(null)
    return this.track(new KvStream<V>(this.socket, this.namespace))
  }

  /** A relay stream paired by tokens (see RelayStream). */
  relay (options: RelayOptions): RelayStream {
    const { local, remote } = this.check(options) ?? {}
    if (typeof local !== 'string' || typeof remote !== 'string' || local.length === 0 || remote.length === 0 ||
        local.length > NAME_MAX || remote.length > NAME_MAX || local === remote) {
      throw new SignalyardError('bad-request', `relay needs distinct local and remote tokens of 1..${NAME_MAX} characters`)
    }
    return this.track(new RelayStream(this.socket, this.namespace, { local, remote }))
  }

  /**
   * Presence in this namespace (see Peers).
   *
   * @example
   * const peers = channel.createPeers()
   * peers.on('join', (p) => console.log(p.id))
   * await peers.join({ id: 'alice' })
   */
  createPeers (): Peers {
    this.check(null)
    const peers = new Peers(this.socket, this.namespace)
    this.owned.add(peers)
    return peers
  }

  /**
   * A node for peer connections in this namespace (see PeerNode); `onConnection` is called for
   * every connection another node opens to this one.
   *
   * @example
   * const node = channel.createNode((pc) => pc.on('connection', (s) => s.on('data', console.log)))
   * await node.listen('alice')
   * node.connect('bob').createStream('chat').send('hi')
   */
  createNode (onConnection?: (pc: PeerConnection) => void, options: NodeOptions = {}): PeerNode {
    this.check(null)
    const node = new PeerNode({
      socket: this.socket,
      namespace: this.namespace,
      openRelay: (local, remote) => this.track(new RelayStream(this.socket, this.namespace, { local, remote }, true)),
      RTCPeerConnection: this.options.RTCPeerConnection,
      rtcConfig: this.options.rtcConfig
    }, onConnection, options)
    this.owned.add(node)
    node.once('close', () => this.owned.delete(node))
    return node
  }

  /**
   * Join a room: presence and peer connections under one id in this namespace, connected to
   * everyone else in it (see Room). Options: `id` (default random), `meta` (your presence
   * record), and the node options (`transport`, `RTCPeerConnection`, `rtcConfig`, `connectTimeout`).
   *
   * @example
   * const room = channel.mesh({ meta: { name: 'Ada' } })
   * room.on('peer', (pc, meta) => console.log(meta.name, 'is here'))
   * room.on('data', (msg, { from }) => console.log(from, msg))
   * room.send('hello everyone')
   */
  mesh<T = unknown> (options: MeshOptions = {}): Room<T> {
    this.check(null)
    const { id, meta, ...nodeOptions } = options ?? {}
    if (meta !== undefined && (meta === null || typeof meta !== 'object' || Array.isArray(meta))) {
      throw new SignalyardError('bad-request', 'meta is an object (your presence record)')
    }
    const node = this.createNode(undefined, nodeOptions)
    const room = new Room<T>(node, this.createPeers(), { id, meta })
    this.owned.add(room)
    room.once('close', () => this.owned.delete(room))
    return room
  }

  /** Close every stream, node and presence of this channel; the socket closes when no channel uses it. */
  close (): void {
    if (this.closed) return
    this.closed = true
    const from = this.socket.state // before release(), which may move the socket to 'closed'
    for (const owned of [...this.owned]) owned.close()
    this.owned.clear()
    for (const stream of [...this.streams]) stream.close()
    this.socket.off('state', this.forwardState)
    this.socket.off('error', this.forwardError)
    this.socket.release()
    this.emit('state', 'closed', { from, to: 'closed', reason: 'channel closed' })
  }

  private check<T> (value: T): T {
    if (this.closed) throw new SignalyardError('channel-closed', 'the channel is closed')
    return value
  }

  private track<S extends Stream<any>> (stream: S): S {
    this.streams.add(stream)
    ;(stream as Stream).once('close', () => this.streams.delete(stream))
    return stream
  }
}

function resolveUrls (url: string | string[] | undefined): string[] {
  const list = url === undefined ? [] : Array.isArray(url) ? url : [url]
  if (list.length > 0) return list.map(normaliseUrl)
  const location = (globalThis as { location?: { protocol: string, host: string } }).location
  if (location?.host !== undefined && location.host !== '') {
    return [`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`]
  }
  throw new SignalyardError('bad-request', 'no server URL: pass { url } (there is no page origin to default to)')
}

/** http(s) URLs become ws(s); a URL without a path gets '/'. */
function normaliseUrl (url: string): string {
  const parsed = new URL(url.replace(/^http(s?):/, 'ws$1:'))
  return parsed.href
}

/**
 * Open a namespace on a signalyard server.
 *
 * @example
 * import { SignalChannel } from 'signalyard'
 * const channel = SignalChannel('room-42', { url: 'ws://127.0.0.1:3000' })
 * const echo = channel.echo()
 * echo.on('data', (msg, { from }) => console.log(from, msg))
 * echo.send('hello')
 */
export function SignalChannel (namespace: string, options: string | string[] | ChannelOptions = {}): Channel {
  return new Channel(namespace, typeof options === 'string' || Array.isArray(options) ? { url: options } : options)
}

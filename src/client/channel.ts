/**
 * SignalChannel: a namespace on a signalyard server. Every channel and stream of the realm that
 * uses the same URL and token shares one WebSocket; the channel owns the streams it made and closes them
 * with itself.
 *
 * Two styles over one core: `createChannel()` gives the core (ChannelCore) and the streams come
 * from functions (`openEcho(channel)`, …) that a bundler drops when an app does not call them;
 * `SignalChannel()` gives a Channel, the core with a method per function. Class methods are never
 * tree-shaken, so ChannelCore must not mention a stream class: only the functions do.
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
 * A namespace on a signalyard server, without the stream methods (from `createChannel()`): the
 * shared socket, `state`, `close()` and the 'state' / 'error' events. Streams come from the
 * functions that take a channel — `openEcho`, `openKv`, `openRelay`, `createPeers`, `createNode`,
 * `joinMesh` — so a bundler keeps only the ones an app calls. The channel owns what they make and
 * closes it with itself. A `Channel` (from `SignalChannel()`) is one of these too.
 *
 * @example
 * import { createChannel, openEcho } from 'signalyard'
 * const channel = createChannel('room-42', 'ws://127.0.0.1:3000')
 * const chat = openEcho(channel)
 * chat.send('hello')
 * channel.close() // closes chat too
 */
export class ChannelCore extends EventEmitter<ChannelEvents> {
  readonly namespace: string
  /** @internal The socket every stream of the channel opens on (shared by URL and token). */
  readonly socket: YardSocket
  /** @internal What the channel was opened with (createNode reads RTCPeerConnection and rtcConfig). */
  readonly options: ChannelOptions
  private readonly streams = new Set<Stream<any>>()
  private readonly owned = new Set<{ close: () => void }>()
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

  /** @internal Throws `channel-closed` once the channel is closed: nothing new is made on it. */
  assertOpen (): void {
    if (this.closed) throw new SignalyardError('channel-closed', 'the channel is closed')
  }

  /** @internal A stream of this channel: closed with it, forgotten when it closes. */
  track<S extends Stream<any>> (stream: S): S {
    this.streams.add(stream)
    ;(stream as Stream).once('close', () => this.streams.delete(stream))
    return stream
  }

  /** @internal A presence, node or room of this channel: closed with it (`disown` when it closes first). */
  own<O extends { close: () => void }> (owned: O): O {
    this.owned.add(owned)
    return owned
  }

  /** @internal Forget something `own` took (it closed by itself). */
  disown (owned: { close: () => void }): void {
    this.owned.delete(owned)
  }
}

/**
 * A broadcast stream in the channel's namespace (see EchoStream); `T` types its messages. The
 * function form of `channel.echo()`.
 *
 * @example
 * const chat = openEcho<{ text: string }>(channel)
 * chat.on('data', (msg, { from }) => console.log(from, msg.text))
 * chat.send({ text: 'hello' })
 */
export function openEcho<T = unknown> (channel: ChannelCore, options: EchoOptions = {}): EchoStream<T> {
  channel.assertOpen()
  return channel.track(new EchoStream<T>(channel.socket, channel.namespace, options ?? {}))
}

/**
 * A replica of the namespace's expiring key-value state (see KvStream); `V` types its values.
 * The function form of `channel.kv()`.
 *
 * @example
 * const scores = openKv<number>(channel)
 * await scores.set('ada', 3)
 */
export function openKv<V = unknown> (channel: ChannelCore): KvStream<V> {
  channel.assertOpen()
  return channel.track(new KvStream<V>(channel.socket, channel.namespace))
}

/**
 * A relay stream paired by tokens (see RelayStream). The function form of `channel.relay()`.
 *
 * @example
 * const pipe = openRelay(channel, { local: 'a', remote: 'b' })
 * pipe.on('data', (chunk) => console.log(chunk))
 */
export function openRelay<T = unknown> (channel: ChannelCore, options: RelayOptions): RelayStream<T> {
  channel.assertOpen()
  const { local, remote } = options ?? {}
  if (typeof local !== 'string' || typeof remote !== 'string' || local.length === 0 || remote.length === 0 ||
      local.length > NAME_MAX || remote.length > NAME_MAX || local === remote) {
    throw new SignalyardError('bad-request', `relay needs distinct local and remote tokens of 1..${NAME_MAX} characters`)
  }
  return channel.track(new RelayStream<T>(channel.socket, channel.namespace, { local, remote }))
}

/**
 * Presence in the channel's namespace (see Peers). The function form of `channel.createPeers()`.
 *
 * @example
 * const peers = createPeers(channel)
 * peers.on('join', (p) => console.log(p.id))
 * await peers.join({ id: 'alice' })
 */
export function createPeers (channel: ChannelCore): Peers {
  channel.assertOpen()
  return channel.own(new Peers(channel.socket, channel.namespace))
}

/**
 * A node for peer connections in the channel's namespace (see PeerNode); `onConnection` is called
 * for every connection another node opens to this one. The function form of `channel.createNode()`.
 *
 * @example
 * const node = createNode(channel, (pc) => pc.on('connection', (s) => s.on('data', console.log)))
 * await node.listen('alice')
 * node.connect('bob').createStream('chat').send('hi')
 */
export function createNode (channel: ChannelCore, onConnection?: (pc: PeerConnection) => void, options: NodeOptions = {}): PeerNode {
  channel.assertOpen()
  const { socket, namespace } = channel
  const node = channel.own(new PeerNode({
    socket,
    namespace,
    openRelay: (local, remote) => channel.track(new RelayStream(socket, namespace, { local, remote }, true)),
    RTCPeerConnection: channel.options.RTCPeerConnection,
    rtcConfig: channel.options.rtcConfig
  }, onConnection, options))
  node.once('close', () => channel.disown(node))
  return node
}

/**
 * Join a room: presence and peer connections under one id in the channel's namespace, connected
 * to everyone else in it (see Room). Options: `id` (default random), `meta` (your presence
 * record), and the node options (`transport`, `RTCPeerConnection`, `rtcConfig`, `connectTimeout`).
 * The function form of `channel.mesh()`.
 *
 * @example
 * const room = joinMesh(channel, { meta: { name: 'Ada' } })
 * room.on('peer', (pc, meta) => console.log(meta.name, 'is here'))
 * room.send('hello everyone')
 */
export function joinMesh<T = unknown> (channel: ChannelCore, options: MeshOptions = {}): Room<T> {
  channel.assertOpen()
  const { id, meta, ...nodeOptions } = options ?? {}
  if (meta !== undefined && (meta === null || typeof meta !== 'object' || Array.isArray(meta))) {
    throw new SignalyardError('bad-request', 'meta is an object (your presence record)')
  }
  const node = createNode(channel, undefined, nodeOptions)
  const room = channel.own(new Room<T>(node, createPeers(channel), { id, meta }))
  room.once('close', () => channel.disown(room))
  return room
}

/**
 * A namespace on a signalyard server (from `SignalChannel()`): a ChannelCore with a method for
 * each kind of stream. Every method calls the function of the same job (`channel.echo()` is
 * `openEcho(channel)`), so the two styles mix freely.
 *
 * @example
 * const channel = SignalChannel('room-42', 'ws://127.0.0.1:3000')
 * channel.on('state', (state) => console.log(state))   // 'open', 'reconnecting', …
 * const echo = channel.echo()
 * channel.close()
 */
export class Channel extends ChannelCore {
  /**
   * A broadcast stream in this namespace (see EchoStream); `T` types its messages.
   *
   * @example
   * const chat = channel.echo<{ text: string }>()
   * chat.on('data', (msg) => console.log(msg.text))
   */
  echo<T = unknown> (options?: EchoOptions): EchoStream<T> {
    return openEcho<T>(this, options)
  }

  /**
   * A replica of this namespace's expiring key-value state (see KvStream); `V` types its values.
   *
   * @example
   * const scores = channel.kv<number>()
   * await scores.set('ada', 3)
   */
  kv<V = unknown> (): KvStream<V> {
    return openKv<V>(this)
  }

  /** A relay stream paired by tokens (see RelayStream); `T` types its messages. */
  relay<T = unknown> (options: RelayOptions): RelayStream<T> {
    return openRelay<T>(this, options)
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
    return createPeers(this)
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
    return createNode(this, onConnection, options)
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
    return joinMesh<T>(this, options)
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

/** The options argument of createChannel and SignalChannel: a URL, a list of URLs, or the options. */
function channelOptions (options: string | string[] | ChannelOptions): ChannelOptions {
  return typeof options === 'string' || Array.isArray(options) ? { url: options } : options
}

/**
 * Open a namespace on a signalyard server, for the tree-shakable functions: the channel has no
 * stream methods, `openEcho(channel)`, `openKv(channel)`, `openRelay(channel, …)`,
 * `createPeers(channel)`, `createNode(channel, …)` and `joinMesh(channel, …)` make the streams, and
 * a bundler keeps only those the app imports.
 *
 * @example
 * import { createChannel, openEcho } from 'signalyard'
 * const channel = createChannel('room-42', { url: 'ws://127.0.0.1:3000' })
 * const chat = openEcho<string>(channel)
 * chat.on('data', (msg, { from }) => console.log(from, msg))
 * chat.send('hello')
 */
export function createChannel (namespace: string, options: string | string[] | ChannelOptions = {}): ChannelCore {
  return new ChannelCore(namespace, channelOptions(options))
}

/**
 * Open a namespace on a signalyard server, with a method for each kind of stream (every stream
 * kind is in the bundle; see createChannel for the tree-shakable form).
 *
 * @example
 * import { SignalChannel } from 'signalyard'
 * const channel = SignalChannel('room-42', { url: 'ws://127.0.0.1:3000' })
 * const echo = channel.echo()
 * echo.on('data', (msg, { from }) => console.log(from, msg))
 * echo.send('hello')
 */
export function SignalChannel (namespace: string, options: string | string[] | ChannelOptions = {}): Channel {
  return new Channel(namespace, channelOptions(options))
}

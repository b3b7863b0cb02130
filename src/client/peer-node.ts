/**
 * createNode: peer connections in a namespace. A node claims an id for directed signalling
 * (`listen`), connects to other ids (`connect`) and is connected to ('connection'). Signalling goes
 * only to the addressed peer, with the sender's id stamped by the server. One connection per pair:
 * when both sides connect at once, the lower id's attempt wins and the other side adopts it.
 */
import { EventEmitter } from 'eventemitter3'
import { nanoid } from 'nanoid'
import type { RawFrame } from '../protocol/codec.js'
import { SignalyardError } from '../protocol/errors.js'
import { NAME_MAX } from '../protocol/frames.js'
import { readHandshake, writeHandshake, type HandshakeMessage, type Transport } from '../protocol/handshake.js'
import { encodePayload } from '../protocol/codec.js'
import { readSignalFrom, readSignalLeave, writeSignalSettled, writeSignalTo } from '../protocol/signal.js'
import { PeerConnection, type PeerHost, type TransportOption } from './peer-connection.js'
import { errorFromMeta, type YardSocket } from './socket.js'
import { Stream, type StreamEvents, UNDECODABLE } from './stream.js'
import type { RelayOpener } from './transports/relay.js'
import { iceServersFor, type RTCPeerConnectionConstructor } from './transports/webrtc.js'

export interface NodeOptions {
  /** 'auto' (default): WebRTC when both sides have it, else (or when ICE fails) the relay. */
  transport?: TransportOption
  /** RTCPeerConnection constructor; default: the channel's option, else the global one. */
  RTCPeerConnection?: RTCPeerConnectionConstructor
  /** Merged over the server's iceServers (and the channel's rtcConfig). */
  rtcConfig?: object
  /** How long WebRTC may take to connect before 'auto' falls back to the relay, in ms (default 10 s). */
  connectTimeout?: number
}

export interface NodeEvents {
  /** A peer connected to this node. */
  connection: [pc: PeerConnection]
  /**
   * A message another node sent with `node.send(id, data)`; `from` is the sender's id, set by the
   * server (a node cannot pose as another).
   */
  message: [data: unknown, info: { from: string }]
  /**
   * A coded error, e.g. `peer-id-taken` when listening failed, or `unknown-peer` when nobody
   * listened on the id a `node.send` went to.
   */
  error: [error: SignalyardError]
  /** The node was closed (`node.close()` or its channel closed). */
  close: []
}

export const NODE_DEFAULTS = /* @__PURE__ */ Object.freeze({ transport: 'auto' as TransportOption, connectTimeout: 10_000 })

/** Where the node's settings come from besides its own options. */
export interface NodeContext {
  socket: YardSocket
  namespace: string
  openRelay: RelayOpener
  RTCPeerConnection?: RTCPeerConnectionConstructor
  rtcConfig?: object
}

const isId = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= NAME_MAX

/** The signal stream: claims the id, carries directed DATA and the namespace's signal leaves. */
class SignalStream extends Stream<StreamEvents> {
  constructor (socket: YardSocket, namespace: string, readonly peerId: string, private readonly key: string, private readonly node: PeerNode) {
    super(socket, namespace, 'signal')
    this.attach()
  }

  protected override openMeta (): object { return { id: this.peerId, key: this.key } }

  /** Send a handshake message to one peer (queued while the socket is down). */
  sendTo (to: string, msg: HandshakeMessage): void {
    if (this.state === 'closed') return
    try {
      this.socket.send(this.sid, writeSignalTo(this.sid, to, writeHandshake(msg)))
    } catch (err) {
      // Offline queue full: the handshake times out and says so.
      this.emitError(err as SignalyardError)
    }
  }

  /** Send an application's message to one peer (queued while the socket is down). */
  sendApp (to: string, data: unknown): void {
    if (this.state === 'closed') throw new SignalyardError('stream-closed', 'the node stopped listening')
    let payload
    try {
      payload = encodePayload(data)
    } catch (err) {
      throw new SignalyardError('bad-request', `cannot encode payload: ${(err as Error).message}`)
    }
    this.socket.send(this.sid, writeSignalTo(this.sid, to, payload, true))
  }

  /** Tell the server (for /metrics) that a pc this node started settled on `transport`; dropped when not open. */
  settled (transport: Transport): void {
    if (this.state !== 'open') return
    this.socket.control(writeSignalSettled(this.sid, this.settledReq++, transport))
  }

  private settledReq = 1

  protected override data (frame: RawFrame): void {
    const from = readSignalFrom(frame)
    if (from === null || !isId(from)) return
    const value = this.decode(frame.kind, frame.payload)
    if (value === UNDECODABLE) return
    if (frame.meta?.app === 1) this.node.emit('message', value, { from })
    else this.node.received(from, value)
  }

  /** @internal */
  override event (frame: RawFrame): void {
    const id = readSignalLeave(frame)
    if (id !== null && isId(id)) this.node.peerGone(id, new SignalyardError('peer-left', `peer ${id} left`))
  }

  protected override failedRequest (meta: Record<string, unknown>): void {
    if (meta.code === 'unknown-peer' && isId(meta.to) && meta.app !== 1) return this.node.unreachable(meta.to, errorFromMeta(meta))
    super.failedRequest(meta)
  }
}

/**
 * A node for peer connections in one namespace (from `channel.createNode()`).
 *
 * @example
 * const node = channel.createNode((pc) => {
 *   pc.on('connection', (stream) => stream.on('data', (d) => stream.send(d)))   // echo back
 * })
 * await node.listen('alice')          // or `await node.listen()` for a random id (node.id)
 * const pc = node.connect('bob')
 * pc.createStream('chat').send('hi')
 *
 * // Directed messages without a peer connection (e.g. another WebRTC library's signals):
 * node.on('message', (data, { from }) => console.log(from, data))
 * node.send('bob', { type: 'offer', sdp: '…' })
 */
export class PeerNode extends EventEmitter<NodeEvents> {
  private stream: SignalStream | null = null
  private readonly pcs = new Map<string, PeerConnection>()
  private readonly key = nanoid(24)
  private readonly host: PeerHost
  private closed = false

  constructor (private readonly ctx: NodeContext, onConnection?: (pc: PeerConnection) => void, options: NodeOptions = {}) {
    super()
    const transport = options.transport ?? NODE_DEFAULTS.transport
    if (transport !== 'auto' && transport !== 'webrtc' && transport !== 'relay') {
      throw new SignalyardError('bad-request', 'transport is "auto", "webrtc" or "relay"')
    }
    const connectTimeout = options.connectTimeout ?? NODE_DEFAULTS.connectTimeout
    if (!(connectTimeout > 0)) throw new SignalyardError('bad-request', 'connectTimeout must be a positive number of ms')
    if (onConnection !== undefined) this.on('connection', onConnection)
    const Ctor = options.RTCPeerConnection ?? ctx.RTCPeerConnection ??
      (globalThis as { RTCPeerConnection?: RTCPeerConnectionConstructor }).RTCPeerConnection
    this.host = {
      id: () => this.id,
      transport,
      connectTimeout,
      rtc: () => transport === 'relay' || Ctor === undefined
        ? null
        : { Ctor, config: { iceServers: iceServersFor(Ctor, ctx.socket.hello?.iceServers ?? []), ...ctx.rtcConfig, ...options.rtcConfig } },
      handshake: (to, msg) => this.stream?.sendTo(to, msg),
      settled: (transport) => this.stream?.settled(transport),
      openRelay: ctx.openRelay,
      forget: (pc) => { if (this.pcs.get(pc.peerId) === pc) this.pcs.delete(pc.peerId) }
    }
  }

  /** The id this node listens on, or null. */
  get id (): string | null { return this.stream?.peerId ?? null }

  /** The open or opening connections, one per peer. */
  connections (): PeerConnection[] { return [...this.pcs.values()] }

  /**
   * Claim `id` for directed signalling in this namespace (without one: a random id, 21 characters
   * of nanoid). Resolves with the id once the server accepted it; rejects with `peer-id-taken`
   * when another client owns it (the error is also emitted as 'error'). Listening again under
   * another id closes every connection first.
   */
  listen (id: string = nanoid()): Promise<string> {
    const promise = this.doListen(id).then(() => id)
    promise.catch(() => {})
    return promise
  }

  private doListen (id: string): Promise<void> {
    if (this.closed) return Promise.reject(new SignalyardError('channel-closed', 'the node is closed'))
    if (!isId(id)) return Promise.reject(new SignalyardError('bad-request', `a node id is a string of 1..${NAME_MAX} characters`))
    if (this.stream !== null && this.stream.peerId === id && this.stream.state !== 'closed') return this.stream.ready()
    this.stop()
    const stream = new SignalStream(this.ctx.socket, this.ctx.namespace, id, this.key, this)
    this.stream = stream
    stream.on('error', (err) => this.emit('error', err))
    stream.on('close', () => {
      if (this.stream !== stream) return
      this.stream = null
      for (const pc of [...this.pcs.values()]) pc.lost(new SignalyardError('connection-closed', 'the node stopped listening'))
    })
    return stream.ready()
  }

  /**
   * Connect to the node listening on `peerId`; returns its connection at once (the existing one
   * when there is one). Throws `must-listen-first` before `listen()`.
   */
  connect (peerId: string): PeerConnection {
    if (this.closed) throw new SignalyardError('channel-closed', 'the node is closed')
    if (this.stream === null || this.id === null) throw new SignalyardError('must-listen-first', 'call node.listen(id) before node.connect()')
    if (!isId(peerId)) throw new SignalyardError('bad-request', `a peer id is a string of 1..${NAME_MAX} characters`)
    if (peerId === this.id) throw new SignalyardError('bad-request', 'a node cannot connect to itself')
    const existing = this.pcs.get(peerId)
    if (existing !== undefined) return existing
    const pc = new PeerConnection(this.host, peerId, true, nanoid())
    this.pcs.set(peerId, pc)
    pc.start()
    return pc
  }

  /**
   * Send `data` (JSON value, string or bytes, at most `peers.maxSignal` bytes: 64 KiB by default)
   * to the node listening on `id` in this namespace, over the server (no peer connection), in order.
   * It arrives as that node's 'message' event with `from` set by the server. Nobody listening on
   * `id`: this node emits 'error' `unknown-peer` (its message names the id). Throws
   * `must-listen-first` before `listen()`.
   *
   * @example
   * const b = channel.createNode()
   * await b.listen('bob')
   * b.on('message', (data, { from }) => console.log(from, data))   // 'alice' { hi: 1 }
   * a.send('bob', { hi: 1 })
   */
  send (id: string, data: unknown): void {
    if (this.closed) throw new SignalyardError('channel-closed', 'the node is closed')
    if (this.stream === null) throw new SignalyardError('must-listen-first', 'call node.listen() before node.send()')
    if (!isId(id)) throw new SignalyardError('bad-request', `a peer id is a string of 1..${NAME_MAX} characters`)
    this.stream.sendApp(id, data)
  }

  /** Close every connection and stop listening. */
  close (): void {
    if (this.closed) return
    this.stop()
    this.closed = true
    this.emit('close')
  }

  private stop (): void {
    for (const pc of [...this.pcs.values()]) pc.leave()
    const stream = this.stream
    this.stream = null
    stream?.close()
  }

  /** @internal A handshake message from `from` (its id stamped by the server). */
  received (from: string, value: unknown): void {
    const msg = readHandshake(value)
    if (msg === null || this.closed) return
    const pc = this.pcs.get(from)
    if (msg.t !== 'hello') {
      if (pc !== undefined && pc.cid === msg.c) pc.handle(msg)
      return
    }
    if (pc !== undefined) {
      if (pc.cid === msg.c) return // a duplicate hello
      if (pc.initiator && pc.state === 'connecting') {
        // Glare: the lower id keeps its attempt; the higher one adopts the peer's.
        if ((this.id ?? '') < from) return
        return pc.accept(msg)
      }
      // The peer started over (it restarted, or lost our connection): replace ours.
      pc.lost(new SignalyardError('peer-left', `peer ${from} reconnected`))
    }
    const incoming = new PeerConnection(this.host, from, false, msg.c)
    this.pcs.set(from, incoming)
    this.emit('connection', incoming)
    if (incoming.state === 'connecting') incoming.accept(msg)
  }

  /** @internal The server said nobody holds `id`: connections still trying to reach it fail. */
  unreachable (id: string, error: SignalyardError): void {
    const pc = this.pcs.get(id)
    if (pc !== undefined && pc.state === 'connecting') pc.lost(error)
  }

  /** @internal The peer's id was released: its connection ends. */
  peerGone (id: string, error: SignalyardError): void {
    this.pcs.get(id)?.lost(error)
  }
}


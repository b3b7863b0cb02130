/**
 * The client's one WebSocket per URL (list) and token: shared by every channel and stream of the
 * realm that uses the same URL and the same token (see socketKey), reconnecting by itself with
 * capped exponential backoff and full jitter, and failing over between URLs. Frames written while
 * the socket is down wait in a bounded queue (offline-queue.ts); when it opens, every live stream
 * re-sends its OPEN first, then the queue is flushed in order. The token and HELLO are read in
 * socket-auth.ts, the dead-server probe lives in liveness.ts.
 *
 * State is an explicit enum with one transition function that emits ('state', to, { from, to, reason }).
 */
import { EventEmitter } from 'eventemitter3'
import { frameId, type RawFrame } from '../protocol/codec.js'
import { SignalyardError } from '../protocol/errors.js'
import { eventMemo, parseServerFrame, type ServerStreamFrame } from '../protocol/frames.js'
import { CLIENT_DEFAULTS, type ClientTunables } from './defaults.js'
import { Liveness, PING } from './liveness.js'
import { OfflineQueue } from './offline-queue.js'
import { Pacer } from './pacer.js'
import {
  badUrl, connectFailure, NODE_DIAGNOSTICS, readHello, refusal, resolveToken, shownUrl, socketKey, subprotocols,
  type Attempt, type Diagnostics, type Hello, type TokenOption
} from './socket-auth.js'

export type { ConnectError, ConnectReason, Hello, TokenOption } from './socket-auth.js'

export type SocketState = 'connecting' | 'open' | 'reconnecting' | 'closed'
export interface StateChange { from: SocketState, to: SocketState, reason: string }

/** The part of the W3C WebSocket the client uses (browsers, `ws`, undici). */
export interface WebSocketLike {
  binaryType: string
  readonly readyState: number
  readonly bufferedAmount: number
  onopen: ((ev: unknown) => void) | null
  onclose: ((ev: { code: number, reason: string }) => void) | null
  onerror: ((ev: unknown) => void) | null
  onmessage: ((ev: { data: unknown }) => void) | null
  send: (data: Uint8Array) => void
  close: (code?: number, reason?: string) => void
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike

/** What the socket needs from a stream. */
export interface StreamHandle {
  readonly sid: number
  /** `${endpoint}:${namespace}`: EVENT frames for it are routed here. */
  readonly topic: string
  /** The socket (re)opened: send OPEN (and anything that must follow it directly). */
  socketOpened: () => void
  /** The socket went down; it will reconnect unless it was closed. */
  socketDown: () => void
  /** A frame addressed to this stream id. */
  frame: (frame: ServerStreamFrame) => void
  /** An EVENT frame for this stream's topic. */
  event: (frame: RawFrame) => void
  /** The server refused the connection for good (unauthorized / forbidden): end with that error. */
  refused: (error: SignalyardError) => void
}

let defaultWebSocket: WebSocketConstructor | undefined
/** Why a connection failed, as only Node can tell; null in browsers (socket-auth.ts, Diagnostics). */
let diagnostics: Diagnostics | null = null

/**
 * Used by the Node entry to make `ws` the default where there is no global WebSocket, and to
 * install the Node diagnostics of failed connections (referenced only here, so browser bundles,
 * which never call this, leave them out).
 */
export function setDefaultWebSocket (ctor: WebSocketConstructor): void {
  defaultWebSocket = ctor
  diagnostics = NODE_DIAGNOSTICS
}

const OPEN = 1

export class YardSocket extends EventEmitter<{ state: [SocketState, StateChange], hello: [Hello], error: [SignalyardError] }> {
  state: SocketState = 'connecting'
  hello: Hello | null = null
  private ws: WebSocketLike | null = null
  private readonly streams = new Map<number, StreamHandle>()
  private readonly topics = new Map<string, Set<StreamHandle>>()
  /** Data frames written while the socket is down. */
  private readonly offline: OfflineQueue
  /** Frames kept within the server's announced rate, per stream in turn (pacer.ts). */
  private readonly pacer = new Pacer((frame) => this.ws?.send(frame))
  private nextSid = 1
  private users = 0
  private attempt = 0
  private urlIndex = 0
  private timer: ReturnType<typeof setTimeout> | null = null
  /** Waiting for the token function. */
  private connecting = false
  /** Dead-server detection (PING after silence). */
  private readonly liveness: Liveness
  private readonly Ctor: WebSocketConstructor
  /** The last echo EVENT meta parsed (frames.ts, EventMemo). */
  private readonly memo = eventMemo()

  constructor (
    readonly key: string, private readonly urls: string[], private readonly tunables: ClientTunables,
    Ctor: WebSocketConstructor | undefined, private readonly token?: TokenOption
  ) {
    super()
    const ctor = Ctor ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket ?? defaultWebSocket
    if (ctor === undefined) throw new TypeError('no WebSocket available: pass the WebSocket option (in Node, import from "signalyard" to get ws)')
    this.Ctor = ctor
    this.offline = new OfflineQueue(tunables)
    this.liveness = new Liveness(tunables.heartbeat, {
      ping: () => {
        if (!this.isOpen) return false
        this.pacer.control(0, PING)
        return true
      },
      dead: (silentMs) => this.dead(silentMs)
    })
  }

  /** A channel starts using the socket; the first one connects it. */
  retain (): void {
    this.users++
    if (this.ws === null && this.timer === null && !this.connecting && this.state === 'connecting') this.connect()
  }

  /** A channel stopped using the socket; the last one out closes it. */
  release (): void {
    if (--this.users > 0) return
    registry.delete(this.key)
    this.liveness.stop()
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.pacer.drain()
    this.offline.take()
    this.letGo(1000, 'closed')
    this.transition('closed', 'closed by the app')
  }

  /** Close the WebSocket (if any) so that none of its handlers runs again; false when there was none. */
  private letGo (code: number, reason: string): boolean {
    const ws = this.ws
    if (ws === null) return false
    this.ws = null
    ws.onopen = ws.onmessage = ws.onclose = null
    ws.onerror = () => {}
    try { ws.close(code, reason) } catch {}
    return true
  }

  /** A new stream id, unique on this socket. */
  allocateSid (): number {
    const sid = this.nextSid
    this.nextSid = this.nextSid >= 0xfffffffe ? 1 : this.nextSid + 1
    return sid
  }

  add (stream: StreamHandle): void {
    this.streams.set(stream.sid, stream)
    let set = this.topics.get(stream.topic)
    if (set === undefined) this.topics.set(stream.topic, set = new Set())
    set.add(stream)
    if (this.isOpen) stream.socketOpened()
  }

  remove (stream: StreamHandle): void {
    this.streams.delete(stream.sid)
    const set = this.topics.get(stream.topic)
    set?.delete(stream)
    if (set?.size === 0) this.topics.delete(stream.topic)
  }

  /** The largest frame the server takes (from HELLO, else the client default). */
  get maxFrame (): number { return this.hello?.limits.maxFrame ?? this.tunables.maxFrame }

  /** Bytes waiting to be sent: the WebSocket's own buffer, what waits for the rate limit and the offline queue. */
  get bufferedAmount (): number { return (this.ws?.bufferedAmount ?? 0) + this.pacer.bytes + this.offline.bytes }

  /** Is the socket open right now (frames go out at once)? */
  get isOpen (): boolean { return this.ws?.readyState === OPEN && this.state === 'open' }

  /**
   * Send a stream's data frame now (or as soon as the server's rate allows), or queue it until
   * the socket opens. Returns true when the socket is open. Throws `payload-too-large` past the
   * server's frame limit and `queue-full` when the offline queue is at its bound.
   */
  send (sid: number, frame: Uint8Array): boolean {
    const maxFrame = this.maxFrame
    if (frame.length > maxFrame) throw new SignalyardError('payload-too-large', `frame of ${frame.length} bytes is over the server's ${maxFrame}-byte limit`)
    if (this.isOpen) {
      this.pacer.send(sid, frame)
      return true
    }
    this.offline.push(sid, frame)
    return false
  }

  /** Send a control frame (OPEN, CLOSE) only if the socket is open; offline, OPEN is re-sent on open. */
  control (frame: Uint8Array): void {
    if (this.isOpen) this.pacer.control(frameId(frame), frame) // a CLOSE waits behind its stream's data
  }

  /** Resolve the token (it may be an async function, asked again before every connection), then connect. */
  private connect (): void {
    this.timer = null
    if (this.token === undefined) return this.open(null)
    this.connecting = true
    resolveToken(this.token).then(
      (value) => { this.connecting = false; if (this.users > 0 && this.state !== 'closed') this.open(value ?? null) },
      (err: unknown) => {
        this.connecting = false
        this.emit('error', new SignalyardError('unauthorized', `the token function failed: ${String(err)}`))
        this.scheduleReconnect('no token')
      })
  }

  private open (token: string | null): void {
    const url = this.urls[this.urlIndex % this.urls.length]
    // What this attempt learns of why it fails, for the `connect-failed` error (socket-auth.ts).
    const attempt: Attempt = { url: shownUrl(url), error: null, http: null, opened: false }
    let ws: WebSocketLike
    try {
      ws = new this.Ctor(url, subprotocols(token))
    } catch (err) {
      this.failed(badUrl(attempt.url, err))
      return
    }
    this.ws = ws
    // `ws` (Node) hands a binary message over as its own Buffer with 'nodebuffer', where
    // 'arraybuffer' costs a copy of every message; other WebSockets ignore the value they do not know.
    ws.binaryType = 'nodebuffer'
    if (ws.binaryType !== 'nodebuffer') ws.binaryType = 'arraybuffer'
    diagnostics?.watch(ws, (answer) => { attempt.http = answer })
    // The socket counts as open once the server's HELLO arrives (see receive): by then the server
    // has accepted the connection and told its limits.
    ws.onopen = () => { attempt.opened = true }
    ws.onmessage = (ev) => {
      const data = ev.data
      if (data instanceof Uint8Array) this.receive(data)
      else if (data instanceof ArrayBuffer) this.receive(new Uint8Array(data))
    }
    // In Node the event carries the cause (ECONNREFUSED, a TLS error…); in browsers, nothing.
    ws.onerror = (ev) => { attempt.error = ev }
    ws.onclose = (ev) => {
      this.ws = null
      ws.onopen = ws.onmessage = ws.onclose = null
      this.liveness.stop()
      const why = `${ev.code}${ev.reason === '' ? '' : ` ${ev.reason}`}`
      const error = refusal(ev.code, ev.reason, attempt.url)
      if (error !== null) return this.refused(error, why)
      // Not greeted on this socket: the attempt failed, and the app hears why.
      if (this.state !== 'open') return this.failed(connectFailure(attempt, ev.code, ev.reason, diagnostics))
      this.down(`socket closed (${why})`)
    }
  }

  /**
   * An attempt failed before the server's HELLO: retry (the next URL first) with backoff, and
   * emit the error that says why on every channel, as socket.io's 'connect_error' does per attempt.
   */
  private failed (error: SignalyardError): void {
    this.down(error.message)
    this.emit('error', error)
  }

  /** The connection is gone (closed, or found dead): streams wait, the socket reconnects elsewhere first. */
  private down (reason: string): void {
    this.urlIndex++
    this.requeue()
    for (const stream of [...this.streams.values()]) stream.socketDown()
    this.scheduleReconnect(reason)
  }

  /** Frames that waited for the rate limit go first into the offline queue (what does not fit is lost with the socket). */
  private requeue (): void {
    for (const { sid, frame } of this.pacer.drain()) {
      try {
        this.offline.push(sid, frame)
      } catch {
        break
      }
    }
  }

  /** PING went unanswered: drop the socket without waiting for a close handshake that would never finish, and reconnect. */
  private dead (silentMs: number): void {
    this.liveness.stop()
    if (!this.letGo(4000, 'server-timeout')) return
    this.emit('error', new SignalyardError('connection-closed', `the server sent nothing for ${Math.round(silentMs)} ms; reconnecting`))
    this.down(`the server went silent (${Math.round(silentMs)} ms)`)
  }

  /** A permanent refusal (4401 / 4403): every stream fails with it and the socket stays closed. */
  private refused (error: SignalyardError, why: string): void {
    this.offline.take()
    this.transition('closed', `refused by the server (${why})`)
    for (const stream of [...this.streams.values()]) stream.refused(error)
    this.emit('error', error)
  }

  private scheduleReconnect (reason: string): void {
    if (this.users <= 0) return
    this.transition('reconnecting', reason)
    const { minDelay, maxDelay } = this.tunables.reconnect
    const ceiling = Math.min(maxDelay, minDelay * 2 ** Math.min(this.attempt++, 30))
    this.timer = setTimeout(() => this.connect(), Math.random() * ceiling)
  }

  private receive (bytes: Uint8Array): void {
    this.liveness.heard()
    const frame = parseServerFrame(bytes, this.memo)
    if (frame === null) return this.emit('error', new SignalyardError('bad-frame', 'the server sent a malformed frame')) as unknown as void
    switch (frame.type) {
      case 'hello':
        return this.greeted(frame.meta)
      case 'ice':
        // Fresh TURN credentials: peer connections made from now on (and ICE restarts) use them.
        if (this.hello !== null && Array.isArray(frame.meta.iceServers)) this.hello = { ...this.hello, iceServers: frame.meta.iceServers }
        return
      case 'pong':
      case 'unknown':
        return
      case 'event': {
        const set = this.topics.get(frame.topic)
        if (set === undefined) return
        // One stream (the usual case) needs no copy; with more, a stream closed by a listener must not skip the next.
        if (set.size === 1) for (const stream of set) stream.event(frame.raw)
        else for (const stream of [...set]) stream.event(frame.raw)
        return
      }
      default:
        if (frame.sid === 0) {
          if (frame.type === 'error') this.emit('error', errorFromMeta(frame.meta))
          return
        }
        this.streams.get(frame.sid)?.frame(frame)
    }
  }

  /** HELLO: the server accepted us. Reopen every stream, then flush the offline queue in order. */
  private greeted (meta: Record<string, unknown>): void {
    this.hello = readHello(meta, this.tunables.maxFrame)
    const maxFrame = this.hello.limits.maxFrame
    this.pacer.reset(this.hello.limits.messagesPerSecond, this.hello.limits.messageBurst)
    this.attempt = 0
    this.liveness.start()
    this.transition('open', `connected to ${this.urls[this.urlIndex % this.urls.length]}`)
    for (const stream of [...this.streams.values()]) stream.socketOpened()
    for (const { sid, frame } of this.offline.take()) {
      if (!this.streams.has(sid) || !this.isOpen) continue
      if (frame.length > maxFrame) {
        this.emit('error', new SignalyardError('payload-too-large', `a queued frame of ${frame.length} bytes is over the server's ${maxFrame}-byte limit; dropped`))
        continue
      }
      this.pacer.send(sid, frame)
    }
    this.emit('hello', this.hello)
  }

  private transition (to: SocketState, reason: string): void {
    const from = this.state
    if (from === to) return
    this.state = to
    this.emit('state', to, { from, to, reason })
  }
}

/** An ERROR/CLOSED frame's meta as a SignalyardError. */
export function errorFromMeta (meta: Record<string, unknown> | null): SignalyardError {
  const code = typeof meta?.code === 'string' ? meta.code : 'internal-error'
  const message = typeof meta?.message === 'string' ? meta.message : undefined
  return new SignalyardError(code as 'internal-error', message)
}

const registry = new Map<string, YardSocket>()
/** The realm's socket for these URLs and this token, created on first use. */
export function acquireSocket (urls: string[], tunables: ClientTunables = CLIENT_DEFAULTS, Ctor?: WebSocketConstructor, token?: TokenOption): YardSocket {
  const key = socketKey(urls, token)
  let socket = registry.get(key)
  if (socket === undefined) {
    socket = new YardSocket(key, urls, tunables, Ctor, token)
    registry.set(key, socket)
  }
  socket.retain()
  return socket
}

/**
 * The client's one WebSocket per URL (list) and token: shared by every channel and stream of the
 * realm that uses the same URL and the same token (see socketKey), reconnecting by itself with capped exponential backoff and full jitter, and
 * failing over between URLs. Frames written while the socket is down wait in a bounded queue;
 * when it opens, every live stream re-sends its OPEN first, then the queue is flushed in order.
 *
 * State is an explicit enum with one transition function that emits ('state', to, { from, to, reason }).
 */
import { EventEmitter } from 'eventemitter3'
import { readFrame, writeFrame, type RawFrame } from '../protocol/codec.js'
import { SignalyardError } from '../protocol/errors.js'
import { AUTH_PROTOCOL_PREFIX, CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED, FrameType, SUBPROTOCOL } from '../protocol/frames.js'
import { CLIENT_DEFAULTS, type ClientTunables } from './defaults.js'

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
  frame: (frame: RawFrame) => void
  /** An EVENT frame for this stream's topic. */
  event: (frame: RawFrame) => void
  /** The server refused the connection for good (unauthorized / forbidden): end with that error. */
  refused: (error: SignalyardError) => void
}

/** The `token` option: a string, or a function (possibly async) asked before every connection. */
export type TokenOption = string | (() => string | null | Promise<string | null>)

/** What HELLO says about the server. */
export interface Hello { v: number, conn: string, limits: { maxFrame: number, maxValue: number, maxMeta?: number }, iceServers: unknown[] }

let defaultWebSocket: WebSocketConstructor | undefined

/** Used by the Node entry to make `ws` the default where there is no global WebSocket. */
export function setDefaultWebSocket (ctor: WebSocketConstructor): void {
  defaultWebSocket = ctor
}

const OPEN = 1
/** The clock of every liveness duration: monotonic, so a wall-clock step (NTP) changes nothing. */
const monotonic = (): number => performance.now()
/** The client's liveness probe: always the same bytes. */
const PING = writeFrame(FrameType.Ping, 0, null)

export class YardSocket extends EventEmitter<{ state: [SocketState, StateChange], hello: [Hello], error: [SignalyardError] }> {
  state: SocketState = 'connecting'
  hello: Hello | null = null
  private ws: WebSocketLike | null = null
  private readonly streams = new Map<number, StreamHandle>()
  private readonly topics = new Map<string, Set<StreamHandle>>()
  private queue: Array<{ sid: number, frame: Uint8Array }> = []
  private queuedBytes = 0
  private nextSid = 1
  private users = 0
  private attempt = 0
  private urlIndex = 0
  private timer: ReturnType<typeof setTimeout> | null = null
  /** Waiting for the token function. */
  private connecting = false
  /**
   * Liveness: when the server last sent anything, when we sent PING (0: none out), the check timer.
   * Times are `performance.now()` (monotonic): a wall-clock step cannot hide a dead server or fake one.
   */
  private lastHeard = 0
  private pingSent = 0
  private heartbeat: ReturnType<typeof setInterval> | null = null
  private readonly Ctor: WebSocketConstructor

  constructor (
    readonly key: string, private readonly urls: string[], private readonly tunables: ClientTunables,
    Ctor: WebSocketConstructor | undefined, private readonly token?: TokenOption
  ) {
    super()
    const ctor = Ctor ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket ?? defaultWebSocket
    if (ctor === undefined) throw new TypeError('no WebSocket available: pass the WebSocket option (in Node, import from "signalyard" to get ws)')
    this.Ctor = ctor
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
    this.stopHeartbeat()
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.queue = []
    this.queuedBytes = 0
    const ws = this.ws
    this.ws = null
    if (ws !== null) {
      ws.onclose = ws.onmessage = ws.onopen = null
      ws.onerror = () => {}
      ws.close(1000, 'closed')
    }
    this.transition('closed', 'closed by the app')
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

  /** Bytes waiting to be sent: the WebSocket's own buffer plus the offline queue. */
  get bufferedAmount (): number { return (this.ws?.bufferedAmount ?? 0) + this.queuedBytes }

  /** Is the socket open right now (frames go out at once)? */
  get isOpen (): boolean { return this.ws?.readyState === OPEN && this.state === 'open' }

  /**
   * Send a stream's data frame now, or queue it until the socket opens. Returns true when it was
   * written now. Throws `payload-too-large` past the server's frame limit and `queue-full` when the
   * offline queue is at its bound.
   */
  send (sid: number, frame: Uint8Array): boolean {
    const maxFrame = this.maxFrame
    if (frame.length > maxFrame) throw new SignalyardError('payload-too-large', `frame of ${frame.length} bytes is over the server's ${maxFrame}-byte limit`)
    if (this.isOpen) {
      (this.ws as WebSocketLike).send(frame)
      return true
    }
    if (this.queue.length >= this.tunables.maxQueued || this.queuedBytes + frame.length > this.tunables.maxQueuedBytes) {
      throw new SignalyardError('queue-full', `offline queue holds ${this.queue.length} frames (${this.queuedBytes} bytes) already`)
    }
    this.queue.push({ sid, frame })
    this.queuedBytes += frame.length
    return false
  }

  /** Send a control frame (OPEN, CLOSE) only if the socket is open; offline, OPEN is re-sent on open. */
  control (frame: Uint8Array): void {
    if (this.isOpen) (this.ws as WebSocketLike).send(frame)
  }

  /** Resolve the token (it may be an async function, asked again before every connection), then connect. */
  private connect (): void {
    this.timer = null
    if (this.token === undefined) return this.open(null)
    const token = this.token
    this.connecting = true
    new Promise<string | null>((resolve) => resolve(typeof token === 'function' ? token() : token)).then(
      (value) => { this.connecting = false; if (this.users > 0 && this.state !== 'closed') this.open(value ?? null) },
      (err: unknown) => {
        this.connecting = false
        this.emit('error', new SignalyardError('unauthorized', `the token function failed: ${String(err)}`))
        this.scheduleReconnect('no token')
      })
  }

  private open (token: string | null): void {
    const url = this.urls[this.urlIndex % this.urls.length]
    let ws: WebSocketLike
    try {
      ws = new this.Ctor(url, token === null ? SUBPROTOCOL : [SUBPROTOCOL, AUTH_PROTOCOL_PREFIX + base64url(token)])
    } catch (err) {
      this.emit('error', new SignalyardError('connection-closed', `cannot open ${url}: ${(err as Error).message}`))
      this.scheduleReconnect(`cannot open ${url}`)
      return
    }
    this.ws = ws
    ws.binaryType = 'arraybuffer'
    // The socket counts as open once the server's HELLO arrives (see receive): by then the server
    // has accepted the connection and told its limits.
    ws.onopen = () => {}
    ws.onmessage = (ev) => {
      if (ev.data instanceof ArrayBuffer) this.receive(new Uint8Array(ev.data))
    }
    ws.onerror = () => {}
    ws.onclose = (ev) => {
      this.ws = null
      ws.onopen = ws.onmessage = ws.onclose = null
      this.stopHeartbeat()
      if (ev.code === CLOSE_UNAUTHORIZED || ev.code === CLOSE_FORBIDDEN) return this.refused(ev.code, ev.reason)
      this.down(`socket closed (${ev.code}${ev.reason === '' ? '' : ` ${ev.reason}`})`)
    }
  }

  /** The connection is gone (closed, or found dead): streams wait, the socket reconnects elsewhere first. */
  private down (reason: string): void {
    this.urlIndex++
    for (const stream of [...this.streams.values()]) stream.socketDown()
    this.scheduleReconnect(reason)
  }

  /**
   * Dead-server detection (browsers cannot see WebSocket pings): PING after `interval` ms of
   * silence; nothing back within `timeout` ms and the socket is dropped without waiting for a
   * close handshake that would never finish, then the client reconnects.
   */
  private startHeartbeat (): void {
    this.stopHeartbeat()
    const { interval, timeout } = this.tunables.heartbeat
    this.lastHeard = monotonic()
    this.pingSent = 0
    this.heartbeat = setInterval(() => {
      const now = monotonic()
      if (this.pingSent !== 0 && now - this.pingSent >= timeout) return this.dead(now - this.lastHeard)
      if (this.pingSent === 0 && now - this.lastHeard >= interval && this.isOpen) {
        this.pingSent = Math.max(now, 1) // 0 means "no PING out"
        ;(this.ws as WebSocketLike).send(PING)
      }
    }, Math.max(10, Math.min(interval, timeout) / 2))
    ;(this.heartbeat as { unref?: () => void }).unref?.()
  }

  private stopHeartbeat (): void {
    if (this.heartbeat !== null) clearInterval(this.heartbeat)
    this.heartbeat = null
  }

  private dead (silentMs: number): void {
    const ws = this.ws
    this.stopHeartbeat()
    if (ws === null) return
    this.ws = null
    ws.onopen = ws.onmessage = ws.onclose = null
    ws.onerror = () => {}
    try { ws.close(4000, 'server-timeout') } catch {}
    this.emit('error', new SignalyardError('connection-closed', `the server sent nothing for ${Math.round(silentMs)} ms; reconnecting`))
    this.down(`the server went silent (${Math.round(silentMs)} ms)`)
  }

  /** A permanent refusal (4401 / 4403): every stream fails with it and the socket stays closed. */
  private refused (code: number, reason: string): void {
    const error = new SignalyardError(code === CLOSE_UNAUTHORIZED ? 'unauthorized' : 'forbidden', reason === '' ? undefined : reason)
    this.queue = []
    this.queuedBytes = 0
    this.transition('closed', `refused by the server (${code}${reason === '' ? '' : ` ${reason}`})`)
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
    this.lastHeard = monotonic()
    this.pingSent = 0
    const frame = readFrame(bytes)
    if (frame === null) return this.emit('error', new SignalyardError('bad-frame', 'the server sent a malformed frame')) as unknown as void
    switch (frame.type) {
      case FrameType.Hello:
        return this.greeted(frame.meta ?? {})
      case FrameType.Pong:
        return
      case FrameType.Event: {
        const topic = `${String(frame.meta?.ep)}:${String(frame.meta?.ns)}`
        const set = this.topics.get(topic)
        if (set !== undefined) for (const stream of [...set]) stream.event(frame)
        return
      }
      default:
        if (frame.id === 0) {
          if (frame.type === FrameType.Error) this.emit('error', errorFromMeta(frame.meta))
          return
        }
        this.streams.get(frame.id)?.frame(frame)
    }
  }

  /** HELLO: the server accepted us. Reopen every stream, then flush the offline queue in order. */
  private greeted (meta: Record<string, unknown>): void {
    const limits = meta.limits as Partial<Hello['limits']> | undefined
    const maxFrame = typeof limits?.maxFrame === 'number' ? limits.maxFrame : this.tunables.maxFrame
    const maxValue = typeof limits?.maxValue === 'number' ? limits.maxValue : Infinity
    const maxMeta = typeof limits?.maxMeta === 'number' ? limits.maxMeta : undefined
    this.hello = {
      v: Number(meta.v),
      conn: String(meta.conn),
      limits: { maxFrame, maxValue, maxMeta },
      iceServers: Array.isArray(meta.iceServers) ? meta.iceServers : []
    }
    this.attempt = 0
    this.startHeartbeat()
    this.transition('open', `connected to ${this.urls[this.urlIndex % this.urls.length]}`)
    for (const stream of [...this.streams.values()]) stream.socketOpened()
    const queue = this.queue
    this.queue = []
    this.queuedBytes = 0
    for (const { sid, frame } of queue) {
      if (!this.streams.has(sid) || !this.isOpen) continue
      if (frame.length > maxFrame) {
        this.emit('error', new SignalyardError('payload-too-large', `a queued frame of ${frame.length} bytes is over the server's ${maxFrame}-byte limit; dropped`))
        continue
      }
      (this.ws as WebSocketLike).send(frame)
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
/** Token functions by identity: the same function object is the same identity, another is another. */
const tokenFunctions = new WeakMap<object, number>()
let nextTokenFunction = 1

/**
 * The registry key of a socket: its URLs and its token. Channels share a socket only when both
 * match: a token string by value, a token function by identity (the same function object), no
 * token only with no token. One socket, one identity.
 */
function socketKey (urls: string[], token: TokenOption | undefined): string {
  let who = '-'
  if (typeof token === 'string') who = `s${token}`
  else if (typeof token === 'function') {
    let n = tokenFunctions.get(token)
    if (n === undefined) tokenFunctions.set(token, n = nextTokenFunction++)
    who = `f${n}`
  }
  return `${urls.join(' ')}\u0000${who}`
}

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

/** base64url of a string's UTF-8 bytes (browsers and Node alike). */
function base64url (text: string): string {
  let binary = ''
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte)
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

/**
 * The glue between a ws WebSocket and the connection that owns it. One set of listener functions
 * serves every socket (each finds its owner through a symbol on the socket), so a connection
 * costs no closure per listener; nothing thrown in them reaches ws. Also the few ws internals the
 * server relies on (the TCP socket under a WebSocket, the receiver's fragments), each checked
 * before use, and the conversions of what ws delivers.
 */
import type { WebSocket } from 'ws'
import { CloseCode } from './context.js'

/** What the shared listeners call on the connection that owns a socket. */
export interface SocketOwner {
  /** A WebSocket message. */
  message: (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => void
  /** A pong. */
  touch: () => void
  /** The socket closed. */
  teardown: () => void
  /** Something threw out of `message` or `teardown`: a bug in the server, not the client's doing. */
  internalError: (where: string, err: unknown) => void
  /** A socket error (the close that follows tears the connection down). */
  socketError: (err: Error) => void
}

/** Where a socket keeps its owner, so one set of listeners serves every socket. */
const OWNER = Symbol('signalyard.connection')
type Owned = WebSocket & { [OWNER]?: SocketOwner }

function socketMessage (this: Owned, data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void {
  const owner = this[OWNER]
  try {
    owner?.message(data, isBinary)
  } catch (err) {
    owner?.internalError('message', err)
  }
}
function socketPong (this: Owned): void { this[OWNER]?.touch() }
function socketClose (this: Owned): void {
  const owner = this[OWNER]
  try {
    owner?.teardown()
  } catch (err) {
    owner?.internalError('close', err)
  }
}
function socketError (this: Owned, err: Error): void { this[OWNER]?.socketError(err) }

/** Route `ws`'s messages, pongs, close and errors to `owner` (through the shared listeners). */
export function attach (ws: WebSocket, owner: SocketOwner): void {
  ;(ws as Owned)[OWNER] = owner
  ws.on('message', socketMessage)
  ws.on('pong', socketPong)
  ws.on('close', socketClose)
  ws.on('error', socketError)
}

/** Wait for `sockets` to finish closing, up to `grace` ms; then terminate those still open. */
export async function closeSockets (sockets: Set<WebSocket>, grace: number): Promise<void> {
  if (sockets.size === 0) return
  await new Promise<void>((resolve) => {
    const timer = setTimeout(done, grace)
    function done (): void {
      clearTimeout(timer)
      for (const ws of sockets) ws.off('close', check)
      resolve()
    }
    // Each socket's own 'close' listener (added at accept) has removed it from the set by now.
    function check (): void {
      if (sockets.size === 0) done()
    }
    for (const ws of sockets) ws.on('close', check)
    check()
  })
  for (const ws of sockets) ws.terminate()
}

/** The part of net.Socket the connection uses. */
export interface RawSocket {
  write: (bytes: Uint8Array) => boolean
  cork: () => void
  uncork: () => void
  readonly writableLength: number
  on: (event: 'drain' | 'close', listener: () => void) => unknown
  off: (event: 'drain' | 'close', listener: () => void) => unknown
}

/** The net.Socket a ws WebSocket writes to (ws keeps it as `_socket`), or null when it has none. */
export function rawSocket (ws: WebSocket): RawSocket | null {
  const socket = (ws as unknown as { _socket?: { write?: unknown } })._socket
  return socket !== undefined && socket !== null && typeof socket.write === 'function'
    ? socket as RawSocket
    : null
}

/**
 * The RFC 6455 header of one unfragmented binary (or text) message from a server (final, no mask,
 * no extensions) carrying `n` bytes.
 */
export function wsHeader (n: number, text: boolean): Buffer {
  const head = Buffer.allocUnsafe(n < 126 ? 2 : n < 0x10000 ? 4 : 10)
  head[0] = text ? 0x81 : 0x82 // FIN + opcode 1 (text) or 2 (binary)
  if (n < 126) {
    head[1] = n
  } else if (n < 0x10000) {
    head[1] = 126
    head.writeUInt16BE(n, 2)
  } else {
    head[1] = 127
    head.writeUInt32BE(Math.floor(n / 0x100000000), 2)
    head.writeUInt32BE(n >>> 0, 6)
  }
  return head
}

/** One whole server message, header and payload in one buffer (a broadcast, written to many sockets). */
export function wsMessage (payload: Uint8Array, text: boolean): Buffer {
  const head = wsHeader(payload.length, text)
  const out = Buffer.allocUnsafe(head.length + payload.length)
  out.set(head, 0)
  out.set(payload, head.length)
  return out
}

/** WebSocket.OPEN */
export const OPEN = 1

/** Bytes of a message as ws delivers it. */
export function byteLength (data: Buffer | ArrayBuffer | Buffer[]): number {
  return Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : data.byteLength
}

/** A message as ws delivers it, as one byte array (a Buffer is passed as it is, no copy). */
export function toBytes (data: Buffer | ArrayBuffer | Buffer[]): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data)
  if (data instanceof ArrayBuffer) return new Uint8Array(data)
  return data
}

/**
 * Fragments of one WebSocket message a client may send. ws bounds a fragmented message's bytes
 * (maxPayload = limits.maxFrame) but not its pieces, and each piece is a Buffer of its own (~100
 * bytes of bookkeeping for a 1-byte fragment): without a count, 1 MiB of 1-byte fragments holds
 * tens of MiB. No browser or ws client fragments a signalyard frame this finely.
 */
export const MAX_FRAGMENTS = 1024
/** The part of ws's Receiver (a Writable it feeds every chunk of the socket) the check uses. */
interface Receiver {
  _write: (chunk: Buffer, encoding: string, cb: (err?: Error | null) => void) => void
  _fragments?: unknown[]
  [key: symbol]: unknown
}
/** ws keeps the WebSocket on its Receiver under a symbol described 'websocket' (found once). */
let wsKey: symbol | undefined
/**
 * ws's Receiver `_write`, then the check: a message in more than MAX_FRAGMENTS pieces so far
 * closes the socket (1008). One function for every socket, set on its receiver: nothing is
 * allocated per connection. ws parses a chunk synchronously, so the count is current here.
 */
function guardedWrite (this: Receiver, chunk: Buffer, encoding: string, cb: (err?: Error | null) => void): void {
  ;(Object.getPrototypeOf(this) as Receiver)._write.call(this, chunk, encoding, cb)
  if ((this._fragments?.length ?? 0) <= MAX_FRAGMENTS) return
  wsKey ??= Object.getOwnPropertySymbols(this).find((k) => k.description === 'websocket')
  const ws = wsKey === undefined ? undefined : this[wsKey] as WebSocket | undefined
  this._fragments = []
  if (ws === undefined) return
  ws.close(CloseCode.Policy, 'too-many-fragments')
  ws.terminate()
}
/** Bound the fragments of each message on this socket (when ws's internals look as expected). */
export function watchFragments (ws: WebSocket): void {
  const receiver = (ws as unknown as { _receiver?: Receiver })._receiver
  if (receiver === undefined || typeof receiver._write !== 'function' || !Array.isArray(receiver._fragments)) return
  receiver._write = guardedWrite
}

/**
 * The glue between a ws WebSocket and the connection that owns it. One set of listener functions
 * serves every socket (each finds its owner through a symbol on the socket), so a connection
 * costs no closure per listener; nothing thrown in them reaches ws. Also the few ws internals the
 * server relies on (the TCP socket under a WebSocket) and the conversions of what ws delivers.
 */
import type { WebSocket } from 'ws'

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

/** The part of net.Socket the connection uses. */
export interface RawSocket {
  write: (bytes: Uint8Array) => boolean
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

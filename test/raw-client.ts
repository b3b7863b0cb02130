/**
 * A raw protocol client for server tests: a `ws` WebSocket speaking signalyard.2 frames by hand,
 * with no client library in between. It keeps every frame it received and lets a test wait for
 * (and remove) the first one that matches.
 */
import WebSocket from 'ws'
import { encodePayload, readFrame, writeFrame, type RawFrame } from '../src/protocol/codec.js'
import { FrameType, SUBPROTOCOL } from '../src/protocol/frames.js'

/** A raw protocol client: every frame it received, and waiting for one that matches. */
export interface RawClient {
  ws: WebSocket
  /** Frames received and not yet taken, oldest first. */
  frames: RawFrame[]
  /** Remove and return the first received frame matching `pred`, waiting up to `ms`. */
  take: (pred: (f: RawFrame) => boolean, ms?: number, what?: string) => Promise<RawFrame>
  /** Send one well-formed frame; `payload` (if any) is encoded with the protocol's payload codec. */
  send: (type: number, sid: number, meta: object | null, payload?: unknown) => void
  /** Send bytes (or a text message) exactly as given: for malformed input. */
  sendRaw: (data: Uint8Array | string) => void
  /** OPEN and the server's answer (OPENED or CLOSED) for that stream. */
  open: (sid: number, meta: object) => Promise<RawFrame>
  /** Settles with the close code and reason once the connection is closed. */
  closed: Promise<{ code: number, reason: string }>
  /** The server's HELLO frame (already taken from `frames`). */
  hello: RawFrame
}

/** The TCP socket under a ws client, for tests that stop it reading (`.pause()`) and resume it. */
export const socketOf = (ws: WebSocket): { pause: () => void, resume: () => void } =>
  (ws as unknown as { _socket: { pause: () => void, resume: () => void } })._socket

const describe = (frames: RawFrame[]): string =>
  frames.map((f) => `${f.type.toString(16)}:${f.id}:${JSON.stringify(f.meta)}`).join(' ')

/**
 * Connect to `yard` and wait for its HELLO. The client is pushed onto `track` (if given) before
 * the connection opens, so a test's cleanup terminates it even when the handshake fails.
 */
export async function rawClient (yard: { url: string }, track?: RawClient[]): Promise<RawClient> {
  const ws = new WebSocket(yard.url, SUBPROTOCOL)
  const frames: RawFrame[] = []
  const waiters = new Set<() => void>()
  const wake = (): void => { for (const w of [...waiters]) w() }
  ws.on('message', (data: Buffer) => {
    const frame = readFrame(new Uint8Array(data))
    if (frame === null) throw new Error('the server sent a malformed frame')
    frames.push(frame)
    wake()
  })
  const closed = new Promise<{ code: number, reason: string }>((resolve) => {
    ws.on('close', (code, reason) => { resolve({ code, reason: reason.toString() }); wake() })
  })
  const take: RawClient['take'] = (pred, ms = 2000, what = 'a matching frame') => new Promise((resolve, reject) => {
    const look = (): boolean => {
      const i = frames.findIndex(pred)
      if (i < 0) return false
      resolve(frames.splice(i, 1)[0])
      return true
    }
    if (look()) return
    const check = (): void => { if (look()) { waiters.delete(check); clearTimeout(timer) } }
    const timer = setTimeout(() => {
      waiters.delete(check)
      reject(new Error(`no ${what} within ${ms} ms; received: ${describe(frames)}`))
    }, ms)
    waiters.add(check)
  })
  const send: RawClient['send'] = (type, sid, meta, payload) =>
    ws.send(writeFrame(type, sid, meta, payload === undefined ? undefined : encodePayload(payload)))
  const open: RawClient['open'] = (sid, meta) => {
    send(FrameType.Open, sid, meta)
    return take((f) => f.id === sid && (f.type === FrameType.Opened || f.type === FrameType.Closed), 2000, `answer to OPEN ${sid}`)
  }
  // `hello` is filled in below, before the client is returned to the caller
  const client: RawClient = { ws, frames, take, send, sendRaw: (data) => ws.send(data), open, closed, hello: undefined as unknown as RawFrame }
  track?.push(client)
  await new Promise<void>((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
  client.hello = await take((f) => f.type === FrameType.Hello, 2000, 'HELLO')
  return client
}

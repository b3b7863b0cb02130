/**
 * Web Streams over a message stream (a peer connection's PeerStream, a RelayStream), so that
 * `pipeTo`, `pipeThrough` and Node's `stream.pipeline` (through `Readable.fromWeb` /
 * `Writable.fromWeb`) work on them.
 *
 * - `readable` yields each message as 'data' gives it (Uint8Array, string or JSON value), in order.
 *   The streams have no receive window, so a slow reader cannot slow the sender down: what it has
 *   not read yet waits in the readable's own queue, counted in bytes (with 64 bytes per message).
 *   Past `maxBuffered` (32 MiB) the readable errors with `queue-full` and the stream is closed,
 *   so memory stays bounded and the sender learns it (its writable errors).
 * - `writable` sends each chunk and, when `send()` returns false, waits for 'drain' before taking
 *   the next: backpressure reaches the writer (`pipeTo` pauses its source).
 * - There is no half-close: a writer's `close()` (after its last chunk went), `abort()` or a
 *   reader's `cancel()` closes the stream both ways, and the other side's readable ends — as a
 *   plain end, whichever it was. The stream closing with an error (the peer left, the connection
 *   failed), or a message that does not decode, errors both.
 *
 * Only the side that is used is made: an unread `readable` would hold every message.
 */
import { SignalyardError } from '../protocol/errors.js'
import { Fifo } from './fifo.js'

/** Bytes a readable holds for a reader that falls behind before it errors with `queue-full`. */
export const MAX_BUFFERED = 32 * 1024 * 1024
/** What a queued message costs beyond its payload (its memory, roughly): a flood of tiny ones is bounded too. */
const MESSAGE_COST = 64

/** What the Web Streams need of a stream: the shape PeerStream and RelayStream share. */
export interface MessageStream {
  readonly state: 'opening' | 'open' | 'closed'
  /** False when the caller should wait for 'drain'. */
  send (data: unknown): boolean
  close (): void
  /** Close at once, dropping what still waits to be sent (where close() would send it first). */
  abort? (): void
  on (event: 'data' | 'drain' | 'close' | 'error', fn: (arg?: any) => void): unknown
  off (event: 'data' | 'drain' | 'close' | 'error', fn: (arg?: any) => void): unknown
}

export interface WebStreamOptions {
  /** Bytes the readable holds unread before it errors with `queue-full` (default 32 MiB; Infinity: no bound). */
  maxBuffered?: number
}

/** A stream's two Web Streams, each made when first read. */
export interface WebStreams {
  readonly readable: ReadableStream<unknown>
  readonly writable: WritableStream<unknown>
}

/**
 * Web Streams for a message stream; `stream.readable` / `stream.writable` on PeerStream and
 * RelayStream call this (use one or the other: two readables would each get every message).
 *
 * @example
 * const { readable } = toWebStreams(pc.createStream('file'), { maxBuffered: 64 * 1024 * 1024 })
 * await readable.pipeTo(new WritableStream({ write: (chunk) => save(chunk) }))
 */
export function toWebStreams (stream: MessageStream, options: WebStreamOptions = {}): WebStreams {
  let readable: ReadableStream<unknown> | undefined
  let writable: WritableStream<unknown> | undefined
  return {
    get readable () { return (readable ??= readableOf(stream, options.maxBuffered ?? MAX_BUFFERED)) },
    get writable () { return (writable ??= writableOf(stream)) }
  }
}

function closedError (): SignalyardError {
  return new SignalyardError('stream-closed', 'the stream closed')
}

/** Roughly the memory a received message holds. */
function sizeOf (data: unknown): number {
  if (typeof data === 'string') return data.length + MESSAGE_COST
  if (ArrayBuffer.isView(data)) return data.byteLength + MESSAGE_COST
  return (JSON.stringify(data)?.length ?? 0) + MESSAGE_COST
}

function readableOf (stream: MessageStream, maxBuffered: number): ReadableStream<unknown> {
  // The readable's own queue is empty (highWaterMark 0) and messages wait here instead: a reader
  // that keeps up gets each one handed over directly, and only a reader that is behind pays for
  // measuring them.
  const queue = new Fifo<{ data: unknown, size: number }>()
  let queued = 0
  let reading = false
  let ended = false
  let controller!: ReadableStreamDefaultController<unknown>
  const detach = (): void => {
    stream.off('data', onData)
    stream.off('close', onClose)
    stream.off('error', fail)
  }
  function fail (error: SignalyardError): void {
    detach()
    queue.clear()
    controller.error(error)
    closeNow(stream)
  }
  function onData (data: unknown): void {
    if (reading) {
      reading = false
      return controller.enqueue(data)
    }
    const size = sizeOf(data)
    queue.push({ data, size })
    queued += size
    if (queued > maxBuffered) fail(new SignalyardError('queue-full', `the reader fell more than ${maxBuffered} bytes behind`))
  }
  function onClose (error?: SignalyardError): void {
    if (error !== undefined) return fail(error)
    detach()
    ended = true
    if (queue.length === 0) controller.close()
  }
  return new ReadableStream<unknown>({
    start (c) {
      controller = c
      if (stream.state === 'closed') return c.close()
      stream.on('data', onData)
      stream.on('close', onClose)
      stream.on('error', fail)
    },
    pull () {
      const next = queue.shift()
      if (next === undefined) {
        reading = true
        return
      }
      queued -= next.size
      controller.enqueue(next.data)
      if (ended && queue.length === 0) controller.close()
    },
    cancel () {
      detach()
      queue.clear()
      closeNow(stream)
    }
  }, { highWaterMark: 0 })
}

function writableOf (stream: MessageStream): WritableStream<unknown> {
  let waiter: { resolve: () => void, reject: (error: unknown) => void } | null = null
  let controller!: WritableStreamDefaultController
  const settle = (error?: unknown): void => {
    const w = waiter
    waiter = null
    if (error === undefined) w?.resolve()
    else w?.reject(error)
  }
  const onDrain = (): void => settle()
  const detach = (): void => {
    stream.off('drain', onDrain)
    stream.off('close', onClose)
  }
  function onClose (error?: SignalyardError): void {
    detach()
    const failure = error ?? closedError()
    controller.error(failure)
    settle(failure)
  }
  return new WritableStream<unknown>({
    start (c) {
      controller = c
      if (stream.state === 'closed') return c.error(closedError())
      stream.on('drain', onDrain)
      stream.on('close', onClose)
      // abort() waits for the write in flight, which may be waiting for a 'drain' that a peer
      // that stopped reading never sends: let the abort end that wait.
      ;(c as { signal?: AbortSignal }).signal?.addEventListener('abort', () => settle(c.signal.reason ?? closedError()))
    },
    write (chunk) {
      try {
        if (stream.send(chunk)) return
      } catch (err) {
        // The writable is errored from here on; close the stream so the reader does not wait forever.
        detach()
        closeNow(stream)
        throw err
      }
      return new Promise<void>((resolve, reject) => { waiter = { resolve, reject } })
    },
    close () {
      // Every chunk was handed on (each write waited for its 'drain'); the stream's CLOSE goes after them.
      detach()
      stream.close()
    },
    abort () {
      detach()
      closeNow(stream)
    }
  })
}

/** Close `stream` at once: its abort() where it has one (a relay stream's close() sends its queue first). */
function closeNow (stream: MessageStream): void {
  if (stream.abort !== undefined) stream.abort()
  else stream.close()
}

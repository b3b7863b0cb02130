/**
 * The relay pipe: a peer connection over the server's relay endpoint, paired by the tokens
 * `<cid>/i` (initiator) and `<cid>/a` (acceptor): the connection's random id makes them a secret
 * only the two peers know, and they stay short whatever the ids are. Used when either side has no WebRTC
 * or ICE did not connect in time. Backpressure is the relay stream's `bufferedAmount`, polled: its
 * own queue (what the server's per-stream window holds back) plus the shared WebSocket's bytes.
 *
 * When both sides said `bt` in the handshake, small frames sent in the same tick go as one relay
 * message (a batch, protocol/mux.ts): the server paces relay messages, so many tiny stream
 * messages would otherwise be capped at its message rate. A lone frame is never delayed past the
 * current tick, and a batch message is read whatever was negotiated.
 */
import { SignalyardError } from '../../protocol/errors.js'
import { BATCH_FRAME_MAX, MUX_BATCH, readBatch, writeBatch } from '../../protocol/mux.js'
import type { RelayStream } from '../relay-stream.js'
import { PIPE_LOW_WATER, type Pipe, type PipeHandlers } from './pipe.js'

/** Opens a relay stream on the node's channel. */
export type RelayOpener = (local: string, remote: string) => RelayStream

const DRAIN_POLL_MS = 5
/** A batch goes out once it would pass this many bytes. */
const BATCH_MAX = 16 * 1024

export class RelayPipe implements Pipe {
  readonly transport = 'relay'
  readonly chunk = 64 * 1024
  private readonly stream: RelayStream
  private opened = false
  private closed = false
  private drainTimer: ReturnType<typeof setTimeout> | null = null
  /** Small frames of this tick, not yet sent (batching only). */
  private pending: Uint8Array[] = []
  private pendingBytes = 0
  private flushQueued = false

  /** `batch`: the peer reads batches (`bt` in the handshake). */
  constructor (open: RelayOpener, cid: string, initiator: boolean, private readonly on: PipeHandlers, private readonly batch = false) {
    const [local, remote] = initiator ? ['i', 'a'] : ['a', 'i']
    this.stream = open(`${cid}/${local}`, `${cid}/${remote}`)
    this.stream.on('open', () => {
      if (this.opened || this.closed) return
      this.opened = true
      this.on.open()
    })
    this.stream.on('data', (data) => {
      if (this.closed || !(data instanceof Uint8Array)) return
      if (data[0] !== MUX_BATCH) return this.on.message(data)
      const frames = readBatch(data)
      if (frames === null) return this.fail(new SignalyardError('bad-frame', 'the peer sent a malformed batch'))
      for (const frame of frames) {
        if (this.closed) return
        this.on.message(frame)
      }
    })
    this.stream.on('close', (error) => {
      if (this.closed) return
      this.release()
      this.on.close(error ?? new SignalyardError('peer-left', 'the relay pair closed'))
    })
  }

  get bufferedAmount (): number { return this.stream.bufferedAmount + this.pendingBytes }

  send (bytes: Uint8Array): void {
    if (!this.batch || bytes.length >= BATCH_FRAME_MAX) {
      this.flush()
      this.stream.send(bytes)
    } else {
      if (this.pendingBytes + 2 + bytes.length > BATCH_MAX) this.flush()
      this.pending.push(bytes)
      this.pendingBytes += 2 + bytes.length
      if (!this.flushQueued) {
        this.flushQueued = true
        queueMicrotask(() => {
          this.flushQueued = false
          if (this.closed) return
          try {
            this.flush()
          } catch (err) {
            this.fail(err instanceof SignalyardError ? err : new SignalyardError('connection-closed', String(err)))
          }
        })
      }
    }
    if (this.drainTimer === null && this.bufferedAmount > PIPE_LOW_WATER) this.pollDrain()
  }

  /** Send this tick's small frames: one alone as it is, several as a batch. */
  private flush (): void {
    if (this.pending.length === 0) return
    const frames = this.pending
    const bytes = this.pendingBytes - 2 * frames.length
    this.pending = []
    this.pendingBytes = 0
    this.stream.send(frames.length === 1 ? frames[0] : writeBatch(frames, bytes))
  }

  private fail (error: SignalyardError): void {
    if (this.closed) return
    this.release()
    this.stream.close()
    this.on.close(error)
  }

  private pollDrain (): void {
    this.drainTimer = setTimeout(() => {
      this.drainTimer = null
      if (this.closed) return
      if (this.bufferedAmount > PIPE_LOW_WATER) return this.pollDrain()
      this.on.drain()
    }, DRAIN_POLL_MS)
  }

  close (): void {
    if (this.closed) return
    try {
      this.flush() // what was sent before close goes before the stream's close
    } catch {}
    this.release()
    this.stream.close()
  }

  private release (): void {
    this.closed = true
    this.pending = []
    this.pendingBytes = 0
    if (this.drainTimer !== null) clearTimeout(this.drainTimer)
    this.drainTimer = null
  }
}

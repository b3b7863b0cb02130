/**
 * The offline queue of the client's socket: data frames written while the socket is down wait
 * here in order, bounded in frames and in bytes (`maxQueued`, `maxQueuedBytes`), until HELLO
 * flushes them after every stream has re-sent its OPEN.
 */
import { SignalyardError } from '../protocol/errors.js'
import type { ClientTunables } from './defaults.js'

/** One queued frame and the stream it belongs to (dropped at flush if that stream is gone). */
export interface QueuedFrame { sid: number, frame: Uint8Array }

export class OfflineQueue {
  private frames: QueuedFrame[] = []
  private size = 0

  constructor (private readonly tunables: Pick<ClientTunables, 'maxQueued' | 'maxQueuedBytes'>) {}

  /** Bytes queued. */
  get bytes (): number { return this.size }

  /** Queue a frame; throws `queue-full` at the bound. */
  push (sid: number, frame: Uint8Array): void {
    if (this.frames.length >= this.tunables.maxQueued || this.size + frame.length > this.tunables.maxQueuedBytes) {
      throw new SignalyardError('queue-full', `offline queue holds ${this.frames.length} frames (${this.size} bytes) already`)
    }
    this.frames.push({ sid, frame })
    this.size += frame.length
  }

  /** Everything queued, oldest first; the queue is empty afterwards. */
  take (): QueuedFrame[] {
    const frames = this.frames
    this.frames = []
    this.size = 0
    return frames
  }
}

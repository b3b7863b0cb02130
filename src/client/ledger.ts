/**
 * The ledger of a sequenced peer connection (one that can move between the relay and WebRTC; see
 * mover.ts): the numbers of the stream frames sent and read, the frames sent and not yet
 * acknowledged by the peer (kept so that what a dying WebRTC path lost can be sent again on the
 * relay), and what must be sent again. Numbers are u32 and wrap; comparisons are serial
 * (RFC 1982 style): `a` comes after `b` when (a − b) mod 2^32 is in 1..2^31−1.
 */

import { Fifo } from './fifo.js'

/** Bytes of sent and unacknowledged frames past which the mux sends no new frame (until an ACK). */
export const KEEP_WINDOW = 4 * 1024 * 1024
/** What one kept frame costs in the window beyond its bytes (its record), so tiny frames are bounded too. */
const KEPT_COST = 48
/** A receiver acknowledges after reading this many bytes, or ACK_DELAY_MS after the first unacknowledged one. */
export const ACK_EVERY = 64 * 1024
export const ACK_DELAY_MS = 100

interface Kept { seq: number, bytes: Uint8Array, rtc: boolean, at: number }

/** True when sequence number `a` comes after `b`. */
export function after (a: number, b: number): boolean {
  const d = (a - b) >>> 0
  return d !== 0 && d < 0x80000000
}

export class Ledger {
  /** The last stream frame numbered for sending. */
  sent = 0
  /** The last stream frame read, in order. */
  read = 0
  /** Bytes read since the last ACK went out. */
  unacked = 0
  /** Frames to send again, in order, before anything new (see `takeAgain`). */
  private readonly again = new Fifo<Kept>()
  /** The last stream frame the peer acknowledged. */
  private ackedTo = 0
  /** Frames sent and not acknowledged yet, oldest first. */
  private readonly kept = new Fifo<Kept>()
  private keptBytes = 0
  /** When an ACK last covered a kept frame (performance.now()). */
  private progressAt = 0

  /** The number of the next stream frame to send. */
  next (): number {
    this.sent = (this.sent + 1) >>> 0
    return this.sent
  }

  /** Whether the window of unacknowledged bytes is full. */
  get full (): boolean { return this.keptBytes >= KEEP_WINDOW }

  /** Keep frame `seq` until the peer acknowledges it; `rtc`: it went on a WebRTC path. */
  keep (seq: number, bytes: Uint8Array, rtc: boolean): void {
    this.kept.push({ seq, bytes, rtc, at: performance.now() })
    this.keptBytes += bytes.length + KEPT_COST
  }

  /** The peer read everything up to `seq`. */
  acked (seq: number): void {
    if (after(seq, this.ackedTo)) this.ackedTo = seq
    for (let k = this.kept.peek(); k !== undefined && !after(k.seq, seq); k = this.kept.peek()) {
      this.keptBytes -= k.bytes.length + KEPT_COST
      this.kept.shift()
      this.progressAt = performance.now()
    }
  }

  /**
   * A WebRTC path was given up and the peer read up to `seq`: what went on a WebRTC path after it
   * is sent again (on the relay). What went on the relay arrives anyway; the peer drops duplicates.
   */
  resendAfter (seq: number): void {
    this.acked(seq)
    for (const k of this.kept) {
      if (!k.rtc) continue
      k.rtc = false
      this.again.push(k)
    }
  }

  /** Whether frames wait to be sent again. */
  get owed (): boolean { return this.again.length > 0 }

  /** The next frame to send again (skipping what the peer has acknowledged since), noting its path. */
  takeAgain (rtc: boolean): Uint8Array | undefined {
    let k = this.again.shift()
    while (k !== undefined && !after(k.seq, this.ackedTo)) k = this.again.shift()
    if (k === undefined) return undefined
    k.rtc = rtc
    k.at = performance.now()
    return k.bytes
  }

  /**
   * How long (ms) frames sent on a WebRTC path have waited without any ACK progress: since the
   * oldest one was sent or the last ACK, whichever is later; 0 when none waits. A slow path (TURN
   * over TCP under load: a full send buffer takes seconds to drain) keeps acknowledging; a dead one does not.
   */
  rtcWait (now: number): number {
    for (const k of this.kept) if (k.rtc) return now - Math.max(k.at, this.progressAt)
    return 0
  }

  /** A stream frame numbered `seq` arrived: 'next' (read it), 'old' (a duplicate: drop it) or 'gap'. */
  arrive (seq: number): 'next' | 'old' | 'gap' {
    const expected = (this.read + 1) >>> 0
    if (seq === expected) {
      this.read = expected
      return 'next'
    }
    return after(seq, this.read) ? 'gap' : 'old'
  }
}

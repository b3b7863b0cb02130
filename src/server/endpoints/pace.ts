/**
 * Pacing for snapshots (kv entries, presence members) sent a page at a time: between two pages
 * the asker yields to every other connection (setImmediate) and waits while its own socket has
 * more than PACE_HIGH_WATER bytes unsent. So a big snapshot costs each tick one page, and an
 * asker that does not read holds nothing but its own stalled snapshot.
 */
import type { Connection } from '../connection.js'

/** Bytes a snapshot page holds, about (entries or members). */
export const PAGE_BYTES = 64 * 1024

/** Unsent bytes on the asker's socket above which the next page waits for it to drain. */
export const PACE_HIGH_WATER = 256 * 1024

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/**
 * Wait until the next page may go to `conn`: after the other connections had their turn and once
 * its socket drained below PACE_HIGH_WATER. False when the connection is gone (stop sending).
 */
export async function pace (conn: Connection): Promise<boolean> {
  await nextTurn()
  for (;;) {
    const ready = conn.paced(PACE_HIGH_WATER)
    if (!(ready instanceof Promise)) return ready
    if (!await ready) return false
  }
}

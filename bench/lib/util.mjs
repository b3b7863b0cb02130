// bench/lib/util.mjs — small helpers the scenarios share: waiting with a bound, batching, and
// building signalyard.1 frames by hand for load generators that skip the client (docs/PROTOCOL.md:
// u8 type, u32 stream id, u8 kind, u32 metaLen, JSON meta, payload).

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** `promise`, or a rejection naming `what` after `ms`. */
export function within (promise, ms, what) {
  let timer
  const timeout = new Promise((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms) })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** Run `make(i)` for i in [0, n), at most `batch` at a time; the results in order. */
export async function inBatches (n, batch, make) {
  const out = []
  for (let i = 0; i < n; i += batch) {
    out.push(...await Promise.all(Array.from({ length: Math.min(batch, n - i) }, (_v, j) => make(i + j))))
  }
  return out
}

/** One signalyard.1 frame: type, stream id, payload kind, meta (object or null), payload bytes. */
export function frame (type, id, kind, meta, payload = Buffer.alloc(0)) {
  const metaBytes = meta === null ? Buffer.alloc(0) : Buffer.from(JSON.stringify(meta))
  const head = Buffer.alloc(10)
  head[0] = type
  head.writeUInt32BE(id, 1)
  head[5] = kind
  head.writeUInt32BE(metaBytes.length, 6)
  return Buffer.concat([head, metaBytes, payload])
}

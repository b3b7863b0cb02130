// bench/lib/util.mjs — small helpers the scenarios share: waiting with a bound, batching, and
// building signalyard.2 frames by hand for load generators that skip the client (docs/PROTOCOL.md:
// u8 type, u32 stream id, u8 kind, u32 metaLen, JSON meta, payload).

import { createServer as createNetServer } from 'node:net'

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

/** One signalyard.2 frame: type, stream id, payload kind, meta (object or null), payload bytes. */
export function frame (type, id, kind, meta, payload = Buffer.alloc(0)) {
  const metaBytes = meta === null ? Buffer.alloc(0) : Buffer.from(JSON.stringify(meta))
  const head = Buffer.alloc(10)
  head[0] = type
  head.writeUInt32BE(id, 1)
  head[5] = kind
  head.writeUInt32BE(metaBytes.length, 6)
  return Buffer.concat([head, metaBytes, payload])
}

/**
 * Call `send(i)` for i = 0 … total-1, paced at `rate` per second (catching up in bursts when the
 * timer is late); resolves with the time of the first send once the last one went out.
 */
export async function sendAtRate (total, rate, send) {
  const start = performance.now()
  let sent = 0
  await new Promise((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate) + 1)
      while (sent < due) send(sent++)
      if (sent >= total) resolve()
      else setTimeout(tick, 2)
    }
    tick()
  })
  return start
}

/** Wait until `done()` or `ms` pass (checking every 10 ms). */
export async function waitUntil (done, ms) {
  const until = performance.now() + ms
  while (!done() && performance.now() < until) await sleep(10)
}

/**
 * Wait until `count()` stops changing for 100 ms (stragglers of a step would load the next one),
 * at most 5 s.
 */
export async function settle (count) {
  const quietUntil = performance.now() + 5000
  for (let seen = -1; seen !== count() && performance.now() < quietUntil;) {
    seen = count()
    await sleep(100)
  }
}

/** A TCP port free on 127.0.0.1 right now (for a child process that must be told its port). */
export function freePort () {
  return new Promise((resolve, reject) => {
    const probe = createNetServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address()
      probe.close(() => resolve(port))
    })
  })
}

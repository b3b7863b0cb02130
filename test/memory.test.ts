// test/memory.test.ts — memory returns to baseline (SPEC §7): after 10,000 connect / subscribe /
// disconnect cycles and 1,000 namespaces created and abandoned, the server's heap is back within a
// small margin of where it started, and nothing is left in its tables. The server runs in this
// process; GC is forced (V8's gc exposed at run time).
//
// Measured here: the heap ends ~1 MB above its start whether 5,000, 10,000 or 20,000 cycles ran
// (tables keep the capacity they grew to), so the bound is 2 MiB; a leak of 100 B per cycle would
// cross it. CYCLES=n changes the count, SHOW_HEAP=1 prints the growth.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import WebSocket from 'ws'
import { writeFrame, encodePayload } from '../src/protocol/codec.js'
import { FrameType, SUBPROTOCOL } from '../src/protocol/frames.js'
import { sleep, startYard, until } from './helpers.js'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

async function settledHeap (): Promise<number> {
  for (let i = 0; i < 3; i++) {
    await sleep(50)
    gc()
  }
  return process.memoryUsage().heapUsed
}

/** One client: connect, open an echo and a kv stream in `ns` (and a kv write), wait for both OPENED, close. */
function cycle (url: string, ns: string, write: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, SUBPROTOCOL)
    let opened = 0
    const timer = setTimeout(() => { ws.terminate(); reject(new Error('a cycle did not finish in 5 s')) }, 5000)
    ws.on('open', () => {
      ws.send(writeFrame(FrameType.Open, 1, { ep: 'echo', ns }))
      ws.send(writeFrame(FrameType.Open, 2, { ep: 'kv', ns }))
      ws.send(writeFrame(FrameType.Data, 1, null, encodePayload({ hello: ns })))
      if (write) ws.send(writeFrame(FrameType.Request, 2, { op: 'set', req: 1, key: 'k', ttl: 200 }, encodePayload('v')))
    })
    ws.on('message', (data: Buffer) => {
      if (data[0] === FrameType.Opened && ++opened === 2) ws.close()
    })
    ws.on('close', () => { clearTimeout(timer); resolve() })
    ws.on('error', () => {})
  })
}

test('10,000 connect/subscribe/disconnect cycles over 1,000 abandoned namespaces: heap back to baseline, tables empty', async () => {
  const yard = await startYard({ limits: { kv: { sweepInterval: 50 } } })
  try {
    // warm-up: code paths compiled, lazily made tables exist
    for (let i = 0; i < 200; i++) await cycle(yard.url, `warm-${i % 10}`, true)
    await sleep(400) // warm-up keys expire
    const before = await settledHeap()
    const BATCH = 50
    for (let i = 0; i < Number(process.env.CYCLES ?? 10_000); i += BATCH) {
      await Promise.all(Array.from({ length: BATCH }, (_, j) => cycle(yard.url, `ns-${(i + j) % 1000}`, (i + j) % 10 === 0)))
    }
    await until(() => yard.health().connections === 0, 5000, 'every connection closed')
    assert.is(yard.health().namespaces, 0)
    await sleep(500) // every key (ttl 200 ms) expired and swept
    const after = await settledHeap()
    const growth = after - before
    if (process.env.SHOW_HEAP === "1") console.log(`heap growth ${growth} B`)
    assert.ok(growth < 2 * 1024 * 1024, `heap grew ${(growth / 1024).toFixed(0)} KiB after 10,000 cycles (${(before / 1048576).toFixed(1)} → ${(after / 1048576).toFixed(1)} MiB)`)
  } finally {
    await yard.close()
  }
})

test.run()

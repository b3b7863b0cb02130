// test/memory.test.ts — memory returns to baseline (SPEC §7): after 10,000 connect / subscribe /
// disconnect cycles and 1,000 namespaces created and abandoned, the server's heap is back within a
// small margin of where it started, and nothing is left in its tables. The server runs in this
// process; GC is forced (V8's gc exposed at run time).
//
// Each cycle must really be served: its socket opens, an echo, a kv, a peers and two relay streams
// (paired with each other) are OPENED, its echo comes back, its relay DATA crosses, its kv write is
// answered; a refusal or an early close fails the cycle. At the end every table is checked: the
// yard's connections and namespaces (health), every /metrics gauge and budget, the broker's stats
// and its own tables (back to their size before the first cycle), and, on Redis, the keys and
// channels of this yard's prefix.
//
// Measured here: the heap ends ~1 MB above its start whether 5,000, 10,000 or 20,000 cycles ran
// (tables keep the capacity they grew to), so the bound is 2 MiB; a leak of 100 B per cycle would
// cross it. CYCLES=n changes the count, SHOW_HEAP=1 prints the growth.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import WebSocket from 'ws'
import { writeFrame, encodePayload, readFrame } from '../src/protocol/codec.js'
import { FrameType, SUBPROTOCOL } from '../src/protocol/frames.js'
import { TEST_BROKER, sleep, startYard, testBroker, until, type TestBroker } from './helpers.js'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

async function settledHeap (): Promise<number> {
  for (let i = 0; i < 3; i++) {
    await sleep(50)
    gc()
  }
  return process.memoryUsage().heapUsed
}

/**
 * One client: connect; open echo (1), kv (2), peers (3) and two relay streams pairing with each
 * other (4, 5) in `ns`; send an echo, a relay DATA and (if `write`) a kv set; close once every
 * answer came. Rejects on a refused or failed connection, a CLOSED or ERROR, or a close before
 * everything was answered: a server that refuses every client fails here, it does not pass.
 */
function cycle (url: string, ns: string, n: number, write: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, SUBPROTOCOL)
    const waiting = new Set(['opened 1', 'opened 2', 'opened 3', 'opened 4', 'opened 5', 'echo', 'relay'])
    if (write) waiting.add('reply 2')
    let failure: string | null = null
    const fail = (why: string): void => {
      failure ??= `cycle ${n} in ${ns}: ${why}`
      ws.terminate()
    }
    const timer = setTimeout(() => fail(`not served in 5 s (still waiting for ${[...waiting].join(', ')})`), 5000)
    ws.on('open', () => {
      ws.send(writeFrame(FrameType.Open, 1, { ep: 'echo', ns }))
      ws.send(writeFrame(FrameType.Open, 2, { ep: 'kv', ns }))
      ws.send(writeFrame(FrameType.Open, 3, { ep: 'peers', ns, id: `p${n}`, key: `memory-test-key-${n}` }))
      ws.send(writeFrame(FrameType.Open, 4, { ep: 'relay', ns, local: 'x', remote: 'y' }))
      ws.send(writeFrame(FrameType.Open, 5, { ep: 'relay', ns, local: 'y', remote: 'x' }))
      ws.send(writeFrame(FrameType.Data, 1, null, encodePayload({ hello: ns })))
      ws.send(writeFrame(FrameType.Data, 4, null, encodePayload('across')))
      if (write) ws.send(writeFrame(FrameType.Request, 2, { op: 'set', req: 1, key: 'k', ttl: 200 }, encodePayload('v')))
    })
    ws.on('message', (data: Buffer) => {
      const f = readFrame(new Uint8Array(data))
      if (f === null) return fail('a malformed frame from the server')
      if (f.type === FrameType.Opened) waiting.delete(`opened ${f.id}`)
      else if (f.type === FrameType.Event && f.meta?.ep === 'echo') waiting.delete('echo')
      else if (f.type === FrameType.Data && f.id === 5) waiting.delete('relay')
      else if (f.type === FrameType.Reply && f.id === 2) waiting.delete('reply 2')
      else if (f.type === FrameType.Closed || f.type === FrameType.Error) return fail(`${f.type === FrameType.Closed ? 'CLOSED' : 'ERROR'} on stream ${f.id}: ${JSON.stringify(f.meta)}`)
      if (waiting.size === 0) ws.close()
    })
    ws.on('unexpected-response', (_req, res) => fail(`connection refused: HTTP ${res.statusCode}`))
    ws.on('error', (err) => fail(`socket error: ${err.message}`))
    ws.on('close', (code) => {
      clearTimeout(timer)
      if (failure === null && waiting.size > 0) failure = `cycle ${n} in ${ns}: closed (${code}) before ${[...waiting].join(', ')}`
      if (failure !== null) reject(new Error(failure))
      else resolve()
    })
  })
}

/** Every gauge of /metrics (budgets by name), as numbers. */
function gauges (text: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const m of text.matchAll(/^(signalyard_[a-z_]+)(\{budget="([^"]+)"\})? (\d+(?:\.\d+)?)$/gm)) {
    if (m[1].endsWith('_total') || m[1] === 'signalyard_budget_limit') continue
    out[m[3] === undefined ? m[1] : `${m[1]}{${m[3]}}`] = Number(m[4])
  }
  return out
}

/** What the broker holds: its stats, its own tables, and on Redis this yard's keys and channels. */
async function brokerState (broker: TestBroker): Promise<object> {
  return { stats: await broker.stats(), tables: broker.tables?.() ?? null, redis: await broker.redisState() }
}

test('10,000 connect/subscribe/disconnect cycles over 1,000 abandoned namespaces: heap back to baseline, tables empty', async () => {
  const broker = await testBroker({ sweepInterval: 50 })
  const yard = await startYard({ broker, limits: { kv: { sweepInterval: 50 }, peers: { grace: 1 } } })
  try {
    const start = await brokerState(broker)
    if (process.env.SHOW_HEAP === '1') console.log('broker at the start:', JSON.stringify(start))
    assert.ok(broker.tables !== undefined, 'the broker lists its tables')
    const metrics = gauges(await yard.metrics())
    assert.ok(Object.keys(metrics).some((k) => k.startsWith('signalyard_budget_used{')), `/metrics lists the budgets: ${JSON.stringify(metrics)}`)
    // warm-up: code paths compiled, lazily made tables exist
    for (let i = 0; i < 200; i++) await cycle(yard.url, `warm-${i % 10}`, i, true)
    await sleep(400) // warm-up keys expire
    const before = await settledHeap()
    const BATCH = 50
    const cycles = Number(process.env.CYCLES ?? 10_000)
    for (let i = 0; i < cycles; i += BATCH) {
      await Promise.all(Array.from({ length: BATCH }, (_, j) => cycle(yard.url, `ns-${(i + j) % 1000}`, i + j, (i + j) % 10 === 0)))
    }
    await until(() => yard.health().connections === 0, 5000, 'every connection closed')
    assert.equal(yard.health(), { status: 'ok', connections: 0, namespaces: 0 })
    // every key (ttl 200 ms) expired and swept, every claim released, every side forgotten
    await until(async () => JSON.stringify(await brokerState(broker)) === JSON.stringify(start), 3000, 'the broker back to where it started').catch(() => {})
    assert.equal(await brokerState(broker), start, 'the broker holds what it held before the first cycle')
    const after = gauges(await yard.metrics())
    for (const [name, value] of Object.entries(after)) assert.is(value, 0, `${name} is back to 0`)
    assert.equal(Object.keys(after).sort(), Object.keys(metrics).sort(), 'the same gauges are listed')
    const heapAfter = await settledHeap()
    const growth = heapAfter - before
    if (process.env.SHOW_HEAP === '1') console.log(`heap growth ${growth} B (${TEST_BROKER})`)
    assert.ok(growth < 2 * 1024 * 1024, `heap grew ${(growth / 1024).toFixed(0)} KiB after ${cycles} cycles (${(before / 1048576).toFixed(1)} → ${(heapAfter / 1048576).toFixed(1)} MiB)`)
  } finally {
    await yard.close()
    await broker.close()
  }
})

test.run()

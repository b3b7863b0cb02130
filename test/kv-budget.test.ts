// test/kv-budget.test.ts — KV memory is bounded in bytes, per namespace (kv.maxBytes), for the
// whole yard (limits.total.kv) and per connection (kv.maxOwnedBytes), on both brokers (issue 10:
// one connection put ~900 MiB in and it stayed after it left). A set past a bound is refused with
// `quota-exceeded` (an ERROR with its req: the client's set() rejects with that code), and the
// bytes come back on delete, on a smaller overwrite and on expiry. The yard's KV bytes are visible:
// /metrics signalyard_budget_used{budget="kv"} (in-memory broker) or broker.stats().kvBytes (Redis).
//
// Every entry counts its key's UTF-8 bytes + its value's bytes + KV_ENTRY_COST.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { SignalChannel, SignalyardError, type Channel, type KvStream } from 'signalyard'
import { createServer, redisBroker, type Broker, type LimitsOption, type Yard } from 'signalyard/server'
import { next, startYard, TEST_BROKER, until } from './helpers.js'
import { startRedis, type TestRedis } from './redis.js'
import { KV_ENTRY_COST } from '../src/kv/model.js'

const COST = KV_ENTRY_COST
/** A binary value of n bytes (binary values are counted as they are). */
const blob = (n: number): Uint8Array => new Uint8Array(n).fill(7)
/** What a key with an n-byte binary value counts. */
const entry = (key: string, n: number): number => Buffer.byteLength(key) + n + COST

let redis: TestRedis | null = null
let prefixes = 0
test.after(async () => { await redis?.stop() })

interface Setup { yard: Yard, kvBytes: () => Promise<number>, close: () => Promise<void>, client: (ns: string) => Channel }

/** A yard with these limits and a way to read the yard's KV bytes where an operator would. */
async function setup (limits: LimitsOption): Promise<Setup> {
  let yard: Yard
  let broker: Broker | null = null
  if (TEST_BROKER === 'redis') {
    redis ??= await startRedis()
    broker = redisBroker({ url: redis.url, prefix: `budget${++prefixes}:`, sweepInterval: 50 })
    yard = await createServer({ port: 0, host: '127.0.0.1', broker, limits: { ...limits, kv: { sweepInterval: 50, ...limits.kv } } })
  } else {
    yard = await startYard({ limits: { ...limits, kv: { sweepInterval: 50, ...limits.kv } } })
  }
  const channels: Channel[] = []
  let n = 0
  return {
    yard,
    kvBytes: async () => {
      // /metrics on both brokers (on Redis the yard-wide figure the scripts keep)
      const line = (await yard.metrics()).split('\n').find((l) => l.startsWith('signalyard_budget_used{budget="kv"}'))
      return Number(line?.split(' ')[1] ?? -1)
    },
    client: (ns) => {
      const ch = SignalChannel(ns, { url: `${yard.url}?budget=${++n}` })
      channels.push(ch)
      return ch
    },
    close: async () => {
      for (const ch of channels) ch.close()
      await yard.close()
      await broker?.close()
    }
  }
}

async function refusal (promise: Promise<unknown>): Promise<string> {
  try {
    await promise
  } catch (err) {
    assert.instance(err, SignalyardError)
    return (err as SignalyardError).code
  }
  return 'accepted'
}

async function replica (s: Setup, ns: string): Promise<KvStream> {
  const kv = s.client(ns).kv()
  await kv.ready()
  return kv
}

test('kv.maxBytes bounds one namespace: the set past it is refused quota-exceeded; delete, a smaller overwrite and expiry give the bytes back', async () => {
  const one = entry('k1', 1000)
  // room for three such keys and a little, not for a fourth
  const s = await setup({ kv: { maxBytes: 3 * one + 100 + COST } })
  try {
    const kv = await replica(s, 'ns-bytes')
    for (const key of ['k1', 'k2', 'k3']) await kv.set(key, blob(1000))
    assert.is(await s.kvBytes(), 3 * one)
    assert.is(await refusal(kv.set('k4', blob(1000))), 'quota-exceeded')
    assert.not.ok(kv.has('k4'), 'the refused key is not in the replica')
    assert.is(await s.kvBytes(), 3 * one, 'a refused set holds nothing')
    // another namespace is not affected by this one's bound
    const other = await replica(s, 'ns-other')
    await other.set('k1', blob(1000))
    await other.delete('k1')

    await kv.delete('k1')
    assert.is(await s.kvBytes(), 2 * one, 'delete gives its bytes back')
    await kv.set('k4', blob(1000))
    assert.is(await refusal(kv.set('k5', blob(1000))), 'quota-exceeded')

    await kv.set('k2', blob(10))
    assert.is(await s.kvBytes(), 2 * one + entry('k2', 10), 'a smaller overwrite gives the difference back')
    assert.is(await refusal(kv.set('k2', blob(1000 + 400))), 'quota-exceeded', 'an overwrite that grows past the bound is refused')
    await kv.set('k5', blob(1000))

    const expired = next(kv, 'delete', 3000)
    await kv.set('k5', blob(1000), { ttl: 100 })
    assert.equal(await expired, ['k5', 'expired'])
    await until(async () => await s.kvBytes() === 2 * one + entry('k2', 10), 2000, 'expired bytes given back')
    await kv.set('k6', blob(1000))
    for (const key of kv.keys()) await kv.delete(key)
    assert.is(await s.kvBytes(), 0, 'an emptied yard holds no KV bytes')
  } finally {
    await s.close()
  }
})

test('limits.total.kv bounds every namespace together (quota-exceeded), whoever writes; its gauge shows the bytes', async () => {
  const one = entry('key', 2000)
  const s = await setup({ total: { kv: 4 * one + 500 } })
  try {
    const writers = await Promise.all([0, 1, 2, 3, 4].map((i) => replica(s, `total-${i}`)))
    for (const kv of writers.slice(0, 4)) await kv.set('key', blob(2000))
    assert.is(await s.kvBytes(), 4 * one)
    assert.is(await refusal(writers[4].set('key', blob(2000))), 'quota-exceeded')
    assert.is(await refusal(writers[0].set('other', blob(2000))), 'quota-exceeded')
    await writers[1].delete('key')
    assert.is(await s.kvBytes(), 3 * one)
    await writers[4].set('key', blob(2000))
    assert.is(await s.kvBytes(), 4 * one)
    if (TEST_BROKER === 'memory') {
      const text = await s.yard.metrics()
      assert.match(text, `signalyard_budget_limit{budget="kv"} ${4 * one + 500}`)
      assert.match(text, 'signalyard_refusals_total{code="quota-exceeded"} 2')
    }
  } finally {
    await s.close()
  }
})

test('kv.maxOwnedBytes bounds the live keys one connection wrote; others still write; its delete, overwrite and expiry give them back', async () => {
  const one = entry('a1', 1000)
  const s = await setup({ kv: { maxOwnedBytes: 3 * one + 100 + COST } })
  try {
    const a = await replica(s, 'owned')
    for (const key of ['a1', 'a2', 'a3']) await a.set(key, blob(1000))
    assert.is(await refusal(a.set('a4', blob(1000))), 'quota-exceeded')
    assert.is(await refusal(a.set('a4', blob(1000))), 'quota-exceeded', 'still refused')
    // another connection still writes in the same namespace: the bound is the connection's
    const b = await replica(s, 'owned')
    for (const key of ['b1', 'b2', 'b3']) await b.set(key, blob(1000))

    await a.delete('a1')
    await a.set('a4', blob(1000))
    assert.is(await refusal(a.set('a5', blob(1000))), 'quota-exceeded')
    await a.set('a2', blob(10))
    assert.is(await refusal(a.set('a5', blob(1100))), 'quota-exceeded', 'a smaller overwrite frees only its difference')
    await a.set('a5', blob(1000))

    // a key that expired no longer counts
    await a.delete('a5')
    const expired = next(a, 'delete', 3000)
    await a.set('a5', blob(1000), { ttl: 150 })
    assert.equal(await expired, ['a5', 'expired'])
    assert.is(await refusal(a.set('a6', blob(1000 + one))), 'quota-exceeded')
    await a.set('a6', blob(1000))
  } finally {
    await s.close()
  }
})

test.run()

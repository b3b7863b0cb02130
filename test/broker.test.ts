/**
 * The Broker interface takes asynchronous brokers (Redis will be one) without reshaping the
 * endpoints: the memory broker wrapped so that every call answers later and every topic message
 * arrives on a later turn, and echo, kv and relay still behave as SPEC §3 says.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { SignalChannel } from 'signalyard'
import { memoryBroker, type Broker, type TopicHandler } from 'signalyard/server'
import { collect, next, startYard, until } from './helpers.js'

const later = <T>(value: () => T): Promise<Awaited<T>> => new Promise((resolve, reject) => {
  setImmediate(() => { try { resolve(value() as Awaited<T>) } catch (err) { reject(err) } })
})

/** Every method answers on a later turn; topic messages are delivered on a later turn, in order. */
function asyncBroker (inner: Broker): Broker & { calls: Record<string, number> } {
  const calls: Record<string, number> = {}
  const count = (name: string): void => { calls[name] = (calls[name] ?? 0) + 1 }
  const delayed = new Map<TopicHandler, TopicHandler>()
  return {
    calls,
    subscribe: (topic, handler) => {
      count('subscribe')
      const wrapped: TopicHandler = (m) => setImmediate(() => handler(m))
      delayed.set(handler, wrapped)
      return later(() => inner.subscribe(topic, wrapped))
    },
    unsubscribe: (topic, handler) => {
      count('unsubscribe')
      const wrapped = delayed.get(handler)
      delayed.delete(handler)
      return later(() => wrapped === undefined ? undefined : inner.unsubscribe(topic, wrapped))
    },
    publish: (topic, message) => { count('publish'); return later(() => inner.publish(topic, message)) },
    kvSet: (request) => { count('kvSet'); return later(() => inner.kvSet(request)) },
    kvDelete: (ns, key) => { count('kvDelete'); return later(() => inner.kvDelete(ns, key)) },
    kvSnapshot: (ns, since) => { count('kvSnapshot'); return later(() => inner.kvSnapshot(ns, since)) },
    kvScan: async function * (ns, since, pageBytes) {
      count('kvScan')
      for await (const page of inner.kvScan(ns, since, pageBytes)) yield await later(() => page)
    },
    relayOpen: (ns, local, remote, sink) => { count('relayOpen'); return later(() => inner.relayOpen(ns, local, remote, sink)) },
    claim: (request, sink) => { count('claim'); return later(() => inner.claim(request, sink)) },
    direct: (ns, to, frame) => { count('direct'); return later(() => inner.direct(ns, to, frame)) },
    stats: () => inner.stats(),
    close: () => inner.close()
  }
}

test('echo, kv and relay work through an asynchronous broker', async () => {
  const inner = memoryBroker()
  const broker = asyncBroker(inner)
  const yard = await startYard({ broker })
  const a = SignalChannel('async', yard.url)
  const b = SignalChannel('async', `${yard.url}?client=b`) // another URL string: a second socket
  try {
    // echo: written before open, per-sender order kept, sender included.
    const ea = a.echo()
    const eb = b.echo()
    await Promise.all([ea.ready(), eb.ready()])
    const got = collect(eb, 'data', 100)
    const own = collect(ea, 'data', 100)
    for (let i = 0; i < 100; i++) ea.send(i)
    assert.equal((await got).map(([d]) => d), [...Array(100).keys()])
    assert.equal((await own).length, 100)

    // kv: late joiner state before ready(), update and delete elsewhere.
    const ka = a.kv()
    await ka.set('k', { v: 1 })
    assert.equal(ka.get('k'), { v: 1 }, 'the writer sees its write when set() resolves')
    const kb = b.kv()
    await kb.ready()
    assert.equal(kb.toJSON(), { k: { v: 1 } })
    const deleted = next(kb, 'delete')
    await ka.delete('k')
    assert.equal(await deleted, ['k', 'deleted'])

    // relay: pairs, pre-open data held, both directions.
    const ra = a.relay({ local: 'x', remote: 'y' })
    ra.send('early')
    const rb = b.relay({ local: 'y', remote: 'x' })
    const first = next(rb, 'data')
    await Promise.all([ra.ready(), rb.ready()])
    assert.equal(await first, ['early'])
    const back = next(ra, 'data')
    rb.send(new Uint8Array([1, 2, 3]))
    assert.equal([...(await back)[0]], [1, 2, 3])

    assert.equal(yard.health().connections, 2)
    assert.ok(broker.calls.subscribe >= 2 && broker.calls.kvScan >= 2 && broker.calls.relayOpen === 2)
  } finally {
    a.close()
    b.close()
    await until(() => yard.health().connections === 0)
    await yard.close()
    await inner.close()
  }
})

test('a broker that fails answers the client with a coded error and keeps the connection', async () => {
  const inner = memoryBroker()
  const broker: Broker = { ...inner, kvSet: async () => { throw new Error('broker down') } }
  const yard = await startYard({ broker })
  const a = SignalChannel('failing', yard.url)
  try {
    const kv = a.kv()
    const err = await kv.set('k', 1).then(() => null, (e) => e)
    assert.equal(err?.code, 'internal-error')
    const echo = a.echo()
    const got = next(echo, 'data')
    echo.send('still serving')
    assert.equal(await got, ['still serving', { from: echo.id }])
  } finally {
    a.close()
    await yard.close()
    await inner.close()
  }
})

test('two yards on one broker: echo, kv and relay reach across them, and each yard unsubscribes only itself', async () => {
  const broker = memoryBroker()
  const one = await startYard({ broker })
  const two = await startYard({ broker })
  const a = SignalChannel('shared-broker', one.url)
  const b = SignalChannel('shared-broker', two.url)
  try {
    const ea = a.echo()
    const eb = b.echo()
    await Promise.all([ea.ready(), eb.ready()])
    const got = next(eb, 'data')
    ea.send('across yards')
    assert.equal((await got)[0], 'across yards')

    const ka = a.kv()
    await ka.set('k', 'v')
    const kb = b.kv()
    await kb.ready()
    assert.equal(kb.get('k'), 'v')

    const ra = a.relay({ local: 'p', remote: 'q' })
    const rb = b.relay({ local: 'q', remote: 'p' })
    await Promise.all([ra.ready(), rb.ready()])
    const piped = next(rb, 'data')
    ra.send('through the relay')
    assert.equal(await piped, ['through the relay'])

    // The last echo subscriber on yard one leaves: yard two still gets what yard two's clients send.
    ea.close()
    const still = next(eb, 'data')
    const extra = b.echo()
    await extra.ready()
    extra.send('two still hears')
    assert.equal((await still)[0], 'two still hears')
  } finally {
    a.close()
    b.close()
    await one.close()
    await two.close()
    await broker.close()
  }
})

test('presence and a peer connection over the relay work through an asynchronous broker', async () => {
  const broker = asyncBroker(memoryBroker())
  const yard = await startYard({ broker })
  const a = SignalChannel('async-peers', yard.url)
  const b = SignalChannel('async-peers', `${yard.url}?client=b`)
  try {
    const pa = a.createPeers()
    const pb = b.createPeers()
    await pa.join({ id: 'alice', role: 'host' })
    const joined = next(pa, 'join')
    await pb.join({ id: 'bob' })
    assert.equal(pb.list(), [{ id: 'alice', role: 'host' }])
    assert.equal((await joined)[0], { id: 'bob' })
    const na = a.createNode(undefined, { transport: 'relay' })
    const nb = b.createNode((pc) => pc.on('connection', (s) => s.on('data', (d) => s.send(d))), { transport: 'relay' })
    await Promise.all([na.listen('alice'), nb.listen('bob')])
    const pc = na.connect('bob')
    const s = pc.createStream('x')
    const echoed = next(s, 'data')
    s.send('through a slow broker')
    assert.equal((await echoed)[0], 'through a slow broker')
    assert.is(pc.transport, 'relay')
    assert.ok(broker.calls.claim >= 4 && broker.calls.direct >= 2, 'claims and directed messages went through the broker')
    const left = next(pa, 'leave')
    pb.leave()
    assert.equal((await left)[0], { id: 'bob' })
  } finally {
    a.close()
    b.close()
    await yard.close()
  }
})

test.run()

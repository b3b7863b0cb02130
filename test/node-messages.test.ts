// test/node-messages.test.ts — directed messages without a peer connection (SPEC §11):
// `node.send(id, data)` / node 'message' (data, { from }) over the signal endpoint, `from` set by
// the server; `unknown-peer` for an id nobody holds; order; a raw client cannot pose as another
// id; handshakes are never 'message's and messages never disturb a pc. Random ids:
// `node.listen()` and `peers.join({})` without an id. Both brokers; plus two yards on one Redis.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { SignalChannel, SignalyardError, type Channel, type PeerNode } from 'signalyard'
import { createServer, redisBroker, type Yard } from 'signalyard/server'
import { encodePayload, writeFrame } from '../src/protocol/codec.js'
import { FrameType } from '../src/protocol/frames.js'
import { rawClient, type RawClient } from './raw-client.js'
import { next, startYard, until, within } from './helpers.js'
import { startRedis } from './redis.js'

const NS = 'msgs'

/** Channels on `yard` (closed by `close`). */
function channels (yard: Yard): { channel: () => Channel, close: () => void } {
  const list: Channel[] = []
  return {
    channel: () => {
      const c = SignalChannel(NS, { url: yard.url })
      list.push(c)
      return c
    },
    close: () => { for (const c of list) c.close() }
  }
}

/** Every message a node receives, as [from, data]. */
function inbox (node: PeerNode): Array<[string, unknown]> {
  const got: Array<[string, unknown]> = []
  node.on('message', (data, { from }) => { got.push([from, data]) })
  return got
}

test('node.send: JSON, text and bytes reach the node listening on the id, with from set by the server, in order', async () => {
  const yard = await startYard()
  const { channel, close } = channels(yard)
  try {
    const alice = channel().createNode()
    const bob = channel().createNode()
    await within(alice.listen('alice'), 2000, 'alice listens')
    await within(bob.listen('bob'), 2000, 'bob listens')
    const got = inbox(bob)
    alice.send('bob', { type: 'offer', sdp: 'v=0…' })
    alice.send('bob', 'plain text')
    alice.send('bob', new Uint8Array([0, 1, 2, 255]))
    for (let i = 0; i < 200; i++) alice.send('bob', i)
    await until(() => got.length === 203, 3000, 'every message')
    assert.equal(got[0], ['alice', { type: 'offer', sdp: 'v=0…' }])
    assert.equal(got[1], ['alice', 'plain text'])
    assert.equal(got[2][0], 'alice')
    assert.equal([...(got[2][1] as Uint8Array)], [0, 1, 2, 255], 'bytes stay bytes')
    assert.equal(got.slice(3).map(([, d]) => d), Array.from({ length: 200 }, (_, i) => i), 'in order')
    assert.ok(got.every(([from]) => from === 'alice'))
    // Both ways, and to oneself.
    const back = inbox(alice)
    bob.send('alice', 'pong')
    alice.send('alice', 'self')
    await until(() => back.length === 2, 2000, 'the replies')
    assert.equal(back.sort(), [['alice', 'self'], ['bob', 'pong']])
  } finally {
    close()
    await yard.close()
  }
})

test('node.send to an id nobody holds: the sender emits unknown-peer naming the id; its pcs go on; misuse throws', async () => {
  const yard = await startYard()
  const { channel, close } = channels(yard)
  try {
    const alice = channel().createNode()
    assert.throws(() => alice.send('bob', 1), (err: SignalyardError) => err.code === 'must-listen-first')
    await alice.listen('alice')
    const bob = channel().createNode((pc) => pc.on('connection', (s) => s.on('data', (d) => s.send(d))))
    await bob.listen('bob')
    assert.throws(() => alice.send('', 1), (err: SignalyardError) => err.code === 'bad-request')
    assert.throws(() => alice.send('bob', () => {}), (err: SignalyardError) => err.code === 'bad-request', 'a function does not encode')
    const pc = alice.connect('bob')
    const error = next(alice, 'error')
    alice.send('nobody', 'hello?')
    const [err] = await error as [SignalyardError]
    assert.is(err.code, 'unknown-peer')
    assert.match(err.message, /"nobody"/)
    await within(pc.ready(), 5000, 'the pc to bob opens all the same')
    const stream = pc.createStream('echo')
    const echoed = next(stream, 'data')
    stream.send('still here')
    assert.equal(await echoed, ['still here'])
  } finally {
    close()
    await yard.close()
  }
})

test('handshakes are not messages, and messages are not handshakes: a pc opens while 100 messages cross it', async () => {
  const yard = await startYard()
  const { channel, close } = channels(yard)
  try {
    const alice = channel().createNode()
    const bob = channel().createNode()
    await alice.listen('alice')
    await bob.listen('bob')
    const got = inbox(bob)
    const pc = alice.connect('bob')
    // Messages shaped like handshake messages stay messages.
    for (let i = 0; i < 100; i++) alice.send('bob', { t: 'hello', c: `x${i}`, rtc: false })
    const [incoming] = await within(next(bob, 'connection'), 3000, 'bob gets the pc') as [unknown]
    await within(pc.ready(), 5000, 'open')
    await until(() => got.length === 100, 2000, 'the 100 messages')
    assert.is(bob.connections().length, 1, 'one pc, not 101')
    assert.is(bob.connections()[0], incoming)
    assert.ok(got.every(([, d]) => (d as { t: string }).t === 'hello'))
  } finally {
    close()
    await yard.close()
  }
})

test('a raw client cannot pose as another id: from is always the sender\'s claimed id', async () => {
  const yard = await startYard()
  const { channel, close } = channels(yard)
  const raws: RawClient[] = []
  try {
    const bob = channel().createNode()
    await bob.listen('bob')
    const got = inbox(bob)
    const mallory = await rawClient(yard, raws)
    assert.is((await mallory.open(1, { ep: 'signal', ns: NS, id: 'mallory', key: 'k'.repeat(24) })).type, FrameType.Opened)
    mallory.sendRaw(writeFrame(FrameType.Data, 1, { to: 'bob', app: 1, from: 'alice' }, encodePayload('trust me')))
    await until(() => got.length === 1, 2000, 'the message')
    assert.equal(got, [['mallory', 'trust me']])
  } finally {
    for (const r of raws) r.ws.terminate()
    close()
    await yard.close()
  }
})

test('random ids: node.listen() and peers.join({}) without an id', async () => {
  const yard = await startYard()
  const { channel, close } = channels(yard)
  try {
    const a = channel().createNode()
    const b = channel().createNode()
    const [idA, idB] = await Promise.all([a.listen(), b.listen()])
    assert.match(idA, /^[\w-]{21}$/)
    assert.is(a.id, idA)
    assert.is.not(idA, idB)
    const got = inbox(b)
    a.send(idB, 'found you')
    await until(() => got.length === 1, 2000, 'message to a random id')
    assert.equal(got, [[idA, 'found you']])

    const peers = channel().createPeers()
    const watcher = channel().createPeers()
    await watcher.join({ id: 'watcher' })
    const id = await peers.join({ name: 'Ada' })
    assert.match(id, /^[\w-]{21}$/)
    await until(() => watcher.list().some((m) => m.id === id && m.name === 'Ada'), 2000, 'the watcher sees the random id')
    const again = await peers.join({ name: 'Ada L.' })
    assert.is(again, id, 'joining again without an id keeps it')
    await until(() => watcher.list().some((m) => m.id === id && m.name === 'Ada L.'), 2000, 'meta updated')
    assert.is(watcher.list().filter((m) => m.id !== 'watcher').length, 1, 'one member, not two')
    const other = channel().createPeers()
    assert.is.not(await other.join(), id, 'another client gets another id')
  } finally {
    close()
    await yard.close()
  }
})

test('two yards on one Redis: a message sent through one reaches a node on the other; unknown-peer across the cluster', async () => {
  const redis = await startRedis()
  const brokers = [redisBroker({ url: redis.url }), redisBroker({ url: redis.url })]
  const yards = await Promise.all(brokers.map(async (broker) => await createServer({ port: 0, host: '127.0.0.1', broker })))
  const one = channels(yards[0])
  const two = channels(yards[1])
  try {
    const alice = one.channel().createNode()
    const bob = two.channel().createNode()
    await alice.listen('alice')
    await bob.listen('bob')
    const got = inbox(bob)
    for (let i = 0; i < 50; i++) alice.send('bob', i)
    await until(() => got.length === 50, 3000, 'across processes')
    assert.equal(got.map(([, d]) => d), Array.from({ length: 50 }, (_, i) => i), 'in order')
    assert.ok(got.every(([from]) => from === 'alice'))
    const error = next(alice, 'error', 3000)
    alice.send('nobody', 1)
    assert.is(((await error)[0] as SignalyardError).code, 'unknown-peer')
  } finally {
    one.close()
    two.close()
    await Promise.all(yards.map(async (y) => await y.close()))
    await Promise.all(brokers.map(async (b) => await b.close())) // (a broker passed in is the caller's to close)
    await redis.stop()
  }
})

test.run()

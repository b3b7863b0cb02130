// test/echo.test.ts — the echo endpoint against a real server (SPEC §3, §3.1): who receives a
// message (sender included unless `self: false`, every subscribed stream exactly once, nobody in
// another namespace, no replay), per-sender order, the server-stamped `from`, payload types, and
// the stream lifecycle (ready, close).
//
// Channels in one process that use the same URL share one socket; a "second client" here uses the
// same server URL with a query string (`?c=2`), which is a different URL and so its own socket.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { randomBytes } from 'node:crypto'
import { SignalChannel, SignalyardError, type Channel, type EchoStream } from 'signalyard'
import type { Yard } from 'signalyard/server'
import { collect, next, readyAll, sleep, startYard, until, within } from './helpers.js'

/** Run `body` with a fresh yard; close every channel it opened and the yard, whatever happens. */
async function withYard (body: (yard: Yard, open: (ns: string, client?: number) => Channel) => Promise<void>): Promise<void> {
  const yard = await startYard()
  const channels: Channel[] = []
  const open = (ns: string, client = 1): Channel => {
    const channel = SignalChannel(ns, { url: client === 1 ? yard.url : `${yard.url}?c=${client}` })
    channels.push(channel)
    return channel
  }
  try {
    await body(yard, open)
  } finally {
    for (const channel of channels) channel.close()
    await yard.close()
  }
}

/** Record every 'data' of a stream as [data, from]. */
function record (stream: EchoStream): Array<[unknown, string]> {
  const got: Array<[unknown, string]> = []
  stream.on('data', (data, { from }) => { got.push([data, from]) })
  return got
}

test('the sender receives its own message by default, and `from` is its stream id for every receiver', async () => {
  await withYard(async (_yard, open) => {
    const a = open('room').echo()
    const b = open('room', 2).echo()
    await readyAll(a, b)
    assert.type(a.id, 'string')
    assert.ok((a.id ?? '').length > 0, 'the stream has an id once ready')
    assert.is.not(a.id, b.id)

    const atA = next(a, 'data')
    const atB = next(b, 'data')
    a.send({ hello: 'world' })
    const [[dataA, infoA], [dataB, infoB]] = await Promise.all([atA, atB])
    assert.equal(dataA, { hello: 'world' })
    assert.equal(dataB, { hello: 'world' })
    assert.is(infoA.from, a.id, 'the sender sees its own id as from')
    assert.is(infoB.from, a.id, 'another client sees the same from')
  })
})

test('self: false drops only the stream\'s own messages; it still gets everyone else\'s', async () => {
  await withYard(async (_yard, open) => {
    const channel = open('room')
    const quiet = channel.echo({ self: false })
    const sibling = channel.echo() // same socket as `quiet`: it sees the same EVENT frames at the same moment
    const other = open('room', 2).echo()
    await readyAll(quiet, sibling, other)
    const atQuiet = record(quiet)

    const atSibling = next(sibling, 'data')
    const atOther = next(other, 'data')
    quiet.send('mine')
    const [[s, sInfo], [o]] = await Promise.all([atSibling, atOther])
    assert.is(s, 'mine')
    assert.is(sInfo.from, quiet.id)
    assert.is(o, 'mine', 'a stream of another client gets it')
    // The sibling shares quiet's socket, so quiet has seen (and dropped) the frame by now.
    assert.equal(atQuiet, [], 'quiet did not receive its own message')

    const fromSibling = next(quiet, 'data')
    sibling.send('from sibling')
    assert.equal((await fromSibling)[0], 'from sibling', 'a sibling stream of the same channel is someone else')
    const fromOther = next(quiet, 'data')
    other.send('from other')
    const [data, info] = await fromOther
    assert.is(data, 'from other')
    assert.is(info.from, other.id)
    assert.equal(atQuiet.map(([d]) => d), ['from sibling', 'from other'])
  })
})

test('every subscribed stream of the namespace receives each message exactly once', async () => {
  await withYard(async (yard, open) => {
    const one = open('room')
    const e1 = one.echo()
    const e2 = one.echo() // two echo streams of one channel
    const e3 = open('room').echo() // another channel on the same socket
    const e4 = open('room', 2).echo() // another socket
    const all = [e1, e2, e3, e4]
    await readyAll(...all)
    assert.is(yard.health().connections, 2, 'three channels over two sockets')

    const logs = all.map(record)
    const N = 25
    for (let i = 0; i < N; i++) {
      e1.send(`e1-${i}`)
      e4.send(`e4-${i}`)
    }
    await until(() => logs.every((log) => log.length >= 2 * N), 3000, 'every stream got every message')
    await sleep(150) // room for duplicates to show up
    for (const [i, log] of logs.entries()) {
      assert.is(log.length, 2 * N, `stream e${i + 1} got each message once`)
      const texts = new Set(log.map(([d]) => d))
      assert.is(texts.size, 2 * N, `stream e${i + 1}: no duplicates`)
      for (const [data, from] of log) assert.is(from, String(data).startsWith('e1-') ? e1.id : e4.id)
    }
  })
})

test('per-sender order is kept over 500 messages from each of two senders', async () => {
  await withYard(async (_yard, open) => {
    const a = open('room').echo()
    const b = open('room', 2).echo()
    const c = open('room', 3).echo()
    await readyAll(a, b, c)
    const N = 500
    const got = collect(c, 'data', 2 * N, 5000)
    const started = Date.now()
    for (let i = 0; i < N; i++) {
      a.send({ i })
      b.send(i % 2 === 0 ? { i } : new Uint8Array([i >> 8, i & 0xff])) // mixed kinds, one order
    }
    const events = await got
    const ms = Date.now() - started
    const seqA = events.filter(([, info]) => info.from === a.id).map(([d]) => (d as { i: number }).i)
    const seqB = events.filter(([, info]) => info.from === b.id)
      .map(([d]) => d instanceof Uint8Array ? (d[0] << 8) | d[1] : (d as { i: number }).i)
    const expected = Array.from({ length: N }, (_, i) => i)
    assert.equal(seqA, expected, 'sender a in order')
    assert.equal(seqB, expected, 'sender b in order')
    console.log(`  echo: 2 × ${N} messages fanned out to a third client in ${ms} ms`)
  })
})

test('no replay for late joiners', async () => {
  await withYard(async (_yard, open) => {
    const a = open('room').echo()
    await readyAll(a)
    const early = collect(a, 'data', 5)
    for (let i = 0; i < 5; i++) a.send(`early-${i}`)
    await early // the server has handled (and fanned out) all five

    const late = open('room', 2).echo()
    const atLate = record(late)
    await readyAll(late)
    const after = next(late, 'data')
    a.send('after')
    assert.is((await after)[0], 'after')
    await sleep(100)
    assert.equal(atLate.map(([d]) => d), ['after'], 'the late joiner got nothing sent before it joined')
  })
})

test('a stream in another namespace receives nothing', async () => {
  await withYard(async (_yard, open) => {
    const sender = open('room-a').echo()
    const sameA = open('room-a', 2).echo()
    const otherSameSocket = open('room-b').echo() // other namespace, the sender's socket
    const otherOtherSocket = open('room-b', 2).echo() // other namespace, the receiver's socket
    const senderB = open('room-b', 3).echo()
    const all = [sender, sameA, otherSameSocket, otherOtherSocket, senderB]
    await readyAll(...all)
    const logs = all.map(record)

    const inA = collect(sameA, 'data', 3)
    for (let i = 0; i < 3; i++) sender.send(`a-${i}`)
    await inA
    // A marker in room-b sent afterwards: a room-b stream that wrongly got room-a traffic would
    // have it before the marker.
    const marker1 = next(otherSameSocket, 'data')
    const marker2 = next(otherOtherSocket, 'data')
    senderB.send('marker')
    await Promise.all([marker1, marker2])
    await sleep(50)
    assert.equal(logs[2].map(([d]) => d), ['marker'], 'room-b on the sender\'s socket')
    assert.equal(logs[3].map(([d]) => d), ['marker'], 'room-b on another socket')
    assert.equal(logs[0].map(([d]) => d), ['a-0', 'a-1', 'a-2'], 'room-a does not get room-b\'s marker')
    assert.equal(logs[1].map(([d]) => d), ['a-0', 'a-1', 'a-2'])
  })
})

test('payloads: JSON values, strings and binary arrive as sent; binary as a byte-exact Uint8Array', async () => {
  await withYard(async (_yard, open) => {
    const a = open('room').echo()
    const b = open('room', 2).echo()
    await readyAll(a, b)

    const big = new Uint8Array(randomBytes(256 * 1024))
    const backing = new Uint8Array([9, 9, 1, 2, 3, 9, 9])
    const arrayBuffer = new Uint8Array([0, 255, 128, 7]).buffer
    const sent: unknown[] = [
      { nested: { list: [1, 'two', null, true], n: -1.5 } },
      [1, 2, 3],
      42,
      0,
      true,
      false,
      null,
      'plain text',
      '',
      '{"looks":"like json"}',
      'ünïcødé ✓ 😀',
      new Uint8Array([0, 1, 2, 253, 254, 255]),
      new Uint8Array(0),
      arrayBuffer,
      backing.subarray(2, 5), // a view: only its own bytes travel
      big
    ]
    const got = collect(b, 'data', sent.length, 5000)
    for (const value of sent) a.send(value)
    const received = (await got).map(([d]) => d)

    for (let i = 0; i < sent.length; i++) {
      const want = sent[i]
      const have = received[i]
      if (want instanceof Uint8Array || want instanceof ArrayBuffer) {
        assert.instance(have, Uint8Array, `message ${i} is a Uint8Array`)
        const bytes = want instanceof ArrayBuffer ? new Uint8Array(want) : want
        assert.is((have as Uint8Array).length, bytes.length, `message ${i} length`)
        assert.ok(Buffer.from(have as Uint8Array).equals(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)), `message ${i} bytes`)
      } else {
        assert.equal(have, want, `message ${i}`)
        assert.is(typeof have, typeof want, `message ${i} keeps its type`)
      }
    }
    assert.equal([...(received[14] as Uint8Array)], [1, 2, 3])
    assert.is((received[15] as Uint8Array).length, 256 * 1024)
  })
})

test('ready() resolves once the server acknowledged the stream', async () => {
  await withYard(async (_yard, open) => {
    const e = open('room').echo()
    assert.is(e.id, null, 'no id before the server acknowledged it')
    const opened = next(e, 'open', 1000)
    const started = Date.now()
    await within(e.ready(), 1000, 'ready()')
    assert.ok(Date.now() - started < 1000)
    await opened
    assert.is(e.state, 'open')
    assert.type(e.id, 'string')
    await within(e.ready(), 100, 'ready() again') // resolves again, at once
  })
})

test('close() emits \'close\' and stops delivery to that stream only', async () => {
  await withYard(async (_yard, open) => {
    const channel = open('room')
    const closing = channel.echo()
    const staying = channel.echo() // same channel and socket: must keep receiving
    const sender = open('room', 2).echo()
    await readyAll(closing, staying, sender)
    const atClosing = record(closing)

    const closed = next(closing, 'close', 1000)
    closing.close()
    const [error] = await closed
    assert.is(error, undefined, 'closed on purpose: no error')
    assert.is(closing.state, 'closed')
    try {
      closing.send('late')
      assert.unreachable('send on a closed stream throws')
    } catch (err) {
      assert.instance(err, SignalyardError)
      assert.is((err as SignalyardError).code, 'stream-closed')
    }

    const got = collect(staying, 'data', 3)
    for (let i = 0; i < 3; i++) sender.send(i)
    assert.equal((await got).map(([d]) => d), [0, 1, 2], 'the other stream of the channel still receives')
    await sleep(50)
    assert.equal(atClosing, [], 'nothing after close()')

    // channel.close() closes every stream of the channel.
    const closes = [next(staying, 'close', 1000)]
    channel.close()
    await Promise.all(closes)
    assert.is(staying.state, 'closed')
  })
})

test.run()

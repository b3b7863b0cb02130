// test/kv-names.test.ts — names are well-formed UTF-16 on both brokers (issue 10, "lone
// surrogates"). A lone surrogate has no UTF-8 form: Redis stored `x\uD800`, `x\uDFFF` and
// `x\uFFFD` as one namespace while the in-memory broker kept three. Every name the server keys
// state by (namespace, KV key, peer / signal id, relay token, owner key) must be refused with
// `bad-request` when it holds a lone surrogate, and well-formed names (pairs included) stay
// distinct.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { SignalChannel } from 'signalyard'
import type { Yard } from 'signalyard/server'
import { FrameType, isName, isWellFormed } from '../src/protocol/frames.js'
import { rawClient, type RawClient } from './raw-client.js'
import { startYard } from './helpers.js'

const LONE = ['x\uD800', 'x\uDFFF', '\uDBFFx', 'x\uDC00\uD800', 'a\uD83D']
const KEY = 'k'.repeat(24)

let yard: Yard
const clients: RawClient[] = []
test.before(async () => { yard = await startYard() })
test.after.each(() => { for (const c of clients.splice(0)) c.ws.terminate() })
test.after(async () => { await yard.close() })

test('isWellFormed / isName: lone surrogates are refused, pairs and plain text pass', () => {
  for (const s of LONE) {
    assert.not.ok(isWellFormed(s), JSON.stringify(s))
    assert.not.ok(isName(s), JSON.stringify(s))
  }
  for (const s of ['x', 'x\uFFFD', 'a\uD83D\uDE00b', '\uD83D\uDE00', 'é中文']) assert.ok(isName(s), JSON.stringify(s))
})

test('OPEN with a lone surrogate in ns, id, owner key or relay token → CLOSED bad-request', async () => {
  const c = await rawClient(yard, clients)
  let sid = 0
  const refused = async (meta: object): Promise<void> => {
    const answer = await c.open(++sid, meta)
    assert.is(answer.type, FrameType.Closed, JSON.stringify(meta))
    assert.is(answer.meta?.code, 'bad-request', JSON.stringify(meta))
  }
  for (const bad of LONE) {
    for (const ep of ['echo', 'kv']) await refused({ ep, ns: bad })
    await refused({ ep: 'peers', ns: 'n', id: bad, key: KEY })
    await refused({ ep: 'signal', ns: 'n', id: bad, key: KEY })
    await refused({ ep: 'peers', ns: 'n', id: 'a', key: KEY + bad })
    await refused({ ep: 'relay', ns: 'n', local: bad, remote: 'b' })
    await refused({ ep: 'relay', ns: 'n', local: 'a', remote: bad })
  }
})

test('kv set/delete with a lone surrogate key → ERROR bad-request with the req; the stream stays open', async () => {
  const c = await rawClient(yard, clients)
  assert.is((await c.open(1, { ep: 'kv', ns: 'names' })).type, FrameType.Opened)
  let req = 0
  for (const bad of LONE) {
    for (const op of ['set', 'delete']) {
      c.send(FrameType.Request, 1, { op, req: ++req, key: bad }, op === 'set' ? 1 : undefined)
      const answer = await c.take((f) => f.id === 1 && f.meta?.req === req && (f.type === FrameType.Error || f.type === FrameType.Reply))
      assert.is(answer.type, FrameType.Error, `${op} ${JSON.stringify(bad)}`)
      assert.is(answer.meta?.code, 'bad-request')
    }
  }
  c.send(FrameType.Request, 1, { op: 'set', req: ++req, key: 'ok\uD83D\uDE00' }, 1)
  assert.is((await c.take((f) => f.meta?.req === req)).type, FrameType.Reply)
})

test('well-formed names that look alike stay distinct namespaces and keys', async () => {
  const names = ['x\uFFFD', 'x\uD83D\uDE00', 'x\uD83D\uDE01', 'x']
  const channels = names.map((ns, i) => SignalChannel(ns, { url: `${yard.url}?names=${i}` }))
  try {
    const kvs = channels.map((ch) => ch.kv())
    await Promise.all(kvs.map((kv) => kv.ready()))
    await Promise.all(kvs.map((kv, i) => kv.set(names[i], i)))
    const late = names.map((ns, i) => SignalChannel(ns, { url: `${yard.url}?late=${i}` }))
    channels.push(...late)
    const fresh = late.map((ch) => ch.kv())
    await Promise.all(fresh.map((kv) => kv.ready()))
    fresh.forEach((kv, i) => assert.equal(kv.toJSON(), { [names[i]]: i }, JSON.stringify(names[i])))
    // a lone-surrogate key is refused by the client before anything is sent
    const err = await kvs[0].set('y\uD800', 1).then(() => null, (e: { code: string }) => e)
    assert.is(err?.code, 'bad-request')
  } finally {
    for (const ch of channels) ch.close()
  }
})

test.run()

// test/peerjs-server.test.ts — the PeerJS compat endpoint (SPEC §10, src/server/compat/peerjs.ts)
// with raw frames, as a PeerJS client sends them: the HTTP routes (info, a fresh id, peers only
// with discovery, CORS), OPEN / ID-TAKEN / ERROR at connect, forwarding with a server-set `src`,
// a message queued for a peer that connects a moment later, EXPIRE for one that never does, the
// same token reclaiming its id after a drop (OPEN again, which peerjs-server does not send), all of
// it across two yards on one Redis; authenticate/authorize; and bad input (nothing crashes).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import WebSocket from 'ws'
import { createServer, redisBroker, type Yard } from 'signalyard/server'
import { fetchText, sleep, startYard, until } from './helpers.js'
import { startRedis } from './redis.js'

interface PClient { ws: WebSocket, got: any[], send: (msg: unknown) => void, closed: Promise<number> }

/** A raw PeerJS client at `{yard}/peerjs/peerjs?key&id&token`, as peerjs builds its URL for `path: '/peerjs'`. */
async function peer (yard: Yard, id: string | null, token: string | null, key: string | null = 'peerjs'): Promise<PClient> {
  const q = new URLSearchParams()
  if (key !== null) q.set('key', key)
  if (id !== null) q.set('id', id)
  if (token !== null) q.set('token', token)
  q.set('version', '1.5.4')
  const ws = new WebSocket(`${yard.url.replace(/\/$/, '')}/peerjs/peerjs?${q.toString()}`)
  const got: any[] = []
  ws.on('message', (data) => got.push(JSON.parse(data.toString())))
  const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)))
  await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject) })
  return { ws, got, send: (msg) => ws.send(typeof msg === 'string' ? msg : JSON.stringify(msg)), closed }
}

const types = (c: PClient): string[] => c.got.map((m) => m.type)
const opened = async (c: PClient): Promise<void> => await until(() => types(c).includes('OPEN'), 3000, 'OPEN')
const httpOf = (yard: Yard): string => yard.url.replace('ws', 'http').replace(/\/$/, '')

test('HTTP: GET /peerjs/ describes the server, /peerjs/peerjs/id gives a fresh id, /peers is 401 without discovery; CORS on all', async () => {
  const yard = await startYard()
  const open = await createServer({ port: 0, host: '127.0.0.1', compat: { peerjs: { discovery: true } } })
  try {
    const info = await fetchText(`${httpOf(yard)}/peerjs/`)
    assert.is(info.status, 200)
    assert.ok(typeof JSON.parse(info.body).name === 'string')
    const ids = await Promise.all([1, 2, 3].map(async () => await fetchText(`${httpOf(yard)}/peerjs/peerjs/id?ts=${Date.now()}`)))
    for (const r of ids) assert.match(r.body, /^[0-9a-f-]{36}$/)
    assert.is(new Set(ids.map((r) => r.body)).size, 3, 'each id fresh')
    const cors = await fetch(`${httpOf(yard)}/peerjs/peerjs/id`)
    assert.is(cors.headers.get('access-control-allow-origin'), '*')
    assert.is((await fetchText(`${httpOf(yard)}/peerjs/peerjs/peers`)).status, 401)
    assert.is((await fetchText(`${httpOf(yard)}/peerjs/other-key/id`)).status, 404)
    const a = await peer(open, 'alice', 'tok-a')
    await opened(a)
    const listed = await fetchText(`${httpOf(open)}/peerjs/peerjs/peers`)
    assert.equal(JSON.parse(listed.body), ['alice'])
    a.ws.close()
  } finally {
    await Promise.all([yard.close(), open.close()])
  }
})

test('connect: OPEN; missing parameters or a wrong key → ERROR and close; a held id with another token → ID-TAKEN and close', async () => {
  const yard = await startYard()
  try {
    const a = await peer(yard, 'alice', 'tok-a')
    await opened(a)
    const noId = await peer(yard, null, 'x')
    await noId.closed
    assert.equal(noId.got, [{ type: 'ERROR', payload: { msg: 'No id, token, or key supplied to websocket server' } }])
    const badKey = await peer(yard, 'bob', 'x', 'nope')
    await badKey.closed
    assert.equal(badKey.got, [{ type: 'ERROR', payload: { msg: 'Invalid key provided' } }])
    const thief = await peer(yard, 'alice', 'tok-other')
    await thief.closed
    assert.equal(thief.got, [{ type: 'ID-TAKEN', payload: { msg: 'ID is taken' } }])
    a.send({ type: 'HEARTBEAT' })
    await sleep(50)
    assert.is(a.ws.readyState, WebSocket.OPEN, 'the owner is untouched')
    a.ws.close()
  } finally {
    await yard.close()
  }
})

test('forwarding: OFFER/ANSWER/CANDIDATE/LEAVE reach dst with src set by the server (a client\'s own src is ignored)', async () => {
  const yard = await startYard()
  try {
    const a = await peer(yard, 'alice', 'tok-a')
    const b = await peer(yard, 'bob', 'tok-b')
    await Promise.all([opened(a), opened(b)])
    const offer = { sdp: { type: 'offer', sdp: 'v=0\r\n' }, type: 'data', connectionId: 'dc_1', label: 'x', reliable: true, serialization: 'binary' }
    a.send({ type: 'OFFER', src: 'mallory', dst: 'bob', payload: offer })
    b.send({ type: 'ANSWER', dst: 'alice', payload: { sdp: { type: 'answer', sdp: 'v=0\r\n' }, connectionId: 'dc_1' } })
    a.send({ type: 'CANDIDATE', dst: 'bob', payload: { candidate: { candidate: 'candidate:1 1 udp 1 127.0.0.1 5000 typ host' }, connectionId: 'dc_1' } })
    await until(() => b.got.length === 3 && a.got.length === 2, 2000, 'forwarded')
    assert.equal(b.got[1], { type: 'OFFER', src: 'alice', dst: 'bob', payload: offer })
    assert.equal(b.got[2].type, 'CANDIDATE')
    assert.equal(a.got[1], { type: 'ANSWER', src: 'bob', dst: 'alice', payload: { sdp: { type: 'answer', sdp: 'v=0\r\n' }, connectionId: 'dc_1' } })
    a.send({ type: 'LEAVE', dst: 'bob' })
    await until(() => b.got.length === 4, 2000, 'LEAVE')
    assert.equal(b.got[3], { type: 'LEAVE', src: 'alice', dst: 'bob' })
    for (const x of [a, b]) x.ws.close()
  } finally {
    await yard.close()
  }
})

test('a message for a peer that connects a moment later is delivered in order; one for a peer that never comes is answered EXPIRE once', async () => {
  const yard = await startYard()
  try {
    const a = await peer(yard, 'alice', 'tok-a')
    await opened(a)
    for (let i = 0; i < 3; i++) a.send({ type: 'CANDIDATE', dst: 'late', payload: { n: i } })
    a.send({ type: 'OFFER', dst: 'never', payload: {} })
    a.send({ type: 'CANDIDATE', dst: 'never', payload: {} })
    await sleep(400)
    const late = await peer(yard, 'late', 'tok-l')
    await until(() => late.got.length === 4, 2000, 'the queued messages')
    assert.equal(late.got.map((m) => m.payload?.n ?? m.type), ['OPEN', 0, 1, 2])
    assert.ok(late.got.slice(1).every((m) => m.src === 'alice'))
    const t0 = Date.now()
    await until(() => types(a).includes('EXPIRE'), 7000, 'EXPIRE')
    console.log(`peerjs: EXPIRE ${Date.now() - t0 + 400} ms after the message to a peer that never came`)
    await sleep(500)
    assert.equal(a.got.filter((m) => m.type === 'EXPIRE'), [{ type: 'EXPIRE', src: 'never', dst: 'alice' }], 'once per destination')
    for (const x of [a, late]) x.ws.close()
  } finally {
    await yard.close()
  }
})

test('two yards on one Redis: forwarding both ways, ID-TAKEN across them, the same token reclaiming its id on the other yard after a drop gets OPEN', async () => {
  const redis = await startRedis()
  const brokers = [redisBroker({ url: redis.url }), redisBroker({ url: redis.url })]
  const [y1, y2] = await Promise.all(brokers.map(async (broker) => await createServer({ port: 0, host: '127.0.0.1', broker })))
  try {
    const a = await peer(y1, 'alice', 'tok-a')
    const b = await peer(y2, 'bob', 'tok-b')
    await Promise.all([opened(a), opened(b)])
    a.send({ type: 'OFFER', dst: 'bob', payload: { n: 1 } })
    b.send({ type: 'ANSWER', dst: 'alice', payload: { n: 2 } })
    await until(() => b.got.length === 2 && a.got.length === 2, 3000, 'across yards')
    assert.equal([b.got[1].src, a.got[1].src], ['alice', 'bob'])
    const thief = await peer(y2, 'alice', 'tok-x')
    await thief.closed
    assert.equal(types(thief), ['ID-TAKEN'])
    // alice's socket drops (no LEAVE); within the grace she comes back through the other yard
    a.ws.terminate()
    await sleep(100)
    const again = await peer(y2, 'alice', 'tok-a')
    await opened(again)
    b.send({ type: 'CANDIDATE', dst: 'alice', payload: { n: 3 } })
    await until(() => again.got.length === 2, 3000, 'delivered to the reclaimed id')
    assert.equal(again.got[1], { type: 'CANDIDATE', src: 'bob', dst: 'alice', payload: { n: 3 } })
    // a late message to a peer that connects to the other yard
    b.send({ type: 'OFFER', dst: 'carol', payload: { n: 4 } })
    await sleep(300)
    const carol = await peer(y1, 'carol', 'tok-c')
    await until(() => carol.got.length === 2, 3000, 'queued across yards')
    assert.equal(carol.got[1].src, 'bob')
    for (const x of [again, b, carol]) x.ws.close()
  } finally {
    await y1.close()
    await y2.close()
    await Promise.all(brokers.map(async (b) => await b.close()))
    await redis.stop()
  }
})

test('LEAVE without dst frees the id at once; a reconnect with the same token while the old socket lives takes it over (OPEN, the old one closes)', async () => {
  const yard = await startYard()
  try {
    const a = await peer(yard, 'alice', 'tok-a')
    await opened(a)
    const a2 = await peer(yard, 'alice', 'tok-a')
    await opened(a2)
    await a.closed
    a2.send({ type: 'LEAVE' })
    await a2.closed
    const other = await peer(yard, 'alice', 'another-token')
    await opened(other) // free at once: no grace after a LEAVE
    other.ws.close()
  } finally {
    await yard.close()
  }
})

test('authenticate gets the token query parameter; authorize is asked with the key and endpoint peerjs', async () => {
  const asked: string[] = []
  const yard = await createServer({
    port: 0,
    host: '127.0.0.1',
    authenticate: (_req, token) => { if (token?.startsWith('good') !== true) throw new Error('no'); return token },
    authorize: (identity, ns, ep) => { asked.push(`${String(identity)}:${ns}:${ep}`); return identity !== 'good-but-banned' }
  })
  try {
    const ws = new WebSocket(`${yard.url.replace(/\/$/, '')}/peerjs/peerjs?key=peerjs&id=x&token=bad`)
    ws.on('error', () => {})
    assert.is(await new Promise((resolve) => { ws.once('unexpected-response', (_req, res) => resolve(res.statusCode)); ws.once('open', () => resolve('opened')) }), 401, 'refused at the upgrade')
    ws.terminate()
    const banned = await peer(yard, 'y', 'good-but-banned')
    await banned.closed
    assert.equal(types(banned), ['ERROR'])
    const ok = await peer(yard, 'z', 'good-1')
    await opened(ok)
    assert.equal(asked, ['good-but-banned:peerjs:peerjs', 'good-1:peerjs:peerjs'])
    ok.ws.close()
  } finally {
    await yard.close()
  }
})

test('bad input: invalid JSON, unknown types, a bad dst, a frame over 64 KiB: nothing crashes; too many bad frames close the socket (1008)', async () => {
  const yard = await startYard()
  try {
    const a = await peer(yard, 'alice', 'tok-a')
    const b = await peer(yard, 'bob', 'tok-b')
    await Promise.all([opened(a), opened(b)])
    a.send('{nope')
    a.send({ type: 'DANCE', dst: 'bob' })
    a.send({ type: 'OFFER', dst: 42 })
    a.send({ type: 'OFFER' })
    a.send(`{"type":"OFFER","dst":"bob","payload":${'['.repeat(10_000)}${']'.repeat(10_000)}}`) // too deep to re-encode: dropped
    a.send({ type: 'OFFER', dst: 'bob', payload: { ok: true } })
    await until(() => b.got.length === 2, 2000, 'the good one still forwarded')
    assert.equal(b.got[1].payload, { ok: true })
    for (let i = 0; i < 120; i++) a.send('{')
    assert.is(await a.closed, 1008)
    const big = await peer(yard, 'carol', 'tok-c')
    await opened(big)
    big.send({ type: 'OFFER', dst: 'bob', payload: 'x'.repeat(70 * 1024) })
    assert.is(await big.closed, 1009)
    b.send({ type: 'HEARTBEAT' })
    await sleep(50)
    assert.is(b.ws.readyState, WebSocket.OPEN)
    b.ws.close()
  } finally {
    await yard.close()
  }
})

test('messages waiting for an absent peer are bounded per connection (256) and count in the server\'s backlog budget, given back when they expire or their sender leaves', async () => {
  const yard = await startYard()
  const used = async (): Promise<number> => Number(/signalyard_budget_used\{budget="backlog"\} (\d+)/.exec((await fetchText(`${httpOf(yard)}/metrics`)).body)?.[1] ?? NaN)
  try {
    const a = await peer(yard, 'alice', 'tok-a')
    await opened(a)
    const payload = { sdp: 'x'.repeat(1000) }
    for (let i = 0; i < 300; i++) a.send({ type: 'CANDIDATE', dst: 'nobody', payload })
    await until(async () => (await used()) > 256 * 1000, 2000, 'the waiting messages are counted')
    const held = await used()
    assert.ok(held < 300 * 1000, `at most 256 waiting (${held} bytes held)`)
    assert.match((await fetchText(`${httpOf(yard)}/metrics`)).body, /signalyard_refusals_total\{code="queue-full"\} 44/)
    a.ws.close()
    await until(async () => (await used()) === 0, 2000, 'given back when the sender left')
  } finally {
    await yard.close()
  }
})

test.run()

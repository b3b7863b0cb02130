// test/y-webrtc-server.test.ts — the y-webrtc compat endpoint (SPEC §10, src/server/compat/
// y-webrtc.ts) with raw WebSocket frames, as y-webrtc's client sends them: subscribe, publish to
// every subscriber (the sender too) with `clients`, unsubscribe, ping/pong, the plain-HTTP answer,
// topics shared by two yards on one Redis, `authenticate` with a `token` query parameter and
// `authorize` per topic, /metrics, and bad input (invalid JSON — which crashes y-webrtc's own
// server —, unknown types, bad topics, deep JSON, oversized frames, floods, a client that never
// reads what it is sent): a coded error frame, nothing crashes, nothing is left behind.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import WebSocket from 'ws'
import { createServer, redisBroker, type Yard } from 'signalyard/server'
import { fetchText, sleep, startYard, until } from './helpers.js'
import { startRedis } from './redis.js'

/** A raw y-webrtc client: JSON text frames out, every frame it got kept in order. */
interface YClient { ws: WebSocket, got: any[], send: (msg: unknown) => void, closed: Promise<{ code: number, reason: string }> }

async function yClient (yard: Yard | string, query = ''): Promise<YClient> {
  const base = typeof yard === 'string' ? yard : yard.url.replace(/\/$/, '')
  const ws = new WebSocket(`${base}/y-webrtc${query}`)
  const got: any[] = []
  ws.on('message', (data, isBinary) => { got.push(isBinary ? { binary: true } : JSON.parse(data.toString())) })
  const closed = new Promise<{ code: number, reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })))
  await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject) })
  return { ws, got, send: (msg) => ws.send(typeof msg === 'string' ? msg : JSON.stringify(msg)), closed }
}

const publishes = (c: YClient): any[] => c.got.filter((m) => m.type === 'publish')
const errors = (c: YClient): string[] => c.got.filter((m) => m.type === 'error').map((m) => m.code)

test('subscribe, publish to every subscriber (the sender too) with clients, unsubscribe, ping → pong; text frames', async () => {
  const yard = await startYard()
  try {
    const a = await yClient(yard)
    const b = await yClient(yard)
    const c = await yClient(yard)
    a.send({ type: 'subscribe', topics: ['room-1', 'room-2'] })
    b.send({ type: 'subscribe', topics: ['room-1'] })
    c.send({ type: 'subscribe', topics: ['room-2'] })
    await sleep(50)
    const data = { type: 'announce', from: 'peer-a', nested: { sdp: 'v=0\r\n…', n: [1, 2, 3] } }
    a.send({ type: 'publish', topic: 'room-1', data })
    await until(() => publishes(a).length === 1 && publishes(b).length === 1, 2000, 'room-1 delivered')
    assert.equal(publishes(a)[0], { type: 'publish', topic: 'room-1', data, clients: 2 })
    assert.equal(publishes(b)[0], publishes(a)[0])
    assert.equal(publishes(c), [], 'not subscribed to room-1')
    b.send({ type: 'publish', topic: 'room-2', data: 'x' }) // publishing needs no subscription
    await until(() => publishes(c).length === 1 && publishes(a).length === 2, 2000, 'room-2 delivered')
    assert.equal(publishes(b).length, 1)
    a.send({ type: 'unsubscribe', topics: ['room-1'] })
    a.send({ type: 'ping' })
    await until(() => a.got.some((m) => m.type === 'pong'), 2000, 'pong')
    b.send({ type: 'publish', topic: 'room-1', data: 'after' })
    await until(() => publishes(b).length === 2, 2000, 'b still gets room-1')
    await sleep(50)
    assert.is(publishes(a).length, 2, 'a unsubscribed from room-1')
    assert.ok(a.got.every((m) => m.binary !== true) && b.got.every((m) => m.binary !== true), 'every frame is text, as y-webrtc expects')
    for (const x of [a, b, c]) x.ws.close()
  } finally {
    await yard.close()
  }
})

test('plain HTTP on the path answers 200 okay, as y-webrtc\'s server does; compat.yWebrtc moves or switches the endpoint', async () => {
  const yard = await startYard()
  const moved = await createServer({ port: 0, host: '127.0.0.1', compat: { yWebrtc: { path: '/signal/yjs' } } })
  const off = await createServer({ port: 0, host: '127.0.0.1', compat: { yWebrtc: false } })
  try {
    const http = yard.url.replace('ws', 'http').replace(/\/$/, '')
    const page = await fetchText(`${http}/y-webrtc`)
    assert.equal([page.status, page.body], [200, 'okay'])
    const ws = new WebSocket(`${moved.url.replace(/\/$/, '')}/signal/yjs`)
    const pong = new Promise((resolve) => ws.on('message', (d) => resolve(JSON.parse(d.toString()))))
    await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject) })
    ws.send(JSON.stringify({ type: 'ping' }))
    assert.equal(await pong, { type: 'pong' }, 'the moved endpoint speaks y-webrtc')
    ws.close()
    for (const y of [moved, off]) {
      const refused = await yClient(y).then(() => false, () => true)
      assert.ok(refused, 'no y-webrtc endpoint at /y-webrtc')
    }
  } finally {
    await Promise.all([yard.close(), moved.close(), off.close()])
  }
})

test('two yards on one Redis: subscribers on either receive a publish made on the other, once each', async () => {
  const redis = await startRedis()
  const brokers = [redisBroker({ url: redis.url }), redisBroker({ url: redis.url })]
  const yards = await Promise.all(brokers.map(async (broker) => await createServer({ port: 0, host: '127.0.0.1', broker })))
  try {
    const a = await yClient(yards[0])
    const b = await yClient(yards[1])
    const b2 = await yClient(yards[1])
    for (const x of [a, b, b2]) x.send({ type: 'subscribe', topics: ['doc-7'] })
    await sleep(200) // Redis subscriptions settle
    a.send({ type: 'publish', topic: 'doc-7', data: { from: 'a' } })
    b.send({ type: 'publish', topic: 'doc-7', data: { from: 'b' } })
    await until(() => [a, b, b2].every((x) => publishes(x).length === 2), 3000, 'both publishes everywhere')
    await sleep(100)
    for (const x of [a, b, b2]) {
      assert.equal(publishes(x).map((m) => m.data.from).sort(), ['a', 'b'], 'each publish once')
    }
    for (const x of [a, b, b2]) x.ws.close()
    await until(async () => (await redis.channels('*y-webrtc*')).length === 0, 3000, 'no Redis subscription left once everyone left')
  } finally {
    await Promise.all(yards.map(async (y) => await y.close()))
    await Promise.all(brokers.map(async (b) => await b.close()))
    await redis.stop()
  }
})

test('authenticate gets the token query parameter; authorize is asked per topic with endpoint y-webrtc', async () => {
  const asked: string[] = []
  const yard = await createServer({
    port: 0,
    host: '127.0.0.1',
    authenticate: (_req, token) => { if (token !== 'let-me-in') throw new Error('no'); return { user: 'ann' } },
    authorize: async (identity, ns, ep) => {
      asked.push(`${(identity as { user: string }).user}:${ns}:${ep}`)
      await sleep(5)
      return ns !== 'secret'
    }
  })
  try {
    // refused at the upgrade (HTTP 401), which y-webrtc's client backs off from; a socket that
    // opened and was then closed would make it reconnect at once, over and over
    for (const query of ['?token=wrong', '']) {
      const ws = new WebSocket(`${yard.url.replace(/\/$/, '')}/y-webrtc${query}`)
      ws.on('error', () => {})
      const status = await new Promise((resolve) => { ws.once('unexpected-response', (_req, res) => resolve(res.statusCode)); ws.once('open', () => resolve('opened')) })
      assert.is(status, 401, `refused with 401 (${query || 'no token'})`)
      ws.terminate()
    }
    const a = await yClient(yard, '?token=let-me-in')
    a.send({ type: 'subscribe', topics: ['open', 'secret'] })
    a.send({ type: 'publish', topic: 'open', data: 1 }) // waits for the authorize answers, in order
    a.send({ type: 'publish', topic: 'secret', data: 2 })
    await until(() => publishes(a).length === 1 && errors(a).length === 2, 2000, 'one delivery, two refusals')
    assert.equal(publishes(a)[0].data, 1)
    assert.equal(errors(a), ['forbidden', 'forbidden'])
    assert.equal([...new Set(asked)].sort(), ['ann:open:y-webrtc', 'ann:secret:y-webrtc'])
    a.ws.close()
  } finally {
    await yard.close()
  }
})

test('a subscribe and a publish sent together: the sender gets its own copy every time (the publish waits for the broker subscription; y-webrtc sends its announce right behind its subscribe)', async () => {
  const yard = await startYard()
  try {
    for (let i = 0; i < 30; i++) {
      const c = await yClient(yard)
      c.ws.send(JSON.stringify({ type: 'subscribe', topics: [`fresh-${i}`] }))
      c.ws.send(JSON.stringify({ type: 'publish', topic: `fresh-${i}`, data: i }))
      await until(() => publishes(c).length === 1, 2000, `round ${i}: the sender's own copy`)
      c.ws.close()
    }
  } finally {
    await yard.close()
  }
})

test('bad input: invalid JSON, unknown types, bad topics, deep JSON get a coded error frame and the connection goes on; too many close it (1008); nothing crashes', async () => {
  const yard = await startYard()
  try {
    const a = await yClient(yard)
    a.send('{not json')
    a.send('[1,2]')
    a.send({ type: 'dance' })
    a.send({ type: 'subscribe', topics: 'room' })
    a.send({ type: 'subscribe', topics: [42] })
    a.send({ type: 'subscribe', topics: ['x'.repeat(257)] })
    a.send({ type: 'publish', data: 'no topic' })
    a.send(`{"type":"publish","topic":"deep","data":${'['.repeat(20_000)}${']'.repeat(20_000)}}`)
    a.ws.send(Buffer.from([0xff, 0xfe]), { binary: true })
    a.send({ type: 'ping' })
    await until(() => a.got.some((m) => m.type === 'pong'), 2000, 'still served')
    assert.equal(errors(a), ['bad-frame', 'bad-frame', 'unknown-frame', 'bad-request', 'bad-request', 'bad-request', 'bad-request', 'bad-frame', 'bad-frame'])
    // A flood of bad frames: past maxBadFrames the socket closes with 1008.
    for (let i = 0; i < 120; i++) a.send('{')
    assert.equal(await a.closed, { code: 1008, reason: 'too-many-bad-frames' })
    // The server is fine.
    const b = await yClient(yard)
    b.send({ type: 'ping' })
    await until(() => b.got.some((m) => m.type === 'pong'), 2000, 'a new client is served')
    b.ws.close()
  } finally {
    await yard.close()
  }
})

test('limits: a frame over peers.maxSignal closes the socket (1009); more topics than maxNamespaces are refused; a flood is rate-limited; a client that never reads is shed', async () => {
  const yard = await createServer({ port: 0, host: '127.0.0.1', limits: { maxNamespaces: 4, messagesPerSecond: 200, messageBurst: 50, maxOutbound: 256 * 1024 } })
  try {
    const big = await yClient(yard)
    big.send({ type: 'publish', topic: 't', data: 'x'.repeat(70 * 1024) })
    assert.is((await big.closed).code, 1009)

    const many = await yClient(yard)
    many.send({ type: 'subscribe', topics: ['1', '2', '3', '4', '5'] })
    many.send({ type: 'subscribe', topics: ['1', '2', '3', '4'] })
    many.send({ type: 'subscribe', topics: ['5'] })
    many.send({ type: 'ping' })
    await until(() => many.got.some((m) => m.type === 'pong'), 2000, 'pong')
    assert.equal(errors(many), ['bad-request', 'too-many-namespaces'])

    const flood = await yClient(yard)
    for (let i = 0; i < 300; i++) flood.send({ type: 'ping' })
    await until(() => errors(flood).includes('rate-limited'), 2000, 'rate-limited')
    flood.ws.close()

    // A subscriber that never reads: publishes pile up for it until maxOutbound, then it is shed.
    const deaf = await yClient(yard)
    deaf.send({ type: 'subscribe', topics: ['hose'] })
    await sleep(50)
    deaf.ws.pause()
    ;(deaf.ws as unknown as { _socket: { pause: () => void } })._socket.pause()
    const talker = await yClient(yard)
    const chunk = 'y'.repeat(30 * 1024)
    const http = yard.url.replace('ws', 'http').replace(/\/$/, '')
    const shed = async (): Promise<boolean> => /signalyard_refusals_total\{code="slow-consumer"\} 1/.test((await fetchText(`${http}/metrics`)).body)
    const start = Date.now()
    let sent = 0
    while (!(await shed()) && Date.now() - start < 8000) {
      for (let i = 0; i < 10; i++) talker.send({ type: 'publish', topic: 'hose', data: chunk })
      sent += 10
      await sleep(60)
    }
    assert.ok(await shed(), `the deaf subscriber was shed as a slow consumer (after ${sent} publishes of 30 KiB)`)
    ;(deaf.ws as unknown as { _socket: { resume: () => void } })._socket.resume()
    await deaf.closed // the server closed it (1008, or cut off a second later if the close could not be read)
    talker.ws.close()
    many.ws.close()
  } finally {
    await yard.close()
  }
})

test('/metrics counts y-webrtc frames and bytes under their own endpoint; /healthz counts the connections', async () => {
  const yard = await startYard()
  try {
    const a = await yClient(yard)
    a.send({ type: 'subscribe', topics: ['m'] })
    a.send({ type: 'publish', topic: 'm', data: 'hello' })
    await until(() => publishes(a).length === 1, 2000, 'delivered')
    const http = yard.url.replace('ws', 'http').replace(/\/$/, '')
    const metrics = (await fetchText(`${http}/metrics`)).body
    assert.match(metrics, /signalyard_frames_in_total\{endpoint="y-webrtc"\} 2/)
    assert.match(metrics, /signalyard_frames_out_total\{endpoint="y-webrtc"\} 1/)
    assert.is(JSON.parse((await fetchText(`${http}/healthz`)).body).connections, 1)
    a.ws.close()
  } finally {
    await yard.close()
  }
})

test.run()

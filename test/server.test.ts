// test/server.test.ts — embedding the server: createServer() on its own port or attached to an
// app's existing http.Server at a path, what it answers over plain HTTP (/healthz, 426, 404),
// upgrades it refuses, close() (clients get 1001; an attached app keeps listening; unresponsive
// clients are cut off), the default port from env PORT, limits validation, and the exports of
// 'signalyard/server'. Everything on 127.0.0.1.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createServer as createHttpServer, type Server } from 'node:http'
import { Socket, type AddressInfo } from 'node:net'
import WebSocket, { WebSocketServer } from 'ws'
import { SignalChannel } from 'signalyard'
import { createServer, memoryBroker, type Yard } from 'signalyard/server'
import { fetchText, freePort, next, startYard, until } from './helpers.js'

/** A raw client speaking signalyard.2 (no reconnect): shows close codes as they are. */
async function rawClient (url: string): Promise<WebSocket> {
  const ws = new WebSocket(url, 'signalyard.2')
  await next(ws as any, 'open')
  return ws
}

/** The HTTP status a WebSocket upgrade is refused with, 0 if the connection just failed (fails if accepted). */
async function refusedWith (url: string, protocols?: string | string[]): Promise<{ status: number, body: string }> {
  const ws = new WebSocket(url, protocols)
  const failed = new Promise<null>((resolve) => ws.on('error', () => resolve(null)))
  try {
    const got = await Promise.race([
      next(ws as any, 'unexpected-response'),
      failed,
      next(ws as any, 'open').then(() => { throw new Error(`the upgrade at ${url} was accepted`) })
    ])
    if (got === null) return { status: 0, body: '' }
    const res = got[1]
    let body = ''
    res.setEncoding('utf8')
    res.on('data', (d: string) => { body += d })
    await new Promise((resolve) => { res.on('end', resolve); res.on('close', resolve) })
    return { status: res.statusCode, body }
  } finally {
    ws.terminate()
  }
}

/** An app's own HTTP server: answers /hello, 404 elsewhere, on 127.0.0.1 and a free port. */
async function appServer (): Promise<Server> {
  const server = createHttpServer((req, res) => {
    if (req.url === '/hello') res.writeHead(200, { 'content-type': 'text/plain' }).end('hello from the app')
    else res.writeHead(404).end()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return server
}

function closeHttp (server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve()
    server.close(() => resolve())
    server.closeAllConnections()
  })
}

/** echo, kv and relay each work through `url` (one channel per side, closed afterwards). */
async function endpointsWork (url: string, ns: string): Promise<void> {
  const a = SignalChannel(ns, { url })
  const b = SignalChannel(ns, { url })
  try {
    // echo: b hears what a sends.
    const echoA = a.echo()
    const echoB = b.echo()
    await Promise.all([echoA.ready(), echoB.ready()])
    const heard = next(echoB, 'data')
    echoA.send({ hi: ns })
    const [data, info] = await heard
    assert.equal(data, { hi: ns })
    assert.is(info.from, echoA.id)

    // kv: b's replica sees a's write.
    const kvA = a.kv()
    const kvB = b.kv()
    await Promise.all([kvA.ready(), kvB.ready()])
    const updated = next(kvB, 'update')
    await kvA.set('k', 'v')
    assert.equal(await updated, ['k', 'v'])
    assert.is(kvB.get('k'), 'v')

    // relay: a pair by tokens carries a message one way.
    const r1 = a.relay({ local: 'x', remote: 'y' })
    const r2 = b.relay({ local: 'y', remote: 'x' })
    const relayed = next(r2, 'data')
    r1.send(new Uint8Array([1, 2, 3]))
    assert.equal([...(await relayed)[0]], [1, 2, 3])
  } finally {
    a.close()
    b.close()
  }
}

test('createServer({ port: 0, host }) listens and says where: yard.url and yard.port', async () => {
  const yard = await createServer({ port: 0, host: '127.0.0.1' })
  try {
    const m = /^ws:\/\/127\.0\.0\.1:(\d+)\/$/.exec(yard.url)
    assert.ok(m !== null, `url format: ${yard.url}`)
    assert.is(Number(m[1]), yard.port)
    assert.is((yard.server.address() as AddressInfo).port, yard.port)
    assert.ok(yard.port > 0)
    await endpointsWork(yard.url, 'standalone')
  } finally {
    await yard.close()
  }
})

test('with no host, the URL still names loopback (listening on all interfaces)', async () => {
  const yard = await createServer({ port: 0 })
  try {
    assert.is(yard.url, `ws://127.0.0.1:${yard.port}/`)
    const ws = await rawClient(yard.url)
    ws.close()
  } finally {
    await yard.close()
  }
})

test('GET /healthz: 200 JSON { status, connections, namespaces }, counting live clients', async () => {
  const yard = await startYard()
  const healthz = async (): Promise<unknown> => {
    const res = await fetchText(`http://127.0.0.1:${yard.port}/healthz`)
    assert.is(res.status, 200)
    assert.match(res.type, 'application/json')
    return JSON.parse(res.body)
  }
  try {
    assert.equal(await healthz(), { status: 'ok', connections: 0, namespaces: 0 })
    const a = SignalChannel('health-a', { url: yard.url })
    const b = SignalChannel('health-b', { url: yard.url })
    try {
      await Promise.all([a.echo().ready(), a.kv().ready(), b.echo().ready()])
      // Two channels on one URL share one socket: one connection, two namespaces.
      assert.equal(await healthz(), { status: 'ok', connections: 1, namespaces: 2 })
      assert.equal(yard.health(), { status: 'ok', connections: 1, namespaces: 2 })
      b.close()
      await until(() => yard.health().namespaces === 1, 1000, 'namespace released')
      assert.equal(await healthz(), { status: 'ok', connections: 1, namespaces: 1 })
    } finally {
      a.close()
      b.close()
    }
    await until(() => yard.health().connections === 0, 1000, 'connection gone')
    assert.equal(await healthz(), { status: 'ok', connections: 0, namespaces: 0 })
  } finally {
    await yard.close()
  }
})

test('GET on the WebSocket path answers 426 with a hint; other paths 404', async () => {
  const yard = await startYard()
  try {
    const root = await fetchText(`http://127.0.0.1:${yard.port}/`)
    assert.is(root.status, 426)
    assert.match(root.body, 'signalyard.2')
    assert.match(root.body, /WebSocket/i)
    const other = await fetchText(`http://127.0.0.1:${yard.port}/nope`)
    assert.is(other.status, 404)
  } finally {
    await yard.close()
  }
})

test('an upgrade without subprotocol signalyard.2 is refused with HTTP 400', async () => {
  const yard = await startYard()
  try {
    const none = await refusedWith(yard.url)
    assert.is(none.status, 400)
    assert.match(none.body, 'signalyard.2')
    assert.is((await refusedWith(yard.url, 'signalyard.1')).status, 400, 'the previous version is refused')
    assert.is((await refusedWith(yard.url, ['chat', 'superchat'])).status, 400)
    // Offered among others, it is accepted and chosen.
    const ws = new WebSocket(yard.url, ['chat', 'signalyard.2'])
    await next(ws as any, 'open')
    assert.is(ws.protocol, 'signalyard.2')
    ws.close()
    assert.is(yard.health().connections <= 1, true)
  } finally {
    await yard.close()
  }
})

test('an upgrade on another path than the yard\'s is refused with 404', async () => {
  const yard = await startYard({ path: '/yard' })
  try {
    assert.is(yard.url, `ws://127.0.0.1:${yard.port}/yard`)
    assert.is((await refusedWith(`ws://127.0.0.1:${yard.port}/`, 'signalyard.2')).status, 404)
    assert.is((await refusedWith(`ws://127.0.0.1:${yard.port}/yardx`, 'signalyard.2')).status, 404)
    const ws = await rawClient(yard.url)
    ws.close()
  } finally {
    await yard.close()
  }
})

test('attached to an app\'s http.Server at /yard: endpoints work, the app keeps its routes', async () => {
  const app = await appServer()
  const port = (app.address() as AddressInfo).port
  let yard: Yard | null = null
  try {
    yard = await createServer({ server: app, path: '/yard' })
    assert.is(yard.server, app)
    assert.is(yard.port, port)
    assert.is(yard.url, `ws://127.0.0.1:${port}/yard`)
    await endpointsWork(`ws://127.0.0.1:${port}/yard`, 'attached')

    const hello = await fetchText(`http://127.0.0.1:${port}/hello`)
    assert.equal([hello.status, hello.body], [200, 'hello from the app'])
    assert.is((await fetchText(`http://127.0.0.1:${port}/elsewhere`)).status, 404, 'the app answers its own 404s')

    assert.is((await refusedWith(`ws://127.0.0.1:${port}/other`, 'signalyard.2')).status, 404, 'upgrade elsewhere refused')
    assert.is((await refusedWith(`ws://127.0.0.1:${port}/yard`)).status, 400, 'no subprotocol refused')
  } finally {
    await yard?.close()
    await closeHttp(app)
  }
})

test('attached: yard.health() counts clients; yard.close() sends 1001 and leaves the app listening', async () => {
  const app = await appServer()
  const port = (app.address() as AddressInfo).port
  const yard = await createServer({ server: app, path: '/yard' })
  const channel = SignalChannel('attached-close', { url: `ws://127.0.0.1:${port}/yard`, reconnect: { minDelay: 50, maxDelay: 100 } })
  try {
    assert.equal(yard.health(), { status: 'ok', connections: 0, namespaces: 0 })
    await channel.echo().ready()
    const raw = await rawClient(`ws://127.0.0.1:${port}/yard`)
    assert.equal(yard.health(), { status: 'ok', connections: 2, namespaces: 1 })

    const closed = next(raw as any, 'close')
    const reconnecting = next(channel, 'state')
    const started = Date.now()
    await yard.close()
    assert.ok(Date.now() - started < 1500, `close() took ${Date.now() - started} ms`)
    assert.is((await closed)[0], 1001)
    assert.is((await reconnecting)[0], 'reconnecting')

    assert.ok(app.listening, 'the app\'s server is still listening')
    const hello = await fetchText(`http://127.0.0.1:${port}/hello`)
    assert.is(hello.status, 200)
    // The yard is gone from the app's server: no more upgrades at /yard.
    const after = await refusedWith(`ws://127.0.0.1:${port}/yard`, 'signalyard.2')
    assert.ok(after.status === 0 || after.status >= 400, `not upgraded after close (status ${after.status})`)
    assert.is(app.listenerCount('upgrade'), 0, 'close() removed its upgrade listener')
  } finally {
    channel.close()
    await yard.close()
    await closeHttp(app)
  }
})

test('attached next to the app\'s own WebSocket server on another path: both work', async () => {
  const app = await appServer()
  const port = (app.address() as AddressInfo).port
  const appWss = new WebSocketServer({ noServer: true })
  appWss.on('connection', (ws) => ws.send('app socket'))
  app.on('upgrade', (req, socket, head) => {
    if (req.url === '/app') appWss.handleUpgrade(req, socket, head, (ws) => appWss.emit('connection', ws, req))
  })
  const yard = await createServer({ server: app, path: '/yard' })
  try {
    const appClient = new WebSocket(`ws://127.0.0.1:${port}/app`)
    const [message] = await next(appClient as any, 'message')
    assert.is(String(message), 'app socket')
    appClient.close()
    await endpointsWork(`ws://127.0.0.1:${port}/yard`, 'beside-app-ws')
  } finally {
    await yard.close()
    appWss.close()
    await closeHttp(app)
  }
})

test('attached before the app\'s server listens: url and port are right once it does', async () => {
  const app = createHttpServer((_req, res) => res.end('app'))
  const yard = await createServer({ server: app, path: '/late' })
  try {
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve))
    const port = (app.address() as AddressInfo).port
    assert.is(yard.port, port)
    assert.is(yard.url, `ws://127.0.0.1:${port}/late`)
    const ws = await rawClient(yard.url)
    ws.close()
  } finally {
    await yard.close()
    await closeHttp(app)
  }
})

test('standalone close(): clients get 1001, the port is released, close() is idempotent', async () => {
  const yard = await startYard()
  const port = yard.port
  const raw = await rawClient(yard.url)
  const closed = next(raw as any, 'close')
  const first = yard.close()
  assert.is(yard.close(), first, 'the same promise')
  await first
  const [code, reason] = await closed
  assert.is(code, 1001)
  assert.is(String(reason), 'server-closing')
  assert.not.ok(yard.server.listening)
  // Nothing answers on the port any more.
  let refused = false
  try { await fetchText(`http://127.0.0.1:${port}/healthz`) } catch { refused = true }
  assert.ok(refused, 'connection refused after close')
})

test('close() cuts off a client that never answers the close frame (within about 1 s)', async () => {
  const yard = await startYard()
  const socket = new Socket()
  try {
    await new Promise<void>((resolve, reject) => socket.connect(yard.port, '127.0.0.1', resolve).once('error', reject))
    let received = ''
    socket.on('data', (d) => { received += d.toString('latin1') })
    const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()))
    socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Key: c2lnbmFseWFyZCB0ZXN0IQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: signalyard.2\r\n\r\n')
    await until(() => received.startsWith('HTTP/1.1 101'), 2000, 'upgraded')
    const started = Date.now()
    await yard.close()
    const took = Date.now() - started
    assert.ok(took < 2000, `close() resolved in ${took} ms`)
    await ended
  } finally {
    socket.destroy()
    await yard.close()
  }
})

test('a broker passed in outlives yard.close(): a second yard on it still has the KV state', async () => {
  const broker = memoryBroker()
  const first = await startYard({ broker })
  const a = SignalChannel('shared-broker', { url: first.url })
  try {
    const kv = a.kv()
    await kv.set('kept', 42, { ttl: 60_000 })
  } finally {
    a.close()
    await first.close()
  }
  const second = await startYard({ broker })
  const b = SignalChannel('shared-broker', { url: second.url })
  try {
    const kv = b.kv()
    await kv.ready()
    assert.is(kv.get('kept'), 42)
  } finally {
    b.close()
    await second.close()
    await broker.close()
  }
})

test('the default port comes from env PORT when no port is given', async () => {
  const port = await freePort()
  const saved = process.env.PORT
  process.env.PORT = String(port)
  let yard: Yard | null = null
  try {
    yard = await createServer({ host: '127.0.0.1' })
    assert.is(yard.port, port)
    assert.is(yard.url, `ws://127.0.0.1:${port}/`)
    // An explicit port wins over PORT.
    const other = await createServer({ host: '127.0.0.1', port: 0 })
    assert.is.not(other.port, port)
    await other.close()
    // A PORT that is not a port number is a TypeError, not a silent default.
    process.env.PORT = 'eighty'
    let error: unknown = null
    try { await createServer({ host: '127.0.0.1' }) } catch (err) { error = err }
    assert.instance(error, TypeError)
    assert.match((error as Error).message, 'PORT')
  } finally {
    if (saved === undefined) delete process.env.PORT
    else process.env.PORT = saved
    await yard?.close()
  }
})

test('limits: invalid values reject with a TypeError naming the limit; valid ones merge over DEFAULTS', async () => {
  const { DEFAULTS } = await import('signalyard/server')
  for (const limits of [{ maxFrame: -1 }, { maxFrame: 0 }, { maxStreams: Number.NaN }, { kv: { defaultTtl: -5 } }, { relay: { pendingTimeout: 'soon' as unknown as number } }]) {
    let error: unknown = null
    try {
      const yard = await createServer({ port: 0, host: '127.0.0.1', limits })
      await yard.close()
    } catch (err) {
      error = err
    }
    assert.instance(error, TypeError, `rejects ${JSON.stringify(limits)}`)
    const name = Object.keys(limits)[0]
    assert.match((error as Error).message, name)
  }
  const yard = await startYard({ limits: { maxStreams: 7, kv: { maxValue: 100 } } })
  try {
    assert.is(yard.limits.maxStreams, 7)
    assert.is(yard.limits.kv.maxValue, 100)
    assert.is(yard.limits.kv.defaultTtl, DEFAULTS.kv.defaultTtl, 'unset kv limits keep their defaults')
    assert.is(yard.limits.maxFrame, DEFAULTS.maxFrame)
    assert.is(DEFAULTS.kv.maxValue, 64 * 1024, 'DEFAULTS untouched by the option')
  } finally {
    await yard.close()
  }
})

test("'signalyard/server' exports createServer, memoryBroker, DEFAULTS (frozen), SignalyardError", async () => {
  const server = await import('signalyard/server')
  assert.type(server.createServer, 'function')
  assert.type(server.memoryBroker, 'function')
  assert.type(server.DEFAULTS, 'object')
  assert.ok(Object.isFrozen(server.DEFAULTS), 'DEFAULTS is frozen')
  assert.ok(Object.isFrozen(server.DEFAULTS.kv), 'DEFAULTS.kv is frozen')
  for (const key of ['maxFrame', 'maxStreams', 'maxNamespaces']) assert.type((server.DEFAULTS as any)[key], 'number')
  assert.type(server.SignalyardError, 'function')
  const client = await import('signalyard')
  assert.is(server.SignalyardError, client.SignalyardError, 'one SignalyardError class for client and server')
  const err = new server.SignalyardError('forbidden', 'no')
  assert.instance(err, Error)
  assert.is(err.code, 'forbidden')
})

test.run()

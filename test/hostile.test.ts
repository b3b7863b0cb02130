// test/hostile.test.ts — the server against a stranger who means harm (issue 10): every input path
// a client reaches before and after authentication, each bounded in bytes per connection and
// server-wide, each refusal coded, and the server serving everyone else throughout. Runs on both
// brokers (npm test lists it as `hostile.test.ts [redis]` too).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { connect, type Socket } from 'node:net'
import WebSocket from 'ws'
import { SignalChannel } from 'signalyard'
import type { ServerOptions, Yard } from 'signalyard/server'
import { Kind, writeFrame, type RawFrame } from '../src/protocol/codec.js'
import { FrameType, SUBPROTOCOL } from '../src/protocol/frames.js'
import { fetchText, startYard, until, within } from './helpers.js'
import { rawClient, type RawClient } from './raw-client.js'

const yards: Yard[] = []
const clients: RawClient[] = []
const sockets: Array<WebSocket | Socket> = []

async function yard (options: ServerOptions = {}): Promise<Yard> {
  const y = await startYard(options)
  yards.push(y)
  return y
}

test.after.each(async () => {
  for (const c of clients.splice(0)) c.ws.terminate()
  for (const s of sockets.splice(0)) s instanceof WebSocket ? s.terminate() : s.destroy()
  await Promise.all(yards.splice(0).map((y) => y.close()))
})

/** An echo stream opened on a raw client answers a DATA frame with its EVENT (the connection serves). */
async function echoes (c: RawClient, sid: number): Promise<void> {
  const opened = await c.open(sid, { ep: 'echo', ns: `alive-${sid}` })
  assert.is(opened.type, FrameType.Opened, `echo ${sid} opened: ${JSON.stringify(opened.meta)}`)
  c.send(FrameType.Data, sid, null, `ping ${sid}`)
  const ev = await c.take((f) => f.type === FrameType.Event && f.meta?.from === opened.meta?.id, 2000, `echo of ping ${sid}`)
  assert.is(new TextDecoder().decode(ev.payload), `ping ${sid}`)
}

/** A real client on the same server still gets its echo back. */
async function goodClientServed (y: Yard): Promise<void> {
  const channel = SignalChannel('good', { url: y.url })
  try {
    const echo = channel.echo()
    const got = new Promise((resolve) => echo.once('data', resolve))
    await within(echo.ready(), 3000, 'the good client\'s echo stream')
    echo.send('still here')
    assert.is(await within(got, 3000, 'the good client\'s echo'), 'still here')
  } finally {
    channel.close()
  }
}

/** JSON text of `{ key: { key: … } }` nested `depth` levels below the outer object. */
const nested = (depth: number): string => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)

/** A frame whose meta is given as JSON text (so it can be deeper than JSON.stringify could write). */
function metaFrame (type: number, sid: number, json: string): Uint8Array {
  const meta = new TextEncoder().encode(json)
  const out = new Uint8Array(10 + meta.length)
  const view = new DataView(out.buffer)
  out[0] = type
  view.setUint32(1, sid)
  out[5] = Kind.None
  view.setUint32(6, meta.length)
  out.set(meta, 10)
  return out
}

const KEY = 'k'.repeat(24)

test('meta nested thousands deep, in every frame that carries meta, gets a coded error and crashes nothing', async () => {
  const y = await yard()
  const c = await rawClient(y, clients)
  const deep = nested(5000)
  const cases: Array<[string, Uint8Array]> = [
    ['peers OPEN meta', metaFrame(FrameType.Open, 1, `{"ep":"peers","ns":"n","id":"me","key":"${KEY}","meta":${deep}}`)],
    ['kv OPEN since', metaFrame(FrameType.Open, 2, `{"ep":"kv","ns":"n","epoch":${deep},"seq":1}`)],
    ['relay OPEN token', metaFrame(FrameType.Open, 3, `{"ep":"relay","ns":"n","local":${deep},"remote":"b"}`)],
    ['signal OPEN', metaFrame(FrameType.Open, 4, `{"ep":"signal","ns":"n","id":${deep},"key":"${KEY}"}`)],
    ['kv set request', metaFrame(FrameType.Request, 5, `{"req":1,"op":"set","key":${deep}}`)],
    ['peers update request', metaFrame(FrameType.Request, 6, `{"req":2,"op":"update","meta":${deep}}`)],
    ['signal DATA to', metaFrame(FrameType.Data, 7, `{"to":${deep}}`)],
    ['100,000 deep arrays', metaFrame(FrameType.Open, 8, `{"ep":"peers","ns":"n","id":"x","key":"${KEY}","meta":{"m":${'['.repeat(100_000)}${']'.repeat(100_000)}}}`)]
  ]
  for (const [what, frame] of cases) {
    c.sendRaw(frame)
    const answer = await c.take((f) => f.type === FrameType.Error || f.type === FrameType.Closed, 2000, `the answer to ${what}`)
    assert.is(answer.meta?.code, 'bad-frame', `${what}: ${JSON.stringify(answer.meta)}`)
  }
  // A peers update with deep meta on an open presence stream.
  const opened = await c.open(20, { ep: 'peers', ns: 'n', id: 'me', key: KEY, meta: { name: 'me' } })
  assert.is(opened.type, FrameType.Opened)
  c.sendRaw(metaFrame(FrameType.Request, 20, `{"req":3,"op":"update","meta":${deep}}`))
  const answer = await c.take((f) => f.type === FrameType.Error, 2000, 'the answer to a deep update')
  assert.is(answer.meta?.code, 'bad-frame')
  // Meta nested within the bound is fine (presence meta of 20 levels).
  const ok = await c.open(21, { ep: 'peers', ns: 'n2', id: 'you', key: KEY, meta: JSON.parse(nested(20)) })
  assert.is(ok.type, FrameType.Opened, `20 levels of meta are accepted: ${JSON.stringify(ok.meta)}`)
  await echoes(c, 30)
  await goodClientServed(y)
})

test('before authenticate answers, waiting frames are bounded in bytes per connection (1008 backlog-full) and server-wide (1013 quota-exceeded)', async () => {
  let letIn: () => void = () => {}
  const gate = new Promise<void>((resolve) => { letIn = resolve })
  const y = await yard({
    authenticate: async () => { await gate; return 'someone' },
    limits: { maxBacklog: 2 * 1024 * 1024, total: { backlog: 3 * 1024 * 1024 } }
  })
  const open = async (): Promise<{ ws: WebSocket, closed: Promise<{ code: number, reason: string }> }> => {
    const ws = new WebSocket(y.url, SUBPROTOCOL)
    sockets.push(ws)
    const closed = new Promise<{ code: number, reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })))
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
    return { ws, closed }
  }
  const frame = (sid: number): Uint8Array => writeFrame(FrameType.Data, sid, null, { kind: Kind.Binary, bytes: new Uint8Array(256 * 1024) })
  const budgetUsed = async (): Promise<number> => Number(/signalyard_budget_used\{budget="backlog"\} (\d+)/.exec(await y.metrics())?.[1])

  // One connection past its own bound: closed alone.
  const greedy = await open()
  for (let i = 0; i < 12; i++) greedy.ws.send(frame(1)) // 3 MiB > 2 MiB
  assert.equal(await within(greedy.closed, 3000, 'the greedy connection closed'), { code: 1008, reason: 'backlog-full' })
  await until(async () => await budgetUsed() === 0, 2000, 'the greedy connection\'s backlog given back')

  // Two connections, each within its own bound, together past the server's.
  const first = await open()
  for (let i = 0; i < 7; i++) first.ws.send(frame(1)) // 1.75 MiB
  await until(async () => await budgetUsed() > 1.7 * 1024 * 1024, 2000, 'the first backlog counted')
  const second = await open()
  for (let i = 0; i < 7; i++) second.ws.send(frame(1))
  assert.equal(await within(second.closed, 3000, 'the second connection closed'), { code: 1013, reason: 'quota-exceeded' })
  assert.ok(await budgetUsed() <= 3 * 1024 * 1024)
  assert.match(await y.metrics(), /signalyard_refusals_total\{code="quota-exceeded"\} 1/)

  // The first one is served once authenticate answers (its DATA for an unopened stream gets coded errors).
  const errors: RawFrame[] = []
  first.ws.on('message', () => errors.push({} as RawFrame))
  letIn()
  await until(() => errors.length >= 8, 3000, 'HELLO and an answer to each waiting frame')
  assert.is(first.ws.readyState, WebSocket.OPEN)
  await until(async () => await budgetUsed() === 0, 2000, 'every backlog byte given back')
})

test('half-open handshakes count against the per-IP limit and are cut off after handshakeTimeout', async () => {
  const y = await yard({ limits: { maxConnectionsPerIp: 5, handshakeTimeout: 400 } })
  const halfOpen: Socket[] = []
  for (let i = 0; i < 5; i++) {
    const s = connect(y.port, '127.0.0.1')
    sockets.push(s)
    halfOpen.push(s)
    await new Promise((resolve) => s.once('connect', resolve))
    s.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1:${y.port}\r\nUpgrade: websocket\r\n`) // and never the rest
  }
  const refused = await new Promise<number>((resolve, reject) => {
    const ws = new WebSocket(y.url, SUBPROTOCOL)
    sockets.push(ws)
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0))
    ws.on('open', () => reject(new Error('a sixth connection from the same IP got in past five half-open ones')))
    ws.on('error', () => {})
  })
  assert.is(refused, 429)
  const gone = halfOpen.map((s) => new Promise((resolve) => s.once('close', resolve)))
  await within(Promise.all(gone), 3000, 'the half-open sockets cut off')
  const c = await rawClient(y, clients)
  await echoes(c, 1)
  assert.match(await y.metrics(), /signalyard_refusals_total\{code="handshake-timeout"\} 5/)
})

test('pending upgrades are bounded server-wide (503 quota-exceeded), and given back', async () => {
  const y = await yard({ limits: { total: { pendingUpgrades: 3 }, handshakeTimeout: 60_000 } })
  const held: Socket[] = []
  for (let i = 0; i < 3; i++) {
    const s = connect(y.port, '127.0.0.1')
    sockets.push(s)
    held.push(s)
    await new Promise((resolve) => s.once('connect', resolve))
  }
  const status = await new Promise<number>((resolve, reject) => {
    const ws = new WebSocket(y.url, SUBPROTOCOL)
    sockets.push(ws)
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0))
    ws.on('open', () => reject(new Error('a fourth pending connection got in past the budget of 3')))
    ws.on('error', () => {})
  })
  assert.is(status, 503)
  assert.match(await y.metrics(), /signalyard_budget_used\{budget="pendingUpgrades"\} 3/)
  for (const s of held) s.destroy()
  await until(async () => /signalyard_budget_used\{budget="pendingUpgrades"\} 0/.test(await y.metrics()), 2000, 'the budget given back')
  await echoes(await rawClient(y, clients), 1)
})

test('an authenticate() that never answers is cut off after authTimeout (1013), its budget given back', async () => {
  const y = await yard({ authenticate: () => new Promise(() => {}), limits: { authTimeout: 300 } })
  const ws = new WebSocket(y.url, SUBPROTOCOL)
  sockets.push(ws)
  const closed = new Promise<{ code: number, reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })))
  const t0 = performance.now()
  const { code, reason } = await within(closed, 3000, 'the unauthenticated connection closed')
  assert.is(code, 1013)
  assert.match(reason, /^handshake-timeout/)
  assert.ok(performance.now() - t0 < 2000, 'closed within about authTimeout + one sweep')
  await until(async () => /signalyard_budget_used\{budget="pendingUpgrades"\} 0/.test(await y.metrics()), 2000, 'the budget given back')
})

test('authenticate\'s message never reaches the client (it may hold the token); the log has it with the token masked', async () => {
  const logs: string[] = []
  const y = await yard({
    authenticate: (_req, token) => { throw new Error(`token ${String(token)} is not valid`) },
    logger: (_level, message, fields) => { logs.push(`${message} ${JSON.stringify(fields)}`) }
  })
  const channel = SignalChannel('n', { url: y.url, token: 'secret-token-123' })
  try {
    const echo = channel.echo()
    const err = await within(echo.ready().then(() => null, (e: unknown) => e), 3000, 'the refusal') as { code: string, message: string } | null
    assert.is(err?.code, 'unauthorized')
    assert.not.match(String(err?.message), /secret-token-123/)
  } finally {
    channel.close()
  }
  const ws = new WebSocket(y.url, [SUBPROTOCOL, `signalyard.auth.${Buffer.from('secret-token-123').toString('base64url')}`])
  sockets.push(ws)
  const closed = await new Promise<{ code: number, reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })))
  assert.equal(closed, { code: 4401, reason: 'unauthorized' })
  assert.ok(logs.some((l) => l.includes('token [token] is not valid')), `logged with the token masked: ${logs.join(' | ')}`)
  assert.not.ok(logs.some((l) => l.includes('secret-token-123')), 'the token never reaches the log')
})

test('the rate limiter runs on a monotonic clock: a wall clock stepped back an hour starves no one', async () => {
  const y = await yard()
  const c = await rawClient(y, clients)
  const opened = await c.open(1, { ep: 'echo', ns: 'clock' })
  assert.is(opened.type, FrameType.Opened)
  const realNow = Date.now
  Date.now = () => realNow() - 3600_000
  try {
    for (let i = 0; i < 200; i++) c.send(FrameType.Data, 1, null, i)
    for (let i = 0; i < 200; i++) await c.take((f) => f.type === FrameType.Event || f.type === FrameType.Error, 2000, `echo ${i}`).then((f) => assert.is(f.type, FrameType.Event, `frame ${i}: ${JSON.stringify(f.meta)}`))
  } finally {
    Date.now = realNow
  }
})

test('a logger that throws loses its line, never the connection or the process', async () => {
  const y = await yard({
    logger: () => { throw new Error('the log transport is down') },
    authorize: () => { throw new Error('the app\'s authorize has a bug') }
  })
  const c = await rawClient(y, clients)
  const refused = await c.open(1, { ep: 'echo', ns: 'n' })
  assert.is(refused.type, FrameType.Closed)
  assert.is(refused.meta?.code, 'forbidden')
  const again = await c.open(2, { ep: 'echo', ns: 'n' })
  assert.is(again.meta?.code, 'forbidden', 'the same connection is still served')
})

test('an answer never carries back more than a few bytes of what was sent (a 500 KB endpoint name, a 500 KB op)', async () => {
  const y = await yard()
  const c = await rawClient(y, clients)
  const huge = 'x'.repeat(500_000)
  const refused = await c.open(1, { ep: huge, ns: 'n' })
  assert.is(refused.meta?.code, 'unknown-endpoint')
  assert.ok(refused.bytes.length < 200, `CLOSED is ${refused.bytes.length} bytes`)
  await c.open(2, { ep: 'kv', ns: 'n' })
  c.send(FrameType.Request, 2, { req: 1, op: huge })
  const error = await c.take((f) => f.type === FrameType.Error && f.id === 2, 2000, 'the answer to a huge op')
  assert.is(error.meta?.code, 'bad-request')
  assert.ok(error.bytes.length < 200, `ERROR is ${error.bytes.length} bytes`)
})

test('refusals that are nobody\'s abuse (an id someone else holds, asked for again and again) never add up to a 1008', async () => {
  const y = await yard({ limits: { maxBadFrames: 20 } })
  const owner = await rawClient(y, clients)
  assert.is((await owner.open(1, { ep: 'peers', ns: 'n', id: 'taken', key: 'o'.repeat(24) })).type, FrameType.Opened)
  const c = await rawClient(y, clients)
  for (let i = 0; i < 30; i++) {
    const refused = await c.open(10 + i, { ep: 'peers', ns: 'n', id: 'taken', key: 'x'.repeat(24) })
    assert.is(refused.meta?.code, 'peer-id-taken')
  }
  await echoes(c, 100)
})

test('stream ids are 1 … 2³²−2: an OPEN of 2³²−1 is refused with bad-request, 2³²−2 opens', async () => {
  const y = await yard()
  const c = await rawClient(y, clients)
  const refused = await c.open(0xffffffff, { ep: 'echo', ns: 'ids' })
  assert.is(refused.type, FrameType.Closed)
  assert.is(refused.meta?.code, 'bad-request')
  const opened = await c.open(0xfffffffe, { ep: 'echo', ns: 'ids' })
  assert.is(opened.type, FrameType.Opened)
})

test('a message in thousands of WebSocket fragments closes only that socket (1008 too-many-fragments)', async () => {
  const y = await yard()
  const c = await rawClient(y, clients)
  const piece = Buffer.alloc(8)
  for (let i = 0; i < 4000; i++) c.ws.send(piece, { binary: true, fin: false })
  assert.equal(await within(c.closed, 3000, 'the fragmenting socket closed'), { code: 1008, reason: 'too-many-fragments' })
  await goodClientServed(y)
})

test('/metrics: every budget is shown; a token keeps it private; a port of its own moves it off the client port', async () => {
  const y = await yard({ metrics: { token: 'let-me-see' } })
  const closed = await fetchText(`http://127.0.0.1:${y.port}/metrics`)
  assert.is(closed.status, 401)
  const seen = await new Promise<{ status: number, body: string }>((resolve, reject) => {
    import('node:http').then(({ get }) => get(`http://127.0.0.1:${y.port}/metrics`, { headers: { authorization: 'Bearer let-me-see' } }, (res) => {
      let body = ''
      res.on('data', (d) => { body += String(d) })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    }).on('error', reject), reject)
  })
  assert.is(seen.status, 200)
  for (const budget of ['backlog', 'relay', 'kv', 'pendingUpgrades']) {
    assert.match(seen.body, new RegExp(`signalyard_budget_used\\{budget="${budget}"\\} \\d+`))
    assert.match(seen.body, new RegExp(`signalyard_budget_limit\\{budget="${budget}"\\} [1-9]\\d*`))
  }
  assert.is((await fetchText(`http://127.0.0.1:${y.port}/healthz`)).status, 200, '/healthz stays public')

  const apart = await yard({ metrics: { port: 0 } })
  assert.is((await fetchText(`http://127.0.0.1:${apart.port}/metrics`)).status, 404, 'not on the client port')
  assert.ok(apart.metricsUrl !== null)
  const own = await fetchText(apart.metricsUrl as string)
  assert.is(own.status, 200)
  assert.match(own.body, /signalyard_connections 0/)
})

test.run()

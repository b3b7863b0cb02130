// test/bad-input.test.ts — the server against hostile input (SPEC §3.6, §4, §7): a raw `ws`
// client sends malformed frames built by hand; each gets a coded answer and the same connection
// keeps serving; a flood of bad frames closes only the abuser (1008); a handshake without the
// subprotocol is refused (400); thousands of random byte strings (seeded, reproducible) crash
// nothing. Throughout, a well-behaved SignalChannel client on the same server is unaffected.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import WebSocket from 'ws'
import { SignalChannel, ERROR_CODES, type Channel, type EchoStream, type KvStream } from 'signalyard'
import type { Yard } from 'signalyard/server'
import { Kind, decodePayload, encodePayload, writeFrame, type RawFrame } from '../src/protocol/codec.js'
import { FrameType, SUBPROTOCOL } from '../src/protocol/frames.js'
import { rawFrame, seededRandom, sleep, startYard } from './helpers.js'
import { rawClient, type RawClient } from './raw-client.js'

const enc = new TextEncoder()

/** The coded answer to a rejected frame: CLOSED for a refused OPEN (`closed`), else ERROR. */
async function expectCoded (c: RawClient, code: string, sid: number, opts: { closed?: boolean, req?: number } = {}): Promise<RawFrame> {
  const type = opts.closed === true ? FrameType.Closed : FrameType.Error
  const f = await c.take((f) => (f.type === FrameType.Error || f.type === FrameType.Closed) && f.id === sid, 2000, `coded answer ${code} for stream ${sid}`)
  assert.is(f.type, type, `stream ${sid} answered with frame type ${f.type}, expected ${type}`)
  assert.is(f.meta?.code, code, `answer to stream ${sid}: ${JSON.stringify(f.meta)}`)
  assert.type(f.meta?.message, 'string')
  if (opts.req !== undefined) assert.is(f.meta?.req, opts.req)
  return f
}

/** OPEN an echo stream on the raw connection and check a DATA frame comes back as an EVENT. */
async function echoRoundTrip (c: RawClient, sid: number, ns = 'shared'): Promise<void> {
  c.sendRaw(writeFrame(FrameType.Open, sid, { ep: 'echo', ns }))
  const opened = await c.take((f) => f.id === sid && f.type !== FrameType.Data, 2000, `OPENED for stream ${sid}`)
  assert.is(opened.type, FrameType.Opened, `stream ${sid} opened: ${JSON.stringify(opened.meta)}`)
  const id = opened.meta?.id
  assert.type(id, 'string')
  const token = `raw ping ${sid} ✓`
  const binary = new Uint8Array([sid & 0xff, 0, 255])
  c.sendRaw(writeFrame(FrameType.Data, sid, null, encodePayload(token)))
  c.sendRaw(writeFrame(FrameType.Data, sid, null, encodePayload(binary)))
  const ev = await c.take((f) => f.type === FrameType.Event && f.meta?.from === id && f.kind === Kind.Text, 2000, `echo of ${token}`)
  assert.equal(ev.meta, { ep: 'echo', ns, from: id })
  assert.is(decodePayload(ev.kind, ev.payload), token)
  const evBin = await c.take((f) => f.type === FrameType.Event && f.meta?.from === id && f.kind === Kind.Binary, 2000, 'binary echo')
  assert.equal([...(decodePayload(evBin.kind, evBin.payload) as Uint8Array)], [...binary])
}

/** A well-behaved client: echo (own messages, in order) and kv on its own socket. */
interface GoodClient { channel: Channel, echo: EchoStream, kv: KvStream, states: string[], check: (n?: number) => Promise<void> }

async function goodClient (yard: Yard): Promise<GoodClient> {
  const channel = SignalChannel('shared', { url: `${yard.url}?good` })
  const states: string[] = []
  channel.on('state', (s) => states.push(s))
  const echo = channel.echo()
  const kv = channel.kv()
  await Promise.all([echo.ready(), kv.ready()])
  let round = 0
  const check = async (n = 10): Promise<void> => {
    const r = ++round
    const got: unknown[] = []
    const done = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`good client: ${got.length}/${n} echoes in round ${r}`)), 2000)
      const on = (data: unknown, { from }: { from: string }): void => {
        if (from !== echo.id) return
        got.push(data)
        if (got.length === n) { clearTimeout(timer); echo.off('data', on); resolve() }
      }
      echo.on('data', on)
    })
    for (let i = 0; i < n; i++) echo.send({ r, i })
    await done
    assert.equal(got, Array.from({ length: n }, (_, i) => ({ r, i })), 'own messages, all, in order')
    await kv.set(`round-${r}`, r)
    assert.is(kv.get(`round-${r}`), r)
  }
  return { channel, echo, kv, states, check }
}

async function healthz (yard: Yard): Promise<{ status: string, connections: number }> {
  const res = await fetch(`http://127.0.0.1:${yard.port}/healthz`)
  assert.is(res.status, 200)
  return await res.json() as { status: string, connections: number }
}

test('HELLO first: the server introduces itself with its limits', async () => {
  const yard = await startYard()
  let c: RawClient | null = null
  try {
    c = await rawClient(yard)
    assert.is(c.hello.id, 0)
    assert.is(c.hello.meta?.v, 1)
    assert.type(c.hello.meta?.conn, 'string')
    assert.equal(c.hello.meta?.limits, { maxFrame: yard.limits.maxFrame, maxValue: yard.limits.kv.maxValue, maxMeta: yard.limits.peers.maxMeta, messagesPerSecond: yard.limits.messagesPerSecond, messageBurst: yard.limits.messageBurst })
    await echoRoundTrip(c, 1)
  } finally {
    c?.ws.terminate()
    await yard.close()
  }
})

test('every malformed frame gets a coded answer and the connection keeps serving; a good client is unaffected', async () => {
  const yard = await startYard()
  let c: RawClient | null = null
  let good: GoodClient | null = null
  try {
    good = await goodClient(yard)
    c = await rawClient(yard)
    await good.check()
    await echoRoundTrip(c, 1)
    await echoRoundTrip(c, 3)
    c.sendRaw(writeFrame(FrameType.Open, 2, { ep: 'kv', ns: 'shared' }))
    assert.is((await c.take((f) => f.id === 2 && f.type === FrameType.Opened, 2000, 'kv OPENED')).type, FrameType.Opened)

    let sid = 100
    const cases: Array<{ name: string, send: () => void, code: string, sid: number, closed?: boolean, req?: number }> = [
      { name: 'empty message', send: () => c?.sendRaw(new Uint8Array(0)), code: 'bad-frame', sid: 0 },
      { name: 'short header', send: () => c?.sendRaw(new Uint8Array([1, 0, 0])), code: 'bad-frame', sid: 0 },
      { name: 'metaLen past the end', send: () => c?.sendRaw(rawFrame(FrameType.Open, 7, 0, enc.encode('{"ep":"echo"}'), undefined, 500)), code: 'bad-frame', sid: 0 },
      { name: 'metaLen 0xffffffff', send: () => c?.sendRaw(rawFrame(FrameType.Data, 1, 0, new Uint8Array(0), undefined, 0xffffffff)), code: 'bad-frame', sid: 0 },
      { name: 'array meta', send: () => c?.sendRaw(rawFrame(FrameType.Open, 7, 0, enc.encode('["echo"]'))), code: 'bad-frame', sid: 0 },
      { name: 'number meta', send: () => c?.sendRaw(rawFrame(FrameType.Open, 7, 0, enc.encode('42'))), code: 'bad-frame', sid: 0 },
      { name: 'null meta', send: () => c?.sendRaw(rawFrame(FrameType.Open, 7, 0, enc.encode('null'))), code: 'bad-frame', sid: 0 },
      { name: 'not JSON', send: () => c?.sendRaw(rawFrame(FrameType.Open, 7, 0, enc.encode('{ep: echo}'))), code: 'bad-frame', sid: 0 },
      { name: 'invalid UTF-8 meta', send: () => c?.sendRaw(rawFrame(FrameType.Open, 7, 0, new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]))), code: 'bad-frame', sid: 0 },
      { name: 'unknown payload kind', send: () => c?.sendRaw(rawFrame(FrameType.Data, 1, 7, new Uint8Array(0))), code: 'bad-frame', sid: 0 },
      { name: 'text frame', send: () => c?.sendRaw('{"type":"open"}'), code: 'bad-frame', sid: 0 },
      { name: 'unknown frame type', send: () => c?.sendRaw(writeFrame(0x7f, 9, { ep: 'echo' })), code: 'unknown-frame', sid: 9 },
      { name: 'server-only frame type', send: () => c?.sendRaw(writeFrame(FrameType.Opened, 9, {})), code: 'unknown-frame', sid: 9 },
      { name: 'DATA for an unknown stream', send: () => c?.sendRaw(writeFrame(FrameType.Data, 999, null, encodePayload('x'))), code: 'unknown-stream', sid: 999 },
      { name: 'REQUEST for an unknown stream', send: () => c?.sendRaw(writeFrame(FrameType.Request, 998, { op: 'set', key: 'k', req: 4 })), code: 'unknown-stream', sid: 998, req: 4 },
      { name: 'OPEN with an unknown endpoint', send: () => c?.sendRaw(writeFrame(FrameType.Open, 50, { ep: 'shell', ns: 'x' })), code: 'unknown-endpoint', sid: 50, closed: true },
      { name: 'OPEN with ns of the wrong type', send: () => c?.sendRaw(writeFrame(FrameType.Open, 51, { ep: 'echo', ns: 5 })), code: 'bad-request', sid: 51, closed: true },
      { name: 'OPEN with an overlong ns', send: () => c?.sendRaw(writeFrame(FrameType.Open, 52, { ep: 'echo', ns: 'x'.repeat(300) })), code: 'bad-request', sid: 52, closed: true },
      { name: 'OPEN on stream id 0', send: () => c?.sendRaw(writeFrame(FrameType.Open, 0, { ep: 'echo', ns: 'x' })), code: 'bad-request', sid: 0, closed: true },
      { name: 'OPEN kv with a bad since', send: () => c?.sendRaw(writeFrame(FrameType.Open, 53, { ep: 'kv', ns: 'x', epoch: {}, seq: 'one' })), code: 'bad-request', sid: 53, closed: true },
      { name: 'OPEN relay with equal tokens', send: () => c?.sendRaw(writeFrame(FrameType.Open, 54, { ep: 'relay', ns: 'x', local: 'a', remote: 'a' })), code: 'bad-request', sid: 54, closed: true },
      { name: 'OPEN on a stream id already open (ERROR: the open stream stays)', send: () => c?.sendRaw(writeFrame(FrameType.Open, 1, { ep: 'echo', ns: 'elsewhere' })), code: 'stream-exists', sid: 1 },
      { name: 'REQUEST with req of the wrong type', send: () => c?.sendRaw(writeFrame(FrameType.Request, 2, { op: 'set', key: 'k', req: 'one' })), code: 'bad-request', sid: 2 },
      { name: 'REQUEST with ttl of the wrong type', send: () => c?.sendRaw(writeFrame(FrameType.Request, 2, { op: 'set', key: 'k', req: 5, ttl: '1s' }, encodePayload(1))), code: 'bad-request', sid: 2, req: 5 },
      { name: 'REQUEST with an unknown op', send: () => c?.sendRaw(writeFrame(FrameType.Request, 2, { op: 'drop', key: 'k', req: 6 })), code: 'bad-request', sid: 2, req: 6 },
      { name: 'REQUEST on an echo stream', send: () => c?.sendRaw(writeFrame(FrameType.Request, 3, { op: 'set', key: 'k', req: 7 })), code: 'bad-request', sid: 3, req: 7 },
      { name: 'DATA on a kv stream', send: () => c?.sendRaw(writeFrame(FrameType.Data, 2, null, encodePayload('x'))), code: 'bad-request', sid: 2 }
    ]
    for (const k of cases) {
      k.send()
      try {
        await expectCoded(c, k.code, k.sid, { closed: k.closed, req: k.req })
        await echoRoundTrip(c, ++sid)
      } catch (err) {
        throw new Error(`${k.name}: ${(err as Error).message}`)
      }
    }
    // stream 1 survived the duplicate OPEN of its id
    c.sendRaw(writeFrame(FrameType.Data, 1, null, encodePayload('stream 1 lives')))
    const event = await c.take((f) => f.type === FrameType.Event && new TextDecoder().decode(f.payload) === 'stream 1 lives', 2000, 'EVENT from stream 1')
    assert.is(event.meta?.ns, 'shared')
    // the kv stream opened before all that still works
    c.sendRaw(writeFrame(FrameType.Request, 2, { op: 'set', key: 'raw', req: 8 }, encodePayload({ ok: true })))
    const reply = await c.take((f) => f.id === 2 && f.type === FrameType.Reply, 2000, 'kv REPLY')
    assert.is(reply.meta?.req, 8)
    assert.type(reply.meta?.seq, 'number')

    await good.check()
    assert.equal(good.kv.get('raw'), { ok: true }, 'the good client sees the raw client\'s valid write')
    assert.equal(good.states, ['open'], 'the good client never lost its connection')
    assert.is(c.ws.readyState, WebSocket.OPEN, `${cases.length} bad frames did not close the abuser either`)
    assert.is((await healthz(yard)).status, 'ok')
  } finally {
    c?.ws.terminate()
    good?.channel.close()
    await yard.close()
  }
})

test('a flood of bad frames closes only the abuser, with 1008', async () => {
  const yard = await startYard() // default limits: maxBadFrames 100 per 10 s
  let c: RawClient | null = null
  let good: GoodClient | null = null
  try {
    good = await goodClient(yard)
    c = await rawClient(yard)
    const max = yard.limits.maxBadFrames
    assert.is(max, 100)
    const abuser = c
    const flood = (async () => {
      for (let i = 0; i < max * 2 && abuser.ws.readyState === WebSocket.OPEN; i++) {
        abuser.sendRaw(new Uint8Array([i & 0xff]))
        if (i % 20 === 0) await sleep(1)
      }
    })()
    const goodDuring = good.check(20)
    const { code, reason } = await Promise.race([c.closed, sleep(3000).then(() => ({ code: -1, reason: 'not closed within 3 s' }))])
    await flood
    assert.is(code, 1008)
    assert.is(reason, 'too-many-bad-frames')
    const errors = c.frames.filter((f) => f.type === FrameType.Error)
    assert.ok(errors.length >= max && errors.length <= max * 2, `${errors.length} coded errors before the close`)
    assert.ok(errors.every((f) => f.meta?.code === 'bad-frame'))
    await goodDuring
    await good.check()
    assert.equal(good.states, ['open'], 'the good client stayed connected')
    const health = await healthz(yard)
    assert.is(health.status, 'ok')
    assert.is(health.connections, 1, 'only the good client is left')

    // the abuser may come back and behave
    const again = await rawClient(yard)
    try {
      await echoRoundTrip(again, 1)
    } finally {
      again.ws.terminate()
    }
  } finally {
    c?.ws.terminate()
    good?.channel.close()
    await yard.close()
  }
})

test('a handshake without the signalyard.2 subprotocol is refused with 400', async () => {
  const yard = await startYard()
  try {
    const statusOf = (protocols?: string | string[]): Promise<number> => new Promise((resolve, reject) => {
      const ws = protocols === undefined ? new WebSocket(yard.url) : new WebSocket(yard.url, protocols)
      ws.on('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); res.resume(); ws.terminate() })
      ws.on('open', () => { ws.terminate(); reject(new Error(`upgraded with ${JSON.stringify(protocols)}`)) })
      ws.on('error', () => {})
    })
    assert.is(await statusOf(), 400)
    assert.is(await statusOf('chat'), 400)
    assert.is(await statusOf(['signalyard.1', 'chat']), 400)
    // listing it among others is fine, and the server picks it
    const ok = new WebSocket(yard.url, ['chat', SUBPROTOCOL])
    await new Promise<void>((resolve, reject) => { ok.once('open', resolve); ok.once('error', reject) })
    assert.is(ok.protocol, SUBPROTOCOL)
    ok.terminate()
    assert.is((await healthz(yard)).status, 'ok')
  } finally {
    await yard.close()
  }
})


test('thousands of random byte strings crash nothing; the good client is served throughout', async () => {
  const SEED = 20240611
  const COUNT = 4000
  const logged: string[] = []
  const yard = await startYard({
    limits: { maxBadFrames: 1_000_000 },
    logger: (level, message, fields) => { if (level === 'error') logged.push(`${message} ${JSON.stringify(fields)}`) }
  })
  let c: RawClient | null = null
  let good: GoodClient | null = null
  try {
    good = await goodClient(yard)
    c = await rawClient(yard)
    const CONTROL = 0xfffffff0
    await echoRoundTrip(c, CONTROL, 'control')
    const controlId = (await (async () => {
      c.sendRaw(writeFrame(FrameType.Open, CONTROL - 1, { ep: 'echo', ns: 'control' }))
      return (await c.take((f) => f.id === CONTROL - 1 && f.type === FrameType.Opened)).meta?.id
    })()) as string

    const rand = seededRandom(SEED)
    const int = (n: number): number => Math.floor(rand() * n)
    const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]
    const randomBytes = (n: number): Uint8Array<ArrayBuffer> => Uint8Array.from({ length: n }, () => int(256))
    const randomString = (): string => pick(['', 'a', 'fz-' + int(50), 'x'.repeat(int(400)), '__proto__', 'constructor', '\u0000', 'ü😀'])
    const randomValue = (depth = 0): unknown => {
      switch (int(depth > 1 ? 6 : 8)) {
        case 0: return int(2 ** 33) - 2 ** 32
        case 1: return rand()
        case 2: return randomString()
        case 3: return null
        case 4: return rand() < 0.5
        case 5: return -1
        case 6: return [randomValue(depth + 1), randomValue(depth + 1)]
        default: return { k: randomValue(depth + 1) }
      }
    }
    const fields = ['ep', 'ns', 'key', 'req', 'op', 'ttl', 'epoch', 'seq', 'local', 'remote', '__proto__', 'code']
    const fieldValue = (name: string): unknown => {
      if (rand() < 0.4) return randomValue()
      switch (name) {
        case 'ep': return pick(['echo', 'kv', 'relay', 'nope'])
        case 'ns': return 'fz-' + int(8)
        case 'op': return pick(['set', 'delete', 'get'])
        case 'key': case 'local': case 'remote': case 'epoch': return pick(['a', 'b', 'c'])
        default: return int(1000)
      }
    }
    /** One fuzz message: raw noise, a plausible frame with random fields, or a text frame. */
    const fuzzMessage = (): Uint8Array | string => {
      const r = rand()
      if (r < 0.35) return randomBytes(int(64))
      if (r < 0.4) return String.fromCharCode(...randomBytes(int(40)))
      const type = rand() < 0.9 ? pick([FrameType.Open, FrameType.Close, FrameType.Data, FrameType.Request]) : int(256)
      const id = rand() < 0.9 ? 1 + int(40) : int(2 ** 32)
      const kind = rand() < 0.9 ? int(4) : int(256)
      if (r < 0.5) return rawFrame(type, id, kind, randomBytes(int(30)), undefined, rand() < 0.5 ? undefined : int(2 ** 32))
      const meta: Record<string, unknown> = {}
      for (const f of fields) if (rand() < 0.5) meta[f] = fieldValue(f)
      const payload = rand() < 0.5 ? randomBytes(int(50)) : new Uint8Array(0)
      return rawFrame(type, id, kind, enc.encode(JSON.stringify(meta)), payload)
    }

    let barrier = 0
    /** What the fuzz got back, by error code (or opened / reply / other). */
    const answers = new Map<string, number>()
    for (let i = 0; i < COUNT; i++) {
      c.sendRaw(fuzzMessage())
      if (i % 50 === 49) {
        // the abuser's own connection still serves, in order
        const token = `barrier ${++barrier}`
        c.sendRaw(writeFrame(FrameType.Data, CONTROL - 1, null, encodePayload(token)))
        await c.take((f) => f.type === FrameType.Event && f.meta?.from === controlId && decodePayload(f.kind, f.payload) === token, 3000, `${token} (after fuzz message ${i}, seed ${SEED})`)
        for (const f of c.frames) {
          const what = f.type === FrameType.Error || f.type === FrameType.Closed ? String(f.meta?.code ?? 'closed') : f.type === FrameType.Opened ? 'opened' : f.type === FrameType.Reply ? 'reply' : 'other'
          answers.set(what, (answers.get(what) ?? 0) + 1)
        }
        c.frames.length = 0
      }
      if (i % 1000 === 999) await good.check(5)
    }
    if (process.env.FUZZ_STATS !== undefined) console.log('fuzz answers', Object.fromEntries(answers))
    // the fuzz reached past the frame parser: streams opened, requests answered, every kind of refusal
    for (const what of ['bad-frame', 'unknown-frame', 'bad-request', 'unknown-stream', 'unknown-endpoint', 'opened']) {
      assert.ok((answers.get(what) ?? 0) > 0, `fuzz produced ${what}: ${JSON.stringify([...answers])}`)
    }
    assert.not.ok(answers.has('internal-error'), 'no internal-error')
    await echoRoundTrip(c, CONTROL - 2, 'control')
    await good.check()
    assert.equal(good.states, ['open'], 'the good client stayed connected')
    assert.equal(logged, [], 'no handler failed (nothing logged at error level)')
    const health = await healthz(yard)
    assert.is(health.status, 'ok')
    assert.is(health.connections, 2)
    assert.is(c.ws.readyState, WebSocket.OPEN)
  } finally {
    c?.ws.terminate()
    good?.channel.close()
    await yard.close()
  }
})

test('random frames: every coded answer uses a known error code, never internal-error', async () => {
  const yard = await startYard({ limits: { maxBadFrames: 1_000_000 } })
  let c: RawClient | null = null
  try {
    c = await rawClient(yard)
    const rand = seededRandom(7)
    const int = (n: number): number => Math.floor(rand() * n)
    const codes = new Map<string, number>()
    for (let i = 0; i < 1500; i++) {
      const meta: Record<string, unknown> = {}
      for (const f of ['ep', 'ns', 'key', 'req', 'op', 'ttl', 'epoch', 'seq', 'local', 'remote']) {
        if (rand() < 0.6) meta[f] = [int(3), 'echo', 'kv', 'relay', 'set', 'delete', 'n' + int(4), null, -1, 1.5, [], {}, ''][int(13)]
      }
      c.sendRaw(writeFrame([FrameType.Open, FrameType.Request, FrameType.Data, FrameType.Close][int(4)], 1 + int(30), meta, rand() < 0.5 ? encodePayload('v') : undefined))
      if (i % 100 === 99) {
        c.sendRaw(writeFrame(FrameType.Open, 0xffff0000 + i, { ep: 'echo', ns: 'sync' }))
        await c.take((f) => f.id === 0xffff0000 + i && f.type === FrameType.Opened, 3000, `sync point ${i}`)
        for (const f of c.frames) {
          if ((f.type === FrameType.Error || f.type === FrameType.Closed) && typeof f.meta?.code === 'string') {
            codes.set(f.meta.code, (codes.get(f.meta.code) ?? 0) + 1)
          }
        }
        c.frames.length = 0
      }
    }
    assert.ok(codes.size > 0, 'the random frames were answered')
    for (const code of codes.keys()) assert.ok(Object.prototype.hasOwnProperty.call(ERROR_CODES, code), `known code ${code}`)
    assert.not.ok(codes.has('internal-error'), `no internal-error: ${JSON.stringify([...codes])}`)
    assert.is(c.ws.readyState, WebSocket.OPEN)
  } finally {
    c?.ws.terminate()
    await yard.close()
  }
})

test.run()

// test/hostile-json.test.ts — a seeded fuzz of JSON nesting depth, width and size on every field
// the server parses (issue 10): OPEN meta of every endpoint (peers meta, kv since, relay tokens,
// signal id and key, echo ns, an unknown extra field), REQUEST meta (kv set/delete, peers update,
// the op and req fields), DATA meta (signal `to`, echo and relay meta), and JSON payloads the
// server carries without parsing (KV values, echo, signal and relay payloads).
//
// Values: objects or arrays (or a mix) nested 5,000–100,000 deep, objects and arrays thousands of
// members wide, long strings, sized from ~10 KB up to the frame limit and just past it. Each case
// runs on a fresh raw connection; asserted for every case:
// - nothing is thrown in this process (which hosts the server) and nothing is logged at error
//   level (a last-resort guard answering internal-error counts as a failure too);
// - the sender gets an answer: a value nested past the server's depth bound inside meta is
//   refused with a code (bad-frame / bad-request / payload-too-large); a payload (never parsed by
//   the server) is carried or refused with payload-too-large; a frame over maxFrame closes the
//   socket with 1009; no answer is ever internal-error;
// - the connection goes on serving (an echo round trip) unless it was closed for size;
// - a well-behaved SignalChannel client in the same namespace keeps its echo and kv working.
//
// The seed is fixed (printed); `SEED=<n> npm test -- hostile-json` runs another draw.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { SignalChannel } from 'signalyard'
import type { Yard } from 'signalyard/server'
import { Kind, type RawFrame } from '../src/protocol/codec.js'
import { FrameType } from '../src/protocol/frames.js'
import { rawFrame, seededRandom, startYard, within } from './helpers.js'
import { rawClient, type RawClient } from './raw-client.js'

const SEED = process.env.SEED !== undefined && process.env.SEED !== '' ? Number(process.env.SEED) >>> 0 : 20261201
console.log(`hostile-json seed: ${SEED} (another draw: SEED=<n> npm test -- hostile-json)`)

const NS = 'hj'
const KEY = 'hostile-json-key-0123'
const CODED = ['bad-frame', 'bad-request', 'payload-too-large', 'unknown-endpoint']
/** JSON of a frame's meta, cut short: an answer may quote what it refused. */
const show = (meta: unknown): string => { const t = JSON.stringify(meta) ?? String(meta); return t.length > 300 ? `${t.slice(0, 300)}… (${t.length} chars)` : t }
const enc = new TextEncoder()

// ── JSON text the server must survive ─────────────────────────────────────────────────────────

type Shape = 'deep-object' | 'deep-array' | 'deep-mixed' | 'wide-object' | 'wide-array' | 'long-string'
interface Value { shape: Shape, text: string, depth: number }

/** `{"a":{"a":…1…}}`, `[[…]]` or a mix of both, `depth` levels. */
function deep (shape: 'deep-object' | 'deep-array' | 'deep-mixed', depth: number, rand: () => number): string {
  if (shape === 'deep-object') return '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)
  if (shape === 'deep-array') return '['.repeat(depth) + ']'.repeat(depth)
  const open: string[] = []
  const close: string[] = []
  for (let i = 0; i < depth; i++) {
    const obj = rand() < 0.5
    open.push(obj ? '{"k":' : '[')
    close.push(obj ? '}' : ']')
  }
  return open.join('') + '0' + close.reverse().join('')
}

/** About `bytes` of JSON one level deep: many members, or one long string. */
function wide (shape: 'wide-object' | 'wide-array' | 'long-string', bytes: number): string {
  if (shape === 'long-string') return JSON.stringify('x'.repeat(Math.max(0, bytes - 2)))
  const parts: string[] = []
  let size = 2
  for (let i = 0; size < bytes; i++) {
    const part = shape === 'wide-object' ? `"k${i}":${i}` : String(i % 10)
    parts.push(part)
    size += part.length + 1
  }
  return shape === 'wide-object' ? `{${parts.join(',')}}` : `[${parts.join(',')}]`
}

function drawValue (rand: () => number, maxFrame: number): Value {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]
  const shape = pick(['deep-object', 'deep-array', 'deep-mixed', 'deep-array', 'wide-object', 'wide-array', 'long-string'] as const)
  if (shape === 'deep-object' || shape === 'deep-array' || shape === 'deep-mixed') {
    // mostly 5,000–100,000 deep; now and then just past a small bound
    const depth = rand() < 0.15 ? pick([33, 64, 257, 1025]) : 5000 + Math.floor(rand() * 95_001)
    return { shape, text: deep(shape, depth, rand), depth }
  }
  // ~10 KB, around the meta and value limits, or near (and past) the frame limit
  const bytes = pick([10_000, 8 * 1024 + 1, 64 * 1024 + 1, 300_000, maxFrame - 200, maxFrame + 1000])
  return { shape, text: wide(shape, bytes), depth: 1 }
}

// ── where a value goes ────────────────────────────────────────────────────────────────────────

/** A case: streams to open first, then one frame whose meta (JSON text) or payload holds the value. */
interface Target {
  name: string
  /** 'meta': parsed by the server, so past the depth bound it must be refused. 'payload': carried as bytes. */
  slot: 'meta' | 'payload'
  /** Streams opened (and OPENED) before the hostile frame, by stream id. */
  setup: (id: string) => Array<[number, object]>
  frame: (v: string, id: string) => { type: number, sid: number, meta: string, payload?: string }
  /** The answer to wait for (besides ERROR/CLOSED on `sid`, which always count). */
  answer: (f: RawFrame, sid: number) => boolean
}

const on = (type: number) => (f: RawFrame, sid: number): boolean => f.type === type && f.id === sid
const kvOpen: Array<[number, object]> = [[2, { ep: 'kv', ns: NS }]]

const TARGETS: Target[] = [
  { name: 'peers OPEN meta', slot: 'meta', setup: () => [], frame: (v, id) => ({ type: FrameType.Open, sid: 1, meta: `{"ep":"peers","ns":"${NS}","id":"${id}","key":"${KEY}","meta":${v}}` }), answer: on(FrameType.Opened) },
  { name: 'peers OPEN id', slot: 'meta', setup: () => [], frame: (v) => ({ type: FrameType.Open, sid: 1, meta: `{"ep":"peers","ns":"${NS}","id":${v},"key":"${KEY}"}` }), answer: on(FrameType.Opened) },
  { name: 'kv OPEN since epoch', slot: 'meta', setup: () => [], frame: (v) => ({ type: FrameType.Open, sid: 1, meta: `{"ep":"kv","ns":"${NS}","epoch":${v},"seq":1}` }), answer: on(FrameType.Opened) },
  { name: 'kv OPEN since seq', slot: 'meta', setup: () => [], frame: (v) => ({ type: FrameType.Open, sid: 1, meta: `{"ep":"kv","ns":"${NS}","epoch":"e","seq":${v}}` }), answer: on(FrameType.Opened) },
  { name: 'relay OPEN local', slot: 'meta', setup: () => [], frame: (v) => ({ type: FrameType.Open, sid: 1, meta: `{"ep":"relay","ns":"${NS}","local":${v},"remote":"b"}` }), answer: on(FrameType.Opened) },
  { name: 'relay OPEN remote', slot: 'meta', setup: () => [], frame: (v) => ({ type: FrameType.Open, sid: 1, meta: `{"ep":"relay","ns":"${NS}","local":"a","remote":${v}}` }), answer: on(FrameType.Opened) },
  { name: 'signal OPEN id', slot: 'meta', setup: () => [], frame: (v) => ({ type: FrameType.Open, sid: 1, meta: `{"ep":"signal","ns":"${NS}","id":${v},"key":"${KEY}"}` }), answer: on(FrameType.Opened) },
  { name: 'signal OPEN key', slot: 'meta', setup: () => [], frame: (v, id) => ({ type: FrameType.Open, sid: 1, meta: `{"ep":"signal","ns":"${NS}","id":"${id}","key":${v}}` }), answer: on(FrameType.Opened) },
  { name: 'echo OPEN ns', slot: 'meta', setup: () => [], frame: (v) => ({ type: FrameType.Open, sid: 1, meta: `{"ep":"echo","ns":${v}}` }), answer: on(FrameType.Opened) },
  { name: 'OPEN unknown field', slot: 'meta', setup: () => [], frame: (v) => ({ type: FrameType.Open, sid: 1, meta: `{"ep":"echo","ns":"${NS}","extra":${v}}` }), answer: on(FrameType.Opened) },
  { name: 'OPEN ep', slot: 'meta', setup: () => [], frame: (v) => ({ type: FrameType.Open, sid: 1, meta: `{"ep":${v},"ns":"${NS}"}` }), answer: on(FrameType.Opened) },
  { name: 'kv set key', slot: 'meta', setup: () => kvOpen, frame: (v) => ({ type: FrameType.Request, sid: 2, meta: `{"req":1,"op":"set","key":${v}}`, payload: '1' }), answer: on(FrameType.Reply) },
  { name: 'kv set ttl', slot: 'meta', setup: () => kvOpen, frame: (v) => ({ type: FrameType.Request, sid: 2, meta: `{"req":1,"op":"set","key":"k","ttl":${v}}`, payload: '1' }), answer: on(FrameType.Reply) },
  { name: 'kv delete key', slot: 'meta', setup: () => kvOpen, frame: (v) => ({ type: FrameType.Request, sid: 2, meta: `{"req":1,"op":"delete","key":${v}}` }), answer: on(FrameType.Reply) },
  { name: 'REQUEST op', slot: 'meta', setup: () => kvOpen, frame: (v) => ({ type: FrameType.Request, sid: 2, meta: `{"req":1,"op":${v}}` }), answer: on(FrameType.Reply) },
  { name: 'REQUEST req', slot: 'meta', setup: () => kvOpen, frame: (v) => ({ type: FrameType.Request, sid: 2, meta: `{"req":${v},"op":"delete","key":"k"}` }), answer: on(FrameType.Reply) },
  { name: 'peers update meta', slot: 'meta', setup: (id) => [[2, { ep: 'peers', ns: NS, id, key: KEY }]], frame: (v) => ({ type: FrameType.Request, sid: 2, meta: `{"req":1,"op":"update","meta":${v}}` }), answer: on(FrameType.Reply) },
  { name: 'signal DATA to', slot: 'meta', setup: (id) => [[2, { ep: 'signal', ns: NS, id, key: KEY }]], frame: (v) => ({ type: FrameType.Data, sid: 2, meta: `{"to":${v}}`, payload: '"hi"' }), answer: on(FrameType.Data) },
  { name: 'echo DATA meta', slot: 'meta', setup: () => [[2, { ep: 'echo', ns: NS }]], frame: (v) => ({ type: FrameType.Data, sid: 2, meta: v, payload: '"hi"' }), answer: (f) => f.type === FrameType.Event && f.meta?.ep === 'echo' },
  { name: 'relay DATA meta', slot: 'meta', setup: (id) => [[2, { ep: 'relay', ns: NS, local: `${id}x`, remote: `${id}y` }], [3, { ep: 'relay', ns: NS, local: `${id}y`, remote: `${id}x` }]], frame: (v) => ({ type: FrameType.Data, sid: 2, meta: v, payload: '"hi"' }), answer: (f) => f.type === FrameType.Data && f.id === 3 },
  { name: 'kv value', slot: 'payload', setup: () => kvOpen, frame: (v, id) => ({ type: FrameType.Request, sid: 2, meta: `{"req":1,"op":"set","key":"${id}","ttl":30000}`, payload: v }), answer: on(FrameType.Reply) },
  { name: 'echo payload', slot: 'payload', setup: () => [[2, { ep: 'echo', ns: NS }]], frame: (v) => ({ type: FrameType.Data, sid: 2, meta: '', payload: v }), answer: (f) => f.type === FrameType.Event && f.meta?.ep === 'echo' },
  { name: 'signal payload', slot: 'payload', setup: (id) => [[2, { ep: 'signal', ns: NS, id, key: KEY }]], frame: (v, id) => ({ type: FrameType.Data, sid: 2, meta: `{"to":"${id}"}`, payload: v }), answer: on(FrameType.Data) },
  { name: 'relay payload', slot: 'payload', setup: (id) => [[2, { ep: 'relay', ns: NS, local: `${id}x`, remote: `${id}y` }], [3, { ep: 'relay', ns: NS, local: `${id}y`, remote: `${id}x` }]], frame: (v) => ({ type: FrameType.Data, sid: 2, meta: '', payload: v }), answer: (f) => f.type === FrameType.Data && f.id === 3 }
]

// ── the run ───────────────────────────────────────────────────────────────────────────────────

/** Run one case on a fresh connection; returns a line describing the outcome (or throws). */
async function runCase (yard: Yard, target: Target, value: Value, n: number, clients: RawClient[]): Promise<string> {
  const id = `h${n}`
  const label = `case ${n} (seed ${SEED}): ${target.name} = ${value.shape}, depth ${value.depth}, ${value.text.length} B`
  const c = await rawClient(yard, clients)
  // every setup OPEN first (two relay sides are OPENED only once both are there), then the answers
  const setup = target.setup(id)
  for (const [sid, meta] of setup) c.send(FrameType.Open, sid, meta)
  for (const [sid] of setup) {
    const opened = await c.take((a) => a.id === sid && (a.type === FrameType.Opened || a.type === FrameType.Closed), 2000, `${label}: the answer to setup OPEN ${sid}`)
    assert.is(opened.type, FrameType.Opened, `${label}: setup stream ${sid} opened: ${show(opened.meta)}`)
  }
  const f = target.frame(value.text, id)
  const bytes = rawFrame(f.type, f.sid, f.payload === undefined ? Kind.None : Kind.Json, enc.encode(f.meta), f.payload === undefined ? undefined : enc.encode(f.payload))
  const tooBig = bytes.length > yard.limits.maxFrame
  c.sendRaw(bytes)
  // a frame the server cannot read at all is answered on stream 0 (it has no stream to name)
  const answered = c.take((a) => target.answer(a, f.sid) || ((a.type === FrameType.Error || a.type === FrameType.Closed) && (a.id === f.sid || a.id === 0)), 5000, `the answer to ${label}`)
  answered.catch(() => {})
  const outcome = await Promise.race([answered, c.closed])
  if ('code' in outcome && typeof outcome.code === 'number') {
    // the socket closed: only a frame over maxFrame may do that
    assert.ok(tooBig, `${label}: the connection was closed (${outcome.code} ${outcome.reason}) for a ${bytes.length}-byte frame (maxFrame ${yard.limits.maxFrame})`)
    assert.is(outcome.code, 1009, `${label}: a frame over maxFrame closes with 1009`)
    return `${target.name}: closed 1009`
  }
  assert.not.ok(tooBig, `${label}: a ${bytes.length}-byte frame (over maxFrame) was answered instead of closing the socket`)
  const answer = outcome as RawFrame
  const refused = answer.type === FrameType.Error || answer.type === FrameType.Closed
  const code = refused ? String(answer.meta?.code) : 'served'
  if (refused) assert.ok(CODED.includes(code), `${label}: refused with ${code} (${show(answer.meta)}); expected one of ${CODED.join(', ')}`)
  if (target.slot === 'meta' && value.depth >= 5000) assert.ok(refused, `${label}: meta nested ${value.depth} deep was accepted, not refused with a code`)
  if (target.slot === 'payload' && refused) assert.is(code, 'payload-too-large', `${label}: a payload is never parsed, so only its size can refuse it`)
  // the connection still serves
  const echo = await c.open(100, { ep: 'echo', ns: `${NS}-alive` })
  assert.is(echo.type, FrameType.Opened, `${label}: the connection serves after the case`)
  c.send(FrameType.Data, 100, null, 'alive?')
  await c.take((e) => e.type === FrameType.Event && e.meta?.from === echo.meta?.id, 2000, `${label}: the echo after the case`)
  c.ws.terminate()
  return `${target.name}: ${code}`
}

test('JSON nested 5,000–100,000 deep, thousands wide or up to the frame limit, in every parsed field and payload: coded refusals, no crash, everyone else served', async () => {
  const crashes: string[] = []
  const onCrash = (err: unknown): void => { crashes.push(String((err as Error)?.stack ?? err)) }
  process.on('uncaughtException', onCrash)
  process.on('unhandledRejection', onCrash)
  const logged: string[] = []
  const yard = await startYard({ logger: (level, message, fields) => { if (level === 'error') logged.push(`${message} ${JSON.stringify(fields)}`) } })
  const clients: RawClient[] = []
  const good = SignalChannel(NS, { url: yard.url })
  try {
    const echo = good.echo()
    const kv = good.kv()
    await within(Promise.all([echo.ready(), kv.ready()]), 3000, 'the good client\'s streams')
    const rand = seededRandom(SEED)
    const outcomes = new Map<string, number>()
    const cases = Number(process.env.HOSTILE_JSON_CASES ?? 8 * TARGETS.length)
    for (let n = 0; n < cases; n++) {
      const target = TARGETS[n % TARGETS.length]
      const value = drawValue(rand, yard.limits.maxFrame)
      const line = await runCase(yard, target, value, n, clients).catch((err: Error) => {
        // a case that hung because the server threw: say so
        if (crashes.length > 0) err.message += `\nthrown in the server's process: ${crashes[0]}`
        throw err
      })
      outcomes.set(line, (outcomes.get(line) ?? 0) + 1)
      assert.equal(crashes, [], `nothing thrown in the server's process (case ${n}, seed ${SEED})`)
      if (n % TARGETS.length === TARGETS.length - 1) {
        // the good client: its echo comes back, its kv write is applied
        const got = new Promise((resolve) => echo.once('data', resolve))
        echo.send(`good ${n}`)
        assert.is(await within(got, 3000, `the good client's echo after case ${n}`), `good ${n}`)
        await within(kv.set(`good-${n}`, n), 3000, `the good client's kv set after case ${n}`)
        assert.is(kv.get(`good-${n}`), n)
      }
    }
    // A newcomer's kv snapshot carries every value the cases stored (deep JSON included) and syncs.
    const late = SignalChannel(NS, { url: yard.url })
    try {
      const replica = late.kv()
      await within(replica.ready(), 5000, 'a new replica\'s snapshot of the namespace')
      assert.equal(replica.keys().filter((k) => k.startsWith('good-')).sort(), kv.keys().filter((k) => k.startsWith('good-')).sort())
      assert.ok(replica.keys().some((k) => k.startsWith('h')), 'the snapshot holds values the cases stored')
    } finally {
      late.close()
    }
    if (process.env.SHOW_OUTCOMES === '1') console.log([...outcomes].map(([k, v]) => `${v} × ${k}`).sort().join('\n'))
    assert.equal(crashes, [], `nothing thrown in the server's process (seed ${SEED})`)
    assert.equal(logged, [], `nothing logged at error level (seed ${SEED})`)
  } finally {
    process.off('uncaughtException', onCrash)
    process.off('unhandledRejection', onCrash)
    good.close()
    for (const c of clients) c.ws.terminate()
    await yard.close()
  }
})

test('a peers OPEN of ~10 KB with meta nested 5,000 deep, unauthenticated and first on its socket, is refused with a code', async () => {
  const crashes: string[] = []
  const onCrash = (err: unknown): void => { crashes.push(String((err as Error)?.stack ?? err)) }
  process.on('uncaughtException', onCrash)
  const yard = await startYard()
  const clients: RawClient[] = []
  try {
    const c = await rawClient(yard, clients)
    const meta = `{"ep":"peers","ns":"${NS}","id":"deep","key":"${KEY}","meta":${deep('deep-object', 5000, Math.random)}}`
    c.sendRaw(rawFrame(FrameType.Open, 1, Kind.None, enc.encode(meta)))
    const answer = await c.take((f) => f.id === 1 || (f.id === 0 && f.type === FrameType.Error), 2000, 'the answer to a 5,000-deep peers OPEN').catch((err: Error) => {
      if (crashes.length > 0) err.message += `\nthrown in the server's process: ${crashes[0]}`
      throw err
    })
    assert.equal(crashes, [], 'nothing thrown in the server\'s process')
    assert.ok(answer.type === FrameType.Closed || answer.type === FrameType.Error, `refused: ${show(answer.meta)}`)
    assert.ok(CODED.includes(String(answer.meta?.code)), `a coded refusal: ${show(answer.meta)}`)
    assert.is((await c.open(2, { ep: 'peers', ns: NS, id: 'shallow', key: KEY, meta: { ok: true } })).type, FrameType.Opened, 'the socket serves on')
  } finally {
    process.off('uncaughtException', onCrash)
    for (const c of clients) c.ws.terminate()
    await yard.close()
  }
})

test.run()

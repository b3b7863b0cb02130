// test/stun.test.ts — the STUN Binding responder (src/server/stun.ts, SPEC §8 "STUN") over real
// UDP on 127.0.0.1 (and ::1 where the machine has it): a Binding request gets a success response
// with its transaction id, an XOR-MAPPED-ADDRESS that decodes to the client socket's own address
// and port, and a valid FINGERPRINT; an unknown comprehension-required attribute gets 420; garbage
// gets nothing and the responder keeps answering; close() releases the port; respond() never
// throws on random or mutated input; a real WebRTC stack (node-datachannel, in its own process) gets
// its srflx candidate from us, and a real STUN client binary does too when the machine has one.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile, execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createSocket, type Socket } from 'node:dgram'
import { crc32 } from 'node:zlib'
import { MAX_DATAGRAM, respond, startStun, type StunServer } from '../src/server/stun.js'
import WebSocket from 'ws'
import { readFrame } from '../src/protocol/codec.js'
import { rawClient, type RawClient } from './raw-client.js'
import { fetchText, startYard } from './helpers.js'

const COOKIE = 0x2112a442

/** A STUN message: type, transaction id, attributes as [type, value] (padded here). */
function message (type: number, txid: Buffer, attributes: Array<[number, Buffer]> = [], fingerprint = false): Buffer {
  const parts = attributes.map(([t, v]) => {
    const a = Buffer.alloc(4 + Math.ceil(v.length / 4) * 4)
    a.writeUInt16BE(t, 0); a.writeUInt16BE(v.length, 2); v.copy(a, 4)
    return a
  })
  const body = Buffer.concat(parts)
  const head = Buffer.alloc(20)
  head.writeUInt16BE(type, 0)
  head.writeUInt16BE(body.length + (fingerprint ? 8 : 0), 2)
  head.writeUInt32BE(COOKIE, 4)
  txid.copy(head, 8)
  const msg = Buffer.concat([head, body])
  if (!fingerprint) return msg
  const fp = Buffer.alloc(8)
  fp.writeUInt16BE(0x8028, 0); fp.writeUInt16BE(4, 2); fp.writeUInt32BE((crc32(msg) ^ 0x5354554e) >>> 0, 4)
  return Buffer.concat([msg, fp])
}

const bindingRequest = (txid = randomBytes(12), attributes: Array<[number, Buffer]> = []): Buffer => message(0x0001, txid, attributes)

/** A parsed response: type, txid, attributes by type; asserts the framing and the FINGERPRINT. */
function parse (msg: Buffer): { type: number, txid: Buffer, attrs: Map<number, Buffer> } {
  assert.ok(msg.length >= 20, 'at least a header')
  assert.is(msg.readUInt16BE(2), msg.length - 20, 'length field matches the datagram')
  assert.is(msg.readUInt32BE(4), COOKIE, 'magic cookie')
  const attrs = new Map<number, Buffer>()
  const order: number[] = []
  let at = 20
  while (at < msg.length) {
    const type = msg.readUInt16BE(at)
    const len = msg.readUInt16BE(at + 2)
    attrs.set(type, msg.subarray(at + 4, at + 4 + len))
    order.push(type)
    if (type === 0x8028) assert.is(msg.readUInt32BE(at + 4), (crc32(msg.subarray(0, at)) ^ 0x5354554e) >>> 0, 'FINGERPRINT valid')
    at += 4 + Math.ceil(len / 4) * 4
  }
  assert.is(at, msg.length, 'attributes fill the message exactly')
  assert.is(order[order.length - 1], 0x8028, 'FINGERPRINT is last')
  return { type: msg.readUInt16BE(0), txid: msg.subarray(8, 20), attrs }
}

/** XOR-MAPPED-ADDRESS decoded back to text address and port. */
function xorMapped (value: Buffer, txid: Buffer): { address: string, port: number } {
  const port = value.readUInt16BE(2) ^ (COOKIE >>> 16)
  const mask = Buffer.concat([Buffer.from([0x21, 0x12, 0xa4, 0x42]), txid])
  const ip = Buffer.from(value.subarray(4).map((b, i) => b ^ mask[i]))
  if (value[1] === 0x01) return { address: [...ip].join('.'), port }
  assert.is(value[1], 0x02, 'family IPv6')
  const words = [...Array(8).keys()].map((i) => ip.readUInt16BE(i * 2).toString(16))
  return { address: words.join(':').replace(/(^|:)0(:0)+(:|$)/, '::'), port }
}

/** A client socket bound on `host`, collecting what it receives. */
async function client (host = '127.0.0.1'): Promise<{ socket: Socket, received: Buffer[], next: (ms?: number) => Promise<Buffer> }> {
  const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4')
  opened.push(async () => { try { socket.close() } catch {} })
  await new Promise<void>((resolve) => socket.bind(0, host, resolve))
  const received: Buffer[] = []
  const waiters: Array<(b: Buffer) => void> = []
  socket.on('message', (m) => { const w = waiters.shift(); if (w !== undefined) w(m); else received.push(m) })
  const next = async (ms = 1000): Promise<Buffer> => {
    const queued = received.shift()
    if (queued !== undefined) return queued
    return await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no STUN response within ${ms} ms`)), ms)
      waiters.push((b) => { clearTimeout(timer); resolve(b) })
    })
  }
  return { socket, received, next }
}

const send = async (socket: Socket, msg: Buffer, port: number, host = '127.0.0.1'): Promise<void> =>
  await new Promise((resolve, reject) => socket.send(msg, port, host, (err) => err != null ? reject(err) : resolve()))

let stun: StunServer
let answered = 0
/** What the running test opened; closed after it, passed or failed (a hanging handle is a bug). */
const opened: Array<() => Promise<void>> = []
test.after.each(async () => { for (const close of opened.splice(0)) await close() })
test.before(async () => { stun = await startStun({ port: 0, host: '127.0.0.1', onAnswered: () => answered++ }) })
test.after(async () => { await stun.close() })

test('a Binding request gets a success response that maps the client address (RFC 8489 §6.3, §14.2)', async () => {
  const c = await client()
  const before = answered
  const txid = randomBytes(12)
  await send(c.socket, bindingRequest(txid), stun.port)
  const res = parse(await c.next())
  assert.is(res.type, 0x0101)
  assert.equal(res.txid, txid)
  const mapped = res.attrs.get(0x0020)
  assert.ok(mapped !== undefined, 'XOR-MAPPED-ADDRESS present')
  assert.equal(xorMapped(mapped, txid), { address: '127.0.0.1', port: c.socket.address().port })
  assert.is(answered, before + 1, 'onAnswered once per answer')
})

test('optional attributes, credentials we ignore and a valid FINGERPRINT are answered', async () => {
  const c = await client()
  const txid = randomBytes(12)
  await send(c.socket, message(0x0001, txid, [[0x8022, Buffer.from('probe')], [0x0006, Buffer.from('user')]], true), stun.port)
  const res = parse(await c.next())
  assert.is(res.type, 0x0101)
  assert.equal(res.txid, txid)
})

test('an unknown comprehension-required attribute gets 420 with UNKNOWN-ATTRIBUTES (RFC 8489 §7.3.1)', async () => {
  const c = await client()
  const txid = randomBytes(12)
  const req = bindingRequest(txid, [[0x0003, Buffer.from([0, 0, 0, 6])], [0x8022, Buffer.from('x')], [0x7777, Buffer.alloc(0)]])
  await send(c.socket, req, stun.port)
  const raw = await c.next()
  const res = parse(raw)
  assert.is(res.type, 0x0111)
  assert.equal(res.txid, txid)
  const err = res.attrs.get(0x0009)
  assert.ok(err !== undefined)
  assert.is(err[2] * 100 + err[3], 420)
  assert.equal([...(res.attrs.get(0x000a) ?? [])], [0x00, 0x03, 0x77, 0x77])
  assert.ok(raw.length <= req.length * 3, `small answer (${raw.length} bytes for ${req.length})`)
})

test('garbage gets no answer, and the responder still answers a good request after it', async () => {
  const c = await client()
  const before = answered
  const good = bindingRequest()
  const withBadFingerprint = message(0x0001, randomBytes(12), [], true)
  withBadFingerprint[withBadFingerprint.length - 1] ^= 1
  const wrongCookie = bindingRequest(); wrongCookie.writeUInt32BE(0xdeadbeef, 4)
  const lengthTooLong = bindingRequest(); lengthTooLong.writeUInt16BE(4, 2)
  const lengthOdd = bindingRequest(randomBytes(12), [[0x8022, Buffer.from('abcd')]]); lengthOdd.writeUInt16BE(6, 2)
  const attrOverrun = bindingRequest(randomBytes(12), [[0x8022, Buffer.from('abcd')]]); attrOverrun.writeUInt16BE(9, 22)
  const trailing = Buffer.concat([bindingRequest(), Buffer.alloc(4)])
  const fingerprintNotLast = Buffer.concat([bindingRequest(), Buffer.alloc(8), Buffer.from([0x80, 0x22, 0, 0])]) // FINGERPRINT, then SOFTWARE
  fingerprintNotLast.writeUInt16BE(12, 2)
  fingerprintNotLast.writeUInt32BE(0x80280004, 20)
  fingerprintNotLast.writeUInt32BE((crc32(fingerprintNotLast.subarray(0, 20)) ^ 0x5354554e) >>> 0, 24) // a valid CRC, in the wrong place
  const huge = bindingRequest(randomBytes(12), [[0x8022, Buffer.alloc(65_000 - 24)]])
  const justOver = bindingRequest(randomBytes(12), [[0x8022, Buffer.alloc(MAX_DATAGRAM + 4 - 24)]])
  const garbage: Array<[string, Buffer]> = [
    ['random bytes', randomBytes(64)], ['random 20 bytes', randomBytes(20)], ['empty', Buffer.alloc(0)],
    ['Binding success response', message(0x0101, randomBytes(12))], ['Binding error response', message(0x0111, randomBytes(12))],
    ['Binding indication', message(0x0011, randomBytes(12))], ['Allocate request', message(0x0003, randomBytes(12))],
    ['wrong cookie', wrongCookie], ['truncated header', good.subarray(0, 12)], ['length past the datagram', lengthTooLong],
    ['bytes past the length', trailing], ['FINGERPRINT not last', fingerprintNotLast],
    ['length not a multiple of 4', lengthOdd], ['attribute overruns message', attrOverrun], ['bad FINGERPRINT', withBadFingerprint],
    ['64 KiB datagram', huge], [`${justOver.length} bytes (over ${MAX_DATAGRAM})`, justOver], ['HTTP', Buffer.from('GET / HTTP/1.1\r\n\r\n')]
  ]
  for (const [, msg] of garbage) await send(c.socket, msg, stun.port)
  await send(c.socket, good, stun.port)
  const res = parse(await c.next())
  assert.equal(res.txid, good.subarray(8, 20), 'the first answer is the good request\'s: every garbage datagram was dropped')
  assert.is(c.received.length, 0)
  assert.is(answered, before + 1)
})

test('respond() never throws and answers only well-formed Binding requests (fuzz)', () => {
  const sender = { address: '192.0.2.7', port: 5000 }
  const base = message(0x0001, randomBytes(12), [[0x8022, Buffer.from('fuzz')]], true)
  for (let i = 0; i < 20_000; i++) {
    let msg: Buffer
    if (i % 2 === 0) msg = randomBytes(i % 600)
    else { msg = Buffer.from(base); for (let k = 0; k < 1 + (i % 3); k++) msg[(i * 7 + k * 13) % msg.length] ^= 1 << (i % 8) }
    const out = respond(msg, sender)
    if (out !== null) {
      assert.is(msg.readUInt16BE(0), 0x0001, 'only requests are answered')
      assert.equal(out.subarray(8, 20), msg.subarray(8, 20))
    }
  }
  assert.equal(xorMapped(parse(respond(base, sender) as Buffer).attrs.get(0x0020) as Buffer, base.subarray(8, 20)), sender)
  const v6 = respond(base, { address: '2001:db8::1:2', port: 65535 }) as Buffer
  assert.equal(xorMapped(parse(v6).attrs.get(0x0020) as Buffer, base.subarray(8, 20)), { address: '2001:db8::1:2', port: 65535 })
  const mapped = respond(base, { address: '::ffff:198.51.100.9', port: 1 }) as Buffer
  assert.equal(xorMapped(parse(mapped).attrs.get(0x0020) as Buffer, base.subarray(8, 20)), { address: '198.51.100.9', port: 1 })
  assert.is(respond(base, { address: '192.0.2.7', port: 0 }), null, 'port 0 cannot be answered')
})

test('IPv6: a udp6 responder maps an IPv6 client (skipped without ::1)', async () => {
  let v6: StunServer
  try { v6 = await startStun({ port: 0, host: '::1' }); opened.push(v6.close) } catch (err) { console.log(`  skipped: cannot bind ::1 (${(err as Error).message})`); return }
  const c = await client('::1')
  const txid = randomBytes(12)
  await send(c.socket, bindingRequest(txid), v6.port, '::1')
  const res = parse(await c.next())
  assert.equal(xorMapped(res.attrs.get(0x0020) as Buffer, txid), { address: '::1', port: c.socket.address().port })
})

test('close() releases the port (twice is fine); a port in use rejects', async () => {
  const s = await startStun({ port: 0, host: '127.0.0.1' })
  opened.push(s.close)
  const clash = await startStun({ port: s.port, host: '127.0.0.1' }).then(() => null, (err: NodeJS.ErrnoException) => err.code)
  assert.is(clash, 'EADDRINUSE')
  await s.close()
  await s.close()
  const again = await startStun({ port: s.port, host: '127.0.0.1' })
  opened.push(again.close)
  assert.is(again.port, s.port)
})

test('a real WebRTC stack (node-datachannel / libjuice, own process) gathers its srflx candidate from us', async () => {
  const before = answered
  const code = `import nd from 'node-datachannel'
    const pc = new nd.PeerConnection('p', { iceServers: ['stun:127.0.0.1:${stun.port}'] })
    const end = () => { pc.close(); setTimeout(() => process.exit(0), 100) }
    pc.onLocalCandidate((c) => { console.log(c); if (/ typ srflx/.test(c)) end() })
    setTimeout(end, 2500)
    pc.createDataChannel('x')`
  // It stops at its srflx candidate, not at gathering 'complete': node-datachannel can report
  // 'complete' before candidates it already has (each arrives through its own callback queue).
  // Its own process, killed on a deadline: node-datachannel can freeze its process (MACHINE.md).
  const out = await new Promise<string>((resolve) => execFile(process.execPath, ['--input-type=module', '-e', code], { timeout: 3000, killSignal: 'SIGKILL' }, (_e, stdout) => resolve(stdout)))
  const srflx = /candidate:\S+ 1 UDP \d+ (\S+) (\d+) typ srflx/.exec(out)
  assert.ok(srflx !== null, `a srflx candidate:\n${out}`)
  const host = new RegExp(`UDP \\d+ \\S+ ${srflx[2]} typ host`).exec(out)
  assert.is(srflx[1], '127.0.0.1')
  assert.ok(host !== null, `srflx port ${srflx[2]} is the agent's own (host candidate) port:\n${out}`)
  assert.ok(answered > before)
})

test('a real STUN client binary (stunclient / turnutils_stunclient) gets its mapped address', async () => {
  const which = (bin: string): string | null => { try { return execFileSync('which', [bin], { encoding: 'utf8' }).trim() } catch { return null } }
  const bin = which('turnutils_stunclient') ?? which('stunclient')
  const before = answered
  if (bin === null) { console.log('  skipped: neither turnutils_stunclient (coturn) nor stunclient (stuntman) is installed'); return }
  const args = bin.endsWith('turnutils_stunclient') ? ['-p', String(stun.port), '127.0.0.1'] : ['--mode', 'basic', '127.0.0.1', String(stun.port)]
  const out = await new Promise<string>((resolve) => execFile(bin, args, { timeout: 1500 }, (_e, stdout, stderr) => resolve(stdout + stderr)))
  assert.match(out, /(reflexive addr|Mapped address): 127\.0\.0\.1:\d+/, `${bin} saw its mapped address:\n${out}`)
  assert.ok(answered > before)
})

test('a flood gets no more than the budget of answers (server-wide, monotonic), and answers resume after it refills', async () => {
  let answered = 0
  let dropped = 0
  const small = await startStun({ port: 0, host: '127.0.0.1', answersPerSecond: 50, onAnswered: () => answered++, onDropped: () => dropped++ })
  opened.push(() => small.close())
  const c = await client()
  // 400 requests as fast as they go (the kernel may drop some of them on the way in: UDP)
  for (let i = 0; i < 400; i++) await send(c.socket, bindingRequest(), small.port)
  await new Promise((resolve) => setTimeout(resolve, 300))
  assert.ok(answered >= 40 && answered <= 75, `${answered} answers to a burst of 400 (a bucket of 50, refilled 50/s)`)
  assert.ok(dropped >= 100, `${dropped} requests left unanswered and counted`)
  assert.is(c.received.length, answered)
  for (const bad of [0, -1, Number.NaN, Infinity]) {
    const refused = await startStun({ port: 0, host: '127.0.0.1', answersPerSecond: bad }).then(async (s) => { await s.close(); return null }, (err: unknown) => err)
    assert.instance(refused, TypeError, `answersPerSecond ${bad} is refused`)
  }
  await new Promise((resolve) => setTimeout(resolve, 1000))
  c.received.length = 0
  const txid = randomBytes(12)
  await send(c.socket, bindingRequest(txid), small.port)
  assert.equal(parse(await c.next()).txid, txid)
})

test('a yard with stun: its HELLO names stun:<the host the client used>:<port>, the port answers, /metrics counts it, close() frees it', async () => {
  const yard = await startYard({ host: '127.0.0.1', stun: { port: 0 }, iceServers: [{ urls: 'stun:stun.example.org:3478' }] })
  const clients: RawClient[] = []
  try {
    const port = yard.stunPort
    assert.ok(port !== null && port > 0)
    const raw = await rawClient(yard, clients)
    assert.equal(raw.hello.meta?.iceServers, [{ urls: 'stun:stun.example.org:3478' }, { urls: `stun:127.0.0.1:${port}` }])
    const c = await client()
    const txid = randomBytes(12)
    await send(c.socket, bindingRequest(txid), port)
    const res = parse(await c.next())
    assert.equal(xorMapped(res.attrs.get(0x0020) as Buffer, txid), { address: '127.0.0.1', port: c.socket.address().port })
    const metrics = await fetchText(yard.url.replace('ws:', 'http:') + 'metrics')
    assert.match(metrics.body, /^signalyard_stun_answered_total 1$/m)
    await yard.close()
    const again = await startStun({ port, host: '127.0.0.1' })
    await again.close()
  } finally {
    for (const c of clients) c.ws.terminate()
    await yard.close()
  }
})

test('a Host header that is not a plausible host name gets no stun: entry (it is the client\'s own, and is not kept)', async () => {
  const yard = await startYard({ host: '127.0.0.1', stun: { port: 0 } })
  const sockets: WebSocket[] = []
  try {
    for (const host of ['x'.repeat(4000), 'a b<script>', '[::1', 'yard.example.org:1:2:3']) {
      const ws = new WebSocket(yard.url, 'signalyard.2', { headers: { host } })
      sockets.push(ws)
      ws.binaryType = 'nodebuffer'
      const [data] = await new Promise<[Buffer]>((resolve, reject) => { ws.once('message', (d: Buffer) => resolve([d])); ws.once('error', reject) })
      const servers = readFrame(new Uint8Array(data))?.meta?.iceServers as Array<{ urls: string }>
      const expected = host.startsWith('yard.example.org') ? [{ urls: `stun:yard.example.org:${String(yard.stunPort)}` }] : []
      assert.equal(servers, expected, JSON.stringify(host.slice(0, 30)))
    }
  } finally {
    for (const ws of sockets) ws.terminate()
    await yard.close()
  }
})

test('publicHost replaces the host in the stun: URL', async () => {
  const yard = await startYard({ host: '127.0.0.1', stun: { port: 0 }, publicHost: 'stun.yard.example' })
  const clients: RawClient[] = []
  try {
    const raw = await rawClient(yard, clients)
    assert.equal(raw.hello.meta?.iceServers, [{ urls: `stun:stun.yard.example:${String(yard.stunPort)}` }])
  } finally {
    for (const c of clients) c.ws.terminate()
    await yard.close()
  }
})

test.run()

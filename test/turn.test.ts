// test/turn.test.ts — TURN REST credentials (SPEC §8): every connection gets them in HELLO
// (`<expiry>:<identity or connection id>`, base64 HMAC-SHA1 of the secret, as coturn's
// use-auth-secret checks), renewed by an ICE frame at half their life, picked up by the client for
// the next peer connection; the secret shows up nowhere (logs, metrics, frames).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile, spawn, spawnSync } from 'node:child_process'
import { createHmac } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { SignalChannel, type Channel, type RTCPeerConnectionConstructor } from 'signalyard'
import { createServer, turnCredential } from 'signalyard/server'
import { FrameType } from '../src/protocol/frames.js'
import { rawClient, type RawClient } from './raw-client.js'
import { fetchText, freePort, startYard, until } from './helpers.js'

/**
 * An RTCPeerConnection that records the configuration it is made with and then refuses to exist:
 * the pair stays on the server relay, and the test sees what iceServers a new pc got (the
 * initiator makes its first one once the relay is open).
 */
const configs: Array<{ iceServers?: Ice[] }> = []
const RecordingPC = class { constructor (config: { iceServers?: Ice[] }) { configs.push(config); throw new Error('recorded') } } as unknown as RTCPeerConnectionConstructor

const SECRET = 'turn-secret-that-must-never-leak-0123456789'
const URLS = ['turn:127.0.0.1:9?transport=udp', 'turn:127.0.0.1:9?transport=tcp']
const STATIC = { urls: 'stun:stun.example.org:3478' }

interface Ice { urls: string | string[], username?: string, credential?: string }
const turnOf = (servers: unknown): Ice => {
  const found = (servers as Ice[]).find((s) => Array.isArray(s.urls) && s.urls[0].startsWith('turn:'))
  assert.ok(found !== undefined, `a TURN entry in ${JSON.stringify(servers)}`)
  return found as Ice
}
/** What coturn computes for a username (use-auth-secret): checked independently of the server's code. */
const expected = (username: string): string => createHmac('sha1', SECRET).update(username).digest('base64')

test('HELLO carries TURN REST credentials for the connection, after the static iceServers', async () => {
  const lines: string[] = []
  const yard = await startYard({ iceServers: [STATIC], turn: { urls: URLS, secret: SECRET, ttl: 600 }, logger: (level, message, fields) => { lines.push(`${level} ${message} ${JSON.stringify(fields)}`) } })
  const clients: RawClient[] = []
  try {
    const before = Math.floor(Date.now() / 1000)
    const c = await rawClient(yard, clients)
    const servers = c.hello.meta?.iceServers as Ice[]
    assert.equal(servers[0], STATIC)
    const turn = turnOf(servers)
    assert.equal(turn.urls, URLS)
    const [expiry, who] = String(turn.username).split(':')
    assert.is(who, c.hello.meta?.conn, 'the connection id names an anonymous connection')
    assert.ok(Number(expiry) >= before + 600 && Number(expiry) <= Math.floor(Date.now() / 1000) + 600, `expiry ${expiry}`)
    assert.is(turn.credential, expected(String(turn.username)))
    assert.is(turnCredential(SECRET, String(turn.username)), turn.credential)
    const metrics = await fetchText(yard.url.replace('ws:', 'http:') + 'metrics')
    assert.match(metrics.body, /^signalyard_turn_credentials_total 1$/m)
    for (const text of [metrics.body, ...lines, JSON.stringify(c.hello.meta)]) assert.not.ok(text.includes(SECRET), 'the secret leaked')
  } finally {
    for (const c of clients) c.ws.terminate()
    await yard.close()
  }
})

test('an authenticated identity (a string) names the credentials of the pcs it makes', async () => {
  const yard = await startYard({
    turn: { urls: URLS, secret: SECRET },
    authenticate: (_req, token) => {
      if (token !== 'good') throw new Error(`bad token ${String(token)}`)
      return 'alice'
    }
  })
  const channels: Channel[] = []
  try {
    configs.length = 0
    const node = async (id: string): Promise<ReturnType<Channel['createNode']>> => {
      const channel = SignalChannel('turn', { url: `${yard.url}?c=${id}`, token: 'good', RTCPeerConnection: RecordingPC })
      channels.push(channel)
      const n = channel.createNode()
      await n.listen(id)
      return n
    }
    const a = await node('a')
    await node('b')
    await a.connect('b').ready()
    // the pair opens on the relay; the initiator makes its first RTCPeerConnection just after
    await until(() => configs.length >= 1, 2000, "a's RTCPeerConnection")
    const turn = turnOf(configs[0].iceServers)
    assert.match(String(turn.username), /^\d+:alice$/)
    assert.is(turn.credential, expected(String(turn.username)))
  } finally {
    for (const c of channels) c.close()
    await yard.close()
  }
})

test('credentials are renewed at half their life by an ICE frame, and new pcs use the fresh ones', async () => {
  const yard = await startYard({ turn: { urls: URLS, secret: SECRET, ttl: 2 } })
  const clients: RawClient[] = []
  const channels: Channel[] = []
  try {
    const c = await rawClient(yard, clients)
    const first = turnOf(c.hello.meta?.iceServers)
    const t0 = performance.now()
    const ice = await c.take((f) => f.type === FrameType.Ice, 3000, 'an ICE frame')
    const elapsed = performance.now() - t0
    assert.ok(elapsed >= 700 && elapsed < 2000, `renewed after ${Math.round(elapsed)} ms (half of 2 s, swept every 250 ms)`)
    const fresh = turnOf(ice.meta?.iceServers)
    assert.is(fresh.credential, expected(String(fresh.username)))
    assert.is(String(fresh.username).split(':')[1], String(first.username).split(':')[1])

    // bob's socket is renewed while it waits; the pc a later caller makes with it uses the new ones
    configs.length = 0
    const node = async (id: string): Promise<ReturnType<Channel['createNode']>> => {
      const channel = SignalChannel('turn', { url: `${yard.url}?c=${id}`, RTCPeerConnection: RecordingPC })
      channels.push(channel)
      const n = channel.createNode()
      await n.listen(id)
      return n
    }
    const bob = await node('bob')
    await node('carol')
    await node('dave')
    // bob connects: the pair opens on the relay, then bob (the initiator) makes its RTCPeerConnection
    await bob.connect('carol').ready()
    await until(() => configs.length >= 1, 2000, "bob's first RTCPeerConnection")
    const greeted = turnOf(configs[0].iceServers)
    await new Promise((resolve) => setTimeout(resolve, 1300))
    configs.length = 0
    await bob.connect('dave').ready()
    await until(() => configs.length >= 1, 2000, "bob's RTCPeerConnection after the renewal")
    const renewed = turnOf(configs[0].iceServers)
    assert.is(renewed.credential, expected(String(renewed.username)))
    const [greetedExpiry, bobConn] = String(greeted.username).split(':')
    const [renewedExpiry, sameConn] = String(renewed.username).split(':')
    assert.is(sameConn, bobConn)
    assert.ok(Number(renewedExpiry) > Number(greetedExpiry), `bob's new pc uses renewed credentials (${String(renewed.username)} after ${String(greeted.username)})`)
  } finally {
    for (const c of clients) c.ws.terminate()
    for (const c of channels) c.close()
    await yard.close()
  }
})

test('a TURN option that cannot work is refused when the yard starts', async () => {
  for (const turn of [
    { urls: [], secret: SECRET },
    { urls: ['http://turn.example.org'], secret: SECRET },
    { urls: URLS, secret: '' },
    { urls: URLS, secret: SECRET, ttl: 0 },
    { urls: URLS, secret: SECRET, ttl: 0.5 }
  ]) {
    let error: unknown = null
    try {
      const yard = await createServer({ port: 0, host: '127.0.0.1', turn })
      await yard.close()
    } catch (err) {
      error = err
    }
    assert.instance(error, TypeError, JSON.stringify({ ...turn, secret: turn.secret === '' ? '' : '…' }))
    assert.not.ok(String(error).includes(SECRET), 'the message does not quote the secret')
  }
})

test('without TURN: no credentials, no ICE frames, HELLO as before', async () => {
  const yard = await startYard({ iceServers: [STATIC] })
  const clients: RawClient[] = []
  try {
    const c = await rawClient(yard, clients)
    assert.equal(c.hello.meta?.iceServers, [STATIC])
    await new Promise((resolve) => setTimeout(resolve, 300))
    assert.not.ok(c.frames.some((f) => f.type === FrameType.Ice))
  } finally {
    for (const c of clients) c.ws.terminate()
    await yard.close()
  }
})

/** turnutils_uclient against coturn with `username`/`credential`: whether the allocation worked. */
function allocate (port: number, username: string, credential: string): Promise<{ ok: boolean, output: string }> {
  return new Promise((resolve) => {
    execFile('turnutils_uclient', ['-y', '-u', username, '-w', credential, '-p', String(port), '-n', '2', '-m', '1', '127.0.0.1'], { timeout: 10_000 }, (_err, stdout, stderr) => {
      const output = `${stdout}${stderr}`
      resolve({ ok: /Total lost packets 0 /.test(output) && !/Cannot complete Allocation/.test(output), output })
    })
  })
}

const HAVE_COTURN = spawnSync('sh', ['-c', 'command -v turnserver && command -v turnutils_uclient']).status === 0

test('a real coturn (use-auth-secret) allocates with the credentials from HELLO, and refuses altered ones', async () => {
  if (!HAVE_COTURN) {
    if (process.env.CI === 'true') assert.unreachable('coturn is missing (.ci/run installs it)')
    console.log('  skipped: coturn (turnserver, turnutils_uclient) is not installed here')
    return
  }
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'signalyard-turn-'))
  const turnserver = spawn('turnserver', ['-n', '--use-auth-secret', `--static-auth-secret=${SECRET}`, '--realm=signalyard.test',
    '--listening-ip=127.0.0.1', '--relay-ip=127.0.0.1', `--listening-port=${port}`, '--allow-loopback-peers',
    '--no-cli', '--no-tls', '--no-dtls', '--fingerprint', `--db=${join(dir, 'turndb')}`, '--log-file=stdout'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let log = ''
  turnserver.stdout.on('data', (d: Buffer) => { log += d.toString() })
  const yard = await startYard({ turn: { urls: [`turn:127.0.0.1:${port}?transport=udp`], secret: SECRET, ttl: 600 } })
  const clients: RawClient[] = []
  try {
    const deadline = performance.now() + 5000
    while (!/listener opened|Total General servers/.test(log) && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
    const c = await rawClient(yard, clients)
    const turn = turnOf(c.hello.meta?.iceServers)
    const good = await allocate(port, String(turn.username), String(turn.credential))
    assert.ok(good.ok, `coturn allocated with HELLO's credentials:\n${good.output.slice(-600)}`)
    // node-datachannel: its polyfill builds turn:user:pass@host URLs, so the client hands it the
    // credentials URI-encoded (a REST username has a ':'); with them it gets a relay candidate.
    const seen: Array<{ iceServers?: Ice[] }> = []
    const PolyfillLike = class {
      constructor (config: { iceServers?: Ice[] }) { seen.push(config); throw new Error('recorded') }
      selectedCandidatePair (): null { return null }
    } as unknown as RTCPeerConnectionConstructor
    const channel = SignalChannel('turn-nd', { url: `${yard.url}?c=nd`, RTCPeerConnection: PolyfillLike })
    try {
      const caller = channel.createNode()
      await caller.listen('bob')
      const other = SignalChannel('turn-nd', { url: `${yard.url}?c=nd2`, RTCPeerConnection: RecordingPC })
      try {
        await other.createNode().listen('carol')
        await caller.connect('carol').ready() // on the relay; then bob's pc is made (and refuses)
        await until(() => seen.length >= 1, 2000, "bob's RTCPeerConnection")
      } finally {
        other.close()
      }
    } finally {
      channel.close()
    }
    const given = turnOf(seen[0].iceServers)
    assert.match(String(given.username), /^\d+%3A[^:]+$/, 'the username is URI-encoded')
    assert.is(given.credential, encodeURIComponent(expected(decodeURIComponent(String(given.username)))), 'so is the credential')
    // Its own process (libdatachannel can freeze one), and not spawnSync: this process must keep
    // reading coturn's log meanwhile, or coturn blocks on a full pipe.
    const gathered = await new Promise<string>((resolve) => {
      execFile(process.execPath, [fileURLToPath(new URL('./fixtures/turn-gather.mjs', import.meta.url)),
        JSON.stringify({ iceServers: seen[0].iceServers, iceTransportPolicy: 'relay', bindAddress: '127.0.0.1' })], { timeout: 10_000 },
      (_err, stdout, stderr) => resolve(`${stdout}${stderr}`))
    })
    assert.match(gathered, /"type":"relay"/, `node-datachannel got a relay candidate from coturn with those credentials:\n${gathered}\n${JSON.stringify(seen[0])}`)

    const altered = await allocate(port, String(turn.username).replace(/^\d+/, (e) => String(Number(e) + 1)), String(turn.credential))
    assert.not.ok(altered.ok, 'coturn refused a username whose expiry was changed')
  } finally {
    for (const c of clients) c.ws.terminate()
    await yard.close()
    turnserver.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
})

test.run()

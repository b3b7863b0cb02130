// test/cli.test.ts — the `signalyard` command as an operator runs it: `node dist/cli.js` (and
// `npm start`) in a child process. What it prints, the flags and env it reads, /healthz on the
// same port, graceful stop on SIGINT/SIGTERM (clients see 1001), and its exit codes: 0 after a
// graceful stop, --help or --version, 1 when the port is busy, 2 on a bad flag; on stderr, Redis
// lost and Redis back. `npm test` builds dist first.
import { createHmac, randomBytes } from 'node:crypto'
import { createSocket as createUdpSocket } from 'node:dgram'
import { test } from 'uvu'
import { readFrame } from '../src/protocol/codec.js'
import * as assert from 'uvu/assert'
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer as createNetServer, Socket, type AddressInfo } from 'node:net'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import WebSocket from 'ws'
import { SignalChannel, type Channel } from 'signalyard'
import { startRedis } from './redis.js'
import { fetchText, freePort, next, until, within } from './helpers.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const LISTENING = /^signalyard listening on (ws:\/\/127\.0\.0\.1:(\d+)(\/\S*)) \(bound to [^\s,;)]+(, all interfaces)?(; [^)]+)?\)$/

/** The test's environment without the variables the CLI reads, plus `extra`. */
function cliEnv (extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra }
  for (const name of ['PORT', 'HOST', 'REDIS_URL']) if (!(name in extra)) delete env[name]
  return env
}

interface Run {
  child: ChildProcess
  stdout: () => string
  stderr: () => string
  /** Resolves with the exit code (null when killed by a signal) once the process has exited. */
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

function spawnCli (args: string[], env = cliEnv(), command = process.execPath, argv0: string[] = ['dist/cli.js']): Run {
  const child = spawn(command, [...argv0, ...args], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  let out = ''
  let err = ''
  child.stdout?.on('data', (d) => { out += d })
  child.stderr?.on('data', (d) => { err += d })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal }))
  })
  return { child, stdout: () => out, stderr: () => err, exited }
}

/** Kill the whole process group if it is still there (cleanup after a failed assertion). */
function kill (run: Run): void {
  try { process.kill(-(run.child.pid as number), 'SIGKILL') } catch { /* already gone */ }
}

/** Wait for the listening line; returns the URL and port it names. */
async function listening (run: Run, ms = 5000): Promise<{ url: string, port: number, path: string }> {
  let match: RegExpExecArray | null = null
  await until(() => {
    if (run.child.exitCode !== null) throw new Error(`the CLI exited (${run.child.exitCode}) before listening: ${run.stderr()}`)
    for (const line of run.stdout().split('\n')) {
      match = LISTENING.exec(line)
      if (match !== null) return true
    }
    return false
  }, ms, 'listening line')
  const m = match as unknown as RegExpExecArray
  return { url: m[1], port: Number(m[2]), path: m[3] }
}

/** Exit within `ms`, or reject. */
async function exitWithin (run: Run, ms: number): Promise<{ code: number | null, signal: NodeJS.Signals | null }> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`the CLI did not exit within ${ms} ms; stderr: ${run.stderr()}`)), ms) })
  try {
    return await Promise.race([run.exited, timeout])
  } finally {
    clearTimeout(timer)
  }
}

async function healthz (port: number): Promise<{ status: string, connections: number, namespaces: number }> {
  const res = await fetchText(`http://127.0.0.1:${port}/healthz`)
  assert.is(res.status, 200)
  assert.match(res.type, 'application/json')
  return JSON.parse(res.body)
}

/** A raw client speaking signalyard.2 (no reconnect): shows the close code the server sends. */
async function rawClient (url: string): Promise<WebSocket> {
  const ws = new WebSocket(url, 'signalyard.2')
  await next(ws as any, 'open')
  return ws
}

test('--port 0 prints exactly one line with the URL, and /healthz answers on that port', async () => {
  const run = spawnCli(['--port', '0'])
  try {
    const { url, port, path } = await listening(run)
    assert.ok(port > 0 && port < 65536, `a real port: ${port}`)
    assert.is(path, '/')
    assert.match(run.stdout(), new RegExp(`^signalyard listening on ${url} \\(bound to (0\\.0\\.0\\.0|\\[::\\]):${port}, all interfaces\\)\n$`), 'stdout is exactly the listening line, saying it listens on every interface')
    const health = await healthz(port)
    assert.equal(health, { status: 'ok', connections: 0, namespaces: 0 })
    const root = await fetchText(`http://127.0.0.1:${port}/`)
    assert.is(root.status, 426, 'plain GET on the WebSocket path asks for an upgrade')
  } finally {
    kill(run)
  }
})

test('/healthz counts a connected SignalChannel client and its namespace, then forgets it', async () => {
  const run = spawnCli(['--port', '0', '--host', '127.0.0.1'])
  try {
    const { url, port } = await listening(run)
    const channel = SignalChannel('cli-health', { url })
    try {
      await channel.echo().ready()
      const health = await healthz(port)
      assert.equal(health, { status: 'ok', connections: 1, namespaces: 1 })
    } finally {
      channel.close()
    }
    let after = await healthz(port)
    await until(async () => (after = await healthz(port)).connections === 0, 2000, 'connections back to 0')
    assert.equal(after, { status: 'ok', connections: 0, namespaces: 0 })
  } finally {
    kill(run)
  }
})

test('PORT from the environment sets the port', async () => {
  const port = await freePort()
  const run = spawnCli([], cliEnv({ PORT: String(port), HOST: '127.0.0.1' }))
  try {
    const got = await listening(run)
    assert.is(got.port, port)
    assert.is(run.stdout(), `signalyard listening on ws://127.0.0.1:${port}/ (bound to 127.0.0.1:${port})\n`, 'HOST=127.0.0.1: bound to loopback only, and it says so')
    assert.is((await healthz(port)).status, 'ok')
  } finally {
    kill(run)
  }
})

test('--port wins over PORT', async () => {
  const port = await freePort()
  const run = spawnCli(['--port', String(port), '--host', '127.0.0.1'], cliEnv({ PORT: 'not-a-port' }))
  try {
    assert.is((await listening(run)).port, port)
  } finally {
    kill(run)
  }
})

test('--host 127.0.0.1 listens on loopback and says so in the URL', async () => {
  const run = spawnCli(['--host', '127.0.0.1', '--port', '0'])
  try {
    const { url, port } = await listening(run)
    assert.is(url, `ws://127.0.0.1:${port}/`)
    assert.is((await healthz(port)).status, 'ok')
  } finally {
    kill(run)
  }
})

test('--path /yard serves the WebSocket endpoint at /yard only', async () => {
  const run = spawnCli(['--path', '/yard', '--port', '0', '--host', '127.0.0.1'])
  try {
    const { url, port, path } = await listening(run)
    assert.is(path, '/yard')
    assert.is(url, `ws://127.0.0.1:${port}/yard`)
    const channel = SignalChannel('cli-path', { url })
    try {
      const echo = channel.echo()
      await echo.ready()
      const got = next(echo, 'data')
      echo.send('through /yard')
      assert.is((await got)[0], 'through /yard')
    } finally {
      channel.close()
    }
    // An upgrade at / is not the endpoint any more.
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`, 'signalyard.2')
    ws.on('error', () => {})
    const [, res] = await next(ws as any, 'unexpected-response')
    assert.is(res.statusCode, 404)
    ws.terminate()
    assert.is((await healthz(port)).status, 'ok', '/healthz stays at the root')
  } finally {
    kill(run)
  }
})

test('--y-webrtc-path and --peerjs-path move the compat endpoints, "off" switches one off; by default both are there', async () => {
  const answers = async (url: string, hello: object): Promise<unknown> => {
    const ws = new WebSocket(url)
    ws.on('error', () => {})
    try {
      const first = new Promise((resolve) => { ws.once('message', (d) => resolve(JSON.parse(d.toString()))); ws.once('unexpected-response', () => resolve('refused')); ws.once('close', () => resolve('closed')) })
      ws.once('open', () => ws.send(JSON.stringify(hello)))
      return await first
    } finally {
      ws.terminate()
    }
  }
  const moved = spawnCli(['--port', '0', '--host', '127.0.0.1', '--y-webrtc-path', '/yjs', '--peerjs-path', 'off'])
  const plain = spawnCli(['--port', '0', '--host', '127.0.0.1'])
  try {
    const m = await listening(moved)
    const p = await listening(plain)
    assert.equal(await answers(`ws://127.0.0.1:${m.port}/yjs`, { type: 'ping' }), { type: 'pong' })
    assert.is(await answers(`ws://127.0.0.1:${m.port}/y-webrtc`, { type: 'ping' }), 'refused')
    assert.is(await answers(`ws://127.0.0.1:${m.port}/peerjs/peerjs?key=peerjs&id=a&token=t`, {}), 'refused')
    assert.equal(await answers(`ws://127.0.0.1:${p.port}/y-webrtc`, { type: 'ping' }), { type: 'pong' })
    assert.equal(await answers(`ws://127.0.0.1:${p.port}/peerjs/peerjs?key=peerjs&id=a&token=t`, { type: 'HEARTBEAT' }), { type: 'OPEN' })
  } finally {
    kill(moved)
    kill(plain)
  }
  const bad = spawnCli(['--port', '0', '--y-webrtc-path', 'yjs'])
  assert.is((await exitWithin(bad, 5000)).code, 2)
  assert.match(bad.stderr(), '--y-webrtc-path is a path starting with /')
})

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  test(`${signal}: clients get close code 1001 and the CLI exits 0 within 2 s`, async () => {
    const run = spawnCli(['--port', '0', '--host', '127.0.0.1'])
    try {
      const { url } = await listening(run)
      const ws = await rawClient(url)
      const closed = next(ws as any, 'close', 2000)
      const started = Date.now()
      run.child.kill(signal)
      const [code, reason] = await closed
      assert.is(code, 1001, 'close code 1001 (going away)')
      assert.type(String(reason), 'string')
      const exit = await exitWithin(run, 2000 - (Date.now() - started))
      assert.equal(exit, { code: 0, signal: null }, `exit 0 after ${signal}; stderr: ${run.stderr()}`)
      assert.is(run.stdout().split('\n').filter(Boolean).length, 1, 'still only the listening line on stdout')
    } finally {
      kill(run)
    }
  })
}

test('SIGTERM with a SignalChannel client connected: it exits 0 within 2 s', async () => {
  const run = spawnCli(['--port', '0', '--host', '127.0.0.1'])
  const states: string[] = []
  let channel: ReturnType<typeof SignalChannel> | null = null
  try {
    const { url } = await listening(run)
    channel = SignalChannel('cli-stop', { url, reconnect: { minDelay: 50, maxDelay: 100 } })
    channel.on('state', (state) => states.push(state))
    await channel.kv().ready()
    const started = Date.now()
    run.child.kill('SIGTERM')
    const exit = await exitWithin(run, 2000)
    assert.equal(exit, { code: 0, signal: null }, `exited 0 in ${Date.now() - started} ms`)
    await until(() => states.includes('reconnecting'), 2000, 'client noticed and is reconnecting')
  } finally {
    channel?.close()
    kill(run)
  }
})

test('SIGTERM with a client that never answers the close frame: still exits 0 within 2 s', async () => {
  const run = spawnCli(['--port', '0', '--host', '127.0.0.1'])
  const socket = new Socket()
  try {
    const { port } = await listening(run)
    // A hand-made upgrade; afterwards this client reads but never sends a close frame back.
    await new Promise<void>((resolve, reject) => socket.connect(port, '127.0.0.1', resolve).once('error', reject))
    let received = ''
    socket.on('data', (d) => { received += d.toString('latin1') })
    socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Key: c2lnbmFseWFyZCB0ZXN0IQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: signalyard.2\r\n\r\n')
    await until(() => received.startsWith('HTTP/1.1 101'), 2000, 'upgraded')
    const started = Date.now()
    run.child.kill('SIGTERM')
    const exit = await exitWithin(run, 2000)
    assert.equal(exit, { code: 0, signal: null }, `exited 0 in ${Date.now() - started} ms`)
  } finally {
    socket.destroy()
    kill(run)
  }
})

const badFlags: Array<[string[], RegExp[]]> = [
  [['--bogus'], [/--bogus/]],
  [['--port', 'abc'], [/--port/, /abc/]],
  [['--port', '99999'], [/--port/, /99999/]],
  [['--port=-1'], [/--port/, /-1/]],
  [['--port', '80.5'], [/--port/, /80\.5/]],
  [['--port', '0x50'], [/--port/, /0x50/]],
  [['--port', ''], [/--port/]],
  [['--port'], [/--port/]],
  [['extra-argument'], [/extra-argument/]]
]
for (const [args, patterns] of badFlags) {
  test(`bad flag ${args.join(' ')}: exit 2 with a message naming the problem`, async () => {
    const run = spawnCli(args)
    try {
      const { code } = await exitWithin(run, 5000)
      assert.is(code, 2)
      for (const p of patterns) assert.match(run.stderr(), p)
      assert.match(run.stderr(), /usage: signalyard/)
      assert.is(run.stdout(), '', 'nothing on stdout')
    } finally {
      kill(run)
    }
  })
}

test('bad PORT in the environment: exit 2 naming PORT', async () => {
  const run = spawnCli([], cliEnv({ PORT: 'eighty' }))
  try {
    const { code } = await exitWithin(run, 5000)
    assert.is(code, 2)
    assert.match(run.stderr(), /PORT/)
    assert.match(run.stderr(), /eighty/)
  } finally {
    kill(run)
  }
})

test('--turn-url with TURN_SECRET from the environment: HELLO carries TURN credentials; the secret is in no output', async () => {
  const secret = 'cli-turn-secret-0123456789abcdef'
  const run = spawnCli(['--port', '0', '--host', '127.0.0.1', '--turn-url', 'turn:127.0.0.1:9?transport=udp', '--turn-url', 'turn:127.0.0.1:9?transport=tcp'], cliEnv({ TURN_SECRET: secret }))
  try {
    const { url } = await listening(run)
    const ws = new WebSocket(url, 'signalyard.2')
    ws.binaryType = 'nodebuffer'
    const [data] = await next(ws as any, 'message')
    const hello = readFrame(new Uint8Array(data as Buffer))
    const servers = hello?.meta?.iceServers as Array<{ urls: string[], username: string, credential: string }>
    assert.equal(servers[0].urls, ['turn:127.0.0.1:9?transport=udp', 'turn:127.0.0.1:9?transport=tcp'])
    assert.is(servers[0].credential, createHmac('sha1', secret).update(servers[0].username).digest('base64'))
    ws.close()
    assert.not.ok(run.stdout().includes(secret) || run.stderr().includes(secret), 'the secret is not printed')
  } finally {
    kill(run)
  }
})

test('--stun-port: the listening line names the STUN port, and it answers a Binding request', async () => {
  const stunPort = await freePort()
  const run = spawnCli(['--port', '0', '--host', '127.0.0.1', '--stun-port', String(stunPort)])
  try {
    await listening(run)
    assert.match(run.stdout(), new RegExp(`STUN on UDP port ${stunPort}`))
    const socket = createUdpSocket('udp4')
    try {
      const request = Buffer.alloc(20)
      request.writeUInt16BE(0x0001, 0)
      request.writeUInt32BE(0x2112a442, 4)
      randomBytes(12).copy(request, 8)
      const answer = new Promise<Buffer>((resolve) => socket.once('message', resolve))
      socket.send(request, stunPort, '127.0.0.1')
      const res = await within(answer, 2000, 'a STUN answer')
      assert.is(res.readUInt16BE(0), 0x0101)
    } finally {
      socket.close()
    }
  } finally {
    kill(run)
  }
})

test('TURN flags that do not go together: exit 2 with a message', async () => {
  for (const [args, env, says] of [
    [['--turn-url', 'turn:127.0.0.1:9'], {}, /--turn-secret/],
    [['--turn-secret', 'x'], {}, /--turn-url/],
    [['--turn-url', 'http://example.org', '--turn-secret', 'x'], {}, /turn: or turns:/],
    [['--turn-url', 'turn:127.0.0.1:9', '--turn-ttl', '5'], { TURN_SECRET: 'x' }, /--turn-ttl/]
  ] as Array<[string[], Record<string, string>, RegExp]>) {
    const run = spawnCli(['--port', '0', ...args], cliEnv(env))
    try {
      const { code } = await exitWithin(run, 5000)
      assert.is(code, 2, args.join(' '))
      assert.match(run.stderr(), says)
    } finally {
      kill(run)
    }
  }
})

test('a busy port: exit 1 with a message saying the port is in use', async () => {
  const blocker = createNetServer()
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
  const { port } = blocker.address() as AddressInfo
  const run = spawnCli(['--host', '127.0.0.1', '--port', String(port)])
  try {
    const { code } = await exitWithin(run, 5000)
    assert.is(code, 1)
    assert.match(run.stderr(), /in use/)
    assert.match(run.stderr(), String(port))
    assert.is(run.stdout(), '', 'no listening line')
  } finally {
    kill(run)
    await new Promise<void>((resolve) => blocker.close(() => resolve()))
  }
})

test('--help: exit 0 and the usage on stdout', async () => {
  for (const flag of ['--help', '-h']) {
    const run = spawnCli([flag])
    try {
      const { code } = await exitWithin(run, 5000)
      assert.is(code, 0)
      const out = run.stdout()
      assert.match(out, /^usage: signalyard/)
      for (const option of ['--port', '--host', '--path', '--redis', 'PORT', '--version']) assert.match(out, option)
      assert.is(run.stderr(), '')
    } finally {
      kill(run)
    }
  }
})

test('--version and -v: the version from package.json on stdout, exit 0, even among other flags', async () => {
  const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
  assert.match(version, /^\d+\.\d+\.\d+/)
  for (const args of [['--version'], ['-v'], ['--port', '0', '--version']]) {
    const run = spawnCli(args)
    try {
      const { code } = await exitWithin(run, 5000)
      assert.is(code, 0, args.join(' '))
      assert.is(run.stdout(), `${version}\n`, `${args.join(' ')}: only the version`)
      assert.is(run.stderr(), '')
    } finally {
      kill(run)
    }
  }
})

test('--redis: when Redis is lost the CLI says so on stderr, and says when it is back and how long it was down', async () => {
  const redis = await startRedis()
  const run = spawnCli(['--port', '0', '--host', '127.0.0.1', '--redis', redis.url])
  try {
    const { port } = await listening(run)
    assert.is(run.stderr(), '', 'nothing logged while Redis is up')
    await redis.restart(300)
    const back = /^signalyard: broker available \{"reason":"redis recovered after (\d+) ms"\}$/m
    await until(() => back.test(run.stderr()), 10_000, `the recovery line; stderr: ${run.stderr()}`)
    const lines = run.stderr().split('\n')
    const lost = lines.findIndex((l) => l.startsWith('signalyard: broker unavailable'))
    const recovered = lines.findIndex((l) => back.test(l))
    assert.ok(lost >= 0 && lost < recovered, `the loss is logged before the recovery: ${run.stderr()}`)
    assert.ok(Number(back.exec(run.stderr())?.[1]) >= 250, 'down at least as long as Redis was away (300 ms)')
    await until(async () => (await fetchText(`http://127.0.0.1:${port}/healthz`)).status === 200, 5000, '/healthz ok again')
    assert.is(run.stdout().split('\n').filter(Boolean).length, 1, 'stdout is still only the listening line')
  } finally {
    kill(run)
    await redis.stop()
  }
})

test('--redis URL and REDIS_URL: two CLI servers share one Redis (a message published on one reaches a subscriber on the other); SIGTERM leaves no key behind', async () => {
  const redis = await startRedis()
  const runs = [
    spawnCli(['--port', '0', '--host', '127.0.0.1', '--redis', redis.url]),
    spawnCli(['--port', '0', '--host', '127.0.0.1'], cliEnv({ REDIS_URL: redis.url }))
  ]
  const channels: Channel[] = []
  try {
    const [a, b] = await Promise.all(runs.map(async (run) => await listening(run)))
    assert.is((await healthz(a.port)).status, 'ok')
    channels.push(SignalChannel('cli', { url: b.url }), SignalChannel('cli', { url: a.url }))
    const [sub, pub] = channels.map((c) => c.echo())
    await Promise.all([sub.ready(), pub.ready()])
    const got = next(sub, 'data', 2000)
    pub.send('across processes')
    assert.is((await got)[0], 'across processes')
    for (const c of channels) c.close()
    for (const run of runs) run.child.kill('SIGTERM')
    for (const run of runs) assert.is((await exitWithin(run, 5000)).code, 0)
    assert.equal(await redis.keys(), [], 'no key left in Redis')
  } finally {
    for (const c of channels) c.close()
    for (const run of runs) kill(run)
    await redis.stop()
  }
})

test('--redis with no Redis there: exits non-zero with a message naming the URL, and does not pretend to serve', async () => {
  const port = await freePort()
  for (const [args, env] of [[['--redis', `redis://127.0.0.1:${port}`], cliEnv()], [['--port', '0'], cliEnv({ REDIS_URL: `redis://127.0.0.1:${port}` })]] as const) {
    const run = spawnCli([...args], env)
    try {
      const { code } = await exitWithin(run, 5000)
      assert.ok(code !== null && code !== 0, `non-zero exit, got ${code}`)
      assert.match(run.stderr(), `cannot connect to Redis at redis://127.0.0.1:${port}`)
      assert.not.match(run.stdout(), /listening/, 'it does not pretend to serve')
    } finally {
      kill(run)
    }
  }
})

test('npm start runs the same CLI and forwards its arguments', async () => {
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
  const run = spawnCli(['start', '--', '--port', '0', '--host', '127.0.0.1'], cliEnv(), npm, [])
  try {
    const { port } = await listening(run, 10_000)
    assert.is((await healthz(port)).status, 'ok')
    process.kill(-(run.child.pid as number), 'SIGINT')
    await exitWithin(run, 5000)
    await until(async () => {
      try { await fetchText(`http://127.0.0.1:${port}/healthz`); return false } catch { return true }
    }, 2000, 'the server stopped listening')
  } finally {
    kill(run)
  }
})

test.run()

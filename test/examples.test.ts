// test/examples.test.ts — the examples run as their headers say (`node examples/<name>/index.mjs`
// from the repository root): each one exits 0 by itself (no hanging handles) within 15 s and
// prints the lines it promises. Also runs them against a separately started server through
// SIGNALYARD_URL. `npm test` builds dist first (the examples import the built package by name).
//
// The browser examples (examples/chat, examples/video-call) have their own files: test/chat.test.ts,
// test/video-call.test.ts.
//
// Network: 127.0.0.1 only. The Node examples' WebRTC (node-datachannel, bindAddress 127.0.0.1)
// gathers loopback candidates only, so no network namespace is needed here (the browser files
// make one for Chromium, which gathers candidates on every interface).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { SignalChannel } from 'signalyard'
import { startYard, until } from './helpers.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'

/** What an example must print: a check over its non-empty stdout lines. */
interface Example {
  name: string
  args?: string[]
  check: (lines: string[]) => void
  /** WebSockets it holds at once (each of its peers has its own): seen on a server given by SIGNALYARD_URL. */
  sockets?: number
  /**
   * It needs its own server (its point is the server's authenticate/authorize options, which a
   * server started elsewhere does not have): left out of the SIGNALYARD_URL run.
   */
  ownServer?: true
}

/** Exactly these lines, in this order. */
const exactly = (...patterns: RegExp[]) => (lines: string[]): void => {
  assert.is(lines.length, patterns.length, `printed lines:\n${lines.join('\n')}`)
  patterns.forEach((pattern, i) => assert.match(lines[i], pattern))
}

const TRANSPORTS = /^(webrtc|relay|relay\+webrtc)$/

/**
 * examples/channel: a first line naming the transport, one line per greeting — every ordered pair
 * of the n peers exactly once, each greeting addressed to its receiver — and the summary, whose
 * transports are the ones the greetings used. `rtc`: node-datachannel was used, so the greetings
 * go over WebRTC (the relay only where a connection fell back); else all over the relay.
 */
const meshOf = (n: number, first: RegExp, rtc: boolean) => (lines: string[]): void => {
  assert.is(lines.length, n * (n - 1) + 2, `printed lines:\n${lines.join('\n')}`)
  assert.match(lines[0], first)
  const pairs = new Set<string>()
  const used = new Set<string>()
  for (const line of lines.slice(1, -1)) {
    const m = /^(peer-\d+) got "hello \1, this is (peer-\d+)" from \2 over (webrtc|relay)$/.exec(line)
    assert.ok(m, `a greeting line: ${line}`)
    const [, to, from, transport] = m as RegExpExecArray
    assert.is.not(to, from)
    assert.not.ok(pairs.has(`${from}>${to}`), `one greeting from ${from} to ${to}: ${line}`)
    pairs.add(`${from}>${to}`)
    used.add(transport)
  }
  assert.is(pairs.size, n * (n - 1), 'every ordered pair greeted')
  if (rtc) assert.ok(used.has('webrtc'), `greetings went over WebRTC:\n${lines.join('\n')}`)
  else assert.equal([...used], ['relay'], 'every greeting went through the relay')
  const summary = new RegExp(`^mesh of ${n}: ${n * (n - 1)}/${n * (n - 1)} greetings over (\\S+)$`).exec(lines[lines.length - 1])
  assert.ok(summary, `the summary line: ${lines[lines.length - 1]}`)
  assert.match(summary[1], TRANSPORTS)
  assert.is(summary[1], [...used].sort().join('+'), 'the summary names the transports used')
}

/**
 * examples/star: the transport line; per spoke one "connected", one "got the news" and one "hub
 * got the answer" line, in that order for each spoke; the summary.
 */
const starOf = (n: number, first: RegExp, rtc: boolean) => (lines: string[]): void => {
  assert.is(lines.length, 3 * n + 2, `printed lines:\n${lines.join('\n')}`)
  assert.match(lines[0], first)
  const at = (pattern: RegExp): Map<string, number> => {
    const found = new Map<string, number>()
    lines.forEach((line, i) => {
      const m = pattern.exec(line)
      if (m === null) return
      assert.not.ok(found.has(m[1]), `one such line per spoke: ${line}`)
      found.set(m[1], i)
    })
    assert.is(found.size, n, `${n} lines like ${pattern}:\n${lines.join('\n')}`)
    return found
  }
  const used = new Set(lines.map((l) => /^hub: spoke-\d+ connected over (\w+)$/.exec(l)?.[1]).filter((t) => t !== undefined))
  const connected = at(/^hub: (spoke-\d+) connected over (?:webrtc|relay)$/)
  const got = at(new RegExp(`^(spoke-\\d+) got "news for everyone \\(${n} spokes\\)" from hub$`))
  const answered = at(/^hub got "(spoke-\d+) read the news" from \1$/)
  for (const [spoke, i] of connected) {
    assert.ok(i < (got.get(spoke) ?? -1) && (got.get(spoke) ?? -1) < (answered.get(spoke) ?? -1), `${spoke}: connected, got the news, answered`)
  }
  if (rtc) assert.ok(used.has('webrtc'), `spokes connected over WebRTC:\n${lines.join('\n')}`)
  else assert.equal([...used], ['relay'])
  assert.is(lines[lines.length - 1], `star of ${n} spokes: broadcast reached ${n}/${n}, ${n}/${n} answers over ${[...used].sort().join('+')}`)
}

/**
 * examples/file-transfer: what was sent, the backpressure waits (`minWaits` at least), and the
 * receiver's verdict: size, throughput, transport, a matching SHA-256 (its first 8 hex digits
 * `sha8`, when the test knows the content).
 */
const transferOf = (first: RegExp, sending: RegExp, received: RegExp, minWaits: number, sha8?: string) => (lines: string[]): void => {
  exactly(first, sending, /^sender: done, waited for 'drain' \d+ times$/, received)(lines)
  const waits = Number(/(\d+) times$/.exec(lines[2])?.[1])
  assert.ok(waits >= minWaits, `the sender waited for 'drain' at least ${minWaits} time(s): ${lines[2]}`)
  const m = /, sha256 ok \(([0-9a-f]{8})…\)$/.exec(lines[3])
  assert.ok(m, `sha256 ok: ${lines[3]}`)
  if (sha8 !== undefined) assert.is(m[1], sha8, 'the receiver hashed the file\'s own bytes')
}

const RTC_LINE = /^transport: webrtc \(node-datachannel\)$/
const RECEIVED_32 = /^received 32\.0 MiB in \d+\.\d\d s: \d+\.\d MB\/s over (webrtc|relay), sha256 ok \([0-9a-f]{8}…\)$/

const EXAMPLES: Example[] = [
  { name: 'echo', check: exactly(/^got offer this is an offer from peer peer id #222$/) },
  { name: 'kv', check: exactly(new RegExp(`^update some key some value ${UUID}$`), /^m1 and m2 agree: true$/) },
  { name: 'relay', check: exactly(/^relay message hello! relay$/) },
  { name: 'channel', check: meshOf(4, RTC_LINE, true), sockets: 4 },
  { name: 'star', check: starOf(5, RTC_LINE, true), sockets: 6 },
  {
    name: 'file-transfer',
    // 32 MiB written in one go against a 1 MiB high-water mark: send() must have said "wait".
    check: transferOf(RTC_LINE, /^sending 32\.0 MiB \(32 MiB of pseudo-random bytes\) in 512 chunk\(s\) of 64 KiB$/, RECEIVED_32, 1),
    sockets: 2
  },
  {
    name: 'auth',
    check: exactly(
      /^alice in room-a: echoed "hello from alice"$/,
      /^alice in room-b: refused \(forbidden\); her connection stays open$/,
      /^tampered token: refused at connect \(unauthorized; server log: bad signature\); 1 connection attempt, the client gave up$/,
      /^expired token: refused at connect \(unauthorized; server log: token expired\)$/,
      /^auth example: 1 admitted, 3 refused as expected$/),
    ownServer: true
  }
]

interface Outcome { code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string, ms: number }

/**
 * Run an example as a user would (`node [nodeArgs] examples/<name>/index.mjs [args]`); kill it
 * (and fail) after `ms`.
 */
function runExample (name: string, env: Record<string, string> = {}, ms = 15_000, args: string[] = [], nodeArgs: string[] = []): Promise<Outcome> {
  const started = Date.now()
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env }
  if (!('SIGNALYARD_URL' in env)) delete childEnv.SIGNALYARD_URL
  delete childEnv.PORT
  const child = spawn(process.execPath, [...nodeArgs, `examples/${name}/index.mjs`, ...args], { cwd: root, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => { stdout += d })
  child.stderr.on('data', (d) => { stderr += d })
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      stderr += `\n[test] killed after ${ms} ms: the example did not exit by itself`
      child.kill('SIGKILL')
    }, ms)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started })
    })
  })
}

function assertOutput (example: Example, out: Outcome): void {
  assert.is(out.code, 0, `examples/${example.name} exits 0 (signal ${out.signal}); stdout:\n${out.stdout}\nstderr:\n${out.stderr}`)
  example.check(out.stdout.split('\n').filter((l) => l !== ''))
}

for (const example of EXAMPLES) {
  test(`examples/${example.name}: runs on its own embedded server, prints its result and exits 0`, async () => {
    const out = await runExample(example.name, {}, 15_000, example.args)
    assertOutput(example, out)
  })

  test(`examples/${example.name}: its header says what it shows and the command that runs it`, () => {
    const source = readFileSync(`${root}examples/${example.name}/index.mjs`, 'utf8')
    const header = source.split('\n').filter((l) => l.startsWith('//')).join('\n')
    assert.match(header, `node examples/${example.name}/index.mjs`)
    assert.match(header, 'SIGNALYARD_URL')
    assert.match(source, /from 'signalyard'/)
    assert.match(source, /from 'signalyard\/server'/)
  })
}

test('the examples run against a separately started server through SIGNALYARD_URL', async () => {
  const yard = await startYard()
  try {
    for (const example of EXAMPLES.filter((e) => e.ownServer !== true)) {
      // Sample the server while the example runs: its peers' sockets show up here.
      let most = 0
      const sampler = setInterval(() => { most = Math.max(most, yard.health().connections) }, 2)
      const out = await runExample(example.name, { SIGNALYARD_URL: yard.url }, 15_000, example.args)
      clearInterval(sampler)
      assertOutput(example, out)
      if (example.sockets !== undefined) assert.ok(most >= example.sockets, `examples/${example.name}: ${example.sockets} sockets on this server (saw at most ${most})`)
    }
    // kv again on the same server: the key from the first run is still there, and the example
    // still prints only the fresh write.
    assertOutput(EXAMPLES[1], await runExample('kv', { SIGNALYARD_URL: yard.url }))
    // They really used this server: the kv namespace still holds the key they wrote.
    const channel = SignalChannel('some other namespace', { url: yard.url })
    try {
      const kv = channel.kv()
      await kv.ready()
      assert.match(String(kv.get('some key')), new RegExp(`^some value ${UUID}$`))
    } finally {
      channel.close()
    }
    await until(() => yard.health().connections === 0, 2000, 'every example and this test closed its socket')
  } finally {
    await yard.close()
  }
})

test('an example reports failure (exit 1) when SIGNALYARD_URL points at nothing', async () => {
  // A port that was just free: the client keeps reconnecting, the example gives up after 5 s.
  const yard = await startYard()
  const url = yard.url
  await yard.close()
  const out = await runExample('relay', { SIGNALYARD_URL: url })
  assert.is(out.code, 1, `exit code; stderr: ${out.stderr}`)
  assert.match(out.stderr, 'relay example')
  assert.is(out.stdout, '')
})

test('examples/auth with SIGNALYARD_URL: says on stderr that it ignores it, and runs on its own server all the same', async () => {
  const auth = EXAMPLES.find((e) => e.name === 'auth') as Example
  // Port 9 (discard) on loopback: nothing would answer there, so a run that used it would fail.
  const out = await runExample('auth', { SIGNALYARD_URL: 'ws://127.0.0.1:9/' })
  assertOutput(auth, out)
  assert.match(out.stderr, 'auth example: SIGNALYARD_URL ignored')
})

// ── the Node examples' other modes ──

/** `--import` this and `node-datachannel` cannot be found: a machine where it is not installed. */
const WITHOUT_NODE_DATACHANNEL = 'data:text/javascript,' + encodeURIComponent(
  `import { register } from 'node:module'\nregister(${JSON.stringify('data:text/javascript,' + encodeURIComponent(
    `export async function resolve (specifier, context, next) {
      if (specifier === 'node-datachannel' || specifier.startsWith('node-datachannel/')) {
        throw Object.assign(new Error('Cannot find package ' + specifier + ' (hidden by the test)'), { code: 'ERR_MODULE_NOT_FOUND' })
      }
      return next(specifier, context)
    }`))})`)
const RELAY_FLAG = /^transport: relay \(--relay\)$/
const RELAY_MISSING = /^transport: relay \(node-datachannel is not installed\)$/

test('examples/channel 6 --relay: a mesh of 6 through the relay, 30 greetings', async () => {
  assertOutput({ name: 'channel', check: meshOf(6, RELAY_FLAG, false) }, await runExample('channel', {}, 15_000, ['6', '--relay']))
})

test('examples/channel without node-datachannel installed: says so and uses the relay', async () => {
  const out = await runExample('channel', {}, 15_000, [], ['--import', WITHOUT_NODE_DATACHANNEL])
  assertOutput({ name: 'channel', check: meshOf(4, RELAY_MISSING, false) }, out)
})

test('examples/channel 1: refuses a mesh of one (exit 1, a message on stderr)', async () => {
  const out = await runExample('channel', {}, 15_000, ['1'])
  assert.is(out.code, 1)
  assert.match(out.stderr, 'channel example: the number of peers is 2..50')
})

test('examples/star 3 --relay: 3 spokes through the relay', async () => {
  assertOutput({ name: 'star', check: starOf(3, RELAY_FLAG, false) }, await runExample('star', {}, 15_000, ['3', '--relay']))
})

test('examples/star without node-datachannel installed: says so and uses the relay', async () => {
  const out = await runExample('star', {}, 15_000, [], ['--import', WITHOUT_NODE_DATACHANNEL])
  assertOutput({ name: 'star', check: starOf(5, RELAY_MISSING, false) }, out)
})

test('examples/file-transfer <path>: sends that file, the receiver\'s SHA-256 is the file\'s (WebRTC, then the relay)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'signalyard-ft-'))
  try {
    const file = join(dir, 'odd size.bin')
    const content = randomBytes(3 * 1024 * 1024 + 4321) // 48 full chunks and a short one
    writeFileSync(file, content)
    const sha8 = createHash('sha256').update(content).digest('hex').slice(0, 8)
    const sending = /^sending 3\.0 MiB \(odd size\.bin\) in 49 chunk\(s\) of 64 KiB$/
    const received = (over: string): RegExp => new RegExp(`^received 3\\.0 MiB in \\d+\\.\\d\\d s: \\d+\\.\\d MB/s over ${over}, sha256 ok \\([0-9a-f]{8}…\\)$`)
    assertOutput({ name: 'file-transfer', check: transferOf(RTC_LINE, sending, received('(webrtc|relay)'), 0, sha8) },
      await runExample('file-transfer', {}, 15_000, [file]))
    assertOutput({ name: 'file-transfer', check: transferOf(RELAY_FLAG, sending, received('relay'), 0, sha8) },
      await runExample('file-transfer', {}, 15_000, [file, '--relay']))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('examples/file-transfer <missing path>: exit 1 naming the path', async () => {
  const out = await runExample('file-transfer', {}, 15_000, ['/nonexistent/signalyard-test.bin'])
  assert.is(out.code, 1)
  assert.match(out.stderr, 'file-transfer example: /nonexistent/signalyard-test.bin')
})

test.run()

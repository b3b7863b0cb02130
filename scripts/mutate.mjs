// scripts/mutate.mjs — a short mutation check (`npm run mutate`; not part of `npm test`): a handful
// of one-line bugs the suite must catch, each planted alone, with the tests that should catch it.
//
//   npm run mutate                 every mutant
//   npm run mutate -- glare relay  only mutants whose name contains one of the words
//   npm run mutate -- --list       list the mutants
//   npm run mutate -- --no-baseline  skip the unmutated run of the selected tests
//
// The working tree is never modified: the files git knows (tracked and untracked, not ignored) are
// copied into a temporary directory with node_modules linked in; each mutant edits that copy,
// runs `node scripts/test.mjs <its tests>` there (which builds the copy's dist/ first) and puts the
// file back. The copy is removed on exit, also on Ctrl-C or a crash.
//
// First the selected tests run unmutated (they must pass, or nothing can be concluded). Then a
// mutant is "caught" when its test run fails, "MISSED" when it passes; a mutant whose line is no
// longer in the source, or that breaks the build, is an error (update this list). Exit code 0
// only when every selected mutant was caught.
import { spawn, spawnSync } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * name: what the bug is; file: where; find: the exact text (must occur once); replace: the bug;
 * tests: arguments for scripts/test.mjs (`=<file>` for one run of a file only);
 * by: whose tests are expected to catch it, when they come from another part of issue 10.
 */
const MUTANTS = [
  {
    name: 'glare: the higher id keeps its attempt',
    file: 'src/client/peer-node.ts',
    find: "if ((this.id ?? '') < from) return",
    replace: "if ((this.id ?? '') > from) return",
    tests: ['=test/node.test.ts'],
    by: 'test/node.test.ts glare test (client part of issue 10)'
  },
  {
    name: 'peer-left: a remote peer leaving reports another code',
    file: 'src/client/peer-node.ts',
    find: "this.node.peerGone(id, new SignalyardError('peer-left', `peer ${id} left`))",
    replace: "this.node.peerGone(id, new SignalyardError('stream-closed', `peer ${id} left`))",
    tests: ['=test/node.test.ts'],
    by: 'test/node.test.ts peer-left test (client part of issue 10)'
  },
  {
    name: '16 MiB message cap raised to 256 MiB',
    file: 'src/client/mux.ts',
    find: 'export const MAX_MESSAGE = 16 * 1024 * 1024',
    replace: 'export const MAX_MESSAGE = 256 * 1024 * 1024',
    tests: ['=test/node.test.ts'],
    by: 'test/node.test.ts 16 MiB cap test (client part of issue 10)'
  },
  {
    name: 'Redis: the old holder of a reclaimed id is never told (no taken notice)',
    file: 'src/server/brokers/redis/claims.ts',
    find: '      sink.taken()\n',
    replace: '      void sink\n',
    tests: ['redis-review']
  },
  {
    name: 'peers-server [redis] runs on an in-memory broker',
    file: 'test/peers-server.test.ts',
    find: 'const broker: Broker = await testBroker()',
    replace: "const broker: Broker = (await import('signalyard/server')).memoryBroker()",
    tests: ['=test/peers-server.test.ts [redis]']
  },
  {
    name: 'signal-server [redis] runs on an in-memory broker',
    file: 'test/signal-server.test.ts',
    find: 'const broker: Broker = await testBroker()',
    replace: "const broker: Broker = (await import('signalyard/server')).memoryBroker()",
    tests: ['=test/signal-server.test.ts [redis]']
  },
  {
    name: 'the server refuses every connection (429)',
    file: 'src/server/gate.ts',
    find: 'if ((this.perIp.get(ip) ?? 0) >= limits.maxConnectionsPerIp) {',
    replace: 'if (true || (this.perIp.get(ip) ?? 0) >= limits.maxConnectionsPerIp) {',
    tests: ['=test/memory.test.ts']
  },
  {
    name: 'memory broker: an abandoned topic stays in its table',
    file: 'src/server/brokers/memory.ts',
    find: 'if (handlers?.size === 0) topics.delete(topic)',
    replace: 'if (handlers?.size === -1) topics.delete(topic)',
    tests: ['=test/memory.test.ts']
  },
  {
    name: 'relay: a peer\'s socket closing leaves this side open',
    file: 'src/server/connection.ts',
    find: "for (const [sid, stream] of this.streams) this.forget(sid, stream, 'gone')",
    replace: "for (const [sid, stream] of this.streams) if (stream.ep !== 'relay') this.forget(sid, stream, 'gone')",
    tests: ['=test/relay.test.ts']
  },
  {
    name: 'relay: a pending side is not held (the first side never pairs)',
    file: 'src/server/brokers/memory.ts',
    find: '      sides.set(key, side)\n',
    replace: '      void sides\n',
    tests: ['=test/relay.test.ts']
  },
  {
    name: 'the deep-JSON guard removed (meta depth unchecked)',
    file: 'src/protocol/codec.ts',
    find: 'if (jsonDepth(bytes, HEADER_SIZE, HEADER_SIZE + metaLen) > MAX_META_DEPTH) return null',
    replace: 'if (jsonDepth(bytes, HEADER_SIZE, HEADER_SIZE + metaLen) < 0) return null',
    tests: ['=test/hostile-json.test.ts']
  },
  {
    name: 'one socket per URL: the token is ignored (a second token rides the first socket)',
    file: 'src/client/socket.ts',
    find: '  const key = socketKey(urls, token)',
    replace: "  const key = urls.join(' ')",
    tests: ['=test/socket.test.ts']
  },
  {
    name: "peer stream send() keeps the caller's buffer for a tail the pipe did not take",
    file: 'src/client/mux.ts',
    find: '    if (payload.kind === Kind.Binary && this.queue[this.queue.length - 1] === out) out.bytes = out.bytes.slice()',
    replace: '    void out',
    tests: ['=test/integrity.test.ts']
  },
  {
    name: "an acceptor whose channel's 'open' trails READY never sends what waited",
    file: 'src/client/peer-connection.ts',
    find: '      if (!this.initiator) return this.mux.pump()',
    replace: '      if (!this.initiator) return',
    tests: ['=test/integrity.test.ts']
  },
  {
    name: 'client heartbeat on the wall clock',
    file: 'src/client/liveness.ts',
    find: 'const monotonic = (): number => performance.now()',
    replace: 'const monotonic = (): number => Date.now()',
    tests: ['=test/socket.test.ts']
  }
]

const root = fileURLToPath(new URL('..', import.meta.url))
const args = process.argv.slice(2)
const words = args.filter((a) => !a.startsWith('--'))
const selected = MUTANTS.filter((m) => words.length === 0 || words.some((w) => m.name.toLowerCase().includes(w.toLowerCase())))

if (args.includes('--list')) {
  for (const m of MUTANTS) console.log(`${m.name}\n    ${m.file}; tests: ${m.tests.join(' ')}${m.by ? `; needs ${m.by}` : ''}`)
  process.exit(0)
}
if (selected.length === 0) {
  console.log(`mutate: no mutant matches ${words.join(' or ')} (npm run mutate -- --list)`)
  process.exit(2)
}

// ── a copy of the tree, removed whatever happens ──────────────────────────────────────────────

const copy = mkdtempSync(join(tmpdir(), 'signalyard-mutate-'))
let child = null
const cleanup = () => {
  if (child !== null) { try { process.kill(-child.pid, 'SIGKILL') } catch {} }
  rmSync(copy, { recursive: true, force: true })
}
process.on('exit', cleanup)
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => process.exit(130))

const listed = spawnSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: root, encoding: 'utf8' })
if (listed.status !== 0) {
  console.log(`mutate: git ls-files failed: ${listed.stderr}`)
  process.exit(2)
}
for (const file of listed.stdout.split('\0').filter((f) => f !== '' && f !== 'node_modules' && !f.startsWith('node_modules/'))) {
  mkdirSync(dirname(join(copy, file)), { recursive: true })
  try { cpSync(join(root, file), join(copy, file)) } catch { /* listed but deleted in the tree */ }
}
symlinkSync(join(root, 'node_modules'), join(copy, 'node_modules'), 'dir')

/** `node scripts/test.mjs <filters>` in the copy: its exit code, its closing line, the failing files. */
function runTests (filters) {
  return new Promise((resolve) => {
    const started = Date.now()
    child = spawn(process.execPath, ['scripts/test.mjs', ...filters], { cwd: copy, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    let out = ''
    child.stdout.on('data', (d) => { out += d })
    child.stderr.on('data', (d) => { out += d })
    child.on('close', (code) => {
      child = null
      const lines = out.trimEnd().split('\n')
      const failing = /; failing: (.*)$/m.exec(out)?.[1] ?? ''
      resolve({ code, out, summary: lines[lines.length - 1], failing, buildFailed: out.includes('the build failed'), s: ((Date.now() - started) / 1000).toFixed(0) })
    })
  })
}

// ── baseline, then each mutant ────────────────────────────────────────────────────────────────

const allTests = [...new Set(selected.flatMap((m) => m.tests))]
if (!args.includes('--no-baseline')) {
  process.stdout.write(`baseline (unmutated): ${allTests.join(' ')} … `)
  const base = await runTests(allTests)
  console.log(`${base.summary} (${base.s} s)`)
  if (base.code !== 0) {
    console.log(`\nmutate: the unmutated tests fail, so no mutant can be judged. Their output:\n${base.out}`)
    process.exit(2)
  }
}

const results = []
for (const m of selected) {
  const path = join(copy, m.file)
  const original = readFileSync(path, 'utf8')
  const at = original.indexOf(m.find)
  let result
  if (at < 0 || original.indexOf(m.find, at + 1) >= 0) {
    result = { status: 'ERROR', detail: `the line to mutate is ${at < 0 ? 'not' : 'more than once'} in ${m.file}: update scripts/mutate.mjs` }
  } else {
    writeFileSync(path, original.slice(0, at) + m.replace + original.slice(at + m.find.length))
    try {
      const r = await runTests(m.tests)
      if (r.buildFailed) result = { status: 'ERROR', detail: 'the mutant does not build' }
      else if (r.code !== 0) result = { status: 'caught', detail: `${r.summary}; failing: ${r.failing || '(see output)'} (${r.s} s)` }
      else result = { status: 'MISSED', detail: `${r.summary} (${r.s} s)` }
    } finally {
      writeFileSync(path, original)
    }
  }
  results.push({ m, ...result })
  console.log(`${result.status.padEnd(7)} ${m.name}\n        ${m.file}; ${result.detail}${result.status !== 'caught' && m.by ? `\n        expected to be caught by ${m.by}` : ''}`)
}

const caught = results.filter((r) => r.status === 'caught').length
const missed = results.filter((r) => r.status === 'MISSED').length
const errors = results.filter((r) => r.status === 'ERROR').length
console.log(`\n${caught} caught, ${missed} missed${errors ? `, ${errors} could not run` : ''} of ${results.length} mutant(s)`)
process.exit(missed + errors > 0 ? 1 : 0)

// test/bench.test.ts — smoke test of the benchmark runner (benchmarks themselves are not part of
// `npm test`): `node bench/run.mjs --quick --only fanout --no-write` in a child process, shrunk by
// the fan-out scenario's knobs (100 subscribers, one short step) so it stays cheap. It must exit 0
// within its bound, print the scenario's markdown table with a row per server and the ratio rows,
// and leave docs/ alone. `npm test` builds dist first, hence --no-build (no rebuild under the
// other test files running alongside).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn } from 'node:child_process'
import { statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const BOUND = 60_000

function mtime (path: string): number {
  try {
    return statSync(new URL(path, `file://${root}`)).mtimeMs
  } catch {
    return -1
  }
}

test('bench: quick fan-out prints its table and writes nothing', async () => {
  const before = [mtime('docs/BENCHMARKS.md'), mtime('docs/bench.svg')]
  const child = spawn(process.execPath, ['bench/run.mjs', '--quick', '--only', 'fanout', '--no-write', '--no-build'], {
    cwd: root,
    env: { ...process.env, FANOUT_SUBSCRIBERS: '100', FANOUT_RATES: '20', FANOUT_SECONDS: '0.5' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true
  })
  let out = ''
  let err = ''
  child.stdout.on('data', (d) => { out += d })
  child.stderr.on('data', (d) => { err += d })
  let timer: ReturnType<typeof setTimeout> | undefined
  const result = await new Promise<{ code: number | null, timedOut: boolean }>((resolve) => {
    timer = setTimeout(() => {
      try { process.kill(-(child.pid as number), 'SIGKILL') } catch {}
      resolve({ code: null, timedOut: true })
    }, BOUND)
    child.on('close', (code) => resolve({ code, timedOut: false }))
  }).finally(() => clearTimeout(timer))

  assert.not.ok(result.timedOut, `bench did not finish within ${BOUND} ms\n${err}`)
  assert.is(result.code, 0, `exit code\n${out}\n${err}`)
  assert.match(out, /^## Fan-out/m)
  const lines = out.split('\n').filter((l) => l.startsWith('|'))
  assert.match(lines[0] ?? '', /^\| publish rate \| server \| delivered\/s \| reach \| p50 ms \| p99 ms \|/)
  assert.match(lines[1] ?? '', /^\| --- \|/)
  for (const server of ['signalyard echo', 'ws pre-framed', 'ws naive', 'socket.io rooms']) {
    const row = lines.find((l) => l.startsWith(`| 20/s | ${server} |`))
    assert.ok(row, `a row for ${server}`)
    // every subscriber got the step's messages on loopback at 20 msg/s
    assert.ok(row?.includes('| 100.0 % |'), `full reach for ${server}: ${row}`)
  }
  assert.ok(lines.some((l) => l.startsWith('| all steps | signalyard ÷ ws pre-framed |')), 'the ratio row')
  assert.match(err, /bench: 1 scenario\(s\) in/)
  assert.equal([mtime('docs/BENCHMARKS.md'), mtime('docs/bench.svg')], before, '--no-write leaves docs/ alone')
})

test.run()

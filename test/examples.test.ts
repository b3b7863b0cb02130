// test/examples.test.ts — the examples run as their headers say (`node examples/<name>/index.mjs`
// from the repository root): each one exits 0 by itself (no hanging handles) within 15 s and
// prints the lines it promises. Also runs them against a separately started server through
// SIGNALYARD_URL. `npm test` builds dist first (the examples import the built package by name).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { SignalChannel } from 'signalyard'
import { startYard, until } from './helpers.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'

interface Example { name: string, lines: RegExp[] }
const EXAMPLES: Example[] = [
  { name: 'echo', lines: [/^got offer this is an offer from peer peer id #222$/] },
  { name: 'kv', lines: [new RegExp(`^update some key some value ${UUID}$`), /^m1 and m2 agree: true$/] },
  { name: 'relay', lines: [/^relay message hello! relay$/] }
]

interface Outcome { code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string, ms: number }

/** Run an example as a user would; kill it (and fail) after `ms`. */
function runExample (name: string, env: Record<string, string> = {}, ms = 15_000): Promise<Outcome> {
  const started = Date.now()
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env }
  if (!('SIGNALYARD_URL' in env)) delete childEnv.SIGNALYARD_URL
  delete childEnv.PORT
  const child = spawn(process.execPath, [`examples/${name}/index.mjs`], { cwd: root, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] })
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
  assert.is(out.code, 0, `examples/${example.name} exits 0 (signal ${out.signal}); stderr:\n${out.stderr}`)
  const lines = out.stdout.split('\n').filter((l) => l !== '')
  assert.is(lines.length, example.lines.length, `printed lines:\n${out.stdout}`)
  example.lines.forEach((pattern, i) => assert.match(lines[i], pattern))
}

for (const example of EXAMPLES) {
  test(`examples/${example.name}: runs on its own embedded server, prints its result and exits 0`, async () => {
    const out = await runExample(example.name)
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
    for (const example of EXAMPLES) {
      const out = await runExample(example.name, { SIGNALYARD_URL: yard.url })
      assertOutput(example, out)
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

test.run()

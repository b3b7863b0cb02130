// test/simple-peer.test.ts — examples/simple-peer: signalyard as the signalling layer of another
// WebRTC library. The example, run as its header says, connects two unmodified simple-peer 9
// instances (on @roamhq/wrtc) whose offers, answers and candidates travel only as node.send /
// 'message' directed messages, greets over simple-peer's own data channel and exits 0 — on its own
// embedded server and on a server given by SIGNALYARD_URL. @roamhq/wrtc gathers candidates on every
// interface, so this file re-runs itself in a namespace with only `lo` (test/netns.ts).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { startYard } from './helpers.js'
import { loopbackOnly } from './netns.js'

const ISOLATED = await loopbackOnly(import.meta.url, 'simple-peer connects over the host\'s own interfaces (still this machine)')

const root = fileURLToPath(new URL('..', import.meta.url))

/** `node examples/simple-peer/index.mjs` with `env`; killed after `ms`. */
function run (env: Record<string, string>, ms = 20_000): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const child = spawn(process.execPath, ['examples/simple-peer/index.mjs'], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => { stdout += d })
  child.stderr.on('data', (d) => { stderr += d })
  const timer = setTimeout(() => child.kill('SIGKILL'), ms)
  return new Promise((resolve) => child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }) }))
}

function check (out: { code: number | null, stdout: string, stderr: string }): void {
  assert.is(out.code, 0, `exit 0; stdout:\n${out.stdout}\nstderr:\n${out.stderr}`)
  const lines = out.stdout.split('\n').filter((l) => l !== '')
  assert.is(lines.length, 3, lines.join('\n'))
  const [, a, b] = /^simple-peer connected: ([\w-]{21}) ⇄ ([\w-]{21})$/.exec(lines[0]) ?? []
  assert.ok(a !== undefined && a !== b, `two random ids: ${lines[0]}`)
  assert.is(lines[1], `${b} got: hello over simple-peer's own data channel`)
  const signals = Number(/^signals carried by signalyard: (\d+)$/.exec(lines[2])?.[1])
  assert.ok(signals >= 3, `an offer, an answer and candidates went through signalyard (${signals})`)
}

test('examples/simple-peer: two simple-peer instances connect with their signals carried by node.send, greet, exit 0', async () => {
  if (!ISOLATED) console.log('(not in a loopback-only namespace)')
  check(await run({}))
})

test('examples/simple-peer with SIGNALYARD_URL: the same through a server started elsewhere', async () => {
  const yard = await startYard()
  try {
    check(await run({ SIGNALYARD_URL: yard.url }))
  } finally {
    await yard.close()
  }
})

test.run()

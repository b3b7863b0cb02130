// test/netns.test.ts — the loopback-only namespace of the WebRTC browser tests (test/netns.ts):
// where it cannot be made, a local run falls back (and says so), but under CI=true the file fails
// with the reason instead of running weaker checks.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const netns = fileURLToPath(new URL('./netns.ts', import.meta.url))
const root = fileURLToPath(new URL('..', import.meta.url))

/** loopbackOnly() in a child whose PATH has no `unshare` (so no namespace can be made). */
function withoutUnshare (env: Record<string, string>): { status: number | null, out: string } {
  const script = `const { loopbackOnly } = await import(${JSON.stringify(netns)}); ` +
    'console.log("returned", await loopbackOnly(import.meta.url, "the weaker checks"))'
  const base = { ...process.env }
  delete base.CI
  delete base.SIGNALYARD_NETNS
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: root, encoding: 'utf8', timeout: 30_000, env: { ...base, PATH: '/nonexistent', ...env }
  })
  return { status: r.status, out: `${r.stdout}${r.stderr}` }
}

test('no namespace possible, not CI: falls back, saying why and what it does instead', () => {
  const { status, out } = withoutUnshare({})
  assert.is(status, 0, out)
  assert.match(out, /note: `unshare .*` failed .*: running without a private network namespace; the weaker checks/)
  assert.match(out, /returned false/)
})

test('no namespace possible under CI=true: the file fails with the reason, nothing falls back', () => {
  const { status, out } = withoutUnshare({ CI: 'true' })
  assert.is.not(status, 0, out)
  assert.match(out, /CI=true: `unshare .*` failed/)
  assert.not.match(out, /returned false/)
})

test('SIGNALYARD_NETNS=off under CI=true fails too', () => {
  const { status, out } = withoutUnshare({ CI: 'true', SIGNALYARD_NETNS: 'off' })
  assert.is.not(status, 0, out)
  assert.match(out, /CI=true: SIGNALYARD_NETNS=off/)
})

test.run()
